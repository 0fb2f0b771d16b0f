//! Identity backends: how a credential named by an AuthConfig is verified.
//!
//! - `kubernetesTokenReview` through a [`TokenReviewer`]: the in-process authority
//!   ([`LocalReviewer`]: no network hop; its review cache makes a repeated token cost a hash
//!   and a few map lookups, and a deleted ServiceAccount, Pod or Secret is seen at once), or a
//!   remote API server.
//! - `jwt` through a [`JwtVerifier`].
//! - `apiKey`: Secrets holding `api_key`, selected by labels, compared by digest in constant
//!   time, from an index kept by the store's follower (`serve`) or a watch of the API server's
//!   Secrets (`authorize`), never a read per request.
//! - Invalid credentials are remembered briefly, so a flood of one bad token costs one
//!   verification per window: by the token reviewers themselves, and for the other methods
//!   here (negative cache).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;
use tokenwarden_core::Object;
use tokenwarden_core::cache_key::CacheKeyer;
use tokenwarden_core::authconfig::{IdentityMethod, IdentityOutcome, IdentityRequest, JwtSource};
use tokenwarden_store::Authority;

/// Reviews ServiceAccount tokens (`kubernetesTokenReview`): in-process, or by TokenReview
/// against an API server.
#[async_trait::async_trait]
pub trait TokenReviewer: Send + Sync {
    /// `Verified` with the TokenReview `status` (`{authenticated, user, audiences}`),
    /// `Invalid("not authenticated")`, or `Unavailable` when the reviewer cannot answer.
    /// Without `wants_object` the `status` may be left out (`Verified(Null)`): nothing reads it.
    /// A reviewer remembers its refusals for a while (the authorizer keeps no negative cache
    /// of its own for token reviews).
    async fn review(&self, token: &str, audiences: &[String], wants_object: bool) -> (IdentityOutcome, CacheResult);
}

/// Verifies JWTs against an issuer's keys (`jwt` identity).
#[async_trait::async_trait]
pub trait JwtVerifier: Send + Sync {
    async fn verify(&self, source: &JwtSource, token: &str) -> (IdentityOutcome, CacheResult);
}

/// The in-process authority as a token reviewer: no network hop, and its review cache
/// (HMAC-keyed, coalesced, re-validated against live objects on every hit) answers repeats,
/// refusals included.
pub struct LocalReviewer(pub Arc<Authority>);

#[async_trait::async_trait]
impl TokenReviewer for LocalReviewer {
    async fn review(&self, token: &str, audiences: &[String], wants_object: bool) -> (IdentityOutcome, CacheResult) {
        let review = self.0.review(token, audiences);
        let cache = if review.cached { CacheResult::Hit } else { CacheResult::Miss };
        match review.result {
            Ok(reviewed) => (verified(reviewed, wants_object), cache),
            // Authorino's text for a TokenReview that did not authenticate.
            Err(_) => (IdentityOutcome::Invalid("not authenticated".into()), cache),
        }
    }
}

/// A successful review as an identity: its TokenReview `status` when the AuthConfig reads it.
/// Most do not (one token review, no policy), and building the object and dropping it unread
/// was a tenth of a cached check.
fn verified(reviewed: tokenwarden_store::Reviewed, wants_object: bool) -> IdentityOutcome {
    IdentityOutcome::Verified(if wants_object { token_review_status(reviewed) } else { Value::Null })
}

/// The TokenReview `status`, as Authorino stores it in `auth.identity`. Built in place:
/// `json!` would copy the user's strings once more.
fn token_review_status(reviewed: tokenwarden_store::Reviewed) -> Value {
    let mut status = serde_json::Map::new();
    status.insert("authenticated".to_owned(), Value::Bool(true));
    status.insert("user".to_owned(), reviewed.token.user().into_json());
    status.insert("audiences".to_owned(), Value::Array(reviewed.audiences.into_iter().map(Value::String).collect()));
    Value::Object(status)
}

/// How long an invalid credential is remembered.
const NEGATIVE_TTL: Duration = Duration::from_secs(5);

/// An API key Secret: where it lives, its labels, and the SHA-256 of its `api_key`.
#[derive(Clone, Debug)]
pub struct ApiKeySecret {
    pub namespace: String,
    pub object: Arc<Object>,
    pub key_sha256: [u8; 32],
}

impl ApiKeySecret {
    /// The API key a Secret holds (`data.api_key`, base64 as the API serves it; `stringData`
    /// is folded into `data` when it is written), or None.
    pub fn from_secret(secret: Arc<Object>) -> Option<Self> {
        let api_key = secret.secret_data("api_key")?;
        Some(Self { namespace: secret.namespace().to_owned(), key_sha256: sha256(&api_key), object: secret })
    }
}

pub use tokenwarden_core::sha256;

/// Credentials longer than this are refused before any backend sees them (DESIGN: tokens ≤ 16 KiB).
const MAX_CREDENTIAL_BYTES: usize = 16 * 1024;

