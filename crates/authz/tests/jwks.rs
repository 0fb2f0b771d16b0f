//! `jwt` identity against a real JWKS server (axum on 127.0.0.1): OIDC discovery and direct
//! JWKS URLs, RS256 and ES256, every refusal, the unknown-`kid` refetch rate limit, refresh
//! after the TTL, outages as Unavailable, and one fetch per back-off from a failing issuer.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tokenwarden_authz::Authorizer;
use tokenwarden_authz::identity::{CacheResult, Identities, JwtVerifier};
use tokenwarden_authz::jwks::{JwksOptions, JwksVerifier};
use tokenwarden_core::Timestamp;
use tokenwarden_core::authconfig::{AuthConfig, AuthRequest, Decision, HostIndex, IdentityOutcome, JwtSource};
use tokenwarden_core::claims::Claims;
use tokenwarden_core::keys::{Algorithm, KeySet, SigningKey};
use tokenwarden_store::{ManualClock, keystore};
use tokio::net::TcpListener;

const NOW: i64 = 1_800_000_000;

struct Issuer {
    url: String,
    jwks: Mutex<Value>,
    jwks_requests: AtomicUsize,
    discovery_requests: AtomicUsize,
    failing: std::sync::atomic::AtomicBool,
    /// Held by a test to keep discovery and key fetches waiting.
    hold: tokio::sync::Mutex<()>,
}

async fn discovery(State(issuer): State<Arc<Issuer>>) -> Response {
    issuer.discovery_requests.fetch_add(1, Ordering::SeqCst);
    let _held = issuer.hold.lock().await;
    if issuer.failing.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    Json(json!({"issuer": issuer.url, "jwks_uri": format!("{}/keys", issuer.url)})).into_response()
}

async fn serve_keys(State(issuer): State<Arc<Issuer>>) -> Response {
    issuer.jwks_requests.fetch_add(1, Ordering::SeqCst);
    let _held = issuer.hold.lock().await;
    if issuer.failing.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    Json(issuer.jwks.lock().unwrap().clone()).into_response()
}

struct Env {
    issuer: Arc<Issuer>,
    keys: KeySet,
    clock: ManualClock,
    verifier: JwksVerifier,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

/// `GET https://api.example.com/` with `token` as the bearer credential.
fn bearer_request(token: &str) -> AuthRequest<'static> {
    AuthRequest {
        method: "GET".into(),
        host: "api.example.com".into(),
        path: "/".into(),
        headers: [("authorization".into(), format!("Bearer {token}").into())].into_iter().collect(),
        ..AuthRequest::default()
    }
}

impl Env {
    /// An authorizer verifying JWTs with a fresh JWKS verifier on this clock, serving one
    /// AuthConfig with `spec`.
    fn authorizer(&self, spec: serde_json::Value) -> Authorizer {
        let verifier = JwksVerifier::new(JwksOptions::default(), Arc::new(self.clock.clone())).unwrap();
        let authorizer = Authorizer::new(Identities::with_backends(None, Some(Arc::new(verifier) as Arc<dyn JwtVerifier>)));
        let config = AuthConfig::parse(&json!({
            "apiVersion": "authorino.kuadrant.io/v1beta3",
            "kind": "AuthConfig",
            "metadata": {"namespace": "ns", "name": "oidc"},
            "spec": spec,
        }))
        .unwrap();
        authorizer.set_configs(HostIndex::build([Arc::new(config)]));
        authorizer
    }

