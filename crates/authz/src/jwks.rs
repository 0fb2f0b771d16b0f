//! `jwt` identity: tokens verified against an issuer's published keys.
//!
//! - `issuerUrl`: OIDC discovery (`<issuer>/.well-known/openid-configuration`, whose `issuer`
//!   must equal the configured one), then its `jwks_uri`; the token's `iss` must equal the issuer.
//! - `jwksUrl`: the JWKS directly.
//!
//! RSA (`n`, `e`) and EC P-256 (`x`, `y`) keys; the algorithm is pinned to the key (RS256 for
//! RSA, ES256 for P-256) and `none`, HS* and everything else are refused. `exp` and `nbf` are
//! checked with a leeway against an injected clock. Keys are cached per source and refreshed
//! after a TTL; a token naming an unknown `kid` triggers a refetch, at most once per interval
//! per source, so a flood of made-up `kid`s cannot hammer the issuer. Concurrent fetches for
//! one source are coalesced, and a failed fetch's error is the answer for the same interval
//! before the issuer is asked again. Keys gone stale keep verifying while one caller refreshes
//! them, and after a failed refresh (go-oidc never lets cached keys go). A JWKS that cannot be
//! fetched (with no keys to fall back on) is `Unavailable` (503).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, header};
use serde_json::Value;
use tokenwarden_core::authconfig::{IdentityOutcome, JwtSource};
use tokenwarden_core::keys::{Algorithm, VerifyingKey};
use tokenwarden_store::Clock;

use crate::identity::{CacheResult, JwtVerifier};
use crate::kubeconfig::{ConfigError, client_tls};
use crate::remote::HttpClient;

/// Tokens longer than this are refused before any decoding.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// JWKS and discovery documents larger than this are refused.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Tuning for [`JwksVerifier`].
#[derive(Clone, Debug)]
pub struct JwksOptions {
    /// A PEM bundle trusted for `https://` issuers; None: the system bundle, if any.
    pub ca_file: Option<PathBuf>,
    /// Keys (and the discovery document) are refetched after this long (default 5 min).
    pub refresh: Duration,
    /// At most one refetch per source for an unknown `kid` in this window, and no fetch at all
    /// for this long after a failed one (default 10 s).
    pub unknown_kid_interval: Duration,
    /// Per fetch (default 5 s).
    pub timeout: Duration,
    /// Clock skew allowed on `exp` and `nbf` (default 60 s).
    pub leeway: Duration,
}

impl Default for JwksOptions {
    fn default() -> Self {
        Self {
            ca_file: None,
            refresh: Duration::from_secs(300),
            unknown_kid_interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            leeway: Duration::from_secs(60),
        }
    }
}

/// A published key: its `kid` (as the JWKS names it) and the parsed key.
#[derive(Clone, Debug)]
pub struct Jwk {
    pub kid: Option<String>,
    pub key: VerifyingKey,
}

/// DER length octets.
fn der_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(u8::try_from(len).unwrap_or(0));
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | u8::try_from(bytes.len() - skip).unwrap_or(0));
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    der_len(content.len(), &mut out);
    out.extend_from_slice(content);
    out
}

/// A positive DER INTEGER from big-endian magnitude bytes.
fn der_uint(magnitude: &[u8]) -> Vec<u8> {
    let trimmed: &[u8] = {
        let skip = magnitude.iter().take_while(|b| **b == 0).count();
        &magnitude[skip.min(magnitude.len().saturating_sub(1))..]
    };
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    der(0x02, &content)
}

/// `SubjectPublicKeyInfo` for an RSA key.
fn rsa_spki(n: &[u8], e: &[u8]) -> Vec<u8> {
    // rsaEncryption, NULL parameters.
    const ALGORITHM: &[u8] = &[0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];
    let public_key = der(0x30, &[der_uint(n), der_uint(e)].concat());
    let mut bits = vec![0u8];
    bits.extend_from_slice(&public_key);
    der(0x30, &[ALGORITHM, &der(0x03, &bits)].concat())
}

/// `SubjectPublicKeyInfo` for a P-256 point.
fn p256_spki(x: &[u8], y: &[u8]) -> Vec<u8> {
    // SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING header, uncompressed point marker.
    const PREFIX: &[u8] = &[
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01,
        0x07, 0x03, 0x42, 0x00, 0x04,
    ];
    [PREFIX, x, y].concat()
}

