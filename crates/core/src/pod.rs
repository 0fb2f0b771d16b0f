//! A Pod as kube-apiserver creates it, beyond storing it: the decoding of its resource
//! quantities and `SetDefaults_Pod` (a container's limits are its requests where it names
//! none), the ServiceAccount admission plugin (a pod runs as a ServiceAccount that exists,
//! `default` unless it names one; a kubelet's mirror pod runs as none), and
//! `PodStrategy.PrepareForCreate` (a new pod is Pending, with its QoS class).
//!
//! Left out: the `kube-api-access-*` token volume the plugin mounts (it projects the
//! `kube-root-ca.crt` ConfigMap, a kind tokenwarden does not keep; `tokenwarden project`
//! writes that layout), quantities rewritten in canonical form, and pod-level resources.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value, json};

use crate::legacy_tokens::pod_secret_names;
use crate::{Error, Object, Timestamp};

/// The annotation of a kubelet's mirror pod (a static pod it runs on its own).
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

const CONTAINER_LISTS: [&str; 2] = ["containers", "initContainers"];
/// The resources a pod's QoS class is computed from.
const QOS_RESOURCES: [&str; 2] = ["cpu", "memory"];

fn containers_mut<'a>(spec: &'a mut Map<String, Value>, list: &str) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    spec.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten().filter_map(Value::as_object_mut)
}

fn containers<'a>(spec: Option<&'a Map<String, Value>>, list: &str) -> impl Iterator<Item = &'a Map<String, Value>> {
    spec.and_then(|s| s.get(list)).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_object)
}

/// Decoding and `SetDefaults_Pod`: every container's requests and limits must be quantities
/// (400, as kube's decoder answers), and a limit is also the request where none is named.
pub fn decode_and_default(pod: &mut Object) -> Result<(), Error> {
    let Some(Value::Object(spec)) = pod.0.get_mut("spec") else {
        return Ok(());
    };
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for container in containers_mut(spec, list) {
            let Some(Value::Object(resources)) = container.get_mut("resources") else { continue };
            for part in ["requests", "limits"] {
                for quantity in resources.get(part).and_then(Value::as_object).into_iter().flat_map(Map::values) {
                    Quantity::from_json(quantity).map_err(|e| Error::BadRequest(format!("Pod in version \"v1\" cannot be handled as a Pod: {e}")))?;
                }
            }
            if list == "ephemeralContainers" {
                continue;
            }
            let Some(Value::Object(limits)) = resources.get("limits").cloned() else { continue };
            let requests = resources.entry("requests").or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(requests) = requests {
                for (name, limit) in limits {
                    requests.entry(name).or_insert(limit);
                }
            }
        }
    }
    Ok(())
}

/// The ServiceAccount admission plugin's first half: the ServiceAccount the pod runs as (its
/// `serviceAccountName`, else the deprecated `serviceAccount`, else `default`), written to both
/// fields as kube's v1 conversion does; `None` for a mirror pod, which may reference no
/// ServiceAccount, Secret or token projection.
pub fn service_account_to_admit(pod: &mut Object) -> Result<Option<String>, Error> {
    let named = [pod.str_at("spec.serviceAccountName"), pod.str_at("spec.serviceAccount")].into_iter().flatten().find(|n| !n.is_empty()).map(str::to_owned);
    if pod.annotation(MIRROR_ANNOTATION).is_some() {
        let forbidden = |detail: &str| Err(forbidden(pod, detail.to_owned()));
        if named.is_some() {
            return forbidden("a mirror pod may not reference service accounts");
        }
        let mut secrets = HashSet::new();
        pod_secret_names(pod, &mut secrets);
        if !secrets.is_empty() {
            return forbidden("a mirror pod may not reference secrets");
        }
        let projects_a_token = pod.value().get("spec").and_then(|s| s.get("volumes")).and_then(Value::as_array).into_iter().flatten().any(|volume| {
            let sources = volume.get("projected").and_then(|p| p.get("sources")).and_then(Value::as_array);
            sources.into_iter().flatten().any(|source| source.get("serviceAccountToken").is_some_and(|t| !t.is_null()))
        });
        if projects_a_token {
            return forbidden("a mirror pod may not use ServiceAccountToken volume projections");
        }
        return Ok(None);
    }
    let name = named.unwrap_or_else(|| "default".to_owned());
    if let Some(Value::Object(spec)) = pod.0.get_mut("spec") {
        spec.insert("serviceAccountName".into(), name.clone().into());
        spec.insert("serviceAccount".into(), name.clone().into());
    }
    Ok(Some(name))
}

