//! The remote backends against a real tokenwarden API server served over HTTP in-process:
//! TokenReview (verified, invalid, cached, coalesced, outages as 503), AuthConfigs watched with
//! their statuses written back, and API-key Secrets watched.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::routing::post;
use serde_json::{Value, json};
use tokenwarden_apiserver::{AdminCredential, ApiState, router};
use tokenwarden_authz::Authorizer;
use tokenwarden_authz::identity::{CacheResult, Identities, TokenReviewer};
use tokenwarden_authz::kubeconfig::ClusterAccess;
use tokenwarden_authz::remote::{ApiClient, RemoteAuthConfigs, RemoteReviewer, ReviewerOptions, TOKEN_REVIEW_PATH};
use tokenwarden_core::authconfig::{AuthRequest, Decision, HostIndex, IdentityOutcome};
use tokenwarden_core::keys::{Algorithm, KeySet};
use tokenwarden_core::token_request::{IssuerConfig, TokenRequestInput, TokenRequestSpec};
use tokenwarden_core::{Object, Resource, Timestamp};
use tokenwarden_store::memory::MemoryStore;
use tokenwarden_store::{Authority, Clock, ManualClock, Preconditions, SystemClock, keystore};
use tokio::net::TcpListener;

const ADMIN: &str = "authorizer-credential";
const ISSUER: &str = "https://tokenwarden.test";
const HOST: &str = "talker-api.127.0.0.1.nip.io";
const NS: &str = "talker";

fn obj(value: Value) -> Object {
    Object::from_value(value).unwrap()
}

/// The AuthConfig `name` in `NS` with `spec`.
fn authconfig(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "authorino.kuadrant.io/v1beta3", "kind": "AuthConfig", "metadata": {"namespace": NS, "name": name}, "spec": spec})
}

/// The Authorino TokenReview guide's AuthConfig for `host`.
fn guide(name: &str, host: &str) -> Value {
    authconfig(
        name,
        json!({"hosts": [host], "authentication": {"authorized-service-accounts": {"kubernetesTokenReview": {"audiences": ["talker-api"]}}}}),
    )
}

struct Api {
    addr: SocketAddr,
    authority: Arc<Authority>,
    reviews: Arc<AtomicUsize>,
    /// Requests that arrived over HTTP/2.
    h2: Arc<AtomicUsize>,
    /// While set, writes to a `/status` subresource are refused with 403.
    refuse_status_writes: Arc<AtomicBool>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    /// The API, to serve it again after `stop` (plain HTTP only).
    app: Router,
}

/// Serves `app` over plain HTTP, or over TLS with `tls`; the sender stops the server and drops
/// its open connections (a watch in progress breaks, as when an API server goes away).
fn serve_with(listener: TcpListener, app: Router, tls: Option<axum_server::tls_rustls::RustlsConfig>) -> tokio::sync::oneshot::Sender<()> {
    let handle = axum_server::Handle::new();
    let listener = listener.into_std().unwrap();
    let service = app.into_make_service();
    match tls {
        None => {
            let server = axum_server::from_tcp(listener).unwrap().handle(handle.clone());
            tokio::spawn(async move { server.serve(service).await.unwrap() });
        }
        Some(config) => {
            let server = axum_server::tls_rustls::from_tcp_rustls(listener, config).unwrap().handle(handle.clone());
            tokio::spawn(async move { server.serve(service).await.unwrap() });
        }
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        rx.await.ok();
        handle.shutdown();
    });
    tx
}

async fn serve(listener: TcpListener, app: Router) -> tokio::sync::oneshot::Sender<()> {
    serve_with(listener, app, None)
}

