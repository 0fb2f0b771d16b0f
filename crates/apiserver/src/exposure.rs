//! Exposing TokenRequest, and nothing else, to clients outside: `serve --public-listen` (the
//! in-process API behind it) and `expose` (a real cluster's API server behind it) share this.
//!
//! - [`admit`] is the whole filter, a pure function of method, path, query and headers: only
//!   `POST <prefix>/api/v1/namespaces/{ns}/serviceaccounts/{name}/token` passes; path tricks
//!   (percent-encoding, dot or empty segments, backslashes, any byte outside the unreserved
//!   set) are 400, any other shape or method 404, `Impersonate-*` 403; the request that goes on
//!   carries only [`FORWARDED_HEADERS`] and the [`ALLOWED_QUERY`] parameters.
//! - [`Buckets`] is a per-caller token bucket (sans-IO: `now` is a parameter); callers are
//!   keyed by an HMAC of their bearer credential, or their IP when they send none.
//! - [`router`] is the thin adapter: filter, rate limit, read the body (at most
//!   [`MAX_BODY_BYTES`]), hand the request to a [`Forward`], all within [`REQUEST_TIMEOUT`].
//!   Refused requests never reach the forward.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use serde_json::json;
use tokenwarden_core::cache_key::CacheKeyer;
use tokenwarden_core::names::{is_dns_label, is_dns_subdomain};
use tokenwarden_store::clock::Stopwatch;

use crate::ApiState;
use crate::error::{ApiError, ApiResult};

/// The query parameters a TokenRequest may carry; every other one is dropped.
pub const ALLOWED_QUERY: [&str; 4] = ["dryRun", "fieldManager", "fieldValidation", "pretty"];

/// The request headers passed on; everything else (impersonation, proxy and front-proxy
/// identity headers, cookies, forwarding headers, encodings) is left behind.
pub static FORWARDED_HEADERS: [HeaderName; 4] = [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT, header::USER_AGENT];

/// A TokenRequest body is a few hundred bytes; kube's 3 MiB would only help an attacker.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The most one request may take, body and answer included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Callers tracked at once; beyond it, idle buckets are dropped, and if none is idle a new
/// caller waits (fail closed rather than grow).
pub const MAX_CALLERS: usize = 100_000;

/// Each client address may make this many times the per-caller rate (and burst): credentials
/// made up per request cannot each get a fresh bucket, while callers behind one NAT still fit.
pub const PER_ADDRESS_FACTOR: f64 = 10.0;

/// How often idle buckets are swept even when the table is not full.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// The path prefix the endpoint is served under (`/kubernetes`; empty for none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prefix(String);

