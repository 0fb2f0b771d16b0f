//! Secret-based ServiceAccount tokens that nobody uses any more, as Kubernetes retires them.
//!
//! kube-apiserver labels a token Secret with the day its token was last used
//! (`kubernetes.io/legacy-token-last-used`, at most one write a day); kube-controller-manager's
//! legacy token cleaner labels an auto-generated token Secret unused for the clean-up period
//! invalid (`kubernetes.io/legacy-token-invalid-since`, after which its token no longer
//! authenticates) and deletes it once it has been invalid for the period too. "Auto-generated"
//! means listed in its ServiceAccount's `secrets`; a Secret some Pod mounts or references is
//! left alone, and nothing happens before use has been tracked for a whole period.
//!
//! Dates are `YYYY-MM-DD` in UTC and compared as text, as Kubernetes does.

use std::collections::HashSet;

use serde_json::Value;

use crate::object::{LEGACY_TOKEN_INVALID_SINCE_LABEL, Object, SERVICE_ACCOUNT_NAME_ANNOTATION, SERVICE_ACCOUNT_TOKEN_SECRET_TYPE, SERVICE_ACCOUNT_UID_ANNOTATION};
use crate::time::Timestamp;

pub const LAST_USED_LABEL: &str = "kubernetes.io/legacy-token-last-used";

/// What the cleaner does with one Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cleanup {
    Keep,
    /// Set `kubernetes.io/legacy-token-invalid-since` to this date.
    MarkInvalid(String),
    Delete,
}

/// One pass of the cleaner at `now`.
#[derive(Clone, Debug)]
pub struct Sweep {
    /// Secrets created at or after this are kept.
    preserve_created_on_or_after: Timestamp,
    /// Secrets used (or marked invalid) on or after this date are kept.
    preserve_on_or_after: String,
    today: String,
}

/// `YYYY-MM-DD` as the start of that day.
fn parse_date(date: &str) -> Option<Timestamp> {
    if date.len() != 10 {
        return None;
    }
    Timestamp::parse_rfc3339(&format!("{date}T00:00:00Z"))
}

impl Sweep {
    /// A pass with `period` seconds of clean-up period; `None` while use has been tracked for
    /// less than a period (since the day after `tracking_since`, as the cleaner counts).
    pub fn new(now: Timestamp, period: i64, tracking_since: &str) -> Option<Self> {
        let tracked_from = parse_date(tracking_since)?.plus(86_400);
        if now < tracked_from.plus(period) {
            return None;
        }
        let cutoff = now.plus(-period);
        Some(Self { preserve_created_on_or_after: cutoff, preserve_on_or_after: cutoff.date(), today: now.date() })
    }

    /// The decision for `secret`, given its ServiceAccount (if it exists) and whether a Pod in
    /// its namespace references it.
    pub fn decide(&self, secret: &Object, service_account: Option<&Object>, referenced_by_pod: bool) -> Cleanup {
        if secret.secret_type() != SERVICE_ACCOUNT_TOKEN_SECRET_TYPE {
            return Cleanup::Keep;
        }
        if secret.creation_timestamp().is_none_or(|created| created >= self.preserve_created_on_or_after) {
            return Cleanup::Keep;
        }
        if secret.value().get("metadata").and_then(|m| m.get("deletionTimestamp")).is_some() {
            return Cleanup::Keep;
        }
        // No label: not used since tracking began.
        if let Some(last_used) = secret.label(LAST_USED_LABEL)
            && (parse_date(last_used).is_none() || *last_used >= *self.preserve_on_or_after)
        {
            return Cleanup::Keep;
        }
        let Some(sa) = service_account else { return Cleanup::Keep };
        let uid = secret.annotation(SERVICE_ACCOUNT_UID_ANNOTATION).unwrap_or_default();
        if Some(sa.name()) != secret.annotation(SERVICE_ACCOUNT_NAME_ANNOTATION) || (!uid.is_empty() && uid != sa.uid()) {
            return Cleanup::Keep;
        }
        if !lists_secret(sa, secret.name()) || referenced_by_pod {
            return Cleanup::Keep;
        }
        match secret.label(LEGACY_TOKEN_INVALID_SINCE_LABEL).filter(|since| parse_date(since).is_some()) {
            None => Cleanup::MarkInvalid(self.today.clone()),
            Some(since) if *since >= *self.preserve_on_or_after => Cleanup::Keep,
            Some(_) => Cleanup::Delete,
        }
    }
}

/// Whether the ServiceAccount lists `name` in `secrets`.
fn lists_secret(sa: &Object, name: &str) -> bool {
    sa.value().get("secrets").and_then(Value::as_array).is_some_and(|refs| refs.iter().any(|r| r.get("name").and_then(Value::as_str) == Some(name)))
}

