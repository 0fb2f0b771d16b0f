//! Properties of TokenReview over generated inputs: tampering, audiences, malformed tokens.

mod common;

use std::sync::LazyLock;

use common::*;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;
use serde_json::{Value, json};
use tokenwarden_core::error::go_quote_list;
use tokenwarden_core::jwt::MAX_TOKEN_BYTES;
use tokenwarden_core::keys::KeySet;
use tokenwarden_core::lookup::StaticLookup;
use tokenwarden_core::review::{ReviewError, review};
use tokenwarden_core::token_request::issue;

static RSA_KEYS: LazyLock<KeySet> = LazyLock::new(keys_rsa);
static EC_KEYS: LazyLock<KeySet> = LazyLock::new(keys_ec);
static WORLD: LazyLock<StaticLookup> = LazyLock::new(world);

/// A pod-bound token per key type; every check passes for it at NOW.
static TOKENS: LazyLock<[String; 2]> = LazyLock::new(|| {
    [&*RSA_KEYS, &*EC_KEYS].map(|keys| mint(keys, spec(&[], None, Some(pod_ref()))).token)
});

/// A key set holding both keys, so a tampered token can never fail merely for its key.
static BOTH_KEYS: LazyLock<KeySet> = LazyLock::new(|| KeySet::new(rsa(), vec![ec().verifying_key().clone()]));

fn review_now(token: &str, requested: &[String]) -> Result<Vec<String>, ReviewError> {
    review(token, requested, &BOTH_KEYS, &config(), &*WORLD, NOW).map(|(_, auds)| auds)
}

/// Asserts the token is refused with a non-empty, well-formed `status.error`.
fn assert_refused(token: &str) -> Result<(), TestCaseError> {
    match review_now(token, &[]) {
        Ok(auds) => Err(TestCaseError::fail(format!("accepted {token:?} with audiences {auds:?}"))),
        Err(e) => {
            let status = e.status_error();
            prop_assert!(!status.is_empty());
            prop_assert!(status == "invalid bearer token" || (status.starts_with("[invalid bearer token, ") && status.ends_with(']')), "{status}");
            if let ReviewError::Rejected(reason) = &e {
                prop_assert!(!reason.is_empty());
            }
            Ok(())
        }
    }
}

fn config_cases(cases: u32) -> Config {
    // No regression files: this crate's tests write only under tests/.
    Config { cases, failure_persistence: None, ..Config::default() }
}

#[test]
fn fixture_tokens_are_accepted() {
    for token in TOKENS.iter() {
        assert_eq!(review_now(token, &[]).expect("valid"), strings(&[ISSUER, ISSUER2]));
    }
}

// ---------------------------------------------------------------------------------------------
// (a) Any single-byte change is rejected.

proptest! {
    #![proptest_config(config_cases(512))]

    #[test]
    fn any_single_byte_change_is_rejected(which in 0..2usize, pos in any::<Index>(), delta in 1..=255u8) {
        let token = &TOKENS[which];
        let mut bytes = token.as_bytes().to_vec();
        let i = pos.index(bytes.len());
        bytes[i] = bytes[i].wrapping_add(delta);
        // A non-UTF-8 byte cannot reach the API as a &str; lossy decoding still changes it.
        let tampered = String::from_utf8_lossy(&bytes).into_owned();
        prop_assert_ne!(&tampered, token);
        assert_refused(&tampered)?;
    }

    #[test]
    fn any_truncation_is_rejected(which in 0..2usize, pos in any::<Index>()) {
        let token = &TOKENS[which];
        assert_refused(&token[..pos.index(token.len())])?;
    }
}

