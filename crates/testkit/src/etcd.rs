//! A real etcd cluster for tests: Debian's `etcd` (package `etcd-server`) started as a
//! multi-member cluster on free loopback ports, data in a temporary directory (on
//! `/dev/shm` when there is one, so fsync costs nothing), stopped on drop.
//!
//! Each member runs under a tiny shell watchdog that holds the read end of a pipe: when the
//! test drops the member, or the test process dies in any way, the pipe closes and the
//! watchdog kills etcd and removes its data. So a cluster shared by a whole test binary
//! (see [`EtcdCluster::shared`]) never outlives it.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::free_ports;

/// The etcd binary: `$TOKENWARDEN_ETCD`, else Debian's `/usr/bin/etcd`, else `etcd` on PATH.
pub fn etcd_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TOKENWARDEN_ETCD") {
        return PathBuf::from(path);
    }
    let debian = Path::new("/usr/bin/etcd");
    if debian.exists() {
        return debian.to_owned();
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join("etcd")).find(|p| p.exists()))
        .unwrap_or_else(|| {
            panic!("etcd not found: these tests need a real etcd; install it with `apt-get install etcd-server` (or set TOKENWARDEN_ETCD)")
        })
}

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Kills etcd when stdin closes (the test dropped it or died), then removes the data,
/// unless it was told `keep` first (a member killed to be restarted).
const WATCHDOG: &str = r#"dir=$1; shift; "$@" & etcd=$!; read line; kill -KILL "$etcd" 2>/dev/null; wait "$etcd"; [ "$line" = keep ] && exit 0; rm -rf "$dir"; rmdir "$(dirname "$dir")" 2>/dev/null; exit 0"#;

/// PEM files that make etcd serve its clients over TLS and require client certificates.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    /// Plain-HTTP `/health` (and metrics), also when clients use TLS.
    metrics_port: u16,
    tls: Option<TlsFiles>,
    dir: PathBuf,
    process: Option<(Child, ChildStdin)>,
}

impl Member {
    fn client_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    fn spawn(&mut self, binary: &Path, initial_cluster: &str, token: &str, state: &str) {
        let data = self.dir.join("data");
        let log = std::fs::File::create(self.dir.join("etcd.log")).unwrap();
        let mut args: Vec<String> = vec![
            "--name".into(),
            self.name.clone(),
            "--data-dir".into(),
            data.display().to_string(),
            "--listen-client-urls".into(),
            self.client_url(),
            "--advertise-client-urls".into(),
            self.client_url(),
            "--listen-peer-urls".into(),
            self.peer_url(),
            "--initial-advertise-peer-urls".into(),
            self.peer_url(),
            "--initial-cluster".into(),
            initial_cluster.into(),
            "--initial-cluster-token".into(),
            token.into(),
            "--initial-cluster-state".into(),
            state.into(),
            "--logger".into(),
            "zap".into(),
            "--log-level".into(),
            "warn".into(),
            "--listen-metrics-urls".into(),
            format!("http://127.0.0.1:{}", self.metrics_port),
        ];
        if let Some(tls) = &self.tls {
            for (flag, path) in [("--cert-file", &tls.server_cert), ("--key-file", &tls.server_key), ("--trusted-ca-file", &tls.ca)] {
                args.extend([flag.to_owned(), path.display().to_string()]);
            }
            args.push("--client-cert-auth".into());
        }
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("etcd-watchdog")
            .arg(&self.dir)
            .arg(binary)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({e}); install it with `apt-get install etcd-server`", binary.display()));
        let stdin = child.stdin.take().unwrap();
        self.process = Some((child, stdin));
    }

    /// Kills etcd (SIGKILL, like a crash) through its watchdog and waits for it; `keep`
    /// leaves the data for a restart.
    fn stop(&mut self, keep: bool) {
        if let Some((mut child, mut stdin)) = self.process.take() {
            if keep {
                let _ = stdin.write_all(b"keep\n");
            }
            drop(stdin);
            let _ = child.wait();
        }
    }

