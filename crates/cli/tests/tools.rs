//! The workload tools against a real `tokenwarden serve`, compared with the real kubectl where
//! kubectl has the same command, and with the official Python client running "in cluster"
//! over a projected token directory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // test code: a failed unwrap is a failed test

mod common;

use std::io::{BufRead as _, Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{BIN, Server, describe, free_port, jwt_payload, listening, text, unique};

/// A namespace with ServiceAccount `bot` in it.
fn namespace_with_bot(server: &Server) -> String {
    let ns = unique("tools");
    server.kubectl_ok(&["create", "namespace", &ns]);
    server.kubectl_ok(&["create", "serviceaccount", "bot", "-n", &ns]);
    ns
}

/// A child process killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn talker_api() -> (Running, u16) {
    let port = free_port();
    let child = Command::new(BIN).args(["talker-api", "--listen", &format!("127.0.0.1:{port}")]).stderr(Stdio::null()).spawn().unwrap();
    let running = Running(child);
    wait_for("talker-api", || listening(port));
    (running, port)
}

/// The one line a failed command prints, and its exit code.
fn failure(out: &std::process::Output) -> (i32, String) {
    assert!(!out.status.success(), "should have failed\n{}", describe(out));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line:\n{stderr}");
    (out.status.code().unwrap_or(-1), stderr.trim_end().to_owned())
}

#[test]
fn create_token_is_kubectl_create_token() {
    let server = Server::start();
    let ns = namespace_with_bot(&server);
    server.kubectl_ok(&["create", "secret", "generic", "pin", "-n", &ns, "--from-literal=k=v"]);

    let token = server.tool_ok(&["create", "token", "bot", "-n", &ns, "--audience", "talker-api", "--audience", "b", "--duration", "10m"]);
    let claims = jwt_payload(token.trim());
    assert_eq!(claims["aud"], serde_json::json!(["talker-api", "b"]));
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 600);
    assert_eq!(claims["sub"], format!("system:serviceaccount:{ns}:bot"));

    let bound = server.tool_ok(&["create", "token", "bot", "-n", &ns, "--bound-object-kind", "Secret", "--bound-object-name", "pin"]);
    assert_eq!(jwt_payload(bound.trim())["kubernetes.io"]["secret"]["name"], "pin");

    // Server errors: kubectl's message after our prefix, exit 1.
    let out = server.tool(&["create", "token", "nope", "-n", &ns]);
    let kubectl = server.kubectl_err(&["create", "token", "nope", "-n", &ns]);
    assert_eq!(failure(&out), (1, format!("tokenwarden: {}", kubectl.trim_end().trim_start_matches("error: "))));
    let out = server.tool(&["create", "token", "bot", "-n", &ns, "--duration", "5m"]);
    let (code, line) = failure(&out);
    assert_eq!(code, 1);
    assert!(line.ends_with("spec.expirationSeconds: Invalid value: 300: may not specify a duration less than 10 minutes"), "{line}");

    // Names go into the URL as one path segment, or nowhere.
    let out = server.tool(&["create", "token", "../../namespaces", "-n", &ns]);
    assert_eq!(failure(&out), (64, "tokenwarden: invalid serviceaccount name \"../../namespaces\"".to_owned()));

    // Flag checks: kubectl's messages, exit 64, nothing sent.
    for args in [&["--bound-object-kind", "Foo", "--bound-object-name", "x"][..], &["--duration", "1.5s"], &["--audience", ""]] {
        let mut ours = vec!["create", "token", "bot", "-n", &ns];
        ours.extend_from_slice(args);
        let out = server.tool(&ours);
        let kubectl = server.kubectl_err(&ours[..]);
        assert_eq!(failure(&out), (64, format!("tokenwarden: {}", kubectl.trim_end().trim_start_matches("error: "))));
    }
}

