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

impl UserInfo {
    /// The user as JSON, as it serializes, moving the strings instead of copying them (the
    /// authorizer builds one per check).
    pub fn into_json(self) -> serde_json::Value {
        use serde_json::Value;
        let strings = |items: Vec<String>| Value::Array(items.into_iter().map(Value::String).collect());
        let mut map = serde_json::Map::new();
        if !self.username.is_empty() {
            map.insert("username".to_owned(), Value::String(self.username));
        }
        if !self.uid.is_empty() {
            map.insert("uid".to_owned(), Value::String(self.uid));
        }
        if !self.groups.is_empty() {
            map.insert("groups".to_owned(), strings(self.groups));
        }
        if !self.extra.is_empty() {
            map.insert("extra".to_owned(), Value::Object(self.extra.into_iter().map(|(k, v)| (k, strings(v))).collect()));
        }
        Value::Object(map)
    }
}

/// Why a review failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReviewError {
    /// Not a token of this authority (garbage, unknown issuer, unsupported alg).
    NotMine,
    /// This authority's token, refused for the reason given.
    Rejected(String),
    /// A legacy token whose Secret is labelled `kubernetes.io/legacy-token-invalid-since`:
    /// refused, but still a use of the token, which kube-apiserver records on the Secret.
    MarkedInvalid(String),
}

impl ReviewError {
    /// `status.error` exactly as kube-apiserver aggregates it: its loopback authenticator
    /// always adds `invalid bearer token`, and identical messages are deduplicated.
    pub fn status_error(&self) -> String {
        match self {
            Self::NotMine => "invalid bearer token".to_owned(),
            Self::Rejected(reason) | Self::MarkedInvalid(reason) => format!("[invalid bearer token, {reason}]"),
        }
    }

    fn rejected(reason: impl Into<String>) -> Self {
        Self::Rejected(reason.into())
    }
}

/// A token whose signature verified, reduced to what [`authenticate`], the user info and the
/// audit read: caches hold one per token, so it is two allocations (this and its strings).
#[derive(Clone, Debug)]
pub struct VerifiedToken {
    /// The strings of [`Field`], then the audiences, each after its length written as one
    /// `char` (whose code point is the length: one byte below 128, and a string in a 16 KiB
    /// token is always shorter than the surrogates), so a walk reads a length without
    /// searching or parsing. A separate table of offsets would be one more allocation.
    text: Box<str>,
    /// Which optional claims are present ([`JTI`], [`POD`], [`SECRET`], [`NODE`], [`EXP`],
    /// [`NBF`], [`IAT`], [`AUD`]).
    present: u8,
    /// `exp`, `nbf`, `iat` (unix seconds), where present.
    times: [i64; 3],
    /// Where in `text` the strings of [`STARTS`] begin, so a lookup skips at most a few
    /// strings (every cached review reads them); [`BEYOND`] when past `u16`. Fits in the
    /// struct's padding: a cache holds a million of these.
    starts: [u16; 3],
    /// Issued by the legacy tokens controller (issuer `kubernetes/serviceaccount`).
    legacy: Option<Box<Legacy>>,
}

#[derive(Clone, Debug)]
struct Legacy {
    /// Compared with the Secret's copy.
    token_sha256: [u8; 32],
    /// Missing or inconsistent claims, reported after the audience check as kube-apiserver
    /// orders its checks.
    claims_error: Option<ReviewError>,
}

/// The strings of a [`VerifiedToken`] before its audiences. Legacy tokens fill the namespace,
/// the ServiceAccount and the secret name from their flat claims.
#[derive(Clone, Copy)]
enum Field {
    Jti,
    Namespace,
    ServiceAccountName,
    ServiceAccountUid,
    PodName,
    PodUid,
    SecretName,
    SecretUid,
    NodeName,
    NodeUid,
}

