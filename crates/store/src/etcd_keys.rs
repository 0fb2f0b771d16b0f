//! The signing key set shared by every replica on one etcd: one record under the store's
//! prefix (`<prefix>/-/keys`), made by whichever replica starts first (a create-if-absent
//! transaction) and loaded by the others, so a token minted by one replica verifies on all.
//!
//! Private keys are sealed with AES-256-GCM under a key encryption key (KEK) the operator
//! gives every replica; etcd only ever holds ciphertext. Each key has its own random nonce,
//! and its kid is the associated data, so a sealed key cannot be swapped under another kid.
//!
//! Rotation is two steps so that no replica signs with a key another does not know yet: a
//! new key is first *published* (`next`: it verifies everywhere, signs nowhere); the leader
//! *activates* it only once every live replica reports knowing it ([`crate::cluster`]).
//! The key it replaces keeps verifying until the last token it signed has expired. The
//! record's transitions are pure functions; [`SharedKeys`] does the etcd reads and writes.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use tokenwarden_core::Timestamp;
use tokenwarden_core::keys::{Algorithm, KeySet, SigningKey};

use std::sync::Arc;

use crate::clock::random_bytes;
use crate::etcd::{EtcdClients, EtcdStore};
use crate::StoreError;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// The internal record name under the store's prefix.
const RECORD: &str = "keys";

#[derive(Debug, thiserror::Error)]
pub enum SharedKeysError {
    #[error("key encryption key: {0}")]
    Kek(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what} in etcd cannot be decrypted: is the key encryption key the one the first replica used?")]
    Decrypt { what: String },
    #[error("signing keys in etcd: {0}")]
    Malformed(String),
    #[error("generating a signing key failed")]
    Generate,
}

/// The 32-byte AES-256-GCM key that seals private keys at rest.
pub struct KeyEncryptionKey([u8; 32]);

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryptionKey(<redacted>)")
    }
}

impl KeyEncryptionKey {
    /// Parses the key from base64 text (what `openssl rand -base64 32` prints).
    pub fn from_base64(text: &str) -> Result<Self, SharedKeysError> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|_| SharedKeysError::Kek("not base64; make one with `openssl rand -base64 32`".to_owned()))?;
        let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            SharedKeysError::Kek(format!("must be 32 bytes (base64-encoded), got {}; make one with `openssl rand -base64 32`", b.len()))
        })?;
        Ok(Self(key))
    }

    fn aead(&self) -> Result<LessSafeKey, SharedKeysError> {
        let key = UnboundKey::new(&AES_256_GCM, &self.0).map_err(|_| SharedKeysError::Kek("rejected by AES-256-GCM".to_owned()))?;
        Ok(LessSafeKey::new(key))
    }
}

/// The record stored in etcd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    /// The kid of the key that signs.
    active: String,
    /// Unix seconds when `active` began signing (the rotation period counts from here).
    #[serde(default)]
    activated_at: i64,
    keys: Vec<SealedKey>,
    /// Keys that only verify, until `verify_until`: the ones rotated out.
    #[serde(default)]
    retired: Vec<Retired>,
    /// A published key: it verifies on every replica and signs once the leader activates it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SealedKey {
    kid: String,
    /// Base64 of the 12-byte GCM nonce.
    nonce: String,
    /// Base64 of the sealed PKCS#8 PEM (ciphertext and tag).
    sealed: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Retired {
    kid: String,
    verify_until: i64,
}

fn aad(kid: &str) -> Vec<u8> {
    format!("tokenwarden signing key {kid}").into_bytes()
}

/// A sealed byte string: base64 of the 12-byte GCM nonce and of the ciphertext with its tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Sealed {
    nonce: String,
    sealed: String,
}

fn seal_bytes(kek: &KeyEncryptionKey, aad: Vec<u8>, mut in_out: Vec<u8>) -> Result<Sealed, SharedKeysError> {
    let nonce_bytes: [u8; NONCE_LEN] = random_bytes();
    kek.aead()?
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce_bytes), Aad::from(aad), &mut in_out)
        .map_err(|_| SharedKeysError::Generate)?;
    Ok(Sealed { nonce: B64.encode(nonce_bytes), sealed: B64.encode(in_out) })
}

