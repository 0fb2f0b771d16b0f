//! A real cluster's API server as the authorizer's backend (`tokenwarden authorize`):
//!
//! - [`RemoteReviewer`]: `kubernetesTokenReview` by `TokenReview` over a keep-alive
//!   connection pool (HTTP/1.1, or h2 when the server offers it, over rustls with aws-lc-rs),
//!   with bounded concurrency, a per-call timeout, and a cache of valid and invalid answers
//!   keyed by an HMAC of the token (never the token itself) whose concurrent misses are
//!   coalesced. An API server that cannot answer (down, slow, throttling, 5xx, or refusing the
//!   authorizer's own credential) is `Unavailable` — a 503, never a 401.
//! - [`RemoteAuthConfigs`]: lists and watches `authconfigs.authorino.kuadrant.io` in all
//!   namespaces, feeds the authorizer's host index and writes each AuthConfig's status back.
//! - [`RemoteApiKeys`]: lists and watches Secrets in all namespaces for `apiKey` identities.
//! - [`HttpClient`] / [`ApiClient`]: the HTTP client both use (and the JWKS fetcher).

use std::collections::{BTreeMap, HashMap};
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
use tokenwarden_core::Object;
use tokenwarden_core::authconfig::{AuthConfig, IdentityOutcome};
use tokenwarden_store::{Clock, SystemClock};
use tokio::sync::Semaphore;

use crate::Authorizer;
use crate::configs::{self, Read};
use crate::identity::{ApiKeySecret, CacheResult, TokenReviewer};
use crate::kubeconfig::{ClusterAccess, ConfigError};
use crate::wire;

