//! Signing keys in the data directory: one PKCS#8 PEM file per key (mode 0600) and a small
//! JSON state file naming the active key and until when each retired key keeps verifying.
//! Every file is written atomically ([`crate::files::write_private`]).

use std::fs;
use std::path::{Path, PathBuf};

use aws_lc_rs::encoding::AsDer as _;
use serde::{Deserialize, Serialize};
use tokenwarden_core::Timestamp;
use tokenwarden_core::keys::{Algorithm, KeySet, SigningKey};

const STATE_FILE: &str = "keys.json";

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("key directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("key file {path}: {source}")]
    Key { path: PathBuf, source: tokenwarden_core::keys::KeyError },
    #[error("key state {path}: {detail}")]
    State { path: PathBuf, detail: String },
    #[error("generating a key failed")]
    Generate,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct State {
    active: String,
    #[serde(default)]
    retired: Vec<Retired>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Retired {
    kid: String,
    /// Unix seconds after which no token this key signed can still be valid.
    verify_until: i64,
}

/// The signing keys of one authority, persisted in a directory.
#[derive(Clone, Debug)]
pub struct KeyStore {
    dir: PathBuf,
}

/// A fresh key of `alg`: RSA-2048 for RS256, P-256 for ES256.
pub fn generate(alg: Algorithm) -> Result<SigningKey, KeyStoreError> {
    let pkcs8 = match alg {
        Algorithm::Rs256 => {
            let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(|_| KeyStoreError::Generate)?;
            key.as_der().map_err(|_| KeyStoreError::Generate)?.as_ref().to_vec()
        }
        Algorithm::Es256 => {
            let key = aws_lc_rs::signature::EcdsaKeyPair::generate(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                .map_err(|_| KeyStoreError::Generate)?;
            key.to_pkcs8v1().map_err(|_| KeyStoreError::Generate)?.as_ref().to_vec()
        }
    };
    SigningKey::from_pkcs8_der(&pkcs8).map_err(|_| KeyStoreError::Generate)
}

impl KeyStore {
    /// Opens (creating, mode 0700) the key directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, KeyStoreError> {
        let dir = dir.into();
        crate::files::create_private_dir(&dir).map_err(|source| KeyStoreError::Io { path: dir.clone(), source })?;
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io_error(&self, path: &Path) -> impl FnOnce(std::io::Error) -> KeyStoreError {
        let path = path.to_path_buf();
        move |source| KeyStoreError::Io { path, source }
    }

    fn read_state(&self) -> Result<Option<State>, KeyStoreError> {
        let path = self.dir.join(STATE_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| KeyStoreError::State { path, detail: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io_error(&path)(e)),
        }
    }

    fn read_key(&self, kid: &str) -> Result<SigningKey, KeyStoreError> {
        let path = self.dir.join(format!("{kid}.pem"));
        let pem = fs::read_to_string(&path).map_err(self.io_error(&path))?;
        SigningKey::from_pem(&pem).map_err(|source| KeyStoreError::Key { path, source })
    }

    /// Writes `contents` to `name` atomically with mode 0600.
    fn write_file(&self, name: &str, contents: &[u8]) -> Result<(), KeyStoreError> {
        let path = self.dir.join(name);
        crate::files::write_private(&path, contents).map_err(self.io_error(&path))
    }

    fn save(&self, state: &State, new_key: Option<&SigningKey>) -> Result<(), KeyStoreError> {
        if let Some(key) = new_key {
            self.write_file(&format!("{}.pem", key.kid()), key.to_pkcs8_pem().as_bytes())?;
        }
        let json = serde_json::to_vec_pretty(state).map_err(|e| KeyStoreError::State {
            path: self.dir.join(STATE_FILE),
            detail: e.to_string(),
        })?;
        self.write_file(STATE_FILE, &json)
    }

    /// The key set, or `None` when no key was ever made. Retired keys past their
    /// `verify_until` are left out.
    pub fn load(&self, now: Timestamp) -> Result<Option<KeySet>, KeyStoreError> {
        let Some(state) = self.read_state()? else { return Ok(None) };
        let active = self.read_key(&state.active)?;
        let mut others = Vec::new();
        for retired in state.retired.iter().filter(|r| r.verify_until >= now.unix()) {
            others.push(self.read_key(&retired.kid)?.verifying_key().clone());
        }
        Ok(Some(KeySet::new(active, others)))
    }

    /// Loads the key set, generating a first key of `alg` if there is none.
    pub fn load_or_create(&self, alg: Algorithm, now: Timestamp) -> Result<KeySet, KeyStoreError> {
        if let Some(keys) = self.load(now)? {
            return Ok(keys);
        }
        let key = generate(alg)?;
        self.save(&State { active: key.kid().to_owned(), retired: Vec::new() }, Some(&key))?;
        Ok(KeySet::new(key, Vec::new()))
    }

    /// Makes `key` the active signing key. The previous active key keeps verifying for
    /// `longest_lifetime` seconds (until the last token it signed has expired); retired keys
    /// already past their time are forgotten and their files removed.
    pub fn activate(&self, key: SigningKey, now: Timestamp, longest_lifetime: i64) -> Result<KeySet, KeyStoreError> {
        let mut state = self.read_state()?.unwrap_or_default();
        if !state.active.is_empty() && state.active != key.kid() {
            state.retired.retain(|r| r.kid != state.active);
            state.retired.push(Retired { kid: state.active.clone(), verify_until: now.plus(longest_lifetime).unix() });
        }
        state.retired.retain(|r| r.kid != key.kid());
        let (live, expired): (Vec<_>, Vec<_>) = state.retired.into_iter().partition(|r| r.verify_until >= now.unix());
        state.retired = live;
        state.active = key.kid().to_owned();
        self.save(&state, Some(&key))?;
        for gone in expired {
            // Best effort: a leftover file of an expired key is never loaded again.
            let _ = fs::remove_file(self.dir.join(format!("{}.pem", gone.kid)));
        }
        self.load(now)?.ok_or_else(|| KeyStoreError::State { path: self.dir.join(STATE_FILE), detail: "vanished".into() })
    }

    /// Rotates to a freshly generated key of `alg`.
    pub fn rotate(&self, alg: Algorithm, now: Timestamp, longest_lifetime: i64) -> Result<KeySet, KeyStoreError> {
        self.activate(generate(alg)?, now, longest_lifetime)
    }

    /// Imports an existing PEM private key (PKCS#8, PKCS#1 or SEC1), e.g. a cluster's
    /// `--service-account-private-key-file`, as the active key.
    pub fn import_pem(&self, pem: &str, now: Timestamp, longest_lifetime: i64) -> Result<KeySet, KeyStoreError> {
        let key = SigningKey::from_pem(pem).map_err(|source| KeyStoreError::Key { path: PathBuf::from("<import>"), source })?;
        self.activate(key, now, longest_lifetime)
    }
}
