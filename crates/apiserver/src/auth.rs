//! Who is calling (bearer token: the admin credential, a ServiceAccount token, or nobody; then
//! impersonation headers) and whether RBAC lets them (`tokenwarden_core::rbac`, evaluated
//! from the in-memory index). The admin is in `system:masters`, bound to `cluster-admin`.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, header};
use tokenwarden_core::rbac::{self, Request};
use tokenwarden_core::{Object, Resource};
use tokenwarden_core::review::UserInfo;

use crate::ApiState;
use crate::error::{ApiError, ApiResult};
use crate::request::RequestInfo;

/// The admin's user name and groups.
pub const ADMIN_USER: &str = "tokenwarden-admin";
pub const ADMIN_GROUPS: [&str; 2] = ["system:masters", "system:authenticated"];

/// Who a request acts as.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user: UserInfo,
    /// The authenticated user's name when `user` is impersonated (`Impersonate-*` headers).
    pub impersonated_by: Option<String>,
}

impl Caller {
    fn new(user: UserInfo) -> Self {
        Self { user, impersonated_by: None }
    }

    /// Who authenticated: the impersonator, else the user.
    pub fn authenticated_name(&self) -> &str {
        self.impersonated_by.as_deref().unwrap_or(&self.user.username)
    }

    /// Names the caller in an audit record: who authenticated, and whom it impersonated.
    pub fn describe(&self, event: &mut crate::audit::AuditEvent) {
        event.caller = self.authenticated_name().to_owned();
        if self.impersonated_by.is_some() {
            event.impersonated_user.clone_from(&self.user.username);
        }
    }
}

/// SHA-256 of the admin bearer token; the token itself is not kept in memory.
#[derive(Clone)]
pub struct AdminCredential([u8; 32]);

impl AdminCredential {
    pub fn from_token(token: &str) -> Self {
        Self::from_digest(sha256(token.as_bytes()))
    }

    pub fn from_digest(digest: [u8; 32]) -> Self {
        Self(digest)
    }

    /// Constant-time comparison of digests.
    fn matches(&self, token: &str) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(&self.0, &sha256(token.as_bytes())).is_ok()
    }
}

pub use tokenwarden_core::sha256;

fn anonymous() -> Caller {
    Caller::new(UserInfo { username: "system:anonymous".into(), groups: vec!["system:unauthenticated".into()], ..UserInfo::default() })
}

/// The bearer token of a request, if any (`Authorization: Bearer <token>`).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    bearer(headers.get(header::AUTHORIZATION)?.to_str().ok()?)
}

/// The token of an `Authorization` value as kube-apiserver's bearer authenticator reads it:
/// surrounding whitespace trimmed, then the field after the first single space (`Bearer  x`
/// has an empty one: no token).
pub fn bearer(value: &str) -> Option<&str> {
    let mut fields = value.trim().splitn(3, ' ');
    let (scheme, token) = (fields.next()?, fields.next()?);
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Authenticates a request. A presented but invalid token is 401, as kube-apiserver answers;
/// no token at all is `system:anonymous`.
pub fn authenticate(state: &ApiState, headers: &HeaderMap) -> ApiResult<Caller> {
    let Some(token) = bearer_token(headers) else {
        return Ok(anonymous());
    };
    if state.admin.matches(token) {
        return Ok(Caller::new(UserInfo {
            username: ADMIN_USER.into(),
            groups: ADMIN_GROUPS.iter().map(|g| (*g).to_owned()).collect(),
            ..UserInfo::default()
        }));
    }
    match state.authority.review(token, &[]).result {
        Ok(reviewed) => Ok(Caller::new(reviewed.token.user())),
        Err(_) => Err(ApiError::unauthorized()),
    }
}

/// The request's attributes as RBAC reads them.
pub fn rbac_request(info: &RequestInfo) -> Request<'_> {
    Request {
        verb: info.verb,
        is_resource: info.is_resource,
        namespace: &info.namespace,
        api_group: &info.group,
        resource: &info.resource,
        subresource: &info.subresource,
        name: info.authorized_name(),
        path: &info.path,
    }
}

/// kube-apiserver's Forbidden Status for `user` asking `request`, with RBAC's `denial` reason
/// after the message when it has one.
pub fn forbidden(user: &str, request: &Request<'_>, denial: &str) -> ApiError {
    let mut reason = request.forbidden_reason(user);
    if !denial.is_empty() {
        reason.push_str(": ");
        reason.push_str(denial);
    }
    if request.is_resource {
        ApiError::forbidden(Some((request.api_group, request.resource)), request.name, &reason)
    } else {
        ApiError::forbidden(None, "", &reason)
    }
}

/// RBAC decides (members of `system:masters` may do everything).
pub fn authorize(state: &ApiState, caller: &Caller, info: &RequestInfo) -> ApiResult<()> {
    let request = rbac_request(info);
    match state.authority.index().authorize(&caller.user, &request) {
        Ok(_) => Ok(()),
        Err(denial) => Err(forbidden(&caller.user.username, &request, &denial)),
    }
}

