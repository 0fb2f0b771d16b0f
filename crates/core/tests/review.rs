//! TokenReview (`review::{verify, authenticate, review}`): every check kube-apiserver's
//! service-account authenticator makes, with its exact `status.error` (reference §3.2–§3.6).

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::json;
use tokenwarden_core::Timestamp;
use tokenwarden_core::claims::{Claims, KubernetesClaims, Ref};
use tokenwarden_core::jwt;
use tokenwarden_core::keys::{KeySet, SigningKey};
use tokenwarden_core::lookup::{SecretInfo, StaticLookup};
use tokenwarden_core::review::{ReviewError, UserInfo, VerifiedToken, authenticate, review, verify};
use tokenwarden_core::token_request::{IssuerConfig, TokenRequestSpec, issue, legacy_token};

const T: i64 = NOW.unix();
const NOT_MINE: &str = "invalid bearer token";

fn rejected(reason: &str) -> String {
    format!("[invalid bearer token, {reason}]")
}

/// Reviews with the fixtures and returns `(user, status.audiences)` or `status.error`.
fn run(
    token: &str,
    requested: &[&str],
    keys: &KeySet,
    lookup: &StaticLookup,
    now: Timestamp,
) -> Result<(VerifiedToken, Vec<String>), String> {
    run_cfg(token, requested, keys, &config(), lookup, now)
}

fn run_cfg(
    token: &str,
    requested: &[&str],
    keys: &KeySet,
    config: &IssuerConfig,
    lookup: &StaticLookup,
    now: Timestamp,
) -> Result<(VerifiedToken, Vec<String>), String> {
    review(token, &strings(requested), keys, config, lookup, now).map_err(|e| {
        let status = e.status_error();
        // NotMine and Rejected render consistently.
        match &e {
            ReviewError::NotMine => assert_eq!(status, NOT_MINE),
            ReviewError::Rejected(reason) | ReviewError::MarkedInvalid(reason) => assert_eq!(status, rejected(reason)),
        }
        status
    })
}

/// `status.error` of a review that must fail.
fn error_of(token: &str, requested: &[&str], lookup: &StaticLookup, now: Timestamp) -> String {
    match run(token, requested, &keys_rsa(), lookup, now) {
        Ok((v, _)) => panic!("accepted: {v:?}"),
        Err(e) => e,
    }
}

/// `status.audiences` of a review that must succeed.
fn audiences_of(token: &str, requested: &[&str], lookup: &StaticLookup, now: Timestamp) -> Vec<String> {
    run(token, requested, &keys_rsa(), lookup, now).expect("review must succeed").1
}

fn mint_rsa(spec: TokenRequestSpec) -> String {
    mint(&keys_rsa(), spec).token
}

fn mint_in(world: &StaticLookup, spec: TokenRequestSpec) -> String {
    issue(input(spec), &config(), &keys_rsa(), world, NOW, RANDOM).expect("issue").token
}

/// Well-formed bound claims, valid at NOW, for forging variants.
fn bound_claims() -> Claims {
    Claims {
        aud: vec![ISSUER.to_owned()],
        exp: Some(T + 3600),
        iat: Some(T),
        iss: ISSUER.to_owned(),
        jti: Some(RANDOM_UUID.to_owned()),
        kubernetes: Some(KubernetesClaims {
            namespace: NS.to_owned(),
            serviceaccount: Ref { name: SA.to_owned(), uid: SA_UID.to_owned() },
            ..KubernetesClaims::default()
        }),
        nbf: Some(T),
        sub: "system:serviceaccount:ns:sa".to_owned(),
        ..Claims::default()
    }
}

fn sign(claims: &Claims) -> String {
    jwt::sign(&rsa(), claims).expect("sign")
}

fn groups(ns: &str) -> Vec<String> {
    vec!["system:serviceaccounts".to_owned(), format!("system:serviceaccounts:{ns}"), "system:authenticated".to_owned()]
}

fn extra(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
    pairs.iter().map(|(k, v)| (format!("authentication.kubernetes.io/{k}"), vec![(*v).to_owned()])).collect()
}

// ---------------------------------------------------------------------------------------------
// Not this authority's token: `invalid bearer token` (§3.2, §3.3 steps 1–2)

#[test]
fn garbage_is_not_mine() {
    for token in ["garbage", "", ".", "..", "a.b.c", "a.b", "a.b.c.d", "Bearer x", "e30.e30.e30", "eyJ.eyJ.eyJ"] {
        assert_eq!(error_of(token, &[], &world(), NOW), NOT_MINE, "{token:?}");
    }
}

