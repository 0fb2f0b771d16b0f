//! TokenReview: the checks kube-apiserver's service-account authenticator makes, split in two
//! so a cache can keep the expensive half.
//!
//! [`verify`] checks the signature and parses the claims (pure crypto: cacheable until the
//! token expires). [`authenticate`] checks audiences, time and the live objects the token
//! names (cheap: memory lookups), and must run on every review, cached or not.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::claims::{Claims, LEGACY_ISSUER, split_username};
use crate::error::go_quote_list;
use crate::jwt::{self, JwtError};
use crate::keys::KeySet;
use crate::lookup::ObjectLookup;
use crate::token_request::IssuerConfig;
use crate::Timestamp;

/// go-jose's leeway for `exp`, `nbf` and `iat`, and the grace for deletions.
pub const LEEWAY_SECONDS: i64 = 60;

/// The authenticated user, as `status.user` of a TokenReview.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Why a review failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReviewError {
    /// Not a token of this authority (garbage, unknown issuer, unsupported alg).
    NotMine,
    /// This authority's token, refused for the reason given.
    Rejected(String),
}

impl ReviewError {
    /// `status.error` exactly as kube-apiserver aggregates it: its loopback authenticator
    /// always adds `invalid bearer token`, and identical messages are deduplicated.
    pub fn status_error(&self) -> String {
        match self {
            Self::NotMine => "invalid bearer token".to_owned(),
            Self::Rejected(reason) => format!("[invalid bearer token, {reason}]"),
        }
    }

    fn rejected(reason: impl Into<String>) -> Self {
        Self::Rejected(reason.into())
    }
}

/// A token whose signature verified, with its user info prepared.
#[derive(Clone, Debug)]
pub struct VerifiedToken {
    pub claims: Claims,
    /// Issued by the legacy tokens controller (issuer `kubernetes/serviceaccount`).
    pub legacy: bool,
    /// SHA-256 of the token, kept for legacy tokens (compared with the Secret's copy).
    token_sha256: Option<[u8; 32]>,
    /// A legacy token's missing or inconsistent claims, reported after the audience check as
    /// kube-apiserver orders its checks.
    legacy_claims_error: Option<ReviewError>,
    pub user: UserInfo,
}

/// Signature, `kid` and claim parsing: the part of a review worth caching.
pub fn verify(token: &str, keys: &KeySet, config: &IssuerConfig) -> Result<VerifiedToken, ReviewError> {
    let accepts = |iss: &str| iss == LEGACY_ISSUER || config.issuers.iter().any(|i| i == iss);
    let claims = jwt::verify(token, keys, accepts).map_err(|e| match e {
        JwtError::NotMine => ReviewError::NotMine,
        JwtError::NoKeys => ReviewError::rejected("invalid signature, no keys found"),
        JwtError::BadSignature => ReviewError::rejected("go-jose/go-jose: error in cryptographic primitive"),
        JwtError::MalformedClaims(detail) => ReviewError::Rejected(format!("invalid claims: {detail}")),
    })?;
    if claims.iss == LEGACY_ISSUER {
        let (user, legacy_claims_error) = match legacy_user(&claims) {
            Ok(user) => (user, None),
            Err(err) => (UserInfo::default(), Some(err)),
        };
        let sha = crate::sha256(token.as_bytes());
        return Ok(VerifiedToken { claims, legacy: true, token_sha256: Some(sha), legacy_claims_error, user });
    }
    let user = bound_user(&claims);
    Ok(VerifiedToken { claims, legacy: false, token_sha256: None, legacy_claims_error: None, user })
}

/// Audiences, time and live-object checks; `requested` empty means the API audiences.
/// On success the user is `token.user` and the returned audiences are `status.audiences`
/// (the requested audiences the token carries, in request order).
pub fn authenticate(
    token: &VerifiedToken,
    requested: &[String],
    config: &IssuerConfig,
    lookup: &impl ObjectLookup,
    now: Timestamp,
) -> Result<Vec<String>, ReviewError> {
    let token_audiences: &[String] = if token.claims.aud.is_empty() { &config.api_audiences } else { &token.claims.aud };
    let requested: &[String] = if requested.is_empty() { &config.api_audiences } else { requested };
    let audiences: Vec<String> = requested.iter().filter(|r| token_audiences.contains(r)).cloned().collect();
    if audiences.is_empty() && !config.api_audiences.is_empty() {
        return Err(ReviewError::Rejected(format!(
            "token audiences {} is invalid for the target audiences {}",
            go_quote_list(token_audiences),
            go_quote_list(requested)
        )));
    }
    if token.legacy {
        if let Some(err) = &token.legacy_claims_error {
            return Err(err.clone());
        }
        validate_legacy(token, lookup)?;
    } else {
        validate_bound(&token.claims, lookup, now)?;
    }
    Ok(audiences)
}

