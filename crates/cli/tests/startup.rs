//! `tokenwarden serve` start-up: bad flags and unusable data directories fail with one line
//! and exit 64 before binding; a good start writes a private admin.kubeconfig whose CA
//! anchors the serving certificate, and serves the OIDC documents as kube-apiserver does.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test
#![allow(clippy::disallowed_methods)] // end-to-end tests bound waits for real processes with the real clock

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Server, describe, free_port, listening, text};
use serde_json::{Value, json};

/// Runs `tokenwarden ARGS` and waits (bounded) for it to exit; a process still running after
/// 15 s is killed and the test fails.
fn run_to_exit(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("tokenwarden {args:?} kept running instead of failing\n{}", describe(&out));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// The bad starts: (case, args after `serve`, text the single stderr line must contain).
fn bad_starts(dir: &std::path::Path, port: u16) -> Vec<(&'static str, Vec<String>, String)> {
    let file = dir.join("a-regular-file");
    std::fs::write(&file, "not a directory").unwrap();
    let data = dir.join("data").to_str().unwrap().to_owned();
    let listen = format!("127.0.0.1:{port}");
    let with = |extra: &[&str]| {
        let mut args: Vec<String> = vec!["serve".into(), "--data-dir".into(), data.clone(), "--api-listen".into(), listen.clone()];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    };
    vec![
        ("unknown flag", with(&["--no-such-flag"]), "--no-such-flag".to_owned()),
        (
            "--api-listen nonsense",
            vec!["serve".into(), "--data-dir".into(), data.clone(), "--api-listen".into(), "nonsense".into()],
            "nonsense".to_owned(),
        ),
        (
            "--max-token-expiration 10m",
            with(&["--max-token-expiration", "10m"]),
            "the service-account-max-token-expiration must be between 1 hour and 2^32 seconds".to_owned(),
        ),
        ("--tls-san not ASCII", with(&["--tls-san", "bücher.example"]), "invalid --tls-san".to_owned()),
        ("--jwks-uri not https", with(&["--jwks-uri", "http://keys.example/jwks"]), "service-account-jwks-uri requires https scheme".to_owned()),
        (
            "data dir is a regular file",
            vec!["serve".into(), "--data-dir".into(), file.to_str().unwrap().to_owned(), "--api-listen".into(), listen.clone()],
            file.to_str().unwrap().to_owned(),
        ),
    ]
}

fn assert_usage_failure(case: &str, out: &Output, expected: &str) {
    assert_eq!(out.status.code(), Some(64), "{case}: exit code 64\n{}", describe(out));
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{case}: exactly one line on stderr\n{}", describe(out));
    assert!(lines[0].contains(expected), "{case}: stderr should mention {expected:?}\n{}", describe(out));
    assert!(text(&out.stdout).trim().is_empty(), "{case}: nothing on stdout\n{}", describe(out));
}

#[test]
fn bad_flags_and_unusable_data_dirs_exit_64_with_one_line_and_nothing_listening() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    for (case, args, expected) in bad_starts(dir.path(), port) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_to_exit(&args);
        assert_usage_failure(case, &out, &expected);
        assert!(!listening(port), "{case}: nothing may listen on {port} afterwards");
    }
    assert!(!dir.path().join("data").exists(), "a failed start leaves no data directory (no key, CA or database made with bad flags)");
}