/// The plaintext, or `None` when it does not open under this KEK and `aad`.
fn open_bytes(kek: &KeyEncryptionKey, aad: Vec<u8>, sealed: &Sealed) -> Result<Option<Vec<u8>>, SharedKeysError> {
    let Some(nonce) = B64.decode(&sealed.nonce).ok().and_then(|n| <[u8; NONCE_LEN]>::try_from(n).ok()) else { return Ok(None) };
    let Ok(mut in_out) = B64.decode(&sealed.sealed) else { return Ok(None) };
    let Ok(plain) = kek.aead()?.open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut in_out) else { return Ok(None) };
    let len = plain.len();
    in_out.truncate(len);
    Ok(Some(in_out))
}

fn seal(kek: &KeyEncryptionKey, key: &SigningKey) -> Result<SealedKey, SharedKeysError> {
    let Sealed { nonce, sealed } = seal_bytes(kek, aad(key.kid()), key.to_pkcs8_pem().into_bytes())?;
    Ok(SealedKey { kid: key.kid().to_owned(), nonce, sealed })
}

fn open(kek: &KeyEncryptionKey, sealed: &SealedKey) -> Result<SigningKey, SharedKeysError> {
    let decrypt = || SharedKeysError::Decrypt { what: format!("signing key {}", sealed.kid) };
    let blob = Sealed { nonce: sealed.nonce.clone(), sealed: sealed.sealed.clone() };
    let plain = open_bytes(kek, aad(&sealed.kid), &blob)?.ok_or_else(decrypt)?;
    let pem = std::str::from_utf8(&plain).map_err(|_| decrypt())?;
    let key = SigningKey::from_pem(pem).map_err(|e| SharedKeysError::Malformed(format!("key {}: {e}", sealed.kid)))?;
    if key.kid() != sealed.kid {
        return Err(SharedKeysError::Malformed(format!("key {} has kid {}", sealed.kid, key.kid())));
    }
    Ok(key)
}

impl Record {
    fn new(kek: &KeyEncryptionKey, key: &SigningKey, now: Timestamp) -> Result<Self, SharedKeysError> {
        Ok(Self {
            active: key.kid().to_owned(),
            activated_at: now.unix(),
            keys: vec![seal(kek, key)?],
            retired: Vec::new(),
            next: None,
        })
    }

    /// The key set: the active key signs; the published key and retired keys still in their
    /// window verify.
    fn key_set(&self, kek: &KeyEncryptionKey, now: Timestamp) -> Result<KeySet, SharedKeysError> {
        let find = |kid: &str| {
            self.keys.iter().find(|k| k.kid == kid).ok_or_else(|| SharedKeysError::Malformed(format!("key {kid} is missing")))
        };
        let active = open(kek, find(&self.active)?)?;
        let mut others = Vec::new();
        let verifying = self.next.iter().chain(self.retired.iter().filter(|r| r.verify_until >= now.unix()).map(|r| &r.kid));
        for kid in verifying {
            others.push(open(kek, find(kid)?)?.verifying_key().clone());
        }
        Ok(KeySet::new(active, others))
    }

    /// Publishes `key` to become the next signing key; `false` if it already signs or is
    /// published. A published key not yet activated is replaced.
    fn publish(&mut self, kek: &KeyEncryptionKey, key: &SigningKey) -> Result<bool, SharedKeysError> {
        let kid = key.kid();
        if self.active == kid || self.next.as_deref() == Some(kid) {
            return Ok(false);
        }
        if let Some(replaced) = self.next.take() {
            self.keys.retain(|k| k.kid != replaced);
        }
        self.keys.retain(|k| k.kid != kid);
        self.retired.retain(|r| r.kid != kid);
        self.keys.push(seal(kek, key)?);
        self.next = Some(kid.to_owned());
        Ok(true)
    }

    /// Makes the published key the signing key; the one it replaces verifies for
    /// `longest_lifetime` more seconds. `false` when nothing is published.
    fn activate_next(&mut self, now: Timestamp, longest_lifetime: i64) -> bool {
        let Some(next) = self.next.take() else { return false };
        let previous = std::mem::replace(&mut self.active, next);
        self.retired.push(Retired { kid: previous, verify_until: now.plus(longest_lifetime).unix() });
        self.activated_at = now.unix();
        self.prune(now);
        true
    }

