//! The built-in reverse proxy: authorizes each request itself and forwards the allowed ones.
//!
//! - The check sees the incoming request as is: method, `Host`, path with query, headers (the
//!   body is streamed, never buffered, so `request.body` is empty).
//! - Denied requests are answered with the decision's status, headers and body; they never
//!   reach the upstream.
//! - Allowed requests go to the upstream with the success headers set (replacing any the
//!   client sent under the same name, so an identity header cannot be forged), hop-by-hop
//!   headers removed, `X-Forwarded-For/Host/Proto` set, `Host` kept, and `Authorization`
//!   removed when [`ProxyOptions::strip_credential`] is set. Bodies stream both ways over
//!   one shared keep-alive client.
//! - Upstream unreachable: 502 with a one-line body. No response headers within the timeout
//!   ([`UPSTREAM_TIMEOUT`]): 504.
//!
//! Serve the router with `into_make_service_with_connect_info::<SocketAddr>()` to have the
//! client address in `X-Forwarded-For` and in the check's `source`. Only `http://` upstreams
//! are supported; protocol upgrades (WebSocket) are not proxied.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::http::uri::{Authority, PathAndQuery, Scheme};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokenwarden_core::authconfig::{AuthRequest, Decision};

use crate::Authorizer;
use crate::http::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REQUEST_ID, add_headers, decision_response, ip_text, request_host, set_peer, wire_header};

/// How long the upstream may take to send its response headers.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an idle upstream connection is kept for reuse.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyOptions {
    /// Remove the `Authorization` header before forwarding (the upstream then never sees the
    /// token; it gets the identity through the success headers).
    pub strip_credential: bool,
    /// The AuthConfig host that guards the upstream. When set, every request is checked
    /// against it whatever `Host` the client sends, so a client cannot pick a laxer AuthConfig
    /// for the one upstream this proxy serves.
    pub host: Option<String>,
}

struct Proxy {
    authorizer: Arc<Authorizer>,
    client: Client<HttpConnector, Body>,
    scheme: Scheme,
    authority: Option<Authority>,
    /// The upstream's path prefix, without a trailing `/` (empty for none).
    base_path: String,
    options: ProxyOptions,
    timeout: Duration,
}

/// A reverse proxy to `upstream` (`http://host:port`, optionally with a base path) that
/// authorizes every request with `authorizer`.
pub fn proxy_router(authorizer: Arc<Authorizer>, upstream: Uri, options: ProxyOptions) -> Router {
    proxy_router_with_timeout(authorizer, upstream, options, UPSTREAM_TIMEOUT)
}

/// [`proxy_router`] with another upstream response timeout.
pub fn proxy_router_with_timeout(authorizer: Arc<Authorizer>, upstream: Uri, options: ProxyOptions, timeout: Duration) -> Router {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(POOL_IDLE_TIMEOUT).build(connector);
    if upstream.scheme().is_some_and(|s| *s != Scheme::HTTP) {
        tracing::warn!(upstream = %upstream, "only http:// upstreams are supported; requests will fail with 502");
    }
    if upstream.authority().is_none() {
        tracing::warn!(upstream = %upstream, "the upstream has no host; requests will fail with 502");
    }
    let proxy = Proxy {
        authorizer,
        client,
        scheme: upstream.scheme().cloned().unwrap_or(Scheme::HTTP),
        authority: upstream.authority().cloned(),
        base_path: upstream.path().trim_end_matches('/').to_owned(),
        options,
        timeout,
    };
    Router::new().fallback(handle).with_state(Arc::new(proxy))
}

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the legacy ones proxies drop).
const HOP_BY_HOP: [&str; 9] =
    ["connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"];

/// Removes hop-by-hop headers, including those the `Connection` header names (also used by
/// the benchmark's bare pass-through proxy, so the baseline handles headers the same way).
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names; most messages have none to remove, and the rest one or two
    // (`Connection: keep-alive`), so nothing else is looked up.
    let mut doomed: Vec<HeaderName> = headers.keys().filter(|name| HOP_BY_HOP.contains(&name.as_str())).cloned().collect();
    if doomed.is_empty() {
        return;
    }
    let named = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok());
    doomed.extend(named);
    for name in doomed {
        headers.remove(name);
    }
}

/// What every forwarded request gets (the benchmark's bare pass-through proxy calls this too,
/// so that the baseline does the same header work): hop-by-hop headers removed, the client's
/// address appended to `X-Forwarded-For`, `X-Forwarded-Host` and, when missing, `Host` from
/// `host`, and `X-Forwarded-Proto`.
pub fn set_forwarding_headers(headers: &mut HeaderMap, client_ip: String, host: Option<HeaderValue>) {
    remove_hop_by_hop(headers);
    if !client_ip.is_empty() {
        let forwarded_for = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(previous) if !previous.trim().is_empty() => format!("{previous}, {client_ip}"),
            _ => client_ip,
        };
        if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
            headers.insert(X_FORWARDED_FOR.clone(), value);
        }
    }
    if let Some(value) = host {
        headers.insert(X_FORWARDED_HOST.clone(), value.clone());
        // HTTP/2 clients send `:authority`; HTTP/1.1 upstreams need `Host`.
        headers.entry(header::HOST).or_insert(value);
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
}

