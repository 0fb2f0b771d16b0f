//! `tokenwarden serve` runs the authorizer beside the authority: an AuthConfig applied with
//! kubectl is enforced by the HTTP check listener within a second, metrics carry Authorino's
//! names, and JSON logs (even at debug level) never contain a token.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use std::io::{Read as _, Write as _};
use std::time::Duration;

use tokenwarden_store::clock::Stopwatch;

use common::{Server, free_port, http};

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

/// A one-request-at-a-time upstream that answers `hello` and keeps each request's head.
fn upstream() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = std::sync::Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            recorded.lock().unwrap().push(String::from_utf8_lossy(&head).to_ascii_lowercase());
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
        }
    });
    (port, seen)
}

#[test]
fn the_served_reverse_proxy_forwards_only_what_the_pinned_authconfig_allows() {
    let (upstream_port, seen) = upstream();
    let proxy_port = free_port();
    let proxy_listen = format!("127.0.0.1:{proxy_port}");
    let upstream_url = format!("http://127.0.0.1:{upstream_port}");
    let server = Server::start_with(&["--proxy-listen", &proxy_listen, "--proxy-upstream", &upstream_url, "--proxy-host", HOST, "--proxy-strip-credential"]);
    let file = server.write_file("authconfig.yaml", AUTHCONFIG);
    server.kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
    server.kubectl_ok(&["wait", "--for=jsonpath={.status.summary.ready}=true", "authconfig/talker-api-protection"]);
    server.kubectl_ok(&["create", "serviceaccount", "api-consumer-1"]);
    let token = server.token("default", "api-consumer-1", &["--audience", "talker-api"]);

    // Another Host does not escape the pinned AuthConfig.
    let (status, head, _) = http(proxy_port, "/hello", "elsewhere.example", None);
    assert_eq!(status, 401, "{head}");
    assert!(seen.lock().unwrap().is_empty(), "a denied request reached the upstream");

    let (status, head, body) = http(proxy_port, "/hello", HOST, Some(&token));
    assert_eq!((status, body.as_str()), (200, "hello"), "{head}");
    let forwarded = seen.lock().unwrap().clone();
    assert_eq!(forwarded.len(), 1);
    assert!(forwarded[0].contains("x-auth-user: system:serviceaccount:default:api-consumer-1"), "{}", forwarded[0]);
    assert!(!forwarded[0].contains("authorization:"), "the credential was stripped: {}", forwarded[0]);
}

/// A client that never finishes its request headers is disconnected (slow loris), instead of
/// holding a connection forever. The read below only guards against a hang.
#[test]
fn a_connection_that_never_finishes_its_headers_is_closed() {
    let check_port = free_port();
    let listen = format!("127.0.0.1:{check_port}");
    let _server = Server::start_with(&["--authz-http-listen", &listen]);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", check_port)).unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: talker-api.127.0.0.1.nip.io\r\nX-Slow: ").unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut rest = Vec::new();
    let outcome = stream.read_to_end(&mut rest);
    assert!(outcome.is_ok(), "the server kept the half-sent request open: {outcome:?}");
    let answer = String::from_utf8_lossy(&rest);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[test]
fn kubernetes_subject_access_review_policies_follow_the_authoritys_rbac() {
    let check_port = free_port();
    let check_listen = format!("127.0.0.1:{check_port}");
    let server = Server::start_with(&["--authz-http-listen", &check_listen]);
    server.kubectl_ok(&["create", "serviceaccount", "reader"]);
    server.kubectl_ok(&["create", "serviceaccount", "stranger"]);
    let reader = server.token("default", "reader", &["--audience", "talker-api"]);
    let stranger = server.token("default", "stranger", &["--audience", "talker-api"]);
    // Authorino's SubjectAccessReview policy: the caller may `get` the request's path.
    let authconfig = AUTHCONFIG.replace(
        "  response:\n",
        "  authorization:\n    k8s-rbac:\n      kubernetesSubjectAccessReview:\n        user:\n          selector: auth.identity.user.username\n  response:\n",
    );
    server.kubectl_stdin_ok(&["apply", "-f", "-"], &authconfig);
    server.kubectl_ok(&["create", "clusterrole", "hello-reader", "--verb=get", "--non-resource-url=/hello"]);
    server.kubectl_ok(&["create", "clusterrolebinding", "hello-reader", "--clusterrole=hello-reader", "--serviceaccount=default:reader"]);

    let applied = Stopwatch::start();
    let status = loop {
        let status = http(check_port, "/hello", HOST, Some(&reader)).0;
        if status == 200 || applied.elapsed_seconds() > 2.0 {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status, 200, "RBAC grants reader GET /hello");
    let (status, head, _) = http(check_port, "/hello", HOST, Some(&stranger));
    assert_eq!(status, 403, "{head}");
    assert!(head.contains("x-ext-auth-reason"), "{head}");
    assert_eq!(http(check_port, "/other", HOST, Some(&reader)).0, 403, "only the granted path");
    // Revoking the binding revokes access.
    server.kubectl_ok(&["delete", "clusterrolebinding", "hello-reader"]);
    assert_eq!(http(check_port, "/hello", HOST, Some(&reader)).0, 403);
}
