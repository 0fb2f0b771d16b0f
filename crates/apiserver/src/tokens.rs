//! TokenRequest, TokenReview (v1 and v1beta1) and SelfSubjectReview.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize as _;
use serde_json::{Map, Value, json};
use tokenwarden_core::token_request::{TokenRequestInput, TokenRequestSpec};
use tokenwarden_core::{Error, Resource};
use tokenwarden_store::StoreError;

use crate::audit::{AuditEvent, BoundObject};
use crate::error::{ApiError, ApiResult};
use crate::{ApiState, Call, body, fields};

const AUTHENTICATION: &str = "authentication.k8s.io";

/// A body's `apiVersion`/`kind`, if present, must name what the URL serves.
pub(crate) fn check_type(object: &Map<String, Value>, api_version: &str, kind: &str) -> ApiResult<()> {
    let field = |name: &str| object.get(name).and_then(Value::as_str).unwrap_or("");
    let (sent_version, sent_kind) = (field("apiVersion"), field("kind"));
    if (!sent_version.is_empty() && sent_version != api_version) || (!sent_kind.is_empty() && sent_kind != kind) {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({sent_version}) does not match the expected API version ({api_version})"
        )));
    }
    Ok(())
}

fn meta_str<'a>(object: &'a Map<String, Value>, field: &str) -> &'a str {
    object.get("metadata").and_then(|m| m.get(field)).and_then(Value::as_str).unwrap_or("")
}

/// `POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token`
pub async fn token_request(state: &ApiState, call: &Call) -> ApiResult<Response> {
    if call.info.verb != "create" {
        return Err(ApiError::method_not_allowed(call.info.verb));
    }
    call.dry_run()?; // validated; like kube-apiserver, a dry run still mints
    let object = call.object()?;
    check_type(&object, "authentication.k8s.io/v1", "TokenRequest")?;
    let mut warnings = call.field_validation()?.check(&Value::Object(object.clone()), &fields::TOKEN_REQUEST, "TokenRequest", "authentication.k8s.io/v1")?;
    let spec: TokenRequestSpec = match object.get("spec") {
        None | Some(Value::Null) => TokenRequestSpec::default(),
        Some(spec) => TokenRequestSpec::deserialize(spec).map_err(|e| {
            ApiError::bad_request(format!("TokenRequest in version \"v1\" cannot be handled as a TokenRequest: {e}"))
        })?,
    };
    let input = TokenRequestInput {
        namespace: call.info.namespace.clone(),
        service_account: call.info.name.clone(),
        metadata_name: meta_str(&object, "name").to_owned(),
        metadata_namespace: meta_str(&object, "namespace").to_owned(),
        spec,
    };
    let bound = input.spec.bound_object_ref.clone();
    let record = |decision: &'static str| {
        let mut event = AuditEvent::new("TokenRequest", state.authority.clock().now(), decision);
        call.caller.describe(&mut event);
        event.service_account = format!("{}/{}", call.info.namespace, call.info.name);
        event
    };
    let issued = match state.authority.request_token(input).await {
        Ok(issued) => issued,
        Err(e) => {
            let error = namespace_missing(state, &call.info.namespace, e).await;
            state.audit(|| AuditEvent { reason: error.message.clone(), ..record("failed") });
            return Err(error);
        }
    };
    tracing::info!(namespace = %call.info.namespace, serviceaccount = %call.info.name, jti = %issued.jti, "issued token");
    state.audit(|| AuditEvent {
        audiences: issued.spec.audiences.clone(),
        expiration_timestamp: issued.expiration_timestamp.to_string(),
        bound_object: bound.map(|b| BoundObject { kind: b.kind, name: b.name, uid: b.uid }),
        jti: issued.jti.clone(),
        ..record("issued")
    });
    warnings.extend(issued.warnings.iter().cloned());
    let response = json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {
            "name": call.info.name,
            "namespace": call.info.namespace,
            "creationTimestamp": issued.issued_at.to_string(),
        },
        "spec": issued.spec,
        "status": {
            "token": issued.token,
            "expirationTimestamp": issued.expiration_timestamp.to_string(),
        },
    });
    Ok(body::with_warnings(body::json(StatusCode::CREATED, &response, call.pretty()), &warnings))
}

/// kube-apiserver's namespace lifecycle admission answers a TokenRequest in a namespace that does
/// not exist with the namespace's NotFound. Asked only once the ServiceAccount was not found
/// (the index holds no ServiceAccount of a missing namespace), so issuance reads no store.
async fn namespace_missing(state: &ApiState, namespace: &str, error: StoreError) -> ApiError {
    let service_account_missing = matches!(&error, StoreError::Api(Error::NotFound { resource, .. }) if resource == "serviceaccounts");
    if service_account_missing
        && let Err(StoreError::Api(missing @ Error::NotFound { .. })) = state.authority.store().get(&Resource::NAMESPACES, "", namespace).await
    {
        return missing.into();
    }
    error.into()
}

/// The token kube-apiserver reviews: it puts `spec.token` into an `Authorization: Bearer` header
/// and reads it back as its bearer-token authenticator does (`strings.TrimSpace`, then the field
/// after the first space), so a trailing newline goes and the token ends at a space. Empty:
/// not authenticated, and no error. The rule of [`crate::auth::bearer`] applied to
/// `Bearer <token>`, without building that string.
fn presented_token(token: &str) -> &str {
    token.trim_end().split(' ').next().unwrap_or_default()
}