/// The plugin's second half, given the ServiceAccount as looked up in the pod's namespace: it
/// must exist, and a pod that names no image pull secrets gets its ServiceAccount's.
pub fn admit_service_account(pod: &mut Object, name: &str, service_account: Option<&Object>) -> Result<(), Error> {
    let Some(service_account) = service_account else {
        let detail = format!("error looking up service account {}/{name}: serviceaccount \"{name}\" not found", pod.namespace());
        return Err(forbidden(pod, detail));
    };
    let pulls = service_account.value().get("imagePullSecrets").and_then(Value::as_array).filter(|p| !p.is_empty());
    if let (Some(pulls), Some(Value::Object(spec))) = (pulls, pod.0.get_mut("spec")) {
        let named = spec.get("imagePullSecrets").and_then(Value::as_array).is_some_and(|p| !p.is_empty());
        if !named {
            let names: Vec<Value> = pulls.iter().map(|p| json!({"name": p.get("name").and_then(Value::as_str).unwrap_or_default()})).collect();
            spec.insert("imagePullSecrets".into(), Value::Array(names));
        }
    }
    Ok(())
}

/// admission.NewForbidden: the pod named as asked (its name, else its generateName).
fn forbidden(pod: &Object, detail: String) -> Error {
    Error::Forbidden { resource: "pods".into(), name: pod.name_as_asked().to_owned(), detail, causes: Vec::new() }
}

/// `PodStrategy.PrepareForCreate`: a new pod's status is Pending with its QoS class, and a pod
/// held by scheduling gates says so in a PodScheduled condition.
pub fn initial_status(pod: &Object, now: Timestamp) -> Value {
    let mut status = json!({"phase": "Pending", "qosClass": qos_class(pod)});
    let gated = pod.value().get("spec").and_then(|s| s.get("schedulingGates")).and_then(Value::as_array).is_some_and(|g| !g.is_empty());
    if gated {
        status["conditions"] = json!([{
            "type": "PodScheduled",
            "status": "False",
            "lastProbeTime": null,
            "lastTransitionTime": now.to_string(),
            "reason": "SchedulingGated",
            "message": "Scheduling is blocked due to non-empty scheduling gates",
        }]);
    }
    status
}