impl Prefix {
    /// `/kubernetes`, `/a/b`; `/` (or empty) for none. Segments use unreserved characters only.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim_end_matches('/');
        if trimmed.is_empty() {
            return Ok(Self::default());
        }
        let valid = trimmed.starts_with('/') && trimmed[1..].split('/').all(segment_is_clean);
        if valid { Ok(Self(trimmed.to_owned())) } else { Err(format!("invalid prefix {text:?}: expected /SEGMENT[/SEGMENT...], e.g. /kubernetes")) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A non-empty path segment that is not `.` or `..` and holds only RFC 3986 unreserved
/// characters (so nothing a server could decode or normalise into something else).
fn segment_is_clean(segment: &str) -> bool {
    !segment.is_empty() && segment != "." && segment != ".." && segment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// A request that passed [`admit`]: what to send on.
#[derive(Clone, Debug)]
pub struct Admitted {
    pub namespace: String,
    pub name: String,
    /// `/api/v1/namespaces/{ns}/serviceaccounts/{name}/token[?allowed query]`.
    pub path_and_query: String,
    /// Only [`FORWARDED_HEADERS`].
    pub headers: HeaderMap,
}

fn path_not_allowed() -> ApiError {
    ApiError::bad_request("the request path may not contain percent-encoded characters, dot or empty segments, or characters outside [A-Za-z0-9._~-]")
}

/// The filter: a TokenRequest for one ServiceAccount, or why not (a `Status`).
pub fn admit(prefix: &Prefix, method: &Method, path: &str, query: Option<&str>, headers: &HeaderMap) -> ApiResult<Admitted> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(path_not_allowed());
    };
    if !rest.is_empty() && !rest.split('/').all(segment_is_clean) {
        return Err(path_not_allowed());
    }
    let segments: Vec<&str> = path.strip_prefix(prefix.as_str()).filter(|p| p.starts_with('/')).map(|p| p[1..].split('/').collect()).unwrap_or_default();
    let (namespace, name) = match segments.as_slice() {
        ["api", "v1", "namespaces", ns, "serviceaccounts", name, "token"]
            if is_dns_label(ns) && is_dns_subdomain(name) =>
        {
            ((*ns).to_owned(), (*name).to_owned())
        }
        _ => return Err(ApiError::path_not_found()),
    };
    if *method != Method::POST {
        return Err(ApiError::path_not_found());
    }
    if headers.keys().any(|name| name.as_str().starts_with("impersonate-")) {
        return Err(ApiError::forbidden(None, "", "impersonation is not allowed through the public TokenRequest endpoint"));
    }
    let authorization: Vec<&HeaderValue> = headers.get_all(header::AUTHORIZATION).iter().collect();
    match authorization.as_slice() {
        [] => {}
        [one] if bearer_credential(one).is_some() => {}
        _ => return Err(ApiError::unauthorized()),
    }
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(ApiError::too_large(MAX_BODY_BYTES));
    }
    let mut forwarded = HeaderMap::new();
    for name in &FORWARDED_HEADERS {
        for value in headers.get_all(name) {
            forwarded.append(name.clone(), value.clone());
        }
    }
    let kept = filter_query(query)?;
    let mut path_and_query = format!("/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token");
    if !kept.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(&kept);
    }
    Ok(Admitted { namespace, name, path_and_query, headers: forwarded })
}

/// `Bearer <token>`: one token of visible ASCII, read as the upstream reads it
/// ([`crate::auth::bearer`]): `Bearer  x` (two spaces) is anonymous there, so it is no
/// credential here either; otherwise this side would take an identity the upstream never saw.
fn bearer_credential(value: &HeaderValue) -> Option<&str> {
    crate::auth::bearer(value.to_str().ok()?).filter(|token| token.bytes().all(|b| b.is_ascii_graphic()))
}

/// The [`ALLOWED_QUERY`] pairs, as sent (their values must be well-formed); the rest dropped.
fn filter_query(query: Option<&str>) -> ApiResult<String> {
    let mut kept: Vec<&str> = Vec::new();
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !ALLOWED_QUERY.contains(&key) {
            continue;
        }
        if !value_is_well_formed(value) {
            return Err(ApiError::bad_request(format!("invalid value of the query parameter {key}")));
        }
        kept.push(pair);
    }
    Ok(kept.join("&"))
}

/// Unreserved characters, `+`, and `%XX` escapes of printable ASCII (no control characters,
/// no bytes a server might decode differently).
fn value_is_well_formed(value: &str) -> bool {
    let bytes = value.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = |at: usize| bytes.get(at).and_then(|b| char::from(*b).to_digit(16));
                match (hex(i + 1), hex(i + 2)) {
                    (Some(high), Some(low)) if (0x20..0x7f).contains(&(high * 16 + low)) => i += 3,
                    _ => return false,
                }
            }
            b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b',' | b':') => i += 1,
            _ => return false,
        }
    }
    true
}

/// Who is asking, for rate limits: an HMAC of the bearer credential (never the credential),
/// else the client's IP.
pub fn caller_key(keyer: &CacheKeyer, headers: &HeaderMap, peer: Option<IpAddr>) -> [u8; 32] {
    match (crate::auth::bearer_token(headers), peer) {
        (Some(token), _) => keyer.key(&["bearer", token], &[]),
        (None, Some(ip)) => keyer.key(&["ip", &address_of(ip)], &[]),
        (None, None) => keyer.key(&["unknown"], &[]),
    }
}

/// The address a client is limited by: an IPv4 address, or an IPv6 client's /64 (a host
/// usually holds a whole /64, and could take a fresh address, and bucket, per request).
fn address_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                format!("{a:x}:{b:x}:{c:x}:{d:x}::/64")
            }
        },
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// A steady rate and a burst: `5/s` with burst 10 lets a caller send 10 at once, then 5 a second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