const FIELDS: usize = 10;
const JTI: u8 = 1;
const POD: u8 = 2;
const SECRET: u8 = 4;
const NODE: u8 = 8;
const EXP: u8 = 16;
const NBF: u8 = 32;
const IAT: u8 = 64;
const AUD: u8 = 128;
/// The strings whose offsets [`VerifiedToken::starts`] records: the namespace, the Pod name and
/// the first audience.
const STARTS: [usize; 3] = [Field::Namespace as usize, Field::PodName as usize, FIELDS];
/// A start past what a `u16` holds. Tokens are at most 16 KiB (`jwt::MAX_TOKEN_BYTES`), so
/// never; were one longer, its lookups would find nothing and its review would fail.
const BEYOND: u16 = u16::MAX;

/// The length of `string` as the `char` [`VerifiedToken::text`] writes before it; past the
/// last code point below the surrogates (never, in a 16 KiB token), U+FFFD, which ends every
/// walk that reaches it: those lookups find nothing and the review fails.
fn length_char(string: &str) -> char {
    u32::try_from(string.len()).ok().filter(|&len| len < 0xD800).and_then(char::from_u32).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// `name` + `uid` of an object a bound token names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectRef<'a> {
    pub name: &'a str,
    pub uid: &'a str,
}

impl VerifiedToken {
    fn new(claims: &Claims, legacy: Option<Legacy>) -> Self {
        let mut fields = [""; FIELDS];
        let mut present = if claims.jti.is_some() { JTI } else { 0 };
        fields[Field::Jti as usize] = claims.jti.as_deref().unwrap_or_default();
        if legacy.is_some() {
            fn value(v: &Option<String>) -> &str {
                v.as_deref().unwrap_or_default()
            }
            fields[Field::Namespace as usize] = value(&claims.legacy_namespace);
            fields[Field::ServiceAccountName as usize] = value(&claims.legacy_service_account_name);
            fields[Field::ServiceAccountUid as usize] = value(&claims.legacy_service_account_uid);
            fields[Field::SecretName as usize] = value(&claims.legacy_secret_name);
        } else if let Some(private) = &claims.kubernetes {
            fields[Field::Namespace as usize] = &private.namespace;
            fields[Field::ServiceAccountName as usize] = &private.serviceaccount.name;
            fields[Field::ServiceAccountUid as usize] = &private.serviceaccount.uid;
            for (flag, reference, name) in [(POD, &private.pod, Field::PodName), (SECRET, &private.secret, Field::SecretName), (NODE, &private.node, Field::NodeName)] {
                if let Some(reference) = reference {
                    present |= flag;
                    fields[name as usize] = &reference.name;
                    fields[name as usize + 1] = &reference.uid;
                }
            }
        }
        let strings = || fields.iter().copied().chain(claims.aud.iter().map(String::as_str));
        let mut text = String::with_capacity(strings().map(|s| length_char(s).len_utf8() + s.len()).sum());
        let mut starts = [0; 3];
        for (i, string) in strings().enumerate() {
            if let Some(slot) = STARTS.iter().position(|&at| at == i) {
                starts[slot] = u16::try_from(text.len()).unwrap_or(BEYOND);
            }
            text.push(length_char(string));
            text.push_str(string);
        }
        let mut times = [0; 3];
        for (i, (flag, time)) in [(EXP, claims.exp), (NBF, claims.nbf), (IAT, claims.iat)].into_iter().enumerate() {
            if let Some(time) = time {
                present |= flag;
                times[i] = time;
            }
        }
        if !claims.aud.is_empty() {
            present |= AUD;
        }
        Self { text: text.into_boxed_str(), present, times, starts, legacy: legacy.map(Box::new) }
    }

