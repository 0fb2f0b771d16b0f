//! tokenwarden-apiserver: the Kubernetes REST surface of the authority.
//!
//! Every request goes through one [`dispatch`]: parse what it is about ([`RequestInfo`]),
//! authenticate the caller, authorize, then hand it to discovery, the token endpoints
//! (TokenRequest, TokenReview, SelfSubjectReview), OIDC, or the generic object handlers.
//! [`router`] returns a socket-less `Router` so tests can drive it with `oneshot`.

pub mod access;
pub mod audit;
pub mod auth;
pub mod body;
pub mod discovery;
pub mod error;
pub mod exposure;
pub mod fields;
pub mod health;
pub mod oidc;
pub mod patch;
pub mod protobuf;
pub mod registry;
pub mod request;
pub mod resources;
pub mod table;
pub mod tokens;
pub mod watch;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokenwarden_store::Authority;

pub use auth::{AdminCredential, Caller};
pub use error::{ApiError, ApiResult};
pub use request::RequestInfo;

/// What every handler shares.
pub struct ApiState {
    pub authority: Arc<Authority>,
    pub admin: AdminCredential,
    /// The URL clients reach the API at (`https://127.0.0.1:6443`), for `jwks_uri`.
    pub external_url: String,
    /// The discovery document's `jwks_uri` when not under `external_url` (kube-apiserver's
    /// `--service-account-jwks-uri`).
    pub jwks_uri: Option<String>,
    /// Where TokenRequests and TokenReviews are recorded, if anywhere.
    pub audit: Option<audit::AuditLog>,
}

impl ApiState {
    pub fn new(authority: Arc<Authority>, admin: AdminCredential, external_url: impl Into<String>) -> Self {
        Self { authority, admin, external_url: external_url.into(), jwks_uri: None, audit: None }
    }

    #[must_use]
    pub fn with_jwks_uri(mut self, uri: Option<String>) -> Self {
        self.jwks_uri = uri;
        self
    }

    #[must_use]
    pub fn with_audit(mut self, audit: audit::AuditLog) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Records an audit event built by `event`, if auditing is on (nothing is built otherwise).
    pub fn audit(&self, event: impl FnOnce() -> audit::AuditEvent) {
        if let Some(log) = &self.audit {
            log.record(&event());
        }
    }
}

/// The query string, decoded.
#[derive(Clone, Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> ApiResult<Self> {
        match raw {
            None | Some("") => Ok(Self::default()),
            Some(raw) => serde_urlencoded::from_str(raw).map(Self).map_err(|e| ApiError::bad_request(format!("invalid query: {e}"))),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// `?name`, or a true value as Go's `strconv.ParseBool` reads it (the Python client
    /// sends `watch=True`).
    pub fn flag(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| matches!(v, "" | "1" | "t" | "T" | "true" | "TRUE" | "True"))
    }

    pub fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// One authenticated, authorized request, ready for a handler.
pub struct Call {
    pub info: RequestInfo,
    pub caller: Caller,
    pub query: Query,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Call {
    pub fn pretty(&self) -> bool {
        self.query.flag("pretty")
    }

    /// `dryRun=All` (any other value is 400, as kube-apiserver validates it).
    pub fn dry_run(&self) -> ApiResult<bool> {
        let mut dry = false;
        for value in self.query.all("dryRun") {
            match value {
                "All" => dry = true,
                other => {
                    return Err(ApiError::new(
                        422,
                        "Invalid",
                        format!("dryRun: Unsupported value: {}: supported values: \"All\"", tokenwarden_core::error::go_quote(other)),
                    ));
                }
            }
        }
        Ok(dry)
    }

    pub fn field_validation(&self) -> ApiResult<fields::FieldValidation> {
        fields::FieldValidation::parse(self.query.get("fieldValidation"))
    }

    /// The body as one JSON object.
    pub fn object(&self) -> ApiResult<serde_json::Map<String, serde_json::Value>> {
        body::decode_object(&self.headers, &self.body)
    }
}

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new().fallback(dispatch).with_state(state)
}

/// The single entry point: every path, every method.
pub async fn dispatch(State(state): State<Arc<ApiState>>, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let head = method == Method::HEAD;
    let mut response = match handle(&state, method, &uri, headers, body).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    };
    if !response.headers().contains_key(header::CACHE_CONTROL) {
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    }
    if head {
        *response.body_mut() = Body::empty();
    }
    response
}