/// [`verify`] then [`authenticate`], uncached: the verified token (its `user`) and
/// `status.audiences`.
pub fn review(
    token: &str,
    requested: &[String],
    keys: &KeySet,
    config: &IssuerConfig,
    lookup: &impl ObjectLookup,
    now: Timestamp,
) -> Result<(VerifiedToken, Vec<String>), ReviewError> {
    let verified = verify(token, keys, config)?;
    let audiences = authenticate(&verified, requested, config, lookup, now)?;
    Ok((verified, audiences))
}

fn deleted_before(deletion: Option<Timestamp>, now: Timestamp) -> bool {
    deletion.is_some_and(|t| t < now.plus(-LEEWAY_SECONDS))
}

fn validate_bound(claims: &Claims, lookup: &impl ObjectLookup, now: Timestamp) -> Result<(), ReviewError> {
    let now_s = now.unix();
    if claims.nbf.is_some_and(|nbf| now_s + LEEWAY_SECONDS < nbf) {
        return Err(ReviewError::rejected("service account token is not valid yet"));
    }
    if claims.exp.is_some_and(|exp| now_s - LEEWAY_SECONDS > exp) {
        return Err(ReviewError::rejected("service account token has expired"));
    }
    if claims.iat.is_some_and(|iat| now_s + LEEWAY_SECONDS < iat) {
        return Err(ReviewError::rejected("service account token is issued in the future"));
    }
    let empty = crate::claims::KubernetesClaims::default();
    let private = claims.kubernetes.as_ref().unwrap_or(&empty);
    let namespace = private.namespace.as_str();
    let sa_ref = &private.serviceaccount;
    let sa = lookup
        .service_account(namespace, &sa_ref.name)
        .ok_or_else(|| ReviewError::Rejected(crate::Error::not_found("serviceaccounts", &sa_ref.name).to_string()))?;
    if *sa.uid != *sa_ref.uid {
        return Err(ReviewError::Rejected(format!("service account UID ({}) does not match claim ({})", sa.uid, sa_ref.uid)));
    }
    if deleted_before(sa.deletion_timestamp, now) {
        return Err(ReviewError::Rejected(format!("service account {namespace}/{} has been deleted", sa_ref.name)));
    }
    let invalidated = || ReviewError::rejected("service account token has been invalidated");
    if let Some(secret_ref) = &private.secret {
        let secret = lookup.secret(namespace, &secret_ref.name).ok_or_else(invalidated)?;
        if *secret.meta.uid != *secret_ref.uid {
            return Err(ReviewError::Rejected(format!(
                "secret UID ({}) does not match service account secret ref claim ({})",
                secret.meta.uid, secret_ref.uid
            )));
        }
        if deleted_before(secret.meta.deletion_timestamp, now) {
            return Err(invalidated());
        }
    }
    if let Some(pod_ref) = &private.pod {
        let pod = lookup.pod(namespace, &pod_ref.name).ok_or_else(invalidated)?;
        if *pod.meta.uid != *pod_ref.uid {
            return Err(ReviewError::Rejected(format!(
                "pod UID ({}) does not match service account pod ref claim ({})",
                pod.meta.uid, pod_ref.uid
            )));
        }
        if deleted_before(pod.meta.deletion_timestamp, now) {
            return Err(invalidated());
        }
    } else if let Some(node_ref) = &private.node {
        let node = lookup.node(&node_ref.name).ok_or_else(invalidated)?;
        if *node.uid != *node_ref.uid {
            return Err(ReviewError::Rejected(format!(
                "node UID ({}) does not match service account node ref claim ({})",
                node.uid, node_ref.uid
            )));
        }
        if deleted_before(node.deletion_timestamp, now) {
            return Err(invalidated());
        }
    }
    Ok(())
}

