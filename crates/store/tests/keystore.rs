//! Signing keys on disk: created once, reused, rotated with the old key verifying until its
//! last token expires, imported from a cluster's PEM, files mode 0600.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::os::unix::fs::PermissionsExt as _;

use tokenwarden_core::Timestamp;
use tokenwarden_core::keys::Algorithm;
use tokenwarden_store::KeyStore;
use tokenwarden_store::keystore::{self, KeyStoreError};

const T0: Timestamp = Timestamp(1_800_000_000);

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn first_load_creates_a_key_and_later_loads_reuse_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open(dir.path().join("keys")).unwrap();
    assert!(store.load(T0).unwrap().is_none());
    let keys = store.load_or_create(Algorithm::Rs256, T0).unwrap();
    assert_eq!(keys.signing().algorithm(), Algorithm::Rs256);
    let kid = keys.signing().kid().to_owned();

    let pem_path = dir.path().join("keys").join(format!("{kid}.pem"));
    assert_eq!(mode(&pem_path), 0o600);
    assert_eq!(mode(&dir.path().join("keys")), 0o700);
    assert!(std::fs::read_to_string(&pem_path).unwrap().starts_with("-----BEGIN PRIVATE KEY-----\n"));

    let again = KeyStore::open(dir.path().join("keys")).unwrap().load_or_create(Algorithm::Es256, T0).unwrap();
    assert_eq!(again.signing().kid(), kid, "an existing key is reused, whatever algorithm is asked for");
}

#[test]
fn rotation_keeps_the_old_key_verifying_until_its_tokens_expire() {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open(dir.path()).unwrap();
    let first = store.load_or_create(Algorithm::Rs256, T0).unwrap().signing().kid().to_owned();
    let rotated = store.rotate(Algorithm::Es256, T0, 3600).unwrap();
    let second = rotated.signing().kid().to_owned();
    assert_ne!(first, second);
    assert_eq!(rotated.signing().algorithm(), Algorithm::Es256);
    assert!(rotated.find(&first).is_some(), "old key still verifies");
    assert_eq!(rotated.jwks()["keys"].as_array().unwrap().len(), 2);

    // Reopened: both keys, until the old one's last token has expired.
    let reopened = KeyStore::open(dir.path()).unwrap();
    assert!(reopened.load(T0.plus(3600)).unwrap().unwrap().find(&first).is_some());
    let later = reopened.load(T0.plus(3601)).unwrap().unwrap();
    assert!(later.find(&first).is_none(), "expired retired key no longer verifies");
    assert_eq!(later.signing().kid(), second);

    // The next rotation after that removes the expired key's file.
    store.rotate(Algorithm::Rs256, T0.plus(4000), 3600).unwrap();
    assert!(!dir.path().join(format!("{first}.pem")).exists());
    assert!(dir.path().join(format!("{second}.pem")).exists());
}

#[test]
fn imports_a_clusters_pem_key() {
    let out = std::process::Command::new("openssl").args(["genrsa", "-traditional", "2048"]).output().unwrap();
    assert!(out.status.success());
    let pem = String::from_utf8(out.stdout).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::open(dir.path()).unwrap();
    let generated = store.load_or_create(Algorithm::Rs256, T0).unwrap().signing().kid().to_owned();
    let imported = store.import_pem(&pem, T0, 3600).unwrap();
    assert_eq!(imported.signing().kid(), tokenwarden_core::keys::SigningKey::from_pem(&pem).unwrap().kid());
    assert!(imported.find(&generated).is_some());

    let bad = store.import_pem("not a key", T0, 3600).unwrap_err();
    assert!(matches!(bad, KeyStoreError::Key { .. }), "{bad}");
    assert_eq!(store.load(T0).unwrap().unwrap().signing().kid(), imported.signing().kid(), "a failed import changes nothing");
}

#[test]
fn corrupt_state_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keys.json"), b"{not json").unwrap();
    let err = KeyStore::open(dir.path()).unwrap().load(T0).unwrap_err();
    assert!(err.to_string().starts_with("key state "), "{err}");
    let _ = keystore::generate(Algorithm::Es256).unwrap();
}