    /// The strings of `text` from byte `start` on.
    fn strings_from(&self, start: u16) -> impl Iterator<Item = &str> {
        let mut rest = if start == BEYOND { "" } else { self.text.get(usize::from(start)..).unwrap_or_default() };
        std::iter::from_fn(move || {
            let mut chars = rest.chars();
            let len = chars.next().filter(|&c| c != char::REPLACEMENT_CHARACTER)?;
            let len = usize::try_from(u32::from(len)).ok()?;
            let (string, next) = chars.as_str().split_at_checked(len)?;
            rest = next;
            Some(string)
        })
    }

    fn field(&self, field: Field) -> &str {
        // From the nearest recorded start before it.
        let (start, skip) = match field as usize {
            i if i >= Field::PodName as usize => (self.starts[1], i - Field::PodName as usize),
            i if i >= Field::Namespace as usize => (self.starts[0], i - Field::Namespace as usize),
            i => (0, i),
        };
        self.strings_from(start).nth(skip).unwrap_or_default()
    }

    fn time(&self, flag: u8, index: usize) -> Option<i64> {
        self.times.get(index).copied().filter(|_| self.present & flag != 0)
    }

    fn reference(&self, flag: u8, name: Field, uid: Field) -> Option<ObjectRef<'_>> {
        (self.present & flag != 0).then(|| ObjectRef { name: self.field(name), uid: self.field(uid) })
    }

    /// The `aud` claim.
    pub fn audiences(&self) -> impl Iterator<Item = &str> {
        // None at all: no start was recorded, and a walk from 0 would read the fields.
        let start = if self.has_audiences() { self.starts[2] } else { BEYOND };
        self.strings_from(start)
    }

    /// Whether the token carries an `aud` claim with at least one audience.
    fn has_audiences(&self) -> bool {
        self.present & AUD != 0
    }

    /// The `exp` claim (unix seconds).
    pub fn exp(&self) -> Option<i64> {
        self.time(EXP, 0)
    }

    pub fn jti(&self) -> Option<&str> {
        (self.present & JTI != 0).then(|| self.field(Field::Jti))
    }

    /// Issued by the legacy tokens controller (issuer `kubernetes/serviceaccount`).
    pub fn is_legacy(&self) -> bool {
        self.legacy.is_some()
    }

    /// The Pod a bound token names.
    pub fn pod(&self) -> Option<ObjectRef<'_>> {
        self.reference(POD, Field::PodName, Field::PodUid)
    }

    /// The Secret a bound token names (legacy tokens: `None`).
    pub fn secret(&self) -> Option<ObjectRef<'_>> {
        self.reference(SECRET, Field::SecretName, Field::SecretUid)
    }

    /// The namespace and name of the Secret a legacy token came from.
    pub fn legacy_secret(&self) -> Option<(&str, &str)> {
        self.legacy.is_some().then(|| (self.field(Field::Namespace), self.field(Field::SecretName)))
    }

    /// The Node a bound token names.
    pub fn node(&self) -> Option<ObjectRef<'_>> {
        self.reference(NODE, Field::NodeName, Field::NodeUid)
    }

    /// The user it authenticates as (`status.user` of a TokenReview); empty for a legacy
    /// token with missing or inconsistent claims (which never authenticates).
    pub fn user(&self) -> UserInfo {
        let namespace = self.field(Field::Namespace);
        let user = |extra| UserInfo {
            username: crate::claims::service_account_username(namespace, self.field(Field::ServiceAccountName)),
            uid: self.field(Field::ServiceAccountUid).to_owned(),
            groups: groups(namespace),
            extra,
        };
        match &self.legacy {
            Some(legacy) if legacy.claims_error.is_some() => UserInfo::default(),
            Some(_) => user(BTreeMap::new()),
            None => user(self.bound_extra()),
        }
    }

    fn bound_extra(&self) -> BTreeMap<String, Vec<String>> {
        let mut extra = BTreeMap::new();
        let mut put = |key: &str, value: &str| {
            extra.insert(format!("authentication.kubernetes.io/{key}"), vec![value.to_owned()]);
        };
        if let Some(pod) = self.pod().filter(|p| !p.name.is_empty() && !p.uid.is_empty()) {
            put("pod-name", pod.name);
            put("pod-uid", pod.uid);
        }
        if let Some(jti) = self.jti().filter(|j| !j.is_empty()) {
            put("credential-id", &format!("JTI={jti}"));
        }
        if let Some(node) = self.node().filter(|n| !n.name.is_empty()) {
            put("node-name", node.name);
            if !node.uid.is_empty() {
                put("node-uid", node.uid);
            }
        }
        extra
    }
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
    let legacy = (claims.iss == LEGACY_ISSUER)
        .then(|| Legacy { token_sha256: crate::sha256(token.as_bytes()), claims_error: check_legacy_claims(&claims).err() });
    Ok(VerifiedToken::new(&claims, legacy))
}

