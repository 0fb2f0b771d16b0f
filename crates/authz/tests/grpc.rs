//! Envoy ext_authz over gRPC. Envoy itself cannot run here, so envoy-types' generated
//! `Authorization` client plays Envoy: it sends the `CheckRequest` Envoy would send and reads
//! the `CheckResponse` as Envoy would act on it.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse, check_response};
use serde_json::json;
use tokenwarden_core::keys::{Algorithm, KeySet};
use tokenwarden_core::token_request::{IssuerConfig, TokenRequestInput, TokenRequestSpec};
use tokenwarden_core::{Object, Resource, Timestamp};
use tokenwarden_store::memory::MemoryStore;
use tokenwarden_store::{Authority, ManualClock, Preconditions, keystore};
use tokenwarden_authz::grpc::ExtAuthz;
use tokenwarden_authz::identity::Identities;
use tokenwarden_authz::{Authorizer, source};

const HOST: &str = "talker-api.127.0.0.1.nip.io";

struct Setup {
    authority: Arc<Authority>,
    authorizer: Arc<Authorizer>,
    client: AuthorizationClient<tonic::transport::Channel>,
}

fn obj(value: serde_json::Value) -> Object {
    Object::from_value(value).unwrap()
}

async fn setup() -> Setup {
    let clock = ManualClock::new(Timestamp(1_800_000_000));
    let store = Arc::new(MemoryStore::new(Arc::new(clock.clone())));
    let keys = KeySet::new(keystore::generate(Algorithm::Es256).unwrap(), Vec::new());
    let authority = Authority::start(store, keys, IssuerConfig::new("https://tokenwarden.test"), Arc::new(clock), None).await.unwrap();
    authority.create(&Resource::NAMESPACES, obj(json!({"metadata": {"name": "ns"}}))).await.unwrap();
    for sa in ["api-consumer-1", "intruder"] {
        authority.create(&Resource::SERVICE_ACCOUNTS, obj(json!({"metadata": {"name": sa, "namespace": "ns"}}))).await.unwrap();
    }
    // The Authorino TokenReview guide's AuthConfig, plus a rule and a success header.
    authority
        .create(
            &Resource::AUTH_CONFIGS,
            obj(json!({
                "apiVersion": "authorino.kuadrant.io/v1beta3", "kind": "AuthConfig",
                "metadata": {"name": "talker-api-protection", "namespace": "ns"},
                "spec": {
                    "hosts": [HOST],
                    "authentication": {"authorized-service-accounts": {"kubernetesTokenReview": {"audiences": ["talker-api"]}}},
                    "authorization": {"no-intruders": {"patternMatching": {"patterns": [
                        {"selector": "auth.identity.user.username", "operator": "neq", "value": "system:serviceaccount:ns:intruder"}
                    ]}}},
                    "response": {"success": {
                        "headers": {"x-auth-user": {"plain": {"selector": "auth.identity.user.username"}}},
                        "dynamicMetadata": {"identity": {"json": {"properties": {"user": {"selector": "auth.identity.user.username"}}}}},
                    }},
                },
            })),
        )
        .await
        .unwrap();
    let authorizer = Arc::new(Authorizer::new(Identities::new(Some(Arc::clone(&authority)))));
    source::follow_authority(Arc::clone(&authority), Arc::clone(&authorizer)).await.unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let service = ExtAuthz::server(Arc::clone(&authorizer));
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    let client = AuthorizationClient::connect(format!("http://127.0.0.1:{port}")).await.unwrap();
    Setup { authority, authorizer, client }
}

async fn token(authority: &Arc<Authority>, sa: &str, audience: &str) -> String {
    let input = TokenRequestInput {
        namespace: "ns".into(),
        service_account: sa.into(),
        spec: TokenRequestSpec { audiences: vec![audience.into()], ..TokenRequestSpec::default() },
        ..TokenRequestInput::default()
    };
    authority.request_token(input).await.unwrap().token
}

