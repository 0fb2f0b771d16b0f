//! Signing and verification keys: PEM import/export, Kubernetes `kid`s, JWKS.
//!
//! Keys are parsed once; signing and verification use the parsed form. The algorithm is a
//! property of the key (RSA → RS256, P-256 → ES256), never of the token.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, ParsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

/// A JWS algorithm tokenwarden signs or verifies with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Rs256,
    Es256,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RS256" => Some(Self::Rs256),
            "ES256" => Some(Self::Es256),
            _ => None,
        }
    }

    fn verification(self) -> &'static dyn signature::VerificationAlgorithm {
        match self {
            Self::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Self::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("no PEM block found")]
    NoPem,
    #[error("malformed PEM: {0}")]
    MalformedPem(&'static str),
    #[error("no private key in the PEM data (found: {0})")]
    NoPrivateKey(String),
    #[error("unsupported key: only RSA (RS256) and ECDSA P-256 (ES256) keys are supported")]
    Unsupported,
    #[error("invalid key: {0}")]
    Invalid(String),
}

/// `kid` as Kubernetes computes it: unpadded base64url of SHA-256 over the DER
/// SubjectPublicKeyInfo.
pub fn key_id(spki_der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki_der))
}

enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// A private key, parsed once, that signs JWS inputs.
pub struct SigningKey {
    signer: Signer,
    pkcs8: Vec<u8>,
    public: VerifyingKey,
    /// `b64url({"alg":..,"kid":..})`, the same for every token this key signs.
    jws_header: String,
}

impl std::fmt::Debug for SigningKey {
    // Never prints key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("alg", &self.public.alg).field("kid", &self.public.kid).finish()
    }
}

impl SigningKey {
    /// From PKCS#8 DER (RSA or EC P-256).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        if let Ok(rsa) = RsaKeyPair::from_pkcs8(der) {
            return Self::from_rsa(rsa);
        }
        match EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            Ok(ec) => Self::from_ec(ec),
            Err(_) => Err(KeyError::Unsupported),
        }
    }

    /// From PEM: PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY` (the
    /// forms a cluster's `--service-account-private-key-file` may hold). Other blocks, such as
    /// `EC PARAMETERS`, are skipped.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let blocks = pem_blocks(pem)?;
        let mut seen = Vec::new();
        for (label, der) in &blocks {
            match label.as_str() {
                "PRIVATE KEY" => return Self::from_pkcs8_der(der),
                "RSA PRIVATE KEY" => {
                    let rsa = RsaKeyPair::from_der(der).map_err(|e| KeyError::Invalid(e.to_string()))?;
                    return Self::from_rsa(rsa);
                }
                "EC PRIVATE KEY" => {
                    let ec = EcdsaKeyPair::from_private_key_der(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der)
                        .map_err(|_| KeyError::Unsupported)?;
                    return Self::from_ec(ec);
                }
                other => seen.push(other.to_owned()),
            }
        }
        Err(KeyError::NoPrivateKey(seen.join(", ")))
    }

    fn from_rsa(rsa: RsaKeyPair) -> Result<Self, KeyError> {
        let invalid = |e: aws_lc_rs::error::Unspecified| KeyError::Invalid(e.to_string());
        let pkcs8 = rsa.as_der().map_err(invalid)?.as_ref().to_vec();
        let spki = rsa.public_key().as_der().map_err(invalid)?.as_ref().to_vec();
        let public = VerifyingKey::from_spki_der(Algorithm::Rs256, &spki)?;
        Ok(Self::assemble(Signer::Rsa(rsa), pkcs8, public))
    }

    fn from_ec(ec: EcdsaKeyPair) -> Result<Self, KeyError> {
        let invalid = |e: aws_lc_rs::error::Unspecified| KeyError::Invalid(e.to_string());
        let pkcs8 = ec.to_pkcs8v1().map_err(invalid)?.as_ref().to_vec();
        let spki = ec.public_key().as_der().map_err(invalid)?.as_ref().to_vec();
        let public = VerifyingKey::from_spki_der(Algorithm::Es256, &spki)?;
        Ok(Self::assemble(Signer::Ec(ec), pkcs8, public))
    }

    fn assemble(signer: Signer, pkcs8: Vec<u8>, public: VerifyingKey) -> Self {
        // Only `alg` and `kid`, as kube-apiserver's header.
        let header = format!(r#"{{"alg":"{}","kid":"{}"}}"#, public.alg.as_str(), public.kid);
        Self { signer, pkcs8, jws_header: URL_SAFE_NO_PAD.encode(header), public }
    }

    /// The encoded JWS protected header of this key's tokens.
    pub fn jws_header(&self) -> &str {
        &self.jws_header
    }

    /// PKCS#8 PEM, the form tokenwarden persists.
    pub fn to_pkcs8_pem(&self) -> String {
        pem_encode("PRIVATE KEY", &self.pkcs8)
    }

    pub fn algorithm(&self) -> Algorithm {
        self.public.alg
    }

    pub fn kid(&self) -> &str {
        &self.public.kid
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.public
    }

    /// Signs `message` (the JWS signing input).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.signer {
            Signer::Rsa(rsa) => {
                let mut sig = vec![0; rsa.public_modulus_len()];
                let rng = aws_lc_rs::rand::SystemRandom::new();
                rsa.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|e| KeyError::Invalid(e.to_string()))?;
                Ok(sig)
            }
            Signer::Ec(ec) => {
                let rng = aws_lc_rs::rand::SystemRandom::new();
                let sig = ec.sign(&rng, message).map_err(|e| KeyError::Invalid(e.to_string()))?;
                Ok(sig.as_ref().to_vec())
            }
        }
    }
}

