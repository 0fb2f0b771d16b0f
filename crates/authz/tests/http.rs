//! HTTP checks (every proxy convention) and the reverse proxy, against a real in-process
//! authority: tokens minted by TokenRequest, reviewed in-process, AuthConfigs followed from the
//! store.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokenwarden_authz::Authorizer;
use tokenwarden_authz::http::{BODY_READ_TIMEOUT, MAX_BODY_BYTES, check_router};
use tokenwarden_authz::identity::Identities;
use tokenwarden_authz::metrics::CacheLabels;
use tokenwarden_authz::proxy::{ProxyOptions, proxy_router, proxy_router_with_timeout};
use tokenwarden_core::keys::{Algorithm, KeySet};
use tokenwarden_core::token_request::{IssuerConfig, TokenRequestInput, TokenRequestSpec};
use tokenwarden_core::{Object, Resource, Timestamp};
use tokenwarden_store::memory::MemoryStore;
use tokenwarden_store::{Authority, ManualClock, Preconditions, keystore};
use tower::ServiceExt as _;

const NOW: Timestamp = Timestamp(1_800_000_000);
const ISSUER: &str = "https://tokenwarden.test";
const HOST: &str = "talker-api.127.0.0.1.nip.io";
/// Anonymous access; the success headers echo what the authorizer understood of the request.
const ECHO_HOST: &str = "request.127.0.0.1.nip.io";
/// Two identity sources: two `WWW-Authenticate` headers.
const TWO_HOST: &str = "two.127.0.0.1.nip.io";
/// A success header that cannot go on the wire.
const BAD_HOST: &str = "bad.127.0.0.1.nip.io";
const NS: &str = "talker";
const DENIED_SA: &str = "intruder";

fn obj(value: Value) -> Object {
    Object::from_value(value).unwrap()
}

fn authconfig(name: &str, spec: Value) -> Object {
    obj(json!({
        "apiVersion": "authorino.kuadrant.io/v1beta3",
        "kind": "AuthConfig",
        "metadata": {"namespace": NS, "name": name},
        "spec": spec,
    }))
}

fn selector(path: &str) -> Value {
    json!({"plain": {"selector": path}})
}

struct Env {
    authority: Arc<Authority>,
    authorizer: Arc<Authorizer>,
    _follower: tokio::task::JoinHandle<()>,
}

impl Env {
    async fn new() -> Self {
        Self::with_reviewer(true).await
    }

    async fn with_reviewer(reviewer: bool) -> Self {
        let clock = ManualClock::new(NOW);
        let store = Arc::new(MemoryStore::new(Arc::new(clock.clone())));
        let keys = KeySet::new(keystore::generate(Algorithm::Es256).unwrap(), Vec::new());
        let authority = Authority::start(store, keys, IssuerConfig::new(ISSUER), Arc::new(clock), None).await.unwrap();
        authority.create(&Resource::NAMESPACES, obj(json!({"metadata": {"name": NS}}))).await.unwrap();
        for sa in ["api-consumer", DENIED_SA, "revoked"] {
            authority.create(&Resource::SERVICE_ACCOUNTS, obj(json!({"metadata": {"name": sa, "namespace": NS}}))).await.unwrap();
        }
        // The Authorino TokenReview guide's AuthConfig, plus a rule that keeps one ServiceAccount out.
        let guide = authconfig(
            "talker-api-protection",
            json!({
                "hosts": [HOST],
                "authentication": {"authorized-service-accounts": {"kubernetesTokenReview": {"audiences": ["talker-api"]}}},
                "authorization": {"not-the-intruder": {"patternMatching": {"patterns": [
                    {"selector": "auth.identity.user.username", "operator": "neq", "value": format!("system:serviceaccount:{NS}:{DENIED_SA}")},
                ]}}},
                "response": {"success": {"headers": {"x-auth-user": selector("auth.identity.user.username")}}},
            }),
        );
        let echo = authconfig(
            "request-echo",
            json!({
                "hosts": [ECHO_HOST],
                "authentication": {"anyone": {"anonymous": {}}},
                "response": {"success": {"headers": {
                    "x-method": selector("request.method"),
                    "x-host": selector("request.host"),
                    "x-path": selector("request.path"),
                    "x-scheme": selector("request.scheme"),
                    "x-multi": selector("request.headers.x-multi"),
                    "x-body-size": selector("request.size"),
                }}},
            }),
        );
        let two = authconfig(
            "two-sources",
            json!({
                "hosts": [TWO_HOST],
                "authentication": {
                    "bearer": {"kubernetesTokenReview": {"audiences": ["talker-api"]}},
                    "header": {"kubernetesTokenReview": {"audiences": ["talker-api"]}, "credentials": {"customHeader": {"name": "X-Token"}}},
                },
            }),
        );
        let bad = authconfig(
            "bad-header",
            json!({
                "hosts": [BAD_HOST],
                "authentication": {"anyone": {"anonymous": {}}},
                "response": {"success": {"headers": {"x-bad": {"plain": {"value": "line\nbreak"}}}}},
            }),
        );
        for config in [guide, echo, two, bad] {
            authority.create(&Resource::AUTH_CONFIGS, config).await.unwrap();
        }
        let identities = Identities::new(reviewer.then(|| Arc::clone(&authority)));
        let authorizer = Arc::new(Authorizer::new(identities));
        let follower = tokenwarden_authz::source::follow_authority(Arc::clone(&authority), Arc::clone(&authorizer)).await.unwrap();
        Self { authority, authorizer, _follower: follower }
    }

