//! Tokens minted here must verify with an independent JWT library (PyJWT, with the
//! `cryptography` backend) given nothing but the JWKS document the authority publishes.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::PathBuf;
use std::process::Command;

use tokenwarden_core::keys::{Algorithm, KeySet};
use tokenwarden_core::lookup::{ObjectMeta, StaticLookup};
use tokenwarden_core::token_request::{self, IssuerConfig, TokenRequestInput, TokenRequestSpec};
use tokenwarden_store::keystore;

/// The Python the test setup prepared (`./test` makes `.venv` with PyJWT), or `$TOKENWARDEN_PYTHON`.
fn python() -> PathBuf {
    if let Ok(path) = std::env::var("TOKENWARDEN_PYTHON") {
        return path.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    if venv.exists() { venv } else { PathBuf::from("python3") }
}

const VERIFY: &str = r#"
import json, sys, time
import jwt
token, jwks, audience, issuer = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
header = jwt.get_unverified_header(token)
key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
claims = jwt.decode(token, key=key.key, algorithms=[key.algorithm_name], audience=audience, issuer=issuer,
                    options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]})
print(json.dumps({"header": header, "claims": claims}))
"#;

fn verify_with_pyjwt(token: &str, jwks: &serde_json::Value, audience: &str, issuer: &str) -> Result<serde_json::Value, String> {
    let out = Command::new(python())
        .args(["-c", VERIFY, token, &jwks.to_string(), audience, issuer])
        .output()
        .map_err(|e| format!("cannot run python ({}): {e}; run ./test, which prepares .venv with PyJWT", python().display()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

#[test]
fn pyjwt_verifies_minted_tokens_against_the_jwks() {
    // PyJWT checks exp/iat/nbf against the real clock, so mint at the real time here.
    let now = tokenwarden_store::clock::Clock::now(&tokenwarden_store::SystemClock);
    let rsa = keystore::generate(Algorithm::Rs256).unwrap();
    let ec = keystore::generate(Algorithm::Es256).unwrap();
    let mut lookup = StaticLookup::default();
    lookup.service_accounts.insert("ns/bot".into(), ObjectMeta { uid: "sa-uid".into(), deletion_timestamp: None });
    let config = IssuerConfig::new("https://tokenwarden.example");

    // Both algorithms, each as the active key, with the other published beside it.
    for (active, other) in [(rsa, ec.verifying_key().clone()), (ec, keystore::generate(Algorithm::Rs256).unwrap().verifying_key().clone())] {
        let alg = active.algorithm();
        let keys = KeySet::new(active, vec![other]);
        let input = TokenRequestInput {
            namespace: "ns".into(),
            service_account: "bot".into(),
            spec: TokenRequestSpec { audiences: vec!["talker-api".into()], ..TokenRequestSpec::default() },
            ..TokenRequestInput::default()
        };
        let issued = token_request::issue(input, &config, &keys, &lookup, now, [7; 16]).unwrap();
        let verified = verify_with_pyjwt(&issued.token, &keys.jwks(), "talker-api", "https://tokenwarden.example")
            .unwrap_or_else(|e| panic!("PyJWT refused the {alg:?} token: {e}"));
        assert_eq!(verified["header"]["alg"], alg.as_str());
        assert_eq!(verified["header"]["kid"], keys.signing().kid());
        assert_eq!(verified["claims"]["sub"], "system:serviceaccount:ns:bot");
        assert_eq!(verified["claims"]["aud"], serde_json::json!(["talker-api"]));
        assert_eq!(verified["claims"]["kubernetes.io"]["serviceaccount"]["uid"], "sa-uid");
        assert_eq!(verified["claims"]["exp"], now.plus(3600).unix());

        // The same library refuses a wrong audience and a tampered token, so the check above is real.
        assert!(verify_with_pyjwt(&issued.token, &keys.jwks(), "other", "https://tokenwarden.example").is_err());
        let mut tampered = issued.token.clone().into_bytes();
        let mid = tampered.len() / 2;
        tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(verify_with_pyjwt(&tampered, &keys.jwks(), "talker-api", "https://tokenwarden.example").is_err());
    }
}
