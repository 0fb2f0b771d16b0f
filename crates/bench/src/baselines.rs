//! The baselines: what a gateway or a `Check` server costs with no authorization at all,
//! built from the same stacks as tokenwarden's (`crates/authz/src/proxy.rs`, `grpc.rs`, and
//! the listener settings of `crates/cli/src/listeners.rs`).
//!
//! With [`Floor`] options a baseline does the least any authorizer must do with each bearer
//! token (a keyed hash of it, or its signature check) and nothing else: a floor under what
//! tokenwarden can reach on the machine, measured in the same run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::http::uri::{Authority, PathAndQuery, Scheme};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use envoy_types::pb::envoy::service::auth::v3::authorization_server::{Authorization, AuthorizationServer};
use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse, OkHttpResponse, check_response};
use envoy_types::pb::google::rpc::Status;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokenwarden_authz::proxy;
use tokenwarden_core::cache_key::CacheKeyer;
use tokenwarden_core::keys::{SigningKey, VerifyingKey};

/// What a baseline does with each request's bearer token (`Authorization: Bearer …`).
#[derive(clap::Args)]
pub struct Floor {
    /// Check each token's JWS signature with this key (the server's signing key, PKCS#8 PEM):
    /// the least an uncached check must do. A missing token or a bad signature is refused.
    #[arg(long, conflicts_with = "hash_token")]
    pub verify_key: Option<PathBuf>,
    /// Compute a keyed hash (HMAC-SHA256) of each token: the least a cached check must do
    /// when its cache never holds a token.
    #[arg(long)]
    pub hash_token: bool,
}

enum Work {
    None,
    Hash(Box<CacheKeyer>),
    Verify(VerifyingKey),
}

impl Work {
    fn new(floor: &Floor) -> Result<Self, String> {
        if let Some(path) = &floor.verify_key {
            let pem = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let key = SigningKey::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))?;
            return Ok(Self::Verify(key.verifying_key().clone()));
        }
        if floor.hash_token {
            return Ok(Self::Hash(Box::new(CacheKeyer::new(tokenwarden_store::clock::random_bytes()))));
        }
        Ok(Self::None)
    }

    /// Whether the request may pass: always, unless the signature is checked and fails.
    fn admits(&self, authorization: Option<&str>) -> bool {
        let token = || authorization.and_then(|value| value.strip_prefix("Bearer "));
        match self {
            Self::None => true,
            Self::Hash(keyer) => {
                std::hint::black_box(keyer.key(&[token().unwrap_or_default()], &[]));
                true
            }
            Self::Verify(key) => token().and_then(|token| token.rsplit_once('.')).is_some_and(|(input, signature)| {
                URL_SAFE_NO_PAD.decode(signature).is_ok_and(|signature| key.verify(input.as_bytes(), &signature))
            }),
        }
    }
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
}

#[derive(clap::Args)]
pub struct PassthroughArgs {
    #[arg(long)]
    pub listen: SocketAddr,
    /// `http://HOST:PORT`
    #[arg(long)]
    pub upstream: Uri,
    #[command(flatten)]
    pub floor: Floor,
}

#[derive(clap::Args)]
pub struct NoopArgs {
    #[arg(long)]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub floor: Floor,
}

struct Passthrough {
    client: Client<HttpConnector, Body>,
    authority: Authority,
    work: Work,
}

