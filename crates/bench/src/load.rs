//! Closed-loop load generators: `connections` workers, each with one keep-alive connection
//! and one request in flight, for a bounded time (or until the tokens run out with `--once`).
//! Latency is measured per request (send to end of body) and reported as p50/p99 from the
//! sorted samples; requests still in flight when time is up are not counted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request as AttrRequest};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokenwarden_store::clock::Stopwatch;

use crate::mint::{Minter, minter};

#[derive(clap::Args, Clone)]
pub struct Common {
    /// Concurrent connections (one request in flight each).
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Seconds of load before measuring (not counted).
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
    /// Tokens, one per line; `{token}` in headers or body is replaced by the next one.
    #[arg(long)]
    pub tokens: Option<PathBuf>,
    /// Use each token once: stop when they run out (the run may end before --duration).
    #[arg(long)]
    pub once: bool,
    /// Mint the tokens on the fly from this template (with --key) instead of reading --tokens.
    #[arg(long, requires = "key")]
    pub mint_template: Option<PathBuf>,
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// With --mint-template: stop after this many tokens.
    #[arg(long)]
    pub count: Option<u64>,
}

#[derive(clap::Args)]
pub struct HttpArgs {
    /// `http://HOST:PORT/PATH`; repeated, the connections are spread over the servers in
    /// turn (replicas of one cluster: same path, the first URL's Host).
    #[arg(long = "url", required = true)]
    pub urls: Vec<hyper::Uri>,
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// `Name: value` (repeatable); `{token}` is replaced.
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// Request body; `{token}` is replaced.
    #[arg(long)]
    pub body: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(clap::Args)]
