//! The one place errors become Kubernetes `Status` responses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokenwarden_core::Error;
use tokenwarden_store::StoreError;

/// An API failure: everything a `Status` object says.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// `details`, omitted when empty.
    pub details: Map<String, Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self { code, reason, message: message.into(), details: Map::new() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 404 for a path nothing serves.
    pub fn path_not_found() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource")
    }

    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(405, "MethodNotAllowed", format!("the server does not allow this method on the requested resource ({method})"))
    }

    /// 413 for a body over `limit` bytes.
    pub fn too_large(limit: usize) -> Self {
        Self::new(413, "RequestEntityTooLarge", format!("Request entity too large: limit is {limit}"))
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf; got {content_type}"))
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        let message = format!("Internal error occurred: {detail}");
        let mut err = Self::new(500, "InternalError", message.clone());
        err.details.insert("causes".into(), json!([{"message": detail.to_string()}]));
        err
    }

    /// 403: `<resource>[.<group>] "<name>" is forbidden: <reason>` (no name: `<resource> is
    /// forbidden: ...`; a path: `forbidden: ...`).
    pub fn forbidden(resource: Option<(&str, &str)>, name: &str, reason: &str) -> Self {
        let (message, details) = match resource {
            Some((group, plural)) => {
                let qualified = if group.is_empty() { plural.to_owned() } else { format!("{plural}.{group}") };
                let mut details = Map::new();
                if !name.is_empty() {
                    details.insert("name".into(), json!(name));
                }
                if !group.is_empty() {
                    details.insert("group".into(), json!(group));
                }
                details.insert("kind".into(), json!(plural.split('/').next().unwrap_or(plural)));
                (tokenwarden_core::error::forbidden_message(&qualified, name, reason), details)
            }
            None => (format!("forbidden: {reason}"), Map::new()),
        };
        Self { code: 403, reason: "Forbidden", message, details }
    }

    /// The `Status` object.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        });
        if !self.details.is_empty() {
            status["details"] = Value::Object(self.details.clone());
        }
        status["code"] = json!(self.code);
        status
    }
}

fn causes_json(causes: &[tokenwarden_core::FieldError]) -> Value {
    causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect()
}

/// Splits `plural[.group]` into (group, plural).
fn split_qualified(qualified: &str) -> (&str, &str) {
    match qualified.split_once('.') {
        Some((plural, group)) => (group, plural),
        None => ("", qualified),
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        let mut api = Self::new(err.code(), err.reason(), err.to_string());
        let mut put = |key: &str, value: &str| {
            if !value.is_empty() {
                api.details.insert(key.into(), json!(value));
            }
        };
        match &err {
            Error::NotFound { resource, name } | Error::AlreadyExists { resource, name } | Error::Conflict { resource, name, .. } => {
                let (group, plural) = split_qualified(resource);
                put("name", name);
                put("group", group);
                put("kind", plural);
            }
            Error::Invalid { kind, group, name, causes } => {
                put("name", name);
                put("group", group);
                put("kind", kind);
                api.details.insert("causes".into(), causes_json(causes));
            }
            Error::Forbidden { resource, name, causes, .. } => {
                let (group, plural) = split_qualified(resource);
                put("name", name);
                put("group", group);
                put("kind", plural);
                api.details.insert("causes".into(), causes_json(causes));
            }
            Error::Internal(detail) => {
                let detail = detail.clone();
                api.details.insert("causes".into(), json!([{"message": detail}]));
            }
            Error::BadRequest(_) | Error::Gone(_) => {}
        }
        api
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Api(err) => err.into(),
            StoreError::Backend(detail) => {
                tracing::error!(%detail, "storage backend failed");
                Self::internal("storage backend failure")
            }
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "storage backend unavailable");
                Self::new(503, "ServiceUnavailable", "storage backend is unavailable; retry later")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (code, self.status().to_string()).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