/// Audiences, time and live-object checks; `requested` empty means the API audiences.
/// On success the user is `token.user()` and the returned audiences are `status.audiences`
/// (the requested audiences the token carries, in request order).
pub fn authenticate(
    token: &VerifiedToken,
    requested: &[String],
    config: &IssuerConfig,
    lookup: &impl ObjectLookup,
    now: Timestamp,
) -> Result<Vec<String>, ReviewError> {
    let own = token.has_audiences();
    let carries = |aud: &str| if own { token.audiences().any(|a| a == aud) } else { config.api_audiences.iter().any(|a| a == aud) };
    let requested: &[String] = if requested.is_empty() { &config.api_audiences } else { requested };
    let audiences: Vec<String> = requested.iter().filter(|r| carries(r)).cloned().collect();
    if audiences.is_empty() && !config.api_audiences.is_empty() {
        let token_audiences: Vec<&str> = if own { token.audiences().collect() } else { config.api_audiences.iter().map(String::as_str).collect() };
        return Err(ReviewError::Rejected(format!(
            "token audiences {} is invalid for the target audiences {}",
            go_quote_list(&token_audiences),
            go_quote_list(requested)
        )));
    }
    match &token.legacy {
        Some(legacy) => {
            if let Some(err) = &legacy.claims_error {
                return Err(err.clone());
            }
            validate_legacy(token, legacy, lookup)?;
        }
        None => validate_bound(token, lookup, now)?,
    }
    Ok(audiences)
}

/// [`verify`] then [`authenticate`], uncached: the verified token (its `user()`) and
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