/// The names of the Secrets a Pod references: volumes (secret, projected, and the `secretRef`s
/// of other sources), image pull secrets, and its containers' `env` and `envFrom`.
pub fn pod_secret_names(pod: &Object, into: &mut HashSet<String>) {
    let spec = pod.value().get("spec");
    let array = |value: Option<&Value>, key: &str| -> Vec<Value> { value.and_then(|v| v.get(key)).and_then(Value::as_array).cloned().unwrap_or_default() };
    let mut add = |name: Option<&Value>| {
        if let Some(name) = name.and_then(Value::as_str).filter(|n| !n.is_empty()) {
            into.insert(name.to_owned());
        }
    };
    for secret in array(spec, "imagePullSecrets") {
        add(secret.get("name"));
    }
    for volume in array(spec, "volumes") {
        let Some(sources) = volume.as_object() else { continue };
        for source in sources.values() {
            add(source.get("secretName"));
            add(source.get("secretRef").and_then(|r| r.get("name")));
            add(source.get("nodePublishSecretRef").and_then(|r| r.get("name")));
            for projected in array(Some(source), "sources") {
                add(projected.get("secret").and_then(|s| s.get("name")));
            }
        }
    }
    for kind in ["containers", "initContainers", "ephemeralContainers"] {
        for container in array(spec, kind) {
            for env in array(Some(&container), "env") {
                add(env.get("valueFrom").and_then(|v| v.get("secretKeyRef")).and_then(|r| r.get("name")));
            }
            for env_from in array(Some(&container), "envFrom") {
                add(env_from.get("secretRef").and_then(|r| r.get("name")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const DAY: i64 = 86_400;
    const YEAR: i64 = 365 * DAY;

    fn object(value: Value) -> Object {
        Object::from_value(value).unwrap()
    }

    fn secret(labels: Value) -> Object {
        object(json!({"metadata": {"name": "bot-token", "namespace": "ns", "creationTimestamp": "2020-01-01T00:00:00Z",
            "labels": labels, "annotations": {SERVICE_ACCOUNT_NAME_ANNOTATION: "bot", SERVICE_ACCOUNT_UID_ANNOTATION: "u1"}},
            "type": SERVICE_ACCOUNT_TOKEN_SECRET_TYPE}))
    }

    fn sa(secrets: Value) -> Object {
        object(json!({"metadata": {"name": "bot", "namespace": "ns", "uid": "u1"}, "secrets": secrets}))
    }

    fn at(date: &str) -> Timestamp {
        parse_date(date).unwrap()
    }

    #[test]
    fn nothing_happens_before_use_was_tracked_for_a_whole_period() {
        assert!(Sweep::new(at("2024-01-01").plus(YEAR), YEAR, "2024-01-01").is_none());
        assert!(Sweep::new(at("2024-01-02").plus(YEAR), YEAR, "2024-01-01").is_some());
        assert!(Sweep::new(at("2030-01-01"), YEAR, "not a date").is_none());
    }

    #[test]
    fn an_unused_listed_token_is_marked_invalid_then_deleted_a_period_later() {
        let listed = sa(json!([{"name": "bot-token"}]));
        let sweep = Sweep::new(at("2026-06-01"), YEAR, "2024-01-01").unwrap();
        assert_eq!(sweep.decide(&secret(json!({})), Some(&listed), false), Cleanup::MarkInvalid("2026-06-01".into()));
        assert_eq!(sweep.decide(&secret(json!({LAST_USED_LABEL: "2025-05-31"})), Some(&listed), false), Cleanup::MarkInvalid("2026-06-01".into()));
        // Used within the period, referenced by a Pod, not listed, another ServiceAccount: kept.
        assert_eq!(sweep.decide(&secret(json!({LAST_USED_LABEL: "2025-06-01"})), Some(&listed), false), Cleanup::Keep);
        assert_eq!(sweep.decide(&secret(json!({})), Some(&listed), true), Cleanup::Keep);
        assert_eq!(sweep.decide(&secret(json!({})), Some(&sa(json!([]))), false), Cleanup::Keep);
        assert_eq!(sweep.decide(&secret(json!({})), None, false), Cleanup::Keep);
        let mut other = sa(json!([{"name": "bot-token"}]));
        other.set_meta("uid", "u2");
        assert_eq!(sweep.decide(&secret(json!({})), Some(&other), false), Cleanup::Keep);
        // Invalid for less than a period: kept; for longer: deleted.
        let invalid = |since: &str| secret(json!({LEGACY_TOKEN_INVALID_SINCE_LABEL: since}));
        assert_eq!(sweep.decide(&invalid("2025-06-01"), Some(&listed), false), Cleanup::Keep);
        assert_eq!(sweep.decide(&invalid("2025-05-31"), Some(&listed), false), Cleanup::Delete);
        // A malformed invalid-since label is replaced; a malformed last-used one keeps the Secret.
        assert_eq!(sweep.decide(&invalid("soon"), Some(&listed), false), Cleanup::MarkInvalid("2026-06-01".into()));
        assert_eq!(sweep.decide(&secret(json!({LAST_USED_LABEL: "yesterday"})), Some(&listed), false), Cleanup::Keep);
    }

    #[test]
    fn pods_reference_secrets_through_volumes_env_and_pull_secrets() {
        let pod = object(json!({"metadata": {"name": "p"}, "spec": {
            "imagePullSecrets": [{"name": "pull"}],
            "volumes": [{"name": "a", "secret": {"secretName": "vol"}},
                        {"name": "b", "projected": {"sources": [{"secret": {"name": "proj"}}]}},
                        {"name": "c", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "csi"}}}],
            "containers": [{"name": "c", "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "env", "key": "token"}}}],
                            "envFrom": [{"secretRef": {"name": "envfrom"}}]}],
            "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "init"}}]}]}}));
        let mut names = HashSet::new();
        pod_secret_names(&pod, &mut names);
        let mut names: Vec<_> = names.into_iter().collect();
        names.sort();
        assert_eq!(names, ["csi", "env", "envfrom", "init", "proj", "pull", "vol"]);
    }
}