#[test]
fn review_says_who_or_why_and_exits_accordingly() {
    let server = Server::start();
    let ns = namespace_with_bot(&server);
    let token = server.token(&ns, "bot", &["--audience", "talker-api"]);

    let out = server.tool_ok(&["review", &token, "--audience", "talker-api"]);
    assert!(out.starts_with(&format!("authenticated: true\nuser: system:serviceaccount:{ns}:bot\nuid: ")), "{out}");
    assert!(out.contains(&format!("groups: system:serviceaccounts, system:serviceaccounts:{ns}, system:authenticated\n")), "{out}");
    assert!(out.contains("extra: authentication.kubernetes.io/credential-id=JTI="), "{out}");
    assert!(out.ends_with("audiences: talker-api\n"), "{out}");

    // From stdin, as JSON and YAML; the token is never printed back.
    let mut child = server.tool_cmd(&["review", "-", "--audience", "talker-api", "-o", "json"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(format!("{token}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["authenticated"], true);
    assert_eq!(status["user"]["username"], format!("system:serviceaccount:{ns}:bot"));
    assert!(!text(&out.stdout).contains(&token));
    let yaml = server.tool_ok(&["review", &token, "--audience", "talker-api", "-o", "yaml"]);
    assert!(yaml.contains("authenticated: true"), "{yaml}");

    // A wrong audience: not authenticated, the reason, exit 1.
    let out = server.tool(&["review", &token, "--audience", "other"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(text(&out.stdout), "authenticated: false\nerror: [invalid bearer token, token audiences [\"talker-api\"] is invalid for the target audiences [\"other\"]]\n");
    // Revoked: the ServiceAccount is gone.
    server.kubectl_ok(&["delete", "serviceaccount", "bot", "-n", &ns]);
    let out = server.tool(&["review", &token, "--audience", "talker-api"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(text(&out.stdout).starts_with("authenticated: false\nerror: "), "{}", describe(&out));
    // No token at all.
    let (code, line) = failure(&server.tool_cmd(&["review", "-"]).stdin(Stdio::null()).output().unwrap());
    assert_eq!((code, line.as_str()), (64, "tokenwarden: the token is empty"));
}

#[test]
fn decode_shows_claims_and_times_without_verifying() {
    let server = Server::start();
    let ns = namespace_with_bot(&server);
    let token = server.token(&ns, "bot", &["--audience", "talker-api", "--duration", "10m"]);
    let out = server.tool_ok(&["decode", &token]);
    assert!(out.starts_with("NOT VERIFIED"), "{out}");
    assert!(out.contains("  alg: RS256\n"), "{out}");
    assert!(out.contains(&format!("  sub: system:serviceaccount:{ns}:bot\n")), "{out}");
    assert!(out.contains("  aud: talker-api\n"), "{out}");
    let exp = out.lines().find(|l| l.starts_with("  exp: ")).unwrap();
    assert!(exp.ends_with("Z (expires in 10m)") || exp.contains("Z (expires in 9m"), "{exp}");
    assert!(out.contains("bound to: no object (valid while the ServiceAccount exists)"), "{out}");

    let (code, line) = failure(&server.tool(&["decode", "not-a-token"]));
    assert_eq!(code, 64);
    assert!(line.starts_with("tokenwarden: not a JWT"), "{line}");
}

#[test]
fn an_expired_token_signed_offline_is_refused() {
    let server = Server::start();
    let ns = namespace_with_bot(&server);
    let data_dir = server.data_dir.to_str().unwrap();
    let args = ["sign-token", "bot", "-n", &ns, "--audience", "talker-api", "--duration", "10m", "--issued-at", "-1h", "--data-dir", data_dir];
    let expired = server.tool_ok(&args);
    let expired = expired.trim();
    let claims = jwt_payload(expired);
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 600);
    let decoded = server.tool_ok(&["decode", expired]);
    assert!(decoded.contains("(expired 50m") || decoded.contains("(expired 49m"), "{decoded}");
    let out = server.tool(&["review", expired, "--audience", "talker-api"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "authenticated: false\nerror: [invalid bearer token, service account token has expired]\n");
    // The same signature issued now is accepted: only the clock made it invalid.
    let fresh = server.tool_ok(&["sign-token", "bot", "-n", &ns, "--audience", "talker-api", "--issued-at", "-1m", "--data-dir", data_dir]);
    server.tool_ok(&["review", fresh.trim(), "--audience", "talker-api"]);

    let (code, line) = failure(&server.tool(&["sign-token", "bot", "-n", &ns, "--issued-at", "-1h", "--data-dir", "/nonexistent"]));
    assert_eq!(code, 64);
    assert!(line.contains("has no signing keys"), "{line}");
}

#[test]
fn whoami_prints_what_kubectl_prints() {
    let server = Server::start();
    let ns = namespace_with_bot(&server);
    assert_eq!(server.tool_ok(&["whoami"]), server.kubectl_ok(&["auth", "whoami"]));
    let token = server.token(&ns, "bot", &[]);
    let ours = server.tool_ok(&["whoami", "--token", &token]);
    assert_eq!(ours, server.kubectl_ok(&["auth", "whoami", "--token", &token]));
    assert!(ours.contains(&format!("system:serviceaccount:{ns}:bot")), "{ours}");

    let (code, line) = failure(&server.tool(&["whoami", "--token", "not-a-token"]));
    assert_eq!(code, 1);
    assert_eq!(line, "tokenwarden: Unauthorized");
}

#[test]
fn project_once_writes_a_private_token_file() {
    let server = Server::start();
    let ns = namespace_with_bot(&server);
    let path = server.root.path().join("token");
    server.tool_ok(&["project", "-n", &ns, "--service-account", "bot", "--audience", "talker-api", "--expiration-seconds", "600", "--path", path.to_str().unwrap(), "--once"]);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let token = std::fs::read_to_string(&path).unwrap();
    let claims = jwt_payload(&token);
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 600);
    server.tool_ok(&["review", &token, "--audience", "talker-api"]);

    let (code, line) = failure(&server.tool(&["project", "-n", &ns, "--service-account", "nope", "--path", path.to_str().unwrap(), "--once"]));
    assert_eq!((code, line.as_str()), (1, format!("tokenwarden: failed to fetch a token for serviceaccount {ns}/nope: serviceaccounts \"nope\" not found").as_str()));
    let (code, line) = failure(&server.tool(&["project", "-n", &ns, "--service-account", "bot", "--expiration-seconds", "60", "--path", "x", "--once"]));
    assert_eq!((code, line.as_str()), (64, "tokenwarden: --expiration-seconds must be at least 600 (10 minutes)"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), token, "failures leave the file alone");
}

#[test]
fn project_runs_until_sigterm_and_binds_to_a_pod() {
    let server = Server::start();
    let ns = namespace_with_bot(&server);
    server.kubectl_stdin_ok(&["apply", "-n", &ns, "-f", "-"], "apiVersion: v1\nkind: Pod\nmetadata:\n  name: worker\nspec:\n  serviceAccountName: bot\n  containers:\n  - name: c\n    image: busybox\n");
    let path = server.root.path().join("pod-token");
    let child = server
        .tool_cmd(&["project", "-n", &ns, "--service-account", "bot", "--audience", "talker-api", "--bound-pod", "worker", "--path", path.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut projector = Running(child);
    wait_for("the token file", || path.exists());
    let token = std::fs::read_to_string(&path).unwrap();
    assert_eq!(jwt_payload(&token)["kubernetes.io"]["pod"]["name"], "worker");
    Command::new("kill").args(["-TERM", &projector.0.id().to_string()]).status().unwrap();
    let status = projector.0.wait().unwrap();
    assert!(status.success(), "SIGTERM stops it cleanly: {status}");
    let mut stderr = String::new();
    projector.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(stderr.contains(&format!("wrote a token for serviceaccount {ns}/bot to ")), "{stderr}");
    assert!(!stderr.contains(&token), "the token is never logged");
    // Bound to the Pod: deleting it revokes the token.
    server.kubectl_ok(&["delete", "pod", "worker", "-n", &ns]);
    let out = server.tool(&["review", &token, "--audience", "talker-api"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
}

/// A stand-in API server for the projector: a real server grants at least 600 s, so the first
/// refresh would come after 8 minutes. Its TokenRequest answers (`fake-token-1`, `-2`, ...) are
/// already past 80 % of a 600 s lifetime and valid for 100 s more: a projector refreshes them
/// every second or so. Returns its kubeconfig and the count of tokens handed out.
fn stand_in_token_api(dir: &std::path::Path) -> (std::path::PathBuf, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let issued = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&issued);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
            let expires = tokenwarden_core::Timestamp::from_unix(i64::try_from(now).unwrap() + 100);
            let answer = serde_json::json!({
                "kind": "TokenRequest",
                "apiVersion": "authentication.k8s.io/v1",
                "spec": {"expirationSeconds": 600},
                "status": {"token": format!("fake-token-{n}"), "expirationTimestamp": expires.to_string()},
            })
            .to_string();
            let head = format!("HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", answer.len());
            let _ = stream.write_all(format!("{head}{answer}").as_bytes());
        }
    });
    let kubeconfig = dir.join("kubeconfig");
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: stand-in\n  cluster:\n    server: http://127.0.0.1:{port}\nusers:\n- name: projector\n  user:\n    token: projector-credential\ncontexts:\n- name: stand-in\n  context:\n    cluster: stand-in\n    user: projector\ncurrent-context: stand-in\n"
    );
    std::fs::write(&kubeconfig, config).unwrap();
    (kubeconfig, issued)
}

#[test]
fn project_keeps_running_while_the_token_file_cannot_be_written() {
    let root = tempfile::tempdir().unwrap();
    let (kubeconfig, issued) = stand_in_token_api(root.path());
    let dir = root.path().join("projected");
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("token");
    let child = Command::new(BIN)
        .args(["project", "-n", "ns", "--service-account", "bot", "--kubeconfig", kubeconfig.to_str().unwrap(), "--path", path.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut projector = Running(child);
    wait_for("the first token", || path.exists());

    // The directory is swapped for a file: every write fails (as root too), whatever is fetched.
    let aside = root.path().join("projected.aside");
    std::fs::rename(&dir, &aside).unwrap();
    std::fs::write(&dir, "").unwrap();
    let swapped = issued.load(Ordering::SeqCst);
    wait_for("two refreshes that cannot be written", || issued.load(Ordering::SeqCst) >= swapped + 2);
    assert!(projector.0.try_wait().unwrap().is_none(), "the current token is still valid: it keeps running");

    // Writable again: a fresh token replaces the one written before.
    std::fs::remove_file(&dir).unwrap();
    std::fs::rename(&aside, &dir).unwrap();
    let before = std::fs::read_to_string(&path).unwrap();
    wait_for("a fresh token", || std::fs::read_to_string(&path).is_ok_and(|token| token != before));
    assert!(projector.0.try_wait().unwrap().is_none());

    Command::new("kill").args(["-TERM", &projector.0.id().to_string()]).status().unwrap();
    let status = projector.0.wait().unwrap();
    assert!(status.success(), "SIGTERM stops it cleanly: {status}");
    let mut stderr = String::new();
    projector.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let failed = format!("tokenwarden: could not refresh a token for serviceaccount ns/bot: writing {}: ", path.display());
    let line = stderr.lines().find(|l| l.starts_with(&failed)).unwrap_or_else(|| panic!("no failed write logged:\n{stderr}"));
    assert!(line.contains("; keeping the current token (valid until "), "{line}");
    assert!(!stderr.contains("fake-token-"), "the token is never logged:\n{stderr}");
}

#[test]
fn the_python_client_runs_in_cluster_over_a_projected_directory() {
    let server = Server::start();
    let ns = namespace_with_bot(&server);
    let dir = server.root.path().join("serviceaccount");
    let exports = server.tool_ok(&["project", "-n", &ns, "--service-account", "bot", "--dir", dir.to_str().unwrap(), "--once"]);
    assert_eq!(exports, format!("export KUBERNETES_SERVICE_HOST=127.0.0.1\nexport KUBERNETES_SERVICE_PORT={}\n", server.port));
    assert_eq!(std::fs::read_to_string(dir.join("namespace")).unwrap(), ns);
    assert!(std::fs::read_to_string(dir.join("ca.crt")).unwrap().starts_with("-----BEGIN CERTIFICATE-----"));

    let out = common::python_cmd("incluster_whoami.py", &[dir.to_str().unwrap()])
        .env_remove("KUBECONFIG")
        .env("HOME", &server.home)
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", server.port.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().next(), Some(format!("system:serviceaccount:{ns}:bot").as_str()), "{stdout}");
    assert!(stdout.contains(&format!("system:serviceaccounts:{ns}")), "{stdout}");
}

#[test]
fn talker_api_echoes_the_request() {
    let (_talker, port) = talker_api();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"POST /hello?x=1 HTTP/1.1\r\nHost: talker-api.example\r\nX-Envoy-Expected-Rq-Timeout-Ms: 15000\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    let body: serde_json::Value = serde_json::from_str(response.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["method"], "POST");
    assert_eq!(body["path"], "/hello");
    assert_eq!(body["query_string"], "x=1");
    assert_eq!(body["body"], "hi");
    assert_eq!(body["headers"]["Host"], "talker-api.example");
    assert_eq!(body["headers"]["X-Envoy-Expected-Rq-Timeout-Ms"], "15000");
    assert_eq!(body["uuid"].as_str().unwrap().len(), 36);
}

#[test]
fn consume_rereads_the_token_file_and_prints_each_status() {
    let (_talker, port) = talker_api();
    let dir = tempfile::tempdir().unwrap();
    let token_path = dir.path().join("token");
    let endpoint = format!("http://127.0.0.1:{port}/hello");
    let consume = |count: &str| {
        Command::new(BIN)
            .args(["consume", "--endpoint", &endpoint, "--token-path", token_path.to_str().unwrap(), "--interval", "50ms", "--count", count])
            .output()
            .unwrap()
    };
    // No token file yet: it says what it waits for, and calls once the file appears.
    let mut waiting = Command::new(BIN)
        .args(["consume", "--endpoint", &endpoint, "--token-path", token_path.to_str().unwrap(), "--interval", "50ms", "--count", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    std::io::BufReader::new(waiting.stderr.take().unwrap()).read_line(&mut said).unwrap();
    assert_eq!(said, format!("tokenwarden: waiting for a token in {} (no such file yet)\n", token_path.display()));
    std::fs::write(&token_path, "abc\n").unwrap();
    let out = waiting.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(text(&out.stdout).ends_with("Z 200\n"), "{}", describe(&out));
    let out = consume("2");
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2, "{}", describe(&out));
    assert!(lines.iter().all(|l| l.ends_with("Z 200")), "{lines:?}");

    let out = Command::new(BIN).args(["consume", "--endpoint", "ftp://x", "--token-path", "t"]).output().unwrap();
    assert_eq!(failure(&out), (64, "tokenwarden: invalid --endpoint \"ftp://x\": expected an http:// or https:// URL".to_owned()));
    let out = Command::new(BIN).args(["consume", "--endpoint", &endpoint, "--token-path", "t", "--interval", "0"]).output().unwrap();
    assert_eq!(failure(&out), (64, "tokenwarden: --interval: duration \"0\" must be greater than 0".to_owned()));
}

#[test]
fn talker_api_refuses_bad_addresses() {
    let out = Command::new(BIN).args(["talker-api", "--listen", "nowhere"]).output().unwrap();
    assert_eq!(failure(&out), (64, "tokenwarden: invalid --listen \"nowhere\": expected ADDR:PORT or off".to_owned()));
    let (_talker, port) = talker_api();
    let out = Command::new(BIN).args(["talker-api", "--listen", &format!("127.0.0.1:{port}")]).output().unwrap();
    let (code, line) = failure(&out);
    assert_eq!(code, 1);
    assert!(line.starts_with(&format!("tokenwarden: cannot listen on 127.0.0.1:{port}: ")), "{line}");
}
