//! The public TokenRequest endpoint, end to end with the real binary: `serve --public-listen`
//! (the in-process API behind it) and `expose` (tokenwarden's own `serve` as the upstream).
//! Requests are written byte for byte over TCP (and TLS verified against the right CA), so
//! path tricks reach the server exactly as an attacker would send them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test
#![allow(clippy::disallowed_methods)] // end-to-end tests bound waits for real processes with the real clock

mod common;

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{BIN, Server, free_port, jwt_payload, text};
use serde_json::{Value, json};

const SEED: &str = "/kubernetes/api/v1/namespaces/default/serviceaccounts/default/token";
const BOT: &str = "/kubernetes/api/v1/namespaces/bots/serviceaccounts/bot/token";
const TOKEN_REQUEST: &str = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"audiences":["talker-api"],"expirationSeconds":600}}"#;

/// The exact answer kube-apiserver gives the seed request without credentials.
fn anonymous_forbidden() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": r#"serviceaccounts "default" is forbidden: User "system:anonymous" cannot create resource "serviceaccounts/token" in API group "" in the namespace "default""#,
           "reason": "Forbidden", "details": {"name": "default", "kind": "serviceaccounts"}, "code": 403})
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": "the server could not find the requested resource", "reason": "NotFound", "code": 404})
}

/// One HTTP/1.1 answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// A request as raw bytes: `target` is sent as is (no normalisation, no encoding).
fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

/// Sends raw bytes to 127.0.0.1:`port` (over TLS verified against `ca` when given) and reads
/// the whole answer.
fn send(port: u16, ca: Option<&Path>, bytes: &[u8]) -> Reply {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
    let mut raw = Vec::new();
    match ca {
        // Write errors are ignored: a server may answer (413) and close before reading it all.
        None => {
            let _ = tcp.write_all(bytes);
            let _ = tcp.read_to_end(&mut raw);
        }
        Some(ca) => {
            use rustls::pki_types::pem::PemObject as _;
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
                roots.add(cert.unwrap()).unwrap();
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
            let mut stream = rustls::StreamOwned::new(connection, tcp);
            let _ = stream.write_all(bytes);
            // A server may close without close_notify; what was read is kept.
            let _ = stream.read_to_end(&mut raw);
        }
    }
    let sent = text(bytes);
    parse(&raw).unwrap_or_else(|| panic!("no HTTP answer to {:?}: {:?}", sent.lines().next(), text(&raw)))
}

fn parse(raw: &[u8]) -> Option<Reply> {
    let text = text(raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned())).collect();
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    Some(Reply { status, headers, body })
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// A POST of a TokenRequest with `headers` (no credential unless one is among them).
fn post(port: u16, ca: Option<&Path>, target: &str, headers: &[(&str, &str)]) -> Reply {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    send(port, ca, &request("POST", target, &all, TOKEN_REQUEST))
}

/// Namespace `bots` with ServiceAccounts `bot`, `other` and `ci`; `ci`'s legacy Secret token
/// (the long-lived credential) may mint tokens for `bot` only. Returns that credential.
fn bots(server: &Server) -> String {
    server.kubectl_ok(&["create", "namespace", "bots"]);
    for sa in ["bot", "other", "ci"] {
        server.kubectl_ok(&["create", "serviceaccount", sa, "-n", "bots"]);
    }
    server.kubectl_stdin_ok(&["apply", "-n", "bots", "-f", "-"], RBAC_AND_SECRET);
    let data = server.kubectl_ok(&["get", "secret", "ci-credential", "-n", "bots", "-o", "jsonpath={.data.token}"]);
    let credential = text(&base64::engine::general_purpose::STANDARD.decode(data.trim()).unwrap());
    assert_eq!(jwt_payload(&credential)["iss"], "kubernetes/serviceaccount", "a legacy Secret token: {credential:.10}…");
    credential
}

const RBAC_AND_SECRET: &str = "apiVersion: v1
kind: Secret
metadata:
  name: ci-credential
  annotations:
    kubernetes.io/service-account.name: ci
