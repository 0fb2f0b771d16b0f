//! `tokenwarden project`: keeps a ServiceAccount token file fresh the way the kubelet keeps a
//! projected `serviceAccountToken` volume fresh (pkg/kubelet/token/token_manager.go): refresh
//! once the token is older than 80 % of its lifetime or 24 h (minus up to 10 s of jitter); if
//! a refresh fails (the TokenRequest or the write), keep the current token while it is still
//! valid and retry with a back-off. Files are replaced atomically with mode 0600. With `--dir`
//! it writes the in-cluster layout (`token`, `ca.crt`, `namespace`) so in-cluster clients run
//! unchanged against tokenwarden.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tokenwarden_core::Timestamp;
use tokenwarden_store::clock::random_bytes;
use tokenwarden_store::files::write_private;
use tokenwarden_store::{Clock, SystemClock};

use crate::Failure;
use crate::client::{Api, ClientArgs, segment};

/// Tokens older than this are refreshed whatever their lifetime (kubelet's `maxTTL`).
const MAX_TTL_SECONDS: i64 = 24 * 60 * 60;
/// Upper bound of the random jitter subtracted from the refresh thresholds.
const MAX_JITTER_SECONDS: i64 = 10;
/// Longest pause between retries of a failed refresh.
const MAX_RETRY_SECONDS: i64 = 60;
/// Longest sleep between looks at the wall clock: the sleep runs on a monotonic clock, which
/// stands still while the machine is suspended, and the token's deadlines do not.
const MAX_SLEEP_SECONDS: i64 = 60;

#[derive(Debug, clap::Args)]
pub struct ProjectArgs {
    /// Namespace of the ServiceAccount.
    #[arg(short, long)]
    pub namespace: String,
    /// The ServiceAccount the token is for.
    #[arg(long)]
    pub service_account: String,
    /// Audience of the token (repeatable); default: the API server's audiences.
    #[arg(long)]
    pub audience: Vec<String>,
    /// Requested lifetime in seconds (at least 600), as in a projected volume.
    #[arg(long, default_value_t = 3600)]
    pub expiration_seconds: i64,
    /// Bind the token to this Pod (it stops working when the Pod is deleted).
    #[arg(long)]
    pub bound_pod: Option<String>,
    /// The token file to keep fresh.
    #[arg(long, required_unless_present = "dir", conflicts_with = "dir")]
    pub path: Option<PathBuf>,
    /// Write the in-cluster layout here (`token`, `ca.crt`, `namespace`) and print the
    /// KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT to export.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Write the token once and exit.
    #[arg(long)]
    pub once: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// A token as TokenRequest answered it.
#[derive(Clone, PartialEq, Eq)]
pub struct Lease {
    pub token: String,
    /// `status.expirationTimestamp`.
    pub expires: Timestamp,
    /// `spec.expirationSeconds` of the answer (the lifetime the server granted).
    pub lifetime: i64,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("expires", &self.expires).field("lifetime", &self.lifetime).finish_non_exhaustive()
    }
}

impl Lease {
    /// Kubelet's `requiresRefresh`: issued at `expires - lifetime`; refresh after 24 h or
    /// within 20 % of the lifetime of expiry, each brought forward by `jitter` seconds.
    pub fn requires_refresh(&self, now: Timestamp, jitter: i64) -> bool {
        self.refresh_at(jitter) < now
    }

    /// The last second at which no refresh is due yet.
    fn refresh_at(&self, jitter: i64) -> Timestamp {
        let issued = self.expires.plus(-self.lifetime);
        let by_age = issued.plus(MAX_TTL_SECONDS - jitter);
        let by_lifetime = self.expires.plus(-(self.lifetime * 20 / 100) - jitter);
        by_age.min(by_lifetime)
    }
}

/// What a refresh came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// This token was fetched and written.
    Wrote(Lease),
    /// The refresh failed; the current token stays (it is still valid).
    Keep { error: String, expires: Timestamp },
    /// The refresh failed and the current token has expired.
    Expired { error: String },
    /// No token was ever fetched.
    NoToken { error: String },
}

/// The refresh state machine, free of I/O: the caller fetches, writes and sleeps. The lease
/// is the token in the file: a token fetched but not written is no refresh.
#[derive(Debug, Default)]
pub struct Refresher {
    lease: Option<Lease>,
    failures: u32,
}