    fn healthy(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect_timeout(&([127, 0, 0, 1], self.metrics_port).into(), Duration::from_millis(200))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n", self.metrics_port);
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response.contains(r#""health":"true""#)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }
}

/// A running etcd cluster.
pub struct EtcdCluster {
    members: Vec<Member>,
    binary: PathBuf,
    initial_cluster: String,
    token: String,
    _root: Option<tempfile::TempDir>,
}

impl EtcdCluster {
    /// Starts a cluster of `size` members and waits until every member reports healthy.
    pub fn start(size: usize) -> Self {
        Self::start_with(size, None)
    }

    /// Like [`Self::start`], serving clients over TLS with client certificates required.
    pub fn start_tls(size: usize, tls: TlsFiles) -> Self {
        Self::start_with(size, Some(tls))
    }

    fn start_with(size: usize, tls: Option<TlsFiles>) -> Self {
        let binary = etcd_binary();
        let shm = Path::new("/dev/shm");
        let builder = {
            let mut b = tempfile::Builder::new();
            b.prefix("tokenwarden-etcd-");
            b
        };
        let root = if shm.is_dir() { builder.tempdir_in(shm) } else { builder.tempdir() }.unwrap();
        let ports = free_ports(size * 3);
        let mut members: Vec<Member> = (0..size)
            .map(|i| {
                let dir = root.path().join(format!("m{i}"));
                std::fs::create_dir_all(&dir).unwrap();
                Member {
                    name: format!("m{i}"),
                    client_port: ports[3 * i],
                    peer_port: ports[3 * i + 1],
                    metrics_port: ports[3 * i + 2],
                    tls: tls.clone(),
                    dir,
                    process: None,
                }
            })
            .collect();
        let initial_cluster = members.iter().map(|m| format!("{}={}", m.name, m.peer_url())).collect::<Vec<_>>().join(",");
        let token = root.path().file_name().unwrap().to_string_lossy().into_owned();
        for member in &mut members {
            member.spawn(&binary, &initial_cluster, &token, "new");
        }
        let cluster = Self { members, binary, initial_cluster, token, _root: Some(root) };
        cluster.wait_healthy();
        cluster
    }

    /// One three-member cluster for the whole test binary, started on first use. Its
    /// processes end with the test process (see the module docs).
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<EtcdCluster> = OnceLock::new();
        SHARED.get_or_init(|| {
            let mut cluster = Self::start(3);
            // Statics are never dropped: the watchdogs clean up, so the directory must not
            // be removed under them by a destructor that will not run anyway.
            if let Some(root) = cluster._root.take() {
                let _ = root.keep();
            }
            cluster
        })
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        for member in &self.members {
            while !member.healthy() {
                if Instant::now() > deadline {
                    panic!("etcd member {} did not become healthy in {START_TIMEOUT:?}; its log:\n{}", member.name, member.log());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The client URLs of the running members.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().filter(|m| m.process.is_some()).map(Member::client_url).collect()
    }

    /// The client URLs of every member, running or not.
    pub fn all_endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::client_url).collect()
    }

    /// `endpoints()` joined with commas, as `--etcd-endpoints` takes them.
    pub fn endpoints_arg(&self) -> String {
        self.all_endpoints().join(",")
    }

    /// Kills member `i` (the others keep quorum in a three-member cluster); its data stays
    /// for [`Self::restart_all`].
    pub fn kill_member(&mut self, i: usize) {
        self.members[i].stop(true);
    }

    /// Kills every member, keeping their data.
    pub fn kill_all(&mut self) {
        for member in &mut self.members {
            member.stop(true);
        }
    }

    /// Starts every killed member again on its data and waits until all are healthy.
    pub fn restart_all(&mut self) {
        for member in self.members.iter_mut().filter(|m| m.process.is_none()) {
            member.spawn(&self.binary, &self.initial_cluster, &self.token, "existing");
        }
        self.wait_healthy();
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            member.stop(false);
        }
    }
}