type: kubernetes.io/service-account-token
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: mint-bot-tokens
rules:
- apiGroups: [\"\"]
  resources: [\"serviceaccounts/token\"]
  resourceNames: [\"bot\"]
  verbs: [\"create\"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: ci-mints-bot-tokens
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: mint-bot-tokens
subjects:
- kind: ServiceAccount
  name: ci
  namespace: bots
";

/// TokenReview as the admin: (authenticated, username).
fn review(server: &Server, token: &str) -> (bool, String) {
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token, "audiences": ["talker-api"]}});
    let out = server.kubectl_stdin_ok(&["create", "--raw", "/apis/authentication.k8s.io/v1/tokenreviews", "-f", "-"], &body.to_string());
    let review: Value = serde_json::from_str(&out).unwrap();
    (review["status"]["authenticated"] == true, review["status"]["user"]["username"].as_str().unwrap_or_default().to_owned())
}

fn forbidden_for(sa: &str) -> String {
    format!(r#"serviceaccounts "{sa}" is forbidden: User "system:serviceaccount:bots:ci" cannot create resource "serviceaccounts/token" in API group "" in the namespace "bots""#)
}

#[test]
fn an_external_client_exchanges_its_legacy_secret_token_through_the_public_prefix() {
    let public = free_port();
    let scratch = tempfile::tempdir().unwrap();
    let audit = scratch.path().join("audit.jsonl");
    let server = Server::start_with(&["--public-listen", &format!("127.0.0.1:{public}"), "--public-prefix", "/kubernetes", "--audit-log", audit.to_str().unwrap()]);
    let ca = server.ca_file();
    let credential = bots(&server);
    let bearer = format!("Bearer {credential}");
    let auth = [("Authorization", bearer.as_str())];

    // Mint for bot through https://127.0.0.1:PORT/kubernetes/...: 201 and a short-lived token.
    let minted = post(public, Some(&ca), BOT, &auth);
    assert_eq!(minted.status, 201, "{minted:?}");
    let token = minted.json()["status"]["token"].as_str().unwrap().to_owned();
    let claims = jwt_payload(&token);
    assert_eq!(claims["sub"], "system:serviceaccount:bots:bot");
    assert_eq!(claims["aud"], json!(["talker-api"]));
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 600);
    assert_eq!(review(&server, &token), (true, "system:serviceaccount:bots:bot".to_owned()));

    // Any other ServiceAccount: RBAC's 403.
    for sa in ["other", "ci"] {
        let refused = post(public, Some(&ca), &BOT.replace("/bot/", &format!("/{sa}/")), &auth);
        assert_eq!((refused.status, refused.json()["message"].as_str().unwrap()), (403, forbidden_for(sa).as_str()), "{refused:?}");
    }

    // The seed request, as curl sends it (no body, no credential): exactly kube's 403.
    let seed = send(public, Some(&ca), &request("POST", SEED, &[], ""));
    assert_eq!((seed.status, seed.json()), (403, anonymous_forbidden()), "{seed:?}");

    // Everything else is 404 and never reaches the API: the admin would get 200 or 201 there.
    let admin = format!("Bearer {}", server.admin_token());
    let as_admin = [("Authorization", admin.as_str())];
    for (method, target) in [
        ("GET", "/kubernetes/api/v1/namespaces"),
        ("GET", "/kubernetes/api/v1/namespaces/bots/serviceaccounts/bot"),
        ("GET", BOT),
        ("DELETE", "/kubernetes/api/v1/namespaces/bots/serviceaccounts/bot"),
        ("POST", "/kubernetes/apis/authentication.k8s.io/v1/tokenreviews"),
        ("POST", "/kubernetes/api/v1/namespaces"),
        ("POST", "/api/v1/namespaces/bots/serviceaccounts/bot/token"),
        ("GET", "/kubernetes/openid/v1/jwks"),
        ("GET", "/readyz"),
    ] {
        let got = send(public, Some(&ca), &request(method, target, &as_admin, if method == "POST" { "{}" } else { "" }));
        assert_eq!((got.status, got.json()), (404, not_found()), "{method} {target}: {got:?}");
    }
    // Path tricks are 400, impersonation 403, before anything is routed.
    for target in [
        "/kubernetes/api/v1/namespaces/bots/serviceaccounts/../serviceaccounts/other/token",
        "/kubernetes/api/v1/namespaces/bots/serviceaccounts/%62ot/token",
        "/kubernetes/api/v1/namespaces/bots/serviceaccounts/bot%2Ftoken",
        "/kubernetes//api/v1/namespaces/bots/serviceaccounts/bot/token",
    ] {
        assert_eq!(post(public, Some(&ca), target, &as_admin).status, 400, "{target}");
    }
    let impersonating = post(public, Some(&ca), BOT, &[("Authorization", admin.as_str()), ("Impersonate-User", "system:serviceaccount:bots:ci")]);
    assert_eq!(impersonating.status, 403, "{impersonating:?}");
    assert!(!server.stderr().contains(&credential), "the credential is never logged");

    // The public listener's TokenRequests are in serve's audit log like any other.
    let deadline = Instant::now() + Duration::from_secs(10);
    let issued = loop {
        let lines = std::fs::read_to_string(&audit).unwrap_or_default();
        let found = lines.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).find(|r| r["decision"] == "issued");
        match found {
            Some(record) => break record,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            None => panic!("no issued record in {lines}"),
        }
    };
    assert_eq!(
        (issued["caller"].as_str(), issued["serviceAccount"].as_str(), &issued["jti"]),
        (Some("system:serviceaccount:bots:ci"), Some("bots/bot"), &claims["jti"])
    );
}