    async fn new() -> Self {
        let keys = KeySet::new(keystore::generate(Algorithm::Rs256).unwrap(), vec![keystore::generate(Algorithm::Es256).unwrap().verifying_key().clone()]);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let issuer = Arc::new(Issuer {
            url: format!("http://{addr}/realms/test"),
            jwks: Mutex::new(keys.jwks()),
            jwks_requests: AtomicUsize::new(0),
            discovery_requests: AtomicUsize::new(0),
            failing: std::sync::atomic::AtomicBool::new(false),
            hold: tokio::sync::Mutex::new(()),
        });
        let app = Router::new()
            .route("/realms/test/.well-known/openid-configuration", get(discovery))
            .route("/realms/test/keys", get(serve_keys))
            .with_state(Arc::clone(&issuer));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    rx.await.ok();
                })
                .await
                .unwrap();
        });
        let clock = ManualClock::new(Timestamp(NOW));
        let verifier = JwksVerifier::new(JwksOptions::default(), Arc::new(clock.clone())).unwrap();
        Self { issuer, keys, clock, verifier, addr, shutdown: Some(tx) }
    }

    fn source(&self) -> JwtSource {
        JwtSource::IssuerUrl(self.issuer.url.clone())
    }

    fn claims(&self) -> Claims {
        Claims {
            iss: self.issuer.url.clone(),
            sub: "alice".into(),
            aud: vec!["talker-api".into()],
            iat: Some(NOW - 10),
            nbf: Some(NOW - 10),
            exp: Some(NOW + 600),
            ..Claims::default()
        }
    }

    fn token(&self, claims: &Claims) -> String {
        tokenwarden_core::jwt::sign(self.keys.signing(), claims).unwrap()
    }

    fn requests(&self) -> (usize, usize) {
        (self.issuer.discovery_requests.load(Ordering::SeqCst), self.issuer.jwks_requests.load(Ordering::SeqCst))
    }

    async fn verify(&self, token: &str) -> (IdentityOutcome, CacheResult) {
        self.verifier.verify(&self.source(), token).await
    }
}

fn invalid(outcome: &IdentityOutcome) -> &str {
    match outcome {
        IdentityOutcome::Invalid(reason) => reason,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

#[tokio::test]
async fn discovered_keys_verify_rs256_and_es256_and_are_cached() {
    let env = Env::new().await;
    let token = env.token(&env.claims());
    let (outcome, cache) = env.verify(&token).await;
    let IdentityOutcome::Verified(claims) = outcome else { panic!("{outcome:?}") };
    assert_eq!(cache, CacheResult::Miss);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["iss"], env.issuer.url);
    assert_eq!(claims["aud"], json!(["talker-api"]));
    assert_eq!(env.requests(), (1, 1));

    // Cached keys: no more requests.
    let (again, cache) = env.verify(&token).await;
    assert!(matches!(again, IdentityOutcome::Verified(_)));
    assert_eq!(cache, CacheResult::Hit);

    // ES256 with the JWKS's P-256 key (a key the verifier has, signing its own algorithm).
    let ec_key = keystore::generate(Algorithm::Es256).unwrap();
    let set = KeySet::new(keystore::generate(Algorithm::Rs256).unwrap(), vec![ec_key.verifying_key().clone()]);
    env.issuer.jwks.lock().unwrap().clone_from(&set.jwks());
    env.clock.advance(301);
    let es = tokenwarden_core::jwt::sign(&ec_key, &env.claims()).unwrap();
    let (outcome, cache) = env.verify(&es).await;
    assert!(matches!(outcome, IdentityOutcome::Verified(_)), "{outcome:?}");
    // Refreshed after the TTL: discovery and keys fetched again.
    assert_eq!(cache, CacheResult::Miss);
    assert_eq!(env.requests(), (2, 2));
    // The old RS256 key is gone from the JWKS now.
    assert_eq!(invalid(&env.verify(&token).await.0), format!("no key with kid {:?}", env.keys.signing().kid()));

    // A direct JWKS URL: no discovery, no issuer check.
    let mut claims = env.claims();
    claims.iss = "https://anyone.example".into();
    let direct = JwtSource::JwksUrl(format!("{}/keys", env.issuer.url));
    let (outcome, _) = env.verifier.verify(&direct, &tokenwarden_core::jwt::sign(&ec_key, &claims).unwrap()).await;
    assert!(matches!(outcome, IdentityOutcome::Verified(_)), "{outcome:?}");
}

#[tokio::test]
async fn bad_tokens_are_refused() {
    let env = Env::new().await;
    let good = env.claims();

    let mut wrong_issuer = good.clone();
    wrong_issuer.iss = "https://evil.example".into();
    let reason = invalid(&env.verify(&env.token(&wrong_issuer)).await.0).to_owned();
    assert!(reason.contains("issued by \"https://evil.example\""), "{reason}");

    // Expired beyond the 60 s leeway; within it is fine.
    let mut expired = good.clone();
    expired.exp = Some(NOW - 61);
    assert_eq!(invalid(&env.verify(&env.token(&expired)).await.0), "token is expired");
    expired.exp = Some(NOW - 59);
    assert!(matches!(env.verify(&env.token(&expired)).await.0, IdentityOutcome::Verified(_)));
    // No `exp` at all (a legacy ServiceAccount token has none): never valid, as in Authorino.
    expired.exp = None;
    assert_eq!(invalid(&env.verify(&env.token(&expired)).await.0), "token is expired");
    let mut early = good.clone();
    early.nbf = Some(NOW + 61);
    assert_eq!(invalid(&env.verify(&env.token(&early)).await.0), "token is not valid yet");

    // Tampered claims keep the signature of the original ones.
    let token = env.token(&good);
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = json!("admin");
    let tampered = format!("{}.{}.{}", parts[0], b64(&claims), parts[2]);
    assert_eq!(invalid(&env.verify(&tampered).await.0), "invalid signature");
    let mut bad_sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    bad_sig[0] ^= 1;
    assert_eq!(invalid(&env.verify(&format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(bad_sig))).await.0), "invalid signature");

    // `alg: none` and HS256 (the RSA key's modulus as an HMAC secret) are never accepted.
    let kid = env.keys.signing().kid();
    let none = format!("{}.{}.", b64(&json!({"alg": "none", "kid": kid})), parts[1]);
    assert_eq!(invalid(&env.verify(&none).await.0), "unsupported signing algorithm \"none\"");
    let hs = format!("{}.{}.{}", b64(&json!({"alg": "HS256", "kid": kid})), parts[1], parts[2]);
    assert_eq!(invalid(&env.verify(&hs).await.0), "unsupported signing algorithm \"HS256\"");
    // ES256 claimed for the RSA key: the algorithm is the key's, not the token's.
    let confused = format!("{}.{}.{}", b64(&json!({"alg": "ES256", "kid": kid})), parts[1], parts[2]);
    assert_eq!(invalid(&env.verify(&confused).await.0), "invalid signature");
    assert!(invalid(&env.verify("not.a-token").await.0).starts_with("malformed token"));
    // None of these caused more than the first fetch.
    assert_eq!(env.requests(), (1, 1));
}