/// The TokenReview endpoint.
pub const TOKEN_REVIEW_PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
/// The AuthConfig group version (the status path is built under it).
const AUTHORINO_API: &str = "/apis/authorino.kuadrant.io/v1beta3";
/// The AuthConfig collection, all namespaces.
pub const AUTHCONFIGS_PATH: &str = "/apis/authorino.kuadrant.io/v1beta3/authconfigs";
/// The Secret collection, all namespaces.
pub const SECRETS_PATH: &str = "/api/v1/secrets";

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
        // HTTP/2 pings (as client-go's 30 s / 15 s): a watch on a connection that died without
        // closing ends within a minute instead of waiting out its idle limit.
        let client = Client::builder(TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_timeout(Duration::from_secs(15))
            .http2_keep_alive_while_idle(true)
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
    /// The longest a valid answer is cached; also bounded by the token's `exp` (default 10 s:
    /// kube-apiserver's own TokenReview cache, so a token revoked on the cluster stops working
    /// here about when it would behind Authorino, which asks the API server every time).
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
            max_ttl: Duration::from_secs(10),
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
    /// The API server's answer is parsed whole anyway, so `status` is always there.
    async fn review(&self, token: &str, audiences: &[String], _wants_object: bool) -> (IdentityOutcome, CacheResult) {
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
/// Per AuthConfig status write: the watch waits while statuses are written.
const STATUS_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Objects per list page, so a large collection never makes one oversized response.
const LIST_PAGE: usize = 500;
const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

enum WatchEnd {
    /// 410 Gone or an `ERROR` event with code 410: the resource version is too old.
    Gone,
    /// The server closed the stream (e.g. `timeoutSeconds`).
    Ended,
}

/// What one list + watch of a collection (all namespaces) keeps up to date.
trait Followed: Send + 'static {
    /// The collection, all namespaces.
    const PATH: &'static str;
    /// Replaces everything with a complete list.
    fn reset(&mut self, items: Vec<Object>);
    /// An object was added or modified.
    fn upsert(&mut self, object: Object);
    /// An object was deleted.
    fn remove(&mut self, object: &Object);
    /// An object was added or modified that cannot be read (nested deeper than serde_json
    /// reads): `skeleton` is its metadata (and status) alone. By default it counts as such an
    /// object, holding nothing.
    fn unreadable(&mut self, skeleton: Object, why: String) {
        tracing::warn!(path = Self::PATH, object = %object_key(&skeleton), error = %why, "an object that cannot be read is taken as its metadata alone");
        self.upsert(skeleton);
    }
    /// A list or a batch of events has been taken in: publish what changed.
    fn settle(&mut self) -> impl Future<Output = ()> + Send;
    /// Only objects with these labels (`labelSelector`), if set.
    fn label_selector(&self) -> Option<&str> {
        None
    }
}

/// Lists and watches `T::PATH`, feeding `T`; re-lists on `410 Gone` or a closed stream and
/// backs off on errors.
struct Follower<T> {
    api: ApiClient,
    state: T,
    resource_version: String,
}

impl<T: Followed> Follower<T> {
    /// Runs forever; `listed`: the first list was already taken in.
    async fn run(mut self, mut listed: bool) {
        let mut backoff = BACKOFF_START;
        loop {
            if !listed {
                while let Err(e) = self.list().await {
                    tracing::warn!(error = %e, retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX), "list failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                // A good list ends the outage.
                backoff = BACKOFF_START;
            }
            listed = false;
            match self.watch().await {
                Ok(WatchEnd::Gone) => tracing::debug!(path = T::PATH, "watch: resource version gone; re-listing"),
                Ok(WatchEnd::Ended) => tracing::debug!(path = T::PATH, "watch ended; re-listing"),
                Err(e) => {
                    tracing::warn!(error = %e, "watch failed; re-listing");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Lists the whole collection, page by page, then hands it over at once.
    async fn list(&mut self) -> Result<(), String> {
        let path = T::PATH;
        let mut items = Vec::new();
        let mut unreadable = Vec::new();
        let mut next: Option<String> = None;
        // The first page's version: kube-apiserver serves every page from that snapshot, and a
        // server that does not replays, from there, the changes to pages already read.
        let mut version: Option<String> = None;
        loop {
            let mut query = vec![("limit", LIST_PAGE.to_string())];
            if let Some(selector) = self.state.label_selector() {
                query.push(("labelSelector", selector.to_owned()));
            }
            if let Some(token) = next.take() {
                query.push(("continue", token));
            }
            let query = serde_urlencoded::to_string(&query).map_err(|e| format!("list {path}: {e}"))?;
            let (status, body) =
                self.api.fetch(Method::GET, &format!("{path}?{query}"), None, LIST_TIMEOUT).await.map_err(|e| format!("list {path}: {e}"))?;
            if !status.is_success() {
                return Err(format!("list {path}: HTTP {}: {}", status.as_u16(), status_message(&body)));
            }
            let page = wire::page(&body).map_err(|e| format!("list {path}: malformed response: {e}"))?;
            for item in page.items {
                match item {
                    wire::Item::Object(object) => items.push(object),
                    wire::Item::Unreadable(skeleton, why) => unreadable.push((skeleton, why)),
                    wire::Item::Nameless(_) => tracing::debug!(path, "list: skipping an item without a name"),
                    wire::Item::Invalid(why) => tracing::debug!(path, error = %why, "list: skipping an item that cannot be read"),
                }
            }
            version.get_or_insert(page.resource_version);
            match page.continue_token {
                token if token.is_empty() => break,
                token => next = Some(token),
            }
        }
        self.resource_version = version.unwrap_or_default();
        self.state.reset(items);
        for (skeleton, why) in unreadable {
            self.state.unreadable(skeleton, why);
        }
        self.state.settle().await;
        Ok(())
    }

    async fn watch(&mut self) -> Result<WatchEnd, String> {
        let path = T::PATH;
        let mut query = vec![
            ("watch", "true".to_owned()),
            ("allowWatchBookmarks", "true".to_owned()),
            ("timeoutSeconds", WATCH_SECONDS.to_string()),
            ("resourceVersion", self.resource_version.clone()),
        ];
        if let Some(selector) = self.state.label_selector() {
            query.push(("labelSelector", selector.to_owned()));
        }
        let query = serde_urlencoded::to_string(&query).map_err(|e| format!("watch {path}: {e}"))?;
        let response = match tokio::time::timeout(LIST_TIMEOUT, self.api.send(Method::GET, &format!("{path}?{query}"), None)).await {
            Ok(result) => result.map_err(|e| format!("watch {path}: {e}"))?,
            Err(_) => return Err(format!("watch {path}: timed out")),
        };
        if response.status() == StatusCode::GONE {
            return Ok(WatchEnd::Gone);
        }
        if !response.status().is_success() {
            let status = response.status().as_u16();
            let limited = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE_BYTES);
            let body = tokio::time::timeout(LIST_TIMEOUT, limited.collect()).await.ok().and_then(Result::ok).map(|b| b.to_bytes()).unwrap_or_default();
            return Err(format!("watch {path}: HTTP {status}: {}", status_message(&body)));
        }
        let mut body = response.into_body();
        let mut buffer: Vec<u8> = Vec::new();
        loop {
            let frame = match tokio::time::timeout(WATCH_IDLE, body.frame()).await {
                Err(_) => return Err(format!("watch {path}: no data for {} s", WATCH_IDLE.as_secs())),
                Ok(None) => return Ok(WatchEnd::Ended),
                Ok(Some(Err(e))) => return Err(format!("watch {path}: {}", one_line(&e))),
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
                let event = wire::event(&line).map_err(|e| format!("watch {path}: malformed event: {e}"))?;
                match self.apply(event)? {
                    Applied::Changed => changed = true,
                    Applied::Unchanged => {}
                    Applied::Gone => return Ok(WatchEnd::Gone),
                }
            }
            // What is left is an unfinished event; one that never ends must not grow forever.
            if buffer.len() > MAX_RESPONSE_BYTES {
                return Err(format!("watch {path}: an event longer than {MAX_RESPONSE_BYTES} bytes"));
            }
            // Every event that arrived together is taken in before publishing once.
            if changed {
                self.state.settle().await;
            }
        }
    }

    fn apply(&mut self, event: wire::Event) -> Result<Applied, String> {
        if event.kind == "ERROR" {
            let status = event.object.into_value();
            if status.get("code").and_then(Value::as_u64) == Some(410) {
                return Ok(Applied::Gone);
            }
            return Err(format!("watch {}: error event: {}", T::PATH, status_message(status.to_string().as_bytes())));
        }
        // Every event moves the version on, a BOOKMARK's (which names nothing) included.
        if let Some(version) = event.object.resource_version() {
            version.clone_into(&mut self.resource_version);
        }
        let (object, unreadable) = match event.object {
            wire::Item::Object(object) => (object, None),
            wire::Item::Unreadable(skeleton, why) => (skeleton, Some(why)),
            wire::Item::Nameless(_) | wire::Item::Invalid(_) => return Ok(Applied::Unchanged),
        };
        match (event.kind.as_str(), unreadable) {
            ("ADDED" | "MODIFIED", None) => self.state.upsert(object),
            ("ADDED" | "MODIFIED", Some(why)) => self.state.unreadable(object, why),
            ("DELETED", _) => self.state.remove(&object),
            _ => return Ok(Applied::Unchanged),
        }
        Ok(Applied::Changed)
    }
}

enum Applied {
    Changed,
    Unchanged,
    Gone,
}

fn object_key(object: &Object) -> String {
    format!("{}/{}", object.namespace(), object.name())
}

/// One AuthConfig as watched, and its parsed form or why it is invalid.
struct Watched {
    object: Object,
    parsed: Result<Arc<AuthConfig>, String>,
}

/// AuthConfigs listed and watched from an API server (all namespaces): they feed the
/// authorizer's host index, and each gets its status written back through the `status`
/// subresource, as Authorino writes it.
pub struct RemoteAuthConfigs {
    api: ApiClient,
    authorizer: Arc<Authorizer>,
    configs: BTreeMap<String, Watched>,
    /// A spec was added, changed or removed since the host index was built.
    dirty: bool,
    /// The status each AuthConfig should have, as of the last build.
    statuses: BTreeMap<String, Value>,
    /// The last status write error per AuthConfig, so a lasting refusal is logged once.
    failures: BTreeMap<String, String>,
}

impl RemoteAuthConfigs {
    /// Lists the AuthConfigs into `authorizer` (so it is ready when this returns), then watches
    /// for changes in a background task. Fails if the first list fails.
    pub async fn start(api: ApiClient, authorizer: Arc<Authorizer>) -> Result<tokio::task::JoinHandle<()>, String> {
        let state = Self { api: api.clone(), authorizer, configs: BTreeMap::new(), dirty: true, statuses: BTreeMap::new(), failures: BTreeMap::new() };
        let mut follower = Follower { api, state, resource_version: String::new() };
        follower.list().await?;
        Ok(tokio::spawn(follower.run(true)))
    }

    /// Takes in a new or changed AuthConfig, `parsed` or why it is invalid.
    fn keep(&mut self, key: String, object: Object, parsed: Result<Arc<AuthConfig>, String>) {
        if let Err(error) = &parsed {
            tracing::warn!(authconfig = %key, %error, "invalid AuthConfig skipped");
        }
        self.configs.insert(key, Watched { object, parsed });
        self.dirty = true;
    }

    /// Rebuilds the host index and the wanted statuses.
    fn publish(&mut self) {
        let read = self
            .configs
            .iter()
            .map(|(key, watched)| Read {
                item: key.clone(),
                order: (watched.object.creation_timestamp(), watched.object.namespace().to_owned(), watched.object.name().to_owned()),
                parsed: watched.parsed.clone(),
            })
            .collect();
        let (index, statuses) = configs::index_and_statuses(read, &self.authorizer.configs());
        tracing::debug!(authconfigs = index.len(), "authconfigs updated");
        self.authorizer.set_configs(index);
        self.statuses = statuses.into_iter().collect();
    }

    /// Writes each status that differs from the one last seen on the AuthConfig. Our own write
    /// comes back as an event carrying the wanted status, so it settles; a refused write is
    /// retried on the next change.
    async fn write_statuses(&mut self) {
        for (key, status) in &self.statuses {
            let Some(watched) = self.configs.get(key) else { continue };
            if watched.object.value().get("status") == Some(status) {
                self.failures.remove(key);
                continue;
            }
            // The object as watched: its resourceVersion makes a write over a newer version a
            // conflict, and that newer version is on its way as an event.
            let mut object = watched.object.clone();
            object.0.insert("status".into(), status.clone());
            let path = format!("{AUTHORINO_API}/namespaces/{}/authconfigs/{}/status", object.namespace(), object.name());
            let error = match serde_json::to_vec(object.value()) {
                Ok(body) => match self.api.fetch(Method::PUT, &path, Some(body), STATUS_WRITE_TIMEOUT).await {
                    Ok((code, _)) if code.is_success() => None,
                    Ok((code, body)) => Some(format!("HTTP {}: {}", code.as_u16(), status_message(&body))),
                    Err(e) => Some(e),
                },
                Err(e) => Some(e.to_string()),
            };
            match error {
                None => {
                    self.failures.remove(key);
                }
                Some(error) if self.failures.get(key) == Some(&error) => tracing::debug!(authconfig = %key, %error, "cannot write AuthConfig status"),
                Some(error) => {
                    tracing::warn!(authconfig = %key, %error, "cannot write AuthConfig status; retrying on the next change");
                    self.failures.insert(key.clone(), error);
                }
            }
        }
        self.failures.retain(|key, _| self.configs.contains_key(key));
    }
}

impl Followed for RemoteAuthConfigs {
    const PATH: &'static str = AUTHCONFIGS_PATH;

    fn reset(&mut self, items: Vec<Object>) {
        let mut old = std::mem::take(&mut self.configs);
        for object in items {
            // An unchanged AuthConfig keeps its parsed form (and is not logged again).
            if let Some(previous) = old.remove(&object_key(&object)) {
                self.configs.insert(object_key(&object), previous);
            }
            self.upsert(object);
        }
        self.dirty = true;
    }

    fn upsert(&mut self, object: Object) {
        let key = object_key(&object);
        if let Some(existing) = self.configs.get_mut(&key)
            && existing.object.creation_timestamp() == object.creation_timestamp()
            && existing.object.value().get("spec") == object.value().get("spec")
        {
            // A status or metadata change: nothing to rebuild, but its status is compared.
            existing.object = object;
            return;
        }
        let parsed = AuthConfig::parse(&Value::Object(object.value().clone())).map(Arc::new).map_err(|e| e.to_string());
        self.keep(key, object, parsed);
    }

    fn remove(&mut self, object: &Object) {
        self.dirty |= self.configs.remove(&object_key(object)).is_some();
    }

    /// Invalid, with why: its last valid version stays in force, as for any invalid update.
    fn unreadable(&mut self, skeleton: Object, why: String) {
        let key = object_key(&skeleton);
        if let Some(existing) = self.configs.get_mut(&key)
            && existing.object.creation_timestamp() == skeleton.creation_timestamp()
            && existing.parsed.as_ref().err() == Some(&why)
        {
            // Its status or version changed, as after our own status write: nothing to rebuild.
            existing.object = skeleton;
            return;
        }
        self.keep(key, skeleton, Err(why));
    }

    async fn settle(&mut self) {
        if std::mem::take(&mut self.dirty) {
            self.publish();
        }
        self.write_statuses().await;
    }
}

/// API-key Secrets (those with `api_key` in their data) listed and watched from an API server
/// in all namespaces, for `apiKey` identities (`allNamespaces` and the label selectors are
/// applied per AuthConfig when a key is checked, as in `serve`).
pub struct RemoteApiKeys {
    authorizer: Arc<Authorizer>,
    keys: HashMap<String, ApiKeySecret>,
    dirty: bool,
    label_selector: Option<String>,
}

impl RemoteApiKeys {
    /// Lists and watches Secrets in a background task. Until the first list succeeds, `apiKey`
    /// identities are unavailable (503); a failing list is retried with a backoff.
    /// `label_selector`: only Secrets with these labels are read (Authorino's
    /// `--secret-label-selector`); `None` reads every Secret.
    pub fn start(api: ApiClient, authorizer: Arc<Authorizer>, label_selector: Option<String>) -> tokio::task::JoinHandle<()> {
        let state = Self { authorizer, keys: HashMap::new(), dirty: false, label_selector };
        tokio::spawn(Follower { api, state, resource_version: String::new() }.run(false))
    }
}

impl Followed for RemoteApiKeys {
    const PATH: &'static str = SECRETS_PATH;

    fn reset(&mut self, items: Vec<Object>) {
        self.keys.clear();
        for object in items {
            self.upsert(object);
        }
        // Even an empty list publishes: API keys are known (none), no longer unavailable.
        self.dirty = true;
    }

    fn upsert(&mut self, object: Object) {
        let key = object_key(&object);
        // Only Secrets that hold an API key are kept; one that no longer does is dropped.
        match ApiKeySecret::from_secret(Arc::new(object)) {
            Some(secret) => {
                self.keys.insert(key, secret);
                self.dirty = true;
            }
            None => self.dirty |= self.keys.remove(&key).is_some(),
        }
    }

    fn remove(&mut self, object: &Object) {
        self.dirty |= self.keys.remove(&object_key(object)).is_some();
    }

    fn label_selector(&self) -> Option<&str> {
        self.label_selector.as_deref()
    }

    async fn settle(&mut self) {
        if std::mem::take(&mut self.dirty) {
            tracing::debug!(api_keys = self.keys.len(), "API-key Secrets updated");
            self.authorizer.identities().set_api_keys(self.keys.clone());
        }
    }
}