fn b64_field(jwk: &Value, field: &str) -> Result<Vec<u8>, String> {
    let text = jwk.get(field).and_then(Value::as_str).ok_or_else(|| format!("missing {field:?}"))?;
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).map_err(|e| format!("{field:?}: {e}"))
}

/// One JWK as a verifying key. `Ok(None)`: a key this verifier does not use (encryption
/// keys, other curves or algorithms).
pub fn parse_jwk(jwk: &Value) -> Result<Option<Jwk>, String> {
    if jwk.get("use").and_then(Value::as_str).is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    let (alg, spki) = match jwk.get("kty").and_then(Value::as_str) {
        Some("RSA") => (Algorithm::Rs256, rsa_spki(&b64_field(jwk, "n")?, &b64_field(jwk, "e")?)),
        Some("EC") if jwk.get("crv").and_then(Value::as_str) == Some("P-256") => {
            let (x, y) = (b64_field(jwk, "x")?, b64_field(jwk, "y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err("P-256 coordinates must be 32 bytes".into());
            }
            (Algorithm::Es256, p256_spki(&x, &y))
        }
        _ => return Ok(None),
    };
    // A key published for another algorithm (RS512, PS256, ...) does not verify RS256/ES256.
    if jwk.get("alg").and_then(Value::as_str).is_some_and(|a| a != alg.as_str()) {
        return Ok(None);
    }
    let key = VerifyingKey::from_spki_der(alg, &spki).map_err(|e| e.to_string())?;
    let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_owned);
    Ok(Some(Jwk { kid, key }))
}

/// Every usable key of a JWKS document; malformed keys are skipped (and logged).
pub fn parse_jwks(document: &Value) -> Result<Vec<Jwk>, String> {
    let keys = document.get("keys").and_then(Value::as_array).ok_or("JWKS has no \"keys\" array")?;
    let mut out = Vec::new();
    for jwk in keys {
        match parse_jwk(jwk) {
            Ok(Some(key)) => out.push(key),
            Ok(None) => {}
            Err(e) => {
                let kid = jwk.get("kid").and_then(Value::as_str).unwrap_or_default();
                tracing::warn!(kid, error = %e, "JWKS key skipped");
            }
        }
    }
    Ok(out)
}

/// A token split and decoded, nothing verified yet.
struct Parsed<'a> {
    alg: Algorithm,
    kid: Option<String>,
    signing_input: &'a [u8],
    signature: Vec<u8>,
    claims: Value,
}

fn parse_token(token: &str) -> Result<Parsed<'_>, String> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err("token too large".into());
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("malformed token: not a compact JWS".into());
    };
    let header: Value = URL_SAFE_NO_PAD
        .decode(header_b64)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or("malformed token: bad header")?;
    let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or_default();
    let alg = Algorithm::parse(alg_name).ok_or_else(|| format!("unsupported signing algorithm {alg_name:?}"))?;
    let kid = header.get("kid").and_then(Value::as_str).filter(|k| !k.is_empty()).map(str::to_owned);
    let claims: Value = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .ok()
        .and_then(|p| serde_json::from_slice(&p).ok())
        .filter(Value::is_object)
        .ok_or("malformed token: bad claims")?;
    let signature = URL_SAFE_NO_PAD.decode(signature_b64).map_err(|_| "malformed token: bad signature encoding")?;
    let signing_input = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
    Ok(Parsed { alg, kid, signing_input, signature, claims })
}

/// Verifies `token`'s signature against `keys` (by `kid` when the token names one; the
/// algorithm pinned to the key) and returns its claims. Time and issuer are not checked.
pub fn verify_signature(token: &str, keys: &[Jwk]) -> Result<Value, String> {
    let parsed = parse_token(token)?;
    check_signature(&parsed, keys)?;
    Ok(parsed.claims)
}

fn candidates<'k>(kid: Option<&'k str>, keys: &'k [Jwk]) -> impl Iterator<Item = &'k Jwk> + 'k {
    keys.iter().filter(move |k| kid.is_none_or(|kid| k.kid.as_deref() == Some(kid)))
}