#[tokio::test]
async fn unknown_kid_refetches_at_most_once_per_ten_seconds() {
    let env = Env::new().await;
    assert!(matches!(env.verify(&env.token(&env.claims())).await.0, IdentityOutcome::Verified(_)));
    assert_eq!(env.requests(), (1, 1));

    // A key the issuer does not publish (yet).
    let rotated: SigningKey = keystore::generate(Algorithm::Rs256).unwrap();
    let token = tokenwarden_core::jwt::sign(&rotated, &env.claims()).unwrap();
    let (outcome, cache) = env.verify(&token).await;
    assert_eq!(invalid(&outcome), format!("no key with kid {:?}", rotated.kid()));
    assert_eq!(cache, CacheResult::Miss);
    // One refetch of the JWKS (the discovery document is kept).
    assert_eq!(env.requests(), (1, 2));
    // More unknown kids within 10 s: no request at all.
    for _ in 0..20 {
        let other = tokenwarden_core::jwt::sign(&keystore::generate(Algorithm::Es256).unwrap(), &env.claims()).unwrap();
        assert!(invalid(&env.verify(&other).await.0).starts_with("no key with kid"));
    }
    env.clock.advance(5);
    assert!(invalid(&env.verify(&token).await.0).starts_with("no key with kid"));
    assert_eq!(env.requests(), (1, 2));

    // The issuer rotates; after the interval, the new kid triggers a refetch and verifies.
    let set = KeySet::new(rotated, vec![env.keys.signing().verifying_key().clone()]);
    env.issuer.jwks.lock().unwrap().clone_from(&set.jwks());
    env.clock.advance(5);
    let (outcome, cache) = env.verify(&token).await;
    assert!(matches!(outcome, IdentityOutcome::Verified(_)), "{outcome:?}");
    assert_eq!(cache, CacheResult::Miss);
    assert_eq!(env.requests(), (1, 3));
}

