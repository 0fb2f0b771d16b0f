//! `tokenwarden authorize`: the authorizer alone against an API server (here a `tokenwarden
//! serve`, playing the cluster) or a directory of AuthConfigs, and `jwt` identities verified
//! against the issuer's JWKS. An API server that stops answering makes checks fail closed with
//! 503, never 401 and never allow.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use std::io::{Read as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{BIN, Server, free_port};

const HOST: &str = "talker-api.127.0.0.1.nip.io";

const AUTHCONFIG: &str = r#"{"apiVersion": "authorino.kuadrant.io/v1beta3", "kind": "AuthConfig",
 "metadata": {"name": "talker-api-protection"},
 "spec": {"hosts": ["talker-api.127.0.0.1.nip.io"],
          "authentication": {"authorized-service-accounts": {"kubernetesTokenReview": {"audiences": ["talker-api"]}}}}}"#;

const API_KEYS: &str = r#"{"apiVersion": "v1", "kind": "List", "items": [
 {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api-key-1", "labels": {"group": "friends", "authorino.kuadrant.io/managed-by": "authorino"}},
  "stringData": {"api_key": "ndyBzreUzF4zqDQsqSPMHkRhriEOtcRx"}},
 {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "unmanaged-key", "labels": {"group": "friends"}},
  "stringData": {"api_key": "not-read-without-the-managed-by-label"}},
 {"apiVersion": "authorino.kuadrant.io/v1beta3", "kind": "AuthConfig", "metadata": {"name": "keys"},
  "spec": {"hosts": ["keys.127.0.0.1.nip.io"],
           "authentication": {"friends": {"apiKey": {"selector": {"matchLabels": {"group": "friends"}}},
                                          "credentials": {"authorizationHeader": {"prefix": "APIKEY"}}}}}}]}"#;

struct Authorizer(Child);