#[test]
fn token_starting_with_brace_is_not_mine() {
    let good = mint_rsa(spec(&[], None, None));
    assert_eq!(error_of(&format!("{{{good}"), &[], &world(), NOW), NOT_MINE);
    assert_eq!(error_of(r#"{"iss":"https://kubernetes.default.svc.cluster.local"}"#, &[], &world(), NOW), NOT_MINE);
}

#[test]
fn four_parts_are_not_mine() {
    let good = mint_rsa(spec(&[], None, None));
    assert_eq!(error_of(&format!("{good}.AAAA"), &[], &world(), NOW), NOT_MINE);
}

#[test]
fn unknown_issuer_is_not_mine() {
    let mut c = bound_claims();
    c.iss = "https://evil.example".into();
    assert_eq!(error_of(&sign(&c), &[], &world(), NOW), NOT_MINE);
    c.iss = String::new();
    assert_eq!(error_of(&sign(&c), &[], &world(), NOW), NOT_MINE);
}

#[test]
fn alg_none_is_not_mine() {
    let payload = serde_json::to_vec(&bound_claims()).expect("json");
    let header = format!(r#"{{"alg":"none","kid":"{}"}}"#, rsa().kid());
    let unsigned = format!("{}.{}.", b64(header.as_bytes()), b64(&payload));
    assert_eq!(error_of(&unsigned, &[], &world(), NOW), NOT_MINE);
    // Even carrying a real signature over that input.
    let signed = sign_raw(&rsa(), &header, &payload);
    assert_eq!(error_of(&signed, &[], &world(), NOW), NOT_MINE);
}

fn hs256_forgery(secret: &[u8]) -> String {
    let header = format!(r#"{{"alg":"HS256","kid":"{}"}}"#, rsa().kid());
    let payload = serde_json::to_vec(&bound_claims()).expect("json");
    let input = format!("{}.{}", b64(header.as_bytes()), b64(&payload));
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

#[test]
fn hs256_with_the_public_key_as_secret_is_not_mine() {
    let key = rsa();
    let spki = key.verifying_key().spki_der().to_vec();
    let pem = {
        let body = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &spki);
        let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("ascii")).collect();
        format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", lines.join("\n"))
    };
    for secret in [spki.as_slice(), pem.as_bytes()] {
        assert_eq!(error_of(&hs256_forgery(secret), &[], &world(), NOW), NOT_MINE);
    }
}

#[test]
fn other_algorithms_are_not_mine() {
    let payload = serde_json::to_vec(&bound_claims()).expect("json");
    // Symmetric and malformed names only: whether kube accepts RS384/PS256/ES384 headers is not
    // pinned down by the reference.
    for alg in ["HS384", "HS512", "None", "rs256", "es256", ""] {
        let header = format!(r#"{{"alg":"{alg}","kid":"{}"}}"#, rsa().kid());
        assert_eq!(error_of(&sign_raw(&rsa(), &header, &payload), &[], &world(), NOW), NOT_MINE, "{alg}");
    }
}

// ---------------------------------------------------------------------------------------------
// Keys and signatures (§1.3, §3.3 step 3)

#[test]
fn unknown_kid_finds_no_keys() {
    let foreign = mint(&KeySet::new(rsa2(), vec![]), spec(&[], None, None)).token;
    assert_eq!(error_of(&foreign, &[], &world(), NOW), rejected("invalid signature, no keys found"));
    let header = r#"{"alg":"RS256","kid":"no-such-kid"}"#;
    let token = sign_raw(&rsa(), header, &serde_json::to_vec(&bound_claims()).expect("json"));
    assert_eq!(error_of(&token, &[], &world(), NOW), rejected("invalid signature, no keys found"));
}

#[test]
fn bad_signature_is_a_crypto_failure() {
    let good = mint_rsa(spec(&[], None, None));
    // Flip the first signature byte.
    let (input, sig) = good.rsplit_once('.').expect("three parts");
    let mut raw = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig).expect("b64");
    raw[0] ^= 0x01;
    let tampered = format!("{input}.{}", b64(&raw));
    assert_eq!(
        error_of(&tampered, &[], &world(), NOW),
        rejected("go-jose/go-jose: error in cryptographic primitive")
    );
    // A truncated (but well-encoded) signature.
    let short = format!("{input}.{}", b64(&raw[..128]));
    assert_eq!(error_of(&short, &[], &world(), NOW), rejected("go-jose/go-jose: error in cryptographic primitive"));
}

#[test]
fn edited_claims_break_the_signature() {
    let good = mint_rsa(spec(&[], None, None));
    let parts: Vec<&str> = good.split('.').collect();
    let (_, mut payload) = decode(&good);
    payload["kubernetes.io"]["serviceaccount"]["name"] = json!("admin");
    let forged = format!("{}.{}.{}", parts[0], b64(&serde_json::to_vec(&payload).expect("json")), parts[2]);
    assert_eq!(error_of(&forged, &[], &world(), NOW), rejected("go-jose/go-jose: error in cryptographic primitive"));
}

#[test]
fn algorithm_is_pinned_to_the_key() {
    // Signed by the ES256 key, header claims RS256 with the ES key's kid.
    let keys = KeySet::new(rsa(), vec![ec().verifying_key().clone()]);
    let payload = serde_json::to_vec(&bound_claims()).expect("json");
    let es_as_rs = sign_raw(&ec(), &format!(r#"{{"alg":"RS256","kid":"{}"}}"#, ec().kid()), &payload);
    let err = run(&es_as_rs, &[], &keys, &world(), NOW).expect_err("alg/key mismatch");
    assert_eq!(err, rejected("go-jose/go-jose: error in cryptographic primitive"));
    // And the converse: RSA-signed, header claims ES256 with the RSA kid.
    let rs_as_es = sign_raw(&rsa(), &format!(r#"{{"alg":"ES256","kid":"{}"}}"#, rsa().kid()), &payload);
    let err = run(&rs_as_es, &[], &keys, &world(), NOW).expect_err("alg/key mismatch");
    assert_eq!(err, rejected("go-jose/go-jose: error in cryptographic primitive"));
    // The honest ES256 token verifies with the same key set.
    let honest = sign_raw(&ec(), &format!(r#"{{"alg":"ES256","kid":"{}"}}"#, ec().kid()), &payload);
    assert!(run(&honest, &[], &keys, &world(), NOW).is_ok());
}

#[test]
fn es256_signature_must_be_fixed_width_not_der() {
    // go-jose requires the 64-byte r||s form; an ASN.1 DER signature by the right key fails.
    let keys = keys_ec();
    let pem_body: String = ec().to_pkcs8_pem().lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, pem_body).expect("pem body");
    let der_signer =
        aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(&aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING, &der)
            .expect("asn1 signer");
    let header = format!(r#"{{"alg":"ES256","kid":"{}"}}"#, ec().kid());
    let input = format!("{}.{}", b64(header.as_bytes()), b64(&serde_json::to_vec(&bound_claims()).expect("json")));
    let sig = der_signer.sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes()).expect("sign");
    assert_ne!(sig.as_ref().len(), 64);
    let token = format!("{input}.{}", b64(sig.as_ref()));
    assert_eq!(
        run(&token, &[], &keys, &world(), NOW).expect_err("DER signature"),
        rejected("go-jose/go-jose: error in cryptographic primitive")
    );
}

#[test]
fn extra_header_fields_are_allowed() {
    let header = format!(r#"{{"alg":"RS256","kid":"{}","typ":"JWT"}}"#, rsa().kid());
    let token = sign_raw(&rsa(), &header, &serde_json::to_vec(&bound_claims()).expect("json"));
    assert!(run(&token, &[], &keys_rsa(), &world(), NOW).is_ok());
}

/// Claims are read from text when they are UTF-8, else from the bytes as before: a field no
/// one reads may hold any bytes (Go's decoder is as lenient), a claim that is read may not.
#[test]
fn claims_that_are_not_utf8_read_as_before() {
    let header = format!(r#"{{"alg":"RS256","kid":"{}"}}"#, rsa().kid());
    let payload = |extra: &[u8]| {
        let mut payload = serde_json::to_vec(&Claims { jti: None, ..bound_claims() }).expect("json");
        assert_eq!(payload.pop(), Some(b'}'));
        payload.extend_from_slice(extra);
        payload
    };
    let unread = sign_raw(&rsa(), &header, &payload(b",\"x-note\":\"\xff\"}"));
    assert!(run(&unread, &[], &keys_rsa(), &world(), NOW).is_ok());
    let read = sign_raw(&rsa(), &header, &payload(b",\"jti\":\"\xff\"}"));
    let error = error_of(&read, &[], &world(), NOW);
    assert!(error.starts_with("[invalid bearer token, invalid claims: invalid unicode code point"), "{error}");
}

#[test]
fn malformed_headers_are_not_mine() {
    let payload = serde_json::to_vec(&bound_claims()).expect("json");
    for header in [r#"{"alg":"RS256","kid":5}"#, r#"{"kid":"x"}"#, r#"{"alg":5}"#, "[]", "not json", ""] {
        assert_eq!(error_of(&sign_raw(&rsa(), header, &payload), &[], &world(), NOW), NOT_MINE, "{header}");
    }
}

#[test]
fn token_without_kid_tries_every_key() {
    let payload = serde_json::to_vec(&bound_claims()).expect("json");
    let keys = KeySet::new(rsa2(), vec![ec().verifying_key().clone(), rsa().verifying_key().clone()]);
    let no_kid = sign_raw(&rsa(), r#"{"alg":"RS256"}"#, &payload);
    assert!(run(&no_kid, &[], &keys, &world(), NOW).is_ok());
    // No key in the set signed it: every key fails.
    let stranger = SigningKey::from_pkcs8_der(
        aws_lc_rs::signature::EcdsaKeyPair::generate(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING)
            .expect("ec")
            .to_pkcs8v1()
            .expect("pkcs8")
            .as_ref(),
    )
    .expect("key");
    let unknown = sign_raw(&stranger, r#"{"alg":"ES256"}"#, &payload);
    assert_eq!(
        run(&unknown, &[], &keys, &world(), NOW).expect_err("unknown signer"),
        rejected("go-jose/go-jose: error in cryptographic primitive")
    );
}

#[test]
fn empty_kid_tries_every_key() {
    let payload = serde_json::to_vec(&bound_claims()).expect("json");
    let token = sign_raw(&rsa(), r#"{"alg":"RS256","kid":""}"#, &payload);
    let (v, _) = run(&token, &[], &keys_rsa(), &world(), NOW).expect("empty kid means every key");
    assert_eq!(v.user().username, "system:serviceaccount:ns:sa");
}

#[test]
fn es256_tokens_review() {
    let keys = keys_ec();
    let t = issue(input(spec(&[], None, Some(pod_ref()))), &config(), &keys, &world(), NOW, RANDOM).expect("issue");
    let (v, auds) = run(&t.token, &[], &keys, &world(), NOW).expect("es256 review");
    assert_eq!(v.user().username, "system:serviceaccount:ns:sa");
    assert_eq!(auds, strings(&[ISSUER, ISSUER2]));
}

#[test]
fn key_rotation_keeps_old_tokens_valid() {
    let old = keys_rsa();
    let old_token = mint(&old, spec(&[], None, None)).token;
    let rotated = KeySet::new(ec2(), vec![rsa().verifying_key().clone()]);
    let (v, _) = run(&old_token, &[], &rotated, &world(), NOW).expect("old token after rotation");
    assert_eq!(v.user().uid, SA_UID);
    // New tokens carry the new kid and verify too.
    let new_token = mint(&rotated, spec(&[], None, None)).token;
    assert_eq!(decode(&new_token).0, json!({"alg": "ES256", "kid": ec2().kid()}));
    assert!(run(&new_token, &[], &rotated, &world(), NOW).is_ok());
    // Once the old key is dropped, its tokens find no keys.
    let dropped = KeySet::new(ec2(), vec![]);
    assert_eq!(
        run(&old_token, &[], &dropped, &world(), NOW).expect_err("dropped key"),
        rejected("invalid signature, no keys found")
    );
}

#[test]
fn every_configured_issuer_is_accepted() {
    let mut c = bound_claims();
    c.iss = ISSUER2.into();
    assert!(run(&sign(&c), &[], &keys_rsa(), &world(), NOW).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Time (§3.4: go-jose with a 60 s leeway)

#[test]
fn expired_beyond_leeway_is_rejected() {
    let token = mint_rsa(spec(&[], Some(600), None));
    assert_eq!(error_of(&token, &[], &world(), NOW.plus(600 + 61)), rejected("service account token has expired"));
    assert_eq!(error_of(&token, &[], &world(), NOW.plus(100_000)), rejected("service account token has expired"));
}

#[test]
fn expired_within_leeway_is_accepted() {
    let token = mint_rsa(spec(&[], Some(600), None));
    for dt in [0, 599, 600, 601, 660] {
        assert!(run(&token, &[], &keys_rsa(), &world(), NOW.plus(dt)).is_ok(), "+{dt}");
    }
}

#[test]
fn not_yet_valid_beyond_leeway_is_rejected() {
    let mut c = bound_claims();
    c.nbf = Some(T + 61);
    assert_eq!(error_of(&sign(&c), &[], &world(), NOW), rejected("service account token is not valid yet"));
}

#[test]
fn not_yet_valid_within_leeway_is_accepted() {
    let mut c = bound_claims();
    c.nbf = Some(T + 60);
    assert!(run(&sign(&c), &[], &keys_rsa(), &world(), NOW).is_ok());
}

#[test]
fn issued_in_the_future_beyond_leeway_is_rejected() {
    let mut c = bound_claims();
    c.nbf = None;
    c.iat = Some(T + 61);
    assert_eq!(error_of(&sign(&c), &[], &world(), NOW), rejected("service account token is issued in the future"));
}

#[test]
fn issued_in_the_future_within_leeway_is_accepted() {
    let mut c = bound_claims();
    c.nbf = None;
    c.iat = Some(T + 60);
    assert!(run(&sign(&c), &[], &keys_rsa(), &world(), NOW).is_ok());
}

#[test]
fn time_checks_run_nbf_then_exp_then_iat() {
    let mut c = bound_claims();
    c.nbf = Some(T + 1000);
    c.exp = Some(T - 1000);
    c.iat = Some(T + 1000);
    assert_eq!(error_of(&sign(&c), &[], &world(), NOW), rejected("service account token is not valid yet"));
    c.nbf = None;
    assert_eq!(error_of(&sign(&c), &[], &world(), NOW), rejected("service account token has expired"));
}

#[test]
fn missing_time_claims_are_not_required() {
    let mut c = bound_claims();
    c.exp = None;
    c.iat = None;
    c.nbf = None;
    assert!(run(&sign(&c), &[], &keys_rsa(), &world(), NOW.plus(1 << 40)).is_ok());
}

#[test]
fn fractional_numeric_dates_are_accepted() {
    let mut v = serde_json::to_value(bound_claims()).expect("json");
    v["exp"] = json!(T as f64 + 600.5);
    v["iat"] = json!(T as f64 + 0.25);
    v["nbf"] = json!(T as f64 + 0.25);
    let token = sign_json(&rsa(), &v);
    let (verified, _) = run(&token, &[], &keys_rsa(), &world(), NOW).expect("float dates");
    assert_eq!(verified.exp(), Some(T + 600));
}

#[test]
fn time_is_checked_before_the_service_account() {
    let mut w = world();
    w.service_accounts.clear();
    let token = mint_rsa(spec(&[], Some(600), None));
    assert_eq!(error_of(&token, &[], &w, NOW.plus(10_000)), rejected("service account token has expired"));
}

// ---------------------------------------------------------------------------------------------
// Audiences (§3.3 step 5)

#[test]
fn audience_mismatch_is_rejected() {
    let token = mint_rsa(spec(&["a"], None, None));
    assert_eq!(
        error_of(&token, &["b"], &world(), NOW),
        rejected(r#"token audiences ["a"] is invalid for the target audiences ["b"]"#)
    );
    let token = mint_rsa(spec(&["a", "b"], None, None));
    assert_eq!(
        error_of(&token, &["c", "d"], &world(), NOW),
        rejected(r#"token audiences ["a" "b"] is invalid for the target audiences ["c" "d"]"#)
    );
}

#[test]
fn audiences_are_go_quoted() {
    let token = mint_rsa(spec(&["say \"hi\""], None, None));
    assert_eq!(
        error_of(&token, &["b\\c"], &world(), NOW),
        rejected(r#"token audiences ["say \"hi\""] is invalid for the target audiences ["b\\c"]"#)
    );
}

#[test]
fn status_audiences_are_the_requested_ones_the_token_has_in_request_order() {
    let token = mint_rsa(spec(&["a", "b", "c"], None, None));
    assert_eq!(audiences_of(&token, &["c", "x", "a"], &world(), NOW), strings(&["c", "a"]));
    assert_eq!(audiences_of(&token, &["b"], &world(), NOW), strings(&["b"]));
    assert_eq!(audiences_of(&token, &["a", "b", "c"], &world(), NOW), strings(&["a", "b", "c"]));
}

#[test]
fn empty_requested_audiences_mean_the_api_audiences() {
    let token = mint_rsa(spec(&[ISSUER2, "x"], None, None));
    assert_eq!(audiences_of(&token, &[], &world(), NOW), strings(&[ISSUER2]));
    let token = mint_rsa(spec(&[], None, None));
    assert_eq!(audiences_of(&token, &[], &world(), NOW), strings(&[ISSUER, ISSUER2]));
    let token = mint_rsa(spec(&["foreign"], None, None));
    assert_eq!(
        error_of(&token, &[], &world(), NOW),
        rejected(&format!(r#"token audiences ["foreign"] is invalid for the target audiences ["{ISSUER}" "{ISSUER2}"]"#))
    );
}

#[test]
fn token_without_aud_has_the_api_audiences() {
    let mut c = bound_claims();
    c.aud = vec![];
    let token = sign(&c);
    assert_eq!(audiences_of(&token, &[ISSUER2], &world(), NOW), strings(&[ISSUER2]));
    assert_eq!(
        error_of(&token, &["x"], &world(), NOW),
        rejected(&format!(r#"token audiences ["{ISSUER}" "{ISSUER2}"] is invalid for the target audiences ["x"]"#))
    );
}

#[test]
fn string_aud_claim_is_one_audience() {
    let mut v = serde_json::to_value(bound_claims()).expect("json");
    v["aud"] = json!("solo");
    let token = sign_json(&rsa(), &v);
    assert_eq!(audiences_of(&token, &["solo"], &world(), NOW), strings(&["solo"]));
}

#[test]
fn no_api_audiences_means_no_audience_check() {
    let mut cfg = config();
    cfg.api_audiences = vec![];
    let token = mint_rsa(spec(&["a"], None, None));
    let (_, auds) = run_cfg(&token, &["b"], &keys_rsa(), &cfg, &world(), NOW).expect("no implicit audiences");
    assert!(auds.is_empty());
}

#[test]
fn audiences_are_checked_before_time_and_objects() {
    let mut w = world();
    w.service_accounts.clear();
    let token = mint_rsa(spec(&["a"], Some(600), None));
    assert_eq!(
        error_of(&token, &["b"], &w, NOW.plus(100_000)),
        rejected(r#"token audiences ["a"] is invalid for the target audiences ["b"]"#)
    );
}

// ---------------------------------------------------------------------------------------------
// The ServiceAccount (§3.4 steps 1–3)

#[test]
fn missing_service_account_is_rejected() {
    let token = mint_rsa(spec(&[], None, None));
    let mut w = world();
    w.service_accounts.clear();
    assert_eq!(error_of(&token, &[], &w, NOW), rejected(r#"serviceaccounts "sa" not found"#));
}

#[test]
fn recreated_service_account_is_rejected() {
    let mut w = world();
    w.service_accounts.insert(format!("{NS}/{SA}"), meta("old"));
    let token = mint_in(&w, spec(&[], None, None));
    w.service_accounts.insert(format!("{NS}/{SA}"), meta("new"));
    assert_eq!(error_of(&token, &[], &w, NOW), rejected("service account UID (new) does not match claim (old)"));
}

#[test]
fn service_account_deleted_beyond_leeway_is_rejected() {
    let token = mint_rsa(spec(&[], None, None));
    let mut w = world();
    w.service_accounts.insert(format!("{NS}/{SA}"), meta_deleted(SA_UID, NOW.plus(-61)));
    assert_eq!(error_of(&token, &[], &w, NOW), rejected("service account ns/sa has been deleted"));
}

#[test]
fn service_account_deleted_within_leeway_is_accepted() {
    let token = mint_rsa(spec(&[], None, None));
    for at in [-60, -1, 0, 3600] {
        let mut w = world();
        w.service_accounts.insert(format!("{NS}/{SA}"), meta_deleted(SA_UID, NOW.plus(at)));
        assert!(run(&token, &[], &keys_rsa(), &w, NOW).is_ok(), "deleted at now{at:+}");
    }
}

#[test]
fn service_account_uid_is_checked_before_deletion() {
    let token = mint_rsa(spec(&[], None, None));
    let mut w = world();
    w.service_accounts.insert(format!("{NS}/{SA}"), meta_deleted("new", NOW.plus(-1000)));
    assert_eq!(error_of(&token, &[], &w, NOW), rejected("service account UID (new) does not match claim (sa-uid)"));
}

#[test]
fn service_account_is_checked_before_bound_objects() {
    let token = mint_rsa(spec(&[], None, Some(pod_ref())));
    let mut w = world();
    w.service_accounts.clear();
    w.pods.clear();
    assert_eq!(error_of(&token, &[], &w, NOW), rejected(r#"serviceaccounts "sa" not found"#));
}

// ---------------------------------------------------------------------------------------------
// Bound objects (§3.4 steps 4–6)

const INVALIDATED: &str = "service account token has been invalidated";

#[test]
fn pod_bound_token_with_missing_pod_is_invalidated() {
    let token = mint_rsa(spec(&[], None, Some(pod_ref())));
    let mut w = world();
    w.pods.clear();
    assert_eq!(error_of(&token, &[], &w, NOW), rejected(INVALIDATED));
}

#[test]
fn pod_bound_token_with_recreated_pod_is_rejected() {
    let token = mint_rsa(spec(&[], None, Some(pod_ref())));
    let mut w = world();
    w.pods.get_mut(&format!("{NS}/{POD}")).expect("pod").meta = meta("new-pod");
    assert_eq!(
        error_of(&token, &[], &w, NOW),
        rejected("pod UID (new-pod) does not match service account pod ref claim (pod-uid)")
    );
}

#[test]
fn pod_deleted_beyond_leeway_invalidates() {
    let token = mint_rsa(spec(&[], None, Some(pod_ref())));
    let mut w = world();
    w.pods.get_mut(&format!("{NS}/{POD}")).expect("pod").meta = meta_deleted(POD_UID, NOW.plus(-61));
    assert_eq!(error_of(&token, &[], &w, NOW), rejected(INVALIDATED));
    w.pods.get_mut(&format!("{NS}/{POD}")).expect("pod").meta = meta_deleted(POD_UID, NOW.plus(-60));
    assert!(run(&token, &[], &keys_rsa(), &w, NOW).is_ok());
}

#[test]
fn pod_bound_token_does_not_look_up_its_node() {
    let token = mint_rsa(spec(&[], None, Some(pod_ref())));
    let mut w = world();
    w.nodes.clear();
    let (v, _) = run(&token, &[], &keys_rsa(), &w, NOW).expect("node not consulted");
    assert_eq!(v.user().extra["authentication.kubernetes.io/node-uid"], vec![NODE_UID.to_owned()]);
}

#[test]
fn secret_bound_token_checks() {
    let token = mint_rsa(spec(&[], None, Some(bound("Secret", "v1", SECRET, ""))));
    assert!(run(&token, &[], &keys_rsa(), &world(), NOW).is_ok());

    let mut w = world();
    w.secrets.clear();
    assert_eq!(error_of(&token, &[], &w, NOW), rejected(INVALIDATED));

    let mut w = world();
    w.secrets.get_mut(&format!("{NS}/{SECRET}")).expect("secret").meta = meta("x");
    assert_eq!(
        error_of(&token, &[], &w, NOW),
        rejected("secret UID (x) does not match service account secret ref claim (secret-uid)")
    );

    let mut w = world();
    w.secrets.get_mut(&format!("{NS}/{SECRET}")).expect("secret").meta = meta_deleted(SECRET_UID, NOW.plus(-61));
    assert_eq!(error_of(&token, &[], &w, NOW), rejected(INVALIDATED));
    w.secrets.get_mut(&format!("{NS}/{SECRET}")).expect("secret").meta = meta_deleted(SECRET_UID, NOW.plus(-60));
    assert!(run(&token, &[], &keys_rsa(), &w, NOW).is_ok());
}

#[test]
fn node_bound_token_checks() {
    let token = mint_rsa(spec(&[], None, Some(bound("Node", "v1", NODE, ""))));
    assert!(run(&token, &[], &keys_rsa(), &world(), NOW).is_ok());

    let mut w = world();
    w.nodes.clear();
    assert_eq!(error_of(&token, &[], &w, NOW), rejected(INVALIDATED));

    let mut w = world();
    w.nodes.insert(NODE.into(), meta("x"));
    assert_eq!(
        error_of(&token, &[], &w, NOW),
        rejected("node UID (x) does not match service account node ref claim (node-uid)")
    );

    let mut w = world();
    w.nodes.insert(NODE.into(), meta_deleted(NODE_UID, NOW.plus(-61)));
    assert_eq!(error_of(&token, &[], &w, NOW), rejected(INVALIDATED));
    w.nodes.insert(NODE.into(), meta_deleted(NODE_UID, NOW.plus(-60)));
    assert!(run(&token, &[], &keys_rsa(), &w, NOW).is_ok());
}

#[test]
fn bound_object_uid_is_checked_before_its_deletion() {
    let token = mint_rsa(spec(&[], None, Some(pod_ref())));
    let mut w = world();
    w.pods.get_mut(&format!("{NS}/{POD}")).expect("pod").meta = meta_deleted("new-pod", NOW.plus(-1000));
    assert_eq!(
        error_of(&token, &[], &w, NOW),
        rejected("pod UID (new-pod) does not match service account pod ref claim (pod-uid)")
    );
}

#[test]
fn cached_verification_still_checks_live_objects() {
    // `verify` is the cacheable half; `authenticate` must see later deletions.
    let token = mint_rsa(spec(&[], None, Some(pod_ref())));
    let verified = verify(&token, &keys_rsa(), &config()).expect("verify");
    assert!(authenticate(&verified, &[], &config(), &world(), NOW).is_ok());
    let mut w = world();
    w.pods.clear();
    let err = authenticate(&verified, &[], &config(), &w, NOW).expect_err("pod gone");
    assert_eq!(err, ReviewError::Rejected(INVALIDATED.to_owned()));
    assert_eq!(err.status_error(), rejected(INVALIDATED));
}

// ---------------------------------------------------------------------------------------------
// User info (§3.6)

#[test]
fn pod_bound_user_info() {
    let token = mint_rsa(spec(&[], None, Some(pod_ref())));
    let (v, _) = run(&token, &[], &keys_rsa(), &world(), NOW).expect("review");
    assert!(!v.is_legacy());
    assert_eq!(
        v.user(),
        UserInfo {
            username: "system:serviceaccount:ns:sa".into(),
            uid: SA_UID.into(),
            groups: groups(NS),
            extra: extra(&[
                ("credential-id", &format!("JTI={RANDOM_UUID}")),
                ("node-name", NODE),
                ("node-uid", NODE_UID),
                ("pod-name", POD),
                ("pod-uid", POD_UID),
            ]),
        }
    );
    // As `status.user` serializes.
    assert_eq!(
        serde_json::to_value(v.user()).expect("json"),
        json!({
            "username": "system:serviceaccount:ns:sa",
            "uid": SA_UID,
            "groups": ["system:serviceaccounts", "system:serviceaccounts:ns", "system:authenticated"],
            "extra": {
                "authentication.kubernetes.io/credential-id": [format!("JTI={RANDOM_UUID}")],
                "authentication.kubernetes.io/node-name": [NODE],
                "authentication.kubernetes.io/node-uid": [NODE_UID],
                "authentication.kubernetes.io/pod-name": [POD],
                "authentication.kubernetes.io/pod-uid": [POD_UID],
            }
        })
    );
}

#[test]
fn unbound_user_info_has_only_the_credential_id() {
    let token = mint_rsa(spec(&[], None, None));
    let (v, _) = run(&token, &[], &keys_rsa(), &world(), NOW).expect("review");
    assert_eq!(v.user().username, "system:serviceaccount:ns:sa");
    assert_eq!(v.user().uid, SA_UID);
    assert_eq!(v.user().groups, groups(NS));
    assert_eq!(v.user().extra, extra(&[("credential-id", &format!("JTI={RANDOM_UUID}"))]));
}

#[test]
fn secret_bound_user_info_has_only_the_credential_id() {
    let token = mint_rsa(spec(&[], None, Some(bound("Secret", "v1", SECRET, ""))));
    let (v, _) = run(&token, &[], &keys_rsa(), &world(), NOW).expect("review");
    assert_eq!(v.user().extra, extra(&[("credential-id", &format!("JTI={RANDOM_UUID}"))]));
}

#[test]
fn node_bound_user_info() {
    let token = mint_rsa(spec(&[], None, Some(bound("Node", "v1", NODE, ""))));
    let (v, _) = run(&token, &[], &keys_rsa(), &world(), NOW).expect("review");
    assert_eq!(
        v.user().extra,
        extra(&[("credential-id", &format!("JTI={RANDOM_UUID}")), ("node-name", NODE), ("node-uid", NODE_UID)])
    );
}

#[test]
fn node_uid_extra_only_when_the_claim_has_one() {
    let mut w = world();
    w.nodes.clear();
    let token = mint_in(&w, spec(&[], None, Some(pod_ref())));
    let (v, _) = run(&token, &[], &keys_rsa(), &w, NOW).expect("review");
    assert_eq!(
        v.user().extra,
        extra(&[
            ("credential-id", &format!("JTI={RANDOM_UUID}")),
            ("node-name", NODE),
            ("pod-name", POD),
            ("pod-uid", POD_UID),
        ])
    );
}

#[test]
fn no_jti_means_no_credential_id() {
    let mut c = bound_claims();
    c.jti = None;
    let (v, _) = run(&sign(&c), &[], &keys_rsa(), &world(), NOW).expect("review");
    assert!(v.user().extra.is_empty(), "{:?}", v.user().extra);
    assert_eq!(serde_json::to_value(v.user()).expect("json").get("extra"), None);
}

#[test]
fn user_info_for_another_namespace() {
    let mut w = world();
    w.service_accounts.insert("kube-system/builder".into(), meta("b-uid"));
    let mut i = input(spec(&[], None, None));
    i.namespace = "kube-system".into();
    i.service_account = "builder".into();
    let token = issue(i, &config(), &keys_rsa(), &w, NOW, RANDOM).expect("issue").token;
    let (v, _) = run(&token, &[], &keys_rsa(), &w, NOW).expect("review");
    assert_eq!(v.user().username, "system:serviceaccount:kube-system:builder");
    assert_eq!(v.user().uid, "b-uid");
    assert_eq!(v.user().groups, groups("kube-system"));
}

// ---------------------------------------------------------------------------------------------
// Legacy secret tokens (§3.5)

fn legacy() -> String {
    legacy_token(&keys_rsa(), NS, SA, SA_UID, SECRET).expect("legacy token")
}

/// The world with secret `ns/s` holding `token`.
fn world_holding(token: &str) -> StaticLookup {
    let mut w = world();
    w.secrets.insert(
        format!("{NS}/{SECRET}"),
        SecretInfo { meta: meta(SECRET_UID), token_sha256: Some(sha256(token.as_bytes())), legacy_token_invalid: false, legacy_token_last_used: None },
    );
    w
}

fn secret_mut(w: &mut StaticLookup) -> &mut SecretInfo {
    w.secrets.get_mut(&format!("{NS}/{SECRET}")).expect("secret")
}

#[test]
fn legacy_token_is_valid_while_the_secret_holds_it() {
    let token = legacy();
    let (v, auds) = run(&token, &[], &keys_rsa(), &world_holding(&token), NOW).expect("legacy review");
    assert!(v.is_legacy());
    assert_eq!(
        v.user(),
        UserInfo {
            username: "system:serviceaccount:ns:sa".into(),
            uid: SA_UID.into(),
            groups: groups(NS),
            extra: BTreeMap::new(),
        }
    );
    // No `aud`: the API audiences are implied.
    assert_eq!(auds, strings(&[ISSUER, ISSUER2]));
    assert_eq!(
        run(&token, &[ISSUER2, "x"], &keys_rsa(), &world_holding(&token), NOW).expect("legacy review").1,
        strings(&[ISSUER2])
    );
}

#[test]
fn legacy_token_has_no_expiry() {
    let token = legacy();
    assert!(run(&token, &[], &keys_rsa(), &world_holding(&token), NOW.plus(1 << 40)).is_ok());
}

#[test]
fn legacy_token_for_a_foreign_audience_is_rejected() {
    let token = legacy();
    assert_eq!(
        error_of(&token, &["vault"], &world_holding(&token), NOW),
        rejected(&format!(r#"token audiences ["{ISSUER}" "{ISSUER2}"] is invalid for the target audiences ["vault"]"#))
    );
}

#[test]
fn legacy_token_not_matching_the_secret_is_rejected() {
    let token = legacy();
    let w = world_holding("some other token");
    assert_eq!(error_of(&token, &[], &w, NOW), rejected("Token does not match server's copy"));
    let mut w = world_holding(&token);
    secret_mut(&mut w).token_sha256 = None;
    assert_eq!(error_of(&token, &[], &w, NOW), rejected("Token does not match server's copy"));
}

#[test]
fn legacy_token_with_missing_secret_is_invalidated() {
    let token = legacy();
    let mut w = world_holding(&token);
    w.secrets.clear();
    assert_eq!(error_of(&token, &[], &w, NOW), rejected("Token has been invalidated"));
}

#[test]
fn legacy_token_with_deleting_secret_is_invalidated_without_leeway() {
    let token = legacy();
    for at in [-1000, 0, 1000] {
        let mut w = world_holding(&token);
        secret_mut(&mut w).meta.deletion_timestamp = Some(NOW.plus(at));
        assert_eq!(error_of(&token, &[], &w, NOW), rejected("Token has been invalidated"), "{at}");
    }
}

#[test]
fn legacy_token_with_missing_service_account() {
    let token = legacy();
    let mut w = world_holding(&token);
    w.service_accounts.clear();
    assert_eq!(error_of(&token, &[], &w, NOW), rejected(r#"serviceaccounts "sa" not found"#));
}

#[test]
fn legacy_token_with_deleting_service_account() {
    let token = legacy();
    let mut w = world_holding(&token);
    w.service_accounts.insert(format!("{NS}/{SA}"), meta_deleted(SA_UID, NOW.plus(1000)));
    assert_eq!(error_of(&token, &[], &w, NOW), rejected("ServiceAccount ns/sa has been deleted"));
}

#[test]
fn legacy_token_with_recreated_service_account() {
    let token = legacy();
    let mut w = world_holding(&token);
    w.service_accounts.insert(format!("{NS}/{SA}"), meta("x"));
    assert_eq!(error_of(&token, &[], &w, NOW), rejected("ServiceAccount UID (x) does not match claim (sa-uid)"));
}

#[test]
fn legacy_token_marked_invalid() {
    let token = legacy();
    let mut w = world_holding(&token);
    secret_mut(&mut w).legacy_token_invalid = true;
    assert_eq!(
        error_of(&token, &[], &w, NOW),
        rejected(
            "the token in secret ns/s for service account ns/sa has been marked invalid. Use tokens from the TokenRequest API or manually created secret-based tokens, or remove the 'kubernetes.io/legacy-token-invalid-since' label from the secret to temporarily allow use of this token"
        )
    );
}

#[test]
fn legacy_checks_run_in_kube_order() {
    let token = legacy();
    // Secret checks before the ServiceAccount.
    let mut w = world_holding("other");
    w.service_accounts.clear();
    assert_eq!(error_of(&token, &[], &w, NOW), rejected("Token does not match server's copy"));
    // ServiceAccount deletion before its UID.
    let mut w = world_holding(&token);
    w.service_accounts.insert(format!("{NS}/{SA}"), meta_deleted("x", NOW));
    assert_eq!(error_of(&token, &[], &w, NOW), rejected("ServiceAccount ns/sa has been deleted"));
    // UID before the invalid-since label.
    let mut w = world_holding(&token);
    w.service_accounts.insert(format!("{NS}/{SA}"), meta("x"));
    secret_mut(&mut w).legacy_token_invalid = true;
    assert_eq!(error_of(&token, &[], &w, NOW), rejected("ServiceAccount UID (x) does not match claim (sa-uid)"));
}

fn legacy_claims() -> Claims {
    Claims {
        iss: "kubernetes/serviceaccount".into(),
        legacy_namespace: Some(NS.into()),
        legacy_secret_name: Some(SECRET.into()),
        legacy_service_account_name: Some(SA.into()),
        legacy_service_account_uid: Some(SA_UID.into()),
        sub: "system:serviceaccount:ns:sa".into(),
        ..Claims::default()
    }
}

/// Reviews forged legacy claims (the secret holds exactly this token).
fn legacy_error(claims: &Claims) -> String {
    let token = sign(claims);
    error_of(&token, &[], &world_holding(&token), NOW)
}

#[test]
fn forged_legacy_claims_as_signed_are_valid() {
    let token = sign(&legacy_claims());
    assert!(run(&token, &[], &keys_rsa(), &world_holding(&token), NOW).is_ok());
}

type Edit = fn(&mut Claims);

#[test]
fn legacy_missing_claims() {
    let cases: [(Edit, &str); 5] = [
        (|c| c.sub = String::new(), "sub claim is missing"),
        (|c| c.legacy_namespace = None, "namespace claim is missing"),
        (|c| c.legacy_secret_name = None, "secretName claim is missing"),
        (|c| c.legacy_service_account_name = None, "serviceAccountName claim is missing"),
        (|c| c.legacy_service_account_uid = None, "serviceAccountUID claim is missing"),
    ];
    for (edit, message) in cases {
        let mut c = legacy_claims();
        edit(&mut c);
        assert_eq!(legacy_error(&c), rejected(message), "{message}");
    }
}

#[test]
fn legacy_empty_claims_count_as_missing() {
    let cases: [(Edit, &str); 4] = [
        (|c| c.legacy_namespace = Some(String::new()), "namespace claim is missing"),
        (|c| c.legacy_secret_name = Some(String::new()), "secretName claim is missing"),
        (|c| c.legacy_service_account_name = Some(String::new()), "serviceAccountName claim is missing"),
        (|c| c.legacy_service_account_uid = Some(String::new()), "serviceAccountUID claim is missing"),
    ];
    for (edit, message) in cases {
        let mut c = legacy_claims();
        edit(&mut c);
        assert_eq!(legacy_error(&c), rejected(message), "{message}");
    }
}

#[test]
fn legacy_missing_claims_are_reported_in_order() {
    let mut c = legacy_claims();
    c.sub = String::new();
    c.legacy_namespace = None;
    c.legacy_service_account_uid = None;
    assert_eq!(legacy_error(&c), rejected("sub claim is missing"));
    c.sub = "system:serviceaccount:ns:sa".into();
    assert_eq!(legacy_error(&c), rejected("namespace claim is missing"));
}

#[test]
fn legacy_sub_must_name_the_same_service_account() {
    for sub in ["system:serviceaccount:other:sa", "system:serviceaccount:ns:other", "sa", "system:serviceaccount:ns:sa:x"] {
        let mut c = legacy_claims();
        c.sub = sub.into();
        assert_eq!(legacy_error(&c), rejected("sub claim is invalid"), "{sub}");
    }
}

#[test]
fn legacy_audience_check_precedes_claim_checks() {
    let mut c = legacy_claims();
    c.legacy_namespace = None;
    let token = sign(&c);
    assert_eq!(
        error_of(&token, &["vault"], &world_holding(&token), NOW),
        rejected(&format!(r#"token audiences ["{ISSUER}" "{ISSUER2}"] is invalid for the target audiences ["vault"]"#))
    );
}

#[test]
fn user_info_as_json_is_what_it_serializes_to() {
    let full = UserInfo {
        username: "system:serviceaccount:ns:bot".into(),
        uid: "c0ffee".into(),
        groups: vec!["system:serviceaccounts".into(), "system:serviceaccounts:ns".into()],
        extra: BTreeMap::from([("authentication.kubernetes.io/pod-name".to_owned(), vec!["web-0".to_owned()])]),
    };
    let legacy = UserInfo { extra: BTreeMap::new(), ..full.clone() };
    for user in [full, legacy, UserInfo::default()] {
        assert_eq!(user.clone().into_json(), serde_json::to_value(&user).unwrap(), "{user:?}");
    }
    assert_eq!(UserInfo::default().into_json(), json!({}));
}