fn validate_bound(token: &VerifiedToken, lookup: &impl ObjectLookup, now: Timestamp) -> Result<(), ReviewError> {
    let now_s = now.unix();
    if token.time(NBF, 1).is_some_and(|nbf| now_s + LEEWAY_SECONDS < nbf) {
        return Err(ReviewError::rejected("service account token is not valid yet"));
    }
    if token.exp().is_some_and(|exp| now_s - LEEWAY_SECONDS > exp) {
        return Err(ReviewError::rejected("service account token has expired"));
    }
    if token.time(IAT, 2).is_some_and(|iat| now_s + LEEWAY_SECONDS < iat) {
        return Err(ReviewError::rejected("service account token is issued in the future"));
    }
    let namespace = token.field(Field::Namespace);
    let sa_ref = ObjectRef { name: token.field(Field::ServiceAccountName), uid: token.field(Field::ServiceAccountUid) };
    let sa = lookup
        .service_account(namespace, sa_ref.name)
        .ok_or_else(|| ReviewError::Rejected(crate::Error::not_found("serviceaccounts", sa_ref.name).to_string()))?;
    if *sa.uid != *sa_ref.uid {
        return Err(ReviewError::Rejected(format!("service account UID ({}) does not match claim ({})", sa.uid, sa_ref.uid)));
    }
    if deleted_before(sa.deletion_timestamp, now) {
        return Err(ReviewError::Rejected(format!("service account {namespace}/{} has been deleted", sa_ref.name)));
    }
    let invalidated = || ReviewError::rejected("service account token has been invalidated");
    if let Some(secret_ref) = token.secret() {
        let secret = lookup.secret(namespace, secret_ref.name).ok_or_else(invalidated)?;
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
    if let Some(pod_ref) = token.pod() {
        let pod = lookup.pod(namespace, pod_ref.name).ok_or_else(invalidated)?;
        if *pod.meta.uid != *pod_ref.uid {
            return Err(ReviewError::Rejected(format!(
                "pod UID ({}) does not match service account pod ref claim ({})",
                pod.meta.uid, pod_ref.uid
            )));
        }
        if deleted_before(pod.meta.deletion_timestamp, now) {
            return Err(invalidated());
        }
    } else if let Some(node_ref) = token.node() {
        let node = lookup.node(node_ref.name).ok_or_else(invalidated)?;
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

fn validate_legacy(token: &VerifiedToken, legacy: &Legacy, lookup: &impl ObjectLookup) -> Result<(), ReviewError> {
    // Presence was checked before (`Legacy::claims_error`).
    let namespace = token.field(Field::Namespace);
    let secret_name = token.field(Field::SecretName);
    let sa_name = token.field(Field::ServiceAccountName);
    let sa_uid = token.field(Field::ServiceAccountUid);
    let invalidated = || ReviewError::rejected("Token has been invalidated");
    let secret = lookup.secret(namespace, secret_name).ok_or_else(invalidated)?;
    if secret.meta.deletion_timestamp.is_some() {
        return Err(invalidated());
    }
    let matches = secret.token_sha256.is_some_and(|stored| aws_lc_rs::constant_time::verify_slices_are_equal(&stored, &legacy.token_sha256).is_ok());
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
        return Err(ReviewError::MarkedInvalid(format!(
            "the token in secret {namespace}/{secret_name} for service account {namespace}/{sa_name} has been marked invalid. Use tokens from the TokenRequest API or manually created secret-based tokens, or remove the 'kubernetes.io/legacy-token-invalid-since' label from the secret to temporarily allow use of this token"
        )));
    }
    Ok(())
}

fn groups(namespace: &str) -> Vec<String> {
    vec!["system:serviceaccounts".to_owned(), format!("system:serviceaccounts:{namespace}"), "system:authenticated".to_owned()]
}

/// What kube-apiserver requires of a legacy token's claims.
fn check_legacy_claims(claims: &Claims) -> Result<(), ReviewError> {
    fn present<'a>(v: &'a Option<String>, what: &str) -> Result<&'a str, ReviewError> {
        match v.as_deref() {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(ReviewError::Rejected(format!("{what} claim is missing"))),
        }
    }
    if claims.sub.is_empty() {
        return Err(ReviewError::rejected("sub claim is missing"));
    }
    let namespace = present(&claims.legacy_namespace, "namespace")?;
    present(&claims.legacy_secret_name, "secretName")?;
    let name = present(&claims.legacy_service_account_name, "serviceAccountName")?;
    present(&claims.legacy_service_account_uid, "serviceAccountUID")?;
    if split_username(&claims.sub) != Some((namespace, name)) {
        return Err(ReviewError::rejected("sub claim is invalid"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::{KubernetesClaims, Ref};

    fn reference(name: &str, uid: &str) -> Option<Ref> {
        Some(Ref { name: name.to_owned(), uid: uid.to_owned() })
    }

    #[test]
    fn every_string_reads_back_as_the_claims_held_it() {
        let claims = Claims {
            aud: vec!["a:1".to_owned(), String::new(), "ünï".to_owned()],
            jti: Some("j".to_owned()),
            kubernetes: Some(KubernetesClaims {
                namespace: "ns".to_owned(),
                serviceaccount: Ref { name: "sa".to_owned(), uid: "12:34".to_owned() },
                pod: reference("pod", "pod-uid"),
                secret: reference("", "secret-uid"),
                node: reference("node", "node-uid"),
                ..KubernetesClaims::default()
            }),
            ..Claims::default()
        };
        let token = VerifiedToken::new(&claims, None);
        assert_eq!(token.audiences().collect::<Vec<_>>(), ["a:1", "", "ünï"]);
        assert!(token.has_audiences());
        assert_eq!(token.jti(), Some("j"));
        assert_eq!(
            [Field::Namespace, Field::ServiceAccountName, Field::ServiceAccountUid].map(|f| token.field(f)),
            ["ns", "sa", "12:34"]
        );
        assert_eq!(token.pod(), Some(ObjectRef { name: "pod", uid: "pod-uid" }));
        assert_eq!(token.secret(), Some(ObjectRef { name: "", uid: "secret-uid" }));
        assert_eq!(token.node(), Some(ObjectRef { name: "node", uid: "node-uid" }));
    }

    #[test]
    fn a_token_without_audiences_or_objects_reads_back_empty() {
        let token = VerifiedToken::new(&Claims { jti: None, ..Claims::default() }, None);
        assert_eq!(token.audiences().count(), 0);
        assert!(!token.has_audiences());
        assert_eq!((token.jti(), token.pod(), token.secret(), token.node()), (None, None, None, None));
        assert_eq!(token.field(Field::Namespace), "");
    }

    #[test]
    fn a_legacy_token_keeps_its_secret_name() {
        let claims = Claims {
            legacy_namespace: Some("ns".to_owned()),
            legacy_secret_name: Some("sa-token".to_owned()),
            legacy_service_account_name: Some("sa".to_owned()),
            legacy_service_account_uid: Some("uid".to_owned()),
            ..Claims::default()
        };
        let token = VerifiedToken::new(&claims, Some(Legacy { token_sha256: [0; 32], claims_error: None }));
        assert_eq!(token.legacy_secret(), Some(("ns", "sa-token")));
        assert_eq!(token.field(Field::ServiceAccountUid), "uid");
        assert_eq!(token.secret(), None, "a legacy token names no bound Secret");
    }

    #[test]
    fn a_string_longer_than_its_length_char_holds_ends_the_walk_there() {
        let claims = Claims {
            aud: vec!["api".to_owned()],
            jti: Some("jti".to_owned()),
            kubernetes: Some(KubernetesClaims { namespace: "n".repeat(0xD800), ..KubernetesClaims::default() }),
            ..Claims::default()
        };
        let token = VerifiedToken::new(&claims, None);
        assert_eq!(token.jti(), Some("jti"), "what precedes it still reads");
        assert_eq!(token.field(Field::Namespace), "");
        assert_eq!(token.field(Field::ServiceAccountName), "");
        assert_eq!(token.audiences().count(), 1, "the audiences have their own offset");
    }

    #[test]
    fn strings_past_what_an_offset_holds_read_as_empty_not_as_other_bytes() {
        // Each shorter than a length char holds, together past a `u16`.
        let claims = Claims {
            aud: vec!["api".to_owned()],
            jti: Some("x".repeat(40_000)),
            kubernetes: Some(KubernetesClaims {
                namespace: "n".repeat(30_000),
                pod: Some(Ref { name: "pod".to_owned(), uid: "pod-uid".to_owned() }),
                ..KubernetesClaims::default()
            }),
            ..Claims::default()
        };
        let token = VerifiedToken::new(&claims, None);
        assert_eq!(token.pod(), Some(ObjectRef { name: "", uid: "" }));
        assert_eq!(token.audiences().count(), 0);
        assert_eq!(token.jti().map(str::len), Some(40_000), "what precedes the offsets still reads");
        assert_eq!(token.field(Field::Namespace).len(), 30_000);
    }

    /// The review cache holds a million of these within the memory target: the offsets
    /// must stay in the padding.
    #[test]
    fn a_verified_token_keeps_its_offsets_in_its_padding() {
        assert_eq!(std::mem::size_of::<VerifiedToken>(), 56);
    }
}