#[test]
fn a_burst_over_the_rate_limit_gets_429_and_other_callers_are_unaffected() {
    let public = free_port();
    let server = Server::start_with(&["--public-listen", &format!("127.0.0.1:{public}"), "--rate-limit", "1/h", "--rate-burst", "3"]);
    let ca = server.ca_file();
    let credential = bots(&server);
    let ci = format!("Bearer {credential}");
    for n in 0..3 {
        assert_eq!(post(public, Some(&ca), BOT, &[("Authorization", ci.as_str())]).status, 201, "request {n} is within the burst");
    }
    let limited = post(public, Some(&ca), BOT, &[("Authorization", ci.as_str())]);
    assert_eq!(limited.status, 429, "{limited:?}");
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((3590..=3600).contains(&retry_after), "one token an hour: {limited:?}");
    assert_eq!(
        limited.json(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Too many requests, please try again later.",
               "reason": "TooManyRequests", "details": {"retryAfterSeconds": retry_after}, "code": 429})
    );
    // Another caller (the admin's credential; anonymous callers are keyed by IP) has its own bucket.
    let admin = format!("Bearer {}", server.admin_token());
    assert_eq!(post(public, Some(&ca), BOT, &[("Authorization", admin.as_str())]).status, 201);
    assert_eq!(send(public, Some(&ca), &request("POST", SEED, &[], "")).status, 403, "anonymous, by IP: not limited yet");
}

/// A TCP relay between `expose` and its upstream that records every byte `expose` sends and
/// counts connections: the proof that a refused request never reached the upstream.
struct Relay {
    port: u16,
    connections: Arc<AtomicUsize>,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl Relay {
    fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let (count, record) = (Arc::clone(&connections), Arc::clone(&sent));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let mut server = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
                let (mut client_back, mut server_back) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let record = Arc::clone(&record);
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 8192];
                    while let Ok(n) = client.read(&mut buffer) {
                        if n == 0 || server.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                        record.lock().unwrap().extend_from_slice(&buffer[..n]);
                    }
                    let _ = server.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut server_back, &mut client_back);
                    let _ = client_back.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Self { port, connections, sent }
    }

    fn seen(&self) -> (usize, String) {
        (self.connections.load(Ordering::SeqCst), text(&self.sent.lock().unwrap()))
    }
}

/// A running `tokenwarden expose`.
struct Expose {
    child: Child,
    port: u16,
    stderr: PathBuf,
}