impl Refresher {
    /// Whether a fetch is due at `now`.
    pub fn due(&self, now: Timestamp, jitter: i64) -> bool {
        self.lease.as_ref().is_none_or(|lease| lease.requires_refresh(now, jitter))
    }

    /// Seconds to sleep before the next check: until a refresh is due (at most a minute, so
    /// one due during a suspend happens soon after it), or a retry backoff (2, 4, ... 60 s)
    /// after failures.
    pub fn wait(&self, now: Timestamp, jitter: i64) -> i64 {
        if self.failures > 0 {
            return (1_i64 << self.failures.min(6)).min(MAX_RETRY_SECONDS);
        }
        match &self.lease {
            Some(lease) => (lease.refresh_at(jitter).unix() - now.unix() + 1).clamp(1, MAX_SLEEP_SECONDS),
            None => 0,
        }
    }

    /// Takes a refresh's result: the token fetched and written, or why not.
    pub fn fetched(&mut self, result: Result<Lease, String>, now: Timestamp) -> Step {
        match result {
            Ok(lease) => {
                self.failures = 0;
                self.lease = Some(lease.clone());
                Step::Wrote(lease)
            }
            Err(error) => {
                self.failures = self.failures.saturating_add(1);
                match &self.lease {
                    Some(lease) if now <= lease.expires => Step::Keep { error, expires: lease.expires },
                    Some(_) => Step::Expired { error },
                    None => Step::NoToken { error },
                }
            }
        }
    }
}

/// Where the projected files go.
enum Target {
    File(PathBuf),
    Dir(PathBuf),
}

impl Target {
    fn token_path(&self) -> PathBuf {
        match self {
            Self::File(path) => path.clone(),
            Self::Dir(dir) => dir.join("token"),
        }
    }
}

fn jitter() -> i64 {
    let [byte] = random_bytes::<1>();
    i64::from(byte) * MAX_JITTER_SECONDS / 256
}

pub async fn run(args: ProjectArgs) -> Result<(), Failure> {
    if args.expiration_seconds < 600 {
        return Err(Failure::Usage("--expiration-seconds must be at least 600 (10 minutes)".into()));
    }
    if args.audience.iter().any(String::is_empty) {
        return Err(Failure::Usage("--audience must not be an empty string".into()));
    }
    let api = args.client.api()?;
    let target = match (&args.path, &args.dir) {
        (Some(path), None) => Target::File(path.clone()),
        (None, Some(dir)) => {
            prepare_dir(&api, dir, &args.namespace)?;
            Target::Dir(dir.clone())
        }
        _ => return Err(Failure::Usage("give one of --path FILE or --dir DIR".into())),
    };
    let request = json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "spec": {
            "audiences": args.audience,
            "expirationSeconds": args.expiration_seconds,
            "boundObjectRef": args.bound_pod.as_ref().map(|pod| json!({"kind": "Pod", "apiVersion": "v1", "name": pod})),
        }
    });
    let path = format!("/api/v1/namespaces/{}/serviceaccounts/{}/token", segment("namespace", &args.namespace)?, segment("serviceaccount", &args.service_account)?);
    let fetch = || async { api.post(&path, &request).await.map_err(|e| e.to_string()).and_then(|answer| lease(&answer)) };
    let what = format!("a token for serviceaccount {}/{}", args.namespace, args.service_account);
    let clock = SystemClock;

    if args.once {
        let lease = fetch().await.map_err(|e| Failure::Runtime(format!("failed to fetch {what}: {e}")))?;
        write_token(&target, &lease).map_err(Failure::Runtime)?;
        eprintln!("tokenwarden: wrote {what} to {} (expires {})", target.token_path().display(), lease.expires);
        return Ok(());
    }

    let mut stop = crate::listeners::shutdown_signal();
    let mut refresher = Refresher::default();
    loop {
        let jitter = jitter();
        if refresher.due(clock.now(), jitter) {
            // A failed write is a failed refresh: the token in the file stays while it is valid.
            let refreshed = fetch().await.and_then(|lease| write_token(&target, &lease).map(|()| lease));
            match refresher.fetched(refreshed, clock.now()) {
                Step::Wrote(lease) => {
                    eprintln!("tokenwarden: wrote {what} to {} (expires {})", target.token_path().display(), lease.expires);
                }
                Step::Keep { error, expires } => eprintln!("tokenwarden: could not refresh {what}: {error}; keeping the current token (valid until {expires})"),
                Step::Expired { error } => eprintln!("tokenwarden: {what} expired and refresh failed: {error}; retrying"),
                Step::NoToken { error } => eprintln!("tokenwarden: waiting for {what}: {error}"),
            }
        }
        let pause = Duration::from_secs(u64::try_from(refresher.wait(clock.now(), jitter)).unwrap_or(1));
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return Ok(()),
        }
    }
}