    async fn token(&self, sa: &str, audience: &str) -> String {
        let input = TokenRequestInput {
            namespace: NS.into(),
            service_account: sa.into(),
            spec: TokenRequestSpec { audiences: vec![audience.into()], ..TokenRequestSpec::default() },
            ..TokenRequestInput::default()
        };
        self.authority.request_token(input).await.unwrap().token
    }

    fn cache_hits(&self) -> u64 {
        self.authorizer.metrics().identity_cache.get_or_create(&CacheLabels { result: "hit" }).get()
    }
}

fn username(sa: &str) -> String {
    format!("system:serviceaccount:{NS}:{sa}")
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }
    fn all(&self, name: &str) -> Vec<String> {
        self.headers.get_all(name).iter().map(|v| v.to_str().unwrap().to_owned()).collect()
    }
}

async fn answer(response: Response) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    Answer { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
}

/// One request through `check_router`.
async fn check(env: &Env, method: &str, uri: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Answer {
    let mut request = axum::http::Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = check_router(Arc::clone(&env.authorizer)).oneshot(request.body(body.into()).unwrap()).await.unwrap();
    answer(response).await
}

async fn raw_check(env: &Env, token: Option<&str>) -> Answer {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("host", HOST)];
    if let Some(bearer) = &bearer {
        headers.push(("authorization", bearer));
    }
    check(env, "GET", "/check", &headers, Body::empty()).await
}

#[tokio::test]
async fn a_valid_token_is_allowed_with_the_identity_header() {
    let env = Env::new().await;
    let token = env.token("api-consumer", "talker-api").await;
    let answer = raw_check(&env, Some(&token)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.header("x-auth-user"), username("api-consumer"));
    assert_eq!(answer.header("x-ext-auth-reason"), "");
}

#[tokio::test]
async fn a_missing_token_is_401_with_the_challenge_and_reason() {
    let env = Env::new().await;
    let answer = raw_check(&env, None).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.all("www-authenticate"), [r#"Bearer realm="authorized-service-accounts""#]);
    assert_eq!(answer.header("x-ext-auth-reason"), "credential not found");
    assert_eq!(answer.header("x-auth-user"), "");
}

#[tokio::test]
async fn a_token_for_another_audience_is_not_authenticated() {
    let env = Env::new().await;
    let token = env.token("api-consumer", "some-other-api").await;
    let answer = raw_check(&env, Some(&token)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.header("www-authenticate"), r#"Bearer realm="authorized-service-accounts""#);
    assert_eq!(answer.header("x-ext-auth-reason"), "not authenticated");
    // garbage is not authenticated either
    let answer = raw_check(&env, Some("not.a.token")).await;
    assert_eq!((answer.status, answer.header("x-ext-auth-reason")), (StatusCode::UNAUTHORIZED, "not authenticated"));
}

#[tokio::test]
async fn a_service_account_the_rules_keep_out_is_403() {
    let env = Env::new().await;
    let token = env.token(DENIED_SA, "talker-api").await;
    let answer = raw_check(&env, Some(&token)).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.header("x-ext-auth-reason"), "Unauthorized");
    assert_eq!(answer.header("www-authenticate"), "");
    assert_eq!(answer.header("x-auth-user"), "");
}

#[tokio::test]
async fn an_unknown_host_is_404_service_not_found() {
    let env = Env::new().await;
    let answer = check(&env, "GET", "/check", &[("host", "nobody.example")], Body::empty()).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.header("x-ext-auth-reason"), "Service not found");
}

