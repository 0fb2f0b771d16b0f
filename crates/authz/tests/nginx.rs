//! A real nginx in front of an echo API, asking tokenwarden's HTTP check with `auth_request`,
//! as the Authorino TokenReview guide's setup would with nginx instead of Envoy.
//!
//! nginx is installed by the test setup (`apt-get install nginx`); without it this test fails.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Json, Router};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokenwarden_authz::Authorizer;
use tokenwarden_authz::http::check_router;
use tokenwarden_authz::identity::Identities;
use tokenwarden_core::keys::{Algorithm, KeySet};
use tokenwarden_core::token_request::{IssuerConfig, TokenRequestInput, TokenRequestSpec};
use tokenwarden_core::{Object, Resource, Timestamp};
use tokenwarden_store::memory::MemoryStore;
use tokenwarden_store::{Authority, ManualClock, keystore};

const NGINX: &str = "/usr/sbin/nginx";
const NOW: Timestamp = Timestamp(1_800_000_000);
const HOST: &str = "talker-api.127.0.0.1.nip.io";
const NS: &str = "authorino";
const DENIED_SA: &str = "intruder";

fn obj(value: Value) -> Object {
    Object::from_value(value).unwrap()
}

/// Kills nginx when the test ends, however it ends.
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn nginx_conf(dir: &Path, port: u16, check: SocketAddr, echo: SocketAddr) -> String {
    let d = dir.display();
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        server_name _;
        location / {{
            auth_request /_auth;
            auth_request_set $auth_user $upstream_http_x_auth_user;
            proxy_set_header X-Auth-User $auth_user;
            proxy_set_header Host $host;
            proxy_pass http://{echo};
        }}
        location = /_auth {{
            internal;
            proxy_pass http://{check};
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header Host $host;
        }}
    }}
}}
"#
    )
}

async fn start_nginx(dir: &Path, check: SocketAddr, echo: SocketAddr) -> (Nginx, SocketAddr) {
    assert!(
        Path::new(NGINX).exists(),
        "{NGINX} not found: this test needs a real nginx; install it with `apt-get install nginx`"
    );
    let port = free_port();
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, nginx_conf(dir, port, check, echo)).unwrap();
    let child = Command::new(NGINX)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {NGINX} ({e}); install it with `apt-get install nginx`"));
    let mut nginx = Nginx(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..200 {
        if let Some(status) = nginx.0.try_wait().unwrap() {
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            panic!("nginx exited with {status}:\n{log}");
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return (nginx, addr);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
    panic!("nginx did not listen on {addr} within 5 s:\n{log}");
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    addr
}

/// The talker-api stand-in: answers with the headers it received.
async fn echo(State(count): State<Arc<AtomicUsize>>, request: Request) -> Json<Value> {
    count.fetch_add(1, Ordering::SeqCst);
    let headers: serde_json::Map<String, Value> =
        request.headers().iter().map(|(n, v)| (n.as_str().to_owned(), Value::String(v.to_str().unwrap_or("?").to_owned()))).collect();
    Json(json!({"method": request.method().as_str(), "uri": request.uri().to_string(), "headers": headers}))
}

async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (StatusCode, HeaderMap, String) {
    let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut request = axum::http::Request::builder().uri(format!("http://{addr}{path}")).header("host", HOST);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    // a forged identity header must never reach the API
    request = request.header("x-auth-user", "system:serviceaccount:kube-system:admin");
    let response = client.request(request.body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(Body::new(response.into_body()), usize::MAX).await.unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_in_front_of_the_talker_api() {
    // the authority, the guide's AuthConfig (plus a rule keeping one ServiceAccount out)
    let clock = ManualClock::new(NOW);
    let store = Arc::new(MemoryStore::new(Arc::new(clock.clone())));
    let keys = KeySet::new(keystore::generate(Algorithm::Es256).unwrap(), Vec::new());
    let authority = Authority::start(store, keys, IssuerConfig::new("https://tokenwarden.test"), Arc::new(clock), None).await.unwrap();
    authority.create(&Resource::NAMESPACES, obj(json!({"metadata": {"name": NS}}))).await.unwrap();
    for sa in ["api-consumer", DENIED_SA] {
        authority.create(&Resource::SERVICE_ACCOUNTS, obj(json!({"metadata": {"name": sa, "namespace": NS}}))).await.unwrap();
    }
    let config = obj(json!({
        "apiVersion": "authorino.kuadrant.io/v1beta3",
        "kind": "AuthConfig",
        "metadata": {"namespace": NS, "name": "talker-api-protection"},
        "spec": {
            "hosts": [HOST],
            "authentication": {"authorized-service-accounts": {"kubernetesTokenReview": {"audiences": ["talker-api"]}}},
            "authorization": {"not-the-intruder": {"patternMatching": {"patterns": [
                {"selector": "auth.identity.user.username", "operator": "neq", "value": format!("system:serviceaccount:{NS}:{DENIED_SA}")},
            ]}}},
            "response": {"success": {"headers": {"x-auth-user": {"plain": {"selector": "auth.identity.user.username"}}}}},
        },
    }));
    authority.create(&Resource::AUTH_CONFIGS, config).await.unwrap();
    let authorizer = Arc::new(Authorizer::new(Identities::new(Some(Arc::clone(&authority)))));
    let _follower = tokenwarden_authz::source::follow_authority(Arc::clone(&authority), Arc::clone(&authorizer)).await.unwrap();
    let token = |sa: &'static str, audience: &'static str| {
        let authority = Arc::clone(&authority);
        async move {
            let input = TokenRequestInput {
                namespace: NS.into(),
                service_account: sa.into(),
                spec: TokenRequestSpec { audiences: vec![audience.into()], ..TokenRequestSpec::default() },
                ..TokenRequestInput::default()
            };
            authority.request_token(input).await.unwrap().token
        }
    };

    let check = serve(check_router(Arc::clone(&authorizer))).await;
    let requests = Arc::new(AtomicUsize::new(0));
    let echo = serve(Router::new().fallback(echo).with_state(Arc::clone(&requests))).await;
    let dir = tempfile::tempdir().unwrap();
    let (_nginx, nginx) = start_nginx(dir.path(), check, echo).await;

    // a valid token: through to the API, with the identity nginx copied from the check
    let valid = token("api-consumer", "talker-api").await;
    let (status, _, body) = get(nginx, "/hello?greeting=hi", Some(&valid)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["headers"]["x-auth-user"], format!("system:serviceaccount:{NS}:api-consumer"));
    assert_eq!(seen["headers"]["host"], HOST);
    assert_eq!(seen["uri"], "/hello?greeting=hi");
    assert_eq!(requests.load(Ordering::SeqCst), 1);

    // no token: 401 with the challenge (nginx passes WWW-Authenticate on to the client)
    let (status, headers, _) = get(nginx, "/hello", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers.get("www-authenticate").unwrap(), r#"Bearer realm="authorized-service-accounts""#);

    // a token for another audience: 401
    let wrong = token("api-consumer", "another-api").await;
    let (status, headers, _) = get(nginx, "/hello", Some(&wrong)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers.get("www-authenticate").unwrap(), r#"Bearer realm="authorized-service-accounts""#);

    // a ServiceAccount the rules keep out: 403
    let intruder = token(DENIED_SA, "talker-api").await;
    let (status, headers, _) = get(nginx, "/hello", Some(&intruder)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(headers.get("www-authenticate").is_none());

    assert_eq!(requests.load(Ordering::SeqCst), 1, "a denied request reached the API");
}
