//! A Pod as kube-apiserver creates and updates it, beyond storing it: the decoding of its
//! resource quantities and the API's defaults (a container's limits are its requests where it
//! names none; restartPolicy, pull policies, ports, probes, volumes: [`decode_and_default`]), the
//! ServiceAccount admission plugin (a pod runs as a ServiceAccount that exists, `default` unless
//! it names one, and mounts its token; a kubelet's mirror pod runs as none),
//! `PodStrategy.PrepareForCreate` (a new pod is Pending, with its QoS class), `ValidatePodCreate`
//! (a valid name and spec; the spec's rules are [`crate::pod_spec`]'s, which says which of kube's
//! it checks), and `ValidatePodUpdate` (the updated spec valid too, and all but fixed).
//!
//! Left out: the `kube-root-ca.crt` ConfigMap the token volume projects (a kind tokenwarden
//! does not keep; `tokenwarden project` writes that volume's layout itself), PriorityClasses
//! other than kube's two built-in ones, an update's pod-specific annotation rules (the mirror
//! pod's annotation may not be added, removed or changed), and the parts of a spec
//! [`crate::pod_spec`] lists as not checked. Fields whose feature gates are off in 1.32 are
//! dropped as kube drops them ([`drop_disabled_fields`]).

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value, json};

use crate::legacy_tokens::pod_secret_names;
use crate::object::{items_of, text_of};
use crate::quantity::Quantity;
use crate::{Error, FieldError, Object, Timestamp, names, pod_spec};

mod defaults;

pub use defaults::decode_and_default;

/// The annotation of a kubelet's mirror pod (a static pod it runs on its own).
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

pub(crate) const CONTAINER_LISTS: [&str; 2] = ["containers", "initContainers"];
/// The resources a pod's QoS class is computed from.
const QOS_RESOURCES: [&str; 2] = ["cpu", "memory"];

fn containers_mut<'a>(spec: &'a mut Map<String, Value>, list: &str) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    spec.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten().filter_map(Value::as_object_mut)
}

fn containers<'a>(spec: Option<&'a Map<String, Value>>, list: &str) -> impl Iterator<Item = &'a Map<String, Value>> {
    spec.and_then(|s| s.get(list)).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_object)
}

