//! A real cluster's API server as the authorizer's backend (`tokenwarden authorize`):
//!
//! - [`RemoteReviewer`]: `kubernetesTokenReview` by `TokenReview` over a keep-alive
//!   connection pool (HTTP/1.1, or h2 when the server offers it, over rustls with aws-lc-rs),
//!   with bounded concurrency, a per-call timeout, and a cache of valid and invalid answers
//!   keyed by an HMAC of the token (never the token itself) whose concurrent misses are
//!   coalesced. An API server that cannot answer (down, slow, throttling, 5xx, or refusing the
//!   authorizer's own credential) is `Unavailable` — a 503, never a 401.
//! - [`RemoteAuthConfigs`]: lists and watches `authconfigs.authorino.kuadrant.io` in all
//!   namespaces and feeds the authorizer's host index.
//! - [`HttpClient`] / [`ApiClient`]: the HTTP client both use (and the JWKS fetcher).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokenwarden_core::cache_key::CacheKeyer;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use moka::Expiry;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokenwarden_core::authconfig::{AuthConfig, HostIndex, IdentityOutcome};
use tokenwarden_store::{Clock, SystemClock};
use tokio::sync::Semaphore;

use crate::Authorizer;
use crate::identity::{CacheResult, TokenReviewer};
use crate::kubeconfig::{ClusterAccess, ConfigError};

/// The TokenReview endpoint.
pub const TOKEN_REVIEW_PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
/// The AuthConfig collection, all namespaces.
pub const AUTHCONFIGS_PATH: &str = "/apis/authorino.kuadrant.io/v1beta3/authconfigs";

/// An error as one line: the error and its sources, joined.
fn one_line(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A pooled HTTP client (`http://` and `https://`; HTTP/1.1, and h2 when ALPN offers it).
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpClient {
    /// `tls` decides which servers are trusted; `server_name` overrides the name the server
    /// certificate must carry (kubeconfig `tls-server-name`).
    pub fn new(tls: rustls::ClientConfig, server_name: Option<&str>) -> Result<Self, ConfigError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let builder = HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http();
        let builder = match server_name {
            Some(name) => {
                let name = ServerName::try_from(name.to_owned()).map_err(|e| ConfigError(format!("tls-server-name {name:?}: {e}")))?;
                builder.with_server_name_resolver(FixedServerNameResolver::new(name))
            }
            None => builder,
        };
        let connector = builder.enable_http1().enable_http2().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .build(connector);
        Ok(Self { client })
    }

    /// Sends a request; the error is one line.
    pub async fn send(&self, request: Request<Full<Bytes>>) -> Result<Response<Incoming>, String> {
        self.client.request(request).await.map_err(|e| one_line(&e))
    }

    /// Sends a request and reads the whole response (at most [`MAX_RESPONSE_BYTES`]), all
    /// within `timeout`.
    pub async fn fetch(&self, request: Request<Full<Bytes>>, timeout: Duration) -> Result<(StatusCode, Bytes), String> {
        let (head, body) = self.fetch_limited(request, timeout, MAX_RESPONSE_BYTES).await?;
        Ok((head.status, body))
    }

    /// [`HttpClient::fetch`] with the response head and another size limit.
    pub async fn fetch_limited(&self, request: Request<Full<Bytes>>, timeout: Duration, limit: usize) -> Result<(hyper::http::response::Parts, Bytes), String> {
        let call = async {
            let response = self.send(request).await?;
            let (head, body) = response.into_parts();
            let limited = http_body_util::Limited::new(body, limit);
            let body = limited
                .collect()
                .await
                .map_err(|e| format!("reading the response: {}", e.to_string().lines().next().unwrap_or("failed")))?
                .to_bytes();
            Ok((head, body))
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(format!("timed out after {} ms", timeout.as_millis())),
        }
    }
}

