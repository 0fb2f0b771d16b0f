//! `tokenwarden expose`: the public TokenRequest endpoint (`tokenwarden_apiserver::exposure`)
//! in front of a real cluster's API server. Only admitted requests are forwarded, with the
//! caller's own `Authorization`; the kubeconfig, if given, supplies only the upstream's CA and
//! `tls-server-name`, never a credential. The flags shared with `serve --public-listen` live
//! here too.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderName, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use http_body_util::Full;
use tokenwarden_apiserver::ApiError;
use tokenwarden_apiserver::audit::{AuditEvent, AuditLog};
use tokenwarden_apiserver::exposure::{self, Exposure, Forward, Forwarded, Prefix, RateLimit};
use tokenwarden_authz::kubeconfig::{ClusterAccess, client_tls};
use tokenwarden_authz::remote::HttpClient;
use tokenwarden_core::claims::Claims;
use tokenwarden_store::{Clock as _, SystemClock};

use crate::{Failure, listeners};

/// The per-caller rate limit of a public TokenRequest endpoint (`expose`, `serve --public-listen`).
#[derive(Debug, Clone, clap::Args)]
pub struct RateArgs {
    /// Requests per caller on the public TokenRequest endpoint (caller: a keyed hash of its
    /// bearer credential, else its IP): N/s, N/m, N/h, or off.
    #[arg(long, default_value = "5/s")]
    pub rate_limit: String,
    /// Requests a caller may send at once before --rate-limit applies.
    #[arg(long, default_value_t = 10)]
    pub rate_burst: u32,
}

impl RateArgs {
    pub fn plan(&self) -> Result<Option<RateLimit>, Failure> {
        RateLimit::parse(&self.rate_limit, self.rate_burst).map_err(|e| Failure::Usage(format!("--rate-limit/--rate-burst: {e}")))
    }
}

#[derive(Debug, clap::Args)]
pub struct ExposeArgs {
    /// The API server TokenRequests go to: https://HOST:PORT[/BASE] (http:// only on loopback).
    #[arg(long)]
    pub upstream: String,
    /// The path prefix clients use (`/` for none).
    #[arg(long, default_value = "/kubernetes")]
    pub prefix: String,
    /// A kubeconfig whose current cluster gives the upstream's CA and tls-server-name (its
    /// credential is never used). Default: the system CA bundle.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: String,
    /// Serving certificate (PEM, with its chain).
    #[arg(long, requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert-file.
    #[arg(long, requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// Serve plain HTTP (development only: credentials and tokens cross the network in clear text).
    #[arg(long, conflicts_with_all = ["tls_cert_file", "tls_key_file"])]
    pub insecure_http: bool,
    #[command(flatten)]
    pub rate: RateArgs,
    /// Record every forwarded TokenRequest as a JSON line in this file (mode 0600, appended),
    /// or on stdout with `-`: time, caller (as far as known), ServiceAccount, the upstream's
    /// status, and the minted token's jti, audiences, expiration and bound object. Never a token.
    #[arg(long)]
    pub audit_log: Option<PathBuf>,
}

/// How long the upstream may take, within the endpoint's whole-request timeout.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(20);

/// The largest upstream answer relayed: a TokenRequest answer is a few KiB.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// The response headers relayed to the caller.
static RESPONSE_HEADERS: [HeaderName; 4] = [header::CONTENT_TYPE, header::WARNING, header::RETRY_AFTER, header::CACHE_CONTROL];

fn usage(message: impl Into<String>) -> Failure {
    Failure::Usage(message.into())
}

/// The upstream base URL: https, or http to a loopback address; no query or fragment.
fn upstream_base(text: &str) -> Result<String, Failure> {
    let invalid = |why: &str| usage(format!("invalid --upstream {text:?}: {why}"));
    let uri: Uri = text.parse().map_err(|_| invalid("expected https://HOST:PORT"))?;
    let host = uri.host().ok_or_else(|| invalid("expected https://HOST:PORT"))?;
    if uri.query().is_some() || text.contains('#') {
        return Err(invalid("a query or fragment is not allowed"));
    }
    let loopback = host == "localhost" || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if loopback => {}
        Some("http") => return Err(invalid("http:// is only allowed to a loopback address; callers' credentials would cross the network in clear text")),
        _ => return Err(invalid("expected https://HOST:PORT")),
    }
    Ok(text.trim_end_matches('/').to_owned())
}