impl Expose {
    fn start(dir: &Path, args: &[&str]) -> Self {
        let port = args.iter().position(|a| *a == "--listen").map(|i| args[i + 1].rsplit(':').next().unwrap().parse().unwrap()).unwrap();
        let stderr = dir.join(format!("expose-{port}.stderr"));
        let child = Command::new(BIN)
            .arg("expose")
            .args(args)
            .current_dir(dir)
            .env("TOKENWARDEN_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let expose = Self { child, port, stderr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !common::listening(port) {
            assert!(Instant::now() < deadline, "expose did not listen: {}", expose.stderr());
            std::thread::sleep(Duration::from_millis(100));
        }
        expose
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Expose {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a serving certificate for 127.0.0.1 signed by it: (ca.crt, tls.crt, tls.key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.distinguished_name.push(DnType::CommonName, "expose test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.subject_alt_names.push(SanType::IpAddress([127, 0, 0, 1].into()));
    params.distinguished_name.push(DnType::CommonName, "expose");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();
    let paths = (dir.join("expose-ca.crt"), dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// `expose` in front of tokenwarden's own `serve` (plain HTTP on loopback, so the relay between
/// them can read what arrives): hostile requests are refused by `expose` and the relay sees
/// no connection at all; allowed requests arrive with only the allowed query parameters and
/// headers, and RBAC upstream decides.
#[test]
fn expose_forwards_only_token_requests_and_refused_ones_never_reach_the_upstream() {
    let server = Server::start_with(&["--insecure-http"]);
    let admin = format!("Bearer {}", server.admin_token());
    // kubectl sends no credential over plain HTTP, so the setup goes straight to the API.
    let api = |path: &str, object: Value| {
        let got = send(server.port, None, &request("POST", path, &[("Authorization", &admin), ("Content-Type", "application/json")], &object.to_string()));
        assert_eq!(got.status, 201, "{path}: {got:?}");
        got.json()
    };
    api("/api/v1/namespaces", json!({"metadata": {"name": "bots"}}));
    for sa in ["bot", "other", "ci"] {
        api("/api/v1/namespaces/bots/serviceaccounts", json!({"metadata": {"name": sa}}));
    }
    let manifests: Vec<Value> = RBAC_AND_SECRET.split("---\n").map(|doc| serde_saphyr::from_str(doc).unwrap()).collect();
    let secret = api("/api/v1/namespaces/bots/secrets", manifests[0].clone());
    api("/apis/rbac.authorization.k8s.io/v1/namespaces/bots/roles", manifests[1].clone());
    api("/apis/rbac.authorization.k8s.io/v1/namespaces/bots/rolebindings", manifests[2].clone());
    let credential = text(&base64::engine::general_purpose::STANDARD.decode(secret["data"]["token"].as_str().unwrap()).unwrap());
    let relay = Relay::start(server.port);
    let (ca, cert, key) = certificates(server.root.path());
    let listen = format!("127.0.0.1:{}", free_port());
    let upstream = format!("http://127.0.0.1:{}", relay.port);
    let audit = server.root.path().join("expose-audit.jsonl");
    let expose = Expose::start(
        server.root.path(),
        &[
            "--upstream", &upstream, "--prefix", "/kubernetes", "--listen", &listen,
            "--tls-cert-file", cert.to_str().unwrap(), "--tls-key-file", key.to_str().unwrap(),
            "--audit-log", audit.to_str().unwrap(),
        ],
    );
    let port = expose.port;
    let ca = Some(ca.as_path());
    let bearer = format!("Bearer {credential}");
    // Oversize bodies are sent only as far as the server reads them: bytes it never reads
    // would make the kernel answer its close with a reset that can overtake the 413.
    let oversize = |framing: &str, body: &str| {
        let mut bytes = format!("POST {BOT} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {bearer}\r\n{framing}\r\n").into_bytes();
        bytes.extend_from_slice(body.as_bytes());
        bytes
    };
    let over_limit = "x".repeat(64 * 1024 + 1);

    // (what, raw request, expected status)
    let hostile: Vec<(&str, Vec<u8>, u16)> = vec![
        ("dot-dot traversal", request("POST", "/kubernetes/api/v1/namespaces/bots/serviceaccounts/../secrets/ci-credential/token", &[("Authorization", &bearer)], "{}"), 400),
        ("dot segment", request("POST", "/kubernetes/api/v1/namespaces/bots/./serviceaccounts/bot/token", &[("Authorization", &bearer)], "{}"), 400),
        ("traversal out of the prefix", request("POST", "/kubernetes/../api/v1/namespaces/bots/serviceaccounts/bot/token", &[], "{}"), 400),
        ("encoded slash", request("POST", "/kubernetes/api/v1/namespaces/bots/serviceaccounts/bot%2Ftoken", &[("Authorization", &bearer)], "{}"), 400),
        ("encoded lower-case slash", request("POST", "/kubernetes/api/v1/namespaces/bots/serviceaccounts/bot%2ftoken", &[], "{}"), 400),
        ("encoded dots", request("POST", "/kubernetes/api/v1/namespaces/bots/serviceaccounts/%2e%2e/token", &[], "{}"), 400),
        ("encoded letter", request("POST", "/kubernetes/api/v1/namespaces/bots/serviceaccounts/b%6Ft/token", &[("Authorization", &bearer)], "{}"), 400),
        ("double slash", request("POST", "/kubernetes//api/v1/namespaces/bots/serviceaccounts/bot/token", &[], "{}"), 400),
        ("backslash", request("POST", "/kubernetes/api/v1/namespaces/bots/serviceaccounts/bot\\token", &[], "{}"), 400),
        ("trailing slash", request("POST", "/kubernetes/api/v1/namespaces/bots/serviceaccounts/bot/token/", &[], "{}"), 400),
        ("another path", request("GET", "/kubernetes/api/v1/namespaces", &[("Authorization", &admin)], ""), 404),
        ("another resource", request("POST", "/kubernetes/apis/authentication.k8s.io/v1/tokenreviews", &[("Authorization", &admin)], "{}"), 404),
        ("secrets", request("GET", "/kubernetes/api/v1/namespaces/bots/secrets/ci-credential", &[("Authorization", &admin)], ""), 404),
        ("without the prefix", request("POST", "/api/v1/namespaces/bots/serviceaccounts/bot/token", &[("Authorization", &bearer)], "{}"), 404),
        ("GET on the token path", request("GET", BOT, &[("Authorization", &bearer)], ""), 404),
        ("DELETE on the token path", request("DELETE", BOT, &[("Authorization", &bearer)], ""), 404),
        ("PUT on the token path", request("PUT", BOT, &[("Authorization", &bearer)], "{}"), 404),
        ("Impersonate-User", request("POST", BOT, &[("Authorization", &bearer), ("Impersonate-User", "tokenwarden-admin")], "{}"), 403),
        ("Impersonate-Group", request("POST", BOT, &[("Authorization", &bearer), ("Impersonate-Group", "system:masters")], "{}"), 403),
        ("Impersonate-Uid", request("POST", BOT, &[("Impersonate-Uid", "1")], "{}"), 403),
        ("Impersonate-Extra", request("POST", BOT, &[("Impersonate-Extra-Scopes", "all")], "{}"), 403),
        ("basic credentials", request("POST", BOT, &[("Authorization", "Basic YWRtaW46YWRtaW4=")], "{}"), 401),
        ("two credentials", request("POST", BOT, &[("Authorization", &bearer), ("Authorization", &admin)], "{}"), 401),
        ("malformed allowed query parameter", request("POST", &format!("{BOT}?fieldManager=%00"), &[("Authorization", &bearer)], "{}"), 400),
        ("extra query parameters on another path", request("GET", "/kubernetes/api/v1/namespaces?watch=true&labelSelector=x", &[("Authorization", &admin)], ""), 404),
        ("oversize body (Content-Length)", oversize("Content-Length: 102400\r\n", ""), 413),
        ("oversize body (chunked)", oversize("Transfer-Encoding: chunked\r\n", &format!("{:x}\r\n{over_limit}", over_limit.len())), 413),
    ];
    for (what, bytes, expected) in hostile {
        let got = send(port, ca, &bytes);
        assert_eq!(got.status, expected, "{what}: {got:?}");
        // hyper itself refuses a backslash in the request line (400 without a Status body).
        if what != "backslash" {
            assert_eq!(got.json()["kind"], "Status", "{what}: a Kubernetes Status: {got:?}");
        }
    }
    assert_eq!(relay.seen(), (0, String::new()), "no refused request reached the upstream");
    assert_eq!(std::fs::read_to_string(&audit).unwrap_or_default(), "", "nothing was forwarded, so nothing is audited");

    // Allowed: extra query parameters and widening headers are dropped on the way.
    let allowed = send(
        port,
        ca,
        &request(
            "POST",
            &format!("{BOT}?pretty=true&watch=true&labelSelector=a&fieldManager=ci-bot&timeout=1s"),
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
                ("X-Remote-User", "tokenwarden-admin"),
                ("X-Remote-Group", "system:masters"),
                ("X-Forwarded-For", "10.9.9.9"),
                ("Cookie", "session=1"),
            ],
            TOKEN_REQUEST,
        ),
    );
    assert_eq!(allowed.status, 201, "{allowed:?}");
    let token = allowed.json()["status"]["token"].as_str().unwrap().to_owned();
    assert_eq!(jwt_payload(&token)["sub"], "system:serviceaccount:bots:bot");
    let (connections, bytes) = relay.seen();
    assert!(connections >= 1);
    let request_line = bytes.lines().next().unwrap();
    assert_eq!(request_line, "POST /api/v1/namespaces/bots/serviceaccounts/bot/token?pretty=true&fieldManager=ci-bot HTTP/1.1", "{bytes}");
    let lower = bytes.to_ascii_lowercase();
    for absent in ["impersonate", "x-remote-", "x-forwarded-", "cookie", "watch", "labelselector"] {
        assert!(!lower.contains(absent), "{absent} reached the upstream:\n{bytes}");
    }
    assert!(lower.contains(&format!("authorization: bearer {}", credential.to_ascii_lowercase())), "the caller's own credential goes on");

    // RBAC upstream still decides: other ServiceAccounts are 403, the seed is kube's 403.
    let other = post(port, ca, &BOT.replace("/bot/", "/other/"), &[("Authorization", &bearer)]);
    assert_eq!((other.status, other.json()["message"].as_str().unwrap()), (403, forbidden_for("other").as_str()));
    let seed = send(port, ca, &request("POST", SEED, &[], ""));
    assert_eq!((seed.status, seed.json()), (403, anonymous_forbidden()), "{seed:?}");
    let stderr = expose.stderr();
    assert!(!stderr.contains(&credential) && !stderr.contains(&token), "expose never logs a credential or token");

    // The audit log: one line per forwarded request, the minted token's claims but never a token.
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        if text.lines().count() >= 3 || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!lines.contains(&credential) && !lines.contains(&token), "{lines}");
    let records: Vec<Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let claims = jwt_payload(&token);
    let issued = &records[0];
    assert_eq!(issued["kind"], "TokenRequest");
    assert_eq!(
        (issued["decision"].as_str(), issued["code"].as_i64(), issued["caller"].as_str(), issued["serviceAccount"].as_str()),
        (Some("issued"), Some(201), Some("system:serviceaccount:bots:ci"), Some("bots/bot"))
    );
    assert_eq!((&issued["jti"], &issued["audiences"]), (&claims["jti"], &json!(["talker-api"])));
    assert!(issued["expirationTimestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{issued}");
    assert!(issued["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{issued}");
    assert_eq!(
        (records[1]["decision"].as_str(), records[1]["code"].as_i64(), records[1]["serviceAccount"].as_str(), records[1]["reason"].as_str()),
        (Some("forbidden"), Some(403), Some("bots/other"), Some(forbidden_for("other").as_str()))
    );
    assert_eq!(
        (records[2]["decision"].as_str(), records[2]["caller"].as_str(), records[2]["serviceAccount"].as_str()),
        (Some("forbidden"), Some("system:anonymous"), Some("default/default"))
    );
    assert_eq!(records.len(), 3, "{lines}");
}

/// The README's "Exposing TokenRequest" commands, as written (ports and paths replaced).
#[test]
fn the_readme_exposure_section_runs_as_written() {
    let readme = std::fs::read_to_string(common::workspace().join("README.md")).unwrap();
    let start = readme.find("<!-- exposure:").expect("README has the exposure block");
    let end = readme.find("<!-- /exposure -->").expect("README closes the exposure block");
    let block = &readme[start..end];
    let line = |prefix: &str| block.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no `{prefix}` line")).to_owned();
    let script = block.split_once("```sh\n# client\n").expect("the client block").1.split_once("```").unwrap().0.to_owned();

    let (api, public, exposed) = (free_port(), free_port(), free_port());
    let ports = |s: &str| s.replace("6443", &api.to_string()).replace("8443", &public.to_string()).replace("9443", &exposed.to_string());
    let serve_line = ports(&line("tokenwarden serve "));
    let serve_args: Vec<&str> = serve_line.split_whitespace().skip(2).collect();
    assert!(serve_args.contains(&"--public-listen"), "{serve_line}");
    // The harness adds --data-dir and --api-listen; the README's defaults are ./tokenwarden-data and 6443.
    let server = Server::start_with_port(api, &serve_args);
    let dir = server.root.path();
    std::os::unix::fs::symlink(&server.data_dir, dir.join("tokenwarden-data")).unwrap();
    certificates(dir);
    let expose_line = ports(&line("tokenwarden expose "));
    let expose_args: Vec<&str> = expose_line.split_whitespace().skip(2).collect();
    let _expose = Expose::start(dir, &expose_args);

    let out = Command::new("bash").args(["-euo", "pipefail", "-c", &ports(&script)]).current_dir(dir).env("HOME", &server.home).env_remove("KUBECONFIG").output().unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "the README exposure block failed\n{}", common::describe(&out));
    let answers: Vec<Value> = stdout.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    let minted: Vec<&Value> = answers.iter().filter(|a| a["kind"] == "TokenRequest").collect();
    assert_eq!(minted.len(), 2, "one token through serve's public listener, one through expose:\n{stdout}");
    for answer in minted {
        assert_eq!(jwt_payload(answer["status"]["token"].as_str().unwrap())["sub"], "system:serviceaccount:bots:bot");
    }
    assert!(answers.contains(&anonymous_forbidden()), "{stdout}");
    assert!(answers.contains(&not_found()), "{stdout}");
}

#[test]
fn bad_flags_are_one_line_and_exit_64_before_anything_listens() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = ["expose", "--upstream", "https://127.0.0.1:1"];
    let with = |extra: &[&'static str]| upstream.iter().chain(extra).copied().collect::<Vec<&str>>();
    for (args, expected) in [
        (vec!["expose", "--upstream", "http://10.0.0.1:8080", "--insecure-http"], "http:// is only allowed to a loopback address"),
        (vec!["expose", "--upstream", "10.0.0.1:6443", "--insecure-http"], "invalid --upstream"),
        (with(&[]), "expose needs --tls-cert-file and --tls-key-file (or --insecure-http for development)"),
        (with(&["--insecure-http", "--tls-cert-file", "a", "--tls-key-file", "b"]), "cannot be used with"),
        (with(&["--insecure-http", "--prefix", "/a/../b"]), "--prefix: invalid prefix"),
        (with(&["--insecure-http", "--rate-limit", "5/d"]), "--rate-limit/--rate-burst: invalid rate"),
        (with(&["--insecure-http", "--listen", "nowhere"]), "invalid --listen"),
        (with(&["--tls-cert-file", "missing.crt", "--tls-key-file", "missing.key"]), "--tls-cert-file missing.crt"),
        (with(&["--insecure-http", "--kubeconfig", "missing.kubeconfig"]), "--kubeconfig: kubeconfig missing.kubeconfig"),
        (vec!["serve", "--data-dir", "d", "--public-listen", "nowhere"], "invalid --public-listen"),
        (vec!["serve", "--data-dir", "d", "--public-listen", "127.0.0.1:0", "--rate-burst", "0"], "the rate burst must be at least 1"),
        (vec!["serve", "--data-dir", "d", "--public-listen", "127.0.0.1:0", "--public-prefix", "kubernetes"], "--public-prefix: invalid prefix"),
    ] {
        let out = Command::new(BIN).args(&args).current_dir(dir.path()).stdin(Stdio::null()).output().unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", common::describe(&out));
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: expected {expected:?} in {stderr}");
    }
    assert!(!dir.path().join("d").exists(), "serve stopped before opening its data directory");
}