/// The verifier the authorizer calls for every identity source that needs one.
pub struct Identities {
    reviewer: Option<Arc<dyn TokenReviewer>>,
    jwt: Option<Arc<dyn JwtVerifier>>,
    /// `None` until a source of API-key Secrets feeds it: then `apiKey` identities are
    /// unavailable (503), not a misleading "invalid".
    api_keys: RwLock<Option<HashMap<String, ApiKeySecret>>>,
    negative: moka::sync::Cache<[u8; 32], Arc<str>>,
    keyer: CacheKeyer,
}

/// Whether a verification came from a cache, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheResult {
    Hit,
    Miss,
}

impl Identities {
    /// Verifies against the in-process `authority` (None: TokenReview is unavailable → 503).
    pub fn new(authority: Option<Arc<Authority>>) -> Self {
        Self::with_backends(authority.map(|a| Arc::new(LocalReviewer(a)) as Arc<dyn TokenReviewer>), None)
    }

    /// Verifies with the given backends; a method without one is unavailable (503).
    pub fn with_backends(reviewer: Option<Arc<dyn TokenReviewer>>, jwt: Option<Arc<dyn JwtVerifier>>) -> Self {
        Self {
            reviewer,
            jwt,
            api_keys: RwLock::default(),
            negative: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(NEGATIVE_TTL).build(),
            keyer: CacheKeyer::new(tokenwarden_store::clock::random_bytes()),
        }
    }

    /// Replaces the API key index (`namespace/name` → secret).
    pub fn set_api_keys(&self, keys: HashMap<String, ApiKeySecret>) {
        *self.api_keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(keys);
        // A key refused a moment ago may exist now.
        self.negative.invalidate_all();
    }

    /// Verifies one credential.
    pub async fn verify(&self, request: &IdentityRequest<'_>) -> (IdentityOutcome, CacheResult) {
        if request.credential.len() > MAX_CREDENTIAL_BYTES {
            return (IdentityOutcome::Invalid("credential too large".into()), CacheResult::Miss);
        }
        // Reviewers remember their refusals themselves, under the key of their own cache: a
        // token review hashes the token once, however it ends.
        if let IdentityMethod::KubernetesTokenReview { .. } = request.method() {
            return match &self.reviewer {
                Some(reviewer) => reviewer.review(request.credential, request.audiences(), request.wants_object()).await,
                None => (IdentityOutcome::Unavailable("no token reviewer configured".into()), CacheResult::Miss),
            };
        }
        let negative_key = self.keyer.key(
            &[request.authconfig_namespace(), request.authconfig_name(), request.source(), request.credential],
            request.audiences(),
        );
        if let Some(reason) = self.negative.get(&negative_key) {
            return (IdentityOutcome::Invalid(reason.to_string()), CacheResult::Hit);
        }
        let (outcome, cache) = match request.method() {
            IdentityMethod::ApiKey { selector, all_namespaces } => (self.api_key(request, selector, *all_namespaces), CacheResult::Miss),
            IdentityMethod::Jwt { source, .. } => match &self.jwt {
                Some(jwt) => jwt.verify(source, request.credential).await,
                None => (IdentityOutcome::Unavailable("no JWT verifier configured".into()), CacheResult::Miss),
            },
            // Token reviews are answered above; anonymous and plain by the evaluation itself.
            IdentityMethod::KubernetesTokenReview { .. } | IdentityMethod::Anonymous | IdentityMethod::Plain { .. } => {
                (IdentityOutcome::Invalid("unexpected identity request".into()), CacheResult::Miss)
            }
        };
        if let IdentityOutcome::Invalid(reason) = &outcome {
            self.negative.insert(negative_key, Arc::from(reason.as_str()));
        }
        (outcome, cache)
    }

    fn api_key(&self, request: &IdentityRequest<'_>, selector: &tokenwarden_core::selector::LabelSelector, all_namespaces: bool) -> IdentityOutcome {
        let presented = sha256(request.credential.as_bytes());
        let keys = self.api_keys.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(keys) = keys.as_ref() else {
            return IdentityOutcome::Unavailable("no source of API-key Secrets in this mode".into());
        };
        let found = keys.values().find(|secret| {
            (all_namespaces || secret.namespace == request.authconfig_namespace())
                && selector.matches(&secret.object)
                && aws_lc_rs::constant_time::verify_slices_are_equal(&secret.key_sha256, &presented).is_ok()
        });
        match found {
            // Authorino's identity for an API key is the Secret itself.
            Some(secret) => {
                let mut object = secret.object.value().clone();
                // Never the key itself, in any of the places a Secret can carry it.
                object.remove("data");
                object.remove("stringData");
                if let Some(Value::Object(annotations)) = object.get_mut("metadata").and_then(|m| m.get_mut("annotations")) {
                    annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
                }
                IdentityOutcome::Verified(Value::Object(object))
            }
            None => IdentityOutcome::Invalid("the API Key provided is invalid".into()),
        }
    }
}