fn check_signature(parsed: &Parsed<'_>, keys: &[Jwk]) -> Result<(), String> {
    let mut found = false;
    for key in candidates(parsed.kid.as_deref(), keys) {
        found = true;
        if key.key.algorithm() == parsed.alg && key.key.verify(parsed.signing_input, &parsed.signature) {
            return Ok(());
        }
    }
    if found {
        Err("invalid signature".into())
    } else {
        match &parsed.kid {
            Some(kid) => Err(format!("no key with kid {kid:?}")),
            None => Err("no key to verify the token".into()),
        }
    }
}

fn numeric(claims: &Value, name: &str) -> Result<Option<i64>, String> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            #[allow(clippy::cast_possible_truncation)] // NumericDate seconds; fractions dropped
            let secs = n.as_i64().or_else(|| n.as_f64().map(|f| f as i64));
            secs.map(Some).ok_or_else(|| format!("malformed {name:?} claim"))
        }
        Some(_) => Err(format!("malformed {name:?} claim")),
    }
}

/// `exp` (required) and `nbf` (with `leeway` seconds), and `iss` when `issuer` is given.
pub fn check_claims(claims: &Value, now: i64, leeway: i64, issuer: Option<&str>) -> Result<(), String> {
    // A token without `exp` is expired, as Authorino's go-oidc verifier reads it (its zero
    // expiry is in the past): otherwise a token that never expires, such as a legacy
    // ServiceAccount token signed with the same key, would be accepted forever.
    if numeric(claims, "exp")?.is_none_or(|exp| now > exp.saturating_add(leeway)) {
        return Err("token is expired".into());
    }
    if let Some(nbf) = numeric(claims, "nbf")?
        && now.saturating_add(leeway) < nbf
    {
        return Err("token is not valid yet".into());
    }
    if let Some(issuer) = issuer {
        let iss = claims.get("iss").and_then(Value::as_str).unwrap_or_default();
        if iss != issuer {
            return Err(format!("token issued by {iss:?}, expected {issuer:?}"));
        }
    }
    Ok(())
}

/// The keys of one source, and when they were fetched (clock seconds).
#[derive(Default)]
struct SourceState {
    keys: Option<Arc<Vec<Jwk>>>,
    jwks_uri: Option<String>,
    fetched_at: i64,
    /// When the last fetch failed (timed from its answer, so a slow failure backs off in full;
    /// from its start if it never finished) and why; None once one succeeds.
    failed: Option<(i64, String)>,
    /// The last refetch caused by an unknown `kid`.
    kid_refetch_at: Option<i64>,
}

/// One source's state. `fresh` is what the last fetch produced and when, read without waiting,
/// so a fetch in flight (a refresh, an unknown `kid`) never holds up tokens whose key is known.
#[derive(Default)]
struct Source {
    state: tokio::sync::Mutex<SourceState>,
    fresh: std::sync::RwLock<Option<(Arc<Vec<Jwk>>, i64)>>,
}

type SharedState = Arc<Source>;

