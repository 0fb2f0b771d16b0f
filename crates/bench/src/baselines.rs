//! The baselines: what a gateway or a `Check` server costs with no authorization at all,
//! built from the same stacks as tokenwarden's (`crates/authz/src/proxy.rs`, `grpc.rs`, and
//! the listener settings of `crates/cli/src/listeners.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{self, HeaderValue};
use axum::http::uri::{Authority, PathAndQuery};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use envoy_types::pb::envoy::service::auth::v3::authorization_server::{Authorization, AuthorizationServer};
use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse, OkHttpResponse, check_response};
use envoy_types::pb::google::rpc::Status;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(clap::Args)]
pub struct PassthroughArgs {
    #[arg(long)]
    pub listen: SocketAddr,
    /// `http://HOST:PORT`
    #[arg(long)]
    pub upstream: Uri,
}

#[derive(clap::Args)]
pub struct NoopArgs {
    #[arg(long)]
    pub listen: SocketAddr,
}

struct Passthrough {
    client: Client<HttpConnector, Body>,
    authority: Authority,
}

/// tokenwarden's proxy minus the check: same URI rewrite, header handling and client.
async fn forward(State(proxy): State<Arc<Passthrough>>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", PathAndQuery::as_str).to_owned();
    let Ok(uri) = Uri::builder().scheme("http").authority(proxy.authority.clone()).path_and_query(path).build() else {
        return (StatusCode::BAD_REQUEST, "invalid request path\n").into_response();
    };
    let host = parts.headers.get(header::HOST).cloned();
    let headers = &mut parts.headers;
    tokenwarden_authz::proxy::remove_hop_by_hop(headers);
    if let Some(ConnectInfo(addr)) = parts.extensions.get::<ConnectInfo<SocketAddr>>()
        && let Ok(value) = HeaderValue::from_str(&addr.ip().to_string())
    {
        headers.insert("x-forwarded-for", value);
    }
    if let Some(host) = host {
        headers.insert("x-forwarded-host", host);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    parts.uri = uri;
    parts.version = axum::http::Version::HTTP_11;
    parts.extensions = axum::http::Extensions::new();
    match tokio::time::timeout(Duration::from_secs(30), proxy.client.request(axum::http::Request::from_parts(parts, body))).await {
        Ok(Ok(response)) => {
            let (mut parts, body) = response.into_parts();
            tokenwarden_authz::proxy::remove_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Body::new(body))
        }
        Ok(Err(_)) => (StatusCode::BAD_GATEWAY, "upstream unavailable\n").into_response(),
        Err(_) => (StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n").into_response(),
    }
}

pub async fn passthrough(args: PassthroughArgs) -> Result<(), String> {
    let authority = args.upstream.authority().cloned().ok_or("--upstream needs a host and port")?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(10)));
    let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(90)).build(connector);
    let router = Router::new().fallback(forward).with_state(Arc::new(Passthrough { client, authority }));
    let listener = std::net::TcpListener::bind(args.listen).map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let mut server = axum_server::from_tcp(listener).map_err(|e| e.to_string())?;
    // The limits tokenwarden's listeners set (crates/cli/src/listeners.rs `limit`).
    let builder = server.http_builder();
    builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(Duration::from_secs(10)).max_buf_size(64 * 1024);
    builder.http2().timer(hyper_util::rt::TokioTimer::new()).max_header_list_size(64 * 1024);
    eprintln!("tokenwarden-bench: pass-through proxy on {} to {}", args.listen, args.upstream);
    server.serve(router.into_make_service_with_connect_info::<SocketAddr>()).await.map_err(|e| format!("server: {e}"))
}

struct Noop;

#[tonic::async_trait]
impl Authorization for Noop {
    async fn check(&self, _request: tonic::Request<CheckRequest>) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(CheckResponse {
            status: Some(Status { code: 0, ..Status::default() }),
            dynamic_metadata: None,
            http_response: Some(check_response::HttpResponse::OkResponse(OkHttpResponse::default())),
        }))
    }
}

pub async fn noop_check(args: NoopArgs) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(args.listen).await.map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    eprintln!("tokenwarden-bench: no-op Check server on {}", args.listen);
    tonic::transport::Server::builder()
        .add_service(AuthorizationServer::new(Noop))
        .serve_with_incoming(incoming)
        .await
        .map_err(|e| format!("server: {e}"))
}
