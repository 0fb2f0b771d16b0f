//! TokenRequest (`POST .../serviceaccounts/{name}/token`): defaulting, validation, binding
//! and claims, in kube-apiserver 1.32's order and with its messages.

use serde::{Deserialize, Serialize};

use crate::claims::{Claims, KubernetesClaims, Ref, service_account_username};
use crate::error::{Error, FieldError, Result, go_quote};
use crate::keys::KeySet;
use crate::lookup::ObjectLookup;
use crate::{Timestamp, jwt, uuid_v4};

/// The shortest lifetime a client may ask for (`MinTokenAgeSec`).
pub const MIN_EXPIRATION_SECONDS: i64 = 10 * 60;
/// The longest lifetime a client may ask for (2^32 seconds).
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;
/// `expirationSeconds` when the client leaves it out.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// The kubelet's projected-token lifetime that earns the one-year extension.
pub const WARN_ONLY_EXPIRATION_SECONDS: i64 = 60 * 60 + 7;
/// How long extended tokens really live.
pub const EXTENDED_EXPIRATION_SECONDS: i64 = 24 * 365 * 60 * 60;

const GROUP: &str = "authentication.k8s.io";
const KIND: &str = "TokenRequest";

/// What the authority issues under. Built once at start-up.
#[derive(Clone, Debug)]
pub struct IssuerConfig {
    /// Accepted issuers; the first one signs (`--service-account-issuer`, repeatable).
    pub issuers: Vec<String>,
    /// `--api-audiences`; defaults to the issuers.
    pub api_audiences: Vec<String>,
    /// `--service-account-max-token-expiration` in seconds, if set.
    pub max_expiration_seconds: Option<i64>,
    /// `--service-account-extend-token-expiration` (default true).
    pub extend_expiration: bool,
}

impl IssuerConfig {
    /// An issuer whose API audiences are the issuer itself, as kube-apiserver defaults.
    pub fn new(issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        Self { issuers: vec![issuer.clone()], api_audiences: vec![issuer], max_expiration_seconds: None, extend_expiration: true }
    }

    /// Checks start-up settings with kube-apiserver's messages.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.issuers.first().is_none_or(String::is_empty) {
            return Err("service-account-issuer is a required flag".into());
        }
        if let Some(max) = self.max_expiration_seconds
            && !(3600..=MAX_EXPIRATION_SECONDS).contains(&max)
        {
            return Err("the service-account-max-token-expiration must be between 1 hour and 2^32 seconds".into());
        }
        Ok(())
    }

    pub fn signing_issuer(&self) -> &str {
        self.issuers.first().map_or("", String::as_str)
    }

    /// The longest a token signed now can stay valid: what a retired key must outlive.
    pub fn longest_token_lifetime(&self) -> i64 {
        let max = self.max_expiration_seconds.unwrap_or(MAX_EXPIRATION_SECONDS);
        if self.extend_expiration { max.max(EXTENDED_EXPIRATION_SECONDS) } else { max }
    }
}

/// `spec.boundObjectRef`. Go clients send `null`s and omit empty fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BoundObjectReference {
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

/// `spec` of a TokenRequest as sent (every field may be `null` or absent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequestSpec {
    #[serde(default, deserialize_with = "null_default")]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub expiration_seconds: Option<i64>,
    #[serde(default)]
    pub bound_object_ref: Option<BoundObjectReference>,
}

fn null_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One TokenRequest as the API edge hands it over.
#[derive(Clone, Debug, Default)]
pub struct TokenRequestInput {
    /// Namespace and name from the URL.
    pub namespace: String,
    pub service_account: String,
    /// `metadata.name` / `metadata.namespace` of the body, if set.
    pub metadata_name: String,
    pub metadata_namespace: String,
    pub spec: TokenRequestSpec,
}