async fn handle(state: &Arc<ApiState>, method: Method, uri: &Uri, headers: HeaderMap, body: Body) -> ApiResult<Response> {
    let query = Query::parse(uri.query())?;
    let mut info = RequestInfo::parse(&method, uri.path(), query.flag("watch"));
    info.select_name(query.get("fieldSelector"));
    let caller = match admit(state, &info, &headers) {
        Ok(caller) => caller,
        Err(refused) => {
            let (caller, error) = *refused;
            if let Some(kind) = audited(&info) {
                state.audit(|| {
                    let decision = if error.code == 401 { "unauthorized" } else { "forbidden" };
                    let mut event = audit::AuditEvent::new(kind, state.authority.clock().now(), decision);
                    if let Some(caller) = &caller {
                        caller.describe(&mut event);
                    }
                    if kind == "TokenRequest" {
                        event.service_account = format!("{}/{}", info.namespace, info.name);
                    }
                    event.reason.clone_from(&error.message);
                    event
                });
            }
            return Err(error);
        }
    };
    let body = body::read(body).await?;
    let call = Call { info, caller, query, headers, body };

    if !call.info.is_resource {
        return non_resource(state, &call, &method);
    }
    match (call.info.group.as_str(), call.info.resource.as_str(), call.info.subresource.as_str()) {
        // The review APIs are cluster-scoped (LocalSubjectAccessReview is namespaced): on any
        // other path they do not exist, as in kube-apiserver.
        ("authentication.k8s.io" | "authorization.k8s.io", _, _) if call.info.namespace.is_empty() == (call.info.resource == "localsubjectaccessreviews") => {
            Err(ApiError::path_not_found())
        }
        ("authentication.k8s.io", "tokenreviews", "") => tokens::token_review(state, &call),
        ("authentication.k8s.io", "selfsubjectreviews", "") => tokens::self_subject_review(state, &call),
        ("authorization.k8s.io", "selfsubjectaccessreviews", "") => access::self_subject_access_review(state, &call),
        ("authorization.k8s.io", "selfsubjectrulesreviews", "") => access::self_subject_rules_review(state, &call),
        ("authorization.k8s.io", "subjectaccessreviews" | "localsubjectaccessreviews", "") => access::subject_access_review(state, &call),
        ("", "serviceaccounts", "token") => tokens::token_request(state, &call).await,
        _ => resources::handle(state, call).await,
    }
}

/// Authenticates (with impersonation) and authorizes; on refusal, the caller if known.
fn admit(state: &ApiState, info: &RequestInfo, headers: &HeaderMap) -> Result<Caller, Box<(Option<Caller>, ApiError)>> {
    let caller = auth::authenticate(state, headers).map_err(|e| Box::new((None, e)))?;
    // Most requests impersonate no one: no copy of the caller for them.
    let caller = if auth::wants_impersonation(headers) {
        auth::impersonate(state, caller.clone(), headers).map_err(|e| Box::new((Some(caller), e)))?
    } else {
        caller
    };
    match auth::authorize(state, &caller, info) {
        Ok(()) => Ok(caller),
        Err(e) => Err(Box::new((Some(caller), e))),
    }
}

/// The audited calls: TokenRequest and TokenReview.
fn audited(info: &RequestInfo) -> Option<&'static str> {
    match (info.group.as_str(), info.resource.as_str(), info.subresource.as_str()) {
        ("", "serviceaccounts", "token") => Some("TokenRequest"),
        ("authentication.k8s.io", "tokenreviews", "") => Some("TokenReview"),
        _ => None,
    }
}

fn non_resource(state: &ApiState, call: &Call, method: &Method) -> ApiResult<Response> {
    if *method != Method::GET && *method != Method::HEAD {
        return Err(ApiError::method_not_allowed(method.as_str()));
    }
    let path = call.info.path.trim_end_matches('/');
    if let Some(response) = health::respond(state, path, call.query.flag("verbose")) {
        return Ok(response);
    }
    match path {
        "/version" => Ok(body::json(StatusCode::OK, &version(), call.pretty())),
        // kubectl's client-side validation reads this protobuf document; an empty one parses
        // as a Document with no schemas, so validation is skipped and the server validates.
        // The content type is kube-openapi's (the `@v1.0` spelling does not parse in Go).
        "/openapi/v2" => {
            let mut response = (StatusCode::OK, Bytes::new()).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/com.github.proto-openapi.spec.v2.v1.0+protobuf"));
            Ok(response)
        }
        "/.well-known/openid-configuration" => Ok(oidc::configuration(state)),
        "/openid/v1/jwks" => Ok(oidc::jwks(state)),
        _ => discovery::handle(&call.info, call.pretty()).ok_or_else(ApiError::path_not_found),
    }
}

/// `/version`: the Kubernetes release whose API this server follows.
pub fn version() -> serde_json::Value {
    serde_json::json!({
        "major": "1",
        "minor": "32",
        "gitVersion": concat!("v1.32.0-tokenwarden.", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": "linux/amd64",
    })
}
