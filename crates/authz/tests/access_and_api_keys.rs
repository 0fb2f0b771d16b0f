//! `kubernetesSubjectAccessReview` through a remote API server and through the authority's own
//! RBAC policy, and `apiKey` identities from labelled Secrets.
//!
//! No real kube-apiserver runs here, so the remote SubjectAccessReview endpoint is a test
//! double: an HTTP server that records each review and answers as kube-apiserver's authorizer
//! would.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::routing::post;
use serde_json::{Value, json};
use tokenwarden_authz::access::{LocalAccessReviewer, RemoteAccessReviewer, SUBJECT_ACCESS_REVIEW_PATH};
use tokenwarden_authz::identity::Identities;
use tokenwarden_authz::kubeconfig::ClusterAccess;
use tokenwarden_authz::remote::ApiClient;
use tokenwarden_authz::{Authorizer, source};
use tokenwarden_core::authconfig::AuthRequest;
use tokenwarden_core::keys::{Algorithm, KeySet};
use tokenwarden_core::token_request::{IssuerConfig, TokenRequestInput, TokenRequestSpec};
use tokenwarden_core::{Object, Resource, Timestamp};
use tokenwarden_store::memory::MemoryStore;
use tokenwarden_store::{Authority, ManualClock, keystore};

fn obj(value: Value) -> Object {
    Object::from_value(value).unwrap()
}

async fn authority() -> Arc<Authority> {
    let clock = ManualClock::new(Timestamp(1_800_000_000));
    let store = Arc::new(MemoryStore::new(Arc::new(clock.clone())));
    let keys = KeySet::new(keystore::generate(Algorithm::Es256).unwrap(), Vec::new());
    let authority = Authority::start(store, keys, IssuerConfig::new("https://tokenwarden.test"), Arc::new(clock), None).await.unwrap();
    authority.create(&Resource::NAMESPACES, obj(json!({"metadata": {"name": "ns"}}))).await.unwrap();
    authority
}

async fn token(authority: &Arc<Authority>, sa: &str) -> String {
    authority.create(&Resource::SERVICE_ACCOUNTS, obj(json!({"metadata": {"name": sa, "namespace": "ns"}}))).await.unwrap();
    let input = TokenRequestInput {
        namespace: "ns".into(),
        service_account: sa.into(),
        spec: TokenRequestSpec { audiences: vec!["talker-api".into()], ..TokenRequestSpec::default() },
        ..TokenRequestInput::default()
    };
    authority.request_token(input).await.unwrap().token
}

fn request<'a>(host: &'a str, authorization: &str) -> AuthRequest<'a> {
    AuthRequest::new("GET", host, "/hello").with_header("authorization", authorization)
}

