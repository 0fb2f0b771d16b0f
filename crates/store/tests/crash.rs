//! Crash safety: a writer process is SIGKILLed mid-stream; every write it acknowledged
//! (its `create` returned) must be in the store when it is reopened, and so must the
//! signing keys it made (one before the stream, one rotated to in the middle of it).
//!
//! The parent test re-executes this test binary as the writer: `<exe> --exact
//! crash_child_writer --nocapture` with `CHILD_ENV` naming the data directory. Without
//! that variable the child test returns at once, so a normal `cargo test` run skips it.

// Test helpers outside `#[test]` functions unwrap too (allow-unwrap-in-tests covers only the latter).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use serde_json::json;
use tokenwarden_core::{Object, Resource};
use tokenwarden_store::sqlite::SqliteStore;
use tokenwarden_core::keys::Algorithm;
use tokenwarden_store::{Clock as _, KeyStore, Store, SystemClock};

/// Set (to the data directory) in the writer process only.
const CHILD_ENV: &str = "TOKENWARDEN_CRASH_CHILD_DIR";
const CHILD_TEST: &str = "crash_child_writer";
const ACKS_BEFORE_KILL: usize = 200;
const NAMESPACE: &str = "crash";

/// The store file inside a data directory (signing keys will live next to it).
fn store_path(data_dir: &Path) -> PathBuf {
    data_dir.join("store.db")
}

/// What the writer acknowledged before it died.
#[derive(Debug, Default)]
struct Acked {
    /// ServiceAccount name → uid.
    objects: BTreeMap<String, String>,
    /// Signing keys the writer made, by `kid`, in order: the first key, then its rotation.
    keys: Vec<String>,
}

impl Acked {
    fn record(&mut self, line: &str) -> bool {
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("ACK"), Some(name), Some(uid), None) => {
                self.objects.insert(name.to_owned(), uid.to_owned());
                true
            }
            (Some("ACK-KEY"), Some(kid), None, None) => {
                self.keys.push(kid.to_owned());
                true
            }
            _ => false,
        }
    }
}

/// Asserts that everything the writer acknowledged survived in `data_dir`.
async fn check_data_dir(data_dir: &Path, acked: &Acked) {
    let store = SqliteStore::open(&store_path(data_dir), Arc::new(SystemClock)).expect("reopen after SIGKILL");
    for (name, uid) in &acked.objects {
        let object = store
            .get(&Resource::SERVICE_ACCOUNTS, NAMESPACE, name)
            .await
            .unwrap_or_else(|e| panic!("acknowledged object {name} lost after SIGKILL: {e}"));
        assert_eq!(object.uid(), uid, "uid of {name} changed");
    }
    // The namespace the writer made before its first object (every acknowledged create needed it).
    store.get(&Resource::NAMESPACES, "", NAMESPACE).await.expect("the writer's namespace survives SIGKILL");
    // Revisions continue after the last (acknowledged or not) write: the namespace's, then
    // one per object.
    let revision = store.current_revision().await.unwrap();
    assert!(revision > u64::try_from(acked.objects.len()).unwrap());
    let next = store
        .create(&Resource::SERVICE_ACCOUNTS, Object::from_value(json!({"metadata": {"name": "after-crash", "namespace": NAMESPACE}})).unwrap())
        .await
        .unwrap();
    assert_eq!(next.resource_version(), (revision + 1).to_string());
    // The feed is whole: one event per revision still kept.
    let events = store.events_since(0).await.unwrap();
    assert!(events.windows(2).all(|w| w[1].revision == w[0].revision + 1));
    assert_eq!(events.last().map(|e| e.revision), Some(revision + 1));

    // Both signing keys: the rotated-to key signs, the first one still verifies.
    assert_eq!(acked.keys.len(), 2, "the writer acknowledged two keys before the kill");
    let keys = KeyStore::open(data_dir.join("keys"))
        .unwrap()
        .load(SystemClock.now())
        .expect("key store reopens after SIGKILL")
        .expect("keys survive SIGKILL");
    assert_eq!(keys.signing().kid(), acked.keys[1]);
    assert!(keys.find(&acked.keys[0]).is_some(), "the rotated-out key still verifies");
}

/// The writer: creates the namespace, then ServiceAccounts in it until killed, acknowledging
/// each on stdout.
#[tokio::test]
async fn crash_child_writer() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = SqliteStore::open(&store_path(Path::new(&dir)), Arc::new(SystemClock)).expect("child opens the store");
    // A namespaced create needs its namespace.
    store
        .create(&Resource::NAMESPACES, Object::from_value(json!({"metadata": {"name": NAMESPACE}})).unwrap())
        .await
        .expect("child creates the namespace");
    let mut stdout = std::io::stdout().lock();
    let keys = KeyStore::open(Path::new(&dir).join("keys")).unwrap();
    let first = keys.load_or_create(Algorithm::Rs256, SystemClock.now()).unwrap();
    writeln!(stdout, "ACK-KEY {}", first.signing().kid()).unwrap();
    for i in 0u64.. {
        if i == 100 {
            // Rotate in the middle of the stream of object writes.
            let rotated = keys.rotate(Algorithm::Es256, SystemClock.now(), 3600).unwrap();
            writeln!(stdout, "ACK-KEY {}", rotated.signing().kid()).unwrap();
        }
        let name = format!("sa-{i}");
        let object = Object::from_value(json!({
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"i": i.to_string()}},
            "payload": "x".repeat(512),
        }))
        .unwrap();
        let created = store.create(&Resource::SERVICE_ACCOUNTS, object).await.expect("child create");
        writeln!(stdout, "ACK {name} {}", created.uid()).unwrap();
        stdout.flush().unwrap();
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", CHILD_TEST, "--nocapture"])
        .env(CHILD_ENV, dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = Acked::default();
    let mut lines = BufReader::new(stdout).lines();
    while acked.objects.len() < ACKS_BEFORE_KILL {
        match lines.next() {
            Some(Ok(line)) => {
                acked.record(&line);
            }
            Some(Err(e)) => panic!("reading the writer's output: {e}"),
            None => {
                let status = child.wait().unwrap();
                panic!("writer exited ({status}) after {} acknowledgements", acked.objects.len());
            }
        }
    }
    // SIGKILL on Unix: no destructors, no flush, no clean close.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the writer was killed");
    // Lines written after the kill decision were acknowledged too.
    for line in lines.map_while(Result::ok) {
        acked.record(&line);
    }
    check_data_dir(dir.path(), &acked).await;
}
