//! `authorization.k8s.io/v1`: SelfSubjectAccessReview (`kubectl auth can-i`),
//! SelfSubjectRulesReview (`kubectl auth can-i --list`), SubjectAccessReview (what an
//! authorizer such as Authorino's `kubernetesSubjectAccessReview` asks) and
//! LocalSubjectAccessReview, answered from the same RBAC policy that guards this API.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokenwarden_core::error::{FieldError, go_quote};
use tokenwarden_core::rbac::Request;
use tokenwarden_core::review::UserInfo;

use crate::error::{ApiError, ApiResult};
use crate::{ApiState, Call, body, fields};

const GROUP: &str = "authorization.k8s.io";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ResourceAttributes {
    namespace: String,
    verb: String,
    group: String,
    resource: String,
    subresource: String,
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct NonResourceAttributes {
    path: String,
    verb: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Spec {
    resource_attributes: Option<ResourceAttributes>,
    non_resource_attributes: Option<NonResourceAttributes>,
    user: String,
    groups: Vec<String>,
    uid: String,
    extra: BTreeMap<String, Vec<String>>,
    namespace: String,
}

fn invalid(kind: &str, causes: Vec<FieldError>) -> ApiError {
    tokenwarden_core::Error::Invalid { kind: kind.to_owned(), group: GROUP.to_owned(), name: String::new(), causes }.into()
}

/// The body as `kind`, its spec parsed.
fn read(call: &Call, kind: &str) -> ApiResult<(Map<String, Value>, Spec, Vec<String>)> {
    if call.info.verb != "create" {
        return Err(ApiError::method_not_allowed(call.info.verb));
    }
    if call.info.version != "v1" {
        return Err(ApiError::path_not_found());
    }
    let api_version = format!("{GROUP}/v1");
    let object = call.object()?;
    crate::tokens::check_type(&object, &api_version, kind)?;
    let warnings = call.field_validation()?.check(&Value::Object(object.clone()), &fields::SPEC_AND_STATUS, kind, &api_version)?;
    let spec = match object.get("spec") {
        None | Some(Value::Null) => Spec::default(),
        Some(spec) => serde_json::from_value(spec.clone())
            .map_err(|e| ApiError::bad_request(format!("{kind} in version \"v1\" cannot be handled as a {kind}: {e}")))?,
    };
    Ok((object, spec, warnings))
}

/// The request an access review asks about; kube's validation messages when it names none or
/// both kinds.
fn reviewed_request<'a>(spec: &'a Spec, kind: &str) -> ApiResult<Request<'a>> {
    match (&spec.resource_attributes, &spec.non_resource_attributes) {
        (Some(r), None) => Ok(Request {
            verb: &r.verb,
            is_resource: true,
            namespace: &r.namespace,
            api_group: &r.group,
            resource: &r.resource,
            subresource: &r.subresource,
            name: &r.name,
            path: "",
        }),
        (None, Some(n)) => Ok(Request { verb: &n.verb, path: &n.path, ..Request::default() }),
        (None, None) => Err(invalid(
            kind,
            vec![FieldError::required("spec.resourceAttributes", "exactly one of nonResourceAttributes or resourceAttributes must be specified")],
        )),
        (Some(_), Some(_)) => Err(invalid(
            kind,
            vec![FieldError::invalid("spec.nonResourceAttributes", "", "cannot be specified in combination with resourceAttributes")],
        )),
    }
}

/// The request echoed with its status, as kube-apiserver answers (201).
fn answer(call: &Call, kind: &str, mut object: Map<String, Value>, status: Value, warnings: &[String]) -> Response {
    object.insert("apiVersion".into(), json!(format!("{GROUP}/v1")));
    object.insert("kind".into(), json!(kind));
    object.entry("metadata").or_insert_with(|| json!({"creationTimestamp": null}));
    object.insert("status".into(), status);
    body::with_warnings(body::json(StatusCode::CREATED, &Value::Object(object), call.pretty()), warnings)
}

fn decision(state: &ApiState, user: &UserInfo, request: &Request<'_>) -> Value {
    match state.authority.index().authorize(user, request) {
        Ok(reason) if reason.is_empty() => json!({"allowed": true}),
        Ok(reason) => json!({"allowed": true, "reason": reason}),
        Err(denial) if denial.is_empty() => json!({"allowed": false}),
        Err(denial) => json!({"allowed": false, "reason": denial}),
    }
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`
pub fn self_subject_access_review(state: &ApiState, call: &Call) -> ApiResult<Response> {
    const KIND: &str = "SelfSubjectAccessReview";
    let (object, spec, warnings) = read(call, KIND)?;
    let status = decision(state, &call.caller.user, &reviewed_request(&spec, KIND)?);
    Ok(answer(call, KIND, object, status, &warnings))
}

/// `POST /apis/authorization.k8s.io/v1/subjectaccessreviews`, and the namespaced
/// `.../namespaces/{ns}/localsubjectaccessreviews`.
pub fn subject_access_review(state: &ApiState, call: &Call) -> ApiResult<Response> {
    let local = call.info.resource == "localsubjectaccessreviews";
    let kind = if local { "LocalSubjectAccessReview" } else { "SubjectAccessReview" };
    let (object, spec, warnings) = read(call, kind)?;
    let request = reviewed_request(&spec, kind)?;
    if spec.user.is_empty() && spec.groups.is_empty() {
        return Err(invalid(kind, vec![FieldError::invalid("spec.user", "\"\"", "at least one of user or group must be specified")]));
    }
    if local && !request.is_resource {
        return Err(invalid(kind, vec![FieldError::invalid("spec.nonResourceAttributes", "", "disallowed on this kind of request")]));
    }
    if local && request.namespace != call.info.namespace {
        return Err(invalid(kind, vec![FieldError::invalid("spec.resourceAttributes.namespace", go_quote(request.namespace), "must match metadata.namespace")]));
    }
    let user = UserInfo { username: spec.user.clone(), uid: spec.uid.clone(), groups: spec.groups.clone(), extra: spec.extra.clone() };
    let status = decision(state, &user, &request);
    Ok(answer(call, kind, object, status, &warnings))
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectrulesreviews`: every rule that applies to
/// the caller in `spec.namespace`.
pub fn self_subject_rules_review(state: &ApiState, call: &Call) -> ApiResult<Response> {
    const KIND: &str = "SelfSubjectRulesReview";
    let (object, spec, warnings) = read(call, KIND)?;
    if spec.namespace.is_empty() {
        // kube-apiserver's answer: the rules of no namespace in particular are not listed.
        return Err(ApiError::bad_request("no namespace on request"));
    }
    let rules = state.authority.index().rules_for(&call.caller.user, &spec.namespace);
    let (mut resource_rules, mut non_resource_rules) = (Vec::new(), Vec::new());
    for rule in rules {
        if rule.non_resource_urls.is_empty() {
            let mut entry = json!({"verbs": rule.verbs, "apiGroups": rule.api_groups, "resources": rule.resources});
            if !rule.resource_names.is_empty() {
                entry["resourceNames"] = json!(rule.resource_names);
            }
            resource_rules.push(entry);
        } else {
            non_resource_rules.push(json!({"verbs": rule.verbs, "nonResourceURLs": rule.non_resource_urls}));
        }
    }
    let mut status = json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": false});
    // kube lists the rules it could read and says what it could not.
    let errors = state.authority.index().missing_roles(&call.caller.user, &spec.namespace);
    if !errors.is_empty() {
        status["evaluationError"] = json!(tokenwarden_core::rbac::go_error_aggregate(&errors));
    }
    Ok(answer(call, KIND, object, status, &warnings))
}
