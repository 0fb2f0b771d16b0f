//! Cluster mode end to end: real `tokenwarden serve --store etcd` replicas on a real
//! three-member etcd cluster (Debian's `etcd-server`, started by the test on loopback
//! ports; without it these tests fail with how to install it).

// Helpers outside `#[test]` functions unwrap too (allow-unwrap-in-tests covers only the latter).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::cluster::{ISSUER, accepted, gauge, replica_args, two_replicas, two_replicas_with, write_kek};
use common::{Server, describe, text, unique};
use tokenwarden_store::clock::Stopwatch;
use tokenwarden_testkit::etcd::{EtcdCluster, TlsFiles};

/// Polls `done` every 20 ms for up to `seconds`; whether it came true.
fn within(seconds: f64, mut done: impl FnMut() -> bool) -> bool {
    let since = Stopwatch::start();
    loop {
        if done() {
            return true;
        }
        if since.elapsed_seconds() >= seconds {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_token_minted_on_one_replica_is_reviewed_on_the_other_and_revoked_on_both_within_a_second() {
    let etcd = EtcdCluster::shared();
    let (a, b, _secrets) = two_replicas(etcd);
    let ns = unique("team");
    a.kubectl_ok(&["create", "namespace", &ns]);
    a.kubectl_ok(&["create", "serviceaccount", "bot", "-n", &ns]);

    // Minted on A (signed with the key set A created in etcd), verified by B (which loaded it).
    let token = a.token(&ns, "bot", &[]);
    let review = b.tool(&["review", &token, "-o", "json"]);
    assert!(review.status.success(), "B rejects A's token\n{}\n--- B stderr ---\n{}", describe(&review), b.stderr());
    assert!(text(&review.stdout).contains(&format!("system:serviceaccount:{ns}:bot")), "{}", text(&review.stdout));
    // And the other way round.
    let from_b = b.token(&ns, "bot", &[]);
    assert!(accepted(&a, &from_b), "A rejects B's token\n{}", a.stderr());

    // Deleted through B: A denies the token within one second (its index follows etcd's watch).
    b.kubectl_ok(&["delete", "serviceaccount", "bot", "-n", &ns]);
    assert!(within(1.0, || !accepted(&a, &token)), "A still accepts the token of a ServiceAccount deleted through B 1 s ago\n{}", a.stderr());
    assert!(!accepted(&b, &token));
}

#[test]
fn both_replicas_serve_the_key_set_kept_in_etcd() {
    let etcd = EtcdCluster::shared();
    let (a, b, _secrets) = two_replicas(etcd);
    let jwks = |s: &Server| s.kubectl_json(&["get", "--raw", "/openid/v1/jwks"]);
    assert_eq!(jwks(&a), jwks(&b));
    assert_eq!(jwks(&a)["keys"].as_array().map(Vec::len), Some(1));
}

#[test]
fn etcd_mode_flags_are_checked_before_starting() {
    let run = |args: &[&str]| std::process::Command::new(common::BIN).arg("serve").args(args).output().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["--signing-key-rotation-period", "24h"], "--signing-key-rotation-period needs --store etcd"),
        (&["--store", "etcd", "--etcd-endpoints", "http://127.0.0.1:2379", "--issuer", ISSUER, "--signing-key-rotation-period", "500ms"], "must be at least 1s"),
        (&["--store", "etcd", "--issuer", ISSUER], "--store etcd needs --etcd-endpoints"),
        (&["--store", "etcd", "--etcd-endpoints", "http://127.0.0.1:2379"], "--store etcd needs --issuer"),
        (&["--etcd-endpoints", "http://127.0.0.1:2379"], "--etcd-* flags need --store etcd"),
        (&["--store", "etcd", "--etcd-endpoints", "127.0.0.1:2379", "--issuer", ISSUER], "invalid --etcd-endpoints entry"),
    ];
    for (args, expected) in cases {
        let out = run(args);
        assert_eq!(out.status.code(), Some(64), "{args:?}\n{}", describe(&out));
        assert!(text(&out.stderr).contains(expected), "{args:?}: expected {expected:?}\n{}", describe(&out));
    }
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--store", "etcd", "--etcd-endpoints", "http://127.0.0.1:2379", "--issuer", ISSUER])
        .env_remove("TOKENWARDEN_KEY_ENCRYPTION_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", describe(&out));
    assert!(text(&out.stderr).contains("needs a key encryption key"), "{}", describe(&out));
}

#[test]
fn a_replica_started_before_etcd_waits_for_it() {
    // A cluster whose members are all down when the replica starts, back two seconds later
    // (services started side by side come up in any order).
    let mut etcd = EtcdCluster::start(1);
    etcd.kill_all();
    let secrets = tempfile::tempdir().unwrap();
    let args = replica_args(&etcd, "/late", &write_kek(secrets.path()));
    let etcd = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        etcd.restart_all();
        etcd
    });
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Waits for ready, and fails if the replica exits first.
    let server = Server::start_with(&args);
    let _etcd = etcd.join().unwrap();
    assert!(server.stderr().contains("waiting for etcd to listen"), "{}", server.stderr());
    let ns = unique("late");
    server.kubectl_ok(&["create", "namespace", &ns]);
}