/// kube's `ComputePodQOS` over the containers and init containers: BestEffort without any cpu
/// or memory request or limit, Guaranteed when every container limits both and the requests
/// add up to the limits, Burstable otherwise. Quantities that are not positive are ignored.
pub fn qos_class(pod: &Object) -> &'static str {
    let spec = pod.value().get("spec").and_then(Value::as_object);
    let mut requests: BTreeMap<&str, i128> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i128> = BTreeMap::new();
    let mut guaranteed = true;
    for container in CONTAINER_LISTS.into_iter().flat_map(|list| containers(spec, list)) {
        let resources = container.get("resources");
        let positive = |part: &str| -> Vec<(&str, i128)> {
            let listed = resources.and_then(|r| r.get(part)).and_then(Value::as_object).into_iter().flatten();
            listed
                .filter_map(|(name, q)| Some((QOS_RESOURCES.into_iter().find(|r| r == name)?, Quantity::from_json(q).ok()?.0)))
                .filter(|(_, nanos)| *nanos > 0)
                .collect()
        };
        for (name, nanos) in positive("requests") {
            let sum = requests.entry(name).or_default();
            *sum = sum.saturating_add(nanos);
        }
        let limited = positive("limits");
        if !QOS_RESOURCES.iter().all(|r| limited.iter().any(|(name, _)| name == r)) {
            guaranteed = false;
        }
        for (name, nanos) in limited {
            let sum = limits.entry(name).or_default();
            *sum = sum.saturating_add(nanos);
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed && requests.len() == limits.len() && requests.iter().all(|(name, request)| limits.get(name) == Some(request)) {
        return "Guaranteed";
    }
    "Burstable"
}

/// A resource quantity (`100m`, `1.5Gi`, `2e3`), in billionths: kube's `resource.Quantity`
/// keeps nothing finer (it rounds a smaller non-zero amount up to one billionth). An amount
/// past what 128 bits hold saturates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(pub i128);

/// kube's `ErrFormatWrong`.
const FORMAT_WRONG: &str = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

impl Quantity {
    /// A quantity as JSON holds it: a string, or a number (kube reads both).
    pub fn from_json(value: &Value) -> Result<Self, &'static str> {
        match value {
            Value::String(text) => Self::parse(text.trim()),
            Value::Number(number) => Self::parse(&number.to_string()),
            _ => Err(FORMAT_WRONG),
        }
    }

    /// kube's `ParseQuantity`, with its three errors.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let bytes = text.as_bytes();
        if bytes.is_empty() {
            return Err(FORMAT_WRONG);
        }
        let mut pos = 0;
        let negative = match bytes[0] {
            b'-' => {
                pos = 1;
                true
            }
            b'+' => {
                pos = 1;
                false
            }
            _ => false,
        };
        let digits_from = |start: usize| start + bytes[start..].iter().take_while(|b| b.is_ascii_digit()).count();
        let whole_end = digits_from(pos);
        let whole = &text[pos..whole_end];
        pos = whole_end;
        let mut fraction = "";
        if bytes.get(pos) == Some(&b'.') {
            let end = digits_from(pos + 1);
            fraction = &text[pos + 1..end];
            pos = end;
        }
        // The suffix: letters of `eEinumkKMGTP`, then an optional sign and digits (an exponent).
        let suffix_start = pos;
        pos += bytes[pos..].iter().take_while(|b| b"eEinumkKMGTP".contains(b)).count();
        if matches!(bytes.get(pos), Some(b'-' | b'+')) {
            pos += 1;
        }
        pos = digits_from(pos);
        if pos != bytes.len() {
            return Err(FORMAT_WRONG);
        }
        let (binary_shift, decimal_exponent) = match &text[suffix_start..] {
            "" => (0, 0),
            "n" => (0, -9),
            "u" => (0, -6),
            "m" => (0, -3),
            "k" => (0, 3),
            "M" => (0, 6),
            "G" => (0, 9),
            "T" => (0, 12),
            "P" => (0, 15),
            "E" => (0, 18),
            "Ki" => (10, 0),
            "Mi" => (20, 0),
            "Gi" => (30, 0),
            "Ti" => (40, 0),
            "Pi" => (50, 0),
            "Ei" => (60, 0),
            exponent if exponent.len() > 1 && exponent.starts_with(['e', 'E']) => {
                (0, exponent[1..].parse::<i32>().map_err(|_| "unable to parse quantity's suffix")?)
            }
            _ => return Err("unable to parse quantity's suffix"),
        };
        // The digits as one integer, scaled to billionths (a fraction of one rounds up to one).
        let mut mantissa: i128 = 0;
        for digit in whole.bytes().chain(fraction.bytes()) {
            mantissa = mantissa.saturating_mul(10).saturating_add(i128::from(digit - b'0'));
        }
        let exponent = i64::from(decimal_exponent) - fraction.len() as i64 + 9;
        let nanos = if mantissa == 0 {
            0
        } else if exponent >= 0 {
            let scale = u32::try_from(exponent).ok().and_then(|e| 10i128.checked_pow(e)).unwrap_or(i128::MAX);
            mantissa.saturating_mul(scale).saturating_mul(1i128 << binary_shift)
        } else {
            let scaled = mantissa.saturating_mul(1i128 << binary_shift);
            match u32::try_from(-exponent).ok().and_then(|e| 10i128.checked_pow(e)) {
                Some(divisor) => scaled / divisor + i128::from(scaled % divisor != 0),
                None => 1,
            }
        };
        Ok(Self(if negative { -nanos } else { nanos }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: Value) -> Object {
        Object::from_value(value).unwrap()
    }

    #[test]
    fn quantities_parse_as_kube_parses_them() {
        let nanos = |text: &str| Quantity::parse(text).map(|q| q.0);
        assert_eq!(nanos("1"), Ok(1_000_000_000));
        assert_eq!(nanos("1000m"), nanos("1"));
        assert_eq!(nanos("0.5"), nanos("500m"));
        assert_eq!(nanos("1Ki"), Ok(1024 * 1_000_000_000));
        assert_eq!(nanos("1.5Gi"), Ok(1_610_612_736 * 1_000_000_000));
        assert_eq!(nanos("2e3"), nanos("2k"));
        assert_eq!(nanos("1E-3"), nanos("1m"));
        assert_eq!(nanos("+1"), nanos("1"));
        assert_eq!(nanos("-1m"), Ok(-1_000_000));
        assert_eq!(nanos("1."), nanos("1"));
        assert_eq!(nanos(".5"), nanos("500m"));
        assert_eq!(nanos("0"), Ok(0));
        assert_eq!(nanos("1n"), Ok(1));
        // Less than a billionth rounds up to one, as kube's RoundUp does.
        assert_eq!(nanos("0.1n"), Ok(1));
        assert_eq!(nanos("1e-100"), Ok(1));
        // Past 128 bits: saturated, no panic.
        assert_eq!(nanos("1e100"), Ok(i128::MAX));
        assert_eq!(nanos("99999999999999999999999999999999999999999999Ei"), Ok(i128::MAX));
        for bad in ["", "abc", "1.5.5", "1 Gi", "1KiB", "1Gi5x"] {
            assert_eq!(nanos(bad), Err(FORMAT_WRONG), "{bad:?}");
        }
        for bad in ["1e", "1mi", "--1", "1ee5"] {
            assert_eq!(nanos(bad), Err("unable to parse quantity's suffix"), "{bad:?}");
        }
        assert_eq!(Quantity::from_json(&json!(2)), Quantity::parse("2"));
        assert_eq!(Quantity::from_json(&json!(0.25)), Quantity::parse("250m"));
        assert_eq!(Quantity::from_json(&json!(true)), Err(FORMAT_WRONG));
    }

    #[test]
    fn the_qos_class_is_kubes() {
        let with = |containers: Value| qos_class(&pod(json!({"metadata": {"name": "p"}, "spec": {"containers": containers}})));
        assert_eq!(with(json!([{"name": "a"}])), "BestEffort");
        assert_eq!(with(json!([{"name": "a", "resources": {"requests": {"cpu": "0"}}}])), "BestEffort", "zero is no request");
        assert_eq!(with(json!([{"name": "a", "resources": {"requests": {"ephemeral-storage": "1Gi"}}}])), "BestEffort", "only cpu and memory count");
        assert_eq!(with(json!([{"name": "a", "resources": {"requests": {"cpu": "100m"}}}])), "Burstable");
        let both = json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1000m", "memory": "1024Mi"}});
        assert_eq!(with(json!([{"name": "a", "resources": both}])), "Guaranteed", "equal quantities written differently");
        let unequal = json!({"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}});
        assert_eq!(with(json!([{"name": "a", "resources": unequal}])), "Burstable");
        let cpu_only = json!({"requests": {"cpu": "1"}, "limits": {"cpu": "1"}});
        assert_eq!(with(json!([{"name": "a", "resources": cpu_only}])), "Burstable", "every container must limit both");
        assert_eq!(with(json!([{"name": "a", "resources": both}, {"name": "b"}])), "Burstable");
        // Init containers count too.
        let mixed = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "resources": both}], "initContainers": [{"name": "i"}]}}));
        assert_eq!(qos_class(&mixed), "Burstable");
    }

    #[test]
    fn limits_default_requests_and_bad_quantities_are_refused() {
        let mut p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}}]}}));
        decode_and_default(&mut p).unwrap();
        assert_eq!(p.value()["spec"]["containers"][0]["resources"]["requests"], json!({"cpu": "500m", "memory": "1Gi"}));
        let mut only_limits = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}}));
        decode_and_default(&mut only_limits).unwrap();
        assert_eq!(qos_class(&only_limits), "Guaranteed");

        let mut bad = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "lots"}}}]}}));
        let err = decode_and_default(&mut bad).unwrap_err();
        assert_eq!(err.code(), 400);
        assert_eq!(
            err.to_string(),
            "Pod in version \"v1\" cannot be handled as a Pod: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
    }

    #[test]
    fn the_service_account_is_defaulted_and_must_exist() {
        let mut p = pod(json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": [{"name": "a"}]}}));
        assert_eq!(service_account_to_admit(&mut p).unwrap().as_deref(), Some("default"));
        assert_eq!((p.str_at("spec.serviceAccountName"), p.str_at("spec.serviceAccount")), (Some("default"), Some("default")));
        // The deprecated field is an alias; the new one wins.
        let mut alias = pod(json!({"metadata": {"name": "p"}, "spec": {"serviceAccount": "old"}}));
        assert_eq!(service_account_to_admit(&mut alias).unwrap().as_deref(), Some("old"));
        let mut both = pod(json!({"metadata": {"name": "p"}, "spec": {"serviceAccount": "old", "serviceAccountName": "new"}}));
        assert_eq!(service_account_to_admit(&mut both).unwrap().as_deref(), Some("new"));
        assert_eq!(both.str_at("spec.serviceAccount"), Some("new"));

        let mut missing = pod(json!({"metadata": {"generateName": "web-", "namespace": "ns"}, "spec": {"serviceAccountName": "bot"}}));
        let err = admit_service_account(&mut missing, "bot", None).unwrap_err();
        assert_eq!(err.code(), 403);
        assert_eq!(err.to_string(), r#"pods "web-" is forbidden: error looking up service account ns/bot: serviceaccount "bot" not found"#);

        let sa = pod(json!({"metadata": {"name": "bot"}, "imagePullSecrets": [{"name": "registry"}]}));
        admit_service_account(&mut p, "default", Some(&sa)).unwrap();
        assert_eq!(p.value()["spec"]["imagePullSecrets"], json!([{"name": "registry"}]));
        let mut own = pod(json!({"metadata": {"name": "p"}, "spec": {"imagePullSecrets": [{"name": "mine"}]}}));
        admit_service_account(&mut own, "default", Some(&sa)).unwrap();
        assert_eq!(own.value()["spec"]["imagePullSecrets"], json!([{"name": "mine"}]));
    }

    #[test]
    fn mirror_pods_run_as_no_service_account() {
        let mirror = |spec: Value| pod(json!({"metadata": {"name": "m", "annotations": {MIRROR_ANNOTATION: "x"}}, "spec": spec}));
        let mut plain = mirror(json!({"containers": [{"name": "a"}]}));
        assert_eq!(service_account_to_admit(&mut plain).unwrap(), None);
        assert_eq!(plain.str_at("spec.serviceAccountName"), None, "not defaulted");
        let refused = |spec: Value| service_account_to_admit(&mut mirror(spec)).unwrap_err().to_string();
        assert_eq!(refused(json!({"serviceAccountName": "bot"})), r#"pods "m" is forbidden: a mirror pod may not reference service accounts"#);
        assert_eq!(refused(json!({"volumes": [{"name": "s", "secret": {"secretName": "s"}}]})), r#"pods "m" is forbidden: a mirror pod may not reference secrets"#);
        assert_eq!(
            refused(json!({"volumes": [{"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}]})),
            r#"pods "m" is forbidden: a mirror pod may not use ServiceAccountToken volume projections"#
        );
    }

    #[test]
    fn a_new_pod_is_pending_and_a_gated_one_says_why() {
        let now = Timestamp(1_800_000_000);
        let plain = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}}));
        assert_eq!(initial_status(&plain, now), json!({"phase": "Pending", "qosClass": "BestEffort"}));
        let gated = pod(json!({"metadata": {"name": "p"}, "spec": {"schedulingGates": [{"name": "g"}]}}));
        let status = initial_status(&gated, now);
        assert_eq!(status["conditions"][0]["reason"], "SchedulingGated");
        assert_eq!(status["conditions"][0]["lastTransitionTime"], now.to_string());
    }
}