/// tokenwarden's proxy minus the check: same URI rewrite, header handling and client.
async fn forward(State(passthrough): State<Arc<Passthrough>>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    if !passthrough.work.admits(authorization(&parts.headers)) {
        return (StatusCode::UNAUTHORIZED, "refused\n").into_response();
    }
    let path = parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    let Ok(uri) = Uri::builder().scheme(Scheme::HTTP).authority(passthrough.authority.clone()).path_and_query(path).build() else {
        return (StatusCode::BAD_REQUEST, "invalid request path\n").into_response();
    };
    let (host, client) = (proxy::host_value(&parts), proxy::client_address(&parts));
    proxy::set_forwarding_headers(&mut parts.headers, client, host);
    parts.uri = uri;
    parts.version = axum::http::Version::HTTP_11;
    parts.extensions = axum::http::Extensions::new();
    match tokio::time::timeout(Duration::from_secs(30), passthrough.client.request(axum::http::Request::from_parts(parts, body))).await {
        Ok(Ok(response)) => {
            let (mut parts, body) = response.into_parts();
            proxy::remove_hop_by_hop(&mut parts.headers);
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
    let work = Work::new(&args.floor)?;
    let router = Router::new().fallback(forward).with_state(Arc::new(Passthrough { client, authority, work }));
    let listener = std::net::TcpListener::bind(args.listen).map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let mut server = axum_server::from_tcp(listener).map_err(|e| e.to_string())?;
    // The limits tokenwarden's listeners set (crates/cli/src/listeners.rs `limit`).
    let builder = server.http_builder();
    builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(Duration::from_secs(10)).max_buf_size(64 * 1024);
    builder.http2().timer(hyper_util::rt::TokioTimer::new()).max_header_list_size(64 * 1024);
    eprintln!("tokenwarden-bench: pass-through proxy on {} to {}", args.listen, args.upstream);
    server.serve(router.into_make_service_with_connect_info::<SocketAddr>()).await.map_err(|e| format!("server: {e}"))
}

struct Noop(Work);

#[tonic::async_trait]
impl Authorization for Noop {
    async fn check(&self, request: tonic::Request<CheckRequest>) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let headers = request.get_ref().attributes.as_ref().and_then(|a| a.request.as_ref()).and_then(|r| r.http.as_ref()).map(|h| &h.headers);
        if !self.0.admits(headers.and_then(|h| h.get("authorization")).map(String::as_str)) {
            // PERMISSION_DENIED, as tokenwarden answers a bad token (the load generator counts codes).
            return Ok(tonic::Response::new(CheckResponse { status: Some(Status { code: 7, ..Status::default() }), ..CheckResponse::default() }));
        }
        Ok(tonic::Response::new(CheckResponse {
            status: Some(Status { code: 0, ..Status::default() }),
            dynamic_metadata: None,
            http_response: Some(check_response::HttpResponse::OkResponse(OkHttpResponse::default())),
        }))
    }
}

pub async fn noop_check(args: NoopArgs) -> Result<(), String> {
    let work = Work::new(&args.floor)?;
    let listener = tokio::net::TcpListener::bind(args.listen).await.map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    eprintln!("tokenwarden-bench: no-op Check server on {}", args.listen);
    tonic::transport::Server::builder()
        .add_service(AuthorizationServer::new(Noop(work)))
        .serve_with_incoming(incoming)
        .await
        .map_err(|e| format!("server: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
    use super::*;

    #[test]
    fn the_signature_floor_admits_only_tokens_signed_by_its_key() {
        let key = tokenwarden_store::keystore::generate(tokenwarden_core::keys::Algorithm::Rs256).unwrap();
        let input = format!("{}.{}", key.jws_header(), URL_SAFE_NO_PAD.encode(br#"{"sub":"a"}"#));
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()).unwrap()));
        let floor = Work::Verify(key.verifying_key().clone());
        assert!(floor.admits(Some(&format!("Bearer {token}"))));

        let tampered = token.replacen(".eyJ", ".eyK", 1);
        for refused in [None, Some("Bearer ".to_owned()), Some(token.clone()), Some(format!("Bearer {tampered}")), Some("Bearer a.b.!!".to_owned())] {
            assert!(!floor.admits(refused.as_deref()), "{refused:?}");
        }
        // The hash floor never refuses: it only pays for the hash.
        let hash = Work::Hash(Box::new(CacheKeyer::new([7; 32])));
        assert!(hash.admits(None) && hash.admits(Some("Bearer x")));
    }
}