/// `jwt` verification against JWKS fetched over HTTP(S).
pub struct JwksVerifier {
    http: HttpClient,
    clock: Arc<dyn Clock>,
    options: JwksOptions,
    sources: Mutex<HashMap<(bool, String), SharedState>>,
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

impl JwksVerifier {
    pub fn new(options: JwksOptions, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        let ca = match &options.ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|e| ConfigError(format!("JWKS CA file {}: {e}", path.display())))?),
            None => None,
        };
        let http = HttpClient::new(client_tls(ca.as_deref(), false, None)?, None)?;
        Ok(Self { http, clock, options, sources: Mutex::default() })
    }

    fn state(&self, source: &JwtSource) -> SharedState {
        let key = match source {
            JwtSource::IssuerUrl(url) => (true, url.clone()),
            JwtSource::JwksUrl(url) => (false, url.clone()),
        };
        let mut sources = self.sources.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(sources.entry(key).or_default())
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let request = Request::get(url)
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("{url}: {e}"))?;
        let (status, body) = self.http.fetch(request, self.options.timeout).await.map_err(|e| format!("{url}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{url}: HTTP {}", status.as_u16()));
        }
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(format!("{url}: document too large"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("{url}: malformed JSON: {e}"))
    }

    /// The JWKS URL: direct, or by discovery (re-discovered on each full refresh).
    async fn jwks_uri(&self, source: &JwtSource, state: &SourceState, rediscover: bool) -> Result<String, String> {
        match source {
            JwtSource::JwksUrl(url) => Ok(url.clone()),
            JwtSource::IssuerUrl(issuer) => {
                if !rediscover && let Some(uri) = &state.jwks_uri {
                    return Ok(uri.clone());
                }
                let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
                let document = self.get_json(&url).await?;
                let advertised = document.get("issuer").and_then(Value::as_str).unwrap_or_default();
                if advertised != issuer {
                    return Err(format!("{url}: issuer {advertised:?} does not match {issuer:?}"));
                }
                document.get("jwks_uri").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| format!("{url}: no jwks_uri"))
            }
        }
    }

    async fn fetch(&self, source: &JwtSource, state: &mut SourceState, rediscover: bool) -> Result<(), String> {
        let now = self.clock.now().unix();
        // Stands if the caller goes away mid-fetch (an ext_authz timeout): the next callers back
        // off too rather than each start a fetch the issuer does not answer in time.
        state.failed = Some((now, "the last fetch was abandoned before the issuer answered".into()));
        let fetched: Result<_, String> = async {
            let uri = self.jwks_uri(source, state, rediscover).await?;
            let keys = parse_jwks(&self.get_json(&uri).await?).map_err(|e| format!("{uri}: {e}"))?;
            Ok((uri, keys))
        }
        .await;
        match fetched {
            Ok((uri, keys)) => {
                state.jwks_uri = Some(uri);
                state.keys = Some(Arc::new(keys));
                state.fetched_at = now;
                state.failed = None;
                Ok(())
            }
            Err(e) => {
                state.failed = Some((self.clock.now().unix(), e.clone()));
                Err(e)
            }
        }
    }

    /// The last fetch's error while it is recent: until the back-off has passed it is the
    /// answer, so callers queued behind a failing fetch, and those right after, do not fetch.
    fn recent_failure(&self, state: &SourceState, now: i64) -> Option<String> {
        let (at, error) = state.failed.as_ref()?;
        (now.saturating_sub(*at) < secs(self.options.unknown_kid_interval)).then(|| error.clone())
    }

    /// The source's keys, fetched or refreshed as needed; `fetched` tells whether this call
    /// went to the network.
    async fn keys_for(&self, source: &JwtSource, kid: Option<&str>, fetched: &mut bool) -> Result<Arc<Vec<Jwk>>, String> {
        let shared = self.state(source);
        let now = self.clock.now().unix();
        // Keys at hand that have this `kid` (or the token names none); fresh ones answer at once.
        let known = shared.fresh.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let known = known.filter(|(keys, _)| kid.is_none() || candidates(kid, keys).next().is_some());
        if let Some((keys, fetched_at)) = &known
            && now.saturating_sub(*fetched_at) < secs(self.options.refresh)
        {
            return Ok(Arc::clone(keys));
        }
        // Held across a fetch: concurrent callers that need it wait for the one fetch and take
        // what it left (keys or an error). Stale keys that have the `kid` are used as they are
        // meanwhile, so a slow or failing issuer holds up the one caller refreshing them.
        let mut state = match shared.state.try_lock() {
            Ok(state) => state,
            Err(_) => match known {
                Some((keys, _)) => return Ok(keys),
                None => shared.state.lock().await,
            },
        };
        let result = self.keys_locked(source, &mut state, kid, now, fetched).await;
        if let Some(keys) = &state.keys {
            *shared.fresh.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((Arc::clone(keys), state.fetched_at));
        }
        result
    }

    async fn keys_locked(&self, source: &JwtSource, state: &mut SourceState, kid: Option<&str>, now: i64, fetched: &mut bool) -> Result<Arc<Vec<Jwk>>, String> {
        let stale = now.saturating_sub(state.fetched_at) >= secs(self.options.refresh);
        if state.keys.is_none() || stale {
            match self.recent_failure(state, now) {
                Some(error) if state.keys.is_none() => return Err(error),
                Some(_) => {}
                None => {
                    *fetched = true;
                    if let Err(e) = self.fetch(source, state, true).await {
                        if state.keys.is_none() {
                            return Err(e);
                        }
                        tracing::warn!(error = %e, "JWKS refresh failed; using the keys fetched before");
                    }
                }
            }
        }
        let keys = state.keys.clone().unwrap_or_default();
        if let Some(kid) = kid
            && candidates(Some(kid), &keys).next().is_none()
        {
            // The issuer is failing: whether the `kid` is new or made up cannot be told yet.
            if let Some(error) = self.recent_failure(state, now) {
                return Err(error);
            }
            let allowed = state.kid_refetch_at.is_none_or(|at| now.saturating_sub(at) >= secs(self.options.unknown_kid_interval));
            if allowed && !*fetched {
                *fetched = true;
                state.kid_refetch_at = Some(now);
                self.fetch(source, state, false).await?;
            }
        }
        Ok(state.keys.clone().unwrap_or_default())
    }
}