pub struct GrpcArgs {
    /// The ext_authz server, `ADDR:PORT`.
    #[arg(long)]
    pub addr: SocketAddr,
    /// The request's `host` (selects the AuthConfig).
    #[arg(long)]
    pub host: String,
    /// `authorization` header value; `{token}` is replaced (omit for none).
    #[arg(long)]
    pub authorization: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

/// Where tokens come from.
enum Tokens {
    None,
    List(Vec<String>),
    Mint(Box<Minter>),
}

struct Shared {
    tokens: Tokens,
    next: AtomicU64,
    once: bool,
    limit: Option<u64>,
    stop: AtomicBool,
    measuring: AtomicBool,
}

impl Shared {
    /// The next token (`Some("")` without tokens); `None` when they ran out.
    fn token(&self) -> Option<Result<String, String>> {
        let n = match &self.tokens {
            Tokens::None => return Some(Ok(String::new())),
            _ => self.next.fetch_add(1, Ordering::Relaxed),
        };
        if self.limit.is_some_and(|limit| n >= limit) {
            return None;
        }
        match &self.tokens {
            Tokens::List(list) if list.is_empty() => None,
            Tokens::List(list) => {
                let i = usize::try_from(n).unwrap_or(usize::MAX);
                if self.once && i >= list.len() { None } else { list.get(i % list.len()).cloned().map(Ok) }
            }
            Tokens::Mint(minter) => Some(minter.token(n)),
            Tokens::None => Some(Ok(String::new())),
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

fn shared(common: &Common) -> Result<Arc<Shared>, String> {
    let tokens = match (&common.tokens, &common.mint_template, &common.key) {
        (Some(path), _, _) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            Tokens::List(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
        }
        (None, Some(template), Some(key)) => Tokens::Mint(Box::new(minter(template, key, false)?)),
        _ => Tokens::None,
    };
    Ok(Arc::new(Shared {
        tokens,
        next: AtomicU64::new(0),
        once: common.once,
        limit: common.count,
        stop: AtomicBool::new(false),
        measuring: AtomicBool::new(common.warmup <= 0.0),
    }))
}

/// What one worker saw while measuring.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    statuses: BTreeMap<String, u64>,
    errors: u64,
}

impl Tally {
    fn record(&mut self, shared: &Shared, started: Stopwatch, status: String) {
        if shared.measuring.load(Ordering::Relaxed) {
            let us = (started.elapsed_seconds() * 1e6).round();
            self.latencies_us.push(if us >= f64::from(u32::MAX) { u32::MAX } else { us as u32 });
            *self.statuses.entry(status).or_default() += 1;
        }
    }

    fn error(&mut self, shared: &Shared) {
        if shared.measuring.load(Ordering::Relaxed) {
            self.errors += 1;
        }
    }

    /// The next token for a worker; `None` (stop this worker) when they ran out, or when one
    /// could not be made (counted as an error).
    fn next_token(&mut self, shared: &Shared) -> Option<String> {
        match shared.token()? {
            Ok(token) => Some(token),
            Err(_) => {
                self.error(shared);
                None
            }
        }
    }
}

/// Runs the workers for warm-up plus duration and prints the summary line.
async fn drive<F, Fut>(common: &Common, shared: Arc<Shared>, worker: F) -> Result<(), String>
where
    F: Fn(Arc<Shared>) -> Fut,
    Fut: std::future::Future<Output = Tally> + Send + 'static,
{
    // `measuring` and `measured` mark the window on stdout, so that bench/run reads the CPU
    // of the process under test over the answers counted, and not over the warm-up too.
    if common.warmup <= 0.0 {
        println!("measuring");
    }
    let handles: Vec<_> = (0..common.connections.max(1)).map(|_| tokio::spawn(worker(Arc::clone(&shared)))).collect();
    if common.warmup > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(common.warmup)).await;
        shared.measuring.store(true, Ordering::Relaxed);
        println!("measuring");
    }
    let started = Stopwatch::start();
    let deadline = Duration::from_secs_f64(common.duration.max(0.1));
    // Until time is up, or every worker has finished (tokens ran out).
    let all_done = async {
        for handle in &handles {
            while !handle.is_finished() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let _ = tokio::time::timeout(deadline, all_done).await;
    // Answers that arrive after this are not counted: they would inflate the rate.
    shared.measuring.store(false, Ordering::Relaxed);
    let seconds = started.elapsed_seconds();
    println!("measured");
    shared.stop.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    for handle in handles {
        // A worker blocked on a request that never answers is abandoned after a grace period.
        if let Ok(Ok(tally)) = tokio::time::timeout(Duration::from_secs(5), handle).await {
            total.latencies_us.extend(tally.latencies_us);
            for (status, n) in tally.statuses {
                *total.statuses.entry(status).or_default() += n;
            }
            total.errors += tally.errors;
        }
    }
    total.latencies_us.sort_unstable();
    let percentile = |p: f64| -> u32 {
        let n = total.latencies_us.len();
        if n == 0 {
            return 0;
        }
        let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
        total.latencies_us[rank - 1]
    };
    let requests = total.latencies_us.len() as u64;
    let summary = json!({
        "requests": requests,
        "errors": total.errors,
        "seconds": seconds,
        "rps": requests as f64 / seconds.max(1e-9),
        "p50_us": percentile(0.50),
        "p99_us": percentile(0.99),
        "statuses": total.statuses,
        "connections": common.connections,
    });
    println!("{summary}");
    Ok(())
}

/// A `{token}` template, split once.
#[derive(Clone)]
struct Template(Vec<String>);

impl Template {
    fn new(text: &str) -> Self {
        Self(text.split("{token}").map(str::to_owned).collect())
    }

    fn fill(&self, token: &str) -> String {
        self.0.join(token)
    }
}

pub async fn http(args: HttpArgs) -> Result<(), String> {
    let shared = shared(&args.common)?;
    let mut addrs = Vec::new();
    for url in &args.urls {
        let authority = url.authority().ok_or("--url needs a host and port")?;
        let addr: SocketAddr = tokio::net::lookup_host(authority.as_str())
            .await
            .map_err(|e| format!("{authority}: {e}"))?
            .next()
            .ok_or_else(|| format!("{authority}: no address"))?;
        addrs.push(addr);
    }
    let first = args.urls.first().ok_or("--url is required")?;
    let authority = first.authority().ok_or("--url needs a host and port")?.clone();
    let path = first.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let method: hyper::Method = args.method.parse().map_err(|_| format!("invalid method {:?}", args.method))?;
    let mut headers = Vec::new();
    let mut has_host = false;
    for header in &args.headers {
        let (name, value) = header.split_once(':').ok_or_else(|| format!("invalid header {header:?}: expected `Name: value`"))?;
        let name = hyper::header::HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| format!("invalid header name in {header:?}"))?;
        has_host |= name == hyper::header::HOST;
        headers.push((name, Template::new(value.trim())));
    }
    if !has_host {
        headers.push((hyper::header::HOST, Template::new(authority.as_str())));
    }
    let body = args.body.as_deref().map(Template::new);
    let plan = Arc::new((method, path, headers, body));
    let started_workers = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let worker = move |shared: Arc<Shared>| {
        let plan = Arc::clone(&plan);
        // Worker i talks to server i mod n.
        let addr = addrs[started_workers.fetch_add(1, Ordering::Relaxed) % addrs.len()];
        async move {
            let (method, path, headers, body) = &*plan;
            let mut tally = Tally::default();
            let mut sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> = None;
            while !shared.stopped() {
                if sender.as_ref().is_none_or(hyper::client::conn::http1::SendRequest::is_closed) {
                    sender = match connect(addr).await {
                        Ok(s) => Some(s),
                        Err(_) => {
                            tally.error(&shared);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                }
                let Some(s) = sender.as_mut() else { continue };
                let Some(token) = tally.next_token(&shared) else { break };
                let mut request = hyper::Request::builder().method(method.clone()).uri(path.as_str());
                for (name, value) in headers {
                    request = request.header(name, value.fill(&token));
                }
                let body = body.as_ref().map(|b| Bytes::from(b.fill(&token))).unwrap_or_default();
                let Ok(request) = request.body(Full::new(body)) else {
                    tally.error(&shared);
                    break;
                };
                if s.ready().await.is_err() {
                    sender = None;
                    continue;
                }
                let started = Stopwatch::start();
                match s.send_request(request).await {
                    Ok(response) => {
                        let status = response.status().as_u16().to_string();
                        match response.into_body().collect().await {
                            Ok(_) => tally.record(&shared, started, status),
                            Err(_) => {
                                tally.error(&shared);
                                sender = None;
                            }
                        }
                    }
                    Err(_) => {
                        tally.error(&shared);
                        sender = None;
                    }
                }
            }
            tally
        }
    };
    drive(&args.common, shared, worker).await
}

async fn connect(addr: SocketAddr) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(sender)
}

pub async fn grpc(args: GrpcArgs) -> Result<(), String> {
    let shared = shared(&args.common)?;
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", args.addr))
        .map_err(|e| e.to_string())?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    let host = args.host.clone();
    let authorization = args.authorization.as_deref().map(Template::new);
    let worker = move |shared: Arc<Shared>| {
        let endpoint = endpoint.clone();
        let host = host.clone();
        let authorization = authorization.clone();
        async move {
            let mut tally = Tally::default();
            // One HTTP/2 connection per worker, as each Envoy worker thread keeps its own.
            let mut client = None;
            while !shared.stopped() {
                if client.is_none() {
                    match endpoint.connect().await {
                        Ok(channel) => client = Some(AuthorizationClient::new(channel)),
                        Err(_) => {
                            tally.error(&shared);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                }
                let Some(c) = client.as_mut() else { continue };
                let Some(token) = tally.next_token(&shared) else { break };
                let mut headers = std::collections::HashMap::new();
                if let Some(template) = &authorization {
                    headers.insert("authorization".to_owned(), template.fill(&token));
                }
                let http = HttpRequest { method: "GET".into(), host: host.clone(), path: "/hello".into(), scheme: "http".into(), protocol: "HTTP/1.1".into(), headers, ..HttpRequest::default() };
                let check = CheckRequest {
                    attributes: Some(AttributeContext { request: Some(AttrRequest { http: Some(http), ..AttrRequest::default() }), ..AttributeContext::default() }),
                };
                let started = Stopwatch::start();
                match c.check(check).await {
                    Ok(response) => {
                        let code = response.get_ref().status.as_ref().map_or(-1, |s| s.code);
                        tally.record(&shared, started, format!("grpc-{code}"));
                    }
                    Err(_) => {
                        tally.error(&shared);
                        client = None;
                    }
                }
            }
            tally
        }
    };
    drive(&args.common, shared, worker).await
}
