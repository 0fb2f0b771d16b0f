//! Cluster mode: `tokenwarden serve --store etcd` replicas sharing one real etcd cluster
//! (`tokenwarden_testkit::etcd`), for the test binaries that need several replicas.

use std::path::{Path, PathBuf};

use tokenwarden_testkit::etcd::EtcdCluster;

use super::{Server, unique};

pub const ISSUER: &str = "https://tokenwarden.cluster.test";

/// Writes a fixed test key encryption key (32 bytes, base64) to `dir/kek`; returns its path.
pub fn write_kek(dir: &Path) -> PathBuf {
    let kek = dir.join("kek");
    std::fs::write(&kek, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n").unwrap();
    kek
}

/// Flags for one replica of a cluster on `etcd` under `prefix`, sharing `kek_file`.
pub fn replica_args(etcd: &EtcdCluster, prefix: &str, kek_file: &Path) -> Vec<String> {
    vec![
        "--store".into(),
        "etcd".into(),
        "--etcd-endpoints".into(),
        etcd.endpoints_arg(),
        "--etcd-prefix".into(),
        prefix.into(),
        "--etcd-key-encryption-key-file".into(),
        kek_file.display().to_string(),
        "--issuer".into(),
        ISSUER.into(),
    ]
}

/// Two replicas on one (fresh) prefix of `etcd`, with one key encryption key.
pub fn two_replicas(etcd: &EtcdCluster) -> (Server, Server, tempfile::TempDir) {
    two_replicas_with(etcd, &[], &[])
}

/// Like [`two_replicas`], with extra `serve` flags for the first (`a_flags`) and the second
/// (`b_flags`) replica, e.g. their authorizer listeners.
pub fn two_replicas_with(etcd: &EtcdCluster, a_flags: &[&str], b_flags: &[&str]) -> (Server, Server, tempfile::TempDir) {
    let secrets = tempfile::tempdir().unwrap();
    let kek = write_kek(secrets.path());
    let prefix = format!("/{}", unique("cluster"));
    let args = replica_args(etcd, &prefix, &kek);
    let start = |extra: &[&str]| {
        let all: Vec<&str> = args.iter().map(String::as_str).chain(extra.iter().copied()).collect();
        Server::start_with(&all)
    };
    let a = start(a_flags);
    let b = start(b_flags);
    (a, b, secrets)
}

/// The value of the gauge `name` on the metrics listener at `port` (-1 when it is missing).
pub fn gauge(port: u16, name: &str) -> i64 {
    let (status, _, body) = super::http(port, "/metrics", "localhost", None);
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(-1)
}

/// Whether `server` accepts `token` (TokenReview through `tokenwarden review`).
pub fn accepted(server: &Server, token: &str) -> bool {
    server.tool(&["review", token]).status.success()
}
