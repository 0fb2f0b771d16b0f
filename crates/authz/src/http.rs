//! HTTP checks: one endpoint that answers every forward-auth protocol in use.
//!
//! [`check_router`] answers **any method on any path** (Envoy `http_service` prefixes the
//! original path and keeps the original method, so a fixed `/check` route cannot work). The
//! original request is read from, in order:
//!
//! 1. ingress-nginx: `X-Original-URL` (`$scheme://$http_host$request_uri`: host, path and
//!    query) with `X-Original-Method`; the request's `Host` is the auth service's, not the
//!    protected one's.
//! 2. nginx `auth_request`: `X-Original-URI` with `X-Original-Method`; the host from
//!    `X-Forwarded-Host`, else `Host`.
//! 3. Traefik ForwardAuth: `X-Forwarded-Uri` / `X-Forwarded-Method` (either present), with
//!    `X-Forwarded-Host` (else `Host`) and `X-Forwarded-Proto`.
//! 4. Envoy `http_service` and Authorino's raw interface: the request's own method, `Host`
//!    and path, with a leading `/check` path segment stripped (`/check` alone is `/`).
//!
//! Headers are lower-cased and repeated ones merged with `,` (as Envoy does); the body is read
//! up to [`MAX_BODY_BYTES`] (larger: 413, as Authorino's `--max-http-request-body-size`) and
//! within [`BODY_READ_TIMEOUT`] (slower: 408).
//!
//! Allowed: 200 with the success headers (`response.success.headers`), so nginx
//! `auth_request_set`, Traefik `authResponseHeaders` and Envoy `allowed_upstream_headers` can
//! copy them upstream. Denied: the decision's status, headers (`WWW-Authenticate` once per
//! identity source, `X-Ext-Auth-Reason`) and body. Anything that goes wrong inside is a 503:
//! the check fails closed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{HeaderMap, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::http::uri::Authority;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokenwarden_core::authconfig::{AuthRequest, Decision};

use crate::Authorizer;

/// The largest request body a check reads (Authorino's default
/// `--max-http-request-body-size`).
pub const MAX_BODY_BYTES: usize = 8 * 1024;

/// How long a client may take to send the body, once its headers are in.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The path prefix Authorino's raw interface listens on, stripped from Envoy-style checks.
pub const CHECK_PREFIX: &str = "/check";

/// The HTTP check service: a fallback handler for every method and path.
pub fn check_router(authorizer: Arc<Authorizer>) -> Router {
    Router::new().fallback(check).with_state(authorizer)
}

async fn check(State(authorizer): State<Arc<Authorizer>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if declared_length(&parts.headers).is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return too_large();
    }
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    let decision = match original_request(&parts, &body) {
        Some(auth) => authorizer.check(&auth).await,
        None => Decision::invalid_request(),
    };
    decision_response(&decision)
}

/// The body, bounded in size and in time (the listener bounds only the headers: a client that
/// stalls mid-body would hold its connection and task for good). Most checks have none, and
/// skip the timer.
async fn read_body(body: Body) -> Result<Bytes, Response> {
    if axum::body::HttpBody::is_end_stream(&body) {
        return Ok(Bytes::new());
    }
    match tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, MAX_BODY_BYTES).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(_)) => Err(plain(StatusCode::BAD_REQUEST, "cannot read the request body")),
        Err(_) => Err(plain(StatusCode::REQUEST_TIMEOUT, &format!("the request body was not received within {} s", BODY_READ_TIMEOUT.as_secs()))),
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(axum::http::header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

fn too_large() -> Response {
    plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
}

fn plain(status: StatusCode, message: &str) -> Response {
    (status, format!("{message}\n")).into_response()
}

/// Header names read on every request, parsed once (a name given as text is parsed at each
/// lookup).
pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

fn header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

/// The host the client asked for: `Host`, else the URI's authority (HTTP/2 `:authority`).
pub(crate) fn request_host(parts: &Parts) -> &str {
    header(&parts.headers, &axum::http::header::HOST).or_else(|| parts.uri.authority().map(Authority::as_str)).unwrap_or_default()
}

/// Every header, borrowed (names are lower case already), repeated ones merged with `,`;
/// non-UTF-8 values lossily.
pub(crate) fn add_headers<'a>(request: &mut AuthRequest<'a>, headers: &'a HeaderMap) {
    for (name, value) in headers {
        // The strict check is the fast one (the lossy scan goes byte by byte through a token).
        match std::str::from_utf8(value.as_bytes()) {
            Ok(value) => request.insert_header(name.as_str(), value),
            Err(_) => request.insert_header(name.as_str(), String::from_utf8_lossy(value.as_bytes()).into_owned()),
        }
    }
}