#[tokio::test]
async fn every_identity_source_gets_its_own_challenge() {
    let env = Env::new().await;
    let answer = check(&env, "GET", "/check", &[("host", TWO_HOST)], Body::empty()).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let mut challenges = answer.all("www-authenticate");
    challenges.sort();
    assert_eq!(challenges, [r#"Bearer realm="bearer""#, r#"X-Token realm="header""#]);
    let reason: Value = serde_json::from_str(answer.header("x-ext-auth-reason")).unwrap();
    assert_eq!(reason, json!({"bearer": "credential not found", "header": "credential not found"}));
    // the custom header works as a credential location through HTTP too
    let token = env.token("api-consumer", "talker-api").await;
    let answer = check(&env, "GET", "/check", &[("host", TWO_HOST), ("x-token", &token)], Body::empty()).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.header("x-ext-auth-reason"));
}

#[tokio::test]
async fn without_a_token_reviewer_the_check_fails_closed_with_503() {
    let env = Env::with_reviewer(false).await;
    let token = env.token("api-consumer", "talker-api").await;
    let answer = raw_check(&env, Some(&token)).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.header("x-auth-user"), "");
}

#[tokio::test]
async fn a_success_header_that_is_not_valid_http_fails_closed() {
    let env = Env::new().await;
    let answer = check(&env, "GET", "/", &[("host", BAD_HOST)], Body::empty()).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.header("x-bad"), "");
}

/// What the authorizer understood: (method, host, path, scheme).
fn understood(answer: &Answer) -> (String, String, String, String) {
    assert_eq!(answer.status, StatusCode::OK, "{} {}", answer.header("x-ext-auth-reason"), answer.body);
    let h = |n| answer.header(n).to_owned();
    (h("x-method"), h("x-host"), h("x-path"), h("x-scheme"))
}

fn expect(method: &str, host: &str, path: &str, scheme: &str) -> (String, String, String, String) {
    (method.into(), host.into(), path.into(), scheme.into())
}

#[tokio::test]
async fn ingress_nginx_x_original_url_names_host_path_and_query() {
    let env = Env::new().await;
    let url = format!("https://{ECHO_HOST}/api/v1/things?limit=5");
    let headers = [("host", "authz.tokenwarden.svc"), ("x-original-url", url.as_str()), ("x-original-method", "DELETE"), ("x-original-uri", "/ignored")];
    let answer = check(&env, "GET", "/auth", &headers, Body::empty()).await;
    assert_eq!(understood(&answer), expect("DELETE", ECHO_HOST, "/api/v1/things?limit=5", "https"));
    // the host of the URL is the lookup key, not the auth service's Host
    let url = format!("http://{HOST}/");
    let answer = check(&env, "GET", "/auth", &[("host", ECHO_HOST), ("x-original-url", &url)], Body::empty()).await;
    assert_eq!((answer.status, answer.header("x-ext-auth-reason")), (StatusCode::UNAUTHORIZED, "credential not found"));
    // not a URL: the request cannot be understood
    let answer = check(&env, "GET", "/auth", &[("host", ECHO_HOST), ("x-original-url", "/no/host")], Body::empty()).await;
    assert_eq!((answer.status, answer.header("x-ext-auth-reason")), (StatusCode::BAD_REQUEST, "Invalid request"));
}

#[tokio::test]
async fn nginx_x_original_uri_and_method() {
    let env = Env::new().await;
    let headers = [("host", ECHO_HOST), ("x-original-uri", "/orders/7?full=1"), ("x-original-method", "PATCH")];
    let answer = check(&env, "GET", "/_auth", &headers, Body::empty()).await;
    assert_eq!(understood(&answer), expect("PATCH", ECHO_HOST, "/orders/7?full=1", "http"));
    // X-Forwarded-Host names the protected host when Host is the auth service's
    let headers = [("host", "127.0.0.1:5001"), ("x-forwarded-host", ECHO_HOST), ("x-original-uri", "/x"), ("x-forwarded-proto", "https")];
    let answer = check(&env, "POST", "/_auth", &headers, Body::empty()).await;
    assert_eq!(understood(&answer), expect("POST", ECHO_HOST, "/x", "https"));
}