/// The upstream's TLS: the kubeconfig cluster's CA and server name, else the system bundle.
fn upstream_client(kubeconfig: Option<&PathBuf>) -> Result<HttpClient, Failure> {
    let (ca, server_name) = match kubeconfig {
        Some(path) => {
            let access = ClusterAccess::from_kubeconfig_files(std::slice::from_ref(path), None).map_err(|e| usage(format!("--kubeconfig: {e}")))?;
            if access.insecure_skip_tls_verify() {
                return Err(usage("--kubeconfig: the cluster sets insecure-skip-tls-verify; expose only forwards credentials to a verified upstream"));
            }
            (access.ca_pem().map(<[u8]>::to_vec), access.tls_server_name().map(str::to_owned))
        }
        None => (None, None),
    };
    // No client identity: the caller's own Authorization is the only credential sent.
    let tls = client_tls(ca.as_deref(), false, None).map_err(|e| usage(format!("upstream TLS: {e}")))?;
    HttpClient::new(tls, server_name.as_deref()).map_err(|e| usage(format!("upstream TLS: {e}")))
}

/// Forwards admitted TokenRequests to `base` and relays the answer (bounded in size and time).
fn upstream_forward(client: HttpClient, base: String, audit: Option<Arc<AuditLog>>) -> Forward {
    Arc::new(move |forwarded: Forwarded| {
        let (client, base, audit) = (client.clone(), base.clone(), audit.clone());
        Box::pin(async move {
            let Forwarded { admitted, body } = forwarded;
            let caller = Caller::of(&admitted.headers);
            let service_account = format!("{}/{}", admitted.namespace, admitted.name);
            let mut builder = hyper::Request::builder().method(Method::POST).uri(format!("{base}{}", admitted.path_and_query));
            if let Some(headers) = builder.headers_mut() {
                headers.extend(admitted.headers);
                // JSON answers, whatever the client accepts (kubectl also accepts protobuf), so
                // the audit can read the minted token's claims; every client reads JSON.
                headers.insert(hyper::header::ACCEPT, hyper::header::HeaderValue::from_static("application/json"));
            }
            let Ok(request) = builder.body(Full::new(body)) else {
                return ApiError::bad_request("the request cannot be forwarded").into_response();
            };
            let (response, event) = match client.fetch_limited(request, UPSTREAM_TIMEOUT, MAX_RESPONSE_BYTES).await {
                Ok((head, body)) => {
                    let event = audit.is_some().then(|| answered(caller, head.status.as_u16(), &body));
                    let mut response = Response::new(Body::from(body));
                    *response.status_mut() = head.status;
                    for name in &RESPONSE_HEADERS {
                        for value in head.headers.get_all(name) {
                            response.headers_mut().append(name.clone(), value.clone());
                        }
                    }
                    (response, event)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the upstream API server did not answer a TokenRequest");
                    let error = ApiError::new(503, "ServiceUnavailable", "the upstream API server is unavailable");
                    let event = AuditEvent { reason: error.message.clone(), code: Some(503), ..AuditEvent::new("TokenRequest", SystemClock.now(), "failed") };
                    (error.into_response(), Some(event))
                }
            };
            if let (Some(audit), Some(event)) = (audit, event) {
                audit.record(&AuditEvent { service_account, ..event });
            }
            response
        })
    })
}

/// Who the caller is, as far as `expose` can tell without verifying anything itself.
enum Caller {
    Anonymous,
    /// The `sub` of the bearer credential, unverified: recorded only once the upstream has
    /// accepted the credential.
    Claimed(Option<String>),
}

impl Caller {
    fn of(headers: &axum::http::HeaderMap) -> Self {
        match tokenwarden_apiserver::auth::bearer_token(headers) {
            None => Self::Anonymous,
            Some(token) => Self::Claimed(
                tokenwarden_core::jwt::decode_unverified(token).and_then(|(_, claims)| claims.get("sub").and_then(serde_json::Value::as_str).map(str::to_owned)),
            ),
        }
    }
}

