//! End-to-end harness: a real `tokenwarden serve` process on a free port with a temporary
//! data directory, driven with the real kubectl and the official Python client.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // shared by several test binaries; a failed unwrap is a failed test

pub mod cluster;

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use tempfile::TempDir;

/// How long a start may take before the test fails.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

pub const BIN: &str = env!("CARGO_BIN_EXE_tokenwarden");

/// The workspace root (`crates/cli/../..`).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

pub use tokenwarden_testkit::free_port;

/// The last lines of every `*.log` file in `dir`: what the processes a script started said
/// before it failed.
pub fn logs_in(dir: &Path) -> String {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir).map_or_else(|_| Vec::new(), |entries| entries.filter_map(|e| Some(e.ok()?.path())).collect());
    names.retain(|path| path.extension().is_some_and(|ext| ext == "log"));
    names.sort();
    let mut out = String::new();
    for path in names {
        let content = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = content.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        out.push_str(&format!("--- {} (last 40 lines) ---\n{tail}\n", path.display()));
    }
    out
}

/// Whether something accepts connections on 127.0.0.1:`port`.
pub fn listening(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).is_ok()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One plain HTTP/1.1 `GET path` to 127.0.0.1:`port` with `Host: host` (and the bearer
/// `token`), as a client of the authorizer's check listener or proxy sends it; returns
/// (status, head lines lower-cased, body).
pub fn http(port: u16, path: &str, host: &str, token: Option<&str>) -> (u16, String, String) {
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

/// stdout, stderr and status of a finished command, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!("status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}", out.status, text(&out.stdout), text(&out.stderr))
}

/// A running `tokenwarden serve`.
pub struct Server {
    child: Option<Child>,
    /// Holds the data directory, kubectl's HOME and scratch files; removed on drop.
    pub root: TempDir,
    pub data_dir: PathBuf,
    pub home: PathBuf,
    pub port: u16,
    pub url: String,
    extra_args: Vec<String>,
    starts: u32,
}

impl Server {
    /// Starts a server with default flags.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra `serve` flags.
    pub fn start_with(extra_args: &[&str]) -> Self {
        Self::start_with_port(free_port(), extra_args)
    }

    /// Starts a server with extra `serve` flags, its API on `port`.
    pub fn start_with_port(port: u16, extra_args: &[&str]) -> Self {
        let root = tempfile::tempdir().unwrap();
        let data_dir = root.path().join("data");
        let home = root.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let mut server = Self {
            child: None,
            root,
            data_dir,
            home,
            port,
            url: format!("https://127.0.0.1:{port}"),
            extra_args: extra_args.iter().map(|s| (*s).to_owned()).collect(),
            starts: 0,
        };
        server.spawn_and_wait();
        server
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.join("admin.kubeconfig")
    }

    fn stderr_path(&self) -> PathBuf {
        self.root.path().join(format!("server-{}.stderr", self.starts))
    }

    /// The server's stderr so far (of the current run).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    fn spawn_and_wait(&mut self) {
        self.starts += 1;
        let stderr = std::fs::File::create(self.stderr_path()).unwrap();
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--api-listen")
            .arg(format!("127.0.0.1:{}", self.port))
            // The authorizer's listeners on free ports (unless a test names them), so servers
            // can run side by side.
            .args(
                ["--authz-grpc-listen", "--authz-http-listen", "--metrics-listen"]
                    .into_iter()
                    .filter(|flag| !self.extra_args.iter().any(|a| a == flag))
                    .flat_map(|flag| [flag, "127.0.0.1:0"]),
            )
            .args(&self.extra_args)
            // Per-request authorizer lines too: the log tests grep them for credentials.
            .env("TOKENWARDEN_LOG", "info,tokenwarden_authz=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn tokenwarden serve");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = String::new();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("tokenwarden serve exited early with {status}\n--- stderr ---\n{}", self.stderr());
            }
            let waiting_for = if !self.kubeconfig().exists() {
                format!("{} to be written", self.kubeconfig().display())
            } else {
                let out = self.kubectl(&["get", "--raw", "/readyz", "--request-timeout", "2s"]);
                if out.status.success() && text(&out.stdout).trim() == "ok" {
                    return;
                }
                format!("`kubectl get --raw /readyz` to answer ok (last: {})", describe(&out).replace('\n', " "))
            };
            if waiting_for != last {
                eprintln!("harness: waiting for {waiting_for}");
                last = waiting_for;
            }
            if Instant::now() > deadline {
                let stderr = self.stderr();
                self.kill();
                panic!("tokenwarden serve was not ready within {START_TIMEOUT:?}: still waiting for {last}\n--- server stderr ---\n{stderr}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL (`Child::kill` sends SIGKILL on Unix), then reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server process, as a paused VM or process would be.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().map(Child::id).unwrap();
        assert!(Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().unwrap().success());
    }

    /// SIGKILL, then start again on the same data directory and port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn_and_wait();
    }

    /// A kubectl command against this server as admin (unless the args override the credential).
    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", &self.home)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBECTL_EXTERNAL_DIFF");
        cmd
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd(args).stdin(Stdio::null()).output().expect("run kubectl")
    }

    /// kubectl with `stdin` fed to it (for `-f -`).
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .kubectl_cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// kubectl that must succeed; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(out.status.success(), "kubectl {args:?} failed\n{}\n--- server stderr ---\n{}", describe(&out), self.stderr());
        text(&out.stdout)
    }

    pub fn kubectl_stdin_ok(&self, args: &[&str], stdin: &str) -> String {
        let out = self.kubectl_stdin(args, stdin);
        assert!(out.status.success(), "kubectl {args:?} <<< {stdin} failed\n{}\n--- server stderr ---\n{}", describe(&out), self.stderr());
        text(&out.stdout)
    }

    /// kubectl that must fail; returns stderr.
    pub fn kubectl_err(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(!out.status.success(), "kubectl {args:?} should have failed\n{}", describe(&out));
        text(&out.stderr)
    }

    /// kubectl output parsed as JSON.
    pub fn kubectl_json(&self, args: &[&str]) -> serde_json::Value {
        let stdout = self.kubectl_ok(args);
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("kubectl {args:?}: not JSON ({e}):\n{stdout}"))
    }

    /// Writes `name` in the scratch directory and returns its path.
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.root.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// The admin bearer token written in admin.kubeconfig.
    pub fn admin_token(&self) -> String {
        kubeconfig_field(&std::fs::read_to_string(self.kubeconfig()).unwrap(), "token").expect("admin.kubeconfig has a token")
    }

    /// The CA (PEM) of admin.kubeconfig, written to a file.
    pub fn ca_file(&self) -> PathBuf {
        let kubeconfig = std::fs::read_to_string(self.kubeconfig()).unwrap();
        let data = kubeconfig_field(&kubeconfig, "certificate-authority-data").expect("admin.kubeconfig has certificate-authority-data");
        let pem = base64::engine::general_purpose::STANDARD.decode(data).unwrap();
        let path = self.root.path().join("ca.pem");
        std::fs::write(&path, pem).unwrap();
        path
    }

    /// A kubeconfig for the same server and CA with `token` (or no credential at all).
    pub fn kubeconfig_with(&self, name: &str, token: Option<&str>) -> PathBuf {
        let kubeconfig = std::fs::read_to_string(self.kubeconfig()).unwrap();
        let ca = kubeconfig_field(&kubeconfig, "certificate-authority-data").unwrap();
        let user = match token {
            Some(token) => format!("  user:\n    token: {token}\n"),
            None => "  user: {}\n".to_owned(),
        };
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\nusers:\n- name: u\n{user}contexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n    namespace: default\ncurrent-context: x\n",
            self.url
        );
        self.write_file(name, &text)
    }

    /// kubectl with another kubeconfig.
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        self.kubectl_cmd(args).env("KUBECONFIG", kubeconfig).stdin(Stdio::null()).output().expect("run kubectl")
    }

    /// `kubectl create token` that must succeed; the token, trimmed.
    pub fn token(&self, namespace: &str, sa: &str, extra: &[&str]) -> String {
        let mut args = vec!["create", "token", sa, "-n", namespace];
        args.extend_from_slice(extra);
        let token = self.kubectl_ok(&args).trim().to_owned();
        assert_eq!(token.split('.').count(), 3, "not a JWT: {token:?}");
        token
    }

    /// A `tokenwarden` tool command against this server as admin, run in the scratch directory.
    pub fn tool_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args).env("KUBECONFIG", self.kubeconfig()).env("HOME", &self.home).current_dir(self.root.path()).stdin(Stdio::null());
        cmd
    }

    pub fn tool(&self, args: &[&str]) -> Output {
        self.tool_cmd(args).output().expect("run tokenwarden")
    }

    /// A tool command that must succeed; returns stdout.
    pub fn tool_ok(&self, args: &[&str]) -> String {
        let out = self.tool(args);
        assert!(out.status.success(), "tokenwarden {args:?} failed\n{}\n--- server stderr ---\n{}", describe(&out), self.stderr());
        text(&out.stdout)
    }

    /// Runs a Python script of `tests/python/` with the test interpreter.
    pub fn python(&self, script: &str, args: &[&str]) -> Output {
        python_cmd(script, args).env("KUBECONFIG", self.kubeconfig()).env("HOME", &self.home).output().expect("run python")
    }
}