#[tokio::test]
async fn traefik_forward_auth_x_forwarded_headers() {
    let env = Env::new().await;
    let headers = [
        ("host", "authz:5001"),
        ("x-forwarded-host", ECHO_HOST),
        ("x-forwarded-uri", "/shop/cart?item=3"),
        ("x-forwarded-method", "PUT"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-for", "203.0.113.9"),
    ];
    let answer = check(&env, "GET", "/", &headers, Body::empty()).await;
    assert_eq!(understood(&answer), expect("PUT", ECHO_HOST, "/shop/cart?item=3", "https"));
}

#[tokio::test]
async fn envoy_http_service_and_raw_check_paths() {
    let env = Env::new().await;
    let host = [("host", ECHO_HOST)];
    for (method, uri, path) in [
        ("GET", "/check", "/"),
        ("POST", "/check/", "/"),
        ("PUT", "/check/a/b?c=d", "/a/b?c=d"),
        ("GET", "/check?q=1", "/?q=1"),
        ("DELETE", "/checkout/1", "/checkout/1"),
        ("OPTIONS", "/plain/path", "/plain/path"),
    ] {
        let answer = check(&env, method, uri, &host, Body::empty()).await;
        assert_eq!(understood(&answer), expect(method, ECHO_HOST, path, "http"), "{method} {uri}");
    }
    // Envoy sets x-forwarded-proto
    let answer = check(&env, "GET", "/check/s", &[("host", ECHO_HOST), ("x-forwarded-proto", "https")], Body::empty()).await;
    assert_eq!(understood(&answer), expect("GET", ECHO_HOST, "/s", "https"));
}

#[tokio::test]
async fn repeated_headers_are_merged_with_commas() {
    let env = Env::new().await;
    let headers = [("host", ECHO_HOST), ("X-Multi", "a"), ("x-multi", "b"), ("X-MULTI", "c")];
    let answer = check(&env, "GET", "/", &headers, Body::empty()).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("x-multi"), "a,b,c");
}

#[tokio::test]
async fn the_body_is_read_up_to_8_kib() {
    let env = Env::new().await;
    let host = [("host", ECHO_HOST)];
    let answer = check(&env, "POST", "/check", &host, vec![b'x'; MAX_BODY_BYTES]).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("x-body-size"), MAX_BODY_BYTES.to_string());
    let answer = check(&env, "POST", "/check", &host, vec![b'x'; MAX_BODY_BYTES + 1]).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    // a streamed body without Content-Length is cut off too
    let chunks = futures_chunks(MAX_BODY_BYTES + 1);
    let answer = check(&env, "POST", "/check", &host, chunks).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    // a declared length over the limit is refused before reading
    let answer = check(&env, "POST", "/check", &[("host", ECHO_HOST), ("content-length", "100000")], Body::empty()).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_body_that_stalls_is_408_after_the_read_timeout() {
    let env = Env::new().await;
    // Waits the whole timeout (tokio's paused clock would need its test-util feature, which
    // would rebuild tokio for every test binary).
    let answer = check(&env, "POST", "/check", &[("host", ECHO_HOST), ("content-length", "100")], Body::new(Stalled)).await;
    assert_eq!(answer.status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(answer.body, format!("the request body was not received within {} s\n", BODY_READ_TIMEOUT.as_secs()));
}

/// A body whose bytes never come.
struct Stalled;

impl hyper::body::Body for Stalled {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        std::task::Poll::Pending
    }
}

/// A body of `len` bytes in 1 KiB frames, with no size hint (sent chunked).
fn futures_chunks(len: usize) -> Body {
    Body::new(Chunks { left: len })
}

struct Chunks {
    left: usize,
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.left.min(1024);
        self.left -= n;
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from(vec![b'y'; n])))))
    }
}