/// Exhaustively: every position, replaced by its neighbours in the base64url alphabet (the
/// changes most likely to survive decoding).
#[test]
fn every_position_changed_to_a_base64_neighbour_is_rejected() {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for token in TOKENS.iter() {
        for i in 0..token.len() {
            let mut bytes = token.as_bytes().to_vec();
            let replacements: Vec<u8> = match ALPHABET.iter().position(|c| *c == bytes[i]) {
                Some(p) => vec![ALPHABET[(p + 1) % 64], ALPHABET[(p + 63) % 64], ALPHABET[p ^ 1]],
                None => vec![b'A', b'_'], // the dots
            };
            for r in replacements {
                bytes[i] = r;
                let tampered = String::from_utf8(bytes.clone()).expect("ascii");
                if let Ok(auds) = review_now(&tampered, &[]) {
                    panic!("position {i} -> {:?} accepted with {auds:?}", r as char);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (b) Audiences: success iff the intersection is non-empty; status.audiences is the requested
// ones the token carries, in request order.

fn audience() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", ISSUER, ISSUER2]).prop_map(str::to_owned)
}

proptest! {
    #![proptest_config(config_cases(256))]

    #[test]
    fn review_succeeds_iff_audiences_intersect(
        token_auds in prop::collection::vec(audience(), 1..4),
        requested in prop::collection::vec(audience(), 0..4),
    ) {
        let refs: Vec<&str> = token_auds.iter().map(String::as_str).collect();
        let token = issue(input(spec(&refs, None, None)), &config(), &EC_KEYS, &*WORLD, NOW, RANDOM)
            .expect("issue")
            .token;
        let effective: Vec<String> = if requested.is_empty() { config().api_audiences } else { requested.clone() };
        let expected: Vec<String> = effective.iter().filter(|a| token_auds.contains(a)).cloned().collect();
        match review_now(&token, &requested) {
            Ok(auds) => {
                prop_assert!(!expected.is_empty(), "accepted with no common audience");
                prop_assert_eq!(auds, expected);
            }
            Err(e) => {
                prop_assert!(expected.is_empty(), "rejected although {:?} are shared: {:?}", expected, e);
                prop_assert_eq!(
                    e.status_error(),
                    format!(
                        "[invalid bearer token, token audiences {} is invalid for the target audiences {}]",
                        go_quote_list(&token_auds),
                        go_quote_list(&effective)
                    )
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (c) Malformed input never panics and always yields a reason.

fn b64_part() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| b64(&b))
}

/// Valid bound claims at NOW, as JSON.
fn claims_json() -> Value {
    decode(&TOKENS[0]).1
}

fn kube_header(keys: &KeySet) -> String {
    format!(r#"{{"alg":"{}","kid":"{}"}}"#, keys.signing().algorithm().as_str(), keys.signing().kid())
}

proptest! {
    #![proptest_config(config_cases(512))]

    #[test]
    fn arbitrary_strings_are_refused(s in any::<String>()) {
        assert_refused(&s)?;
    }

    #[test]
    fn jwt_looking_strings_are_refused(s in "[A-Za-z0-9_=+/-]{0,80}\\.[A-Za-z0-9_=+/-]{0,200}\\.[A-Za-z0-9_=+/-]{0,120}") {
        assert_refused(&s)?;
    }

    #[test]
    fn arbitrary_bytes_in_three_parts_are_refused(h in b64_part(), p in b64_part(), s in b64_part()) {
        assert_refused(&format!("{h}.{p}.{s}"))?;
    }

    /// Gets past the issuer probe (so the header and signature are really parsed).
    #[test]
    fn our_issuer_with_arbitrary_header_and_signature_is_refused(
        h in prop_oneof![b64_part(), Just(b64(kube_header(&RSA_KEYS).as_bytes())), Just(b64(kube_header(&EC_KEYS).as_bytes()))],
        s in b64_part(),
    ) {
        let p = b64(&serde_json::to_vec(&claims_json()).expect("json"));
        assert_refused(&format!("{h}.{p}.{s}"))?;
    }

    #[test]
    fn truncated_json_payloads_signed_with_the_real_key_are_refused(which in 0..2usize, cut in any::<Index>()) {
        let keys: &KeySet = if which == 0 { &RSA_KEYS } else { &EC_KEYS };
        let json = serde_json::to_vec(&claims_json()).expect("json");
        let truncated = &json[..cut.index(json.len())];
        assert_refused(&sign_raw(keys.signing(), &kube_header(keys), truncated))?;
    }

    #[test]
    fn huge_tokens_are_refused(pad in (MAX_TOKEN_BYTES - 4000)..(3 * MAX_TOKEN_BYTES), which in 0..2usize) {
        let keys: &KeySet = if which == 0 { &RSA_KEYS } else { &EC_KEYS };
        let mut claims = claims_json();
        claims["pad"] = json!("x".repeat(pad));
        let token = sign_json(keys.signing(), &claims);
        prop_assume!(token.len() > MAX_TOKEN_BYTES);
        // Refused before any decoding: not this authority's token.
        prop_assert_eq!(review_now(&token, &[]).map(|_| ()), Err(ReviewError::NotMine));
    }

    /// Any claim replaced by any JSON value, signed with the real key: never a panic, and a
    /// refusal always carries a reason.
    #[test]
    fn arbitrary_claim_values_never_panic(key in claim_name(), value in json_value(), which in 0..2usize) {
        let keys: &KeySet = if which == 0 { &RSA_KEYS } else { &EC_KEYS };
        let mut claims = claims_json();
        set_path(&mut claims, &key, value);
        let token = sign_json(keys.signing(), &claims);
        if let Err(e) = review_now(&token, &[]) {
            prop_assert!(e.status_error().starts_with("invalid bearer token") || e.status_error().starts_with("[invalid bearer token, "));
            if let ReviewError::Rejected(reason) = e {
                prop_assert!(!reason.is_empty());
            }
        }
    }
}

fn claim_name() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "aud",
        "exp",
        "iat",
        "nbf",
        "iss",
        "jti",
        "sub",
        "kubernetes.io",
        "kubernetes.io/namespace",
        "kubernetes.io/serviceaccount",
        "kubernetes.io/serviceaccount/name",
        "kubernetes.io/serviceaccount/uid",
        "kubernetes.io/pod",
        "kubernetes.io/pod/uid",
        "kubernetes.io/node",
        "kubernetes.io/warnafter",
        "kubernetes.io/secret",
    ])
    .prop_map(str::to_owned)
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Sets `a/b/c` (first segment may be `kubernetes.io`), creating objects on the way.
fn set_path(root: &mut Value, path: &str, value: Value) {
    let (first, rest) = match path.strip_prefix("kubernetes.io") {
        Some(rest) => ("kubernetes.io", rest.trim_start_matches('/')),
        None => (path, ""),
    };
    let mut segments = vec![first];
    segments.extend(rest.split('/').filter(|s| !s.is_empty()));
    let mut cur = root;
    for seg in &segments[..segments.len() - 1] {
        if !cur[*seg].is_object() {
            cur[*seg] = json!({});
        }
        cur = &mut cur[*seg];
    }
    cur[segments[segments.len() - 1]] = value;
}

/// Claims of the wrong JSON type, signed with the real key, are refused with a reason.
#[test]
fn wrong_claim_types_signed_with_the_real_key_are_refused() {
    let cases: Vec<(&str, Value)> = vec![
        ("exp", json!("x")),
        ("exp", json!(true)),
        ("exp", json!([1])),
        ("exp", json!(1e300)),
        ("iat", json!("x")),
        ("nbf", json!({})),
        ("aud", json!(5)),
        ("aud", json!([1])),
        ("aud", json!({"a": 1})),
        ("jti", json!(5)),
        ("sub", json!(5)),
        ("iss", json!(5)),
        ("iss", json!([ISSUER])),
        ("kubernetes.io", json!([])),
        ("kubernetes.io", json!("ns")),
        ("kubernetes.io/namespace", json!(5)),
        ("kubernetes.io/serviceaccount", json!(5)),
        ("kubernetes.io/serviceaccount/uid", json!(["u"])),
        ("kubernetes.io/pod", json!("p")),
        ("kubernetes.io/warnafter", json!("x")),
    ];
    for keys in [&*RSA_KEYS, &*EC_KEYS] {
        for (path, value) in &cases {
            let mut claims = claims_json();
            set_path(&mut claims, path, value.clone());
            let token = sign_json(keys.signing(), &claims);
            let err = review_now(&token, &[]).expect_err(&format!("{path} = {value} must be refused"));
            let status = err.status_error();
            assert!(!status.is_empty(), "{path}");
            if let ReviewError::Rejected(reason) = &err {
                assert!(!reason.is_empty(), "{path}");
            }
        }
    }
    // The legacy flat claims too.
    for key in [
        "kubernetes.io/serviceaccount/namespace",
        "kubernetes.io/serviceaccount/secret.name",
        "kubernetes.io/serviceaccount/service-account.name",
        "kubernetes.io/serviceaccount/service-account.uid",
    ] {
        let mut claims = json!({
            "iss": "kubernetes/serviceaccount",
            "sub": "system:serviceaccount:ns:sa",
            "kubernetes.io/serviceaccount/namespace": NS,
            "kubernetes.io/serviceaccount/secret.name": SECRET,
            "kubernetes.io/serviceaccount/service-account.name": SA,
            "kubernetes.io/serviceaccount/service-account.uid": SA_UID,
        });
        claims[key] = json!(5);
        let token = sign_json(RSA_KEYS.signing(), &claims);
        let err = review_now(&token, &[]).expect_err(key);
        assert!(!err.status_error().is_empty());
    }
}

/// The size limit is inclusive: a 16 KiB token is reviewed, one byte more is not.
#[test]
fn size_limit_is_exactly_16_kib() {
    let keys = &*EC_KEYS;
    let header_variants = [kube_header(keys), kube_header(keys).replace(",", ", "), kube_header(keys).replace(",", " , ")];
    let mut found = [false, false];
    for header in &header_variants {
        // Payload bytes are ¾ of what the header, two dots and the 86-char ES256 signature leave.
        let base = serde_json::to_vec(&claims_json()).expect("json").len() + ",\"pad\":\"\"".len();
        let estimate = (MAX_TOKEN_BYTES - b64(header.as_bytes()).len() - 2 - 86) * 3 / 4 - base;
        for pad in (estimate - 50)..(estimate + 50) {
            let mut claims = claims_json();
            claims["pad"] = json!("x".repeat(pad));
            let token = sign_raw(keys.signing(), header, &serde_json::to_vec(&claims).expect("json"));
            if token.len() == MAX_TOKEN_BYTES {
                assert!(review_now(&token, &[]).is_ok(), "a {MAX_TOKEN_BYTES}-byte token is accepted");
                found[0] = true;
            }
            if token.len() == MAX_TOKEN_BYTES + 1 {
                assert_eq!(review_now(&token, &[]).map(|_| ()), Err(ReviewError::NotMine));
                found[1] = true;
            }
        }
    }
    assert_eq!(found, [true, true], "could not build tokens of exactly the limit and one over");
}