/// The largest response body read from a remote server (TokenReview, SubjectAccessReview,
/// AuthConfig lists, JWKS): kube-apiserver's own request limit.
pub const MAX_RESPONSE_BYTES: usize = 3 * 1024 * 1024;

/// An API server: its address and credentials, and a pooled client for it.
#[derive(Clone)]
pub struct ApiClient {
    access: Arc<ClusterAccess>,
    http: HttpClient,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient").field("server", &self.access.server()).finish_non_exhaustive()
    }
}

impl ApiClient {
    pub fn new(access: ClusterAccess) -> Result<Self, ConfigError> {
        let http = HttpClient::new(access.tls_config()?, access.tls_server_name())?;
        Ok(Self { access: Arc::new(access), http })
    }

    pub fn access(&self) -> &ClusterAccess {
        &self.access
    }

    /// A request to `path_and_query` on the API server, with the bearer token (if any).
    pub fn request(&self, method: Method, path_and_query: &str, body: Option<Vec<u8>>) -> Result<Request<Full<Bytes>>, String> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.access.server()))
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, concat!("tokenwarden-authz/", env!("CARGO_PKG_VERSION")));
        if let Some(token) = self.access.bearer_token().map_err(|e| e.0)? {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        builder.body(Full::new(Bytes::from(body.unwrap_or_default()))).map_err(|e| one_line(&e))
    }

    /// Sends a request (no timeout: for watches).
    pub async fn send(&self, method: Method, path_and_query: &str, body: Option<Vec<u8>>) -> Result<Response<Incoming>, String> {
        self.http.send(self.request(method, path_and_query, body)?).await
    }

    /// Sends a request and reads the response, within `timeout`.
    pub async fn fetch(&self, method: Method, path_and_query: &str, body: Option<Vec<u8>>, timeout: Duration) -> Result<(StatusCode, Bytes), String> {
        self.http.fetch(self.request(method, path_and_query, body)?, timeout).await
    }
}

/// The `message` of a Kubernetes `Status` body, or the start of the body.
fn status_message(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let message = parsed.as_ref().and_then(|v| v.get("message")).and_then(Value::as_str).map(str::to_owned);
    let text = message.unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Tuning for [`RemoteReviewer`].
#[derive(Clone, Debug)]
pub struct ReviewerOptions {
    /// Per TokenReview call, including the wait for a concurrency slot (default 5 s).
    pub timeout: Duration,
    /// TokenReviews in flight at once (default 64).
    pub max_in_flight: usize,
    /// Cached answers (default 100 000).
    pub cache_capacity: u64,
    /// The longest a valid answer is cached; also bounded by the token's `exp` (default 60 s).
    pub max_ttl: Duration,
    /// How long an invalid answer is cached (default 10 s).
    pub invalid_ttl: Duration,
}

impl Default for ReviewerOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            max_in_flight: 64,
            cache_capacity: 100_000,
            max_ttl: Duration::from_secs(60),
            invalid_ttl: Duration::from_secs(10),
        }
    }
}

/// A cached TokenReview answer and how long it may be used.
#[derive(Clone)]
struct Answer {
    outcome: IdentityOutcome,
    ttl: Duration,
}

struct AnswerExpiry;