fn write_kubeconfig(dir: &std::path::Path, server: &str, token: &str) -> PathBuf {
    let path = dir.join(format!("kubeconfig-{token}"));
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: tokenwarden\n  cluster:\n    server: {server}\ncontexts:\n- name: test\n  context:\n    cluster: tokenwarden\n    user: authorizer\n    namespace: {NS}\nusers:\n- name: authorizer\n  user:\n    token: {token}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A CA and a serving certificate for 127.0.0.1 signed by it (PEM).
struct Pki {
    ca: String,
    cert: String,
    key: String,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    Pki { ca: ca.pem(), cert: cert.pem(), key: key.serialize_pem() }
}

impl Api {
    async fn start() -> Self {
        Self::start_with(None).await
    }

    async fn start_with(tls: Option<&Pki>) -> Self {
        let clock = ManualClock::new(SystemClock.now());
        let store = Arc::new(MemoryStore::new(Arc::new(clock.clone())));
        let keys = KeySet::new(keystore::generate(Algorithm::Es256).unwrap(), Vec::new());
        let authority = Authority::start(store, keys, IssuerConfig::new(ISSUER), Arc::new(clock), None).await.unwrap();
        authority.create(&Resource::NAMESPACES, obj(json!({"metadata": {"name": NS}}))).await.unwrap();
        authority.create(&Resource::SERVICE_ACCOUNTS, obj(json!({"metadata": {"name": "api-consumer", "namespace": NS}}))).await.unwrap();
        let state = ApiState::new(Arc::clone(&authority), AdminCredential::from_token(ADMIN), ISSUER);
        let reviews = Arc::new(AtomicUsize::new(0));
        let h2 = Arc::new(AtomicUsize::new(0));
        let refuse_status_writes = Arc::new(AtomicBool::new(false));
        let (counter, h2_counter, refuse) = (Arc::clone(&reviews), Arc::clone(&h2), Arc::clone(&refuse_status_writes));
        let app = router(Arc::new(state)).layer(axum::middleware::from_fn(move |request: Request, next: Next| {
            let (counter, h2_counter, refuse) = (Arc::clone(&counter), Arc::clone(&h2_counter), Arc::clone(&refuse));
            async move {
                if refuse.load(Ordering::SeqCst) && request.method() != axum::http::Method::GET && request.uri().path().ends_with("/status") {
                    let status = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403,"message":"cannot update resource \"authconfigs/status\""}"#;
                    return axum::response::IntoResponse::into_response((StatusCode::FORBIDDEN, status));
                }
                if request.uri().path() == TOKEN_REVIEW_PATH {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                if request.version() == axum::http::Version::HTTP_2 {
                    h2_counter.fetch_add(1, Ordering::SeqCst);
                }
                next.run(request).await
            }
        }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (shutdown, kubeconfig) = match tls {
            None => (serve(listener, app.clone()).await, write_kubeconfig(dir.path(), &format!("http://{addr}"), ADMIN)),
            Some(pki) => {
                let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
                let config = axum_server::tls_rustls::RustlsConfig::from_pem(pki.cert.clone().into_bytes(), pki.key.clone().into_bytes()).await.unwrap();
                (serve_with(listener, app.clone(), Some(config)), write_kubeconfig(dir.path(), &format!("https://{addr}"), ADMIN))
            }
        };
        Self { addr, authority, reviews, h2, refuse_status_writes, shutdown: Some(shutdown), _dir: dir, kubeconfig, app }
    }

    fn client(&self) -> ApiClient {
        let access = ClusterAccess::from_kubeconfig_files(std::slice::from_ref(&self.kubeconfig), None).unwrap();
        assert!(access.server().ends_with(&format!("://{}", self.addr)));
        assert_eq!(access.namespace(), Some(NS));
        ApiClient::new(access).unwrap()
    }

    async fn token(&self, audience: &str) -> (String, i64) {
        let input = TokenRequestInput {
            namespace: NS.into(),
            service_account: "api-consumer".into(),
            spec: TokenRequestSpec { audiences: vec![audience.into()], ..TokenRequestSpec::default() },
            ..TokenRequestInput::default()
        };
        let issued = self.authority.request_token(input).await.unwrap();
        let exp = tokenwarden_core::jwt::decode_unverified(&issued.token).unwrap().1["exp"].as_i64().unwrap();
        (issued.token, exp)
    }

    fn reviews(&self) -> usize {
        self.reviews.load(Ordering::SeqCst)
    }

    /// Stops the server and waits until nothing accepts on its address.
    /// Serves the same API on the same address again (after `stop`).
    async fn resume(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.shutdown = Some(serve(listener, self.app.clone()).await);
    }

    async fn stop(&mut self) {
        self.shutdown.take().unwrap().send(()).unwrap();
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(self.addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the API server did not stop");
    }
}

fn aud(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn token_review_verified_invalid_cached_and_coalesced() {
    let api = Api::start().await;
    let reviewer = RemoteReviewer::new(api.client());
    let (token, _) = api.token("talker-api").await;

    let (outcome, cache) = reviewer.review(&token, &aud(&["talker-api"]), true).await;
    let IdentityOutcome::Verified(status) = outcome else { panic!("{outcome:?}") };
    assert_eq!(cache, CacheResult::Miss);
    assert_eq!(status["authenticated"], true);
    assert_eq!(status["user"]["username"], format!("system:serviceaccount:{NS}:api-consumer"));
    assert!(status["user"]["groups"].as_array().unwrap().contains(&json!("system:serviceaccounts")));
    assert_eq!(status["audiences"], json!(["talker-api"]));
    assert_eq!(api.reviews(), 1);

    // The second call is answered from the cache: no request reaches the API server.
    let (again, cache) = reviewer.review(&token, &aud(&["talker-api"]), true).await;
    assert_eq!(again, IdentityOutcome::Verified(status.clone()));
    assert_eq!(cache, CacheResult::Hit);
    assert_eq!(api.reviews(), 1);

    // Wrong audience: not authenticated (a 401 in the authorizer), also cached.
    let (wrong, cache) = reviewer.review(&token, &aud(&["other-api"]), true).await;
    assert_eq!((wrong, cache), (IdentityOutcome::Invalid("not authenticated".into()), CacheResult::Miss));
    let (wrong, cache) = reviewer.review(&token, &aud(&["other-api"]), true).await;
    assert_eq!((wrong, cache), (IdentityOutcome::Invalid("not authenticated".into()), CacheResult::Hit));
    assert_eq!(api.reviews(), 2);
    let (garbage, _) = reviewer.review("not-a-token", &aud(&["talker-api"]), true).await;
    assert_eq!(garbage, IdentityOutcome::Invalid("not authenticated".into()));

    // Concurrent misses on one key are coalesced into one TokenReview.
    let before = api.reviews();
    let reviewer = Arc::new(reviewer);
    let audiences = aud(&["talker-api", "second"]);
    let calls: Vec<_> = (0..32)
        .map(|_| {
            let (reviewer, token, audiences) = (Arc::clone(&reviewer), token.clone(), audiences.clone());
            tokio::spawn(async move { reviewer.review(&token, &audiences, true).await })
        })
        .collect();
    let mut misses = 0;
    for call in calls {
        let (outcome, cache) = call.await.unwrap();
        assert!(matches!(outcome, IdentityOutcome::Verified(_)), "{outcome:?}");
        misses += usize::from(cache == CacheResult::Miss);
    }
    assert_eq!(api.reviews() - before, 1);
    assert_eq!(misses, 1);
}

#[tokio::test]
async fn cache_ttl_is_bounded_by_token_expiry_and_invalid_ttl() {
    let api = Api::start().await;
    let (token, exp) = api.token("talker-api").await;
    // The reviewer's clock says the token has one second left: it is cached for one second.
    let clock = ManualClock::new(Timestamp(exp - 1));
    let options = ReviewerOptions { invalid_ttl: Duration::from_secs(1), ..ReviewerOptions::default() };
    let reviewer = RemoteReviewer::with_options(api.client(), options, Arc::new(clock));
    let audiences = aud(&["talker-api"]);
    let wrong = aud(&["other-api"]);
    assert_eq!(reviewer.review(&token, &audiences, true).await.1, CacheResult::Miss);
    assert_eq!(reviewer.review(&token, &wrong, true).await.1, CacheResult::Miss);
    assert_eq!(reviewer.review(&token, &audiences, true).await.1, CacheResult::Hit);
    assert_eq!(reviewer.review(&token, &wrong, true).await.1, CacheResult::Hit);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(reviewer.review(&token, &audiences, true).await.1, CacheResult::Miss);
    assert_eq!(reviewer.review(&token, &wrong, true).await.1, CacheResult::Miss);
    assert_eq!(api.reviews(), 4);
}

#[tokio::test]
async fn a_token_revoked_on_the_cluster_stops_working_when_its_cached_answer_ends() {
    let api = Api::start().await;
    let (token, _) = api.token("talker-api").await;
    // The default options: a valid answer lives 10 s, kube-apiserver's own review cache (it
    // was 60 s). The test waits it out.
    let reviewer = RemoteReviewer::with_options(api.client(), ReviewerOptions::default(), Arc::new(tokenwarden_store::clock::SystemClock));
    let audiences = aud(&["talker-api"]);
    assert!(matches!(reviewer.review(&token, &audiences, false).await.0, IdentityOutcome::Verified(_)));
    api.authority.delete(&Resource::SERVICE_ACCOUNTS, NS, "api-consumer", &Preconditions::default()).await.unwrap();
    // Within the cached answer's life it still holds.
    assert_eq!(reviewer.review(&token, &audiences, false).await.1, CacheResult::Hit);
    tokio::time::sleep(Duration::from_millis(10_300)).await;
    assert_eq!(reviewer.review(&token, &audiences, false).await, (IdentityOutcome::Invalid("not authenticated".into()), CacheResult::Miss));
}

fn check_request(token: &str) -> AuthRequest<'static> {
    AuthRequest {
        id: "1".into(),
        method: "GET".into(),
        scheme: "http".into(),
        host: HOST.into(),
        path: "/hello".into(),
        protocol: "HTTP/1.1".into(),
        headers: [("authorization".into(), format!("Bearer {token}").into())].into_iter().collect(),
        ..AuthRequest::default()
    }
}

fn code(decision: &Decision) -> u16 {
    match decision {
        Decision::Allow { .. } => 200,
        Decision::Deny { code, .. } => *code,
    }
}

#[tokio::test]
async fn api_server_outage_is_unavailable_and_503_never_401() {
    let mut api = Api::start().await;
    let reviewer = Arc::new(RemoteReviewer::new(api.client()));
    let authorizer = Authorizer::new(Identities::with_backends(Some(Arc::clone(&reviewer) as Arc<dyn TokenReviewer>), None));
    let config = tokenwarden_core::authconfig::AuthConfig::parse(&guide("talker-api-protection", HOST)).unwrap();
    authorizer.set_configs(HostIndex::build([Arc::new(config)]));

    let (token, _) = api.token("talker-api").await;
    let (other, _) = api.token("talker-api").await;
    let (wrong_audience, _) = api.token("elsewhere").await;
    assert_eq!(code(&authorizer.check(&check_request(&token)).await), 200);
    assert_eq!(code(&authorizer.check(&check_request(&wrong_audience)).await), 401);

    api.stop().await;
    // Not in the cache, and nobody to ask: unavailable, with the reason on one line.
    let (outcome, cache) = reviewer.review(&other, &aud(&["talker-api"]), true).await;
    let IdentityOutcome::Unavailable(reason) = outcome else { panic!("{outcome:?}") };
    assert_eq!(cache, CacheResult::Miss);
    assert!(reason.starts_with("TokenReview failed: "), "{reason}");
    assert!(!reason.contains('\n'));
    let decision = authorizer.check(&check_request(&other)).await;
    assert_eq!(code(&decision), 503, "{decision:?}");
    // A token reviewed before the outage is still answered from the cache.
    assert_eq!(code(&authorizer.check(&check_request(&token)).await), 200);
}

#[tokio::test]
async fn refused_credentials_throttling_and_server_errors_are_unavailable() {
    let api = Api::start().await;
    let (token, _) = api.token("talker-api").await;

    // The authorizer's own credential refused: 401 from the API server is not the token's fault.
    let bad = write_kubeconfig(api._dir.path(), &format!("http://{}", api.addr), "wrong-credential");
    let reviewer = RemoteReviewer::new(ApiClient::new(ClusterAccess::from_kubeconfig_files(&[bad], None).unwrap()).unwrap());
    let (outcome, _) = reviewer.review(&token, &aud(&["talker-api"]), true).await;
    let IdentityOutcome::Unavailable(reason) = outcome else { panic!("{outcome:?}") };
    assert!(reason.contains("HTTP 401"), "{reason}");

    for status in [StatusCode::TOO_MANY_REQUESTS, StatusCode::INTERNAL_SERVER_ERROR, StatusCode::FORBIDDEN] {
        let app = Router::new().route(TOKEN_REVIEW_PATH, post(move || async move { (status, r#"{"kind":"Status","message":"go away"}"#) }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _stop = serve(listener, app).await;
        let reviewer = RemoteReviewer::new(ApiClient::new(ClusterAccess::new(&format!("http://{addr}"), Some("t")).unwrap()).unwrap());
        let (outcome, _) = reviewer.review(&token, &aud(&["talker-api"]), true).await;
        let IdentityOutcome::Unavailable(reason) = outcome else { panic!("{status}: {outcome:?}") };
        assert!(reason.contains(&format!("HTTP {}", status.as_u16())) && reason.contains("go away"), "{reason}");
        // Not cached: the next call asks again.
        assert_eq!(reviewer.review(&token, &aud(&["talker-api"]), true).await.1, CacheResult::Miss);
    }

    // A server that accepts and never answers: the per-call timeout.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    let options = ReviewerOptions { timeout: Duration::from_millis(300), ..ReviewerOptions::default() };
    let api_client = ApiClient::new(ClusterAccess::new(&format!("http://{addr}"), None).unwrap()).unwrap();
    let reviewer = RemoteReviewer::with_options(api_client, options, Arc::new(SystemClock));
    let started = tokio::time::Instant::now();
    let (outcome, _) = reviewer.review(&token, &aud(&["talker-api"]), true).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(outcome, IdentityOutcome::Unavailable("TokenReview failed: timed out after 300 ms".into()));
    held.abort();
}

async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let started = tokio::time::Instant::now();
    while !check() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn authconfigs_applied_to_the_api_server_are_picked_up_within_a_second() {
    let api = Api::start().await;
    api.authority.create(&Resource::AUTH_CONFIGS, obj(guide("first", "first.example.com"))).await.unwrap();
    let authorizer = Arc::new(Authorizer::new(Identities::with_backends(None, None)));
    let watcher = RemoteAuthConfigs::start(api.client(), Arc::clone(&authorizer)).await.unwrap();
    // Ready when `start` returns.
    assert!(authorizer.configs().lookup("first.example.com").is_some());
    assert!(authorizer.configs().lookup("second.example.com").is_none());

    let second = api.authority.create(&Resource::AUTH_CONFIGS, obj(guide("second", "second.example.com"))).await.unwrap();
    let configs = || authorizer.configs();
    eventually("added", Duration::from_secs(1), || configs().lookup("second.example.com").is_some()).await;

    // Changed hosts (unpinned: the authorizer writes statuses meanwhile).
    let mut moved = second.clone();
    moved.0.get_mut("spec").unwrap()["hosts"] = json!(["moved.example.com"]);
    moved.metadata_mut().remove("resourceVersion");
    api.authority.update(&Resource::AUTH_CONFIGS, moved).await.unwrap();
    eventually("moved", Duration::from_secs(1), || {
        configs().lookup("moved.example.com").is_some() && configs().lookup("second.example.com").is_none()
    })
    .await;

    // A host collision: the older AuthConfig keeps it.
    api.authority.create(&Resource::AUTH_CONFIGS, obj(guide("younger", "first.example.com"))).await.unwrap();
    api.authority.create(&Resource::AUTH_CONFIGS, obj(guide("third", "third.example.com"))).await.unwrap();
    eventually("third", Duration::from_secs(1), || configs().lookup("third.example.com").is_some()).await;
    assert_eq!(configs().lookup("first.example.com").unwrap().name, "first");

    api.authority.delete(&Resource::AUTH_CONFIGS, NS, "first", &Preconditions::default()).await.unwrap();
    eventually("deleted", Duration::from_secs(1), || configs().lookup("first.example.com").is_some_and(|c| c.name == "younger")).await;
    assert!(!watcher.is_finished());
    watcher.abort();
}

/// `value` nested `depth` levels: deeper than serde_json reads (127) at 200. kube-apiserver
/// keeps such objects (Go reads 10,000 levels); ours refuses them, so they are written to the
/// store directly here, as a real cluster would hold them.
fn deep(depth: usize) -> Value {
    (1..depth).fold(json!("leaf"), |inner, _| json!({"a": inner}))
}

#[tokio::test]
async fn an_object_too_deep_to_read_does_not_stop_the_followers() {
    use tokenwarden_authz::remote::RemoteApiKeys;
    let api = Api::start().await;
    let store = api.authority.store();
    // A deep AuthConfig and a deep API-key Secret before the first list.
    let mut nested = guide("nested", "nested.example.com");
    nested["spec"]["authentication"]["authorized-service-accounts"]["defaults"] = json!({"x": {"value": deep(200)}});
    store.create(&Resource::AUTH_CONFIGS, obj(nested)).await.unwrap();
    let deep_key = json!({"metadata": {"name": "deep-key", "namespace": NS, "labels": {"group": "friends"}, "annotations": {"x": "y"}},
                          "data": {"api_key": "ZGVlcA=="}, "x-extra": deep(200)});
    store.create(&Resource::SECRETS, obj(deep_key)).await.unwrap();
    api.authority.create(&Resource::AUTH_CONFIGS, obj(guide("first", "first.example.com"))).await.unwrap();
    api.authority.create(&Resource::AUTH_CONFIGS, obj(api_key_config("keys", "keys.example.com", false))).await.unwrap();

    let authorizer = Arc::new(Authorizer::new(Identities::with_backends(None, None)));
    let watcher = RemoteAuthConfigs::start(api.client(), Arc::clone(&authorizer)).await.unwrap();
    let keys = RemoteApiKeys::start(api.client(), Arc::clone(&authorizer), None);
    let configs = || authorizer.configs();
    assert!(configs().lookup("first.example.com").is_some(), "the list was read around the deep AuthConfig");
    assert!(configs().lookup("nested.example.com").is_none(), "an AuthConfig that cannot be read is not enforced");
    // The deep Secret is not an API key: 401, not the 503 of keys never listed.
    let good = json!({"metadata": {"name": "good-key", "namespace": NS, "labels": {"group": "friends"}}, "stringData": {"api_key": "good"}});
    api.authority.create(&Resource::SECRETS, obj(good)).await.unwrap();
    answers_within_a_second(&authorizer, &api_key_request("keys.example.com", "good"), 200).await;
    assert_eq!(code(&authorizer.check(&api_key_request("keys.example.com", "deep")).await), 401);

    // A valid AuthConfig updated to one too deep: its last valid version stays in force, and
    // the watch goes on.
    let mut current = store.get(&Resource::AUTH_CONFIGS, NS, "first").await.unwrap();
    current.0.get_mut("spec").unwrap()["hosts"] = json!(["first.example.com", "deep.example.com"]);
    current.0.get_mut("spec").unwrap()["authentication"]["authorized-service-accounts"]["defaults"] = json!({"x": {"value": deep(200)}});
    current.metadata_mut().remove("resourceVersion");
    store.update(&Resource::AUTH_CONFIGS, current).await.unwrap();
    api.authority.create(&Resource::AUTH_CONFIGS, obj(guide("later", "later.example.com"))).await.unwrap();
    eventually("the watch went on", Duration::from_secs(1), || configs().lookup("later.example.com").is_some()).await;
    assert_eq!(configs().lookup("first.example.com").map(|c| c.name.clone()), Some("first".to_owned()), "last valid version");
    assert!(configs().lookup("deep.example.com").is_none());

    // Deleted, it goes; so does the deep Secret's name when deleted (nothing to revoke).
    store.delete(&Resource::AUTH_CONFIGS, NS, "first", &Preconditions::default()).await.unwrap();
    eventually("deleted", Duration::from_secs(1), || configs().lookup("first.example.com").is_none()).await;
    store.delete(&Resource::SECRETS, NS, "good-key", &Preconditions::default()).await.unwrap();
    answers_within_a_second(&authorizer, &api_key_request("keys.example.com", "good"), 401).await;
    assert!(!watcher.is_finished() && !keys.is_finished());
    watcher.abort();
    keys.abort();
}

#[tokio::test]
async fn authconfigs_start_fails_clearly_when_the_api_server_is_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let authorizer = Arc::new(Authorizer::new(Identities::with_backends(None, None)));
    let api = ApiClient::new(ClusterAccess::new(&format!("http://{addr}"), None).unwrap()).unwrap();
    let error = RemoteAuthConfigs::start(api, authorizer).await.unwrap_err();
    assert!(error.starts_with("list /apis/authorino.kuadrant.io/v1beta3/authconfigs: "), "{error}");
    assert!(!error.contains('\n'));
}

/// Adds a line under the cluster's `server:` line of a kubeconfig written by `write_kubeconfig`.
fn with_cluster_field(kubeconfig: &std::path::Path, field: &str) -> PathBuf {
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    let server_line = text.lines().find(|l| l.trim_start().starts_with("server:")).unwrap().to_owned();
    let path = kubeconfig.with_extension(format!("{}", field.len()));
    std::fs::write(&path, text.replace(&server_line, &format!("{server_line}\n    {field}"))).unwrap();
    path
}

#[tokio::test]
async fn token_review_over_tls_trusts_the_kubeconfig_ca_and_speaks_h2() {
    use base64::Engine as _;
    let pki = pki();
    let api = Api::start_with(Some(&pki)).await;
    let (token, _) = api.token("talker-api").await;
    let review = |kubeconfig: PathBuf| {
        let token = token.clone();
        async move {
        let access = ClusterAccess::from_kubeconfig_files(&[kubeconfig], None).unwrap();
        assert!(access.server().starts_with("https://"));
        RemoteReviewer::new(ApiClient::new(access).unwrap()).review(&token, &aud(&["talker-api"]), true).await.0
        }
    };

    // No CA configured (and the system bundle does not know ours): the handshake fails, and
    // that is an outage, not a bad token.
    let outcome = review(api.kubeconfig.clone()).await;
    assert!(matches!(&outcome, IdentityOutcome::Unavailable(reason) if reason.contains("certificate")), "{outcome:?}");
    assert_eq!(api.reviews(), 0);

    // certificate-authority-data.
    let ca_data = base64::engine::general_purpose::STANDARD.encode(&pki.ca);
    let outcome = review(with_cluster_field(&api.kubeconfig, &format!("certificate-authority-data: {ca_data}"))).await;
    assert!(matches!(&outcome, IdentityOutcome::Verified(status) if status["user"]["username"] == format!("system:serviceaccount:{NS}:api-consumer")), "{outcome:?}");
    assert_eq!(api.reviews(), 1);
    // ALPN chose h2.
    assert_eq!(api.h2.load(Ordering::SeqCst), 1);

    // certificate-authority (a file, relative to the kubeconfig).
    std::fs::write(api._dir.path().join("ca.crt"), &pki.ca).unwrap();
    let outcome = review(with_cluster_field(&api.kubeconfig, "certificate-authority: ca.crt")).await;
    assert!(matches!(outcome, IdentityOutcome::Verified(_)), "{outcome:?}");

    // insecure-skip-tls-verify.
    let outcome = review(with_cluster_field(&api.kubeconfig, "insecure-skip-tls-verify: true")).await;
    assert!(matches!(outcome, IdentityOutcome::Verified(_)), "{outcome:?}");
    assert_eq!(api.reviews(), 3);
}

/// An AuthConfig accepting API keys from Secrets labelled `group: friends` (in its namespace,
/// or in all of them).
fn api_key_config(name: &str, host: &str, all_namespaces: bool) -> Value {
    authconfig(
        name,
        json!({
            "hosts": [host],
            "authentication": {"friends": {
                "apiKey": {"selector": {"matchLabels": {"group": "friends"}}, "allNamespaces": all_namespaces},
                "credentials": {"authorizationHeader": {"prefix": "APIKEY"}},
            }},
            "response": {"success": {"headers": {"x-key-name": {"plain": {"selector": "auth.identity.metadata.name"}}}}},
        }),
    )
}

fn api_key_request<'a>(host: &'a str, key: &str) -> AuthRequest<'a> {
    AuthRequest::new("GET", host, "/hello").with_header("authorization", &format!("APIKEY {key}"))
}

/// Polls `probe` until its answer is `wanted`, for at most `bound`; returns that answer.
async fn within<T: std::fmt::Debug, F: std::future::Future<Output = T>>(
    bound: Duration,
    what: &str,
    mut probe: impl FnMut() -> F,
    wanted: impl Fn(&T) -> bool,
) -> T {
    let started = tokio::time::Instant::now();
    loop {
        let answer = probe().await;
        if wanted(&answer) {
            return answer;
        }
        assert!(started.elapsed() < bound, "{what}: not within {bound:?}: {answer:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn answers_within_a_second(authorizer: &Authorizer, request: &AuthRequest<'_>, want: u16) -> Decision {
    within(Duration::from_secs(1), &format!("{want}"), move || authorizer.check(request), |decision| code(decision) == want).await
}

#[tokio::test]
async fn api_key_secrets_are_listed_and_watched_and_revoked_within_a_second() {
    use tokenwarden_authz::remote::RemoteApiKeys;
    let api = Api::start().await;
    api.authority.create(&Resource::NAMESPACES, obj(json!({"metadata": {"name": "other"}}))).await.unwrap();
    let secret = |namespace: &str, name: &str, key: &str| {
        obj(json!({"metadata": {"name": name, "namespace": namespace, "labels": {"group": "friends"}}, "stringData": {"api_key": key}}))
    };
    api.authority.create(&Resource::SECRETS, secret(NS, "friend-1", "key-one")).await.unwrap();
    api.authority.create(&Resource::SECRETS, secret("other", "far-friend", "key-far")).await.unwrap();
    api.authority.create(&Resource::AUTH_CONFIGS, obj(api_key_config("keys", "keys.example.com", false))).await.unwrap();
    api.authority.create(&Resource::AUTH_CONFIGS, obj(api_key_config("all-keys", "all.example.com", true))).await.unwrap();

    let authorizer = Arc::new(Authorizer::new(Identities::with_backends(None, None)));
    let configs = RemoteAuthConfigs::start(api.client(), Arc::clone(&authorizer)).await.unwrap();
    // No source of Secrets yet: unavailable, not a misleading 401.
    assert_eq!(code(&authorizer.check(&api_key_request("keys.example.com", "key-one")).await), 503);

    // A credential the API server refuses cannot list Secrets: still 503.
    let refused = write_kubeconfig(api._dir.path(), &format!("http://{}", api.addr), "wrong-credential");
    let refused = ApiClient::new(ClusterAccess::from_kubeconfig_files(&[refused], None).unwrap()).unwrap();
    let refused = RemoteApiKeys::start(refused, Arc::clone(&authorizer), None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(code(&authorizer.check(&api_key_request("keys.example.com", "key-one")).await), 503);
    refused.abort();

    let keys = RemoteApiKeys::start(api.client(), Arc::clone(&authorizer), None);
    let allowed = answers_within_a_second(&authorizer, &api_key_request("keys.example.com", "key-one"), 200).await;
    let Decision::Allow { headers, .. } = &allowed else { panic!("{allowed:?}") };
    assert!(headers.iter().any(|(name, value)| name == "x-key-name" && value == "friend-1"), "{headers:?}");
    // Another namespace's key: only where `allNamespaces` is set.
    let far = authorizer.check(&api_key_request("keys.example.com", "key-far")).await;
    assert_eq!(code(&far), 401, "{far:?}");
    assert_eq!(code(&authorizer.check(&api_key_request("all.example.com", "key-far")).await), 200);
    assert_eq!(code(&authorizer.check(&api_key_request("all.example.com", "wrong")).await), 401);

    // A new Secret, written with base64 `data`, is accepted within a second.
    api.authority
        .create(
            &Resource::SECRETS,
            obj(json!({"metadata": {"name": "friend-2", "namespace": NS, "labels": {"group": "friends"}}, "data": {"api_key": "a2V5LXR3bw=="}})),
        )
        .await
        .unwrap();
    answers_within_a_second(&authorizer, &api_key_request("keys.example.com", "key-two"), 200).await;

    // Relabelled out of the selector, then deleted: refused within a second.
    let mut relabelled = api.authority.store().get(&Resource::SECRETS, NS, "friend-2").await.unwrap();
    relabelled.metadata_mut().insert("labels".into(), json!({"group": "strangers"}));
    api.authority.update(&Resource::SECRETS, relabelled).await.unwrap();
    answers_within_a_second(&authorizer, &api_key_request("keys.example.com", "key-two"), 401).await;
    api.authority.delete(&Resource::SECRETS, NS, "friend-1", &Preconditions::default()).await.unwrap();
    answers_within_a_second(&authorizer, &api_key_request("keys.example.com", "key-one"), 401).await;
    assert!(!keys.is_finished());
    keys.abort();
    configs.abort();
}

#[tokio::test]
async fn the_api_key_watch_survives_an_api_server_outage() {
    use tokenwarden_authz::remote::RemoteApiKeys;
    let mut api = Api::start().await;
    let secret = |name: &str, key: &str| obj(json!({"metadata": {"name": name, "namespace": NS, "labels": {"group": "friends"}}, "stringData": {"api_key": key}}));
    api.authority.create(&Resource::SECRETS, secret("before", "key-before")).await.unwrap();
    api.authority.create(&Resource::AUTH_CONFIGS, obj(api_key_config("keys", "keys.example.com", false))).await.unwrap();
    let authorizer = Arc::new(Authorizer::new(Identities::with_backends(None, None)));
    let _configs = RemoteAuthConfigs::start(api.client(), Arc::clone(&authorizer)).await.unwrap();
    let keys = RemoteApiKeys::start(api.client(), Arc::clone(&authorizer), None);
    answers_within_a_second(&authorizer, &api_key_request("keys.example.com", "key-before"), 200).await;

    // The watch breaks; what changes meanwhile is seen once the API server answers again. The
    // keys known before the outage keep working through it.
    api.stop().await;
    api.authority.delete(&Resource::SECRETS, NS, "before", &Preconditions::default()).await.unwrap();
    api.authority.create(&Resource::SECRETS, secret("during", "key-during")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(code(&authorizer.check(&api_key_request("keys.example.com", "key-before")).await), 200, "the watch should be broken");
    api.resume().await;
    // Within the follower's backoff (it doubles from 200 ms while the server is away).
    let during = api_key_request("keys.example.com", "key-during");
    within(Duration::from_secs(5), "re-listed", || authorizer.check(&during), |d| code(d) == 200).await;
    assert_eq!(code(&authorizer.check(&api_key_request("keys.example.com", "key-before")).await), 401);
    assert!(!keys.is_finished());
    keys.abort();
}

/// The status the AuthConfig `name` has on the API server.
async fn stored_status(api: &Api, name: &str) -> Value {
    let object = api.authority.store().get(&Resource::AUTH_CONFIGS, NS, name).await.unwrap();
    object.value().get("status").cloned().unwrap_or(Value::Null)
}

async fn status_within_a_second(api: &Api, name: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    within(Duration::from_secs(1), name, move || stored_status(api, name), wanted).await
}

#[tokio::test]
async fn authconfig_statuses_are_written_back_through_the_status_subresource() {
    let api = Api::start().await;
    api.authority.create(&Resource::AUTH_CONFIGS, obj(guide("first", "first.example.com"))).await.unwrap();
    let authorizer = Arc::new(Authorizer::new(Identities::with_backends(None, None)));
    let watcher = RemoteAuthConfigs::start(api.client(), Arc::clone(&authorizer)).await.unwrap();

    let ready = |status: &Value| status["summary"]["ready"] == true;
    let status = status_within_a_second(&api, "first", ready).await;
    assert_eq!(status["conditions"][0], json!({"type": "Available", "status": "True", "reason": "HostsLinked", "message": ""}));
    assert_eq!(status["summary"]["hostsReady"], json!(["first.example.com"]));

    // A younger AuthConfig claiming the same host is told why it is not ready.
    api.authority.create(&Resource::AUTH_CONFIGS, obj(guide("younger", "first.example.com"))).await.unwrap();
    let status = status_within_a_second(&api, "younger", |s| s["summary"]["ready"] == false).await;
    assert_eq!(status["conditions"][0]["reason"], "HostsNotLinked", "{status}");

    // Settled: our own writes come back as events and cause no further writes.
    let settled = api.authority.store().current_revision().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api.authority.store().current_revision().await.unwrap(), settled, "status writes did not settle");

    // Someone overwrites a status: the next change puts it right.
    let mut wrong = api.authority.store().get(&Resource::AUTH_CONFIGS, NS, "first").await.unwrap();
    wrong.0.insert("status".into(), json!({"summary": {"ready": false}}));
    api.authority.update_status(&Resource::AUTH_CONFIGS, wrong).await.unwrap();
    status_within_a_second(&api, "first", ready).await;

    // The older one goes: the younger gets the host.
    api.authority.delete(&Resource::AUTH_CONFIGS, NS, "first", &Preconditions::default()).await.unwrap();
    status_within_a_second(&api, "younger", ready).await;

    // Status writes refused (as RBAC without `authconfigs/status` would): never fatal, the
    // AuthConfig is enforced all the same, and the write is retried on the next change.
    api.refuse_status_writes.store(true, Ordering::SeqCst);
    api.authority.create(&Resource::AUTH_CONFIGS, obj(guide("refused", "refused.example.com"))).await.unwrap();
    eventually("enforced", Duration::from_secs(1), || authorizer.configs().lookup("refused.example.com").is_some()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(stored_status(&api, "refused").await, Value::Null);
    api.refuse_status_writes.store(false, Ordering::SeqCst);
    api.authority.create(&Resource::AUTH_CONFIGS, obj(guide("later", "later.example.com"))).await.unwrap();
    status_within_a_second(&api, "refused", ready).await;
    status_within_a_second(&api, "later", ready).await;
    assert!(!watcher.is_finished());
    watcher.abort();
}

#[tokio::test]
async fn secrets_are_listed_page_by_page() {
    use tokenwarden_authz::remote::RemoteApiKeys;
    let api = Api::start().await;
    // More than one page (500): the keys on every page are found.
    for i in 0..510 {
        let secret = json!({"metadata": {"name": format!("key-{i:03}"), "namespace": NS, "labels": {"group": "friends"}}, "stringData": {"api_key": format!("key-{i}")}});
        api.authority.create(&Resource::SECRETS, obj(secret)).await.unwrap();
    }
    api.authority.create(&Resource::AUTH_CONFIGS, obj(api_key_config("keys", "keys.example.com", false))).await.unwrap();
    let authorizer = Arc::new(Authorizer::new(Identities::with_backends(None, None)));
    let configs = RemoteAuthConfigs::start(api.client(), Arc::clone(&authorizer)).await.unwrap();
    let keys = RemoteApiKeys::start(api.client(), Arc::clone(&authorizer), None);
    let last = api_key_request("keys.example.com", "key-509");
    within(Duration::from_secs(5), "listed", || authorizer.check(&last), |d| code(d) == 200).await;
    assert_eq!(code(&authorizer.check(&api_key_request("keys.example.com", "key-0")).await), 200);
    keys.abort();
    configs.abort();
}