/// A SubjectAccessReview endpoint that allows only `allowed_user` and records every review.
async fn access_review_double(allowed_user: &'static str, fail: bool) -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&seen);
    let app = axum::Router::new().route(
        SUBJECT_ACCESS_REVIEW_PATH,
        post(move |Json(review): Json<Value>| {
            let recorded = Arc::clone(&recorded);
            async move {
                recorded.lock().unwrap().push(review.clone());
                if fail {
                    return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, Json(json!({})));
                }
                let allowed = review["spec"]["user"] == allowed_user;
                let reason = if allowed { "" } else { "no RBAC policy matched" };
                (axum::http::StatusCode::CREATED, Json(json!({"status": {"allowed": allowed, "reason": reason}})))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

/// An AuthConfig for `talker-api` that lets a ServiceAccount token `get` `talkers` in `ns` if a
/// SubjectAccessReview allows it.
fn rbac_config() -> Object {
    obj(json!({"metadata": {"name": "rbac", "namespace": "ns"}, "spec": {
        "hosts": ["talker-api"],
        "authentication": {"sa": {"kubernetesTokenReview": {"audiences": ["talker-api"]}}},
        "authorization": {"k8s-rbac": {"kubernetesSubjectAccessReview": {
            "user": {"selector": "auth.identity.user.username"},
            "resourceAttributes": {"namespace": {"value": "ns"}, "resource": {"value": "talkers"}, "verb": {"value": "get"}},
        }}},
    }}))
}

#[tokio::test]
async fn subject_access_reviews_decide_and_an_unanswered_review_is_503() {
    let authority = authority().await;
    authority.create(&Resource::AUTH_CONFIGS, rbac_config()).await.unwrap();
    let allowed = token(&authority, "reader").await;
    let denied = token(&authority, "stranger").await;

    let (url, seen) = access_review_double("system:serviceaccount:ns:reader", false).await;
    let api = ApiClient::new(ClusterAccess::new(&url, Some("authorizer-credential")).unwrap()).unwrap();
    let authorizer =
        Arc::new(Authorizer::new(Identities::new(Some(Arc::clone(&authority)))).with_access_reviewer(Arc::new(RemoteAccessReviewer::new(api))));
    source::follow_authority(Arc::clone(&authority), Arc::clone(&authorizer)).await.unwrap();

    assert!(authorizer.check(&request("talker-api", &format!("Bearer {allowed}"))).await.is_allowed());
    let refused = authorizer.check(&request("talker-api", &format!("Bearer {denied}"))).await;
    assert_eq!(refused.code(), 403);
    assert_eq!(refused.header("x-ext-auth-reason"), Some("not authorized: no RBAC policy matched"));
    let reviews = seen.lock().unwrap().clone();
    assert_eq!(reviews.len(), 2);
    assert_eq!(reviews[0]["kind"], "SubjectAccessReview");
    assert_eq!(reviews[0]["spec"]["resourceAttributes"], json!({"namespace": "ns", "group": "", "resource": "talkers", "name": "", "subresource": "", "verb": "get"}));

    // The reviewer fails: 503, never an allow.
    let (url, _) = access_review_double("system:serviceaccount:ns:reader", true).await;
    let api = ApiClient::new(ClusterAccess::new(&url, Some("authorizer-credential")).unwrap()).unwrap();
    let failing =
        Arc::new(Authorizer::new(Identities::new(Some(Arc::clone(&authority)))).with_access_reviewer(Arc::new(RemoteAccessReviewer::new(api))));
    source::follow_authority(Arc::clone(&authority), Arc::clone(&failing)).await.unwrap();
    assert_eq!(failing.check(&request("talker-api", &format!("Bearer {allowed}"))).await.code(), 503);
}

#[tokio::test]
async fn a_local_review_denied_for_a_missing_role_says_so_as_kube_would() {
    let authority = authority().await;
    authority.create(&Resource::AUTH_CONFIGS, rbac_config()).await.unwrap();
    let caller = token(&authority, "caller").await;
    let authorizer =
        Arc::new(Authorizer::new(Identities::new(Some(Arc::clone(&authority)))).with_access_reviewer(Arc::new(LocalAccessReviewer(Arc::clone(&authority)))));
    source::follow_authority(Arc::clone(&authority), Arc::clone(&authorizer)).await.unwrap();

    let refused = authorizer.check(&request("talker-api", &format!("Bearer {caller}"))).await;
    assert_eq!((refused.code(), refused.header("x-ext-auth-reason")), (403, Some("not authorized: unknown reason")), "no binding: kube gives no reason");
    let binding = json!({"metadata": {"name": "talk", "namespace": "ns"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "talker"},
                         "subjects": [{"kind": "ServiceAccount", "name": "caller", "namespace": "ns"}]});
    authority.create(&Resource::ROLE_BINDINGS, obj(binding)).await.unwrap();
    let refused = authorizer.check(&request("talker-api", &format!("Bearer {caller}"))).await;
    assert_eq!(refused.header("x-ext-auth-reason"), Some(r#"not authorized: RBAC: role.rbac.authorization.k8s.io "talker" not found"#));
    let role = json!({"metadata": {"name": "talker", "namespace": "ns"}, "rules": [{"apiGroups": [""], "resources": ["talkers"], "verbs": ["get"]}]});
    authority.create(&Resource::ROLES, obj(role)).await.unwrap();
    assert!(authorizer.check(&request("talker-api", &format!("Bearer {caller}"))).await.is_allowed());
}

#[tokio::test]
async fn api_keys_come_from_labelled_secrets_in_the_authconfigs_namespace() {
    let authority = authority().await;
    authority.create(&Resource::NAMESPACES, obj(json!({"metadata": {"name": "other"}}))).await.unwrap();
    // As the Authorino guide creates them: `stringData`, through kubectl apply.
    let secret = |namespace: &str, name: &str, key: &str| {
        obj(json!({"metadata": {"name": name, "namespace": namespace, "labels": {"group": "friends"},
                                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": format!("{{\"stringData\":{{\"api_key\":\"{key}\"}}}}")}},
                   "stringData": {"api_key": key}}))
    };
    authority.create(&Resource::SECRETS, secret("ns", "friend-1", "ndyBzreUzF4zqDQsqSPMHkRhriEOtcRx")).await.unwrap();
    authority.create(&Resource::SECRETS, secret("other", "elsewhere", "key-in-another-namespace")).await.unwrap();
    authority
        .create(
            &Resource::AUTH_CONFIGS,
            obj(json!({"metadata": {"name": "keys", "namespace": "ns"}, "spec": {
                "hosts": ["talker-api"],
                "authentication": {"friends": {
                    "apiKey": {"selector": {"matchLabels": {"group": "friends"}}},
                    "credentials": {"authorizationHeader": {"prefix": "APIKEY"}},
                }},
                "response": {"success": {"headers": {
                    "x-key-name": {"plain": {"selector": "auth.identity.metadata.name"}},
                    "x-identity": {"json": {"properties": {"whole": {"selector": "auth.identity"}}}},
                }}},
            }})),
        )
        .await
        .unwrap();
    let authorizer = Arc::new(Authorizer::new(Identities::new(Some(Arc::clone(&authority)))));
    source::follow_authority(Arc::clone(&authority), Arc::clone(&authorizer)).await.unwrap();

    let allowed = authorizer.check(&request("talker-api", "APIKEY ndyBzreUzF4zqDQsqSPMHkRhriEOtcRx")).await;
    assert!(allowed.is_allowed(), "{allowed:?}");
    assert_eq!(allowed.header("x-key-name"), Some("friend-1"));
    let identity = allowed.header("x-identity").unwrap();
    assert!(!identity.contains("ndyBzreUzF4zqDQsqSPMHkRhriEOtcRx"), "the key leaked into the identity: {identity}");

    for wrong in ["APIKEY wrong", "APIKEY key-in-another-namespace"] {
        let denied = authorizer.check(&request("talker-api", wrong)).await;
        assert_eq!(denied.code(), 401, "{wrong}");
        assert_eq!(denied.header("x-ext-auth-reason"), Some("the API Key provided is invalid"));
        assert_eq!(denied.header("www-authenticate"), Some(r#"APIKEY realm="friends""#));
    }
}

#[tokio::test]
async fn api_keys_without_a_source_of_secrets_are_unavailable_not_invalid() {
    let authority = authority().await;
    authority
        .create(
            &Resource::AUTH_CONFIGS,
            obj(json!({"metadata": {"name": "keys", "namespace": "ns"}, "spec": {
                "hosts": ["talker-api"],
                "authentication": {"friends": {"apiKey": {"selector": {"matchLabels": {"group": "friends"}}}}},
            }})),
        )
        .await
        .unwrap();
    // As in `tokenwarden authorize --no-api-server`: AuthConfigs known, but nothing feeds
    // API-key Secrets.
    let authorizer = Authorizer::new(Identities::new(None));
    let parsed = tokenwarden_core::authconfig::AuthConfig::parse(
        &Value::Object(authority.store().get(&Resource::AUTH_CONFIGS, "ns", "keys").await.unwrap().value().clone()),
    )
    .unwrap();
    authorizer.set_configs(tokenwarden_core::authconfig::HostIndex::build([Arc::new(parsed)]));
    assert_eq!(authorizer.check(&request("talker-api", "Bearer some-key")).await.code(), 503);
}

#[tokio::test]
async fn an_oversized_answer_from_the_api_server_is_unavailable_not_read_whole() {
    use tokenwarden_authz::access::AccessReviewer as _;
    let app = axum::Router::new().route(SUBJECT_ACCESS_REVIEW_PATH, post(|| async { "x".repeat(4 * 1024 * 1024) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let api = ApiClient::new(ClusterAccess::new(&url, Some("credential")).unwrap()).unwrap();
    let review = tokenwarden_core::authconfig::SubjectAccessReviewRequest {
        authconfig_namespace: "ns".into(),
        authconfig_name: "a".into(),
        policy: "p".into(),
        user: "u".into(),
        groups: vec![],
        attributes: tokenwarden_core::authconfig::AccessAttributes::NonResource { path: "/".into(), verb: "get".into() },
    };
    match RemoteAccessReviewer::new(api).review(&review).await {
        tokenwarden_core::authconfig::ReviewOutcome::Unavailable(reason) => assert!(reason.contains("reading the response"), "{reason}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}