impl Expiry<[u8; 32], Answer> for AnswerExpiry {
    fn expire_after_create(&self, _key: &[u8; 32], value: &Answer, _created_at: std::time::Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// `kubernetesTokenReview` against a remote API server.
pub struct RemoteReviewer {
    api: ApiClient,
    options: ReviewerOptions,
    slots: Semaphore,
    cache: moka::future::Cache<[u8; 32], Answer>,
    keyer: CacheKeyer,
    clock: Arc<dyn Clock>,
}

impl RemoteReviewer {
    /// With the default options and the system clock.
    pub fn new(api: ApiClient) -> Self {
        Self::with_options(api, ReviewerOptions::default(), Arc::new(SystemClock))
    }

    /// `clock` is read for the token's remaining lifetime (the cache TTL).
    pub fn with_options(api: ApiClient, options: ReviewerOptions, clock: Arc<dyn Clock>) -> Self {
        Self {
            api,
            slots: Semaphore::new(options.max_in_flight.max(1)),
            cache: moka::future::Cache::builder().max_capacity(options.cache_capacity).expire_after(AnswerExpiry).build(),
            options,
            keyer: CacheKeyer::new(tokenwarden_store::clock::random_bytes()),
            clock,
        }
    }

    /// Drops every cached answer.
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }

    /// One TokenReview call. `Err` is a reason for `Unavailable` (never cached).
    async fn call(&self, token: &str, audiences: &[String]) -> Result<Answer, String> {
        let body = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": audiences},
        });
        let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        let timeout = self.options.timeout;
        let call = async {
            let _slot = self.slots.acquire().await.map_err(|e| e.to_string())?;
            self.api.fetch(Method::POST, TOKEN_REVIEW_PATH, Some(body), timeout).await
        };
        let (status, body) = match tokio::time::timeout(timeout, call).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => return Err(format!("TokenReview failed: {e}")),
            Err(_) => return Err(format!("TokenReview failed: timed out after {} ms", timeout.as_millis())),
        };
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(format!("TokenReview refused the authorizer's own credentials (HTTP {}): {}", status.as_u16(), status_message(&body)));
        }
        if !status.is_success() {
            return Err(format!("TokenReview failed (HTTP {}): {}", status.as_u16(), status_message(&body)));
        }
        let review: Value = serde_json::from_slice(&body).map_err(|e| format!("TokenReview failed: malformed response: {e}"))?;
        let status = review.get("status").cloned().unwrap_or(Value::Null);
        if status.get("authenticated").and_then(Value::as_bool) == Some(true) {
            Ok(Answer { outcome: IdentityOutcome::Verified(status), ttl: self.valid_ttl(token) })
        } else {
            Ok(Answer { outcome: IdentityOutcome::Invalid("not authenticated".into()), ttl: self.options.invalid_ttl })
        }
    }

    /// min(`exp` − now, max TTL); the token was just accepted, so its unverified `exp` is
    /// the API server's.
    fn valid_ttl(&self, token: &str) -> Duration {
        let exp = tokenwarden_core::jwt::decode_unverified(token).and_then(|(_, claims)| claims.get("exp").and_then(Value::as_i64));
        match exp {
            Some(exp) => {
                let left = u64::try_from(exp.saturating_sub(self.clock.now().unix())).unwrap_or(0);
                self.options.max_ttl.min(Duration::from_secs(left))
            }
            None => self.options.max_ttl,
        }
    }
}

#[async_trait::async_trait]
impl TokenReviewer for RemoteReviewer {
    async fn review(&self, token: &str, audiences: &[String]) -> (IdentityOutcome, CacheResult) {
        let key = self.keyer.key(&[token], audiences);
        // Concurrent misses on one key share one call; errors are not cached.
        match self.cache.entry(key).or_try_insert_with(self.call(token, audiences)).await {
            Ok(entry) => {
                let cache = if entry.is_fresh() { CacheResult::Miss } else { CacheResult::Hit };
                (entry.into_value().outcome, cache)
            }
            Err(reason) => (IdentityOutcome::Unavailable(reason.to_string()), CacheResult::Miss),
        }
    }
}

/// How long one watch asks the server to stay open.
const WATCH_SECONDS: u64 = 290;
/// A watch with no data (not even a bookmark) for this long is presumed dead.
const WATCH_IDLE: Duration = Duration::from_secs(WATCH_SECONDS + 30);
const LIST_TIMEOUT: Duration = Duration::from_secs(30);
const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// One AuthConfig as watched: when it was created, and the parsed form when it is valid.
struct Watched {
    created: String,
    spec: Value,
    config: Option<Arc<AuthConfig>>,
}

