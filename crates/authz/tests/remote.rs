//! The remote backends against a real tokenwarden API server served over HTTP in-process:
//! TokenReview (verified, invalid, cached, coalesced, outages as 503) and AuthConfigs watched.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// The Authorino TokenReview guide's AuthConfig for `host`.
fn guide(name: &str, host: &str) -> Value {
    json!({
        "apiVersion": "authorino.kuadrant.io/v1beta3",
        "kind": "AuthConfig",
        "metadata": {"namespace": NS, "name": name},
        "spec": {
            "hosts": [host],
            "authentication": {"authorized-service-accounts": {"kubernetesTokenReview": {"audiences": ["talker-api"]}}},
        },
    })
}

struct Api {
    addr: SocketAddr,
    authority: Arc<Authority>,
    reviews: Arc<AtomicUsize>,
    /// Requests that arrived over HTTP/2.
    h2: Arc<AtomicUsize>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

async fn serve(listener: TcpListener, app: Router) -> tokio::sync::oneshot::Sender<()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                rx.await.ok();
            })
            .await
            .unwrap();
    });
    tx
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
        let (counter, h2_counter) = (Arc::clone(&reviews), Arc::clone(&h2));
        let app = router(Arc::new(state)).layer(axum::middleware::from_fn(move |request: Request, next: Next| {
            let (counter, h2_counter) = (Arc::clone(&counter), Arc::clone(&h2_counter));
            async move {
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
            None => (serve(listener, app).await, write_kubeconfig(dir.path(), &format!("http://{addr}"), ADMIN)),
            Some(pki) => {
                let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
                let config = axum_server::tls_rustls::RustlsConfig::from_pem(pki.cert.clone().into_bytes(), pki.key.clone().into_bytes()).await.unwrap();
                let handle = axum_server::Handle::new();
                let server = axum_server::tls_rustls::from_tcp_rustls(listener.into_std().unwrap(), config).unwrap().handle(handle.clone());
                tokio::spawn(async move { server.serve(app.into_make_service()).await.unwrap() });
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                tokio::spawn(async move {
                    rx.await.ok();
                    handle.shutdown();
                });
                (tx, write_kubeconfig(dir.path(), &format!("https://{addr}"), ADMIN))
            }
        };
        Self { addr, authority, reviews, h2, shutdown: Some(shutdown), _dir: dir, kubeconfig }
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

    let (outcome, cache) = reviewer.review(&token, &aud(&["talker-api"])).await;
    let IdentityOutcome::Verified(status) = outcome else { panic!("{outcome:?}") };
    assert_eq!(cache, CacheResult::Miss);
    assert_eq!(status["authenticated"], true);
    assert_eq!(status["user"]["username"], format!("system:serviceaccount:{NS}:api-consumer"));
    assert!(status["user"]["groups"].as_array().unwrap().contains(&json!("system:serviceaccounts")));
    assert_eq!(status["audiences"], json!(["talker-api"]));
    assert_eq!(api.reviews(), 1);

    // The second call is answered from the cache: no request reaches the API server.
    let (again, cache) = reviewer.review(&token, &aud(&["talker-api"])).await;
    assert_eq!(again, IdentityOutcome::Verified(status.clone()));
    assert_eq!(cache, CacheResult::Hit);
    assert_eq!(api.reviews(), 1);

    // Wrong audience: not authenticated (a 401 in the authorizer), also cached.
    let (wrong, cache) = reviewer.review(&token, &aud(&["other-api"])).await;
    assert_eq!((wrong, cache), (IdentityOutcome::Invalid("not authenticated".into()), CacheResult::Miss));
    let (wrong, cache) = reviewer.review(&token, &aud(&["other-api"])).await;
    assert_eq!((wrong, cache), (IdentityOutcome::Invalid("not authenticated".into()), CacheResult::Hit));
    assert_eq!(api.reviews(), 2);
    let (garbage, _) = reviewer.review("not-a-token", &aud(&["talker-api"])).await;
    assert_eq!(garbage, IdentityOutcome::Invalid("not authenticated".into()));

    // Concurrent misses on one key are coalesced into one TokenReview.
    let before = api.reviews();
    let reviewer = Arc::new(reviewer);
    let audiences = aud(&["talker-api", "second"]);
    let calls: Vec<_> = (0..32)
        .map(|_| {
            let (reviewer, token, audiences) = (Arc::clone(&reviewer), token.clone(), audiences.clone());
            tokio::spawn(async move { reviewer.review(&token, &audiences).await })
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
    assert_eq!(reviewer.review(&token, &audiences).await.1, CacheResult::Miss);
    assert_eq!(reviewer.review(&token, &wrong).await.1, CacheResult::Miss);
    assert_eq!(reviewer.review(&token, &audiences).await.1, CacheResult::Hit);
    assert_eq!(reviewer.review(&token, &wrong).await.1, CacheResult::Hit);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(reviewer.review(&token, &audiences).await.1, CacheResult::Miss);
    assert_eq!(reviewer.review(&token, &wrong).await.1, CacheResult::Miss);
    assert_eq!(api.reviews(), 4);
}

fn check_request(token: &str) -> AuthRequest {
    AuthRequest {
        id: "1".into(),
        method: "GET".into(),
        scheme: "http".into(),
        host: HOST.into(),
        path: "/hello".into(),
        protocol: "HTTP/1.1".into(),
        headers: [("authorization".to_owned(), format!("Bearer {token}"))].into_iter().collect(),
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
    let (outcome, cache) = reviewer.review(&other, &aud(&["talker-api"])).await;
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
    let (outcome, _) = reviewer.review(&token, &aud(&["talker-api"])).await;
    let IdentityOutcome::Unavailable(reason) = outcome else { panic!("{outcome:?}") };
    assert!(reason.contains("HTTP 401"), "{reason}");

    for status in [StatusCode::TOO_MANY_REQUESTS, StatusCode::INTERNAL_SERVER_ERROR, StatusCode::FORBIDDEN] {
        let app = Router::new().route(TOKEN_REVIEW_PATH, post(move || async move { (status, r#"{"kind":"Status","message":"go away"}"#) }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _stop = serve(listener, app).await;
        let reviewer = RemoteReviewer::new(ApiClient::new(ClusterAccess::new(&format!("http://{addr}"), Some("t")).unwrap()).unwrap());
        let (outcome, _) = reviewer.review(&token, &aud(&["talker-api"])).await;
        let IdentityOutcome::Unavailable(reason) = outcome else { panic!("{status}: {outcome:?}") };
        assert!(reason.contains(&format!("HTTP {}", status.as_u16())) && reason.contains("go away"), "{reason}");
        // Not cached: the next call asks again.
        assert_eq!(reviewer.review(&token, &aud(&["talker-api"])).await.1, CacheResult::Miss);
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
    let (outcome, _) = reviewer.review(&token, &aud(&["talker-api"])).await;
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

    // Changed hosts.
    let mut moved = second.clone();
    moved.0.get_mut("spec").unwrap()["hosts"] = json!(["moved.example.com"]);
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
        RemoteReviewer::new(ApiClient::new(access).unwrap()).review(&token, &aud(&["talker-api"])).await.0
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