/// The lease in a TokenRequest answer.
fn lease(answer: &Value) -> Result<Lease, String> {
    let token = answer.pointer("/status/token").and_then(Value::as_str).filter(|t| !t.is_empty()).ok_or("no token in server response")?;
    let expires = answer
        .pointer("/status/expirationTimestamp")
        .and_then(Value::as_str)
        .and_then(Timestamp::parse_rfc3339)
        .ok_or("no expirationTimestamp in server response")?;
    let lifetime = answer.pointer("/spec/expirationSeconds").and_then(Value::as_i64).ok_or("no spec.expirationSeconds in server response")?;
    Ok(Lease { token: token.to_owned(), expires, lifetime })
}

fn write_token(target: &Target, lease: &Lease) -> Result<(), String> {
    let path = target.token_path();
    write_private(&path, lease.token.as_bytes()).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Writes `ca.crt` and `namespace` and prints the service address to export.
fn prepare_dir(api: &Api, dir: &Path, namespace: &str) -> Result<(), Failure> {
    let access = api.client.access();
    let server = access.server();
    let uri: hyper::Uri = server.parse().map_err(|_| Failure::Usage(format!("invalid API server URL {server}")))?;
    if uri.scheme_str() != Some("https") {
        return Err(Failure::Usage(format!("in-cluster clients need an https:// API server, not {server}")));
    }
    if !uri.path().trim_matches('/').is_empty() {
        return Err(Failure::Usage(format!("in-cluster clients cannot reach {server}: it has a path")));
    }
    let host = uri.host().ok_or_else(|| Failure::Usage(format!("invalid API server URL {server}")))?;
    let port = uri.port_u16().unwrap_or(443).to_string();
    let ca = access.ca_pem().ok_or_else(|| Failure::Usage("the kubeconfig names no certificate authority to write to ca.crt".into()))?;
    std::fs::create_dir_all(dir).map_err(|e| Failure::Runtime(format!("creating {}: {e}", dir.display())))?;
    for (name, contents) in [("ca.crt", ca), ("namespace", namespace.as_bytes())] {
        let path = dir.join(name);
        write_private(&path, contents).map_err(|e| Failure::Runtime(format!("writing {}: {e}", path.display())))?;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    println!("export KUBERNETES_SERVICE_HOST={host}");
    println!("export KUBERNETES_SERVICE_PORT={port}");
    Ok(())
}

/// Drives [`Refresher`] with a clock: what a projector does over a token's life.
#[cfg(test)]
mod tests {
    use tokenwarden_store::ManualClock;

    use super::*;

    fn issued_lease(issued: Timestamp, lifetime: i64) -> Lease {
        Lease { token: format!("token-{}", issued.unix()), expires: issued.plus(lifetime), lifetime }
    }

    #[test]
    fn refreshes_after_eighty_percent_of_the_lifetime() {
        let clock = ManualClock::new(Timestamp::from_unix(1_000_000));
        let mut refresher = Refresher::default();
        assert!(refresher.due(clock.now(), 0), "the first token is due at once");
        let first = issued_lease(clock.now(), 600);
        assert_eq!(refresher.fetched(Ok(first.clone()), clock.now()), Step::Wrote(first));
        clock.advance(480);
        assert!(!refresher.due(clock.now(), 0), "at exactly 80 % not yet");
        clock.advance(1);
        assert!(refresher.due(clock.now(), 0), "past 80 %");
        assert_eq!(refresher.wait(Timestamp::from_unix(1_000_440), 0), 41);
        assert_eq!(refresher.wait(Timestamp::from_unix(1_000_000), 0), MAX_SLEEP_SECONDS, "looks at the clock every minute");
    }

    #[test]
    fn jitter_brings_the_refresh_forward_by_at_most_ten_seconds() {
        let issued = Timestamp::from_unix(1_000_000);
        let current = issued_lease(issued, 600);
        assert!(!current.requires_refresh(issued.plus(470), 9));
        assert!(current.requires_refresh(issued.plus(472), 9));
        assert!((0..MAX_JITTER_SECONDS).contains(&jitter()));
    }

    #[test]
    fn long_tokens_are_refreshed_after_a_day() {
        let issued = Timestamp::from_unix(1_000_000);
        let week = issued_lease(issued, 7 * 24 * 3600);
        assert!(!week.requires_refresh(issued.plus(MAX_TTL_SECONDS), 0));
        assert!(week.requires_refresh(issued.plus(MAX_TTL_SECONDS + 1), 0));
    }

    #[test]
    fn a_failed_refresh_keeps_the_valid_token_then_reports_it_expired() {
        let clock = ManualClock::new(Timestamp::from_unix(1_000_000));
        let mut refresher = Refresher::default();
        let first = issued_lease(clock.now(), 600);
        refresher.fetched(Ok(first.clone()), clock.now());
        clock.advance(500);
        assert!(refresher.due(clock.now(), 0));
        let step = refresher.fetched(Err("serviceaccounts \"bot\" not found".into()), clock.now());
        assert_eq!(step, Step::Keep { error: "serviceaccounts \"bot\" not found".into(), expires: first.expires });
        assert_eq!(refresher.wait(clock.now(), 0), 2, "retries back off");
        clock.advance(101);
        assert_eq!(refresher.fetched(Err("down".into()), clock.now()), Step::Expired { error: "down".into() });
        assert_eq!(refresher.wait(clock.now(), 0), 4);
        let second = issued_lease(clock.now(), 600);
        assert_eq!(refresher.fetched(Ok(second.clone()), clock.now()), Step::Wrote(second));
        assert!(!refresher.due(clock.now(), 0));
        assert_eq!(refresher.wait(clock.now(), 0), MAX_SLEEP_SECONDS, "success resets the backoff");
    }

    #[test]
    fn a_suspend_does_not_delay_the_refresh_by_more_than_a_minute() {
        // The loop sleeps on a clock that stands still during a suspend; each minute at most,
        // it looks at the wall clock, which did not.
        let clock = ManualClock::new(Timestamp::from_unix(1_000_000));
        let mut refresher = Refresher::default();
        let first = issued_lease(clock.now(), 3600);
        refresher.fetched(Ok(first.clone()), clock.now());
        assert_eq!(refresher.wait(clock.now(), 0), MAX_SLEEP_SECONDS);
        clock.advance(3000);
        assert!(refresher.due(clock.now(), 0), "past 80 % on waking: refreshed at once");
        clock.advance(1000);
        assert!(refresher.due(clock.now(), 0), "expired on waking: refreshed at once");
        assert_eq!(refresher.fetched(Err("down".into()), clock.now()), Step::Expired { error: "down".into() });
    }

    #[test]
    fn no_token_yet_is_a_wait_with_backoff() {
        let mut refresher = Refresher::default();
        let now = Timestamp::from_unix(1);
        assert_eq!(refresher.fetched(Err("connection refused".into()), now), Step::NoToken { error: "connection refused".into() });
        assert!(refresher.due(now, 0));
        for _ in 0..10 {
            refresher.fetched(Err("connection refused".into()), now);
        }
        assert_eq!(refresher.wait(now, 0), MAX_RETRY_SECONDS);
    }

    #[test]
    fn leases_come_from_the_answer() {
        let answer = json!({"spec": {"expirationSeconds": 600}, "status": {"token": "t", "expirationTimestamp": "2026-11-23T16:10:00Z"}});
        let got = lease(&answer).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((got.lifetime, got.expires.to_string()), (600, "2026-11-23T16:10:00Z".to_owned()));
        assert_eq!(lease(&json!({"status": {"token": ""}})).unwrap_err(), "no token in server response");
    }
}