#[tokio::test]
async fn unreachable_jwks_is_unavailable_and_old_keys_keep_working() {
    let mut env = Env::new().await;
    let token = env.token(&env.claims());

    // An issuer that fails: Unavailable (503), not Invalid.
    env.issuer.failing.store(true, Ordering::SeqCst);
    let (outcome, _) = env.verify(&token).await;
    let IdentityOutcome::Unavailable(reason) = outcome else { panic!("{outcome:?}") };
    assert!(reason.contains("HTTP 500"), "{reason}");
    env.issuer.failing.store(false, Ordering::SeqCst);
    // It is asked again once the back-off after the failure has passed.
    env.clock.advance(10);
    assert!(matches!(env.verify(&token).await.0, IdentityOutcome::Verified(_)));

    // Stale keys whose refresh fails keep verifying.
    env.shutdown.take().unwrap().send(()).unwrap();
    while tokio::net::TcpStream::connect(env.addr).await.is_ok() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.clock.advance(400);
    assert!(matches!(env.verify(&token).await.0, IdentityOutcome::Verified(_)));

    // A source never fetched, on a server that is gone: Unavailable; and through an
    // authorizer, 503 rather than 401.
    let gone = JwtSource::JwksUrl(format!("http://{}/realms/test/keys", env.addr));
    let (outcome, _) = env.verifier.verify(&gone, &token).await;
    assert!(matches!(&outcome, IdentityOutcome::Unavailable(reason) if reason.starts_with("cannot fetch JWKS: ")), "{outcome:?}");

    let authorizer = env.authorizer(json!({"hosts": ["api.example.com"], "authentication": {"keycloak": {"jwt": {"issuerUrl": env.issuer.url}}}}));
    let decision = authorizer.check(&bearer_request(&token)).await;
    assert!(matches!(decision, Decision::Deny { code: 503, .. }), "{decision:?}");
}

#[tokio::test]
async fn a_valid_token_is_allowed_through_an_authorizer() {
    let env = Env::new().await;
    let authorizer = env.authorizer(json!({
        "hosts": ["api.example.com"],
        "authentication": {"keycloak": {"jwt": {"issuerUrl": env.issuer.url}}},
        "response": {"success": {"headers": {"x-sub": {"plain": {"selector": "auth.identity.sub"}}}}},
    }));
    let request = bearer_request;
    match authorizer.check(&request(&env.token(&env.claims()))).await {
        Decision::Allow { headers, .. } => assert!(headers.contains(&("x-sub".to_owned(), "alice".to_owned())), "{headers:?}"),
        other => panic!("{other:?}"),
    }
    let mut expired = env.claims();
    expired.exp = Some(NOW - 3600);
    let decision = authorizer.check(&request(&env.token(&expired))).await;
    assert!(matches!(&decision, Decision::Deny { code: 401, message, .. } if message == "token is expired"), "{decision:?}");
}

#[tokio::test]
async fn a_fetch_in_flight_does_not_hold_up_tokens_whose_key_is_known() {
    let env = Arc::new(Env::new().await);
    let known = env.token(&env.claims());
    assert!(matches!(env.verify(&known).await.0, IdentityOutcome::Verified(_)));

    // An unknown kid starts a refetch that the JWKS server keeps waiting.
    let held = env.issuer.hold.lock().await;
    let stranger = KeySet::new(keystore::generate(Algorithm::Rs256).unwrap(), vec![]);
    let unknown = tokenwarden_core::jwt::sign(stranger.signing(), &env.claims()).unwrap();
    let waiting = {
        let env = Arc::clone(&env);
        tokio::spawn(async move { env.verify(&unknown).await })
    };
    while env.issuer.jwks_requests.load(Ordering::SeqCst) < 2 {
        tokio::task::yield_now().await;
    }
    // Meanwhile a token with a known kid verifies from the keys at hand (the guard only
    // catches a hang: before the fix this waited for the held fetch).
    let answer = tokio::time::timeout(Duration::from_secs(5), env.verify(&known)).await.expect("a known kid waited for the fetch in flight");
    assert!(matches!(answer.0, IdentityOutcome::Verified(_)));
    assert!(!waiting.is_finished());
    drop(held);
    assert!(invalid(&waiting.await.unwrap().0).contains("kid"));
}

/// `future`'s output if it is ready on its first poll, that is without waiting for anything.
fn at_once<F: std::future::Future>(future: F) -> F::Output {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut context) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("waited"),
    }
}