fn protocol(version: axum::http::Version) -> &'static str {
    match version {
        axum::http::Version::HTTP_09 => "HTTP/0.9",
        axum::http::Version::HTTP_10 => "HTTP/1.0",
        axum::http::Version::HTTP_2 => "HTTP/2",
        axum::http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// An address as `Display` writes it; IPv4 digit by digit (the formatter costs about a
/// microsecond a request on the proxy, where every request has one).
pub(crate) fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else { return ip.to_string() };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

/// `source` from the connection (when served with connect info).
pub(crate) fn set_peer(request: &mut AuthRequest<'_>, parts: &Parts) {
    if let Some(ConnectInfo(addr)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        request.source.address = ip_text(addr.ip());
        request.source.port = u32::from(addr.port());
    }
    request.protocol = protocol(parts.version).into();
}

/// `path` with Authorino's `/check` prefix removed: `/check` → `/`, `/check/a?b` → `/a?b`,
/// `/check?b` → `/?b`; `/checkout` is left alone.
pub fn strip_check_prefix(path_and_query: &str) -> String {
    match path_and_query.strip_prefix(CHECK_PREFIX) {
        Some("") => "/".to_owned(),
        Some(rest) if rest.starts_with('?') => format!("/{rest}"),
        Some(rest) if rest.starts_with('/') => rest.to_owned(),
        _ => path_and_query.to_owned(),
    }
}

/// The request being authorized, from whichever convention the calling proxy follows (see
/// the module docs). `None` when `X-Original-URL` is not a URL.
pub fn original_request<'a>(parts: &'a Parts, body: &'a [u8]) -> Option<AuthRequest<'a>> {
    let headers = &parts.headers;
    let own_method = parts.method.as_str();
    let original_method = header(headers, &X_ORIGINAL_METHOD);
    let forwarded_host = header(headers, &X_FORWARDED_HOST);
    let forwarded_proto = header(headers, &X_FORWARDED_PROTO);
    let mut forwarded = true;
    let mut request = if let Some(url) = header(headers, &X_ORIGINAL_URL) {
        // ingress-nginx: `$scheme://$http_host$request_uri`
        let uri: Uri = url.parse().ok()?;
        let authority = uri.authority()?.as_str().to_owned();
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let mut request = AuthRequest::new(original_method.unwrap_or(own_method), authority, path);
        request.scheme = uri.scheme_str().unwrap_or("http").to_owned().into();
        request
    } else if let Some(uri) = header(headers, &X_ORIGINAL_URI) {
        // nginx `auth_request`
        let host = forwarded_host.unwrap_or_else(|| request_host(parts));
        let mut request = AuthRequest::new(original_method.unwrap_or(own_method), host, uri);
        request.scheme = forwarded_proto.unwrap_or("http").into();
        request
    } else if header(headers, &X_FORWARDED_URI).is_some() || header(headers, &X_FORWARDED_METHOD).is_some() {
        // Traefik ForwardAuth
        let host = forwarded_host.unwrap_or_else(|| request_host(parts));
        let path = header(headers, &X_FORWARDED_URI).unwrap_or("/");
        let method = header(headers, &X_FORWARDED_METHOD).unwrap_or(own_method);
        let mut request = AuthRequest::new(method, host, path);
        request.scheme = forwarded_proto.unwrap_or("http").into();
        request
    } else {
        // Envoy `http_service` / Authorino's raw `/check`
        forwarded = false;
        let path = strip_check_prefix(parts.uri.path_and_query().map_or("/", |p| p.as_str()));
        let mut request = AuthRequest::new(own_method, request_host(parts), path);
        request.scheme = forwarded_proto.or_else(|| parts.uri.scheme_str()).unwrap_or("http").into();
        request
    };
    add_headers(&mut request, headers);
    set_peer(&mut request, parts);
    if forwarded {
        // The client of the protected request, as the proxy reports it.
        let client = header(headers, &X_REAL_IP).or_else(|| header(headers, &X_FORWARDED_FOR).and_then(|v| v.split(',').next()).map(str::trim));
        if let Some(client) = client.filter(|c| !c.is_empty()) {
            client.clone_into(&mut request.source.address);
            request.source.port = 0;
        }
    }
    if let Some(id) = header(headers, &X_REQUEST_ID) {
        request.id = id.into();
    }
    request.body = String::from_utf8_lossy(body);
    Some(request)
}

/// A decision header as it goes on the wire; `None` if the name or value is not valid HTTP.
pub(crate) fn wire_header(name: &str, value: &str) -> Option<(HeaderName, HeaderValue)> {
    Some((HeaderName::from_bytes(name.as_bytes()).ok()?, HeaderValue::from_str(value).ok()?))
}

/// The HTTP answer for a decision: 200 with the success headers, or the denial as is
/// (headers appended in order, so a repeated `WWW-Authenticate` stays repeated).
pub fn decision_response(decision: &Decision) -> Response {
    match decision {
        Decision::Allow { headers, .. } => {
            let mut response = Response::new(Body::empty());
            for (name, value) in headers {
                let Some((name, value)) = wire_header(name, value) else {
                    // A success header the proxy cannot pass on: the upstream would see the
                    // request without it. Fail closed.
                    tracing::warn!(header = %name, "success header is not valid HTTP; denying");
                    return plain(StatusCode::SERVICE_UNAVAILABLE, "invalid success header");
                };
                response.headers_mut().insert(name, value);
            }
            response
        }
        Decision::Deny { code, headers, body, .. } => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let mut response = Response::new(Body::from(Bytes::from(body.clone().into_bytes())));
            *response.status_mut() = status;
            for (name, value) in headers {
                match wire_header(name, value) {
                    Some((name, value)) => {
                        response.headers_mut().append(name, value);
                    }
                    None => tracing::warn!(header = %name, "denial header is not valid HTTP; dropped"),
                }
            }
            response
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
    use super::*;

    #[test]
    fn headers_are_borrowed_merged_and_non_utf8_values_lossily() {
        let mut headers = HeaderMap::new();
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        headers.insert("x-bin", HeaderValue::from_bytes(b"ok\xff").unwrap());
        let mut request = AuthRequest::default();
        add_headers(&mut request, &headers);
        assert_eq!(request.header("x-a"), Some("1,2"));
        assert_eq!(request.header("x-bin"), Some("ok\u{fffd}"));
        assert_eq!(request.headers.len(), 2);
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in ["0.0.0.0", "127.0.0.1", "10.0.100.9", "1.20.200.3", "255.255.255.255", "192.168.7.99", "::1", "::ffff:10.1.2.3", "2001:db8::8"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }
}