    /// Forgets retired keys past their window; `true` if any was.
    fn prune(&mut self, now: Timestamp) -> bool {
        let before = self.keys.len();
        self.retired.retain(|r| r.verify_until >= now.unix());
        let (active, next, retired) = (&self.active, &self.next, &self.retired);
        self.keys.retain(|k| k.kid == *active || next.as_deref() == Some(k.kid.as_str()) || retired.iter().any(|r| r.kid == k.kid));
        self.keys.len() != before
    }

    /// Whether the active key has signed for `period` seconds and no successor is published.
    fn rotation_due(&self, now: Timestamp, period: i64) -> bool {
        self.next.is_none() && now.unix() >= self.activated_at.saturating_add(period)
    }

    fn parse(bytes: &[u8]) -> Result<Self, SharedKeysError> {
        serde_json::from_slice(bytes).map_err(|e| SharedKeysError::Malformed(e.to_string()))
    }

    fn to_bytes(&self) -> Result<Vec<u8>, SharedKeysError> {
        serde_json::to_vec(self).map_err(|e| SharedKeysError::Malformed(e.to_string()))
    }
}

/// The shared key record in etcd, read and written with compare-and-swap transactions.
#[derive(Clone)]
pub struct SharedKeys {
    clients: EtcdClients,
    /// `<prefix>/-/`: where the key record and the shared secrets live.
    internal_dir: String,
    record_key: String,
    kek: Arc<KeyEncryptionKey>,
}

/// The record as read, with its etcd `mod_revision` (the compare of the next write).
pub struct Snapshot {
    record: Record,
    mod_revision: i64,
}

impl Snapshot {
    pub fn mod_revision(&self) -> i64 {
        self.mod_revision
    }

    /// The published key waiting for activation, if any.
    pub fn next(&self) -> Option<&str> {
        self.record.next.as_deref()
    }

    pub fn rotation_due(&self, now: Timestamp, period: i64) -> bool {
        self.record.rotation_due(now, period)
    }
}

/// One change to the record, decided on a [`Snapshot`].
pub enum Change<'a> {
    Publish(&'a SigningKey),
    ActivateNext { longest_lifetime: i64 },
    Prune,
}

impl SharedKeys {
    pub fn new(store: &EtcdStore, kek: KeyEncryptionKey) -> Self {
        Self { clients: store.clients().clone(), internal_dir: store.internal_key(""), record_key: store.internal_key(RECORD), kek: Arc::new(kek) }
    }

    /// The current record, if any replica made one.
    pub async fn read(&self) -> Result<Option<Snapshot>, SharedKeysError> {
        let resp = self.clients.get(self.record_key.clone(), None).await?;
        resp.kvs()
            .first()
            .map(|kv| Ok(Snapshot { record: Record::parse(kv.value())?, mod_revision: kv.mod_revision() }))
            .transpose()
    }

    /// The key set of a snapshot.
    pub fn key_set(&self, snapshot: &Snapshot, now: Timestamp) -> Result<KeySet, SharedKeysError> {
        snapshot.record.key_set(&self.kek, now)
    }

    /// Loads the shared key set, or creates it with a fresh key of `alg` if no replica has
    /// yet. Two replicas starting at once both try; the transaction lets exactly one record
    /// in and the other loads it.
    pub async fn load_or_create(&self, alg: Algorithm, now: Timestamp) -> Result<KeySet, SharedKeysError> {
        if let Some(found) = self.read().await? {
            return self.key_set(&found, now);
        }
        let key = crate::keystore::generate(alg).map_err(|_| SharedKeysError::Generate)?;
        let record = Record::new(&self.kek, &key, now)?;
        let txn = Txn::new()
            .when(vec![Compare::create_revision(self.record_key.clone(), CompareOp::Equal, 0)])
            .and_then(vec![TxnOp::put(self.record_key.clone(), record.to_bytes()?, None)]);
        // Safe to repeat: once our record is in, the compare fails and we load it.
        if self.clients.txn(true, txn).await?.succeeded() {
            tracing::info!(kid = key.kid(), "created the shared signing key set in etcd");
            return Ok(KeySet::new(key, Vec::new()));
        }
        // Another replica was first.
        let theirs = self.read().await?.ok_or_else(|| SharedKeysError::Malformed("the key set vanished".to_owned()))?;
        self.key_set(&theirs, now)
    }

