//! TokenRequest rules (`token_request::issue`, `legacy_token`), one test per rule, against
//! kube-apiserver 1.32's behaviour and messages (shared/reference/kubernetes-auth.md §1–§2).

mod common;

use common::*;
use serde_json::{Value, json};
use tokenwarden_core::Error;
use tokenwarden_core::jwt;
use tokenwarden_core::keys::{Algorithm, KeySet};
use tokenwarden_core::lookup::StaticLookup;
use tokenwarden_core::token_request::{IssuedToken, IssuerConfig, TokenRequestInput, TokenRequestSpec, issue, legacy_token};

const YEAR: i64 = 31_536_000;
const T: i64 = NOW.unix();

fn issue_with(input: TokenRequestInput, config: &IssuerConfig, lookup: &StaticLookup) -> Result<IssuedToken, Error> {
    issue(input, config, &keys_rsa(), lookup, NOW, RANDOM)
}

fn issue_err(spec: TokenRequestSpec) -> Error {
    issue_with(input(spec), &config(), &world()).expect_err("request must fail")
}

fn issue_ok(spec: TokenRequestSpec) -> IssuedToken {
    issue_with(input(spec), &config(), &world()).expect("request must succeed")
}

fn issue_cfg(spec: TokenRequestSpec, config: &IssuerConfig) -> IssuedToken {
    issue_with(input(spec), config, &world()).expect("request must succeed")
}

fn payload(t: &IssuedToken) -> Value {
    decode(&t.token).1
}

fn assert_err(err: &Error, code: u16, reason: &str, message: &str) {
    assert_eq!(err.to_string(), message);
    assert_eq!(err.code(), code, "code of {message}");
    assert_eq!(err.reason(), reason, "reason of {message}");
}

/// JWT lifetime claims: `(exp - iat, warnafter - iat)`.
fn lifetime(t: &IssuedToken) -> (i64, Option<i64>) {
    let p = payload(t);
    let iat = p["iat"].as_i64().expect("iat");
    let warn = p["kubernetes.io"].get("warnafter").map(|w| w.as_i64().expect("warnafter number") - iat);
    (p["exp"].as_i64().expect("exp") - iat, warn)
}

// ---------------------------------------------------------------------------------------------
// Defaulting (§2.2 step 4, §2.3)

#[test]
fn defaults_audiences_to_api_audiences_and_expiration_to_3600() {
    let mut cfg = config();
    cfg.api_audiences = strings(&["api-a", "api-b"]);
    let t = issue_cfg(spec(&[], None, None), &cfg);
    assert_eq!(t.spec.audiences, strings(&["api-a", "api-b"]));
    assert_eq!(t.spec.expiration_seconds, Some(3600));
    assert_eq!(t.spec.bound_object_ref, None);
    assert!(t.warnings.is_empty());
    assert_eq!(t.issued_at, NOW);
    assert_eq!(t.expiration_timestamp, NOW.plus(3600));
    assert_eq!(t.service_account_uid, SA_UID);
    let p = payload(&t);
    assert_eq!(p["aud"], json!(["api-a", "api-b"]));
    assert_eq!(p["exp"], json!(T + 3600));
}

#[test]
fn explicit_audiences_are_kept_in_order() {
    let t = issue_ok(spec(&["z", "a", "m"], Some(600), None));
    assert_eq!(t.spec.audiences, strings(&["z", "a", "m"]));
    assert_eq!(payload(&t)["aud"], json!(["z", "a", "m"]));
}

// ---------------------------------------------------------------------------------------------
// expirationSeconds validation (§2.3)

#[test]
fn expiration_599_is_invalid() {
    let err = issue_err(spec(&[], Some(599), None));
    assert_err(
        &err,
        422,
        "Invalid",
        r#"TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"#,
    );
}

#[test]
fn expiration_60_is_invalid_with_the_kubectl_message() {
    let err = issue_err(spec(&[], Some(60), None));
    assert_err(
        &err,
        422,
        "Invalid",
        r#"TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"#,
    );
}

#[test]
fn negative_and_zero_expiration_are_invalid() {
    for n in [0_i64, -1] {
        let err = issue_err(spec(&[], Some(n), None));
        assert_err(
            &err,
            422,
            "Invalid",
            &format!(
                r#"TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: {n}: may not specify a duration less than 10 minutes"#
            ),
        );
    }
}