fn unavailable(outcome: &IdentityOutcome) -> &str {
    match outcome {
        IdentityOutcome::Unavailable(reason) => reason,
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_failing_issuer_is_asked_once_per_back_off() {
    let env = Arc::new(Env::new().await);
    let token = env.token(&env.claims());
    env.issuer.failing.store(true, Ordering::SeqCst);

    // Twenty verifications arrive while the first discovery request is held.
    let held = env.issuer.hold.lock().await;
    let verifications: Vec<_> = (0..20)
        .map(|_| {
            let (env, token) = (Arc::clone(&env), token.clone());
            tokio::spawn(async move { env.verify(&token).await })
        })
        .collect();
    while env.issuer.discovery_requests.load(Ordering::SeqCst) < 1 {
        tokio::task::yield_now().await;
    }
    drop(held);
    for verification in verifications {
        let reason = unavailable(&verification.await.unwrap().0).to_owned();
        assert!(reason.starts_with("cannot fetch JWKS: ") && reason.contains("HTTP 500"), "{reason}");
    }
    assert_eq!(env.requests(), (1, 0), "one fetch for all of them");

    // Right after, and until the back-off has passed: the same answer, no request.
    let back_off = i64::try_from(JwksOptions::default().unknown_kid_interval.as_secs()).unwrap();
    assert!(unavailable(&env.verify(&token).await.0).contains("HTTP 500"));
    env.clock.advance(back_off - 1);
    let (outcome, cache) = env.verify(&token).await;
    assert!(unavailable(&outcome).contains("HTTP 500"));
    assert_eq!(cache, CacheResult::Hit);
    assert_eq!(env.requests(), (1, 0));
    // A token with an unknown kid does not ask either.
    let stranger = tokenwarden_core::jwt::sign(&keystore::generate(Algorithm::Rs256).unwrap(), &env.claims()).unwrap();
    assert!(unavailable(&env.verify(&stranger).await.0).contains("HTTP 500"));
    assert_eq!(env.requests(), (1, 0));

    // After it, the issuer is asked again: still failing, then back.
    env.clock.advance(1);
    let (outcome, cache) = env.verify(&token).await;
    assert!(unavailable(&outcome).contains("HTTP 500"));
    assert_eq!(cache, CacheResult::Miss);
    assert_eq!(env.requests(), (2, 0));
    env.issuer.failing.store(false, Ordering::SeqCst);
    env.clock.advance(back_off);
    assert!(matches!(env.verify(&token).await.0, IdentityOutcome::Verified(_)));
    assert_eq!(env.requests(), (3, 1));
}

#[tokio::test]
async fn stale_keys_keep_verifying_while_one_caller_refreshes_them() {
    let env = Arc::new(Env::new().await);
    let token = env.token(&env.claims());
    assert!(matches!(env.verify(&token).await.0, IdentityOutcome::Verified(_)));
    env.clock.advance(301);

    // The first caller after the TTL refreshes; the issuer keeps it waiting, then fails.
    env.issuer.failing.store(true, Ordering::SeqCst);
    let held = env.issuer.hold.lock().await;
    let refreshing = {
        let (env, token) = (Arc::clone(&env), token.clone());
        tokio::spawn(async move { env.verify(&token).await })
    };
    while env.issuer.discovery_requests.load(Ordering::SeqCst) < 2 {
        tokio::task::yield_now().await;
    }
    // Meanwhile the same key verifies from the stale keys without waiting.
    let (outcome, cache) = at_once(env.verify(&token));
    assert!(matches!(outcome, IdentityOutcome::Verified(_)), "{outcome:?}");
    assert_eq!(cache, CacheResult::Hit);
    assert!(!refreshing.is_finished());
    drop(held);
    let (outcome, cache) = refreshing.await.unwrap();
    assert!(matches!(outcome, IdentityOutcome::Verified(_)), "a failed refresh keeps the keys: {outcome:?}");
    assert_eq!(cache, CacheResult::Miss);
    // The failure backs off: the next callers use the stale keys without asking.
    assert!(matches!(at_once(env.verify(&token)).0, IdentityOutcome::Verified(_)));
    assert_eq!(env.requests(), (2, 1));
}