#[tokio::test]
async fn a_deleted_service_account_is_denied_within_a_second_even_when_cached() {
    let env = Env::new().await;
    let token = env.token("revoked", "talker-api").await;
    assert_eq!(raw_check(&env, Some(&token)).await.status, StatusCode::OK);
    let hits = env.cache_hits();
    let answer = raw_check(&env, Some(&token)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("x-auth-user"), username("revoked"));
    assert!(env.cache_hits() > hits, "the second check should come from the cache");

    env.authority.delete(&Resource::SERVICE_ACCOUNTS, NS, "revoked", &Preconditions::default()).await.unwrap();
    let mut denied = None;
    for _ in 0..20 {
        let answer = raw_check(&env, Some(&token)).await;
        if answer.status != StatusCode::OK {
            denied = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let denied = denied.expect("the token of a deleted ServiceAccount was still allowed after 1 s");
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    assert_eq!(denied.header("x-ext-auth-reason"), "not authenticated");
    // other ServiceAccounts are unaffected
    let other = env.token("api-consumer", "talker-api").await;
    assert_eq!(raw_check(&env, Some(&other)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_repeated_bad_signature_is_refused_from_the_review_cache() {
    let env = Env::new().await;
    let token = env.token("api-consumer", "talker-api").await;
    let forged = format!("{}{}", &token[..token.len() - 4], if token.ends_with("AAAA") { "BBBB" } else { "AAAA" });
    let first = raw_check(&env, Some(&forged)).await;
    assert_eq!((first.status, first.header("x-ext-auth-reason")), (StatusCode::UNAUTHORIZED, "not authenticated"));
    let hits = env.cache_hits();
    let again = raw_check(&env, Some(&forged)).await;
    assert_eq!((again.status, again.header("x-ext-auth-reason")), (StatusCode::UNAUTHORIZED, "not authenticated"));
    assert_eq!(env.cache_hits(), hits + 1, "the second refusal should come from the cache");
    // the genuine token is another key: verified and allowed
    assert_eq!(raw_check(&env, Some(&token)).await.status, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// The reverse proxy

/// An upstream that answers with what it received, as JSON, and counts requests and
/// connections.
#[derive(Default)]
struct Echo {
    requests: AtomicUsize,
    peers: Mutex<HashSet<SocketAddr>>,
    delay: Option<Duration>,
}

async fn echo(State(echo): State<Arc<Echo>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, request: Request) -> Response {
    echo.requests.fetch_add(1, Ordering::SeqCst);
    echo.peers.lock().unwrap().insert(peer);
    if let Some(delay) = echo.delay {
        tokio::time::sleep(delay).await;
    }
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let mut headers = serde_json::Map::new();
    for name in parts.headers.keys() {
        let values: Vec<&str> = parts.headers.get_all(name).iter().map(|v| v.to_str().unwrap_or("?")).collect();
        headers.insert(name.as_str().to_owned(), Value::String(values.join(",")));
    }
    let uri = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    ([("x-upstream", "echo")], Json(json!({"method": parts.method.as_str(), "uri": uri, "headers": headers, "body_len": body.len()}))).into_response()
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    addr
}

async fn echo_server(delay: Option<Duration>) -> (SocketAddr, Arc<Echo>) {
    let state = Arc::new(Echo { delay, ..Echo::default() });
    let addr = serve(Router::new().fallback(echo).with_state(Arc::clone(&state))).await;
    (addr, state)
}

fn upstream(addr: SocketAddr) -> Uri {
    format!("http://{addr}").parse().unwrap()
}

fn client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Answer {
    let mut request = axum::http::Request::builder().method(method).uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client().request(request.body(body.into()).unwrap()).await.unwrap();
    let (parts, body) = response.into_parts();
    answer(Response::from_parts(parts, Body::new(body))).await
}

fn upstream_saw(answer: &Answer) -> Value {
    assert_eq!(answer.status, StatusCode::OK, "{} {}", answer.header("x-ext-auth-reason"), answer.body);
    assert_eq!(answer.header("x-upstream"), "echo");
    serde_json::from_str(&answer.body).unwrap()
}

#[tokio::test]
async fn the_proxy_forwards_allowed_requests_with_the_identity_and_without_the_token() {
    let env = Env::new().await;
    let (echo_addr, echo) = echo_server(None).await;
    let proxy = serve(proxy_router(Arc::clone(&env.authorizer), upstream(echo_addr), ProxyOptions { strip_credential: true, host: None })).await;
    let token = env.token("api-consumer", "talker-api").await;
    let bearer = format!("Bearer {token}");
    let headers = [
        ("host", HOST),
        ("authorization", bearer.as_str()),
        // a forged identity header is replaced, never passed on
        ("x-auth-user", "system:serviceaccount:kube-system:admin"),
        ("connection", "keep-alive, x-hop"),
        ("x-hop", "secret"),
        ("x-forwarded-for", "198.51.100.1"),
        ("x-custom", "kept"),
    ];
    let saw = upstream_saw(&send(proxy, "GET", "/hello/world?x=1&y=2", &headers, Body::empty()).await);
    assert_eq!(saw["method"], "GET");
    assert_eq!(saw["uri"], "/hello/world?x=1&y=2");
    let seen = &saw["headers"];
    assert_eq!(seen["x-auth-user"], username("api-consumer"));
    assert_eq!(seen.get("authorization"), None, "the credential must be stripped");
    assert_eq!(seen.get("x-hop"), None, "headers named by Connection are hop-by-hop");
    assert_eq!(seen["host"], HOST);
    assert_eq!(seen["x-forwarded-host"], HOST);
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-for"], "198.51.100.1, 127.0.0.1");
    assert_eq!(seen["x-custom"], "kept");
    assert_eq!(echo.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_proxy_keeps_the_credential_unless_told_to_strip_it_and_streams_bodies() {
    let env = Env::new().await;
    let (echo_addr, echo) = echo_server(None).await;
    let proxy = serve(proxy_router(Arc::clone(&env.authorizer), upstream(echo_addr), ProxyOptions::default())).await;
    let token = env.token("api-consumer", "talker-api").await;
    let bearer = format!("Bearer {token}");
    let headers = [("host", HOST), ("authorization", bearer.as_str())];
    let large = vec![b'z'; 1 << 20];
    let saw = upstream_saw(&send(proxy, "POST", "/upload", &headers, large).await);
    assert_eq!(saw["headers"]["authorization"], bearer);
    assert_eq!(saw["body_len"], 1 << 20);
    // a streamed body of unknown length
    let saw = upstream_saw(&send(proxy, "PUT", "/upload", &headers, futures_chunks(100_000)).await);
    assert_eq!(saw["body_len"], 100_000);
    assert_eq!(saw["method"], "PUT");
    // keep-alive: the three requests shared one upstream connection
    assert_eq!(echo.requests.load(Ordering::SeqCst), 2);
    upstream_saw(&send(proxy, "GET", "/again", &headers, Body::empty()).await);
    assert_eq!(echo.peers.lock().unwrap().len(), 1, "upstream connections should be reused");
}

#[tokio::test]
async fn the_proxy_answers_denials_itself_and_never_reaches_the_upstream() {
    let env = Env::new().await;
    let (echo_addr, echo) = echo_server(None).await;
    let proxy = serve(proxy_router(Arc::clone(&env.authorizer), upstream(echo_addr), ProxyOptions { strip_credential: true, host: None })).await;

    let answer = send(proxy, "GET", "/", &[("host", HOST)], Body::empty()).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.header("www-authenticate"), r#"Bearer realm="authorized-service-accounts""#);
    assert_eq!(answer.header("x-ext-auth-reason"), "credential not found");

    let wrong = format!("Bearer {}", env.token("api-consumer", "elsewhere").await);
    let answer = send(proxy, "POST", "/", &[("host", HOST), ("authorization", &wrong)], vec![1u8; 10]).await;
    assert_eq!((answer.status, answer.header("x-ext-auth-reason")), (StatusCode::UNAUTHORIZED, "not authenticated"));

    let intruder = format!("Bearer {}", env.token(DENIED_SA, "talker-api").await);
    let answer = send(proxy, "GET", "/", &[("host", HOST), ("authorization", &intruder)], Body::empty()).await;
    assert_eq!((answer.status, answer.header("x-ext-auth-reason")), (StatusCode::FORBIDDEN, "Unauthorized"));

    let answer = send(proxy, "GET", "/", &[("host", "unknown.example")], Body::empty()).await;
    assert_eq!((answer.status, answer.header("x-ext-auth-reason")), (StatusCode::NOT_FOUND, "Service not found"));

    assert_eq!(echo.requests.load(Ordering::SeqCst), 0, "a denied request reached the upstream");
    // and an allowed one does
    let ok = format!("Bearer {}", env.token("api-consumer", "talker-api").await);
    upstream_saw(&send(proxy, "GET", "/", &[("host", HOST), ("authorization", &ok)], Body::empty()).await);
    assert_eq!(echo.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_proxy_answers_502_when_the_upstream_is_down_and_504_when_it_is_slow() {
    let env = Env::new().await;
    // a port nobody listens on
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let proxy = serve(proxy_router(Arc::clone(&env.authorizer), upstream(closed), ProxyOptions::default())).await;
    let answer = send(proxy, "GET", "/", &[("host", ECHO_HOST)], Body::empty()).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.body.lines().count(), 1, "{:?}", answer.body);
    assert!(answer.body.starts_with("upstream unavailable"), "{:?}", answer.body);

    let (slow_addr, slow) = echo_server(Some(Duration::from_secs(3))).await;
    let router = proxy_router_with_timeout(Arc::clone(&env.authorizer), upstream(slow_addr), ProxyOptions::default(), Duration::from_millis(200));
    let proxy = serve(router).await;
    let answer = send(proxy, "GET", "/", &[("host", ECHO_HOST)], Body::empty()).await;
    assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(slow.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_proxy_joins_the_upstream_base_path() {
    let env = Env::new().await;
    let (echo_addr, _) = echo_server(None).await;
    let base: Uri = format!("http://{echo_addr}/base/").parse().unwrap();
    let proxy = serve(proxy_router(Arc::clone(&env.authorizer), base, ProxyOptions::default())).await;
    let saw = upstream_saw(&send(proxy, "GET", "/x?y=1", &[("host", ECHO_HOST)], Body::empty()).await);
    assert_eq!(saw["uri"], "/base/x?y=1");
}

#[tokio::test]
async fn the_proxy_gives_an_http2_request_the_host_of_its_authority() {
    let env = Env::new().await;
    let (echo_addr, _) = echo_server(None).await;
    // Pinned, so the check does not depend on the :authority, which must name the proxy here.
    let pinned = ProxyOptions { strip_credential: false, host: Some(HOST.to_owned()) };
    let proxy = serve(proxy_router(Arc::clone(&env.authorizer), upstream(echo_addr), pinned)).await;
    let bearer = format!("Bearer {}", env.token("api-consumer", "talker-api").await);
    let request = axum::http::Request::builder().uri(format!("http://{proxy}/h2?q=1")).header("authorization", bearer).body(Body::empty()).unwrap();
    let h2 = Client::builder(TokioExecutor::new()).http2_only(true).build(HttpConnector::new());
    let response = h2.request(request).await.unwrap();
    assert_eq!(response.version(), axum::http::Version::HTTP_2);
    let (parts, body) = response.into_parts();
    let saw = upstream_saw(&answer(Response::from_parts(parts, Body::new(body))).await);
    assert_eq!(saw["uri"], "/h2?q=1");
    assert_eq!(saw["headers"]["host"], proxy.to_string(), "an HTTP/1.1 upstream needs Host: the :authority");
    assert_eq!(saw["headers"]["x-forwarded-host"], proxy.to_string());
}

#[tokio::test]
async fn a_pinned_proxy_checks_its_own_authconfig_whatever_host_the_client_sends() {
    let env = Env::new().await;
    let (echo_addr, _) = echo_server(None).await;
    let pinned = ProxyOptions { strip_credential: false, host: Some(HOST.to_owned()) };
    let proxy = serve(proxy_router(Arc::clone(&env.authorizer), upstream(echo_addr), pinned)).await;
    // No token, another Host: still the pinned AuthConfig's 401, not that host's 404 or anything laxer.
    let denied = send(proxy, "GET", "/hello", &[("host", "elsewhere.example")], Body::empty()).await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED, "{}", denied.body);
    let token = env.token("api-consumer", "talker-api").await;
    let bearer = format!("Bearer {token}");
    upstream_saw(&send(proxy, "GET", "/hello", &[("host", "elsewhere.example"), ("authorization", bearer.as_str())], Body::empty()).await);

    let unpinned = serve(proxy_router(Arc::clone(&env.authorizer), upstream(echo_addr), ProxyOptions::default())).await;
    let other = send(unpinned, "GET", "/hello", &[("host", "elsewhere.example"), ("authorization", bearer.as_str())], Body::empty()).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
}
