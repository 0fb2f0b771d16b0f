//! Who is calling (bearer token: the admin credential, a ServiceAccount token, or nobody) and
//! whether they may. Until RBAC arrives the rule is fixed: the admin may do everything; any
//! authenticated caller may create SelfSubjectReviews and read discovery and the OIDC
//! documents; anyone may read the health and version endpoints.

use axum::http::{HeaderMap, header};
use tokenwarden_core::review::UserInfo;

use crate::ApiState;
use crate::error::{ApiError, ApiResult};
use crate::request::RequestInfo;

/// The admin's user name and groups.
pub const ADMIN_USER: &str = "tokenwarden-admin";
pub const ADMIN_GROUPS: [&str; 2] = ["system:masters", "system:authenticated"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallerKind {
    Admin,
    ServiceAccount,
    Anonymous,
}

#[derive(Clone, Debug)]
pub struct Caller {
    pub kind: CallerKind,
    pub user: UserInfo,
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
    Caller {
        kind: CallerKind::Anonymous,
        user: UserInfo {
            username: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
            ..UserInfo::default()
        },
    }
}

/// The bearer token of a request, if any (`Authorization: Bearer <token>`).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// Authenticates a request. A presented but invalid token is 401, as kube-apiserver answers;
/// no token at all is `system:anonymous`.
pub fn authenticate(state: &ApiState, headers: &HeaderMap) -> ApiResult<Caller> {
    let Some(token) = bearer_token(headers) else {
        return Ok(anonymous());
    };
    if state.admin.matches(token) {
        return Ok(Caller {
            kind: CallerKind::Admin,
            user: UserInfo {
                username: ADMIN_USER.into(),
                groups: ADMIN_GROUPS.iter().map(|g| (*g).to_owned()).collect(),
                ..UserInfo::default()
            },
        });
    }
    match state.authority.review(token, &[]) {
        Ok(reviewed) => Ok(Caller { kind: CallerKind::ServiceAccount, user: reviewed.token.user.clone() }),
        Err(_) => Err(ApiError::unauthorized()),
    }
}

/// Non-resource paths anyone may read (kube's `system:public-info-viewer`), and the OIDC
/// documents when `public_discovery` is set.
fn is_public(path: &str, public_discovery: bool) -> bool {
    matches!(path, "/healthz" | "/livez" | "/readyz" | "/version" | "/version/")
        || (public_discovery && matches!(path, "/.well-known/openid-configuration" | "/openid/v1/jwks"))
}

/// The fixed pre-RBAC policy; the error is kube-apiserver's Forbidden Status.
/// `public_discovery`: anonymous callers may read OIDC discovery and the JWKS.
pub fn authorize(caller: &Caller, info: &RequestInfo, public_discovery: bool) -> ApiResult<()> {
    if caller.kind == CallerKind::Admin {
        return Ok(());
    }
    let authenticated = caller.kind != CallerKind::Anonymous;
    let allowed = if info.is_resource {
        authenticated
            && info.verb == "create"
            && info.group == "authentication.k8s.io"
            && info.resource == "selfsubjectreviews"
    } else {
        is_public(&info.path, public_discovery) || authenticated
    };
    if allowed {
        return Ok(());
    }
    let user = tokenwarden_core::error::go_quote(&caller.user.username);
    if !info.is_resource {
        return Err(ApiError::forbidden(None, "", &format!("User {user} cannot {} path {}", info.verb, tokenwarden_core::error::go_quote(&info.path))));
    }
    let scope = if info.namespace.is_empty() {
        "at the cluster scope".to_owned()
    } else {
        format!("in the namespace {}", tokenwarden_core::error::go_quote(&info.namespace))
    };
    let reason = format!(
        "User {user} cannot {} resource {} in API group {} {scope}",
        info.verb,
        tokenwarden_core::error::go_quote(&info.resource_path()),
        tokenwarden_core::error::go_quote(&info.group),
    );
    Err(ApiError::forbidden(Some((&info.group, &info.resource)), &info.name, &reason))
}