impl RateLimit {
    /// `N/s`, `N/m` or `N/h` (N may have a fraction) and a burst of at least 1; `off` is no limit.
    pub fn parse(rate: &str, burst: u32) -> Result<Option<Self>, String> {
        if rate == "off" {
            return Ok(None);
        }
        let invalid = || format!("invalid rate {rate:?}: expected N/s, N/m, N/h or off, e.g. 5/s");
        let (count, unit) = rate.split_once('/').ok_or_else(invalid)?;
        let count: f64 = count.parse().map_err(|_| invalid())?;
        let seconds = match unit {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        if !count.is_finite() || count <= 0.0 {
            return Err(invalid());
        }
        if burst == 0 {
            return Err("the rate burst must be at least 1".into());
        }
        Ok(Some(Self { per_second: count / seconds, burst }))
    }

    /// How long an empty bucket takes to fill: after that a caller is as good as new.
    fn refill(&self) -> Duration {
        Duration::try_from_secs_f64(f64::from(self.burst) / self.per_second).unwrap_or(Duration::MAX)
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Duration,
}

/// Per-caller token buckets in bounded memory. `now` is monotonic time from any fixed start.
#[derive(Debug)]
pub struct Buckets {
    limit: RateLimit,
    capacity: usize,
    entries: HashMap<[u8; 32], Bucket>,
    swept: Duration,
}

impl Buckets {
    pub fn new(limit: RateLimit, capacity: usize) -> Self {
        Self { limit, capacity: capacity.max(1), entries: HashMap::new(), swept: Duration::ZERO }
    }

    /// Takes one token for `caller`, or says how long until one is there.
    pub fn take(&mut self, caller: [u8; 32], now: Duration) -> Result<(), Duration> {
        if now.saturating_sub(self.swept) >= SWEEP_INTERVAL || (self.entries.len() >= self.capacity && !self.entries.contains_key(&caller)) {
            self.sweep(now);
        }
        let limit = self.limit;
        let burst = f64::from(limit.burst);
        let full = self.entries.len() >= self.capacity;
        let bucket = match self.entries.entry(caller) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(_) if full => return Err(Duration::from_secs(1)),
            std::collections::hash_map::Entry::Vacant(entry) => entry.insert(Bucket { tokens: burst, at: now }),
        };
        let elapsed = now.saturating_sub(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.per_second).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::try_from_secs_f64((1.0 - bucket.tokens) / limit.per_second).unwrap_or(Duration::MAX))
        }
    }

    /// Drops buckets that have refilled: a full bucket is the same as none.
    fn sweep(&mut self, now: Duration) {
        let refill = self.limit.refill();
        self.entries.retain(|_, bucket| now.saturating_sub(bucket.at) < refill);
        self.swept = now;
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// kube-apiserver's 429: `Retry-After` in whole seconds (at least 1) and the same in the Status.
pub fn too_many_requests(retry_after: Duration) -> Response {
    let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    let mut error = ApiError::new(429, "TooManyRequests", "Too many requests, please try again later.");
    error.details.insert("retryAfterSeconds".into(), json!(seconds));
    let mut response = error.into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// An admitted request and its body, for the [`Forward`].
#[derive(Clone, Debug)]
pub struct Forwarded {
    pub admitted: Admitted,
    pub body: Bytes,
}

/// Where admitted requests go: the in-process API ([`in_process`]) or an upstream.
pub type Forward = Arc<dyn Fn(Forwarded) -> BoxFuture<'static, Response> + Send + Sync>;

/// The API router of this process, with the caller's own credential: RBAC decides.
pub fn in_process(state: Arc<ApiState>) -> Forward {
    Arc::new(move |forwarded: Forwarded| {
        let state = Arc::clone(&state);
        Box::pin(async move {
            let Ok(uri) = Uri::try_from(forwarded.admitted.path_and_query) else {
                return ApiError::path_not_found().into_response();
            };
            crate::dispatch(State(state), Method::POST, uri, forwarded.admitted.headers, Body::from(forwarded.body)).await
        })
    })
}

/// Token buckets per client address, then per caller.
struct Limiter {
    per_address: Mutex<Buckets>,
    per_caller: Mutex<Buckets>,
}

impl Limiter {
    fn new(limit: RateLimit) -> Self {
        let burst = (f64::from(limit.burst) * PER_ADDRESS_FACTOR).min(f64::from(u32::MAX));
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped to u32 above
        let per_address = RateLimit { per_second: limit.per_second * PER_ADDRESS_FACTOR, burst: burst as u32 };
        Self { per_address: Mutex::new(Buckets::new(per_address, MAX_CALLERS)), per_caller: Mutex::new(Buckets::new(limit, MAX_CALLERS)) }
    }

    fn take(&self, keyer: &CacheKeyer, headers: &HeaderMap, peer: Option<IpAddr>, now: Duration) -> Result<(), Duration> {
        let take = |buckets: &Mutex<Buckets>, key: [u8; 32]| buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take(key, now);
        if let Some(ip) = peer {
            take(&self.per_address, keyer.key(&["address", &address_of(ip)], &[]))?;
        }
        take(&self.per_caller, caller_key(keyer, headers, peer))
    }
}

/// The shared state of a public listener.
pub struct Exposure {
    prefix: Prefix,
    limiter: Option<Limiter>,
    keyer: CacheKeyer,
    clock: Stopwatch,
    forward: Forward,
}

impl Exposure {
    /// `keyer_secret` keys the caller hashes (random per process).
    pub fn new(prefix: Prefix, rate: Option<RateLimit>, keyer_secret: [u8; 32], forward: Forward) -> Self {
        Self {
            prefix,
            limiter: rate.map(Limiter::new),
            keyer: CacheKeyer::new(keyer_secret),
            clock: Stopwatch::start(),
            forward,
        }
    }
}

/// The public listener's router. Serve it with `into_make_service_with_connect_info::<SocketAddr>()`
/// so callers without a credential are limited by IP.
pub fn router(exposure: Arc<Exposure>) -> Router {
    Router::new().fallback(handle).with_state(exposure)
}

async fn handle(State(exposure): State<Arc<Exposure>>, request: Request) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, serve(&exposure, request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(504, "Timeout", format!("Timeout: request did not complete within {} s", REQUEST_TIMEOUT.as_secs())).into_response(),
    }
}

async fn serve(exposure: &Exposure, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let admitted = match admit(&exposure.prefix, &parts.method, parts.uri.path(), parts.uri.query(), &parts.headers) {
        Ok(admitted) => admitted,
        Err(refused) => {
            tracing::debug!(method = %parts.method, code = refused.code, "public TokenRequest endpoint refused a request");
            return refused.into_response();
        }
    };
    if let Some(limiter) = &exposure.limiter {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip());
        let taken = limiter.take(&exposure.keyer, &parts.headers, peer, exposure.clock.elapsed());
        if let Err(retry_after) = taken {
            tracing::info!(namespace = %admitted.namespace, serviceaccount = %admitted.name, "TokenRequest rate limited");
            return too_many_requests(retry_after);
        }
    }
    let body = match crate::body::read_at_most(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(refused) => return refused.into_response(),
    };
    let (namespace, name) = (admitted.namespace.clone(), admitted.name.clone());
    let response = (exposure.forward)(Forwarded { admitted, body }).await;
    tracing::info!(%namespace, serviceaccount = %name, code = response.status().as_u16(), "TokenRequest forwarded");
    response
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::http::StatusCode;
    use tower::ServiceExt as _;

    use super::*;

    const SEED: &str = "/kubernetes/api/v1/namespaces/default/serviceaccounts/default/token";

    fn prefix() -> Prefix {
        Prefix::parse("/kubernetes").unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn code(method: Method, path: &str, query: Option<&str>, pairs: &[(&str, &str)]) -> u16 {
        match admit(&prefix(), &method, path, query, &headers(pairs)) {
            Ok(_) => 200,
            Err(e) => e.code,
        }
    }

    #[test]
    fn prefixes() {
        assert_eq!(Prefix::parse("/kubernetes/").unwrap().as_str(), "/kubernetes");
        assert_eq!(Prefix::parse("/").unwrap().as_str(), "");
        for bad in ["kubernetes", "/a//b", "/a/../b", "/%2e", "/a b", "/./x"] {
            assert!(Prefix::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_the_token_request_passes() {
        let admitted = admit(&prefix(), &Method::POST, SEED, None, &HeaderMap::new()).unwrap();
        assert_eq!(admitted.path_and_query, "/api/v1/namespaces/default/serviceaccounts/default/token");
        assert_eq!((admitted.namespace.as_str(), admitted.name.as_str()), ("default", "default"));
        let root = Prefix::parse("/").unwrap();
        assert!(admit(&root, &Method::POST, "/api/v1/namespaces/a/serviceaccounts/b.c/token", None, &HeaderMap::new()).is_ok());
        for (method, path, expected) in [
            (Method::GET, SEED, 404),
            (Method::PUT, SEED, 404),
            (Method::DELETE, SEED, 404),
            (Method::GET, "/kubernetes/api/v1/namespaces", 404),
            (Method::POST, "/kubernetes/api/v1/namespaces/default/serviceaccounts", 404),
            (Method::POST, "/kubernetes/api/v1/namespaces/default/serviceaccounts/default", 404),
            (Method::POST, "/kubernetes/api/v1/namespaces/default/serviceaccounts/default/token/x", 404),
            (Method::POST, "/kubernetes/apis/authentication.k8s.io/v1/tokenreviews", 404),
            (Method::POST, "/kubernetes/api/v1/namespaces/default/secrets/default/token", 404),
            (Method::POST, "/api/v1/namespaces/default/serviceaccounts/default/token", 404),
            (Method::POST, "/kubernetesx/api/v1/namespaces/default/serviceaccounts/default/token", 404),
            (Method::POST, "/kubernetes/api/v1/namespaces/Default/serviceaccounts/default/token", 404),
            (Method::POST, "/kubernetes/api/v1/namespaces/a.b/serviceaccounts/default/token", 404),
            (Method::POST, "/kubernetes/api/v1/namespaces/-a/serviceaccounts/default/token", 404),
            (Method::POST, "/", 404),
            (Method::POST, "/kubernetes/api/v1/namespaces/default/serviceaccounts/../secrets/token", 400),
            (Method::POST, "/kubernetes/api/v1/namespaces/default/serviceaccounts/./default/token", 400),
            (Method::POST, "/kubernetes/api/v1/namespaces/default/serviceaccounts/default%2Ftoken", 400),
            (Method::POST, "/kubernetes/api/v1/namespaces/default/serviceaccounts/%2e%2e/token", 400),
            (Method::POST, "/kubernetes/api/v1/namespaces/default/serviceaccounts/def%61ult/token", 400),
            (Method::POST, "/kubernetes//api/v1/namespaces/default/serviceaccounts/default/token", 400),
            (Method::POST, "/kubernetes/api/v1/namespaces/default/serviceaccounts/default/token/", 400),
            (Method::POST, "/kubernetes/api\\v1/namespaces/default/serviceaccounts/default/token", 400),
            (Method::POST, "/kubernetes/api/v1/namespaces/default/serviceaccounts/default;x/token", 400),
            (Method::POST, "kubernetes/api/v1/namespaces/default/serviceaccounts/default/token", 400),
        ] {
            assert_eq!(code(method.clone(), path, None, &[]), expected, "{method} {path}");
        }
    }

    #[test]
    fn headers_that_could_widen_the_request_stay_behind() {
        for name in ["Impersonate-User", "impersonate-group", "Impersonate-Uid", "Impersonate-Extra-scopes"] {
            assert_eq!(code(Method::POST, SEED, None, &[(name, "system:admin")]), 403, "{name}");
        }
        assert_eq!(code(Method::POST, SEED, None, &[("authorization", "Basic YWRtaW46YWRtaW4=")]), 401);
        assert_eq!(code(Method::POST, SEED, None, &[("authorization", "Bearer a"), ("authorization", "Bearer b")]), 401);
        assert_eq!(code(Method::POST, SEED, None, &[("authorization", "Bearer ")]), 401);
        assert_eq!(code(Method::POST, SEED, None, &[("content-length", "65537")]), 413);
        let sent = headers(&[
            ("authorization", "Bearer abc"),
            ("content-type", "application/json"),
            ("accept", "application/json"),
            ("user-agent", "bot/1"),
            ("x-remote-user", "system:admin"),
            ("x-remote-group", "system:masters"),
            ("cookie", "session=1"),
            ("x-forwarded-for", "10.0.0.1"),
            ("proxy-authorization", "Basic x"),
            ("content-encoding", "gzip"),
            ("host", "evil"),
        ]);
        let admitted = admit(&prefix(), &Method::POST, SEED, None, &sent).unwrap();
        let mut names: Vec<&str> = admitted.headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["accept", "authorization", "content-type", "user-agent"]);
    }

    #[test]
    fn only_four_query_parameters_go_on() {
        let kept = |query: &str| admit(&prefix(), &Method::POST, SEED, Some(query), &HeaderMap::new()).map(|a| a.path_and_query);
        let base = "/api/v1/namespaces/default/serviceaccounts/default/token";
        assert_eq!(kept("dryRun=All&pretty=true&watch=true&timeout=1s&x=%2F").unwrap(), format!("{base}?dryRun=All&pretty=true"));
        assert_eq!(kept("fieldManager=kubectl-create&fieldValidation=Strict").unwrap(), format!("{base}?fieldManager=kubectl-create&fieldValidation=Strict"));
        assert_eq!(kept("dry%52un=All&labelSelector=a").unwrap(), base, "an encoded name is not an allowed name");
        assert_eq!(kept("").unwrap(), base);
        for bad in ["fieldManager=%00", "fieldManager=%zz", "fieldManager=a%2", "dryRun=<x>", "pretty=%0a"] {
            assert_eq!(kept(bad).unwrap_err().code, 400, "{bad}");
        }
    }

    #[test]
    fn token_buckets_limit_each_caller_and_forget_idle_ones() {
        let limit = RateLimit::parse("2/s", 3).unwrap().unwrap();
        let mut buckets = Buckets::new(limit, 2);
        let (a, b, c) = ([1; 32], [2; 32], [3; 32]);
        let t0 = Duration::from_secs(100);
        for _ in 0..3 {
            assert!(buckets.take(a, t0).is_ok());
        }
        assert_eq!(buckets.take(a, t0), Err(Duration::from_millis(500)));
        assert!(buckets.take(b, t0).is_ok(), "another caller has its own bucket");
        assert!(buckets.take(c, t0).is_err(), "the table is full and nobody is idle: fail closed");
        assert!(buckets.take(a, t0 + Duration::from_millis(500)).is_ok(), "refilled at 2/s");
        // After the refill time (3 tokens at 2/s), idle callers are forgotten.
        assert!(buckets.take(c, t0 + Duration::from_secs(3)).is_ok());
        assert!(buckets.len() <= 2);
        assert_eq!(RateLimit::parse("off", 1), Ok(None));
        assert_eq!(RateLimit::parse("30/m", 5).unwrap().unwrap().per_second, 0.5);
        for bad in ["5", "5/d", "0/s", "-1/s", "NaN/s", "inf/s", "x/s"] {
            assert!(RateLimit::parse(bad, 1).is_err(), "{bad}");
        }
        assert!(RateLimit::parse("5/s", 0).is_err());
    }

    #[test]
    fn made_up_credentials_from_one_address_share_its_bucket() {
        let limiter = Limiter::new(RateLimit { per_second: 1.0, burst: 1 });
        let keyer = CacheKeyer::new([7; 32]);
        let now = Duration::from_secs(100);
        let address: IpAddr = [10, 0, 0, 1].into();
        let allowed = (0..50)
            .filter(|i| limiter.take(&keyer, &headers(&[("authorization", &format!("Bearer made-up-{i}"))]), Some(address), now).is_ok())
            .count();
        assert_eq!(allowed, 10, "the address's burst: ten times the caller's");
        assert!(limiter.take(&keyer, &headers(&[("authorization", "Bearer real")]), Some([10, 0, 0, 2].into()), now).is_ok(), "other addresses are unaffected");

        // An IPv6 client is limited by its /64, whichever of its addresses it sends from.
        let allowed = (0..50u16)
            .filter(|i| {
                let address = IpAddr::from(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 7, 0, 0, 0, *i));
                limiter.take(&keyer, &headers(&[("authorization", &format!("Bearer made-up-v6-{i}"))]), Some(address), now).is_ok()
            })
            .count();
        assert_eq!(allowed, 10);
        assert_eq!(address_of("::ffff:10.0.0.1".parse().unwrap()), "10.0.0.1", "an IPv4 client on a dual-stack listener");
    }

    #[test]
    fn a_credential_the_upstream_would_not_read_is_none() {
        // kube-apiserver splits at single spaces: two spaces leave an empty token (anonymous).
        assert_eq!(code(Method::POST, SEED, None, &[("authorization", "Bearer  abc")]), 401);
        assert_eq!(code(Method::POST, SEED, None, &[("authorization", "bearer abc")]), 200);
        assert_eq!(code(Method::POST, SEED, None, &[("authorization", " Bearer abc ")]), 200);
    }

    #[test]
    fn caller_keys_never_hold_the_credential() {
        let keyer = CacheKeyer::new([9; 32]);
        let ip: IpAddr = [127, 0, 0, 1].into();
        let with_token = caller_key(&keyer, &headers(&[("authorization", "Bearer secret-token")]), Some(ip));
        assert_ne!(with_token, caller_key(&keyer, &HeaderMap::new(), Some(ip)));
        assert_ne!(with_token, caller_key(&keyer, &headers(&[("authorization", "Bearer other")]), Some(ip)));
        assert!(!with_token.windows(6).any(|w| w == b"secret"));
    }

    proptest::proptest! {
        /// Any method, path and query: no panic, and what passes is one canonical TokenRequest path.
        #[test]
        fn whatever_passes_is_a_canonical_token_request(
            method in "(POST|GET|PUT|DELETE|PATCH)",
            path in "(/kubernetes)?(/[a-z0-9.%/\\\\;-]{0,12}){0,8}",
            query in proptest::option::of("[a-zA-Z0-9=&%.+:,<-]{0,40}"),
        ) {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            if let Ok(admitted) = admit(&prefix(), &method, &path, query.as_deref(), &HeaderMap::new()) {
                let (path_part, query_part) = admitted.path_and_query.split_once('?').unwrap_or((&admitted.path_and_query, ""));
                proptest::prop_assert_eq!(path_part, format!("/api/v1/namespaces/{}/serviceaccounts/{}/token", admitted.namespace, admitted.name));
                proptest::prop_assert!(!path.contains("..") && !path.contains('%') && !path.contains("//"));
                for pair in query_part.split('&').filter(|p| !p.is_empty()) {
                    proptest::prop_assert!(ALLOWED_QUERY.contains(&pair.split('=').next().unwrap_or_default()));
                }
            }
        }
    }

    /// The adapter: refused requests never reach the forward; the rate limit answers 429.
    #[tokio::test]
    async fn refused_requests_never_reach_the_forward() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let forward: Forward = Arc::new(move |forwarded: Forwarded| {
            counted.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { (StatusCode::CREATED, forwarded.admitted.path_and_query).into_response() })
        });
        let limit = RateLimit::parse("1/h", 2).unwrap();
        let app = router(Arc::new(Exposure::new(prefix(), limit, [1; 32], forward)));
        let send = |method: &str, path: &str, token: &str, body: Vec<u8>| {
            let mut request = axum::http::Request::builder().method(method).uri(path);
            if !token.is_empty() {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            app.clone().oneshot(request.body(Body::from(body)).unwrap())
        };
        for (method, path) in [("GET", SEED), ("GET", "/kubernetes/api/v1/namespaces"), ("POST", "/kubernetes/api/v1/namespaces/default/serviceaccounts/%2e%2e/token")] {
            let response = send(method, path, "", Vec::new()).await.unwrap();
            assert!(response.status().is_client_error(), "{method} {path}");
        }
        let oversize = send("POST", SEED, "t", vec![b' '; MAX_BODY_BYTES + 1]).await.unwrap();
        assert_eq!(oversize.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(calls.load(Ordering::SeqCst), 0);

        // The oversize request spent one of `t`'s two tokens.
        assert_eq!(send("POST", SEED, "t", b"{}".to_vec()).await.unwrap().status(), StatusCode::CREATED);
        let limited = send("POST", SEED, "t", b"{}".to_vec()).await.unwrap();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()[header::RETRY_AFTER], "3600");
        let body = axum::body::to_bytes(limited.into_body(), 4096).await.unwrap();
        let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((status["reason"].as_str(), status["code"].as_i64()), (Some("TooManyRequests"), Some(429)));
        assert_eq!(send("POST", SEED, "u", b"{}".to_vec()).await.unwrap().status(), StatusCode::CREATED, "another caller");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