enum WatchEnd {
    /// 410 Gone or an `ERROR` event with code 410: the resource version is too old.
    Gone,
    /// The server closed the stream (e.g. `timeoutSeconds`).
    Ended,
}

/// AuthConfigs listed and watched from an API server (all namespaces).
pub struct RemoteAuthConfigs {
    api: ApiClient,
    authorizer: Arc<Authorizer>,
    configs: BTreeMap<String, Watched>,
    resource_version: String,
}

impl RemoteAuthConfigs {
    /// Lists the AuthConfigs into `authorizer` (so it is ready when this returns), then watches
    /// for changes in a background task that re-lists on `410 Gone` or a closed stream and backs
    /// off on errors. Fails if the first list fails.
    pub async fn start(api: ApiClient, authorizer: Arc<Authorizer>) -> Result<tokio::task::JoinHandle<()>, String> {
        let mut this = Self { api, authorizer, configs: BTreeMap::new(), resource_version: String::new() };
        this.list().await?;
        Ok(tokio::spawn(this.run()))
    }

    async fn run(mut self) {
        let mut backoff = BACKOFF_START;
        loop {
            match self.watch().await {
                Ok(WatchEnd::Gone) => tracing::debug!("authconfigs watch: resource version gone; re-listing"),
                Ok(WatchEnd::Ended) => tracing::debug!("authconfigs watch ended; re-listing"),
                Err(e) => {
                    tracing::warn!(error = %e, "authconfigs watch failed; re-listing");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
            loop {
                match self.list().await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX), "authconfigs list failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
            }
            // A good list ends the outage.
            backoff = BACKOFF_START;
        }
    }

    async fn list(&mut self) -> Result<(), String> {
        let (status, body) = self.api.fetch(Method::GET, AUTHCONFIGS_PATH, None, LIST_TIMEOUT).await.map_err(|e| format!("list {AUTHCONFIGS_PATH}: {e}"))?;
        if !status.is_success() {
            return Err(format!("list {AUTHCONFIGS_PATH}: HTTP {}: {}", status.as_u16(), status_message(&body)));
        }
        let list: Value = serde_json::from_slice(&body).map_err(|e| format!("list {AUTHCONFIGS_PATH}: malformed response: {e}"))?;
        let mut old = std::mem::take(&mut self.configs);
        for item in list.get("items").and_then(Value::as_array).into_iter().flatten() {
            // An unchanged AuthConfig keeps its parsed form (and is not logged again).
            if let Some(previous) = old.remove(&object_key(item)) {
                self.configs.insert(object_key(item), previous);
            }
            self.upsert(item);
        }
        self.resource_version = list.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default().to_owned();
        self.publish();
        Ok(())
    }

    /// Records an added or modified AuthConfig; false when its spec did not change (a status
    /// write, say).
    fn upsert(&mut self, object: &Value) -> bool {
        let key = object_key(object);
        let created = object.pointer("/metadata/creationTimestamp").and_then(Value::as_str).unwrap_or_default().to_owned();
        let spec = object.get("spec").cloned().unwrap_or(Value::Null);
        if let Some(existing) = self.configs.get(&key)
            && existing.created == created
            && existing.spec == spec
        {
            return false;
        }
        let config = match AuthConfig::parse(object) {
            Ok(config) => Some(Arc::new(config)),
            Err(e) => {
                tracing::warn!(authconfig = %key, error = %e, "invalid AuthConfig skipped");
                None
            }
        };
        self.configs.insert(key, Watched { created, spec, config });
        true
    }

    /// Rebuilds the host index, oldest AuthConfig first (as host collisions are resolved).
    fn publish(&self) {
        let mut configs: Vec<(&str, &str, &Arc<AuthConfig>)> =
            self.configs.iter().filter_map(|(key, w)| w.config.as_ref().map(|c| (w.created.as_str(), key.as_str(), c))).collect();
        configs.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let index = HostIndex::build(configs.into_iter().map(|(_, _, c)| Arc::clone(c)));
        tracing::debug!(authconfigs = index.len(), "authconfigs updated");
        self.authorizer.set_configs(index);
    }

    async fn watch(&mut self) -> Result<WatchEnd, String> {
        let path = format!(
            "{AUTHCONFIGS_PATH}?watch=true&allowWatchBookmarks=true&timeoutSeconds={WATCH_SECONDS}&resourceVersion={}",
            self.resource_version
        );
        let response = match tokio::time::timeout(LIST_TIMEOUT, self.api.send(Method::GET, &path, None)).await {
            Ok(result) => result.map_err(|e| format!("watch {AUTHCONFIGS_PATH}: {e}"))?,
            Err(_) => return Err(format!("watch {AUTHCONFIGS_PATH}: timed out")),
        };
        if response.status() == StatusCode::GONE {
            return Ok(WatchEnd::Gone);
        }
        if !response.status().is_success() {
            let status = response.status().as_u16();
            let limited = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE_BYTES);
            let body = tokio::time::timeout(LIST_TIMEOUT, limited.collect()).await.ok().and_then(Result::ok).map(|b| b.to_bytes()).unwrap_or_default();
            return Err(format!("watch {AUTHCONFIGS_PATH}: HTTP {status}: {}", status_message(&body)));
        }
        let mut body = response.into_body();
        let mut buffer: Vec<u8> = Vec::new();
        loop {
            let frame = match tokio::time::timeout(WATCH_IDLE, body.frame()).await {
                Err(_) => return Err(format!("watch {AUTHCONFIGS_PATH}: no data for {} s", WATCH_IDLE.as_secs())),
                Ok(None) => return Ok(WatchEnd::Ended),
                Ok(Some(Err(e))) => return Err(format!("watch {AUTHCONFIGS_PATH}: {}", one_line(&e))),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else { continue };
            buffer.extend_from_slice(&data);
            let mut changed = false;
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let event: Value = serde_json::from_slice(&line).map_err(|e| format!("watch {AUTHCONFIGS_PATH}: malformed event: {e}"))?;
                match self.apply(&event)? {
                    Applied::Changed => changed = true,
                    Applied::Unchanged => {}
                    Applied::Gone => return Ok(WatchEnd::Gone),
                }
            }
            // What is left is an unfinished event; one that never ends must not grow forever.
            if buffer.len() > MAX_RESPONSE_BYTES {
                return Err(format!("watch {AUTHCONFIGS_PATH}: an event longer than {MAX_RESPONSE_BYTES} bytes"));
            }
            if changed {
                self.publish();
            }
        }
    }

    fn apply(&mut self, event: &Value) -> Result<Applied, String> {
        let kind = event.get("type").and_then(Value::as_str).unwrap_or_default();
        let object = event.get("object").unwrap_or(&Value::Null);
        if kind == "ERROR" {
            if object.get("code").and_then(Value::as_u64) == Some(410) {
                return Ok(Applied::Gone);
            }
            return Err(format!("watch {AUTHCONFIGS_PATH}: error event: {}", status_message(object.to_string().as_bytes())));
        }
        if let Some(version) = object.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
            version.clone_into(&mut self.resource_version);
        }
        match kind {
            "ADDED" | "MODIFIED" => Ok(if self.upsert(object) { Applied::Changed } else { Applied::Unchanged }),
            "DELETED" => Ok(if self.configs.remove(&object_key(object)).is_some() { Applied::Changed } else { Applied::Unchanged }),
            _ => Ok(Applied::Unchanged),
        }
    }
}

enum Applied {
    Changed,
    Unchanged,
    Gone,
}

fn object_key(object: &Value) -> String {
    let field = |name: &str| object.pointer(&format!("/metadata/{name}")).and_then(Value::as_str).unwrap_or_default().to_owned();
    format!("{}/{}", field("namespace"), field("name"))
}
