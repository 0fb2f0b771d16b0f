//! The binary's ext_authz gRPC listener, with envoy-types' client playing Envoy (Envoy itself
//! cannot run here): `grpc.health.v1` reports the service SERVING, and `Check` enforces an
//! AuthConfig applied with kubectl.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use std::collections::HashMap;

use common::{Server, free_port};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, check_response};

const AUTHCONFIG: &str = r#"{"apiVersion": "authorino.kuadrant.io/v1beta3", "kind": "AuthConfig",
 "metadata": {"name": "talker-api-protection"},
 "spec": {"hosts": ["talker-api.127.0.0.1.nip.io"],
          "authentication": {"authorized-service-accounts": {"kubernetesTokenReview": {"audiences": ["talker-api"]}}}}}"#;

fn check(token: Option<&str>) -> CheckRequest {
    let mut headers = HashMap::new();
    if let Some(token) = token {
        headers.insert("authorization".to_owned(), format!("Bearer {token}"));
    }
    let http = HttpRequest {
        method: "GET".into(),
        host: "talker-api.127.0.0.1.nip.io".into(),
        path: "/hello".into(),
        headers,
        ..HttpRequest::default()
    };
    CheckRequest { attributes: Some(AttributeContext { request: Some(Request { http: Some(http), ..Request::default() }), ..AttributeContext::default() }) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_checks_against_the_served_authorizer() {
    let grpc_port = free_port();
    let listen = format!("127.0.0.1:{grpc_port}");
    let server = tokio::task::spawn_blocking(move || Server::start_with(&["--authz-grpc-listen", &listen])).await.unwrap();
    let url = format!("http://127.0.0.1:{grpc_port}");

    let channel = tonic::transport::Endpoint::from_shared(url.clone()).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest { service: "envoy.service.auth.v3.Authorization".into() })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    let (server, token) = tokio::task::spawn_blocking(move || {
        server.kubectl_stdin_ok(&["apply", "-f", "-"], AUTHCONFIG);
        server.kubectl_ok(&["create", "serviceaccount", "api-consumer-1"]);
        let token = server.token("default", "api-consumer-1", &["--audience", "talker-api"]);
        (server, token)
    })
    .await
    .unwrap();

    let mut client = AuthorizationClient::new(channel);
    let mut allowed = false;
    for _ in 0..50 {
        let response = client.check(check(Some(&token))).await.unwrap().into_inner();
        if response.status.as_ref().is_some_and(|s| s.code == 0) {
            allowed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(allowed, "a valid token was not allowed within a second of kubectl apply");

    let denied = client.check(check(None)).await.unwrap().into_inner();
    assert_eq!(denied.status.as_ref().unwrap().code, 16);
    let Some(check_response::HttpResponse::DeniedResponse(denied)) = denied.http_response else { panic!("expected a denial") };
    assert_eq!(denied.status.unwrap().code, 401);
    drop(server);
}