#[async_trait::async_trait]
impl JwtVerifier for JwksVerifier {
    async fn verify(&self, source: &JwtSource, token: &str) -> (IdentityOutcome, CacheResult) {
        // A token that cannot be ours never causes a fetch.
        let parsed = match parse_token(token) {
            Ok(parsed) => parsed,
            Err(reason) => return (IdentityOutcome::Invalid(reason), CacheResult::Hit),
        };
        let mut fetched = false;
        let keys = self.keys_for(source, parsed.kid.as_deref(), &mut fetched).await;
        let cache = if fetched { CacheResult::Miss } else { CacheResult::Hit };
        let keys = match keys {
            Ok(keys) => keys,
            Err(reason) => return (IdentityOutcome::Unavailable(format!("cannot fetch JWKS: {reason}")), cache),
        };
        if let Err(reason) = check_signature(&parsed, &keys) {
            return (IdentityOutcome::Invalid(reason), cache);
        }
        let issuer = match source {
            JwtSource::IssuerUrl(issuer) => Some(issuer.as_str()),
            JwtSource::JwksUrl(_) => None,
        };
        match check_claims(&parsed.claims, self.clock.now().unix(), secs(self.options.leeway), issuer) {
            Ok(()) => (IdentityOutcome::Verified(parsed.claims), cache),
            Err(reason) => (IdentityOutcome::Invalid(reason), cache),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jwk_round_trips_to_the_same_key() {
        for alg in [Algorithm::Rs256, Algorithm::Es256] {
            let key = tokenwarden_store::keystore::generate(alg).unwrap();
            let parsed = parse_jwk(key.verifying_key().jwk()).unwrap().unwrap();
            assert_eq!(parsed.key.spki_der(), key.verifying_key().spki_der());
            assert_eq!(parsed.kid.as_deref(), Some(key.kid()));
            let sig = key.sign(b"m").unwrap();
            assert!(parsed.key.verify(b"m", &sig));
        }
    }

    #[test]
    fn unusable_jwks_are_skipped() {
        let rsa = tokenwarden_store::keystore::generate(Algorithm::Rs256).unwrap();
        let mut enc = rsa.verifying_key().jwk().clone();
        enc["use"] = json!("enc");
        let mut rs512 = rsa.verifying_key().jwk().clone();
        rs512["alg"] = json!("RS512");
        let hs = json!({"kty": "oct", "k": "c2VjcmV0"});
        assert!(parse_jwk(&enc).unwrap().is_none());
        assert!(parse_jwk(&rs512).unwrap().is_none());
        assert!(parse_jwk(&hs).unwrap().is_none());
        assert!(parse_jwk(&json!({"kty": "RSA", "n": "!!", "e": "AQAB"})).is_err());
        assert_eq!(parse_jwks(&json!({"keys": [enc, hs, rsa.verifying_key().jwk()]})).unwrap().len(), 1);
    }

    #[test]
    fn time_and_issuer_checks() {
        let claims = json!({"iss": "https://i", "exp": 1000, "nbf": 900});
        assert!(check_claims(&claims, 1000, 60, Some("https://i")).is_ok());
        assert!(check_claims(&claims, 1060, 60, None).is_ok());
        assert_eq!(check_claims(&claims, 1061, 60, None).unwrap_err(), "token is expired");
        assert!(check_claims(&claims, 840, 60, None).is_ok());
        assert_eq!(check_claims(&claims, 839, 60, None).unwrap_err(), "token is not valid yet");
        assert!(check_claims(&claims, 1000, 60, Some("https://other")).is_err());
        assert!(check_claims(&json!({"exp": "soon"}), 0, 0, None).is_err());
        assert_eq!(check_claims(&json!({"iss": "https://i"}), 0, 60, None).unwrap_err(), "token is expired", "no exp: never valid");
        assert_eq!(check_claims(&json!({"exp": null}), 0, 60, None).unwrap_err(), "token is expired");
    }
}
