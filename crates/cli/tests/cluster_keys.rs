//! Cluster mode: what replicas share besides objects (the CA, the admin credential, the
//! signing keys) and the leader that rotates the keys. Real `tokenwarden serve --store etcd`
//! replicas on a real three-member etcd cluster (`tokenwarden_testkit`).

// Helpers outside `#[test]` functions unwrap too (allow-unwrap-in-tests covers only the latter).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine as _;
use common::cluster::{accepted, gauge, replica_args, two_replicas, write_kek};
use common::{Server, describe, free_port, unique};
use tokenwarden_store::clock::Stopwatch;
use tokenwarden_testkit::etcd::EtcdCluster;

/// The `kid` in a token's JOSE header.
fn kid(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    json["kid"].as_str().unwrap().to_owned()
}

/// Polls `done` every 100 ms until it holds or `limit` seconds passed; whether it held.
fn eventually(limit: f64, mut done: impl FnMut() -> bool) -> bool {
    let since = Stopwatch::start();
    loop {
        if done() {
            return true;
        }
        if since.elapsed_seconds() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A replica of the cluster under `prefix` with its metrics on `metrics_port`.
fn replica(etcd: &EtcdCluster, prefix: &str, kek: &std::path::Path, metrics_port: u16, extra: &[&str]) -> Server {
    let metrics = format!("127.0.0.1:{metrics_port}");
    let args = replica_args(etcd, prefix, kek);
    let all: Vec<&str> = args.iter().map(String::as_str).chain(["--metrics-listen", metrics.as_str()]).chain(extra.iter().copied()).collect();
    Server::start_with(&all)
}

/// Two replicas rotating the signing key every two seconds, and a namespace with a
/// ServiceAccount `bot` to mint for.
struct Rotating {
    a: Server,
    b: Server,
    a_metrics: u16,
    b_metrics: u16,
    ns: String,
    _secrets: tempfile::TempDir,
}

impl Rotating {
    fn start(name: &str) -> Self {
        let etcd = EtcdCluster::shared();
        let secrets = tempfile::tempdir().unwrap();
        let kek = write_kek(secrets.path());
        let prefix = format!("/{}", unique(name));
        let rotate = ["--signing-key-rotation-period", "2s"];
        let (a_metrics, b_metrics) = (free_port(), free_port());
        let a = replica(etcd, &prefix, &kek, a_metrics, &rotate);
        let b = replica(etcd, &prefix, &kek, b_metrics, &rotate);
        let ns = unique(name);
        a.kubectl_ok(&["create", "namespace", &ns]);
        a.kubectl_ok(&["create", "serviceaccount", "bot", "-n", &ns]);
        Self { a, b, a_metrics, b_metrics, ns, _secrets: secrets }
    }
}

#[test]
fn replicas_serve_under_one_ca_with_one_admin_credential() {
    let (a, b, _secrets) = two_replicas(EtcdCluster::shared());
    assert_eq!(a.admin_token(), b.admin_token(), "each replica made its own admin credential");
    // A's admin kubeconfig works against B, as it must through a load balancer: B's serving
    // certificate chains to the same CA and B accepts the same credential.
    let names = a.kubectl_ok(&["--server", &b.url, "get", "namespaces", "-o", "name"]);
    assert!(names.contains("namespace/default"), "{names}");
    let pki = a.data_dir.join("pki");
    assert!(!pki.join("ca.key").exists(), "the shared CA's key was written to a replica's data directory");
}

#[test]
fn one_leader_rotates_the_signing_key_and_tokens_from_either_replica_verify_on_both_throughout() {
    let Rotating { a, b, a_metrics, b_metrics, ns, _secrets } = Rotating::start("rotation");
    let first = a.token(&ns, "bot", &[]);

    // Exactly one replica leads.
    assert!(eventually(15.0, || gauge(a_metrics, "tokenwarden_cluster_leader") + gauge(b_metrics, "tokenwarden_cluster_leader") == 1));

    // Through two rotations, every token either replica mints verifies on the other at once:
    // no replica ever signs with a key the other does not know yet.
    let mut kids = BTreeSet::from([kid(&first)]);
    let rotating = Stopwatch::start();
    while kids.len() < 3 {
        assert!(rotating.elapsed_seconds() < 30.0, "fewer than two rotations in 30 s with a 2 s period: {kids:?}\n{}", a.stderr());
        for (minter, reviewer, names) in [(&a, &b, "A→B"), (&b, &a, "B→A")] {
            let token = minter.token(&ns, "bot", &[]);
            let review = reviewer.tool(&["review", &token]);
            assert!(review.status.success(), "{names}: a token signed with {} is refused\n{}", kid(&token), describe(&review));
            kids.insert(kid(&token));
        }
    }
    // The keys rotated out keep verifying the tokens they signed until those expire.
    assert!(accepted(&a, &first) && accepted(&b, &first), "a token signed before the rotations is refused");

    // The leader goes away: the other replica takes over within the lease's time to live and
    // rotates on.
    let (mut leader, follower, follower_metrics) =
        if gauge(a_metrics, "tokenwarden_cluster_leader") == 1 { (a, b, b_metrics) } else { (b, a, a_metrics) };
    leader.kill();
    assert!(eventually(20.0, || gauge(follower_metrics, "tokenwarden_cluster_leader") == 1), "no new leader\n{}", follower.stderr());
    let known = kids.len();
    assert!(
        eventually(20.0, || {
            let token = follower.token(&ns, "bot", &[]);
            assert!(accepted(&follower, &token));
            kids.insert(kid(&token));
            kids.len() > known
        }),
        "the new leader does not rotate\n{}",
        follower.stderr()
    );
    assert!(accepted(&follower, &first));
}

#[test]
fn a_replica_paused_past_its_lease_joins_again_and_follows_the_keys() {
    let Rotating { a, b, a_metrics, b_metrics, ns, _secrets } = Rotating::start("paused");
    let leads = |metrics| gauge(metrics, "tokenwarden_cluster_leader");
    assert!(eventually(15.0, || leads(a_metrics) + leads(b_metrics) == 1));
    let (leader, follower, leader_metrics, follower_metrics) = if leads(a_metrics) == 1 { (&a, &b, a_metrics, b_metrics) } else { (&b, &a, b_metrics, a_metrics) };

    // Paused past its lease's time to live (a stopped VM, a partition): its lease expires, and
    // the leader rotates on without it.
    follower.signal("STOP");
    std::thread::sleep(Duration::from_secs(u64::try_from(tokenwarden_store::cluster::LEASE_TTL_SECONDS).unwrap() + 3));
    follower.signal("CONT");
    // Back, it joins again and learns the keys signed with since: the leader's tokens verify on
    // it, and one replica leads.
    assert!(eventually(20.0, || accepted(follower, &leader.token(&ns, "bot", &[]))), "the follower does not learn the new keys\n{}", follower.stderr());
    assert!(eventually(10.0, || leads(leader_metrics) + leads(follower_metrics) == 1));
}

#[test]
fn a_signing_key_file_given_to_one_replica_becomes_the_signing_key_of_every_replica() {
    let etcd = EtcdCluster::shared();
    let secrets = tempfile::tempdir().unwrap();
    let kek = write_kek(secrets.path());
    let prefix = format!("/{}", unique("import"));
    let a = replica(etcd, &prefix, &kek, free_port(), &[]);
    let ns = unique("import");
    a.kubectl_ok(&["create", "namespace", &ns]);
    a.kubectl_ok(&["create", "serviceaccount", "bot", "-n", &ns]);
    let before = a.token(&ns, "bot", &[]);

    // A cluster's existing service-account key (PKCS#8 P-256), imported by a second replica.
    let key = secrets.path().join("sa.key");
    let out = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let b = replica(etcd, &prefix, &kek, free_port(), &["--signing-key-file", key.to_str().unwrap()]);

    // Once both know it, both sign with it; tokens cross-verify, and the old key's still do.
    let mut last = (String::new(), String::new());
    let switched = eventually(20.0, || {
        last = (kid(&a.token(&ns, "bot", &[])), kid(&b.token(&ns, "bot", &[])));
        last.0 == last.1 && last.0 != kid(&before)
    });
    assert!(switched, "the imported key does not sign on both replicas: {last:?}\n{}", b.stderr());
    let imported = b.token(&ns, "bot", &[]);
    assert!(accepted(&a, &imported) && accepted(&b, &before), "tokens do not cross-verify after the import");
}