/// With the port taken, a server that validates before binding still reports the usage
/// error (exit 64); one that binds first reports "cannot listen" (exit 1) instead.
fn rejected_before_binding(cases: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let occupied = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = occupied.local_addr().unwrap().port();
    let mut checked = 0;
    for (case, args, expected) in bad_starts(dir.path(), port) {
        if !cases.contains(&case) {
            continue;
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_to_exit(&args);
        assert_usage_failure(case, &out, &expected);
        checked += 1;
    }
    assert_eq!(checked, cases.len());
    drop(occupied);
}

#[test]
fn bad_flags_and_data_dirs_are_rejected_before_binding() {
    rejected_before_binding(&["unknown flag", "--api-listen nonsense", "data dir is a regular file"]);
}

#[test]
fn max_token_expiration_is_rejected_before_binding() {
    rejected_before_binding(&["--max-token-expiration 10m"]);
}

#[test]
fn a_taken_port_is_a_runtime_failure() {
    let dir = tempfile::tempdir().unwrap();
    let occupied = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = occupied.local_addr().unwrap().port();
    let data = dir.path().join("data");
    let out = run_to_exit(&["serve", "--data-dir", data.to_str().unwrap(), "--api-listen", &format!("127.0.0.1:{port}")]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(text(&out.stderr).contains(&format!("127.0.0.1:{port}")), "{}", describe(&out));
}

#[test]
fn the_serving_certificate_names_a_specific_listen_address() {
    // 127.0.0.2 is loopback on Linux, and not one of the certificate's default names.
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.2:{}", free_port());
    let data = dir.path().join("data");
    let mut child = Command::new(BIN)
        .args(["serve", "--data-dir", data.to_str().unwrap(), "--api-listen", &listen])
        .args(["--authz-grpc-listen", "off", "--authz-http-listen", "off", "--metrics-listen", "off"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let kubeconfig = data.join("admin.kubeconfig");
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        let out = Command::new("kubectl").arg("--kubeconfig").arg(&kubeconfig).args(["get", "--raw", "/readyz"]).output().unwrap();
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    // kubectl verified the certificate against the kubeconfig's CA for https://127.0.0.2:PORT.
    assert!(answer.status.success(), "{}", describe(&answer));
    assert_eq!(text(&answer.stdout).trim(), "ok");
}

#[test]
fn a_fresh_start_writes_a_private_kubeconfig_whose_ca_anchors_the_server() {
    let server = Server::start();
    let mode = std::fs::metadata(server.kubeconfig()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "admin.kubeconfig mode {mode:o}");
    let kubeconfig = std::fs::read_to_string(server.kubeconfig()).unwrap();
    assert_eq!(common::kubeconfig_field(&kubeconfig, "server").as_deref(), Some(server.url.as_str()), "{kubeconfig}");
    assert_eq!(server.url, format!("https://127.0.0.1:{}", server.port));
    assert!(!kubeconfig.contains("insecure-skip-tls-verify"), "{kubeconfig}");
    assert!(common::kubeconfig_field(&kubeconfig, "token").is_some_and(|t| t.len() >= 32), "a strong admin token");

    // kubectl verifies the serving certificate against the kubeconfig's CA.
    assert_eq!(server.kubectl_ok(&["get", "--raw", "/readyz"]).trim(), "ok");
    let version: Value = serde_json::from_str(&server.kubectl_ok(&["get", "--raw", "/version"])).unwrap();
    assert_eq!(version["major"], "1");
    // ... and so does an independent TLS client, for 127.0.0.1 (an IP SAN).
    let ca = server.ca_file();
    let got = https_get(&format!("{}/readyz", server.url), &ca, None);
    assert_eq!(got["status"], 200, "{got}");
    assert_eq!(got["body"], "ok", "{got}");
    let got = https_get(&format!("https://localhost:{}/readyz", server.port), &ca, None);
    assert_eq!(got["status"], 200, "localhost is a SAN: {got}");
    // Another CA does not verify it.
    let other = Server::start();
    let out = common::python_cmd("https_get.py", &[&format!("{}/readyz", server.url), other.ca_file().to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success() && text(&out.stderr).contains("CERTIFICATE_VERIFY_FAILED"), "{}", describe(&out));

    // The serving line on stderr names the URL and the kubeconfig.
    let stderr = server.stderr();
    assert!(stderr.contains(&server.url) && stderr.contains("admin.kubeconfig"), "{stderr}");
}

fn https_get(url: &str, ca: &std::path::Path, token: Option<&str>) -> Value {
    common::https_request(url, ca, "GET", token, None)
}

#[test]
fn oidc_discovery_documents_are_exactly_kube_apiservers() {
    let server = Server::start();
    let ca = server.ca_file();
    let admin = server.admin_token();

    let got = https_get(&format!("{}/.well-known/openid-configuration", server.url), &ca, Some(&admin));
    assert_eq!(got["status"], 200, "{got}");
    assert_eq!(got["headers"]["cache-control"], "public, max-age=3600", "{got}");
    assert_eq!(got["headers"]["content-type"], "application/json", "{got}");
    let config: Value = serde_json::from_str(got["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        config,
        json!({
            "issuer": server.url,
            "jwks_uri": format!("{}/openid/v1/jwks", server.url),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })
    );

    let got = https_get(&format!("{}/openid/v1/jwks", server.url), &ca, Some(&admin));
    assert_eq!(got["status"], 200, "{got}");
    assert_eq!(got["headers"]["cache-control"], "public, max-age=3600", "{got}");
    assert_eq!(got["headers"]["content-type"], "application/jwk-set+json", "{got}");
    let jwks: Value = serde_json::from_str(got["body"].as_str().unwrap()).unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks}");
    let key = keys[0].as_object().unwrap();
    let mut fields: Vec<&str> = key.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["alg", "e", "kid", "kty", "n", "use"], "{jwks}");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["e"], "AQAB");

    // The kid in the JWKS is the kid of issued tokens.
    let token = server.token("default", "default", &[]);
    let header = token.split('.').next().unwrap();
    use base64::Engine as _;
    let header: Value = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    assert_eq!(header["kid"], key["kid"], "{header}");
    assert_eq!(header["alg"], "RS256");

    // Anonymous callers are not given the documents without an explicit binding.
    let got = https_get(&format!("{}/.well-known/openid-configuration", server.url), &ca, None);
    assert_eq!(got["status"], 403, "{got}");
    let status: Value = serde_json::from_str(got["body"].as_str().unwrap()).unwrap();
    assert_eq!(status["reason"], "Forbidden", "{status}");
    assert_eq!(
        status["message"],
        r#"forbidden: User "system:anonymous" cannot get path "/.well-known/openid-configuration""#,
        "{status}"
    );
}

#[test]
fn issuer_and_api_audiences_flags() {
    let server = Server::start_with(&["--issuer", "https://issuer.example", "--api-audiences", "api-a,api-b", "--max-token-expiration", "2h"]);
    let token = server.token("default", "default", &[]);
    let claims = common::jwt_payload(&token);
    assert_eq!(claims["iss"], "https://issuer.example", "{claims}");
    assert_eq!(claims["aud"], json!(["api-a", "api-b"]), "TokenRequest defaults to the API audiences: {claims}");
    let config: Value = serde_json::from_str(&server.kubectl_ok(&["get", "--raw", "/.well-known/openid-configuration"])).unwrap();
    assert_eq!(config["issuer"], "https://issuer.example");
    assert_eq!(config["jwks_uri"], format!("{}/openid/v1/jwks", server.url), "jwks_uri is the server's own URL");
    // Unless --jwks-uri names where relying parties fetch the keys (a server listening on all
    // addresses would otherwise name its loopback URL).
    let elsewhere = Server::start_with(&["--jwks-uri", "https://keys.example/openid/v1/jwks"]);
    let config: Value = serde_json::from_str(&elsewhere.kubectl_ok(&["get", "--raw", "/.well-known/openid-configuration"])).unwrap();
    assert_eq!(config["jwks_uri"], "https://keys.example/openid/v1/jwks");

    // --max-token-expiration shortens longer requests, with kube's warning.
    let out = server.kubectl(&["create", "token", "default", "--duration", "5h"]);
    assert!(out.status.success(), "{}", describe(&out));
    let claims = common::jwt_payload(text(&out.stdout).trim());
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 7200, "{claims}");
    assert!(
        text(&out.stderr).contains("requested expiration of 18000 seconds shortened to 7200 seconds"),
        "{}",
        describe(&out)
    );
    // The admin credential works with any audience configuration.
    assert!(server.kubectl_ok(&["auth", "whoami"]).contains("tokenwarden-admin"));
}
