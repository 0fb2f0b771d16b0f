//! `tokenwarden talker-api`: the echo API of the Authorino guides. Every request is answered
//! 200 with its method, path, query string, headers and body as JSON, so a caller sees what a
//! gateway forwarded (including which credential reached the upstream).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokenwarden_store::clock::random_bytes;

use crate::Failure;
use crate::listeners;

/// Bodies larger than this are refused (413).
const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, clap::Args)]
pub struct TalkerArgs {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: String,
}

pub fn router() -> axum::Router {
    axum::Router::new().fallback(echo).layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
}

async fn echo(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let mut echoed = BTreeMap::new();
    for (name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        echoed.entry(title_case(name.as_str())).and_modify(|v: &mut String| {
            v.push(',');
            v.push_str(&value);
        }).or_insert(value);
    }
    axum::Json(json!({
        "method": method.as_str(),
        "path": uri.path(),
        "query_string": uri.query(),
        "headers": echoed,
        "body": String::from_utf8_lossy(&body),
        "uuid": tokenwarden_core::uuid_v4(random_bytes()),
    }))
    .into_response()
}

/// `x-envoy-expected-rq-timeout-ms` → `X-Envoy-Expected-Rq-Timeout-Ms`, as the guide shows.
fn title_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|first| first.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

pub async fn run(args: TalkerArgs) -> Result<(), Failure> {
    let addr = listeners::optional_listen("--listen", &args.listen)?.ok_or_else(|| Failure::Usage("--listen may not be off".into()))?;
    let listener = listeners::bind(addr)?;
    let local = listener.local_addr().map_err(|e| Failure::Runtime(e.to_string()))?;
    let stop = listeners::shutdown_signal();
    listeners::spawn_http(listener, router(), stop.clone())?;
    eprintln!("tokenwarden: talker-api listening on http://{local}");
    listeners::stopped(stop).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_title_cased() {
        assert_eq!(title_case("x-envoy-expected-rq-timeout-ms"), "X-Envoy-Expected-Rq-Timeout-Ms");
        assert_eq!(title_case("host"), "Host");
    }
}