impl Server {
    /// One HTTPS request to `path` verified against admin.kubeconfig's CA (no kubectl in
    /// between); `token: None` is an anonymous request. Returns `{status, headers, body}`.
    pub fn https(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> serde_json::Value {
        https_request(&format!("{}{path}", self.url), &self.ca_file(), method, token, body)
    }
}

/// See [`Server::https`]; headers are lower-cased.
pub fn https_request(url: &str, ca: &Path, method: &str, token: Option<&str>, body: Option<&str>) -> serde_json::Value {
    // `--token=VALUE`: a base64url token may begin with '-', which a separate argument would
    // turn into an unknown option.
    let token = format!("--token={}", token.unwrap_or(""));
    let mut args = vec![url, ca.to_str().unwrap(), token.as_str(), "--method", method];
    if let Some(body) = body {
        args.extend(["--data", body]);
    }
    let out = python_cmd("https_get.py", &args).output().unwrap();
    assert!(out.status.success(), "https_get.py {method} {url}\n{}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The JSON body of an [`https_request`] answer.
pub fn body_json(response: &serde_json::Value) -> serde_json::Value {
    let body = response["body"].as_str().unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {response}"))
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `key: value` of a (flat, hand-written) kubeconfig.
pub fn kubeconfig_field(kubeconfig: &str, key: &str) -> Option<String> {
    let prefix = format!("{key}:");
    kubeconfig.lines().find_map(|line| line.trim().strip_prefix(prefix.as_str())).map(|v| v.trim().to_owned())
}

/// `$TOKENWARDEN_PYTHON`, else `<workspace>/.venv/bin/python`.
pub fn python_bin() -> PathBuf {
    match std::env::var_os("TOKENWARDEN_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace().join(".venv/bin/python"),
    }
}

/// A command running `tests/python/<script>` with `args`.
pub fn python_cmd(script: &str, args: &[&str]) -> Command {
    let python = python_bin();
    assert!(python.exists(), "no Python interpreter at {} (run ./test, or set TOKENWARDEN_PYTHON)", python.display());
    let mut cmd = Command::new(python);
    cmd.arg(workspace().join("tests/python").join(script)).args(args).stdin(Stdio::null());
    cmd
}

/// The payload of a JWT, decoded (base64url, no padding).
pub fn jwt_payload(token: &str) -> serde_json::Value {
    let part = token.split('.').nth(1).unwrap_or_else(|| panic!("not a JWT: {token:?}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A unique-enough lowercase suffix for object names.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id() % 100_000, N.fetch_add(1, Ordering::Relaxed))
}