#[test]
fn etcd_outages_keep_reviews_working_fail_writes_with_503_and_recover() {
    // Its own cluster: members are killed.
    let mut etcd = EtcdCluster::start(3);
    let a_metrics = common::free_port();
    let (a, b, _secrets) = two_replicas_with(&etcd, &["--metrics-listen", &format!("127.0.0.1:{a_metrics}")], &[]);
    let ns = unique("outage");
    a.kubectl_ok(&["create", "namespace", &ns]);
    a.kubectl_ok(&["create", "serviceaccount", "bot", "-n", &ns]);
    let token = a.token(&ns, "bot", &[]);

    // One member down: the other two keep quorum; both replicas keep writing and reviewing.
    etcd.kill_member(0);
    a.kubectl_ok(&["create", "serviceaccount", "second", "-n", &ns]);
    b.kubectl_ok(&["label", "serviceaccount", "second", "-n", &ns, "member=down"]);
    let second = b.token(&ns, "second", &[]);
    assert!(accepted(&a, &second), "A rejects a token minted by B with one etcd member down\n{}", a.stderr());
    assert!(accepted(&b, &token));

    // Every member down: reviews are answered from the in-memory index; writes are a 503
    // Status, never a silent success.
    etcd.kill_all();
    assert!(accepted(&a, &token), "reviews stop with etcd down\n{}", a.stderr());
    assert!(accepted(&b, &second));
    let out = b.kubectl(&["create", "serviceaccount", "third", "-n", &ns, "-v=6"]);
    assert!(!out.status.success(), "a write succeeded with etcd down\n{}", describe(&out));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("503 Service Unavailable"), "{}", describe(&out));
    assert!(stderr.contains("storage backend is unavailable; retry later"), "{}", describe(&out));

    // The outage is explicit: /readyz stays ok (reviews go on) but says how stale they may
    // be; the strict /readyz/etcd fails; the metric counts the seconds.
    let outage = Stopwatch::start();
    let verbose = loop {
        let verbose = a.kubectl_ok(&["get", "--raw", "/readyz?verbose"]);
        if verbose.contains("[+]etcd-watch-cache ok: etcd unreachable for") || outage.elapsed_seconds() > 10.0 {
            break verbose;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(verbose.contains("[+]etcd-watch-cache ok: etcd unreachable for"), "{verbose}");
    assert!(verbose.contains("writes fail with 503") && verbose.ends_with("readyz check passed\n"), "{verbose}");
    assert_eq!(a.kubectl_ok(&["get", "--raw", "/readyz"]).trim(), "ok");
    let strict = a.https("GET", "/readyz/etcd", Some(&a.admin_token()), None);
    assert_eq!(strict["status"], 500, "{strict}");
    assert!(strict["body"].as_str().unwrap().starts_with("[-]etcd failed: etcd unreachable for"), "{strict}");
    while gauge(a_metrics, "tokenwarden_etcd_unreachable_seconds") < 1 {
        assert!(outage.elapsed_seconds() < 10.0, "the unreachable-seconds gauge does not grow during the outage\n{}", a.stderr());
        std::thread::sleep(Duration::from_millis(200));
    }

    // etcd back: writes work again and both replicas' watches resume, without a restart.
    etcd.restart_all();
    let recovered = Stopwatch::start();
    while !b.kubectl(&["create", "serviceaccount", "third", "-n", &ns]).status.success() {
        assert!(recovered.elapsed_seconds() < 10.0, "writes still fail 10 s after etcd came back\n{}", b.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
    // A's index learns of the object B wrote (TokenRequest looks the ServiceAccount up there).
    while !a.kubectl(&["create", "token", "third", "-n", &ns]).status.success() {
        assert!(recovered.elapsed_seconds() < 10.0, "A's watch did not resume after etcd came back\n{}", a.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
    b.kubectl_ok(&["delete", "serviceaccount", "second", "-n", &ns]);
    assert!(within(1.0, || !accepted(&a, &second)), "A still accepts a token revoked through B after recovery\n{}", a.stderr());
    assert!(a.kubectl_ok(&["get", "--raw", "/readyz?verbose"]).contains("[+]etcd ok\n"));
    assert_eq!(gauge(a_metrics, "tokenwarden_etcd_unreachable_seconds"), 0);
}

#[test]
fn concurrent_updates_through_both_replicas_never_lose_an_update() {
    let etcd = EtcdCluster::shared();
    let (a, b, _secrets) = two_replicas(etcd);
    let ns = unique("race");
    a.kubectl_ok(&["create", "namespace", &ns]);
    a.kubectl_ok(&["create", "serviceaccount", "counter", "-n", &ns]);
    const PER_REPLICA: u64 = 4;
    // Read, increment an annotation, write back with the resourceVersion read (kubectl
    // replace is a PUT carrying it); a 409 Conflict means: read again.
    let increment = |server: &Server| {
        let mut conflicts = 0;
        for _ in 0..PER_REPLICA {
            loop {
                let mut sa = server.kubectl_json(&["get", "serviceaccount", "counter", "-n", &ns, "-o", "json"]);
                let count: u64 = sa["metadata"]["annotations"]["count"].as_str().unwrap_or("0").parse().unwrap();
                sa["metadata"]["annotations"]["count"] = serde_json::json!((count + 1).to_string());
                let out = server.kubectl_stdin(&["replace", "-f", "-"], &sa.to_string());
                if out.status.success() {
                    break;
                }
                let stderr = text(&out.stderr);
                assert!(stderr.contains("the object has been modified"), "{}", describe(&out));
                conflicts += 1;
            }
        }
        conflicts
    };
    let (conflicts_a, conflicts_b) = std::thread::scope(|s| {
        let on_a = s.spawn(|| increment(&a));
        let on_b = s.spawn(|| increment(&b));
        (on_a.join().unwrap(), on_b.join().unwrap())
    });
    let sa = b.kubectl_json(&["get", "serviceaccount", "counter", "-n", &ns, "-o", "json"]);
    assert_eq!(
        sa["metadata"]["annotations"]["count"],
        (2 * PER_REPLICA).to_string(),
        "updates lost ({conflicts_a} + {conflicts_b} conflicts answered)"
    );
}

#[test]
fn the_namespace_and_service_account_controllers_act_for_both_replicas() {
    let etcd = EtcdCluster::shared();
    let (a, b, _secrets) = two_replicas(etcd);
    let ns = unique("life");
    a.kubectl_ok(&["create", "namespace", &ns]);
    a.kubectl_ok(&["create", "serviceaccount", "bot", "-n", &ns]);
    let uid = |s: &Server| s.kubectl_json(&["get", "serviceaccount", "default", "-n", &ns, "-o", "json"])["metadata"]["uid"].clone();
    // The default ServiceAccount the namespace got on A is B's too.
    let first = uid(&a);
    assert!(first.is_string(), "no default ServiceAccount in a new namespace");
    assert_eq!(uid(&b), first);

    // Deleted through B, the default ServiceAccount is made again (kube's serviceaccounts
    // controller), and A reads the new one.
    b.kubectl_ok(&["delete", "serviceaccount", "default", "-n", &ns]);
    let second = uid(&b);
    assert!(second.is_string() && second != first, "B did not make the default ServiceAccount again: {second}");
    assert!(within(5.0, || uid(&a) == second), "A does not read B's new default ServiceAccount\n{}", a.stderr());
    // So a pod created through A that names no account is admitted, and runs as it.
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: {ns}\nspec:\n  containers:\n  - name: main\n    image: registry.k8s.io/pause:3.10\n"
    );
    a.kubectl_stdin_ok(&["create", "-f", "-"], &pod);
    let created = b.kubectl_json(&["get", "pod", "web", "-n", &ns, "-o", "json"]);
    assert_eq!(created["spec"]["serviceAccountName"], "default", "{created}");

    // Deleted through B, the namespace is gone for A with everything in it, and A refuses
    // the tokens of its ServiceAccounts within a second (its index follows etcd's watch).
    let token = a.token(&ns, "bot", &[]);
    assert!(accepted(&a, &token));
    b.kubectl_ok(&["delete", "namespace", &ns]);
    assert!(within(1.0, || !accepted(&a, &token)), "A still accepts a token of a namespace deleted through B\n{}", a.stderr());
    let gone = a.kubectl_err(&["get", "namespace", &ns]);
    assert!(gone.contains(&format!("namespaces \"{ns}\" not found")), "{gone}");
    for kind in ["serviceaccounts", "pods"] {
        let listed = a.kubectl_json(&["get", kind, "-n", &ns, "-o", "json"]);
        assert_eq!(listed["items"], serde_json::json!([]), "{kind} left in a deleted namespace: {listed}");
    }
}

/// A CA, a serving certificate for 127.0.0.1 and a client certificate, as PEM files in `dir`:
/// (etcd's files, client cert, client key).
fn etcd_tls_files(dir: &std::path::Path) -> (TlsFiles, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |name: &str, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer).unwrap();
        let (cert_path, key_path) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}-key.pem")));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    };
    let (server_cert, server_key) = leaf("etcd", ExtendedKeyUsagePurpose::ServerAuth);
    let (client_cert, client_key) = leaf("tokenwarden", ExtendedKeyUsagePurpose::ClientAuth);
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    (TlsFiles { ca, server_cert, server_key }, client_cert, client_key)
}

#[test]
fn replicas_reach_etcd_over_tls_with_a_client_certificate() {
    let secrets = tempfile::tempdir().unwrap();
    let (tls, client_cert, client_key) = etcd_tls_files(secrets.path());
    let etcd = EtcdCluster::start_tls(1, tls.clone());
    let kek = write_kek(secrets.path());
    let mut args = replica_args(&etcd, "/tls", &kek);
    let endpoint = etcd.endpoints_arg();
    assert!(endpoint.starts_with("https://"), "{endpoint}");
    for (flag, path) in [("--etcd-ca", &tls.ca), ("--etcd-cert", &client_cert), ("--etcd-key", &client_key)] {
        args.extend([flag.to_owned(), path.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_with(&args);
    let ns = unique("tls");
    server.kubectl_ok(&["create", "namespace", &ns]);
    server.kubectl_ok(&["create", "serviceaccount", "bot", "-n", &ns]);
    assert!(accepted(&server, &server.token(&ns, "bot", &[])));

    // Without the client certificate etcd refuses the connection: the replica does not start.
    let without_cert: Vec<&str> = args[..args.len() - 4].to_vec();
    let out = std::process::Command::new(common::BIN)
        .arg("serve")
        .args(["--data-dir", &secrets.path().join("data").display().to_string()])
        .args(&without_cert)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(text(&out.stderr).contains(&format!("etcd {endpoint}")), "{}", describe(&out));
}