/// A public key, parsed once, that verifies signatures of one algorithm.
#[derive(Clone)]
pub struct VerifyingKey {
    alg: Algorithm,
    kid: String,
    spki: Vec<u8>,
    parsed: std::sync::Arc<ParsedPublicKey>,
    jwk: Value,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey").field("alg", &self.alg).field("kid", &self.kid).finish()
    }
}

impl VerifyingKey {
    /// From a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(alg: Algorithm, spki: &[u8]) -> Result<Self, KeyError> {
        let parsed = ParsedPublicKey::new(alg.verification(), spki).map_err(|e| KeyError::Invalid(e.to_string()))?;
        let kid = key_id(spki);
        let jwk = match alg {
            Algorithm::Rs256 => {
                let rsa = aws_lc_rs::rsa::PublicKey::from_der(spki).map_err(|e| KeyError::Invalid(e.to_string()))?;
                let n = URL_SAFE_NO_PAD.encode(rsa.modulus().big_endian_without_leading_zero());
                let e = URL_SAFE_NO_PAD.encode(rsa.exponent().big_endian_without_leading_zero());
                json!({"use": "sig", "kty": "RSA", "kid": kid, "alg": "RS256", "n": n, "e": e})
            }
            Algorithm::Es256 => {
                // A P-256 SPKI ends with the uncompressed point 0x04 || x || y.
                let point = spki.get(spki.len().saturating_sub(65)..).filter(|p| p.first() == Some(&4));
                let point = point.ok_or(KeyError::Unsupported)?;
                let (x, y) = (URL_SAFE_NO_PAD.encode(&point[1..33]), URL_SAFE_NO_PAD.encode(&point[33..65]));
                json!({"use": "sig", "kty": "EC", "kid": kid, "crv": "P-256", "alg": "ES256", "x": x, "y": y})
            }
        };
        Ok(Self { alg, kid, spki: spki.to_vec(), parsed: std::sync::Arc::new(parsed), jwk })
    }

    /// From a `PUBLIC KEY` PEM block; the algorithm follows the key type.
    pub fn from_public_pem(pem: &str) -> Result<Self, KeyError> {
        let blocks = pem_blocks(pem)?;
        let (_, der) = blocks.iter().find(|(label, _)| label == "PUBLIC KEY").ok_or(KeyError::NoPem)?;
        Self::from_spki_der(Algorithm::Rs256, der).or_else(|_| Self::from_spki_der(Algorithm::Es256, der))
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// This key as a JWK, as kube-apiserver publishes it at `/openid/v1/jwks`.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.parsed.verify_sig(message, signature).is_ok()
    }
}

/// The keys an issuer holds: one that signs, and every key whose tokens may still be alive.
#[derive(Debug)]
pub struct KeySet {
    signing: SigningKey,
    /// All verification keys, the signing key's first.
    verifying: Vec<VerifyingKey>,
}

impl KeySet {
    /// `others` are older (or imported) public keys that keep verifying.
    pub fn new(signing: SigningKey, others: Vec<VerifyingKey>) -> Self {
        let mut verifying = vec![signing.public.clone()];
        for key in others {
            if !verifying.iter().any(|k| k.kid == key.kid) {
                verifying.push(key);
            }
        }
        Self { signing, verifying }
    }

    pub fn signing(&self) -> &SigningKey {
        &self.signing
    }

    pub fn verifying(&self) -> &[VerifyingKey] {
        &self.verifying
    }

    /// The key with this `kid`, as kube-apiserver picks keys by the token header's `kid`.
    pub fn find(&self, kid: &str) -> Option<&VerifyingKey> {
        self.verifying.iter().find(|k| k.kid == kid)
    }