#[test]
fn expiration_600_is_the_minimum() {
    let t = issue_ok(spec(&[], Some(600), None));
    assert_eq!(t.spec.expiration_seconds, Some(600));
    assert_eq!(t.expiration_timestamp, NOW.plus(600));
    assert_eq!(lifetime(&t), (600, None));
}

#[test]
fn expiration_2_pow_32_is_the_maximum() {
    let max = 1_i64 << 32;
    let t = issue_ok(spec(&[], Some(max), None));
    assert_eq!(t.spec.expiration_seconds, Some(max));
    assert_eq!(t.expiration_timestamp, NOW.plus(max));
    assert_eq!(lifetime(&t), (max, None));
}

#[test]
fn expiration_2_pow_32_plus_1_is_invalid() {
    let err = issue_err(spec(&[], Some((1_i64 << 32) + 1), None));
    assert_err(
        &err,
        422,
        "Invalid",
        r#"TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: Invalid value: 4294967297: may not specify a duration larger than 2^32 seconds"#,
    );
}

// ---------------------------------------------------------------------------------------------
// Request metadata and ServiceAccount lookup (§2.2 steps 1–3)

#[test]
fn missing_namespace_is_bad_request() {
    let mut i = input(spec(&[], None, None));
    i.namespace = String::new();
    let err = issue_with(i, &config(), &world()).unwrap_err();
    assert_err(&err, 400, "BadRequest", "namespace is required");
}

#[test]
fn metadata_name_must_match_the_service_account() {
    let mut i = input(spec(&[], None, None));
    i.metadata_name = "other".into();
    let err = issue_with(i, &config(), &world()).unwrap_err();
    assert_err(
        &err,
        422,
        "Invalid",
        r#"TokenRequest.authentication.k8s.io "sa" is invalid: metadata.name: Invalid value: "other": must match the service account name if specified"#,
    );
}

