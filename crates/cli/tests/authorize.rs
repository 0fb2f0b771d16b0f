//! `tokenwarden authorize`: the authorizer alone against an API server (here a `tokenwarden
//! serve`, playing the cluster) or a directory of AuthConfigs. An API server that stops
//! answering makes checks fail closed with 503, never 401 and never allow.

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
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(stream, "GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Original-URI: /hello\r\n{auth}Connection: close\r\n\r\n").unwrap();
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