/// The ServiceAccount admission plugin's first half, on a pod [`decode_and_default`] has read
/// (the deprecated `serviceAccount` folded into `serviceAccountName`): the ServiceAccount the
/// pod runs as, `default` unless it names one, written to both fields; `None` for a mirror pod,
/// which may reference no ServiceAccount, Secret or token projection.
pub fn service_account_to_admit(pod: &mut Object) -> Result<Option<String>, Error> {
    let named = pod.str_at("spec.serviceAccountName").filter(|n| !n.is_empty()).map(str::to_owned);
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
/// must exist; its token is mounted into every container ([`mount_service_account_token`],
/// unless the pod or else the ServiceAccount turns `automountServiceAccountToken` off); a pod
/// that names no image pull secrets gets its ServiceAccount's; and a ServiceAccount that
/// enforces its mountable secrets lets the pod use no others. `generate_name` makes a name of
/// a prefix, as a generateName's.
pub fn admit_service_account(pod: &mut Object, name: &str, service_account: Option<&Object>, generate_name: impl FnOnce(&str) -> String) -> Result<(), Error> {
    let Some(service_account) = service_account else {
        let detail = format!("error looking up service account {}/{name}: serviceaccount \"{name}\" not found", pod.namespace());
        return Err(forbidden(pod, detail));
    };
    let automount = |object: &Object, path: &str| object.at(path).and_then(Value::as_bool);
    let mounts = automount(pod, "spec.automountServiceAccountToken").or_else(|| automount(service_account, "automountServiceAccountToken")).unwrap_or(true);
    if mounts && let Some(Value::Object(spec)) = pod.0.get_mut("spec") {
        mount_service_account_token(spec, generate_name);
    }
    let pulls = service_account.value().get("imagePullSecrets").and_then(Value::as_array).filter(|p| !p.is_empty());
    if let (Some(pulls), Some(Value::Object(spec))) = (pulls, pod.0.get_mut("spec")) {
        let named = spec.get("imagePullSecrets").and_then(Value::as_array).is_some_and(|p| !p.is_empty());
        if !named {
            let names: Vec<Value> = pulls.iter().map(|p| json!({"name": p.get("name").and_then(Value::as_str).unwrap_or_default()})).collect();
            spec.insert("imagePullSecrets".into(), Value::Array(names));
        }
    }
    if enforces_mountable_secrets(service_account) {
        limit_secret_references(pod, service_account)?;
    }
    Ok(())
}

/// Where the plugin mounts the token volume in each container.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The prefix of the token volume's name (a random suffix follows).
const TOKEN_VOLUME_PREFIX: &str = "kube-api-access-";

/// The plugin's `mountServiceAccountToken`: every container and init container that mounts
/// nothing at [`TOKEN_MOUNT_PATH`] mounts the token volume there, read-only; the volume (a
/// projected ServiceAccount token of 3607 s, kube's `WarnOnlyBoundTokenExpirationSeconds`, the
/// cluster's CA from the `kube-root-ca.crt` ConfigMap and the namespace) is added if a
/// container needs it, unless the pod has a volume of that prefix already, whose name is used.
fn mount_service_account_token(spec: &mut Map<String, Value>, generate_name: impl FnOnce(&str) -> String) {
    let volumes = spec.get("volumes").and_then(Value::as_array);
    let existing = volumes.into_iter().flatten().find_map(|v| v.get("name").and_then(Value::as_str).filter(|n| n.starts_with(TOKEN_VOLUME_PREFIX)));
    let has_volume = existing.is_some();
    let volume_name = existing.map_or_else(|| generate_name(TOKEN_VOLUME_PREFIX), str::to_owned);
    let mount = json!({"name": volume_name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut needs_volume = false;
    for list in ["initContainers", "containers"] {
        for container in containers_mut(spec, list) {
            let mounts = container.entry("volumeMounts").or_insert(Value::Null);
            if mounts.is_null() {
                *mounts = json!([]);
            }
            let Value::Array(mounts) = mounts else { continue };
            if !mounts.iter().any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH)) {
                mounts.push(mount.clone());
                needs_volume = true;
            }
        }
    }
    if needs_volume && !has_volume {
        let volume = json!({"name": volume_name, "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]}});
        match spec.entry("volumes").or_insert(Value::Null) {
            Value::Array(volumes) => volumes.push(volume),
            absent @ Value::Null => *absent = json!([volume]),
            // Not a list: validation refuses the pod.
            _ => {}
        }
    }
}

/// The annotation by which a ServiceAccount lets its pods use only the Secrets it lists.
pub const ENFORCE_MOUNTABLE_SECRETS_ANNOTATION: &str = "kubernetes.io/enforce-mountable-secrets";

/// Go's `strconv.ParseBool` of the annotation: true only for what it reads as true.
fn enforces_mountable_secrets(service_account: &Object) -> bool {
    matches!(service_account.annotation(ENFORCE_MOUNTABLE_SECRETS_ANNOTATION), Some("1" | "t" | "T" | "TRUE" | "true" | "True"))
}

/// The plugin's `limitSecretReferences`: secret volumes and the containers' `env` and `envFrom`
/// may name only the ServiceAccount's `secrets`, and image pull secrets only its
/// `imagePullSecrets`.
fn limit_secret_references(pod: &Object, service_account: &Object) -> Result<(), Error> {
    let named = |key: &str| -> HashSet<&str> { items_of(service_account.value().get(key)).iter().map(|r| text_of(r.get("name"))).collect() };
    let (mountable, pullable, account) = (named("secrets"), named("imagePullSecrets"), service_account.name());
    let refuse = |detail: String| Err(forbidden(pod, detail));
    let spec = pod.value().get("spec").and_then(Value::as_object);
    let not_listed = |secret: &str| format!("secret.secretName=\"{secret}\" is not allowed because service account {account} does not reference that secret");
    for volume in items_of(spec.and_then(|s| s.get("volumes"))) {
        if let Some(secret) = volume.get("secret").filter(|s| s.is_object()).map(|s| text_of(s.get("secretName")))
            && !mountable.contains(secret)
        {
            return refuse(format!("volume with {}", not_listed(secret)));
        }
    }
    for (list, what) in [("initContainers", "init container"), ("containers", "container")] {
        for container in containers(spec, list) {
            let name = text_of(container.get("name"));
            for env in items_of(container.get("env")) {
                let secret = env.get("valueFrom").and_then(|v| v.get("secretKeyRef")).filter(|r| r.is_object()).map(|r| text_of(r.get("name")));
                if let Some(secret) = secret.filter(|s| !mountable.contains(s)) {
                    return refuse(format!("{what} {name} with envVar {} referencing {}", text_of(env.get("name")), not_listed(secret)));
                }
            }
            for env_from in items_of(container.get("envFrom")) {
                let secret = env_from.get("secretRef").filter(|r| r.is_object()).map(|r| text_of(r.get("name")));
                if let Some(secret) = secret.filter(|s| !mountable.contains(s)) {
                    return refuse(format!("{what} {name} with envFrom referencing {}", not_listed(secret)));
                }
            }
        }
    }
    for (i, reference) in items_of(spec.and_then(|s| s.get("imagePullSecrets"))).iter().enumerate() {
        let secret = text_of(reference.get("name"));
        if !pullable.contains(secret) {
            return refuse(format!("imagePullSecrets[{i}].name=\"{secret}\" is not allowed because service account {account} does not reference that imagePullSecret"));
        }
    }
    Ok(())
}

/// kube's two built-in PriorityClasses (no other kind of PriorityClass is kept here).
const PRIORITY_CLASSES: [(&str, i64); 2] = [("system-node-critical", 2_000_001_000), ("system-cluster-critical", 2_000_000_000)];
const PREEMPT_LOWER_PRIORITY: &str = "PreemptLowerPriority";

/// The scheduling admission plugins kube runs after the ServiceAccount's, on `current`'s
/// update or (without it) a create:
/// - Priority: on create, the priority of the pod's PriorityClass (0 without one, as in a
///   cluster with no global default; the two built-in classes; any other is kube's 403 "no
///   PriorityClass with name x was found"), which a pod may not contradict; on update, the
///   stored priority where none is sent.
/// - DefaultTolerationSeconds: a pod that does not tolerate the not-ready and unreachable
///   NoExecute taints tolerates them for 300 s.
pub fn admit_scheduling(pod: &mut Object, current: Option<&Object>) -> Result<(), Error> {
    let Some(Value::Object(spec)) = pod.0.get("spec") else {
        return Ok(());
    };
    let mut spec = spec.clone();
    match current.and_then(|c| c.value().get("spec")) {
        Some(old) => {
            for key in ["priority", "preemptionPolicy"] {
                if spec.get(key).is_none_or(Value::is_null)
                    && let Some(kept) = old.get(key).filter(|v| !v.is_null())
                {
                    spec.insert(key.into(), kept.clone());
                }
            }
        }
        None => {
            let class = spec.get("priorityClassName").and_then(Value::as_str).unwrap_or_default();
            let priority = match PRIORITY_CLASSES.iter().find(|(name, _)| *name == class) {
                Some((_, value)) => *value,
                None if class.is_empty() => 0,
                None => return Err(forbidden(pod, format!("no PriorityClass with name {class} was found"))),
            };
            if let Some(sent) = spec.get("priority").filter(|v| !v.is_null())
                && sent.as_i64() != Some(priority)
            {
                let detail = format!("the integer value of priority ({sent}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name");
                return Err(forbidden(pod, detail));
            }
            if let Some(sent) = spec.get("preemptionPolicy").and_then(Value::as_str).filter(|p| *p != PREEMPT_LOWER_PRIORITY) {
                let detail = format!("the string value of PreemptionPolicy ({sent}) must not be provided in pod spec; priority admission controller computed {PREEMPT_LOWER_PRIORITY} from the given PriorityClass name");
                return Err(forbidden(pod, detail));
            }
            spec.insert("priority".into(), priority.into());
            spec.insert("preemptionPolicy".into(), PREEMPT_LOWER_PRIORITY.into());
        }
    }
    let tolerations = spec.get("tolerations").and_then(Value::as_array).cloned().unwrap_or_default();
    let tolerates = |taint: &str| {
        tolerations.iter().any(|t| {
            let key = t.get("key").and_then(Value::as_str).unwrap_or_default();
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or_default();
            (key == taint || key.is_empty()) && (effect == "NoExecute" || effect.is_empty())
        })
    };
    let missing: Vec<Value> = ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"]
        .into_iter()
        .filter(|taint| !tolerates(taint))
        .map(|taint| json!({"key": taint, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}))
        .collect();
    if !missing.is_empty() {
        spec.insert("tolerations".into(), Value::Array(tolerations.into_iter().chain(missing).collect()));
    }
    pod.0.insert("spec".into(), Value::Object(spec));
    Ok(())
}

/// kube's `dropDisabledPodFields`, the parts whose feature gates are off by default in 1.32,
/// each unless the stored pod being updated already uses it: image volumes (ImageVolume,
/// alpha) with the containers' mounts of them, and pod-level resources (PodLevelResources,
/// alpha). The pod is then admitted without them.
pub fn drop_disabled_fields(pod: &mut Object, current: Option<&Object>) {
    drop_image_volumes(pod, current);
    let pod_level_resources = |pod: &Object| {
        ["spec.resources.requests", "spec.resources.limits"].iter().any(|path| pod.at(path).and_then(Value::as_object).is_some_and(|list| !list.is_empty()))
    };
    if !current.is_some_and(pod_level_resources)
        && let Some(Value::Object(spec)) = pod.0.get_mut("spec")
    {
        spec.remove("resources");
    }
}

fn drop_image_volumes(pod: &mut Object, current: Option<&Object>) {
    let image_volume = |volume: &Value| volume.get("image").is_some_and(|image| !image.is_null());
    let has_image_volumes = |pod: &Object| pod.at("spec.volumes").and_then(Value::as_array).is_some_and(|volumes| volumes.iter().any(image_volume));
    if current.is_some_and(has_image_volumes) || !has_image_volumes(pod) {
        return;
    }
    let Some(Value::Object(spec)) = pod.0.get_mut("spec") else { return };
    let mut dropped = HashSet::new();
    if let Some(Value::Array(volumes)) = spec.get_mut("volumes") {
        volumes.retain(|volume| {
            let keep = !image_volume(volume);
            if !keep {
                dropped.insert(volume.get("name").and_then(Value::as_str).unwrap_or_default().to_owned());
            }
            keep
        });
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for container in containers_mut(spec, list) {
            if let Some(Value::Array(mounts)) = container.get_mut("volumeMounts") {
                mounts.retain(|mount| !dropped.contains(mount.get("name").and_then(Value::as_str).unwrap_or_default()));
            }
        }
    }
}

/// admission.NewForbidden: the pod named as asked (its name, else its generateName).
fn forbidden(pod: &Object, detail: String) -> Error {
    Error::Forbidden { resource: "pods".into(), name: pod.name_as_asked().to_owned(), detail, causes: Vec::new() }
}

/// kube's `ValidatePodCreate`, the part checked here, every error in one 422 in kube's order:
/// the name (`ValidateObjectMeta`), the spec ([`pod_spec::validate`]), then what only a create
/// refuses: ephemeral containers, added to a pod that runs (its `ephemeralcontainers`
/// subresource), never created with it, and a node for a pod still held by scheduling gates.
pub fn validate_create(pod: &Object) -> Result<(), Error> {
    let mut causes = names::new_name_errors(&crate::Resource::PODS, pod);
    causes.extend(pod_spec::validate(pod));
    if pod.at("spec.ephemeralContainers").and_then(Value::as_array).is_some_and(|c| !c.is_empty()) {
        causes.push(FieldError::forbidden("spec.ephemeralContainers", "cannot be set on create"));
    }
    let gated = pod.at("spec.schedulingGates").and_then(Value::as_array).is_some_and(|g| !g.is_empty());
    if gated && !pod.pod_node_name().is_empty() {
        causes.push(FieldError::forbidden("spec.nodeName", "cannot be set until all schedulingGates have been cleared"));
    }
    if causes.is_empty() {
        return Ok(());
    }
    Err(Error::Invalid { kind: "Pod".into(), group: String::new(), name: pod.name_as_asked().to_owned(), causes })
}

/// What `ValidatePodUpdate` lets an update of a pod change in its spec (kube's words).
const UPDATABLE_SPEC_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// kube's `ValidatePodUpdate` of the spec, on `updated` as decoded and defaulted: the updated
/// spec is valid ([`pod_spec::validate`], whose errors come first), a pod keeps its containers,
/// each with an image (which may change), and changes nothing else but its images, a shorter
/// activeDeadlineSeconds, added tolerations, removed scheduling gates, and a negative grace
/// period set to 1. The specs are compared as kube's `Semantic.DeepEqual` compares them. The
/// 422 names the fields that changed, where kube prints a go-cmp diff of its internal type.
pub fn check_spec_update(current: &Object, updated: &Object) -> Result<(), Error> {
    let invalid = |causes: Vec<FieldError>| Error::Invalid { kind: "Pod".into(), group: String::new(), name: current.name().to_owned(), causes };
    // The stored spec as its defaults make it now: a pod stored before a default existed has
    // not changed for lacking it. (A quantity stored before quantities were checked stays.)
    let mut old_pod = current.clone();
    let _ = decode_and_default(&mut old_pod);
    // A pod stored before its spec was validated keeps the errors it has (kube relaxes a
    // tightened rule for a pod that already breaks it): only new ones refuse an update, so
    // such a pod can still be labelled.
    let kept: HashSet<String> = pod_spec::validate(&old_pod).iter().map(ToString::to_string).collect();
    let mut causes = pod_spec::validate(updated);
    let add = |causes: &mut Vec<FieldError>, cause: FieldError| {
        if !kept.contains(&cause.to_string()) {
            causes.push(cause);
        }
    };
    causes.retain(|cause| !kept.contains(&cause.to_string()));
    let spec_of = |pod: &Object| -> Map<String, Value> {
        let mut spec = pod.value().get("spec").and_then(semantic).and_then(|s| s.as_object().cloned()).unwrap_or_default();
        // An alias kube's internal type does not keep (decoding folded it in).
        spec.remove("serviceAccount");
        spec
    };
    let (old, mut new) = (spec_of(&old_pod), spec_of(updated));
    // kube's `ValidateContainerUpdates`, containers then init containers: the same number of
    // each (else the update stops there), each with an image.
    for list in CONTAINER_LISTS {
        let old_containers = containers(Some(&old), list).collect::<Vec<_>>();
        if containers(Some(&new), list).count() != old_containers.len() {
            causes.push(FieldError::forbidden(&format!("spec.{list}"), "pod updates may not add or remove containers"));
            return Err(invalid(causes));
        }
        for (i, container) in containers(Some(&new), list).enumerate() {
            let image = text_of(container.get("image"));
            if image.is_empty() {
                add(&mut causes, FieldError::required(&format!("spec.{list}[{i}].image"), ""));
            }
            if let Some(cause) = pod_spec::image_whitespace(list, i, image) {
                add(&mut causes, cause);
            }
        }
        for (container, old_container) in containers_mut(&mut new, list).zip(old_containers) {
            copy_field(old_container, container, "image");
        }
    }
    let deadline = |spec: &Map<String, Value>| spec.get("activeDeadlineSeconds").and_then(Value::as_i64);
    let field = "spec.activeDeadlineSeconds";
    match (deadline(&new), deadline(&old)) {
        (Some(n), _) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            causes.push(FieldError::invalid(field, n, "must be between 0 and 2147483647, inclusive"));
            return Err(invalid(causes));
        }
        (Some(n), Some(o)) if o < n => {
            causes.push(FieldError::invalid(field, n, "must be less than or equal to previous value"));
            return Err(invalid(causes));
        }
        (None, Some(_)) => causes.push(FieldError::invalid(field, "\"null\"", "must not update from a positive integer to nil value")),
        _ => {}
    }
    let list_of = |spec: &Map<String, Value>, key: &str| spec.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
    let (old_tolerations, new_tolerations) = (list_of(&old, "tolerations"), list_of(&new, "tolerations"));
    let without_seconds = |t: &Value| {
        let mut t = t.clone();
        if let Value::Object(t) = &mut t {
            t.remove("tolerationSeconds");
        }
        t
    };
    if !old_tolerations.iter().all(|o| new_tolerations.iter().any(|n| without_seconds(n) == without_seconds(o))) {
        causes.push(FieldError::forbidden("spec.tolerations", "existing toleration can not be modified except its tolerationSeconds"));
    }
    let gate_name = |g: &Value| g.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
    let old_gates: Vec<String> = list_of(&old, "schedulingGates").iter().map(gate_name).collect();
    for (i, gate) in list_of(&new, "schedulingGates").iter().map(gate_name).enumerate() {
        if !old_gates.contains(&gate) {
            let detail = format!("only deletion is allowed, but found new scheduling gate '{gate}'");
            causes.push(FieldError::forbidden(&format!("spec.schedulingGates[{i}].name"), &detail));
        }
    }
    for key in ["activeDeadlineSeconds", "schedulingGates", "tolerations"] {
        copy_field(&old, &mut new, key);
    }
    let grace = |spec: &Map<String, Value>| spec.get("terminationGracePeriodSeconds").and_then(Value::as_i64);
    if grace(&old).is_some_and(|g| g < 0) && grace(&new) == Some(1) {
        copy_field(&old, &mut new, "terminationGracePeriodSeconds");
    }
    if new != old {
        let changed: Vec<String> = old
            .keys()
            .chain(new.keys().filter(|k| !old.contains_key(*k)))
            .filter(|k| old.get(*k) != new.get(*k))
            .map(|k| format!("spec.{k}: {} -> {}", shown(old.get(k)), shown(new.get(k))))
            .collect();
        let detail = format!("pod updates may not change fields other than {UPDATABLE_SPEC_FIELDS}\n{}", changed.join("\n"));
        causes.push(FieldError::forbidden("spec", &detail));
    }
    if causes.is_empty() { Ok(()) } else { Err(invalid(causes)) }
}

/// Fields Go leaves out when false (plain `bool`s with `omitempty`): absent and false are equal.
const FALSE_OMITTED: [&str; 6] = ["hostNetwork", "hostPID", "hostIPC", "stdin", "stdinOnce", "tty"];

/// `value` as kube's `Semantic.DeepEqual` sees it: null, empty objects and empty lists are
/// absent (Go's nil and empty slices and maps are equal, and Go clients leave them out), so are
/// the booleans and host ports Go leaves out when zero, and quantities are compared by amount
/// (`0.5` and `500m` are one). `None` for a value that is absent to it.
fn semantic(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Array(items) if items.is_empty() => None,
        Value::Array(items) => Some(Value::Array(items.iter().map(|v| semantic(v).unwrap_or(Value::Null)).collect())),
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, value) in map {
                let omitted = (FALSE_OMITTED.contains(&key.as_str()) && value == &Value::Bool(false)) || (key == "hostPort" && value.as_i64() == Some(0));
                let value = match (key.as_str(), value) {
                    ("requests" | "limits" | "overhead", Value::Object(quantities)) => {
                        Some(Value::Object(quantities.iter().map(|(k, q)| (k.clone(), by_amount(q))).collect()))
                    }
                    ("divisor" | "sizeLimit", quantity) => Some(by_amount(quantity)),
                    _ => semantic(value),
                };
                if let Some(value) = value.filter(|v| !omitted && !matches!(v, Value::Object(m) if m.is_empty())) {
                    out.insert(key.clone(), value);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        other => Some(other.clone()),
    }
}

/// A quantity as its amount, for comparing; anything else as it is.
fn by_amount(quantity: &Value) -> Value {
    Quantity::from_json(quantity).map_or_else(|_| quantity.clone(), |q| Value::String(format!("{}n", q.0)))
}

/// Makes `to[key]` what `from[key]` is, absent included.
fn copy_field(from: &Map<String, Value>, to: &mut Map<String, Value>, key: &str) {
    match from.get(key) {
        Some(value) => to.insert(key.to_owned(), value.clone()),
        None => to.remove(key),
    };
}

fn shown(value: Option<&Value>) -> String {
    value.map_or_else(|| "<unset>".to_owned(), Value::to_string)
}

/// kube's `podStatusStrategy.PrepareForUpdate` and `ValidatePodStatusUpdate` of the QoS class:
/// a status written without one keeps the pod's, and none may change it.
pub fn check_status_update(current: &Object, updated: &mut Object) -> Result<(), Error> {
    let Some(class) = current.str_at("status.qosClass").filter(|c| !c.is_empty()) else {
        return Ok(());
    };
    match updated.str_at("status.qosClass").filter(|c| !c.is_empty()) {
        None => {
            let status = updated.0.entry("status").or_insert_with(|| json!({}));
            if !status.is_object() {
                *status = json!({});
            }
            if let Value::Object(status) = status {
                status.insert("qosClass".into(), class.into());
            }
            Ok(())
        }
        Some(sent) if sent == class => Ok(()),
        Some(sent) => Err(Error::Invalid {
            kind: "Pod".into(),
            group: String::new(),
            name: current.name().to_owned(),
            causes: vec![FieldError::invalid("status.qosClass", crate::error::go_quote(sent), "field is immutable")],
        }),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    use super::defaults::image_pull_policy;

    fn pod(value: Value) -> Object {
        Object::from_value(value).unwrap()
    }

    /// A name made of a prefix, as the store's generator makes them (its suffix is random).
    fn generated(prefix: &str) -> String {
        format!("{prefix}x7k2p")
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
        // Kept as kube keeps them: rounded up to a thousandth, in canonical form.
        let mut odd = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "0.5", "memory": "1.5Gi"}, "requests": {"cpu": 0.0001}}}],
                                                                     "initContainers": [{"name": "i", "resources": {"requests": {"memory": "1024Mi"}}}]}}));
        decode_and_default(&mut odd).unwrap();
        assert_eq!(odd.value()["spec"]["containers"][0]["resources"], json!({"limits": {"cpu": "500m", "memory": "1536Mi"}, "requests": {"cpu": "1m", "memory": "1536Mi"}}));
        assert_eq!(odd.value()["spec"]["initContainers"][0]["resources"]["requests"], json!({"memory": "1Gi"}));

        let mut bad = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "lots"}}}]}}));
        let err = decode_and_default(&mut bad).unwrap_err();
        assert_eq!(err.code(), 400);
        assert_eq!(
            err.to_string(),
            "Pod in version \"v1\" cannot be handled as a Pod: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
    }

    #[test]
    fn quantities_beyond_the_containers_resources_are_decoded_too() {
        let field = |divisor: Value| json!({"resource": "limits.cpu", "divisor": divisor});
        let spec = json!({
            "containers": [{"name": "a", "env": [{"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                                                 {"name": "MEM", "valueFrom": {"resourceFieldRef": field(json!("1024Mi"))}}]}],
            "overhead": {"cpu": "0.0001", "memory": "1.5Gi"},
            "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "1024Mi"}},
                        {"name": "unlimited", "emptyDir": {"sizeLimit": null}},
                        {"name": "info", "downwardAPI": {"items": [{"path": "cpu", "resourceFieldRef": field(json!("1000m"))}]}},
                        {"name": "all", "projected": {"sources": [{"downwardAPI": {"items": [{"path": "cpu", "resourceFieldRef": field(json!(0.5))}]}}]}},
                        {"name": "claim", "ephemeral": {"volumeClaimTemplate": {"spec": {"resources": {"requests": {"storage": "0.5Gi"}, "limits": {"storage": "1e3"}}}}}}]});
        let mut p = pod(json!({"metadata": {"name": "p"}, "spec": spec}));
        decode_and_default(&mut p).unwrap();
        let spec = &p.value()["spec"];
        // A resource list is rounded up to a thousandth; any other quantity only canonical.
        assert_eq!(spec["overhead"], json!({"cpu": "1m", "memory": "1536Mi"}));
        assert_eq!(spec["containers"][0]["env"][0]["valueFrom"]["resourceFieldRef"], json!({"resource": "limits.cpu", "divisor": "0"}), "Go writes a zero divisor");
        assert_eq!(spec["containers"][0]["env"][1]["valueFrom"]["resourceFieldRef"]["divisor"], "1Gi");
        let volumes = &spec["volumes"];
        assert_eq!(volumes[0]["emptyDir"], json!({"sizeLimit": "1Gi"}));
        assert_eq!(volumes[1]["emptyDir"], json!({"sizeLimit": null}), "no limit stays none");
        assert_eq!(volumes[2]["downwardAPI"]["items"][0]["resourceFieldRef"]["divisor"], "1");
        assert_eq!(volumes[3]["projected"]["sources"][0]["downwardAPI"]["items"][0]["resourceFieldRef"]["divisor"], "500m");
        assert_eq!(volumes[4]["ephemeral"]["volumeClaimTemplate"]["spec"]["resources"], json!({"requests": {"storage": "512Mi"}, "limits": {"storage": "1e3"}}));

        for bad in [
            json!({"containers": [{"name": "a"}], "volumes": [{"name": "v", "emptyDir": {"sizeLimit": "lots"}}]}),
            json!({"containers": [{"name": "a"}], "overhead": {"cpu": "lots"}}),
            json!({"containers": [{"name": "a", "env": [{"name": "E", "valueFrom": {"resourceFieldRef": field(json!("lots"))}}]}]}),
            json!({"containers": [{"name": "a"}], "volumes": [{"name": "v", "ephemeral": {"volumeClaimTemplate": {"spec": {"resources": {"requests": {"storage": true}}}}}}]}),
        ] {
            let mut p = pod(json!({"metadata": {"name": "p"}, "spec": bad}));
            let err = decode_and_default(&mut p).unwrap_err();
            assert_eq!(err.code(), 400, "{bad}");
            assert!(err.to_string().starts_with("Pod in version \"v1\" cannot be handled as a Pod: "), "{bad}: {err}");
        }
    }

    #[test]
    fn the_api_defaults_are_filled_in_where_empty() {
        let spec = json!({"restartPolicy": "Never", "terminationGracePeriodSeconds": 0, "hostNetwork": true,
                          "containers": [{"name": "a", "image": "busybox", "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP", "hostPort": 5353}]},
                                         {"name": "b", "image": "registry:5000/app:1.2", "imagePullPolicy": "Never"}],
                          "initContainers": [{"name": "i", "image": "app@sha256:abc", "terminationMessagePath": ""}]});
        let mut p = pod(json!({"metadata": {"name": "p"}, "spec": spec}));
        decode_and_default(&mut p).unwrap();
        let spec = &p.value()["spec"];
        // Set fields are kept, 0 included; empty ones get kube's defaults.
        assert_eq!((&spec["restartPolicy"], &spec["terminationGracePeriodSeconds"]), (&json!("Never"), &json!(0)));
        assert_eq!((&spec["dnsPolicy"], &spec["schedulerName"], &spec["securityContext"], &spec["enableServiceLinks"]),
                   (&json!("ClusterFirst"), &json!("default-scheduler"), &json!({}), &json!(true)));
        let a = &spec["containers"][0];
        assert_eq!((&a["imagePullPolicy"], &a["terminationMessagePath"], &a["terminationMessagePolicy"]),
                   (&json!("Always"), &json!("/dev/termination-log"), &json!("File")));
        assert_eq!(a["ports"], json!([{"containerPort": 80, "protocol": "TCP", "hostPort": 80}, {"containerPort": 53, "protocol": "UDP", "hostPort": 5353}]));
        assert_eq!(spec["containers"][1]["imagePullPolicy"], "Never");
        assert_eq!(spec["initContainers"][0]["imagePullPolicy"], "IfNotPresent", "a digest and no tag");
        assert_eq!(spec["initContainers"][0]["terminationMessagePath"], "/dev/termination-log", "an empty string is unset");
        for (image, policy) in [("busybox", "Always"), ("busybox:latest", "Always"), ("busybox:1.36", "IfNotPresent"), ("host:5000/busybox", "Always"), ("", "IfNotPresent")] {
            assert_eq!(image_pull_policy(image), policy, "{image:?}");
        }
    }

    /// kube's `SetObjectDefaults_Pod` below the containers: probes, lifecycle handlers, env
    /// field references and volumes; what was sent is kept, 0 and "" where kube keeps them.
    #[test]
    fn probes_handlers_and_volumes_get_kubes_defaults() {
        let probe = json!({"httpGet": {"port": 8080}, "periodSeconds": 5, "timeoutSeconds": 0});
        let container = json!({"name": "a", "image": "x", "livenessProbe": probe, "readinessProbe": {"grpc": {"port": 9000}},
                               "startupProbe": {"exec": {"command": ["true"]}, "failureThreshold": 30},
                               "lifecycle": {"preStop": {"httpGet": {"port": 80, "path": "/stop", "scheme": "HTTPS"}}, "postStart": {"exec": {"command": ["x"]}}},
                               "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}, {"name": "PLAIN", "value": "1"}]});
        let volumes = json!([
            {"name": "scratch"},
            {"name": "null-source", "emptyDir": null},
            {"name": "creds", "secret": {"secretName": "s"}},
            {"name": "conf", "configMap": {"name": "c", "defaultMode": 0o600}},
            {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
            {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "audience": "api"}},
                                                        {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace", "apiVersion": "v1"}}]}}]}},
            {"name": "host", "hostPath": {"path": "/var/log"}},
            {"name": "disk", "azureDisk": {"diskName": "d", "diskURI": "u", "fsType": ""}},
            {"name": "block", "rbd": {"monitors": ["m"], "image": "i"}},
            {"name": "model", "image": {"reference": "registry.example/model:1"}},
        ]);
        let mut p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [container], "initContainers": [{"name": "i", "image": "x", "livenessProbe": {}}], "volumes": volumes}}));
        decode_and_default(&mut p).unwrap();
        let spec = &p.value()["spec"];
        let a = &spec["containers"][0];
        assert_eq!(
            a["livenessProbe"],
            json!({"httpGet": {"port": 8080, "path": "/", "scheme": "HTTP"}, "periodSeconds": 5, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(a["readinessProbe"], json!({"grpc": {"port": 9000, "service": ""}, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}));
        assert_eq!(a["startupProbe"]["failureThreshold"], 30);
        assert_eq!(a["lifecycle"], json!({"preStop": {"httpGet": {"port": 80, "path": "/stop", "scheme": "HTTPS"}}, "postStart": {"exec": {"command": ["x"]}}}));
        assert_eq!(a["env"], json!([{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName", "apiVersion": "v1"}}}, {"name": "PLAIN", "value": "1"}]));
        assert_eq!(spec["initContainers"][0]["livenessProbe"], json!({"timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}));
        let v = &spec["volumes"];
        assert_eq!((&v[0], &v[1]), (&json!({"name": "scratch", "emptyDir": {}}), &json!({"name": "null-source", "emptyDir": {}})));
        assert_eq!(v[2]["secret"], json!({"secretName": "s", "defaultMode": 420}));
        assert_eq!(v[3]["configMap"], json!({"name": "c", "defaultMode": 384}));
        assert_eq!(v[4]["downwardAPI"], json!({"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels", "apiVersion": "v1"}}], "defaultMode": 420}));
        assert_eq!(
            v[5]["projected"],
            json!({"sources": [{"serviceAccountToken": {"path": "token", "audience": "api", "expirationSeconds": 3600}},
                               {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace", "apiVersion": "v1"}}]}}],
                   "defaultMode": 420})
        );
        assert_eq!(v[6]["hostPath"], json!({"path": "/var/log", "type": ""}));
        assert_eq!(v[7]["azureDisk"], json!({"diskName": "d", "diskURI": "u", "fsType": "", "cachingMode": "ReadWrite", "readOnly": false, "kind": "Shared"}));
        assert_eq!(v[8]["rbd"], json!({"monitors": ["m"], "image": "i", "pool": "rbd", "user": "admin", "keyring": "/etc/ceph/keyring"}));
        // An image volume names a source (dropped later: its gate is off in 1.32), so no emptyDir.
        assert_eq!(v[9], json!({"name": "model", "image": {"reference": "registry.example/model:1"}}));
    }

    #[test]
    fn the_service_account_is_defaulted_and_must_exist() {
        let mut p = pod(json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": [{"name": "a"}]}}));
        assert_eq!(service_account_to_admit(&mut p).unwrap().as_deref(), Some("default"));
        assert_eq!((p.str_at("spec.serviceAccountName"), p.str_at("spec.serviceAccount")), (Some("default"), Some("default")));
        // The deprecated field is an alias; the new one wins.
        let mut alias = pod(json!({"metadata": {"name": "p"}, "spec": {"serviceAccount": "old"}}));
        decode_and_default(&mut alias).unwrap();
        assert_eq!(service_account_to_admit(&mut alias).unwrap().as_deref(), Some("old"));
        let mut both = pod(json!({"metadata": {"name": "p"}, "spec": {"serviceAccount": "old", "serviceAccountName": "new"}}));
        decode_and_default(&mut both).unwrap();
        assert_eq!(service_account_to_admit(&mut both).unwrap().as_deref(), Some("new"));
        assert_eq!(both.str_at("spec.serviceAccount"), Some("new"));

        let mut missing = pod(json!({"metadata": {"generateName": "web-", "namespace": "ns"}, "spec": {"serviceAccountName": "bot"}}));
        let err = admit_service_account(&mut missing, "bot", None, generated).unwrap_err();
        assert_eq!(err.code(), 403);
        assert_eq!(err.to_string(), r#"pods "web-" is forbidden: error looking up service account ns/bot: serviceaccount "bot" not found"#);

        let sa = pod(json!({"metadata": {"name": "bot"}, "imagePullSecrets": [{"name": "registry"}]}));
        admit_service_account(&mut p, "default", Some(&sa), generated).unwrap();
        assert_eq!(p.value()["spec"]["imagePullSecrets"], json!([{"name": "registry"}]));
        let mut own = pod(json!({"metadata": {"name": "p"}, "spec": {"imagePullSecrets": [{"name": "mine"}]}}));
        admit_service_account(&mut own, "default", Some(&sa), generated).unwrap();
        assert_eq!(own.value()["spec"]["imagePullSecrets"], json!([{"name": "mine"}]));
    }

    /// kube 1.32's `dropImageVolumes`: with the ImageVolume gate off, image volumes and the
    /// mounts of them go, unless the pod being updated has some already.
    #[test]
    fn image_volumes_are_dropped_with_their_mounts() {
        let spec = json!({"volumes": [{"name": "model", "image": {"reference": "r"}}, {"name": "tmp", "emptyDir": {}}],
                          "initContainers": [{"name": "i", "volumeMounts": [{"name": "model", "mountPath": "/m"}]}],
                          "containers": [{"name": "a", "volumeMounts": [{"name": "model", "mountPath": "/m"}, {"name": "tmp", "mountPath": "/t"}]}]});
        let mut p = pod(json!({"metadata": {"name": "p"}, "spec": spec.clone()}));
        drop_disabled_fields(&mut p, None);
        assert_eq!(p.value()["spec"]["volumes"], json!([{"name": "tmp", "emptyDir": {}}]));
        assert_eq!(p.value()["spec"]["initContainers"][0]["volumeMounts"], json!([]));
        assert_eq!(p.value()["spec"]["containers"][0]["volumeMounts"], json!([{"name": "tmp", "mountPath": "/t"}]));
        let stored = pod(json!({"metadata": {"name": "p"}, "spec": spec.clone()}));
        let mut update = stored.clone();
        drop_disabled_fields(&mut update, Some(&stored));
        assert_eq!(update.value()["spec"], spec, "in use already: kept");
    }

    #[test]
    fn pod_level_resources_are_dropped_unless_already_in_use() {
        let spec = json!({"resources": {"limits": {"cpu": "1"}}, "containers": [{"name": "a"}]});
        let mut p = pod(json!({"metadata": {"name": "p"}, "spec": spec.clone()}));
        drop_disabled_fields(&mut p, None);
        assert_eq!(p.value()["spec"], json!({"containers": [{"name": "a"}]}));
        let stored = pod(json!({"metadata": {"name": "p"}, "spec": spec.clone()}));
        let mut update = stored.clone();
        drop_disabled_fields(&mut update, Some(&stored));
        assert_eq!(update.value()["spec"], spec, "in use already: kept");
        let empty = pod(json!({"metadata": {"name": "p"}, "spec": {"resources": {"limits": {}}, "containers": [{"name": "a"}]}}));
        let mut update = stored.clone();
        drop_disabled_fields(&mut update, Some(&empty));
        assert_eq!(update.value()["spec"], json!({"containers": [{"name": "a"}]}), "an empty list is not a use");
        // Decoded before they are dropped: a value that is no quantity is the decoder's 400.
        let mut bad = pod(json!({"metadata": {"name": "p"}, "spec": {"resources": {"requests": {"cpu": "lots"}}, "containers": [{"name": "a"}]}}));
        assert_eq!(decode_and_default(&mut bad).unwrap_err().code(), 400);
    }

    /// kube's ServiceAccount admission plugin mounts the token volume into every container
    /// that mounts nothing at its path, unless the pod, or else the ServiceAccount, says not to.
    #[test]
    fn the_service_account_token_is_mounted_into_every_container() {
        let admitted = |spec: Value, sa: Value| {
            let mut p = pod(json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": spec}));
            admit_service_account(&mut p, "default", Some(&pod(sa)), generated).unwrap();
            p.value()["spec"].clone()
        };
        let sa = json!({"metadata": {"name": "default"}});
        let mount = json!({"name": "kube-api-access-x7k2p", "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"});
        let spec = admitted(
            json!({"initContainers": [{"name": "init"}],
                   "containers": [{"name": "app", "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                                  {"name": "own", "volumeMounts": [{"name": "data", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]}],
                   "volumes": [{"name": "data", "emptyDir": {}}]}),
            sa.clone(),
        );
        assert_eq!(spec["initContainers"][0]["volumeMounts"], json!([mount]));
        assert_eq!(spec["containers"][0]["volumeMounts"], json!([{"name": "data", "mountPath": "/data"}, mount]));
        assert_eq!(spec["containers"][1]["volumeMounts"].as_array().map(Vec::len), Some(1), "a mount at the path is the container's own");
        assert_eq!(
            spec["volumes"][1],
            json!({"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}})
        );
        // A volume of that prefix is the token volume: its name is used, and none is added.
        let spec = admitted(json!({"containers": [{"name": "app"}], "volumes": [{"name": "kube-api-access-mine", "emptyDir": {}}]}), sa.clone());
        assert_eq!(spec["containers"][0]["volumeMounts"][0]["name"], "kube-api-access-mine");
        assert_eq!(spec["volumes"].as_array().map(Vec::len), Some(1));
        // Every container has its own mount there: no volume.
        let spec = admitted(json!({"containers": [{"name": "own", "volumeMounts": [{"name": "v", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]}]}), sa.clone());
        assert!(spec.get("volumes").is_none(), "{spec}");
        // The pod's word wins over the ServiceAccount's; without either, the token is mounted.
        let off = json!({"metadata": {"name": "default"}, "automountServiceAccountToken": false});
        assert!(admitted(json!({"containers": [{"name": "app"}]}), off.clone()).get("volumes").is_none());
        assert!(admitted(json!({"containers": [{"name": "app"}], "automountServiceAccountToken": true}), off).get("volumes").is_some());
        assert!(admitted(json!({"containers": [{"name": "app"}], "automountServiceAccountToken": false}), sa).get("volumes").is_none());
    }

    #[test]
    fn a_service_account_may_enforce_its_mountable_secrets() {
        let sa = |annotation: &str| {
            pod(json!({"metadata": {"name": "bot", "annotations": {ENFORCE_MOUNTABLE_SECRETS_ANNOTATION: annotation}},
                       "secrets": [{"name": "listed"}], "imagePullSecrets": [{"name": "registry"}]}))
        };
        let admitted = |spec: Value, annotation: &str| {
            let mut p = pod(json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": spec}));
            admit_service_account(&mut p, "bot", Some(&sa(annotation)), generated).map_err(|e| e.to_string())
        };
        let volume = |secret: &str| json!({"volumes": [{"name": "v", "secret": {"secretName": secret}}]});
        assert_eq!(admitted(volume("listed"), "true"), Ok(()));
        assert_eq!(
            admitted(volume("other"), "true"),
            Err(r#"pods "p" is forbidden: volume with secret.secretName="other" is not allowed because service account bot does not reference that secret"#.to_owned())
        );
        assert_eq!(admitted(volume("other"), "false"), Ok(()), "not enforced");
        assert_eq!(admitted(volume("other"), "yes"), Ok(()), "not a Go bool: not enforced");
        let env = json!({"containers": [{"name": "app", "env": [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "p"}}}]}]});
        assert_eq!(
            admitted(env, "1"),
            Err(r#"pods "p" is forbidden: container app with envVar PASSWORD referencing secret.secretName="db" is not allowed because service account bot does not reference that secret"#.to_owned())
        );
        let env_from = json!({"initContainers": [{"name": "init", "envFrom": [{"secretRef": {"name": "db"}}]}]});
        assert_eq!(
            admitted(env_from, "True"),
            Err(r#"pods "p" is forbidden: init container init with envFrom referencing secret.secretName="db" is not allowed because service account bot does not reference that secret"#.to_owned())
        );
        let pulls = json!({"imagePullSecrets": [{"name": "registry"}, {"name": "mine"}]});
        assert_eq!(
            admitted(pulls, "t"),
            Err(r#"pods "p" is forbidden: imagePullSecrets[1].name="mine" is not allowed because service account bot does not reference that imagePullSecret"#.to_owned())
        );
        assert_eq!(admitted(json!({}), "true"), Ok(()), "the ServiceAccount's own pull secrets, copied in, pass");
    }

    #[test]
    fn pods_get_their_priority_and_default_tolerations() {
        let admitted = |spec: Value| {
            let mut p = pod(json!({"metadata": {"name": "p"}, "spec": spec}));
            admit_scheduling(&mut p, None).map(|()| p.value()["spec"].clone()).map_err(|e| e.to_string())
        };
        let spec = admitted(json!({})).unwrap();
        assert_eq!((&spec["priority"], &spec["preemptionPolicy"]), (&json!(0), &json!("PreemptLowerPriority")));
        assert_eq!(
            spec["tolerations"],
            json!([{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                   {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}])
        );
        // A pod that tolerates everything gets none; one that tolerates one taint, the other.
        assert_eq!(admitted(json!({"tolerations": [{"operator": "Exists"}]})).unwrap()["tolerations"], json!([{"operator": "Exists"}]));
        let one = admitted(json!({"tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists"}]})).unwrap();
        assert_eq!(one["tolerations"][1]["key"], "node.kubernetes.io/not-ready");
        assert_eq!(admitted(json!({"priorityClassName": "system-node-critical"})).unwrap()["priority"], 2_000_001_000);
        assert_eq!(admitted(json!({"priorityClassName": "gold"})), Err(r#"pods "p" is forbidden: no PriorityClass with name gold was found"#.to_owned()));
        assert_eq!(
            admitted(json!({"priority": 7})),
            Err(r#"pods "p" is forbidden: the integer value of priority (7) must not be provided in pod spec; priority admission controller computed 0 from the given PriorityClass name"#.to_owned())
        );
        // An update keeps the stored priority where none is sent.
        let stored = pod(json!({"metadata": {"name": "p"}, "spec": admitted(json!({})).unwrap()}));
        let mut sent = pod(json!({"metadata": {"name": "p"}, "spec": {}}));
        admit_scheduling(&mut sent, Some(&stored)).unwrap();
        assert_eq!(sent.value()["spec"], stored.value()["spec"]);
    }

    #[test]
    fn mirror_pods_run_as_no_service_account() {
        let mirror = |spec: Value| pod(json!({"metadata": {"name": "m", "annotations": {MIRROR_ANNOTATION: "x"}}, "spec": spec}));
        let mut plain = mirror(json!({"containers": [{"name": "a"}]}));
        assert_eq!(service_account_to_admit(&mut plain).unwrap(), None);
        assert_eq!(plain.str_at("spec.serviceAccountName"), None, "not defaulted");
        let refused = |spec: Value| service_account_to_admit(&mut mirror(spec)).unwrap_err().to_string();
        assert_eq!(refused(json!({"serviceAccountName": "bot"})), r#"pods "m" is forbidden: a mirror pod may not reference service accounts"#);
        let mut aliased = mirror(json!({"serviceAccount": "bot"}));
        decode_and_default(&mut aliased).unwrap();
        assert!(service_account_to_admit(&mut aliased).is_err(), "the deprecated field names an account too");
        assert_eq!(refused(json!({"volumes": [{"name": "s", "secret": {"secretName": "s"}}]})), r#"pods "m" is forbidden: a mirror pod may not reference secrets"#);
        assert_eq!(
            refused(json!({"volumes": [{"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}]})),
            r#"pods "m" is forbidden: a mirror pod may not use ServiceAccountToken volume projections"#
        );
    }

    #[test]
    fn a_create_is_validated_in_kubes_order() {
        let mut p = pod(json!({"metadata": {"name": "Web"}, "spec": {"nodeName": "n1", "schedulingGates": [{"name": "g"}],
                                "ephemeralContainers": [{"name": "debug", "image": "busybox"}], "containers": [{"name": "c"}]}}));
        decode_and_default(&mut p).unwrap();
        let err = validate_create(&p).unwrap_err();
        assert_eq!(err.code(), 422);
        let subdomain = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
        assert_eq!(
            err.to_string(),
            format!(
                "Pod \"Web\" is invalid: [metadata.name: Invalid value: \"Web\": {subdomain}, spec.containers[0].image: Required value, \
                 spec.ephemeralContainers: Forbidden: cannot be set on create, spec.nodeName: Forbidden: cannot be set until all schedulingGates have been cleared]"
            )
        );
        let mut valid = pod(json!({"metadata": {"generateName": "web-"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}));
        decode_and_default(&mut valid).unwrap();
        assert_eq!(validate_create(&valid), Ok(()));
    }

    #[test]
    fn an_update_keeps_the_spec_valid() {
        let mut stored = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}], "activeDeadlineSeconds": 60}}));
        decode_and_default(&mut stored).unwrap();
        let updated = |change: &dyn Fn(&mut Value)| {
            let mut p = stored.clone();
            if let Some(spec) = p.0.get_mut("spec") {
                change(spec);
            }
            decode_and_default(&mut p).unwrap();
            check_spec_update(&stored, &p).map_err(|e| e.to_string())
        };
        assert_eq!(updated(&|spec| spec["containers"][0]["image"] = json!("busybox:1.37")), Ok(()));
        assert_eq!(updated(&|spec| spec["containers"][0]["image"] = json!("")), Err(r#"Pod "p" is invalid: spec.containers[0].image: Required value"#.to_owned()));
        // The spec's errors, then the update's (which stop at a deadline out of range).
        assert_eq!(
            updated(&|spec| {
                spec["restartPolicy"] = json!("Sometimes");
                spec["activeDeadlineSeconds"] = json!(-1);
            }),
            Err("Pod \"p\" is invalid: [spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\", \
                 spec.activeDeadlineSeconds: Invalid value: -1: must be between 1 and 2147483647, inclusive, \
                 spec.activeDeadlineSeconds: Invalid value: -1: must be between 0 and 2147483647, inclusive]"
                .to_owned())
        );
        assert_eq!(
            updated(&|spec| {
                spec["containers"][0]["name"] = json!("C");
                spec["containers"].as_array_mut().unwrap().push(json!({"name": "d", "image": "x"}));
            }),
            Err(format!(
                "Pod \"p\" is invalid: [spec.containers[0].name: Invalid value: \"C\": {}, spec.containers: Forbidden: pod updates may not add or remove containers]",
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            ))
        );
    }

    #[test]
    fn a_pod_stored_before_specs_were_validated_can_still_be_labelled() {
        // No containers, as tokenwarden stored pods before: the spec's errors it already has do
        // not refuse an update; a new one does.
        let mut stored = pod(json!({"metadata": {"name": "old"}, "spec": {}}));
        decode_and_default(&mut stored).unwrap();
        let mut labelled = stored.clone();
        labelled.0.insert("metadata".into(), json!({"name": "old", "labels": {"team": "a"}}));
        assert_eq!(check_spec_update(&stored, &labelled), Ok(()));
        let mut worse = stored.clone();
        worse.0["spec"]["activeDeadlineSeconds"] = json!(0);
        assert_eq!(
            check_spec_update(&stored, &worse).map_err(|e| e.to_string()),
            Err(r#"Pod "old" is invalid: spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive"#.to_owned())
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
