//! The signing key set shared by every replica on one etcd: one record under the store's
//! prefix (`<prefix>/-/keys`), made by whichever replica starts first (a create-if-absent
//! transaction) and loaded by the others, so a token minted by one replica verifies on all.
//!
//! Private keys are sealed with AES-256-GCM under a key encryption key (KEK) the operator
//! gives every replica; etcd only ever holds ciphertext. Each key has its own random nonce,
//! and its kid is the associated data, so a sealed key cannot be swapped under another kid.
//! Sealing and opening are pure functions over the record; only [`load_or_create`] talks to
//! etcd.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use tokenwarden_core::Timestamp;
use tokenwarden_core::keys::{Algorithm, KeySet, SigningKey};

use crate::clock::random_bytes;
use crate::etcd::EtcdStore;
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
    #[error("signing key {kid} in etcd cannot be decrypted: is the key encryption key the one the first replica used?")]
    Decrypt { kid: String },
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
    keys: Vec<SealedKey>,
    /// Keys that only verify, until `verify_until` (for rotation; empty until then).
    #[serde(default)]
    retired: Vec<Retired>,
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

fn seal(kek: &KeyEncryptionKey, key: &SigningKey) -> Result<SealedKey, SharedKeysError> {
    let nonce_bytes: [u8; NONCE_LEN] = random_bytes();
    let mut in_out = key.to_pkcs8_pem().into_bytes();
    kek.aead()?
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce_bytes), Aad::from(aad(key.kid())), &mut in_out)
        .map_err(|_| SharedKeysError::Generate)?;
    Ok(SealedKey { kid: key.kid().to_owned(), nonce: B64.encode(nonce_bytes), sealed: B64.encode(in_out) })
}

fn open(kek: &KeyEncryptionKey, sealed: &SealedKey) -> Result<SigningKey, SharedKeysError> {
    let decrypt = || SharedKeysError::Decrypt { kid: sealed.kid.clone() };
    let nonce: [u8; NONCE_LEN] = B64.decode(&sealed.nonce).ok().and_then(|n| n.try_into().ok()).ok_or_else(decrypt)?;
    let mut in_out = B64.decode(&sealed.sealed).map_err(|_| decrypt())?;
    let plain = kek
        .aead()?
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad(&sealed.kid)), &mut in_out)
        .map_err(|_| decrypt())?;
    let pem = std::str::from_utf8(plain).map_err(|_| decrypt())?;
    let key = SigningKey::from_pem(pem).map_err(|e| SharedKeysError::Malformed(format!("key {}: {e}", sealed.kid)))?;
    if key.kid() != sealed.kid {
        return Err(SharedKeysError::Malformed(format!("key {} has kid {}", sealed.kid, key.kid())));
    }
    Ok(key)
}

impl Record {
    fn new(kek: &KeyEncryptionKey, key: &SigningKey) -> Result<Self, SharedKeysError> {
        Ok(Self { active: key.kid().to_owned(), keys: vec![seal(kek, key)?], retired: Vec::new() })
    }

    /// The key set: the active key signs, retired keys still in their window verify.
    fn key_set(&self, kek: &KeyEncryptionKey, now: Timestamp) -> Result<KeySet, SharedKeysError> {
        let find = |kid: &str| {
            self.keys.iter().find(|k| k.kid == kid).ok_or_else(|| SharedKeysError::Malformed(format!("key {kid} is missing")))
        };
        let active = open(kek, find(&self.active)?)?;
        let mut others = Vec::new();
        for retired in self.retired.iter().filter(|r| r.verify_until >= now.unix()) {
            others.push(open(kek, find(&retired.kid)?)?.verifying_key().clone());
        }
        Ok(KeySet::new(active, others))
    }

    fn parse(bytes: &[u8]) -> Result<Self, SharedKeysError> {
        serde_json::from_slice(bytes).map_err(|e| SharedKeysError::Malformed(e.to_string()))
    }

    fn to_bytes(&self) -> Result<Vec<u8>, SharedKeysError> {
        serde_json::to_vec(self).map_err(|e| SharedKeysError::Malformed(e.to_string()))
    }
}

/// Loads the shared key set, or creates it with a fresh key of `alg` if no replica has yet.
/// Two replicas starting at once both try; the transaction lets exactly one record in and
/// the other loads it.
pub async fn load_or_create(store: &EtcdStore, kek: &KeyEncryptionKey, alg: Algorithm, now: Timestamp) -> Result<KeySet, SharedKeysError> {
    let record_key = store.internal_key(RECORD);
    let clients = store.clients();
    let read = || clients.get(record_key.clone(), None);
    let existing = read().await?;
    if let Some(found) = existing.kvs().first() {
        return Record::parse(found.value())?.key_set(kek, now);
    }
    let key = crate::keystore::generate(alg).map_err(|_| SharedKeysError::Generate)?;
    let record = Record::new(kek, &key)?;
    let txn = Txn::new()
        .when(vec![Compare::create_revision(record_key.clone(), CompareOp::Equal, 0)])
        .and_then(vec![TxnOp::put(record_key.clone(), record.to_bytes()?, None)]);
    // Safe to repeat: once our record is in, the compare fails and we load it.
    if clients.txn(true, txn).await?.succeeded() {
        tracing::info!(kid = key.kid(), "created the shared signing key set in etcd");
        return Ok(KeySet::new(key, Vec::new()));
    }
    // Another replica was first.
    let theirs = read().await?;
    let found = theirs.kvs().first().ok_or_else(|| SharedKeysError::Malformed("the key set vanished".to_owned()))?;
    Record::parse(found.value())?.key_set(kek, now)
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
        let record = Record::new(&kek(1), &key).unwrap();
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
    fn kek_parsing() {
        let good = B64.encode([7u8; 32]);
        assert!(KeyEncryptionKey::from_base64(&format!("{good}\n")).is_ok());
        let short = KeyEncryptionKey::from_base64(&B64.encode([7u8; 16])).unwrap_err().to_string();
        assert!(short.contains("must be 32 bytes"), "{short}");
        assert!(KeyEncryptionKey::from_base64("not base64!").is_err());
        assert_eq!(format!("{:?}", kek(9)), "KeyEncryptionKey(<redacted>)");
    }
}