    /// Applies `change` to `snapshot` and writes it if the record is still that snapshot and
    /// every compare in `guard` holds (the leader's fence). `Ok(false)`: nothing to change,
    /// or someone else wrote first (read again and decide again).
    pub async fn apply(&self, snapshot: &Snapshot, change: Change<'_>, now: Timestamp, guard: Vec<Compare>) -> Result<bool, SharedKeysError> {
        let mut record = snapshot.record.clone();
        let changed = match &change {
            Change::Publish(key) => record.publish(&self.kek, key)?,
            Change::ActivateNext { longest_lifetime } => record.activate_next(now, *longest_lifetime),
            Change::Prune => record.prune(now),
        };
        if !changed {
            return Ok(false);
        }
        let mut compares = vec![Compare::mod_revision(self.record_key.clone(), CompareOp::Equal, snapshot.mod_revision)];
        compares.extend(guard);
        let txn = Txn::new().when(compares).and_then(vec![TxnOp::put(self.record_key.clone(), record.to_bytes()?, None)]);
        // Repeatable: the mod_revision compare fails once it applied.
        Ok(self.clients.txn(true, txn).await?.succeeded())
    }

    /// A secret every replica shares (the API's CA, the admin credential), sealed under the
    /// KEK in `<prefix>/-/<name>`: made with `make` by the first replica that asks (create-if-
    /// absent, like the key set) and read by the others.
    pub async fn shared_secret(&self, name: &str, make: impl FnOnce() -> Vec<u8>) -> Result<Vec<u8>, SharedKeysError> {
        let key = format!("{}{name}", self.internal_dir);
        let label = || format!("tokenwarden shared secret {name}").into_bytes();
        let read = || async {
            let resp = self.clients.get(key.clone(), None).await?;
            resp.kvs()
                .first()
                .map(|kv| {
                    let sealed: Sealed = serde_json::from_slice(kv.value()).map_err(|e| SharedKeysError::Malformed(format!("{name}: {e}")))?;
                    open_bytes(&self.kek, label(), &sealed)?.ok_or_else(|| SharedKeysError::Decrypt { what: name.to_owned() })
                })
                .transpose()
        };
        if let Some(found) = read().await? {
            return Ok(found);
        }
        let plain = make();
        let value = serde_json::to_vec(&seal_bytes(&self.kek, label(), plain.clone())?).map_err(|e| SharedKeysError::Malformed(e.to_string()))?;
        let txn = Txn::new()
            .when(vec![Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then(vec![TxnOp::put(key.clone(), value, None)]);
        if self.clients.txn(true, txn).await?.succeeded() {
            return Ok(plain);
        }
        read().await?.ok_or_else(|| SharedKeysError::Malformed(format!("{name} vanished")))
    }

    /// Publishes `key` (an imported `--signing-key-file`) to become the signing key of every
    /// replica; the leader activates it once all of them know it.
    pub async fn publish(&self, key: &SigningKey, now: Timestamp) -> Result<(), SharedKeysError> {
        loop {
            let snapshot = self.read().await?.ok_or_else(|| SharedKeysError::Malformed("no key set to publish into".to_owned()))?;
            if snapshot.record.active == key.kid() || snapshot.next() == Some(key.kid()) {
                return Ok(());
            }
            if self.apply(&snapshot, Change::Publish(key), now, Vec::new()).await? {
                tracing::info!(kid = key.kid(), "published the imported signing key; it signs once every replica knows it");
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek(byte: u8) -> KeyEncryptionKey {
        KeyEncryptionKey([byte; 32])
    }

    #[test]
    fn sealed_keys_open_only_with_the_same_kek_and_kid() {
        let key = crate::keystore::generate(Algorithm::Es256).unwrap();
        let record = Record::new(&kek(1), &key, Timestamp(0)).unwrap();
        let bytes = record.to_bytes().unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("PRIVATE KEY"), "the private key is stored in clear");
        let keys = Record::parse(&bytes).unwrap().key_set(&kek(1), Timestamp(0)).unwrap();
        assert_eq!(keys.signing().kid(), key.kid());
        assert!(matches!(Record::parse(&bytes).unwrap().key_set(&kek(2), Timestamp(0)), Err(SharedKeysError::Decrypt { .. })));

        // The ciphertext of one kid under another kid does not open (the kid is the AAD).
        let other = crate::keystore::generate(Algorithm::Es256).unwrap();
        let mut swapped = record.clone();
        swapped.keys[0].kid = other.kid().to_owned();
        swapped.active = other.kid().to_owned();
        assert!(matches!(swapped.key_set(&kek(1), Timestamp(0)), Err(SharedKeysError::Decrypt { .. })));
    }

    #[test]
    fn a_rotation_publishes_then_activates_and_retires_the_old_key_for_the_longest_lifetime() {
        let kek = kek(3);
        let first = crate::keystore::generate(Algorithm::Es256).unwrap();
        let second = crate::keystore::generate(Algorithm::Es256).unwrap();
        let mut record = Record::new(&kek, &first, Timestamp(1_000)).unwrap();
        assert!(!record.rotation_due(Timestamp(1_099), 100));
        assert!(record.rotation_due(Timestamp(1_100), 100));

        // Published: verifies, does not sign; no second rotation while it waits.
        assert!(record.publish(&kek, &second).unwrap());
        assert!(!record.publish(&kek, &second).unwrap(), "publishing twice changes nothing");
        assert!(!record.rotation_due(Timestamp(5_000), 100), "a published key is pending");
        let keys = record.key_set(&kek, Timestamp(1_100)).unwrap();
        assert_eq!(keys.signing().kid(), first.kid());
        assert!(keys.find(second.kid()).is_some(), "the published key verifies before it signs");

        // Activated: signs; the old key verifies for the longest token lifetime, then is forgotten.
        assert!(record.activate_next(Timestamp(1_200), 3_600));
        assert!(!record.activate_next(Timestamp(1_200), 3_600), "nothing left to activate");
        let keys = record.key_set(&kek, Timestamp(4_800)).unwrap();
        assert_eq!(keys.signing().kid(), second.kid());
        assert!(keys.find(first.kid()).is_some(), "tokens the old key signed stay valid until they expire");
        assert!(!record.rotation_due(Timestamp(1_299), 100), "the period counts from the activation");
        assert!(!record.prune(Timestamp(4_800)));
        assert!(record.prune(Timestamp(4_801)));
        assert_eq!(record.keys.len(), 1, "the expired key's sealed copy is dropped");
        assert!(record.key_set(&kek, Timestamp(4_801)).unwrap().find(first.kid()).is_none());
    }

    #[test]
    fn publishing_again_replaces_a_pending_key() {
        let kek = kek(4);
        let [active, pending, replacement] = [(); 3].map(|()| crate::keystore::generate(Algorithm::Es256).unwrap());
        let mut record = Record::new(&kek, &active, Timestamp(0)).unwrap();
        assert!(record.publish(&kek, &pending).unwrap());
        assert!(record.publish(&kek, &replacement).unwrap());
        assert_eq!(record.next.as_deref(), Some(replacement.kid()));
        assert_eq!(record.keys.len(), 2, "the replaced key is gone");
        assert!(!record.publish(&kek, &active).unwrap(), "the active key is not published again");
    }

    #[test]
    fn kek_parsing() {
        let good = B64.encode([7u8; 32]);
        assert!(KeyEncryptionKey::from_base64(&format!("{good}\n")).is_ok());
        let short = KeyEncryptionKey::from_base64(&B64.encode([7u8; 16])).unwrap_err().to_string();
        assert!(short.contains("must be 32 bytes"), "{short}");
        assert!(KeyEncryptionKey::from_base64("not base64!").is_err());
        assert_eq!(format!("{:?}", kek(9)), "KeyEncryptionKey(<redacted>)");
    }
}
