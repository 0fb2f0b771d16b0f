//! `tokenwarden decode`: what a token says, read without verifying it — header, claims, the
//! times in UTC and relative to now, and the object it is bound to.

use serde_json::Value;
use tokenwarden_core::Timestamp;
use tokenwarden_store::{Clock as _, SystemClock};

use crate::Failure;
use crate::client::token_argument;
use crate::duration::format_seconds;

#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    /// The token, or `-` (or nothing) to read it from stdin.
    pub token: Option<String>,
}

pub fn run(args: &DecodeArgs) -> Result<(), Failure> {
    let token = token_argument(args.token.as_deref())?;
    let (header, claims) = tokenwarden_core::jwt::decode_unverified(&token).ok_or_else(|| Failure::Usage("not a JWT: expected three base64url parts with JSON header and claims".into()))?;
    print!("{}", describe(&header, &claims, SystemClock.now()));
    Ok(())
}

/// The printed description, for a token read at `now`.
pub fn describe(header: &Value, claims: &Value, now: Timestamp) -> String {
    let mut out = String::from("NOT VERIFIED: decoded without checking the signature, issuer or revocation (`tokenwarden review` verifies).\n\nheader:\n");
    if let Some(fields) = header.as_object() {
        for (key, value) in fields {
            out.push_str(&format!("  {key}: {}\n", scalar(value)));
        }
    }
    out.push_str("claims:\n");
    let Some(fields) = claims.as_object() else { return out };
    for (key, value) in fields {
        match (key.as_str(), value.as_i64()) {
            ("exp" | "iat" | "nbf", Some(secs)) => out.push_str(&format!("  {key}: {}\n", when(key, Timestamp::from_unix(secs), now))),
            ("kubernetes.io", _) => {}
            _ => out.push_str(&format!("  {key}: {}\n", scalar(value))),
        }
    }
    if let Some(kubernetes) = claims.get("kubernetes.io") {
        out.push_str("  kubernetes.io:\n");
        let namespace = kubernetes.get("namespace").and_then(Value::as_str).unwrap_or_default();
        out.push_str(&format!("    namespace: {namespace}\n"));
        for kind in ["serviceaccount", "pod", "secret", "node"] {
            if let Some(reference) = kubernetes.get(kind) {
                let name = reference.get("name").and_then(Value::as_str).unwrap_or_default();
                let uid = reference.get("uid").and_then(Value::as_str).unwrap_or_default();
                out.push_str(&format!("    {kind}: {name} (uid {uid})\n"));
            }
        }
        if let Some(warn) = kubernetes.get("warnafter").and_then(Value::as_i64) {
            out.push_str(&format!("    warnafter: {}\n", when("warnafter", Timestamp::from_unix(warn), now)));
        }
        let bound = ["pod", "secret", "node"].iter().find(|k| kubernetes.get(**k).is_some());
        out.push_str(&match bound {
            Some(kind) => format!("bound to: {kind} {}\n", kubernetes.pointer(&format!("/{kind}/name")).and_then(Value::as_str).unwrap_or_default()),
            None => "bound to: no object (valid while the ServiceAccount exists)\n".to_owned(),
        });
    }
    out
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// `2026-11-23T16:10:00Z (expires in 9m12s)`.
fn when(claim: &str, at: Timestamp, now: Timestamp) -> String {
    // Saturating: a claim can hold any i64, and a clamped difference still points the right way.
    let delta = at.unix().saturating_sub(now.unix());
    let relative = match (claim, delta.signum()) {
        ("exp", 1) => format!("expires in {}", format_seconds(delta)),
        ("exp", 0) => "expires now".to_owned(),
        ("exp", _) => format!("expired {} ago", format_seconds(delta.saturating_neg())),
        ("nbf", 1) => format!("valid in {}", format_seconds(delta)),
        (_, 1) => format!("in {}", format_seconds(delta)),
        (_, 0) => "now".to_owned(),
        (_, _) => format!("{} ago", format_seconds(delta.saturating_neg())),
    };
    format!("{at} ({relative})")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn times_are_utc_and_relative_and_the_binding_is_named() {
        let now = Timestamp::parse_rfc3339("2026-11-23T16:00:48Z").unwrap_or_default();
        let claims = json!({
            "aud": ["talker-api"], "exp": now.unix() + 552, "iat": now.unix() - 48, "iss": "https://tw",
            "kubernetes.io": {"namespace": "demo", "serviceaccount": {"name": "bot", "uid": "u1"}, "pod": {"name": "p", "uid": "u2"}},
            "sub": "system:serviceaccount:demo:bot",
        });
        let text = describe(&json!({"alg": "RS256", "kid": "k"}), &claims, now);
        assert!(text.starts_with("NOT VERIFIED"), "{text}");
        assert!(text.contains("  alg: RS256\n"), "{text}");
        assert!(text.contains("  exp: 2026-11-23T16:10:00Z (expires in 9m12s)\n"), "{text}");
        assert!(text.contains("  iat: 2026-11-23T16:00:00Z (48s ago)\n"), "{text}");
        assert!(text.contains("  aud: talker-api\n"), "{text}");
        assert!(text.contains("    serviceaccount: bot (uid u1)\n    pod: p (uid u2)\n"), "{text}");
        assert!(text.contains("bound to: pod p\n"), "{text}");
        let expired = describe(&json!({}), &json!({"exp": now.unix() - 180, "nbf": now.unix(), "iat": now.unix() + 5}), now);
        assert!(expired.contains("(expired 3m ago)"), "{expired}");
        assert!(expired.contains("  nbf: 2026-11-23T16:00:48Z (now)\n"), "{expired}");
        assert!(expired.contains("(in 5s)"), "{expired}");
    }

    #[test]
    fn claims_at_the_ends_of_time_are_described_without_overflow() {
        let now = Timestamp::from_unix(1_700_000_000);
        let text = describe(&json!({}), &json!({"exp": i64::MIN, "nbf": i64::MAX, "iat": i64::MIN + 1}), now);
        assert!(text.contains("  exp: -292277022657-01-27T08:29:52Z (expired 2562047788015215h30m7s ago)\n"), "{text}");
        assert!(text.contains("  nbf: 292277026596-12-04T15:30:07Z (valid in 2562047787542993h16m47s)\n"), "{text}");
    }
}
