//! Shared fixtures for the core's integration tests: keys (generated once per test binary),
//! a fixed clock, an issuer configuration and a small world of objects.
#![allow(dead_code)] // each test binary uses a different subset

use std::sync::{Arc, LazyLock};

use aws_lc_rs::encoding::AsDer;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use tokenwarden_core::Timestamp;
use tokenwarden_core::keys::{KeySet, SigningKey};
use tokenwarden_core::lookup::{ObjectMeta, PodInfo, SecretInfo, StaticLookup};
use tokenwarden_core::token_request::{
    BoundObjectReference, IssuedToken, IssuerConfig, TokenRequestInput, TokenRequestSpec, issue,
};

/// A fixed "now" (2023-11-14T22:13:20Z).
pub const NOW: Timestamp = Timestamp::from_unix(1_700_000_000);
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
pub const ISSUER2: &str = "https://issuer-two.example";
pub const NS: &str = "ns";
pub const SA: &str = "sa";
pub const SA_UID: &str = "sa-uid";
pub const POD: &str = "p";
pub const POD_UID: &str = "pod-uid";
pub const NODE: &str = "node-1";
pub const NODE_UID: &str = "node-uid";
pub const SECRET: &str = "s";
pub const SECRET_UID: &str = "secret-uid";
pub const RANDOM: [u8; 16] = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00];
/// `uuid_v4(RANDOM)`: version nibble forced to 4, variant bits to 10.
pub const RANDOM_UUID: &str = "11223344-5566-4788-99aa-bbccddeeff00";

fn rsa_pkcs8() -> Vec<u8> {
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa keygen");
    pair.as_der().expect("rsa der").as_ref().to_vec()
}

fn ec_pkcs8() -> Vec<u8> {
    let pair = aws_lc_rs::signature::EcdsaKeyPair::generate(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING)
        .expect("ec keygen");
    pair.to_pkcs8v1().expect("ec pkcs8").as_ref().to_vec()
}

static RSA_DER: LazyLock<Vec<u8>> = LazyLock::new(rsa_pkcs8);
static RSA2_DER: LazyLock<Vec<u8>> = LazyLock::new(rsa_pkcs8);
static EC_DER: LazyLock<Vec<u8>> = LazyLock::new(ec_pkcs8);
static EC2_DER: LazyLock<Vec<u8>> = LazyLock::new(ec_pkcs8);

/// The main RSA key (RS256).
pub fn rsa() -> SigningKey {
    SigningKey::from_pkcs8_der(&RSA_DER).expect("rsa key")
}
/// A second, unrelated RSA key.
pub fn rsa2() -> SigningKey {
    SigningKey::from_pkcs8_der(&RSA2_DER).expect("rsa2 key")
}
/// The main P-256 key (ES256).
pub fn ec() -> SigningKey {
    SigningKey::from_pkcs8_der(&EC_DER).expect("ec key")
}
/// A second, unrelated P-256 key.
pub fn ec2() -> SigningKey {
    SigningKey::from_pkcs8_der(&EC2_DER).expect("ec2 key")
}

pub fn keys_rsa() -> KeySet {
    KeySet::new(rsa(), vec![])
}
pub fn keys_ec() -> KeySet {
    KeySet::new(ec(), vec![])
}

/// Two issuers (the first signs); API audiences are the issuers (kube's default).
pub fn config() -> IssuerConfig {
    let mut c = IssuerConfig::new(ISSUER);
    c.issuers.push(ISSUER2.to_owned());
    c.api_audiences = vec![ISSUER.to_owned(), ISSUER2.to_owned()];
    c
}

pub fn meta(uid: &str) -> ObjectMeta {
    ObjectMeta { uid: Arc::from(uid), deletion_timestamp: None }
}

pub fn meta_deleted(uid: &str, at: Timestamp) -> ObjectMeta {
    ObjectMeta { uid: Arc::from(uid), deletion_timestamp: Some(at) }
}

/// `ns/sa` (uid `sa-uid`), pod `ns/p` running as `sa` on `node-1`, node `node-1`, secret `ns/s`.
pub fn world() -> StaticLookup {
    let mut w = StaticLookup::default();
    w.service_accounts.insert(format!("{NS}/{SA}"), meta(SA_UID));
    w.service_accounts.insert(format!("{NS}/other-sa"), meta("other-sa-uid"));
    w.pods.insert(
        format!("{NS}/{POD}"),
        PodInfo { meta: meta(POD_UID), service_account: SA.to_owned(), node_name: NODE.to_owned() },
    );
    w.nodes.insert(NODE.to_owned(), meta(NODE_UID));
    w.secrets.insert(
        format!("{NS}/{SECRET}"),
        SecretInfo { meta: meta(SECRET_UID), token_sha256: None, legacy_token_invalid: false, legacy_token_last_used: None },
    );
    w
}

pub fn input(spec: TokenRequestSpec) -> TokenRequestInput {
    TokenRequestInput {
        namespace: NS.to_owned(),
        service_account: SA.to_owned(),
        metadata_name: String::new(),
        metadata_namespace: String::new(),
        spec,
    }
}

pub fn spec(audiences: &[&str], expiration: Option<i64>, bound: Option<BoundObjectReference>) -> TokenRequestSpec {
    TokenRequestSpec {
        audiences: audiences.iter().map(|s| (*s).to_owned()).collect(),
        expiration_seconds: expiration,
        bound_object_ref: bound,
    }
}

pub fn bound(kind: &str, api_version: &str, name: &str, uid: &str) -> BoundObjectReference {
    BoundObjectReference { kind: kind.into(), api_version: api_version.into(), name: name.into(), uid: uid.into() }
}

pub fn pod_ref() -> BoundObjectReference {
    bound("Pod", "v1", POD, "")
}

/// Issues with the fixtures (config, world, NOW, RANDOM) and the given keys; panics on error.
pub fn mint(keys: &KeySet, spec: TokenRequestSpec) -> IssuedToken {
    issue(input(spec), &config(), keys, &world(), NOW, RANDOM).expect("issue")
}

/// The header and payload of a compact JWS, as JSON.
pub fn decode(token: &str) -> (Value, Value) {
    tokenwarden_core::jwt::decode_unverified(token).expect("decodable token")
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs an arbitrary header and payload (raw JSON text) with `key`: for forging tokens the
/// minting code would never produce.
pub fn sign_raw(key: &SigningKey, header: &str, payload: &[u8]) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload));
    let sig = key.sign(input.as_bytes()).expect("sign");
    format!("{input}.{}", b64(&sig))
}

/// Signs arbitrary JSON claims with the kube-shaped header `{"alg":..,"kid":..}`.
pub fn sign_json(key: &SigningKey, claims: &Value) -> String {
    let header = format!(r#"{{"alg":"{}","kid":"{}"}}"#, key.algorithm().as_str(), key.kid());
    sign_raw(key, &header, &serde_json::to_vec(claims).expect("json"))
}

pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}