/// The CheckRequest Envoy sends for `GET /hello` to `host`.
fn check_request(host: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let http = HttpRequest {
        id: "1".into(),
        method: "GET".into(),
        host: host.into(),
        path: "/hello?x=1".into(),
        scheme: "http".into(),
        protocol: "HTTP/1.1".into(),
        headers: headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<HashMap<_, _>>(),
        ..HttpRequest::default()
    };
    CheckRequest {
        attributes: Some(AttributeContext { request: Some(Request { http: Some(http), ..Request::default() }), ..AttributeContext::default() }),
    }
}

fn ok_header(response: &CheckResponse, name: &str) -> Option<String> {
    match response.http_response.as_ref()? {
        check_response::HttpResponse::OkResponse(ok) => {
            ok.headers.iter().filter_map(|h| h.header.as_ref()).find(|h| h.key == name).map(|h| h.value.clone())
        }
        _ => None,
    }
}

/// (HTTP status, headers) of a denial.
fn denial(response: &CheckResponse) -> (i32, Vec<(String, String)>, String) {
    match response.http_response.as_ref() {
        Some(check_response::HttpResponse::DeniedResponse(denied)) => (
            denied.status.as_ref().map_or(0, |s| s.code),
            denied.headers.iter().filter_map(|h| h.header.as_ref()).map(|h| (h.key.clone(), h.value.clone())).collect(),
            denied.body.clone(),
        ),
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[tokio::test]
async fn a_valid_token_is_allowed_with_the_success_headers_and_metadata() {
    let mut s = setup().await;
    let token = token(&s.authority, "api-consumer-1", "talker-api").await;
    let response = s.client.check(check_request(HOST, &[("authorization", &format!("Bearer {token}"))])).await.unwrap().into_inner();
    assert_eq!(response.status.as_ref().unwrap().code, 0);
    assert_eq!(ok_header(&response, "x-auth-user").as_deref(), Some("system:serviceaccount:ns:api-consumer-1"));
    let metadata = response.dynamic_metadata.as_ref().unwrap();
    assert!(metadata.fields.contains_key("identity"), "{metadata:?}");

    // Headers may also come in `header_map` (Envoy's encode_raw_headers).
    let mut raw = check_request(HOST, &[]);
    if let Some(http) = raw.attributes.as_mut().and_then(|a| a.request.as_mut()).and_then(|r| r.http.as_mut()) {
        http.header_map = Some(HeaderMap {
            headers: vec![HeaderValue { key: "authorization".into(), raw_value: format!("Bearer {token}").into_bytes(), ..HeaderValue::default() }],
        });
    }
    let response = s.client.check(raw).await.unwrap().into_inner();
    assert_eq!(response.status.as_ref().unwrap().code, 0);
}

#[tokio::test]
async fn denials_carry_authorinos_codes_and_headers() {
    let mut s = setup().await;

    // No credential: 401, UNAUTHENTICATED, the challenge and the reason.
    let response = s.client.check(check_request(HOST, &[])).await.unwrap().into_inner();
    assert_eq!(response.status.as_ref().unwrap().code, 16);
    let (code, headers, _) = denial(&response);
    assert_eq!(code, 401);
    assert!(headers.contains(&("www-authenticate".into(), r#"Bearer realm="authorized-service-accounts""#.into())), "{headers:?}");
    assert!(headers.contains(&("x-ext-auth-reason".into(), "credential not found".into())), "{headers:?}");

    // A token for another audience: 401 not authenticated.
    let wrong = token(&s.authority, "api-consumer-1", "other-api").await;
    let response = s.client.check(check_request(HOST, &[("authorization", &format!("Bearer {wrong}"))])).await.unwrap().into_inner();
    let (code, headers, _) = denial(&response);
    assert_eq!(code, 401);
    assert!(headers.contains(&("x-ext-auth-reason".into(), "not authenticated".into())), "{headers:?}");

    // Authenticated but refused by the rules: 403, PERMISSION_DENIED.
    let intruder = token(&s.authority, "intruder", "talker-api").await;
    let response = s.client.check(check_request(HOST, &[("authorization", &format!("Bearer {intruder}"))])).await.unwrap().into_inner();
    assert_eq!(response.status.as_ref().unwrap().code, 7);
    let (code, headers, _) = denial(&response);
    assert_eq!(code, 403);
    assert!(headers.contains(&("x-ext-auth-reason".into(), "Unauthorized".into())), "{headers:?}");

    // An unknown host: 404, NOT_FOUND, Service not found.
    let response = s.client.check(check_request("other.example", &[])).await.unwrap().into_inner();
    assert_eq!(response.status.as_ref().unwrap().code, 5);
    let (code, headers, _) = denial(&response);
    assert_eq!(code, 404);
    assert!(headers.contains(&("x-ext-auth-reason".into(), "Service not found".into())), "{headers:?}");

    // No HTTP attributes at all: INVALID_ARGUMENT, 400.
    let response = s.client.check(CheckRequest::default()).await.unwrap().into_inner();
    assert_eq!(response.status.as_ref().unwrap().code, 3);
    assert_eq!(denial(&response).0, 400);

    let metrics = s.authorizer.metrics().encode();
    for status in ["UNAUTHENTICATED", "PERMISSION_DENIED", "NOT_FOUND"] {
        assert!(metrics.contains(&format!(r#"auth_server_response_status_total{{status="{status}"}}"#)), "{metrics}");
    }
    assert!(metrics.contains(r#"auth_server_authconfig_total{namespace="ns",authconfig="talker-api-protection"}"#), "{metrics}");
}

#[tokio::test]
async fn the_local_reviewer_builds_the_tokenreview_status_only_when_it_is_read() {
    use tokenwarden_authz::identity::{CacheResult, LocalReviewer, TokenReviewer};
    use tokenwarden_core::authconfig::IdentityOutcome;
    let s = setup().await;
    let token = token(&s.authority, "api-consumer-1", "talker-api").await;
    let reviewer = LocalReviewer(Arc::clone(&s.authority));
    let audiences = ["talker-api".to_owned()];
    let (outcome, cache) = reviewer.review(&token, &audiences, false).await;
    assert_eq!((outcome, cache), (IdentityOutcome::Verified(serde_json::Value::Null), CacheResult::Miss));
    let (IdentityOutcome::Verified(status), CacheResult::Hit) = reviewer.review(&token, &audiences, true).await else {
        panic!("the token was cached")
    };
    assert_eq!(status["authenticated"], true);
    assert_eq!(status["user"]["username"], "system:serviceaccount:ns:api-consumer-1");
    assert_eq!(status["audiences"], json!(["talker-api"]));
    assert_eq!(reviewer.review(&token, &audiences, false).await, (IdentityOutcome::Verified(serde_json::Value::Null), CacheResult::Hit));
    // refused either way
    let (wrong, _) = reviewer.review(&token, &["other-api".to_owned()], false).await;
    assert_eq!(wrong, IdentityOutcome::Invalid("not authenticated".into()));
}

#[tokio::test]
async fn the_local_reviewer_checks_a_bad_signature_once_then_refuses_it_from_its_cache() {
    use tokenwarden_authz::identity::{CacheResult, LocalReviewer, TokenReviewer};
    use tokenwarden_core::authconfig::IdentityOutcome;
    let s = setup().await;
    let token = token(&s.authority, "api-consumer-1", "talker-api").await;
    let reviewer = LocalReviewer(Arc::clone(&s.authority));
    let audiences = ["talker-api".to_owned()];
    let forged = format!("{}{}", &token[..token.len() - 4], if token.ends_with("AAAA") { "BBBB" } else { "AAAA" });
    let refused = (IdentityOutcome::Invalid("not authenticated".into()), CacheResult::Miss);
    assert_eq!(reviewer.review(&forged, &audiences, false).await, refused);
    assert_eq!(reviewer.review(&forged, &audiences, false).await, (refused.0, CacheResult::Hit));
}

#[tokio::test]
async fn a_deleted_service_account_is_denied_within_a_second_though_its_token_was_cached() {
    let mut s = setup().await;
    let token = token(&s.authority, "api-consumer-1", "talker-api").await;
    let request = || check_request(HOST, &[("authorization", &format!("Bearer {token}"))]);
    for _ in 0..3 {
        assert_eq!(s.client.check(request()).await.unwrap().into_inner().status.unwrap().code, 0);
    }
    assert!(s.authorizer.metrics().encode().contains(r#"tokenwarden_identity_cache_total{result="hit"}"#));

    s.authority.delete(&Resource::SERVICE_ACCOUNTS, "ns", "api-consumer-1", &Preconditions::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        let response = s.client.check(request()).await.unwrap().into_inner();
        if response.status.as_ref().unwrap().code == 16 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the deleted ServiceAccount's token was still allowed after 1 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn authconfigs_take_effect_as_they_are_written() {
    let mut s = setup().await;
    let token = token(&s.authority, "api-consumer-1", "talker-api").await;
    let new_host = "new-api.example";
    assert_eq!(s.client.check(check_request(new_host, &[])).await.unwrap().into_inner().status.unwrap().code, 5);
    s.authority
        .create(
            &Resource::AUTH_CONFIGS,
            obj(json!({"metadata": {"name": "new", "namespace": "ns"},
                       "spec": {"hosts": [new_host], "authentication": {"sa": {"kubernetesTokenReview": {"audiences": ["talker-api"]}}}}})),
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        let response = s.client.check(check_request(new_host, &[("authorization", &format!("Bearer {token}"))])).await.unwrap().into_inner();
        if response.status.as_ref().unwrap().code == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the new AuthConfig was not in effect after 1 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Its status says the host is linked.
    let stored = s.authority.store().get(&Resource::AUTH_CONFIGS, "ns", "new").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut stored = stored;
    while stored.value().get("status").is_none() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        stored = s.authority.store().get(&Resource::AUTH_CONFIGS, "ns", "new").await.unwrap();
    }
    assert_eq!(stored.value()["status"]["summary"]["ready"], true, "{:?}", stored.value().get("status"));
    assert_eq!(stored.value()["status"]["summary"]["numHostsReady"], "1/1");
}

#[tokio::test]
async fn a_source_skipped_by_its_when_is_denied_with_an_empty_object_as_reason() {
    // Authorino: no identity source answered, so the reason is `{}`, and the header is sent
    let mut s = setup().await;
    let host = "posts-only.example";
    s.authority
        .create(
            &Resource::AUTH_CONFIGS,
            obj(json!({"metadata": {"name": "posts-only", "namespace": "ns"},
                       "spec": {"hosts": [host], "authentication": {"sa": {
                           "when": [{"selector": "request.method", "operator": "eq", "value": "POST"}],
                           "kubernetesTokenReview": {"audiences": ["talker-api"]}}}}})),
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    let response = loop {
        let response = s.client.check(check_request(host, &[])).await.unwrap().into_inner();
        if response.status.as_ref().unwrap().code != 5 {
            break response;
        }
        assert!(tokio::time::Instant::now() < deadline, "the new AuthConfig was not in effect after 1 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(response.status.as_ref().unwrap().code, 16);
    let (code, headers, _) = denial(&response);
    assert_eq!(code, 401);
    assert_eq!(headers, [("www-authenticate".to_owned(), r#"Bearer realm="sa""#.to_owned()), ("x-ext-auth-reason".to_owned(), "{}".to_owned())]);
}
