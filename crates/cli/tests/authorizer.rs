//! `tokenwarden serve` runs the authorizer beside the authority: an AuthConfig applied with
//! kubectl is enforced by the HTTP check listener within a second, metrics carry Authorino's
//! names, and JSON logs (even at debug level) never contain a token.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use std::io::{Read as _, Write as _};
use std::time::Duration;

use tokenwarden_store::clock::Stopwatch;

use common::{Server, free_port};

const HOST: &str = "talker-api.127.0.0.1.nip.io";

const AUTHCONFIG: &str = r#"apiVersion: authorino.kuadrant.io/v1beta3
kind: AuthConfig
metadata:
  name: talker-api-protection
spec:
  hosts:
  - talker-api.127.0.0.1.nip.io
  authentication:
    "authorized-service-accounts":
      kubernetesTokenReview:
        audiences:
        - talker-api
  response:
    success:
      headers:
        x-auth-user:
          plain:
            selector: auth.identity.user.username
"#;

/// One plain HTTP/1.1 request; returns (status, head lines lower-cased, body).
fn http(port: u16, path: &str, host: &str, token: Option<&str>) -> (u16, String, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[test]
fn applied_authconfigs_are_enforced_at_once_with_metrics_and_token_free_json_logs() {
    let (check_port, metrics_port) = (free_port(), free_port());
    let check_listen = format!("127.0.0.1:{check_port}");
    let metrics_listen = format!("127.0.0.1:{metrics_port}");
    let mut server = Server::start_with(&["--authz-http-listen", &check_listen, "--metrics-listen", &metrics_listen, "--log-format", "json"]);

    server.kubectl_ok(&["create", "serviceaccount", "api-consumer-1"]);
    let token = server.token("default", "api-consumer-1", &["--audience", "talker-api"]);
    assert_eq!(http(check_port, "/hello", HOST, Some(&token)).0, 404, "no AuthConfig yet: Service not found");

    let file = server.write_file("authconfig.yaml", AUTHCONFIG);
    server.kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
    let applied = Stopwatch::start();
    let (status, head, _) = loop {
        let answer = http(check_port, "/hello", HOST, Some(&token));
        if answer.0 == 200 || applied.elapsed_seconds() > 1.0 {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status, 200, "the applied AuthConfig was not enforced within 1 s: {head}");
    assert!(head.contains("x-auth-user: system:serviceaccount:default:api-consumer-1"), "{head}");

    let (status, head, _) = http(check_port, "/hello", HOST, None);
    assert_eq!(status, 401);
    assert!(head.contains(r#"www-authenticate: bearer realm="authorized-service-accounts""#), "{head}");
    assert!(head.contains("x-ext-auth-reason: credential not found"), "{head}");

    // The AuthConfig's status reports its host linked.
    let stored = server.kubectl_json(&["get", "authconfig", "talker-api-protection", "-o", "json"]);
    assert_eq!(stored["status"]["summary"]["numHostsReady"], "1/1", "{stored}");

    let (status, _, metrics) = http(metrics_port, "/metrics", "localhost", None);
    assert_eq!(status, 200);
    assert!(metrics.contains(r#"auth_server_response_status_total{status="OK"}"#), "{metrics}");
    assert!(metrics.contains(r#"auth_server_authconfig_total{namespace="default",authconfig="talker-api-protection"}"#), "{metrics}");

    server.kill();
    let logs = server.stderr();
    let json_lines: Vec<&str> = logs.lines().filter(|l| l.starts_with('{')).collect();
    assert!(!json_lines.is_empty(), "no JSON log lines:\n{logs}");
    for line in &json_lines {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    assert!(!logs.contains(&token), "a ServiceAccount token reached the logs");
    assert!(!logs.contains(&server.admin_token()), "the admin credential reached the logs");
}