/// A body field of the wrong JSON type, in the words of Go's decoder.
fn go_type_error(kind: &str, version: &str, field: &str, go_type: &str, value: &Value) -> ApiError {
    let found = body::json_type(value);
    ApiError::bad_request(format!(
        "{kind} in version {version:?} cannot be handled as a {kind}: json: cannot unmarshal {found} into Go struct field {kind}Spec.spec.{field} of type {go_type}"
    ))
}

/// `POST /apis/authentication.k8s.io/{v1,v1beta1}/tokenreviews`: the request echoed with its
/// status (kube-apiserver's webhook authenticator sends v1beta1; the shapes are the same).
pub fn token_review(state: &ApiState, call: &Call) -> ApiResult<Response> {
    if call.info.verb != "create" {
        return Err(ApiError::method_not_allowed(call.info.verb));
    }
    let api_version = format!("{AUTHENTICATION}/{}", call.info.version);
    if !matches!(call.info.version.as_str(), "v1" | "v1beta1") {
        return Err(ApiError::path_not_found());
    }
    let object = call.object()?;
    check_type(&object, &api_version, "TokenReview")?;
    call.dry_run()?;
    let warnings = call.field_validation()?.check(&Value::Object(object.clone()), &fields::TOKEN_REVIEW, "TokenReview", &api_version)?;
    let spec = object.get("spec").cloned().unwrap_or(Value::Null);
    let token = match spec.get("token") {
        None | Some(Value::Null) => "",
        Some(Value::String(token)) => token.as_str(),
        Some(other) => return Err(go_type_error("TokenReview", &call.info.version, "token", "string", other)),
    };
    if token.is_empty() {
        return Err(ApiError::bad_request("token is required for TokenReview in authentication"));
    }
    let audiences: Vec<String> = match spec.get("audiences") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => match items.iter().find(|item| !item.is_string()) {
            Some(item) => return Err(go_type_error("TokenReview", &call.info.version, "audiences", "string", item)),
            None => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        },
        Some(other) => return Err(go_type_error("TokenReview", &call.info.version, "audiences", "[]string", other)),
    };
    let token = presented_token(token);
    if token.is_empty() {
        return Ok(token_review_answer(object, spec, json!({"user": {}}), &api_version, call, &warnings));
    }
    let reviewed = state.authority.review(token, &audiences).result;
    state.audit(|| {
        let now = state.authority.clock().now();
        let mut event = match &reviewed {
            Ok(reviewed) => {
                let mut event = AuditEvent::new("TokenReview", now, "authenticated").with_verified_token(&reviewed.token);
                if let Some((namespace, name)) = tokenwarden_core::claims::split_username(&reviewed.token.user().username) {
                    event.service_account = format!("{namespace}/{name}");
                }
                event.audiences.clone_from(&reviewed.audiences);
                event
            }
            Err(err) => AuditEvent { reason: err.status_error(), audiences: audiences.clone(), ..AuditEvent::new("TokenReview", now, "unauthenticated") },
        };
        call.caller.describe(&mut event);
        event
    });
    let status = match reviewed {
        Ok(reviewed) => json!({
            "authenticated": true,
            "user": reviewed.token.user(),
            "audiences": reviewed.audiences,
        }),
        Err(err) => json!({"user": {}, "error": err.status_error()}),
    };
    Ok(token_review_answer(object, spec, status, &api_version, call, &warnings))
}

/// The TokenReview echoed with its `status`.
fn token_review_answer(mut object: Map<String, Value>, spec: Value, status: Value, api_version: &str, call: &Call, warnings: &[String]) -> Response {
    object.insert("apiVersion".into(), json!(api_version));
    object.insert("kind".into(), json!("TokenReview"));
    object.entry("metadata").or_insert_with(|| json!({"creationTimestamp": null}));
    object.insert("spec".into(), spec);
    object.insert("status".into(), status);
    body::with_warnings(body::json(StatusCode::CREATED, &Value::Object(object), call.pretty()), warnings)
}

/// `POST /apis/authentication.k8s.io/v1/selfsubjectreviews`: who the caller is.
pub fn self_subject_review(state: &ApiState, call: &Call) -> ApiResult<Response> {
    if call.info.verb != "create" {
        return Err(ApiError::method_not_allowed(call.info.verb));
    }
    let api_version = format!("{AUTHENTICATION}/{}", call.info.version);
    if !matches!(call.info.version.as_str(), "v1" | "v1beta1") {
        return Err(ApiError::path_not_found());
    }
    let object = call.object()?;
    check_type(&object, &api_version, "SelfSubjectReview")?;
    let warnings = call.field_validation()?.check(&Value::Object(object), &fields::SELF_SUBJECT_REVIEW, "SelfSubjectReview", &api_version)?;
    let response = json!({
        "kind": "SelfSubjectReview",
        "apiVersion": api_version,
        // kube-apiserver stamps the review with the time it answered.
        "metadata": {"creationTimestamp": state.authority.clock().now().to_string()},
        "status": {"userInfo": call.caller.user},
    });
    Ok(body::with_warnings(body::json(StatusCode::CREATED, &response, call.pretty()), &warnings))
}