/// The audit record of an upstream answer: for a minted token, what its claims say.
fn answered(caller: Caller, code: u16, body: &[u8]) -> AuditEvent {
    let decision = match code {
        200..=299 => "issued",
        401 => "unauthorized",
        403 => "forbidden",
        _ => "failed",
    };
    let mut event = AuditEvent { code: Some(code), ..AuditEvent::new("TokenRequest", SystemClock.now(), decision) };
    event.caller = match caller {
        Caller::Anonymous => "system:anonymous".to_owned(),
        // Only these answers say the upstream authenticated the credential.
        Caller::Claimed(sub) if matches!(decision, "issued" | "forbidden") => sub.unwrap_or_default(),
        Caller::Claimed(_) => String::new(),
    };
    let answer: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    if decision == "issued" {
        let claims = answer
            .as_ref()
            .and_then(|a| a.pointer("/status/token"))
            .and_then(serde_json::Value::as_str)
            .and_then(tokenwarden_core::jwt::decode_unverified)
            .and_then(|(_, claims)| serde_json::from_value::<Claims>(claims).ok());
        if let Some(claims) = claims {
            event.audiences.clone_from(&claims.aud);
            event = event.with_token_claims(&claims);
        }
    } else if let Some(message) = answer.as_ref().and_then(|a| a.get("message")).and_then(serde_json::Value::as_str) {
        message.chars().take(512).collect::<String>().clone_into(&mut event.reason);
    }
    event
}

/// Reads the listener's certificate and key (exit 64 when unusable).
pub async fn tls_from_files(cert: &PathBuf, key: &PathBuf) -> Result<axum_server::tls_rustls::RustlsConfig, Failure> {
    let read = |path: &PathBuf, flag: &str| std::fs::read(path).map_err(|e| usage(format!("{flag} {}: {e}", path.display())));
    let (cert_pem, key_pem) = (read(cert, "--tls-cert-file")?, read(key, "--tls-key-file")?);
    axum_server::tls_rustls::RustlsConfig::from_pem(cert_pem, key_pem)
        .await
        .map_err(|e| usage(format!("--tls-cert-file/--tls-key-file: {}", e.to_string().lines().next().unwrap_or("unusable"))))
}

pub async fn run(args: ExposeArgs) -> Result<(), Failure> {
    let addr: SocketAddr = args.listen.parse().map_err(|_| usage(format!("invalid --listen {:?}: expected ADDR:PORT, e.g. 127.0.0.1:8443", args.listen)))?;
    let prefix = Prefix::parse(&args.prefix).map_err(|e| usage(format!("--prefix: {e}")))?;
    let rate = args.rate.plan()?;
    let base = upstream_base(&args.upstream)?;
    let client = upstream_client(args.kubeconfig.as_ref())?;
    let tls = match (&args.tls_cert_file, &args.tls_key_file, args.insecure_http) {
        (Some(cert), Some(key), false) => Some(tls_from_files(cert, key).await?),
        (None, None, true) => None,
        _ => return Err(usage("expose needs --tls-cert-file and --tls-key-file (or --insecure-http for development)")),
    };

    let audit = match &args.audit_log {
        Some(path) => Some(Arc::new(AuditLog::open(path).map_err(|e| usage(format!("--audit-log {}: {e}", path.display())))?)),
        None => None,
    };

    let listener = listeners::bind(addr)?;
    let bound = listener.local_addr().map_err(|e| Failure::Runtime(e.to_string()))?;
    let exposure = Exposure::new(prefix.clone(), rate, tokenwarden_store::clock::random_bytes(), upstream_forward(client, base.clone(), audit));
    let stop = listeners::shutdown_signal();
    let server = listeners::spawn_server(listener, exposure::router(Arc::new(exposure)), tls, stop)?;
    let scheme = if args.insecure_http { "http" } else { "https" };
    if args.insecure_http {
        tracing::warn!("serving plain HTTP (--insecure-http): credentials and tokens cross the network in clear text");
    }
    eprintln!(
        "tokenwarden: exposing TokenRequest on {scheme}://{bound}{}/api/v1/namespaces/NS/serviceaccounts/NAME/token to {base}",
        prefix.as_str()
    );
    server.await.map_err(|e| Failure::Runtime(format!("server: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams() {
        assert_eq!(upstream_base("https://10.0.0.1:6443/").ok(), Some("https://10.0.0.1:6443".to_owned()));
        assert!(upstream_base("https://rancher.example/k8s/clusters/c-1").is_ok());
        assert!(upstream_base("http://127.0.0.1:8080").is_ok());
        assert!(upstream_base("http://[::1]:8080").is_ok());
        assert!(upstream_base("http://localhost:8080").is_ok());
        for bad in ["http://10.0.0.1:8080", "ftp://x", "10.0.0.1:6443", "https://x/?a=b", "https://x/#f", "", "https://"] {
            assert!(upstream_base(bad).is_err(), "{bad}");
        }
    }
}
