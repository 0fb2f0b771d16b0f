//! Compact JWS: signing with a parsed key, and the parse-and-verify steps kube-apiserver's
//! service-account authenticator takes, in its order.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::claims::Claims;
use crate::keys::{Algorithm, KeyError, KeySet, SigningKey};

/// Tokens longer than this are refused before any decoding (DESIGN: tokens ≤ 16 KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Signs `claims` as `b64(header).b64(claims).b64(signature)`; the header holds only `alg`
/// and `kid`, as kube-apiserver's does.
pub fn sign(key: &SigningKey, claims: &Claims) -> Result<String, KeyError> {
    let payload = serde_json::to_vec(claims).map_err(|e| KeyError::Invalid(e.to_string()))?;
    let mut token = String::with_capacity(key.jws_header().len() + payload.len() * 4 / 3 + 400);
    token.push_str(key.jws_header());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    Ok(token)
}

/// Why a token was not accepted, before any claim is trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwtError {
    /// Not a JWT of an accepted issuer, or not parseable: the authenticator says "not mine".
    NotMine,
    /// The header names a `kid` no key has.
    NoKeys,
    /// The signature does not verify (or the alg does not match the key).
    BadSignature,
    /// The signature verified but the claims are not valid JSON of the expected types.
    MalformedClaims(String),
}

#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    kid: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
struct IssuerOnly {
    #[serde(default)]
    iss: Option<serde_json::Value>,
}

/// Parses and verifies a compact JWS. `accepts_issuer` decides, from the unverified `iss`,
/// whether the token is this authority's at all (kube's `hasCorrectIssuer`). Returns the
/// verified claims.
pub fn verify(token: &str, keys: &KeySet, accepts_issuer: impl Fn(&str) -> bool) -> Result<Claims, JwtError> {
    if token.len() > MAX_TOKEN_BYTES || token.starts_with('{') {
        return Err(JwtError::NotMine);
    }
    let mut parts = token.splitn(4, '.');
    let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::NotMine);
    };
    let payload = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| JwtError::NotMine)?;
    // One parse in the common case; claims that do not parse are only "not mine" when not even
    // an accepted `iss` can be read from them.
    // From text checked once, when it is UTF-8 (it always is from kube-apiserver and from
    // tokenwarden): from bytes, serde_json checks each string on its own.
    let claims: Result<Claims, serde_json::Error> = match std::str::from_utf8(&payload) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(&payload),
    };
    let issuer_accepted = match &claims {
        Ok(claims) => accepts_issuer(&claims.iss),
        Err(_) => matches!(
            serde_json::from_slice::<IssuerOnly>(&payload),
            Ok(IssuerOnly { iss: Some(serde_json::Value::String(iss)) }) if accepts_issuer(&iss)
        ),
    };
    if !issuer_accepted {
        return Err(JwtError::NotMine);
    }

    let header_json = URL_SAFE_NO_PAD.decode(header_b64).map_err(|_| JwtError::NotMine)?;
    let header: Header<'_> = serde_json::from_slice(&header_json).map_err(|_| JwtError::NotMine)?;
    // Only algorithms tokenwarden knows parse (go-jose is given the allowed list); `none`,
    // HS* and anything else is not ours.
    let alg = Algorithm::parse(&header.alg).ok_or(JwtError::NotMine)?;
    let signature = URL_SAFE_NO_PAD.decode(sig_b64).map_err(|_| JwtError::NotMine)?;
    let signing_input = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];

    // A token without a `kid` (or with an empty one) is tried against every key.
    let kid = header.kid.as_deref().filter(|kid| !kid.is_empty());
    let mut candidates = keys.verifying().iter().filter(|k| kid.is_none_or(|kid| k.kid() == kid)).peekable();
    if candidates.peek().is_none() {
        return Err(JwtError::NoKeys);
    }
    // The algorithm is pinned to the key: a key verifies only tokens of its own algorithm.
    let verified = candidates.any(|key| key.algorithm() == alg && key.verify(signing_input, &signature));
    if !verified {
        return Err(JwtError::BadSignature);
    }
    claims.map_err(|e| JwtError::MalformedClaims(e.to_string()))
}

/// Decodes a token's header and claims without verifying anything (for `tokenwarden decode`).
pub fn decode_unverified(token: &str) -> Option<(serde_json::Value, serde_json::Value)> {
    if token.len() > MAX_TOKEN_BYTES {
        return None;
    }
    let mut parts = token.split('.');
    let header = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
    let payload = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
    Some((serde_json::from_slice(&header).ok()?, serde_json::from_slice(&payload).ok()?))
}