    /// `{"keys": [...]}` for `/openid/v1/jwks`.
    pub fn jwks(&self) -> Value {
        json!({"keys": self.verifying.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
    }

    /// Sorted distinct algorithms, for `id_token_signing_alg_values_supported`.
    pub fn algorithms(&self) -> Vec<&'static str> {
        let mut algs: Vec<&'static str> = self.verifying.iter().map(|k| k.alg.as_str()).collect();
        algs.sort_unstable();
        algs.dedup();
        algs
    }
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Every `-----BEGIN X-----` ... `-----END X-----` block, decoded.
fn pem_blocks(pem: &str) -> Result<Vec<(String, Vec<u8>)>, KeyError> {
    let mut blocks = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + 11..];
        let label_end = after.find("-----").ok_or(KeyError::MalformedPem("unterminated BEGIN line"))?;
        let label = &after[..label_end];
        let body_and_more = &after[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let end = body_and_more.find(&end_marker).ok_or(KeyError::MalformedPem("missing END line"))?;
        let body: String = body_and_more[..end]
            .lines()
            .filter(|line| !line.contains(':')) // RFC 1421 headers (Proc-Type, DEK-Info)
            .flat_map(|line| line.chars().filter(|c| !c.is_whitespace()))
            .collect();
        let der = STANDARD.decode(body).map_err(|_| KeyError::MalformedPem("bad base64"))?;
        blocks.push((label.to_owned(), der));
        rest = &body_and_more[end + end_marker.len()..];
    }
    if blocks.is_empty() { Err(KeyError::NoPem) } else { Ok(blocks) }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Fresh keys for tests (the store generates production keys).
    pub(crate) fn rsa_key() -> SigningKey {
        let rsa = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        SigningKey::from_rsa(rsa).unwrap()
    }

    pub(crate) fn ec_key() -> SigningKey {
        let ec = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        SigningKey::from_ec(ec).unwrap()
    }

    #[test]
    fn pem_round_trip_keeps_kid() {
        for key in [rsa_key(), ec_key()] {
            let again = SigningKey::from_pem(&key.to_pkcs8_pem()).unwrap();
            assert_eq!(again.kid(), key.kid());
            assert_eq!(again.algorithm(), key.algorithm());
            let sig = again.sign(b"msg").unwrap();
            assert!(key.verifying_key().verify(b"msg", &sig));
            assert!(!key.verifying_key().verify(b"msg2", &sig));
        }
    }

    #[test]
    fn kid_is_unpadded_base64url_sha256_of_spki() {
        let key = rsa_key();
        let expected = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            key.verifying_key().spki_der(),
        ));
        assert_eq!(key.kid(), expected);
        assert_eq!(key.kid().len(), 43);
        assert!(!key.kid().contains(['=', '+', '/']));
    }

    fn openssl(args: &[&str], input: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut child = std::process::Command::new("openssl")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("openssl is installed by the test setup");
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "openssl {args:?} failed");
        out.stdout
    }

    /// Keys as a cluster holds them, made by OpenSSL: PKCS#1 RSA (`genrsa -traditional`) and
    /// SEC1 EC with an `EC PARAMETERS` block first (`ecparam -genkey`). The `kid` must equal
    /// the SHA-256 of the public key DER that OpenSSL itself derives.
    #[test]
    fn imports_openssl_keys_with_kubernetes_kids() {
        for (args, alg) in [
            (&["genrsa", "-traditional", "2048"][..], Algorithm::Rs256),
            (&["ecparam", "-name", "prime256v1", "-genkey"][..], Algorithm::Es256),
        ] {
            let pem = String::from_utf8(openssl(args, b"")).unwrap();
            assert!(pem.contains("-----BEGIN RSA PRIVATE KEY-----") || pem.contains("-----BEGIN EC PRIVATE KEY-----"));
            let key = SigningKey::from_pem(&pem).unwrap();
            assert_eq!(key.algorithm(), alg);
            let spki = openssl(&["pkey", "-pubout", "-outform", "DER"], pem.as_bytes());
            assert_eq!(key.kid(), key_id(&spki));
            assert_eq!(key.verifying_key().spki_der(), &spki[..]);
        }
    }

    #[test]
    fn rejects_bad_pem() {
        assert_eq!(SigningKey::from_pem("hello").unwrap_err(), KeyError::NoPem);
        assert!(matches!(
            SigningKey::from_pem("-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n"),
            Err(KeyError::MalformedPem(_))
        ));
        assert!(matches!(
            SigningKey::from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            Err(KeyError::NoPrivateKey(_))
        ));
        assert_eq!(
            SigningKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap_err(),
            KeyError::Unsupported
        );
    }

    #[test]
    fn jwks_has_kubernetes_fields() {
        let set = KeySet::new(rsa_key(), vec![ec_key().verifying_key().clone()]);
        let jwks = set.jwks();
        let rsa = &jwks["keys"][0];
        assert_eq!(rsa["kty"], "RSA");
        assert_eq!(rsa["use"], "sig");
        assert_eq!(rsa["alg"], "RS256");
        assert_eq!(rsa["e"], "AQAB");
        assert_eq!(URL_SAFE_NO_PAD.decode(rsa["n"].as_str().unwrap()).unwrap().len(), 256);
        assert_eq!(jwks["keys"][1]["crv"], "P-256");
        assert_eq!(set.algorithms(), vec!["ES256", "RS256"]);
        let public_pem = pem_encode("PUBLIC KEY", set.verifying()[1].spki_der());
        assert_eq!(VerifyingKey::from_public_pem(&public_pem).unwrap().algorithm(), Algorithm::Es256);
    }
}
