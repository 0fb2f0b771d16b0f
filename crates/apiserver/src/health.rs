//! `/healthz`, `/livez` and `/readyz`, in kube-apiserver's formats (`ok`, or the checks line
//! by line with `?verbose`).
//!
//! On etcd, an outage does not make a replica unready: it keeps reviewing tokens from its
//! watch-fed index, so `/readyz` stays 200 and its verbose form says how stale that index may
//! be. `/readyz/etcd` is the strict check (500 while etcd is unreachable) for operators who
//! would rather take the replica out.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::ApiState;

/// The answer for `path` (without the query), or `None` when it is not a health path.
pub fn respond(state: &ApiState, path: &str, verbose: bool) -> Option<Response> {
    let trimmed = path.trim_start_matches('/');
    let (endpoint, check) = match trimmed.split_once('/') {
        Some((endpoint, check)) => (endpoint, Some(check)),
        None => (trimmed, None),
    };
    if !matches!(endpoint, "healthz" | "livez" | "readyz") {
        return None;
    }
    let stale = state.authority.store().health().map(|health| health.stale_seconds(state.authority.clock().now()));
    match check {
        None => Some(overall(endpoint, stale, verbose)),
        Some("ping") => Some((StatusCode::OK, "ok").into_response()),
        Some("etcd") if endpoint == "readyz" => match stale {
            Some(Some(seconds)) => Some(
                (StatusCode::INTERNAL_SERVER_ERROR, format!("[-]etcd failed: etcd unreachable for {seconds}s\nreadyz check failed\n"))
                    .into_response(),
            ),
            Some(None) => Some((StatusCode::OK, "ok").into_response()),
            None => None,
        },
        Some(_) => None,
    }
}

/// `stale`: `None` for a local store; `Some(None)` for etcd while reachable.
fn overall(endpoint: &str, stale: Option<Option<i64>>, verbose: bool) -> Response {
    if !verbose {
        return (StatusCode::OK, "ok").into_response();
    }
    let mut body = String::from("[+]ping ok\n");
    match stale {
        None => {}
        Some(None) => body.push_str("[+]etcd ok\n"),
        Some(Some(seconds)) => body.push_str(&format!(
            "[+]etcd-watch-cache ok: etcd unreachable for {seconds}s; tokens are reviewed against state up to {seconds}s old, writes fail with 503\n"
        )),
    }
    body.push_str(&format!("{endpoint} check passed\n"));
    (StatusCode::OK, body).into_response()
}
