//! A router over an in-memory authority, and requests as kubectl and the clients send them.

#![allow(clippy::unwrap_used, dead_code)] // shared by several test binaries, each using a part

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tokenwarden_apiserver::{AdminCredential, ApiState, router};
use tokenwarden_core::Timestamp;
use tokenwarden_core::keys::{Algorithm, KeySet};
use tokenwarden_core::token_request::IssuerConfig;
use tokenwarden_store::memory::MemoryStore;
use tokenwarden_store::{Authority, ManualClock};

pub const ADMIN: &str = "admin-token";

pub struct Server {
    pub router: Router,
    pub clock: ManualClock,
    /// For what no request can do (a delete that stopped half way).
    pub authority: Arc<Authority>,
}

pub async fn server_with(keep_events: Option<usize>) -> Server {
    let clock = ManualClock::new(Timestamp(1_757_035_663));
    let store = match keep_events {
        Some(keep) => MemoryStore::with_keep_events(Arc::new(clock.clone()), keep),
        None => MemoryStore::new(Arc::new(clock.clone())),
    };
    let keys = KeySet::new(tokenwarden_store::keystore::generate(Algorithm::Rs256).unwrap(), vec![]);
    let authority = Authority::start(Arc::new(store), keys, IssuerConfig::new("https://127.0.0.1:6443"), Arc::new(clock.clone()), None)
        .await
        .unwrap();
    authority.bootstrap_policy().await.unwrap();
    let state = ApiState::new(Arc::clone(&authority), AdminCredential::from_token(ADMIN), "https://127.0.0.1:6443");
    Server { router: router(Arc::new(state)), clock, authority }
}

pub async fn server() -> Server {
    server_with(None).await
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

pub fn request(method: Method, uri: &str, token: Option<&str>, headers: &[(&str, &str)], body: Option<&str>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned()))).unwrap()
}

impl Server {
    pub async fn send(&self, req: Request<Body>) -> Reply {
        let response = tower::ServiceExt::oneshot(self.router.clone(), req).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes))) };
        Reply { status, headers, body }
    }

    pub async fn call(&self, method: Method, uri: &str, headers: &[(&str, &str)], body: Option<Value>) -> Reply {
        let body = body.map(|b| b.to_string());
        self.send(request(method, uri, Some(ADMIN), headers, body.as_deref())).await
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, &[], None).await
    }

    pub async fn post(&self, uri: &str, body: Value) -> Reply {
        self.call(Method::POST, uri, &[("content-type", "application/json")], Some(body)).await
    }

    pub async fn patch(&self, uri: &str, content_type: &str, body: Value) -> Reply {
        self.call(Method::PATCH, uri, &[("content-type", content_type)], Some(body)).await
    }

    pub async fn namespace(&self, name: &str) {
        let reply = self.post("/api/v1/namespaces", json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    }

    pub async fn service_account(&self, namespace: &str, name: &str, labels: Value) -> Value {
        let reply = self
            .post(
                &format!("/api/v1/namespaces/{namespace}/serviceaccounts"),
                json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "labels": labels}}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body
    }
}

pub fn names(list: &Value) -> Vec<String> {
    list["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_owned()).collect()
}

pub fn assert_status(reply: &Reply, code: u16, reason: &str, message: &str) {
    assert_eq!(reply.status.as_u16(), code, "{}", reply.body);
    assert_eq!(reply.body["kind"], "Status");
    assert_eq!(reply.body["code"], code);
    assert_eq!(reply.body["reason"], reason, "{}", reply.body);
    assert_eq!(reply.body["message"], message);
}