/// A minted token and the response fields that go with it. `Debug` hides the token.
#[derive(Clone)]
pub struct IssuedToken {
    pub token: String,
    /// The spec after defaulting and clamping (`audiences` filled, `expirationSeconds` set).
    pub spec: TokenRequestSpec,
    /// Issue time: `metadata.creationTimestamp`.
    pub issued_at: Timestamp,
    /// `status.expirationTimestamp`: issue time + the clamped, non-extended seconds.
    pub expiration_timestamp: Timestamp,
    /// HTTP warnings (`Warning: 299 - "..."`).
    pub warnings: Vec<String>,
    /// `jti`, for audit (`authentication.kubernetes.io/issued-credential-id: JTI=<jti>`).
    pub jti: String,
    /// The SA uid, for `metadata.uid`.
    pub service_account_uid: String,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"<redacted>")
            .field("spec", &self.spec)
            .field("issued_at", &self.issued_at)
            .field("expiration_timestamp", &self.expiration_timestamp)
            .field("jti", &self.jti)
            .finish_non_exhaustive()
    }
}

fn invalid(name: &str, causes: Vec<FieldError>) -> Error {
    Error::Invalid { kind: KIND.into(), group: GROUP.into(), name: name.into(), causes }
}

/// Validates, defaults, binds and mints, as `TokenREST.Create` does. `random` supplies the
/// `jti`.
pub fn issue(
    input: TokenRequestInput,
    config: &IssuerConfig,
    keys: &KeySet,
    lookup: &impl ObjectLookup,
    now: Timestamp,
    random: [u8; 16],
) -> Result<IssuedToken> {
    let TokenRequestInput { namespace, service_account: name, metadata_name, metadata_namespace, mut spec } = input;
    if namespace.is_empty() {
        return Err(Error::BadRequest("namespace is required".into()));
    }
    // kube's create handler, before admission (so TokenREST's own namespace check never sees
    // a mismatch).
    if !metadata_namespace.is_empty() && metadata_namespace != namespace {
        return Err(Error::BadRequest("the namespace of the provided object does not match the namespace sent on the request".into()));
    }
    // kube's NamespaceLifecycle admission, before the request itself is looked at; it names the
    // ServiceAccount of the URL.
    if lookup.namespace_terminating(&namespace) {
        return Err(Error::namespace_terminating("serviceaccounts", name, &namespace));
    }
    if !metadata_name.is_empty() && metadata_name != name {
        let cause = FieldError::invalid("metadata.name", go_quote(&metadata_name), "must match the service account name if specified");
        return Err(invalid(&name, vec![cause]));
    }
    let sa = lookup.service_account(&namespace, &name).ok_or_else(|| Error::not_found("serviceaccounts", &name))?;
    if spec.audiences.is_empty() {
        spec.audiences.clone_from(&config.api_audiences);
    }
    let requested = spec.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS);
    spec.expiration_seconds = Some(requested);
    if requested < MIN_EXPIRATION_SECONDS {
        return Err(invalid("", vec![FieldError::invalid("spec.expirationSeconds", requested, "may not specify a duration less than 10 minutes")]));
    }
    if requested > MAX_EXPIRATION_SECONDS {
        return Err(invalid("", vec![FieldError::invalid("spec.expirationSeconds", requested, "may not specify a duration larger than 2^32 seconds")]));
    }

    let mut private = KubernetesClaims {
        namespace: namespace.clone(),
        serviceaccount: Ref { name: name.clone(), uid: sa.uid.to_string() },
        ..KubernetesClaims::default()
    };
    let mut pod_bound = false;
    if let Some(bound) = &spec.bound_object_ref {
        let group = bound.api_version.rsplit_once('/').map_or("", |(group, _)| group);
        let uid_conflict = |kind: &str| Error::Conflict {
            resource: kind.to_owned(),
            kind: kind.to_owned(),
            name: bound.name.clone(),
            detail: format!(
                "the UID in the bound object reference ({}) does not match the UID in record. The object might have been deleted and then recreated",
                bound.uid
            ),
        };
        match (group, bound.kind.as_str()) {
            ("", "Pod") => {
                let pod = lookup.pod(&namespace, &bound.name).ok_or_else(|| Error::not_found("pods", &bound.name))?;
                if pod.service_account != name {
                    return Err(Error::BadRequest(format!(
                        "cannot bind token for serviceaccount {} to pod running with different serviceaccount name.",
                        go_quote(&name)
                    )));
                }
                if !bound.uid.is_empty() && bound.uid != *pod.meta.uid {
                    return Err(uid_conflict("Pod"));
                }
                if !pod.node_name.is_empty() {
                    // The node's uid only when the Node object exists (ServiceAccountTokenPodNodeInfo).
                    let uid = lookup.node(&pod.node_name).map(|n| n.uid.to_string()).unwrap_or_default();
                    private.node = Some(Ref { name: pod.node_name.clone(), uid });
                }
                private.pod = Some(Ref { name: bound.name.clone(), uid: pod.meta.uid.to_string() });
                pod_bound = true;
            }
            ("", "Node") => {
                let node = lookup.node(&bound.name).ok_or_else(|| Error::not_found("nodes", &bound.name))?;
                if !bound.uid.is_empty() && bound.uid != *node.uid {
                    return Err(uid_conflict("Node"));
                }
                private.node = Some(Ref { name: bound.name.clone(), uid: node.uid.to_string() });
            }
            ("", "Secret") => {
                let secret = lookup.secret(&namespace, &bound.name).ok_or_else(|| Error::not_found("secrets", &bound.name))?;
                if !bound.uid.is_empty() && bound.uid != *secret.meta.uid {
                    return Err(uid_conflict("Secret"));
                }
                private.secret = Some(Ref { name: bound.name.clone(), uid: secret.meta.uid.to_string() });
            }
            (group, kind) => {
                let version = bound.api_version.rsplit_once('/').map_or(bound.api_version.as_str(), |(_, v)| v);
                return Err(Error::BadRequest(format!("cannot bind token to object of type {group}/{version}, Kind={kind}")));
            }
        }
    }

    let mut warnings = Vec::new();
    let mut seconds = requested;
    if let Some(max) = config.max_expiration_seconds
        && seconds > max
    {
        warnings.push(format!("requested expiration of {seconds} seconds shortened to {max} seconds"));
        seconds = max;
        spec.expiration_seconds = Some(max);
    }
    let mut jwt_seconds = seconds;
    if config.extend_expiration
        && pod_bound
        && seconds == WARN_ONLY_EXPIRATION_SECONDS
        && spec.audiences.iter().all(|a| config.api_audiences.contains(a))
    {
        jwt_seconds = EXTENDED_EXPIRATION_SECONDS;
        private.warnafter = Some(now.plus(WARN_ONLY_EXPIRATION_SECONDS).unix());
    }

    let jti = uuid_v4(random);
    let claims = Claims {
        aud: spec.audiences.clone(),
        exp: Some(now.plus(jwt_seconds).unix()),
        iat: Some(now.unix()),
        iss: config.signing_issuer().to_owned(),
        jti: Some(jti.clone()),
        kubernetes: Some(private),
        nbf: Some(now.unix()),
        sub: service_account_username(&namespace, &name),
        ..Claims::default()
    };
    let token = jwt::sign(keys.signing(), &claims).map_err(|e| Error::Internal(format!("failed to generate token: {e}")))?;
    Ok(IssuedToken {
        token,
        spec,
        issued_at: now,
        expiration_timestamp: now.plus(seconds),
        warnings,
        jti,
        service_account_uid: sa.uid.to_string(),
    })
}

/// Mints the legacy token the tokens controller writes into a
/// `kubernetes.io/service-account-token` Secret: flat claims, no expiry.
pub fn legacy_token(keys: &KeySet, namespace: &str, service_account: &str, service_account_uid: &str, secret: &str) -> Result<String> {
    let claims = Claims {
        iss: crate::claims::LEGACY_ISSUER.to_owned(),
        legacy_namespace: Some(namespace.to_owned()),
        legacy_secret_name: Some(secret.to_owned()),
        legacy_service_account_name: Some(service_account.to_owned()),
        legacy_service_account_uid: Some(service_account_uid.to_owned()),
        sub: service_account_username(namespace, service_account),
        ..Claims::default()
    };
    jwt::sign(keys.signing(), &claims).map_err(|e| Error::Internal(format!("failed to generate token: {e}")))
}
