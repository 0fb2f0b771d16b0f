//! The authorizer's listeners, shared by `serve` and `authorize`: Envoy ext_authz over gRPC
//! (with `grpc.health.v1`), HTTP checks, the reverse proxy and metrics; and shutdown on
//! SIGINT/SIGTERM. Addresses are validated before anything binds.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use tokenwarden_authz::Authorizer;
use tokio::sync::watch;

use crate::Failure;

#[derive(Debug, clap::Args)]
pub struct AuthzArgs {
    /// Envoy ext_authz v3 gRPC listener of the authorizer (`off` disables it).
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub authz_grpc_listen: String,
    /// HTTP check listener of the authorizer: Envoy `http_service`, nginx `auth_request`,
    /// Traefik ForwardAuth (`off` disables it).
    #[arg(long, default_value = "127.0.0.1:5001")]
    pub authz_http_listen: String,
    /// A reverse proxy that authorizes each request itself and forwards the allowed ones to
    /// --proxy-upstream (off unless given).
    #[arg(long, requires = "proxy_upstream")]
    pub proxy_listen: Option<String>,
    /// The `http://` URL the proxy forwards allowed requests to.
    #[arg(long, requires = "proxy_listen")]
    pub proxy_upstream: Option<String>,
    /// Remove the credential (`Authorization`) before forwarding.
    #[arg(long)]
    pub proxy_strip_credential: bool,
    /// The AuthConfig host that guards the upstream: every proxied request is checked against
    /// it, whatever Host the client sends (required with --proxy-listen).
    #[arg(long, requires = "proxy_listen")]
    pub proxy_host: Option<String>,
    /// Prometheus `/metrics`, `/healthz` and `/readyz` of the authorizer (`off` disables it).
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub metrics_listen: String,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure::Usage(message.into())
}

/// `ADDR:PORT`, or `off`.
pub fn optional_listen(flag: &str, value: &str) -> Result<Option<SocketAddr>, Failure> {
    if value == "off" {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| usage(format!("invalid {flag} {value:?}: expected ADDR:PORT or off")))
}

pub fn bind(addr: SocketAddr) -> Result<TcpListener, Failure> {
    TcpListener::bind(addr).map_err(|e| Failure::Runtime(format!("cannot listen on {addr}: {e}")))
}

fn local(listener: &TcpListener) -> Result<SocketAddr, Failure> {
    listener.local_addr().map_err(|e| Failure::Runtime(e.to_string()))
}

fn tokio_listener(listener: TcpListener) -> Result<tokio::net::TcpListener, Failure> {
    listener.set_nonblocking(true).map_err(|e| Failure::Runtime(e.to_string()))?;
    tokio::net::TcpListener::from_std(listener).map_err(|e| Failure::Runtime(e.to_string()))
}

/// The validated addresses.
pub struct Planned {
    grpc: Option<SocketAddr>,
    http: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
    proxy: Option<(SocketAddr, axum::http::Uri, String)>,
    strip_credential: bool,
}

impl AuthzArgs {
    /// Validates every address (exit 64 on a bad one); binds nothing.
    pub fn plan(&self) -> Result<Planned, Failure> {
        let proxy = match (&self.proxy_listen, &self.proxy_upstream) {
            (Some(listen), Some(upstream)) => {
                let addr = optional_listen("--proxy-listen", listen)?.ok_or_else(|| usage("--proxy-listen may not be off"))?;
                let uri: axum::http::Uri = upstream.parse().map_err(|_| usage(format!("invalid --proxy-upstream {upstream:?}")))?;
                if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                    return Err(usage(format!("invalid --proxy-upstream {upstream:?}: expected http://HOST:PORT")));
                }
                let host = self.proxy_host.clone().ok_or_else(|| usage("--proxy-listen needs --proxy-host: the AuthConfig host that guards the upstream"))?;
                Some((addr, uri, host))
            }
            _ => None,
        };
        Ok(Planned {
            grpc: optional_listen("--authz-grpc-listen", &self.authz_grpc_listen)?,
            http: optional_listen("--authz-http-listen", &self.authz_http_listen)?,
            metrics: optional_listen("--metrics-listen", &self.metrics_listen)?,
            proxy,
            strip_credential: self.proxy_strip_credential,
        })
    }
}

/// The bound sockets, not yet served.
pub struct Bound {
    grpc: Option<TcpListener>,
    http: Option<TcpListener>,
    metrics: Option<TcpListener>,
    proxy: Option<(TcpListener, axum::http::Uri, String)>,
    strip_credential: bool,
}