/// No privilege escalation through RBAC objects (kube's RBAC storage): a Role or ClusterRole
/// may only grant what its writer holds, unless the writer may `escalate`; a binding may only
/// bind a role whose rules its writer holds, unless the writer may `bind` that role.
/// Members of `system:masters` hold everything. `request_name` is the name in the URL (none
/// on a create): `escalate` limited by `resourceNames` applies to it, as kube checks it.
pub fn confirm_no_escalation(state: &ApiState, caller: &Caller, resource: &Resource, request_name: &str, object: &Object) -> ApiResult<()> {
    let index = state.authority.index();
    // The request's namespace: a cluster-scoped object's body cannot pick one.
    let namespace = if resource.namespaced { object.namespace() } else { "" };
    let allowed = |verb: &'static str, plural: &'static str, namespace: &str, name: &str| {
        let request = Request { verb, is_resource: true, namespace, api_group: rbac::GROUP, resource: plural, name, ..Request::default() };
        index.authorize(&caller.user, &request).is_ok()
    };
    let granted = match resource.plural {
        "roles" | "clusterroles" => {
            if allowed("escalate", resource.plural, namespace, request_name) {
                return Ok(());
            }
            rbac::rules_of(object)
        }
        "rolebindings" | "clusterrolebindings" => {
            let role_ref = rbac::role_ref(object);
            let plural = if role_ref.kind == "Role" { "roles" } else { "clusterroles" };
            if allowed("bind", plural, namespace, &role_ref.name) {
                return Ok(());
            }
            // A missing role: kube answers its NotFound.
            index
                .referenced_rules(&role_ref, namespace)
                .ok_or_else(|| ApiError::from(tokenwarden_core::Error::not_found(format!("{plural}.{}", rbac::GROUP), role_ref.name.clone())))?
        }
        _ => return Ok(()),
    };
    let missing = rbac::uncovered(&index.rules_for(&caller.user, namespace), &granted);
    if missing.is_empty() {
        return Ok(());
    }
    Err(ApiError::forbidden(Some((rbac::GROUP, resource.plural)), object.name(), &rbac::escalation_reason(&caller.user, &missing)))
}

/// Whether the request carries any `Impersonate-*` header.
pub fn wants_impersonation(headers: &HeaderMap) -> bool {
    headers.keys().any(|name| name.as_str().starts_with("impersonate-"))
}

/// `Impersonate-User`, `-Group`, `-Uid` and `-Extra-*`: act as someone else, if RBAC lets the
/// caller `impersonate` each of them (kube-apiserver's impersonation filter). Returns the
/// caller unchanged when no impersonation header is present.
pub fn impersonate(state: &ApiState, caller: Caller, headers: &HeaderMap) -> ApiResult<Caller> {
    let values = |name: &str| headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect::<Vec<String>>();
    let user = values("impersonate-user").into_iter().next();
    let groups = values("impersonate-group");
    let uid = values("impersonate-uid").into_iter().next();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix("impersonate-extra-")
            && let Ok(value) = value.to_str()
        {
            let key = percent_decode(key);
            extra.entry(key).or_default().push(value.to_owned());
        }
    }
    let Some(username) = user else {
        if groups.is_empty() && uid.is_none() && extra.is_empty() {
            return Ok(caller);
        }
        return Err(ApiError::new(400, "BadRequest", "requested impersonation of groups, extra or uid without impersonating a user"));
    };
    let index = state.authority.index();
    let check = |request: Request<'_>| match index.authorize(&caller.user, &request) {
        Ok(_) => Ok(()),
        Err(denial) => Err(forbidden(&caller.user.username, &request, &denial)),
    };
    let mut impersonated_groups = groups.clone();
    match tokenwarden_core::claims::split_username(&username) {
        Some((namespace, name)) => {
            check(impersonation("", "serviceaccounts", namespace, name))?;
            if groups.is_empty() {
                impersonated_groups = vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{namespace}")];
            }
        }
        None => check(impersonation("", "users", "", &username))?,
    }
    for group in &groups {
        check(impersonation("", "groups", "", group))?;
    }
    if let Some(uid) = &uid {
        check(impersonation("authentication.k8s.io", "uids", "", uid))?;
    }
    for (key, values) in &extra {
        for value in values {
            check(Request { subresource: key, ..impersonation("authentication.k8s.io", "userextras", "", value) })?;
        }
    }
    if username == "system:anonymous" {
        if !impersonated_groups.iter().any(|g| g == "system:unauthenticated") {
            impersonated_groups.push("system:unauthenticated".into());
        }
    } else if !impersonated_groups.iter().any(|g| g == "system:authenticated" || g == "system:unauthenticated") {
        impersonated_groups.push("system:authenticated".into());
    }
    Ok(Caller {
        user: UserInfo { username, uid: uid.unwrap_or_default(), groups: impersonated_groups, extra },
        impersonated_by: Some(caller.user.username),
    })
}

/// `impersonate` on one resource: what acting as someone needs.
fn impersonation<'a>(api_group: &'a str, resource: &'a str, namespace: &'a str, name: &'a str) -> Request<'a> {
    Request { verb: "impersonate", is_resource: true, api_group, resource, namespace, name, ..Request::default() }
}

/// `%XX` escapes in an `Impersonate-Extra-` key (kube allows them for characters that are
/// not legal in header names).
fn percent_decode(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                out.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
