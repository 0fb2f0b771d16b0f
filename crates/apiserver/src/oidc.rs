//! `/.well-known/openid-configuration` and `/openid/v1/jwks`, as kube-apiserver serves them.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::ApiState;

fn document(body: String, content_type: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    response
}

pub fn configuration(state: &ApiState) -> Response {
    let keys = state.authority.keys();
    let config = json!({
        "issuer": state.authority.config().signing_issuer(),
        "jwks_uri": state.jwks_uri.clone().unwrap_or_else(|| format!("{}/openid/v1/jwks", state.external_url.trim_end_matches('/'))),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": keys.algorithms(),
    });
    document(config.to_string(), "application/json")
}

pub fn jwks(state: &ApiState) -> Response {
    document(state.authority.keys().jwks().to_string(), "application/jwk-set+json")
}