impl Planned {
    pub fn bind(self) -> Result<Bound, Failure> {
        Ok(Bound {
            grpc: self.grpc.map(bind).transpose()?,
            http: self.http.map(bind).transpose()?,
            metrics: self.metrics.map(bind).transpose()?,
            proxy: self.proxy.map(|(addr, uri, host)| bind(addr).map(|listener| (listener, uri, host))).transpose()?,
            strip_credential: self.strip_credential,
        })
    }
}

/// Resolves once shutdown was asked for.
pub async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// A client must send its request headers within this long (slow-loris connections are closed).
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Bounds what one connection may hold: header read time and header buffer size.
pub fn limit(builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>) {
    builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).max_buf_size(64 * 1024);
    builder.http2().timer(hyper_util::rt::TokioTimer::new()).max_header_list_size(64 * 1024);
}

/// Serves a plain-HTTP router on `listener` until shutdown.
pub fn spawn_http(listener: TcpListener, router: axum::Router, stop: watch::Receiver<bool>) -> Result<(), Failure> {
    spawn_server(listener, router, None, stop).map(drop)
}

/// Serves `router` on `listener` (over TLS when `tls` is given) with the client address as
/// `ConnectInfo`, until shutdown; the task ends when the server has stopped.
pub fn spawn_server(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, Failure> {
    let handle = axum_server::Handle::new();
    let on_stop = handle.clone();
    tokio::spawn(async move {
        stopped(stop).await;
        on_stop.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
    });
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    let failed = |e: std::io::Error| tracing::error!(error = %e, "HTTP listener failed");
    Ok(match tls {
        None => {
            let mut server = axum_server::from_tcp(listener).map_err(|e| Failure::Runtime(e.to_string()))?;
            limit(server.http_builder());
            tokio::spawn(async move { server.handle(handle).serve(service).await.unwrap_or_else(failed) })
        }
        Some(config) => {
            let mut server = axum_server::tls_rustls::from_tcp_rustls(listener, config).map_err(|e| Failure::Runtime(e.to_string()))?;
            limit(server.http_builder());
            tokio::spawn(async move { server.handle(handle).serve(service).await.unwrap_or_else(failed) })
        }
    })
}

impl Bound {
    /// Serves every bound listener until `stop`; returns what each serves, for the start line.
    pub async fn spawn(self, authorizer: &Arc<Authorizer>, stop: &watch::Receiver<bool>) -> Result<Vec<String>, Failure> {
        let mut roles = Vec::new();
        if let Some(listener) = self.grpc {
            roles.push(format!("ext_authz gRPC on {}", local(&listener)?));
            let incoming = tonic::transport::server::TcpIncoming::from(tokio_listener(listener)?);
            let service = tokenwarden_authz::grpc::ExtAuthz::server(Arc::clone(authorizer));
            // grpc.health.v1, as Envoy's and Kubernetes' gRPC health checks expect.
            let (health_reporter, health) = tonic_health::server::health_reporter();
            health_reporter.set_serving::<tokenwarden_authz::grpc::ExtAuthzServer>().await;
            let stop = stopped(stop.clone());
            tokio::spawn(async move {
                let server = tonic::transport::Server::builder().add_service(health).add_service(service);
                if let Err(e) = server.serve_with_incoming_shutdown(incoming, stop).await {
                    tracing::error!(error = %e, "ext_authz gRPC server failed");
                }
            });
        }
        if let Some(listener) = self.http {
            roles.push(format!("HTTP checks on {}", local(&listener)?));
            spawn_http(listener, tokenwarden_authz::http::check_router(Arc::clone(authorizer)), stop.clone())?;
        }
        if let Some((listener, upstream, host)) = self.proxy {
            roles.push(format!("proxy on {} to {upstream} (AuthConfig host {host})", local(&listener)?));
            let options = tokenwarden_authz::proxy::ProxyOptions { strip_credential: self.strip_credential, host: Some(host) };
            spawn_http(listener, tokenwarden_authz::proxy::proxy_router(Arc::clone(authorizer), upstream, options), stop.clone())?;
        }
        if let Some(listener) = self.metrics {
            roles.push(format!("metrics on {}", local(&listener)?));
            spawn_http(listener, tokenwarden_authz::observe::metrics_router(Arc::clone(authorizer)), stop.clone())?;
        }
        Ok(roles)
    }
}

/// A receiver that turns true on SIGINT or SIGTERM.
pub fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch SIGTERM");
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        let _ = tx.send(true);
    });
    rx
}