impl Drop for Authorizer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn authorize(args: &[&str], check_port: u16) -> Authorizer {
    let listen = format!("127.0.0.1:{check_port}");
    let child = Command::new(BIN)
        .arg("authorize")
        .args(args)
        .args(["--authz-http-listen", &listen, "--authz-grpc-listen", "off", "--metrics-listen", "off"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let authorizer = Authorizer(child);
    for _ in 0..300 {
        if std::net::TcpStream::connect(("127.0.0.1", check_port)).is_ok() {
            return authorizer;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("tokenwarden authorize did not listen within 30 s");
}

/// A check as nginx auth_request sends it; returns the status code and lower-cased head.
fn check(port: u16, token: Option<&str>) -> (u16, String) {
    check_host(port, HOST, token.map(|t| format!("Bearer {t}")).as_deref())
}

fn check_host(port: u16, host: &str, authorization: Option<&str>) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    write!(stream, "GET / HTTP/1.1\r\nHost: {host}\r\nX-Original-URI: /hello\r\n{auth}Connection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let head = raw.split("\r\n\r\n").next().unwrap_or("").to_ascii_lowercase();
    (head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0), head)
}

fn eventually(port: u16, token: Option<&str>, want: u16) -> (u16, String) {
    let mut last = (0, String::new());
    for _ in 0..100 {
        last = check(port, token);
        if last.0 == want {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    last
}

#[test]
fn against_an_api_server_tokens_are_reviewed_remotely_and_an_outage_is_503() {
    let mut cluster = Server::start();
    cluster.kubectl_stdin_ok(&["apply", "-f", "-"], AUTHCONFIG);
    cluster.kubectl_ok(&["create", "serviceaccount", "api-consumer-1"]);
    let token = cluster.token("default", "api-consumer-1", &["--audience", "talker-api"]);
    let later = cluster.token("default", "api-consumer-1", &["--audience", "talker-api"]);

    let port = free_port();
    let kubeconfig = cluster.kubeconfig();
    let _authorizer = authorize(&["--kubeconfig", kubeconfig.to_str().unwrap()], port);

    let (status, head) = eventually(port, Some(&token), 200);
    assert_eq!(status, 200, "{head}");
    let (status, head) = check(port, None);
    assert_eq!(status, 401, "{head}");
    assert!(head.contains(r#"www-authenticate: bearer realm="authorized-service-accounts""#), "{head}");

    // API keys from labelled Secrets on the API server (applied as the Authorino guide does,
    // with stringData); a deleted Secret is refused within a second.
    cluster.kubectl_stdin_ok(&["apply", "-f", "-"], API_KEYS);
    let key_host = "keys.127.0.0.1.nip.io";
    let mut last = (0, String::new());
    for _ in 0..100 {
        last = check_host(port, key_host, Some("APIKEY ndyBzreUzF4zqDQsqSPMHkRhriEOtcRx"));
        if last.0 == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(last.0, 200, "{}", last.1);
    assert_eq!(check_host(port, key_host, Some("APIKEY wrong")).0, 401);
    // As Authorino's default --secret-label-selector: Secrets it does not manage are not read.
    assert_eq!(check_host(port, key_host, Some("APIKEY not-read-without-the-managed-by-label")).0, 401);
    cluster.kubectl_ok(&["delete", "secret", "api-key-1"]);
    let deleted = tokenwarden_store::clock::Stopwatch::start();
    while check_host(port, key_host, Some("APIKEY ndyBzreUzF4zqDQsqSPMHkRhriEOtcRx")).0 != 401 {
        assert!(deleted.elapsed_seconds() < 1.0, "a deleted API key was still accepted after a second");
        std::thread::sleep(Duration::from_millis(20));
    }

    // The API server goes away: a token never seen before cannot be reviewed: 503.
    cluster.kill();
    let (status, head) = check(port, Some(&later));
    assert_eq!(status, 503, "an unreachable reviewer must fail closed with 503: {head}");
}

#[test]
fn from_a_directory_without_an_api_server() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("open.yaml"),
        "apiVersion: authorino.kuadrant.io/v1beta3\nkind: AuthConfig\nmetadata:\n  name: open\n  namespace: demo\nspec:\n  hosts: [talker-api.127.0.0.1.nip.io]\n  authentication:\n    public:\n      anonymous: {}\n",
    )
    .unwrap();
    let port = free_port();
    let _authorizer = authorize(&["--authconfig-dir", dir.path().to_str().unwrap(), "--no-api-server"], port);
    assert_eq!(eventually(port, None, 200).0, 200);

    // Switched to TokenReview with no API server to ask: fail closed.
    std::fs::write(
        dir.path().join("open.yaml"),
        "apiVersion: authorino.kuadrant.io/v1beta3\nkind: AuthConfig\nmetadata:\n  name: open\n  namespace: demo\nspec:\n  hosts: [talker-api.127.0.0.1.nip.io]\n  authentication:\n    sa:\n      kubernetesTokenReview: {audiences: [talker-api]}\n",
    )
    .unwrap();
    let (status, head) = eventually(port, Some("some-token"), 503);
    assert_eq!(status, 503, "{head}");
}

#[test]
fn bad_flags_exit_64_with_one_line() {
    for args in [
        vec!["authorize", "--no-api-server"],
        vec!["authorize", "--kubeconfig", "/nonexistent/kubeconfig"],
        vec!["authorize", "--no-api-server", "--authconfig-dir", "/tmp", "--authz-http-listen", "nonsense"],
    ] {
        let out = Command::new(BIN).args(&args).env_remove("KUBECONFIG").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("tokenwarden: "), "{args:?}: {stderr}");
    }
}

/// The issuer's own signing key (the one PEM in the data directory), re-signing `token`'s
/// claims with `exp` an hour ago: a token the issuer did sign, but expired.
fn expired_copy(cluster: &Server, token: &str) -> String {
    use tokenwarden_core::claims::Claims;
    let keys: Vec<_> = std::fs::read_dir(cluster.data_dir.join("keys")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "pem")).collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key = tokenwarden_core::keys::SigningKey::from_pem(&std::fs::read_to_string(&keys[0]).unwrap()).unwrap();
    let mut claims: Claims = serde_json::from_value(common::jwt_payload(token)).unwrap();
    let issued = claims.iat.unwrap() - 7200;
    (claims.iat, claims.nbf, claims.exp) = (Some(issued), Some(issued), Some(issued + 3600));
    tokenwarden_core::jwt::sign(&key, &claims).unwrap()
}

#[test]
fn jwt_identities_verify_service_account_tokens_against_the_issuers_jwks() {
    // The discovery documents readable without a credential, as a verifier fetches them: what
    // a cluster admin grants with this binding.
    let cluster = Server::start();
    cluster.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "oidc-reviewer",
        "--clusterrole=system:service-account-issuer-discovery",
        "--group=system:unauthenticated",
    ]);
    cluster.kubectl_ok(&["create", "serviceaccount", "api-consumer-1"]);
    let token = cluster.token("default", "api-consumer-1", &["--audience", "talker-api"]);
    let wrong_audience = cluster.token("default", "api-consumer-1", &["--audience", "other-api"]);
    let expired = expired_copy(&cluster, &token);

    // No API server at all: the keys come from the issuer's OIDC discovery over HTTPS (its CA
    // given with --jwks-ca-file), and the audience is checked on the verified claims.
    let dir = tempfile::tempdir().unwrap();
    let authconfig = format!(
        "apiVersion: authorino.kuadrant.io/v1beta3\nkind: AuthConfig\nmetadata:\n  name: talker-api-protection\n  namespace: demo\nspec:\n  hosts: [{HOST}]\n  authentication:\n    service-accounts:\n      jwt:\n        issuerUrl: {}\n  authorization:\n    audience:\n      patternMatching:\n        patterns:\n        - {{selector: auth.identity.aud, operator: incl, value: talker-api}}\n  response:\n    success:\n      headers:\n        x-auth-user:\n          plain: {{selector: auth.identity.sub}}\n",
        cluster.url
    );
    std::fs::write(dir.path().join("talker-api.yaml"), authconfig).unwrap();
    let ca = cluster.ca_file();
    let port = free_port();
    let _authorizer =
        authorize(&["--authconfig-dir", dir.path().to_str().unwrap(), "--no-api-server", "--jwks-ca-file", ca.to_str().unwrap()], port);

    let (status, head) = eventually(port, Some(&token), 200);
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("x-auth-user: system:serviceaccount:default:api-consumer-1"), "{head}");
    let (status, head) = check(port, Some(&wrong_audience));
    assert_eq!(status, 403, "a token for another audience: {head}");
    let (status, head) = check(port, Some(&expired));
    assert_eq!(status, 401, "an expired token: {head}");
    assert!(head.contains(r#"www-authenticate: bearer realm="service-accounts""#), "{head}");
    let (status, head) = check(port, Some(&format!("{token}x")));
    assert_eq!(status, 401, "a forged signature: {head}");
}