fn validate_legacy(token: &VerifiedToken, lookup: &impl ObjectLookup) -> Result<(), ReviewError> {
    let claims = &token.claims;
    // Presence was checked before (`legacy_claims_error`).
    let namespace = claims.legacy_namespace.as_deref().unwrap_or_default();
    let secret_name = claims.legacy_secret_name.as_deref().unwrap_or_default();
    let sa_name = claims.legacy_service_account_name.as_deref().unwrap_or_default();
    let sa_uid = claims.legacy_service_account_uid.as_deref().unwrap_or_default();
    let invalidated = || ReviewError::rejected("Token has been invalidated");
    let secret = lookup.secret(namespace, secret_name).ok_or_else(invalidated)?;
    if secret.meta.deletion_timestamp.is_some() {
        return Err(invalidated());
    }
    let matches = match (secret.token_sha256, token.token_sha256) {
        (Some(stored), Some(presented)) => aws_lc_rs::constant_time::verify_slices_are_equal(&stored, &presented).is_ok(),
        _ => false,
    };
    if !matches {
        return Err(ReviewError::rejected("Token does not match server's copy"));
    }
    let sa = lookup
        .service_account(namespace, sa_name)
        .ok_or_else(|| ReviewError::Rejected(crate::Error::not_found("serviceaccounts", sa_name).to_string()))?;
    if sa.deletion_timestamp.is_some() {
        return Err(ReviewError::Rejected(format!("ServiceAccount {namespace}/{sa_name} has been deleted")));
    }
    if *sa.uid != *sa_uid {
        return Err(ReviewError::Rejected(format!("ServiceAccount UID ({}) does not match claim ({sa_uid})", sa.uid)));
    }
    if secret.legacy_token_invalid {
        return Err(ReviewError::Rejected(format!(
            "the token in secret {namespace}/{secret_name} for service account {namespace}/{sa_name} has been marked invalid. Use tokens from the TokenRequest API or manually created secret-based tokens, or remove the 'kubernetes.io/legacy-token-invalid-since' label from the secret to temporarily allow use of this token"
        )));
    }
    Ok(())
}

fn groups(namespace: &str) -> Vec<String> {
    vec!["system:serviceaccounts".to_owned(), format!("system:serviceaccounts:{namespace}"), "system:authenticated".to_owned()]
}

fn bound_user(claims: &Claims) -> UserInfo {
    let empty = crate::claims::KubernetesClaims::default();
    let private = claims.kubernetes.as_ref().unwrap_or(&empty);
    let mut extra = BTreeMap::new();
    let mut put = |key: &str, value: &str| {
        extra.insert(format!("authentication.kubernetes.io/{key}"), vec![value.to_owned()]);
    };
    if let Some(pod) = private.pod.as_ref().filter(|p| !p.name.is_empty() && !p.uid.is_empty()) {
        put("pod-name", &pod.name);
        put("pod-uid", &pod.uid);
    }
    if let Some(jti) = claims.jti.as_deref().filter(|j| !j.is_empty()) {
        put("credential-id", &format!("JTI={jti}"));
    }
    if let Some(node) = private.node.as_ref().filter(|n| !n.name.is_empty()) {
        put("node-name", &node.name);
        if !node.uid.is_empty() {
            put("node-uid", &node.uid);
        }
    }
    UserInfo {
        username: crate::claims::service_account_username(&private.namespace, &private.serviceaccount.name),
        uid: private.serviceaccount.uid.clone(),
        groups: groups(&private.namespace),
        extra,
    }
}

fn legacy_user(claims: &Claims) -> Result<UserInfo, ReviewError> {
    let present = |v: &Option<String>, what: &str| match v.as_deref() {
        Some(s) if !s.is_empty() => Ok(s.to_owned()),
        _ => Err(ReviewError::Rejected(format!("{what} claim is missing"))),
    };
    if claims.sub.is_empty() {
        return Err(ReviewError::rejected("sub claim is missing"));
    }
    let namespace = present(&claims.legacy_namespace, "namespace")?;
    present(&claims.legacy_secret_name, "secretName")?;
    let name = present(&claims.legacy_service_account_name, "serviceAccountName")?;
    let uid = present(&claims.legacy_service_account_uid, "serviceAccountUID")?;
    if split_username(&claims.sub) != Some((namespace.as_str(), name.as_str())) {
        return Err(ReviewError::rejected("sub claim is invalid"));
    }
    Ok(UserInfo {
        username: claims.sub.clone(),
        uid,
        groups: groups(&namespace),
        extra: BTreeMap::new(),
    })
}