#[test]
fn metadata_namespace_must_match_the_url_namespace() {
    // kube's create handler refuses it before TokenREST (whose own 422 is never reached).
    let mut i = input(spec(&[], None, None));
    i.metadata_namespace = "elsewhere".into();
    let err = issue_with(i, &config(), &world()).unwrap_err();
    assert_err(&err, 400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request");
}

#[test]
fn matching_metadata_is_accepted() {
    let mut i = input(spec(&[], None, None));
    i.metadata_name = SA.into();
    i.metadata_namespace = NS.into();
    let t = issue_with(i, &config(), &world()).expect("matching metadata");
    assert_eq!(payload(&t)["sub"], json!("system:serviceaccount:ns:sa"));
}

#[test]
fn missing_service_account_is_not_found() {
    let mut i = input(spec(&[], None, None));
    i.service_account = "x".into();
    let err = issue_with(i, &config(), &world()).unwrap_err();
    assert_err(&err, 404, "NotFound", r#"serviceaccounts "x" not found"#);
}

#[test]
fn service_account_lookup_precedes_spec_validation() {
    // A missing SA with a 60 s expiration is a 404, not a 422.
    let mut i = input(spec(&[], Some(60), None));
    i.service_account = "x".into();
    let err = issue_with(i, &config(), &world()).unwrap_err();
    assert_err(&err, 404, "NotFound", r#"serviceaccounts "x" not found"#);
}

#[test]
fn service_account_in_another_namespace_is_not_found() {
    let mut i = input(spec(&[], None, None));
    i.namespace = "other-ns".into();
    let err = issue_with(i, &config(), &world()).unwrap_err();
    assert_err(&err, 404, "NotFound", r#"serviceaccounts "sa" not found"#);
}

#[test]
fn metadata_mismatch_precedes_service_account_lookup() {
    let mut i = input(spec(&[], None, None));
    i.service_account = "x".into();
    i.metadata_name = "y".into();
    let err = issue_with(i, &config(), &world()).unwrap_err();
    assert_err(
        &err,
        422,
        "Invalid",
        r#"TokenRequest.authentication.k8s.io "x" is invalid: metadata.name: Invalid value: "y": must match the service account name if specified"#,
    );
}

#[test]
fn spec_validation_precedes_bound_object_lookup() {
    // A missing pod with an invalid expiration: the 422 comes first (§2.2 step 6 before 7).
    let err = issue_err(spec(&[], Some(599), Some(bound("Pod", "v1", "missing", ""))));
    assert_eq!(err.code(), 422);
}

// ---------------------------------------------------------------------------------------------
// Max expiration clamp (§2.4)

#[test]
fn expiration_above_max_is_clamped_with_a_warning() {
    let mut cfg = config();
    cfg.max_expiration_seconds = Some(3600);
    let t = issue_cfg(spec(&[], Some(7200), None), &cfg);
    assert_eq!(t.warnings, vec!["requested expiration of 7200 seconds shortened to 3600 seconds".to_owned()]);
    assert_eq!(t.spec.expiration_seconds, Some(3600));
    assert_eq!(t.expiration_timestamp, NOW.plus(3600));
    assert_eq!(lifetime(&t), (3600, None));
}

#[test]
fn expiration_at_or_below_max_is_not_clamped() {
    let mut cfg = config();
    cfg.max_expiration_seconds = Some(7200);
    for n in [600, 7200] {
        let t = issue_cfg(spec(&[], Some(n), None), &cfg);
        assert!(t.warnings.is_empty(), "{n}: {:?}", t.warnings);
        assert_eq!(t.spec.expiration_seconds, Some(n));
        assert_eq!(lifetime(&t), (n, None));
    }
}

#[test]
fn defaulted_expiration_is_clamped_too() {
    // max is validated to be ≥ 1 h at start-up, but the core clamps whatever it is given.
    let mut cfg = config();
    cfg.max_expiration_seconds = Some(1800);
    let t = issue_cfg(spec(&[], None, None), &cfg);
    assert_eq!(t.warnings, vec!["requested expiration of 3600 seconds shortened to 1800 seconds".to_owned()]);
    assert_eq!(t.spec.expiration_seconds, Some(1800));
}

#[test]
fn clamp_happens_after_validation() {
    // 2^32+1 is rejected even though the max would have shortened it.
    let mut cfg = config();
    cfg.max_expiration_seconds = Some(3600);
    let err = issue_with(input(spec(&[], Some((1_i64 << 32) + 1), None)), &cfg, &world()).unwrap_err();
    assert_eq!(err.code(), 422);
}

#[test]
fn issuer_config_validate_messages() {
    let mut cfg = config();
    assert_eq!(cfg.validate(), Ok(()));
    cfg.max_expiration_seconds = Some(3599);
    assert_eq!(
        cfg.validate(),
        Err("the service-account-max-token-expiration must be between 1 hour and 2^32 seconds".to_owned())
    );
    cfg.max_expiration_seconds = Some((1 << 32) + 1);
    assert!(cfg.validate().is_err());
    cfg.max_expiration_seconds = Some(1 << 32);
    assert_eq!(cfg.validate(), Ok(()));
    cfg.max_expiration_seconds = Some(3600);
    assert_eq!(cfg.validate(), Ok(()));
}

// ---------------------------------------------------------------------------------------------
// The 3607-second projected-token extension (§2.4)

#[test]
fn pod_bound_3607_with_api_audiences_is_extended_to_a_year() {
    let t = issue_ok(spec(&[], Some(3607), Some(pod_ref())));
    assert_eq!(lifetime(&t), (YEAR, Some(3607)));
    let p = payload(&t);
    assert_eq!(p["exp"], json!(T + YEAR));
    assert_eq!(p["kubernetes.io"]["warnafter"], json!(T + 3607));
    // The response reports the requested, non-extended lifetime.
    assert_eq!(t.expiration_timestamp, NOW.plus(3607));
    assert_eq!(t.spec.expiration_seconds, Some(3607));
    assert!(t.warnings.is_empty());
}

#[test]
fn extension_applies_when_explicit_audiences_are_a_subset_of_api_audiences() {
    let t = issue_ok(spec(&[ISSUER2], Some(3607), Some(pod_ref())));
    assert_eq!(lifetime(&t), (YEAR, Some(3607)));
}

#[test]
fn not_extended_when_not_pod_bound() {
    for b in [None, Some(bound("Secret", "v1", SECRET, "")), Some(bound("Node", "v1", NODE, ""))] {
        let t = issue_ok(spec(&[], Some(3607), b.clone()));
        assert_eq!(lifetime(&t), (3607, None), "{b:?}");
        assert_eq!(t.expiration_timestamp, NOW.plus(3607));
    }
}

#[test]
fn not_extended_when_an_audience_is_foreign() {
    let t = issue_ok(spec(&[ISSUER, "vault"], Some(3607), Some(pod_ref())));
    assert_eq!(lifetime(&t), (3607, None));
}

#[test]
fn not_extended_when_extension_is_disabled() {
    let mut cfg = config();
    cfg.extend_expiration = false;
    let t = issue_cfg(spec(&[], Some(3607), Some(pod_ref())), &cfg);
    assert_eq!(lifetime(&t), (3607, None));
}

#[test]
fn not_extended_for_other_lifetimes() {
    for n in [3600, 3606, 3608] {
        let t = issue_ok(spec(&[], Some(n), Some(pod_ref())));
        assert_eq!(lifetime(&t), (n, None), "{n}");
    }
}

#[test]
fn not_extended_when_clamped_below_3607() {
    let mut cfg = config();
    cfg.max_expiration_seconds = Some(3600);
    let t = issue_cfg(spec(&[], Some(3607), Some(pod_ref())), &cfg);
    assert_eq!(t.warnings, vec!["requested expiration of 3607 seconds shortened to 3600 seconds".to_owned()]);
    assert_eq!(lifetime(&t), (3600, None));
    assert_eq!(t.expiration_timestamp, NOW.plus(3600));
}

#[test]
fn extended_when_clamped_to_exactly_3607() {
    // Clamping runs first, so the clamped value is the one compared with 3607.
    let mut cfg = config();
    cfg.max_expiration_seconds = Some(3607);
    let t = issue_cfg(spec(&[], Some(7200), Some(pod_ref())), &cfg);
    assert_eq!(t.warnings, vec!["requested expiration of 7200 seconds shortened to 3607 seconds".to_owned()]);
    assert_eq!(lifetime(&t), (YEAR, Some(3607)));
    assert_eq!(t.expiration_timestamp, NOW.plus(3607));
}

// ---------------------------------------------------------------------------------------------
// Bound objects (§2.3)

#[test]
fn pod_binding_embeds_pod_and_node_with_uids() {
    let t = issue_ok(spec(&[], None, Some(pod_ref())));
    assert_eq!(
        payload(&t)["kubernetes.io"],
        json!({
            "namespace": NS,
            "node": {"name": NODE, "uid": NODE_UID},
            "pod": {"name": POD, "uid": POD_UID},
            "serviceaccount": {"name": SA, "uid": SA_UID},
        })
    );
    // The echoed ref keeps the client's (empty) uid.
    assert_eq!(t.spec.bound_object_ref, Some(pod_ref()));
}

#[test]
fn pod_binding_with_matching_uid() {
    let t = issue_ok(spec(&[], None, Some(bound("Pod", "v1", POD, POD_UID))));
    assert_eq!(payload(&t)["kubernetes.io"]["pod"], json!({"name": POD, "uid": POD_UID}));
    assert_eq!(t.spec.bound_object_ref, Some(bound("Pod", "v1", POD, POD_UID)));
}

#[test]
fn pod_binding_without_node_object_embeds_node_name_only() {
    let mut w = world();
    w.nodes.clear();
    let t = issue_with(input(spec(&[], None, Some(pod_ref()))), &config(), &w).expect("issue");
    assert_eq!(payload(&t)["kubernetes.io"]["node"], json!({"name": NODE}));
}

#[test]
fn pod_binding_without_node_object_has_no_node_uid() {
    // The part of the rule above the implementation does follow: no uid value.
    let mut w = world();
    w.nodes.clear();
    let t = issue_with(input(spec(&[], None, Some(pod_ref()))), &config(), &w).expect("issue");
    let node = &payload(&t)["kubernetes.io"]["node"];
    assert_eq!(node["name"], json!(NODE));
    assert!(node.get("uid").is_none_or(|u| u == ""), "{node}");
}

#[test]
fn unscheduled_pod_has_no_node_claim() {
    let mut w = world();
    w.pods.get_mut(&format!("{NS}/{POD}")).expect("pod").node_name = String::new();
    let t = issue_with(input(spec(&[], None, Some(pod_ref()))), &config(), &w).expect("issue");
    let k = &payload(&t)["kubernetes.io"];
    assert!(k.get("node").is_none(), "{k}");
    assert_eq!(k["pod"], json!({"name": POD, "uid": POD_UID}));
}

#[test]
fn missing_pod_is_not_found() {
    let err = issue_err(spec(&[], None, Some(pod_ref_named("missing"))));
    assert_err(&err, 404, "NotFound", r#"pods "missing" not found"#);
    let err = issue_err(spec(&[], None, Some(bound("Pod", "v1", "p2", ""))));
    assert_err(&err, 404, "NotFound", r#"pods "p2" not found"#);
}

fn pod_ref_named(name: &str) -> tokenwarden_core::token_request::BoundObjectReference {
    bound("Pod", "v1", name, "")
}

#[test]
fn missing_pod_named_p_is_not_found() {
    let mut w = world();
    w.pods.clear();
    let err = issue_with(input(spec(&[], None, Some(pod_ref()))), &config(), &w).unwrap_err();
    assert_err(&err, 404, "NotFound", r#"pods "p" not found"#);
}

#[test]
fn pod_in_another_namespace_is_not_found() {
    let mut w = world();
    let pod = w.pods.remove(&format!("{NS}/{POD}")).expect("pod");
    w.pods.insert(format!("other/{POD}"), pod);
    let err = issue_with(input(spec(&[], None, Some(pod_ref()))), &config(), &w).unwrap_err();
    assert_err(&err, 404, "NotFound", r#"pods "p" not found"#);
}

#[test]
fn pod_running_as_another_service_account_is_bad_request() {
    let mut w = world();
    w.pods.get_mut(&format!("{NS}/{POD}")).expect("pod").service_account = "other-sa".into();
    let err = issue_with(input(spec(&[], None, Some(pod_ref()))), &config(), &w).unwrap_err();
    assert_err(
        &err,
        400,
        "BadRequest",
        r#"cannot bind token for serviceaccount "sa" to pod running with different serviceaccount name."#,
    );
}

#[test]
fn pod_uid_mismatch_is_conflict() {
    let err = issue_err(spec(&[], None, Some(bound("Pod", "v1", POD, "x"))));
    assert_err(
        &err,
        409,
        "Conflict",
        r#"Operation cannot be fulfilled on Pod "p": the UID in the bound object reference (x) does not match the UID in record. The object might have been deleted and then recreated"#,
    );
    match err {
        Error::Conflict { kind, name, .. } => assert_eq!((kind.as_str(), name.as_str()), ("Pod", POD)),
        other => panic!("not a conflict: {other:?}"),
    }
}

#[test]
fn bound_object_version_is_ignored_and_may_be_empty() {
    for api_version in ["", "v1", "v2beta1"] {
        let t = issue_ok(spec(&[], None, Some(bound("Pod", api_version, POD, ""))));
        assert_eq!(payload(&t)["kubernetes.io"]["pod"], json!({"name": POD, "uid": POD_UID}), "{api_version:?}");
    }
}

#[test]
fn secret_binding_embeds_secret() {
    let t = issue_ok(spec(&[], None, Some(bound("Secret", "v1", SECRET, SECRET_UID))));
    assert_eq!(
        payload(&t)["kubernetes.io"],
        json!({
            "namespace": NS,
            "secret": {"name": SECRET, "uid": SECRET_UID},
            "serviceaccount": {"name": SA, "uid": SA_UID},
        })
    );
}

#[test]
fn missing_secret_is_not_found() {
    let err = issue_err(spec(&[], None, Some(bound("Secret", "v1", "nope", ""))));
    assert_err(&err, 404, "NotFound", r#"secrets "nope" not found"#);
}

#[test]
fn secret_uid_mismatch_is_conflict() {
    let err = issue_err(spec(&[], None, Some(bound("Secret", "v1", SECRET, "x"))));
    assert_err(
        &err,
        409,
        "Conflict",
        r#"Operation cannot be fulfilled on Secret "s": the UID in the bound object reference (x) does not match the UID in record. The object might have been deleted and then recreated"#,
    );
}

#[test]
fn node_binding_embeds_node() {
    let t = issue_ok(spec(&[], None, Some(bound("Node", "v1", NODE, ""))));
    assert_eq!(
        payload(&t)["kubernetes.io"],
        json!({
            "namespace": NS,
            "node": {"name": NODE, "uid": NODE_UID},
            "serviceaccount": {"name": SA, "uid": SA_UID},
        })
    );
}

#[test]
fn missing_node_is_not_found() {
    let err = issue_err(spec(&[], None, Some(bound("Node", "v1", "n9", ""))));
    assert_err(&err, 404, "NotFound", r#"nodes "n9" not found"#);
}

#[test]
fn node_uid_mismatch_is_conflict() {
    let err = issue_err(spec(&[], None, Some(bound("Node", "v1", NODE, "x"))));
    assert_err(
        &err,
        409,
        "Conflict",
        r#"Operation cannot be fulfilled on Node "node-1": the UID in the bound object reference (x) does not match the UID in record. The object might have been deleted and then recreated"#,
    );
}

#[test]
fn unknown_kinds_cannot_be_bound() {
    for (kind, api_version, message) in [
        ("ConfigMap", "v1", "cannot bind token to object of type /v1, Kind=ConfigMap"),
        ("Deployment", "apps/v1", "cannot bind token to object of type apps/v1, Kind=Deployment"),
        // Only the core group's Pod is a Pod.
        ("Pod", "apps/v1", "cannot bind token to object of type apps/v1, Kind=Pod"),
        ("pod", "v1", "cannot bind token to object of type /v1, Kind=pod"),
    ] {
        let err = issue_err(spec(&[], None, Some(bound(kind, api_version, "x", ""))));
        assert_err(&err, 400, "BadRequest", message);
    }
}

// ---------------------------------------------------------------------------------------------
// The minted JWT (§1.1)

fn assert_bound_jwt(keys: &KeySet, alg: Algorithm) {
    let t = issue(input(spec(&[ISSUER2], Some(1200), None)), &config(), keys, &world(), NOW, RANDOM).expect("issue");
    let (header, p) = decode(&t.token);
    assert_eq!(header, json!({"alg": alg.as_str(), "kid": keys.signing().kid()}));
    let obj = p.as_object().expect("claims object");
    let mut names: Vec<&str> = obj.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["aud", "exp", "iat", "iss", "jti", "kubernetes.io", "nbf", "sub"]);
    assert_eq!(p["iss"], json!(ISSUER), "first issuer signs");
    assert_eq!(p["sub"], json!("system:serviceaccount:ns:sa"));
    assert_eq!(p["aud"], json!([ISSUER2]), "aud is always an array");
    assert_eq!(p["iat"], json!(T));
    assert_eq!(p["nbf"], p["iat"]);
    assert_eq!(p["exp"], json!(T + 1200));
    assert_eq!(p["jti"], json!(RANDOM_UUID));
    assert_eq!(t.jti, RANDOM_UUID);
    assert_eq!(p["kubernetes.io"], json!({"namespace": NS, "serviceaccount": {"name": SA, "uid": SA_UID}}));

    // Header has no padding, three parts, and the signature verifies with the key set.
    assert_eq!(t.token.split('.').count(), 3);
    assert!(!t.token.contains('='));
    let claims = jwt::verify(&t.token, keys, |iss| iss == ISSUER).expect("verifies");
    assert_eq!(claims.jti.as_deref(), Some(RANDOM_UUID));
    let sig_len = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        t.token.rsplit('.').next().expect("sig"),
    )
    .expect("b64")
    .len();
    assert_eq!(sig_len, if alg == Algorithm::Rs256 { 256 } else { 64 });
}

#[test]
fn rs256_token_shape() {
    assert_bound_jwt(&keys_rsa(), Algorithm::Rs256);
}

#[test]
fn es256_token_shape() {
    assert_bound_jwt(&keys_ec(), Algorithm::Es256);
}

#[test]
fn single_audience_is_still_an_array() {
    let t = issue_ok(spec(&["only"], None, None));
    assert_eq!(payload(&t)["aud"], json!(["only"]));
    // Even when defaulted from a single API audience.
    let t = issue_cfg(spec(&[], None, None), &IssuerConfig::new(ISSUER));
    assert_eq!(payload(&t)["aud"], json!([ISSUER]));
}

fn is_uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) { *c == b'-' } else { c.is_ascii_digit() || (b'a'..=b'f').contains(c) }
        })
        && b[14] == b'4'
        && matches!(b[19], b'8' | b'9' | b'a' | b'b')
}

#[test]
fn jti_is_a_v4_uuid_from_the_random_bytes() {
    for random in [[0u8; 16], [0xff; 16], RANDOM, [7; 16]] {
        let t = issue(input(spec(&[], None, None)), &config(), &keys_ec(), &world(), NOW, random).expect("issue");
        let jti = payload(&t)["jti"].as_str().expect("jti").to_owned();
        assert!(is_uuid_v4(&jti), "{jti}");
        assert_eq!(jti, t.jti);
    }
    let a = issue(input(spec(&[], None, None)), &config(), &keys_ec(), &world(), NOW, [1; 16]).expect("issue");
    let b = issue(input(spec(&[], None, None)), &config(), &keys_ec(), &world(), NOW, [2; 16]).expect("issue");
    assert_ne!(a.jti, b.jti);
    assert_eq!(a.jti, "01010101-0101-4101-8101-010101010101");
}

#[test]
fn decode_unverified_reads_any_compact_token_but_not_garbage() {
    let t = issue_ok(spec(&[], None, None));
    assert!(jwt::decode_unverified(&t.token).is_some());
    assert!(jwt::decode_unverified("garbage").is_none());
    assert!(jwt::decode_unverified("a.b.c").is_none());
}

// ---------------------------------------------------------------------------------------------
// Legacy secret tokens (§1.2)

fn assert_legacy(keys: &KeySet, alg: Algorithm) {
    let token = legacy_token(keys, NS, SA, SA_UID, SECRET).expect("legacy token");
    let (header, p) = decode(&token);
    assert_eq!(header, json!({"alg": alg.as_str(), "kid": keys.signing().kid()}));
    assert_eq!(
        p,
        json!({
            "iss": "kubernetes/serviceaccount",
            "sub": "system:serviceaccount:ns:sa",
            "kubernetes.io/serviceaccount/namespace": NS,
            "kubernetes.io/serviceaccount/secret.name": SECRET,
            "kubernetes.io/serviceaccount/service-account.name": SA,
            "kubernetes.io/serviceaccount/service-account.uid": SA_UID,
        })
    );
    for absent in ["exp", "iat", "nbf", "aud", "jti", "kubernetes.io"] {
        assert!(p.get(absent).is_none(), "{absent} must be absent");
    }
    assert!(jwt::verify(&token, keys, |iss| iss == "kubernetes/serviceaccount").is_ok());
}

#[test]
fn legacy_token_claims_rs256() {
    assert_legacy(&keys_rsa(), Algorithm::Rs256);
}

#[test]
fn legacy_token_claims_es256() {
    assert_legacy(&keys_ec(), Algorithm::Es256);
}

// ---------------------------------------------------------------------------------------------
// Wire format of the spec (§2.1): Go clients send nulls; the response echoes every field.

#[test]
fn spec_accepts_the_kubelet_body_with_nulls() {
    let s: TokenRequestSpec = serde_json::from_value(json!({
        "audiences": null,
        "expirationSeconds": 3607,
        "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "privileged-pod", "uid": "c512dc5b"},
    }))
    .expect("kubelet body");
    assert_eq!(s, spec(&[], Some(3607), Some(bound("Pod", "v1", "privileged-pod", "c512dc5b"))));
    let s: TokenRequestSpec =
        serde_json::from_value(json!({"audiences": null, "expirationSeconds": null, "boundObjectRef": null}))
            .expect("kubectl body");
    assert_eq!(s, spec(&[], None, None));
    let s: TokenRequestSpec = serde_json::from_value(json!({})).expect("empty spec");
    assert_eq!(s, spec(&[], None, None));
    let r: tokenwarden_core::token_request::BoundObjectReference =
        serde_json::from_value(json!({"kind": "Pod", "apiVersion": null, "name": "p", "uid": null})).expect("null ref fields");
    assert_eq!(r, bound("Pod", "", "p", ""));
}

#[test]
fn defaulted_spec_serializes_every_field() {
    let t = issue_ok(spec(&[], None, None));
    assert_eq!(
        serde_json::to_value(&t.spec).expect("json"),
        json!({"audiences": [ISSUER, ISSUER2], "expirationSeconds": 3600, "boundObjectRef": null})
    );
    let t = issue_ok(spec(&[], Some(3607), Some(pod_ref())));
    assert_eq!(
        serde_json::to_value(&t.spec).expect("json"),
        json!({
            "audiences": [ISSUER, ISSUER2],
            "expirationSeconds": 3607,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": POD},
        })
    );
}