/// The client's address as `X-Forwarded-For` writes it; empty when the router was not served
/// with connect info. (The proxy has it from the check's `source`.)
pub fn client_address(parts: &Parts) -> String {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| ip_text(addr.ip())).unwrap_or_default()
}

/// [`request_host`] as a header value: the `Host` header itself (shared, not copied) when it
/// has one.
pub fn host_value(parts: &Parts) -> Option<HeaderValue> {
    match parts.headers.get(header::HOST) {
        Some(value) if value.to_str().is_ok_and(|v| !v.trim().is_empty()) => Some(value.clone()),
        _ => parts.uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
    }
}

fn one_line(status: StatusCode, message: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{message}\n")).into_response()
}

async fn handle(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    // The check borrows the request's method, host, path and headers; only the client address
    // is written out for it, and that text is reused for `X-Forwarded-For`.
    let (decision, client_ip) = {
        let path = parts.uri.path_and_query().map_or("/", PathAndQuery::as_str);
        let mut auth = AuthRequest::new(parts.method.as_str(), request_host(&parts), path);
        auth.scheme = "http".into();
        if let Some(pinned) = &proxy.options.host {
            auth.context_extensions.insert("host".to_owned(), pinned.clone());
        }
        add_headers(&mut auth, &parts.headers);
        set_peer(&mut auth, &parts);
        if let Some(id) = parts.headers.get(&X_REQUEST_ID).and_then(|v| v.to_str().ok()) {
            auth.id = id.into();
        }
        let decision = proxy.authorizer.check(&auth).await;
        // `source.address` is the client's address when the connection is known (`set_peer`).
        (decision, std::mem::take(&mut auth.source.address))
    };
    let Decision::Allow { headers: success, .. } = &decision else {
        return decision_response(&decision);
    };

    // The upstream URI: the upstream's scheme, authority and base path, then the request's path.
    let Some(authority) = proxy.authority.clone() else {
        return one_line(StatusCode::BAD_GATEWAY, "upstream unavailable: no upstream host configured");
    };
    let path = parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    let path = if proxy.base_path.is_empty() {
        path
    } else {
        let Ok(path) = PathAndQuery::try_from(format!("{}{}", proxy.base_path, path.as_str())) else {
            return one_line(StatusCode::BAD_REQUEST, "invalid request path");
        };
        path
    };
    let Ok(uri) = Uri::builder().scheme(proxy.scheme.clone()).authority(authority).path_and_query(path).build() else {
        return one_line(StatusCode::BAD_GATEWAY, "upstream unavailable: invalid upstream URI");
    };
    let host = host_value(&parts);

    let headers = &mut parts.headers;
    set_forwarding_headers(headers, client_ip, host);
    if proxy.options.strip_credential {
        headers.remove(header::AUTHORIZATION);
    }
    for (name, value) in success {
        let Some((name, value)) = wire_header(name, value) else {
            tracing::warn!(header = %name, "success header is not valid HTTP; denying");
            return one_line(StatusCode::SERVICE_UNAVAILABLE, "invalid success header");
        };
        headers.insert(name, value);
    }
    parts.uri = uri;
    // The upstream connection speaks HTTP/1.1 (the connector has no TLS, so no ALPN for h2).
    parts.version = axum::http::Version::HTTP_11;
    parts.extensions = axum::http::Extensions::new();
    let upstream_request = axum::http::Request::from_parts(parts, body);

    match tokio::time::timeout(proxy.timeout, proxy.client.request(upstream_request)).await {
        Ok(Ok(response)) => {
            let (mut parts, body) = response.into_parts();
            remove_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Body::new(body))
        }
        Ok(Err(err)) => {
            let reason = if err.is_connect() { "cannot connect" } else { "connection failed" };
            tracing::warn!(error = %err, "upstream request failed");
            one_line(StatusCode::BAD_GATEWAY, &format!("upstream unavailable: {reason}"))
        }
        Err(_) => one_line(StatusCode::GATEWAY_TIMEOUT, "upstream timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn hop_by_hop_headers_go_and_the_rest_stay() {
        let mut plain = headers(&[("host", "a"), ("authorization", "Bearer t"), ("accept", "*/*")]);
        remove_hop_by_hop(&mut plain);
        assert_eq!(plain, headers(&[("host", "a"), ("authorization", "Bearer t"), ("accept", "*/*")]));

        let mut hops = headers(&[
            ("connection", "keep-alive, X-Hop"),
            ("connection", "x-other"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("x-hop", "1"),
            ("x-other", "2"),
            ("x-kept", "3"),
        ]);
        remove_hop_by_hop(&mut hops);
        assert_eq!(hops, headers(&[("x-kept", "3")]));
    }
}
