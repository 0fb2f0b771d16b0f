//! Request bodies in (JSON or YAML, at most 3 MiB) and JSON responses out.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// kube-apiserver's request body limit.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// How long a client may take to send its body.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads a whole body; over [`MAX_BODY_BYTES`] is 413, slower than [`BODY_READ_TIMEOUT`] is 408.
pub async fn read(body: Body) -> ApiResult<Bytes> {
    read_at_most(body, MAX_BODY_BYTES).await
}

/// [`read`] with another size limit.
pub async fn read_at_most(body: Body, limit: usize) -> ApiResult<Bytes> {
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, limit)).await;
    let Ok(read) = read else {
        return Err(ApiError::new(408, "Timeout", format!("the request body was not received within {} s", BODY_READ_TIMEOUT.as_secs())));
    };
    read.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.to_string().contains("length limit exceeded"))
            || e.to_string().contains("length limit exceeded");
        if too_large { ApiError::too_large(limit) } else { ApiError::bad_request(format!("error reading the request body: {e}")) }
    })
}

fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Decodes a body as JSON (also when no Content-Type is sent, as `kubectl create --raw` does)
/// or YAML. Anything that is not one JSON/YAML object is 400.
pub fn decode(headers: &HeaderMap, bytes: &[u8]) -> ApiResult<Value> {
    let media = media_type(headers);
    let value: Value = match media.as_str() {
        "application/yaml" | "application/x-yaml" | "text/yaml" | "application/apply-patch+yaml" => {
            let text = std::str::from_utf8(bytes).map_err(|_| ApiError::bad_request("the body is not valid UTF-8"))?;
            serde_saphyr::from_str(text).map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {}", first_line(&e.to_string()))))?
        }
        "" | "application/json" | "application/merge-patch+json" | "application/strategic-merge-patch+json" | "application/json-patch+json"
        | "*/*" | "text/plain" | "application/x-www-form-urlencoded" => serde_json::from_slice(bytes)
            .map_err(|e| ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}")))?,
        "application/vnd.kubernetes.protobuf" => crate::protobuf::decode(bytes)?,
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    Ok(value)
}

/// Decodes a body that must be a JSON object.
pub fn decode_object(headers: &HeaderMap, bytes: &[u8]) -> ApiResult<serde_json::Map<String, Value>> {
    match decode(headers, bytes)? {
        Value::Object(map) => Ok(map),
        other => Err(ApiError::bad_request(format!(
            "couldn't get version/kind; json parse error: json: cannot unmarshal {} into Go value of type struct {{ APIVersion string \"json:\\\"apiVersion,omitempty\\\"\"; Kind string \"json:\\\"kind,omitempty\\\"\" }}",
            json_type(&other)
        ))),
    }
}

/// A JSON value's type as Go's decoder names it in its errors.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// A JSON response; `pretty` indents it (the `pretty` query parameter).
pub fn json(code: StatusCode, value: &Value, pretty: bool) -> Response {
    let text = if pretty { serde_json::to_string_pretty(value) } else { serde_json::to_string(value) };
    let mut response = (code, text.unwrap_or_default()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Adds `Warning: 299 - "<text>"` headers.
pub fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for warning in warnings {
        let text = format!("299 - {}", tokenwarden_core::error::go_quote(warning));
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}
