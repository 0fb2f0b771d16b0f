//! Server-side printing: `meta.k8s.io` `Table` responses for `Accept: ...;as=Table`, the
//! columns `kubectl get` shows.

use std::collections::BTreeSet;

use axum::http::HeaderMap;
use axum::http::header;
use serde_json::{Map, Value, json};
use tokenwarden_core::object::{items_of, text_of};
use tokenwarden_core::{Object, Resource, Timestamp};

/// What the client asked the objects to be rendered as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rendering {
    /// The objects themselves (JSON).
    Plain,
    /// A `Table` of `meta.k8s.io/<version>`.
    Table { version: String },
}

/// Reads the Accept header: the first media type decides. `application/json;as=Table;
/// v=v1|v1beta1;g=meta.k8s.io` is a Table; anything else is plain JSON.
pub fn rendering(headers: &HeaderMap) -> Rendering {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Rendering::Plain;
    };
    for media in accept.split(',') {
        let mut parts = media.split(';').map(str::trim);
        let base = parts.next().unwrap_or("");
        if base.is_empty() {
            continue;
        }
        let mut as_kind = "";
        let mut version = "";
        let mut group = "";
        for param in parts {
            match param.split_once('=') {
                Some(("as", v)) => as_kind = v,
                Some(("v", v)) => version = v,
                Some(("g", v)) => group = v,
                _ => {}
            }
        }
        if as_kind == "Table" && (group.is_empty() || group == "meta.k8s.io") {
            let version = if matches!(version, "v1" | "v1beta1") { version } else { "v1" };
            return Rendering::Table { version: version.to_owned() };
        }
        if as_kind.is_empty() {
            return Rendering::Plain;
        }
        // Another `as=` (PartialObjectMetadata, ...) we do not serve: try the next type.
    }
    Rendering::Plain
}

/// `includeObject`: what each row's `object` carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    #[default]
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

/// kubectl's `duration.HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 60 * 2 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 { format!("{}y", hours / 24 / 365) } else { format!("{}y{days}d", hours / 24 / 365) };
    }
    format!("{}y", hours / 24 / 365)
}

const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

// The descriptions kube-apiserver gives these columns: the Swagger docs of the fields shown
// (k8s.io/api core/v1), or the text of kube's printers.go where it writes one.
const SECRET_TYPE_DESCRIPTION: &str = "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types";
const SECRET_DATA_DESCRIPTION: &str = "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4";
const NODE_ADDRESSES_DESCRIPTION: &str = "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP).";
const POD_NODE_NAME_DESCRIPTION: &str = "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename";
const POD_NOMINATED_NODE_DESCRIPTION: &str = "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.";
const POD_READINESS_GATES_DESCRIPTION: &str = "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates";

fn column(name: &str, kind: &str, format: &str, description: &str) -> Value {
    json!({"name": name, "type": kind, "format": format, "description": description, "priority": 0})
}

/// A string column kubectl shows only with `-o wide` (priority 1).
fn wide(name: &str, description: &str) -> Value {
    let mut c = column(name, "string", "", description);
    c["priority"] = json!(1);
    c
}

/// The column definitions for a resource.
pub fn columns(resource: &Resource) -> Vec<Value> {
    let name = column("Name", "string", "name", NAME_DESCRIPTION);
    let age = column("Age", "string", "", AGE_DESCRIPTION);
    match *resource {
        Resource::SERVICE_ACCOUNTS => vec![
            name,
            column("Secrets", "integer", "", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."),
            age,
        ],
        Resource::NAMESPACES => vec![name, column("Status", "string", "", "The status of the namespace"), age],
        Resource::SECRETS => vec![
            name,
            column("Type", "string", "", SECRET_TYPE_DESCRIPTION),
            column("Data", "string", "", SECRET_DATA_DESCRIPTION),
            age,
        ],
        Resource::NODES => vec![
            name,
            column("Status", "string", "", "The status of the node"),
            column("Roles", "string", "", "The roles of the node"),
            age,
            column("Version", "string", "", "Kubelet Version reported by the node."),
            wide("Internal-IP", NODE_ADDRESSES_DESCRIPTION),
            wide("External-IP", NODE_ADDRESSES_DESCRIPTION),
            wide("OS-Image", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
            wide("Kernel-Version", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
            wide("Container-Runtime", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
        ],
        Resource::PODS => vec![
            name,
            column("Ready", "string", "", "The aggregate readiness state of this pod for accepting traffic."),
            column("Status", "string", "", "The aggregate status of the containers in this pod."),
            column(
                "Restarts",
                "string",
                "",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            age,
            wide("IP", "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
            wide("Node", POD_NODE_NAME_DESCRIPTION),
            wide("Nominated Node", POD_NOMINATED_NODE_DESCRIPTION),
            wide("Readiness Gates", POD_READINESS_GATES_DESCRIPTION),
        ],
        Resource::ROLES | Resource::CLUSTER_ROLES => vec![name, column("Created At", "date", "", "Time at which the object was created")],
        Resource::ROLE_BINDINGS | Resource::CLUSTER_ROLE_BINDINGS => vec![
            name,
            column("Role", "string", "", "Role references the Role or ClusterRole the subjects are bound to"),
            age,
            wide("Users", "Users in the binding"),
            wide("Groups", "Groups in the binding"),
            wide("ServiceAccounts", "ServiceAccounts in the binding"),
        ],
        _ => vec![name, age],
    }
}

/// The subjects of `kind` in a binding, as kubectl's wide columns list them.
fn subjects_of(object: &Object, kind: &str) -> String {
    let subjects = object.value().get("subjects").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let names: Vec<String> = subjects
        .iter()
        .filter(|s| s.get("kind").and_then(Value::as_str) == Some(kind))
        .map(|s| {
            let name = s.get("name").and_then(Value::as_str).unwrap_or_default();
            match s.get("namespace").and_then(Value::as_str).filter(|_| kind == "ServiceAccount") {
                Some(namespace) => format!("{namespace}/{name}"),
                None => name.to_owned(),
            }
        })
        .collect();
    names.join(", ")
}

// --- Reading the JSON as kube's printers read the typed object: a missing field, or one of
// the wrong JSON type, is the zero value.

/// A pointer to a struct (`state.terminated`): set when the JSON holds an object there.
fn object_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a Value> {
    value.pointer(pointer).filter(|v| v.is_object())
}

fn int(value: &Value, key: &str) -> i64 {
    value.get(key).and_then(Value::as_i64).unwrap_or(0)
}

fn flag(value: &Value, key: &str) -> bool {
    value.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn or(value: &str, default: &str) -> String {
    if value.is_empty() { default } else { value }.to_owned()
}

/// Secret: the keys of `data` (`stringData` was folded into it when the Secret was written).
fn secret_key_count(secret: &Object) -> usize {
    secret.value().get("data").and_then(Value::as_object).map_or(0, Map::len)
}

/// Node: kube's `printNode` after the name (Status, Roles, Age, Version, then the wide
/// columns Internal-IP, External-IP, OS-Image, Kernel-Version, Container-Runtime).
fn node_cells(node: &Object, age: String) -> [String; 9] {
    // The last `Ready` condition decides (kube indexes the conditions by type).
    let ready = items_of(node.at("status.conditions")).iter().rev().find(|c| text_of(c.get("type")) == "Ready");
    let mut status = match ready {
        Some(c) if text_of(c.get("status")) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }
    .to_owned();
    if node.at("spec.unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    // `node-role.kubernetes.io/<role>` labels and a `kubernetes.io/role: <role>` label.
    let roles: BTreeSet<&str> = node
        .labels()
        .filter_map(|(key, value)| match key.strip_prefix("node-role.kubernetes.io/") {
            Some(role) => Some(role),
            None => (key == "kubernetes.io/role").then_some(value),
        })
        .filter(|role| !role.is_empty())
        .collect();
    let roles = if roles.is_empty() { "<none>".to_owned() } else { roles.into_iter().collect::<Vec<_>>().join(",") };
    let address = |kind: &str| {
        let found = items_of(node.at("status.addresses")).iter().find(|a| text_of(a.get("type")) == kind);
        found.map_or_else(|| "<none>".to_owned(), |a| text_of(a.get("address")).to_owned())
    };
    let info = |key: &str| text_of(node.at("status.nodeInfo").and_then(|i| i.get(key)));
    [
        status,
        roles,
        age,
        info("kubeletVersion").to_owned(),
        address("InternalIP"),
        address("ExternalIP"),
        or(info("osImage"), "<unknown>"),
        or(info("kernelVersion"), "<unknown>"),
        or(info("containerRuntimeVersion"), "<unknown>"),
    ]
}

/// Why a container terminated, as kube's pod printer words it.
fn terminated_reason(terminated: &Value) -> String {
    match text_of(terminated.get("reason")) {
        "" if int(terminated, "signal") != 0 => format!("Signal:{}", int(terminated, "signal")),
        "" => format!("ExitCode:{}", int(terminated, "exitCode")),
        reason => reason.to_owned(),
    }
}

/// A container status's restart count and the end of its last termination.
fn restarts_of(status: &Value) -> (i64, Option<Timestamp>) {
    let finished = object_at(status, "/lastState/terminated").and_then(|t| Timestamp::parse_rfc3339(text_of(t.get("finishedAt"))));
    (int(status, "restartCount"), finished)
}

fn keep_latest(latest: &mut Option<Timestamp>, candidate: Option<Timestamp>) {
    if let Some(t) = candidate
        && latest.is_none_or(|l| l < t)
    {
        *latest = Some(t);
    }
}

/// Pod: kube's `printPod` after the name (Ready, Status, Restarts, Age, then the wide columns
/// IP, Node, Nominated Node, Readiness Gates). A pod nobody runs has no container statuses:
/// it is `0/<containers>` ready, its Status is its phase (empty without one), 0 restarts.
fn pod_cells(pod: &Object, age: String, now: Timestamp) -> [String; 8] {
    let status = |path: &str| pod.at("status").and_then(|s| s.pointer(path));
    let phase = text_of(status("/phase"));
    let conditions = items_of(status("/conditions"));
    // The first condition of a type decides, as in kube's helpers.
    let condition_true = |kind: &str| conditions.iter().find(|c| text_of(c.get("type")) == kind).is_some_and(|c| text_of(c.get("status")) == "True");

    let mut reason = or(text_of(status("/reason")), phase);
    if conditions.iter().any(|c| text_of(c.get("type")) == "PodScheduled" && text_of(c.get("reason")) == "SchedulingGated") {
        reason = "SchedulingGated".to_owned();
    }

    // Sidecars (init containers with `restartPolicy: Always`) count as containers.
    let init_containers = items_of(pod.at("spec.initContainers"));
    let sidecar = |c: &Value| text_of(c.get("restartPolicy")) == "Always";
    let restartable = |name: &str| init_containers.iter().any(|c| text_of(c.get("name")) == name && sidecar(c));
    let total = items_of(pod.at("spec.containers")).len() + init_containers.iter().filter(|c| sidecar(c)).count();
    let mut ready = 0;

    let (mut restarts, mut last_restart) = (0i64, None);
    let (mut sidecar_restarts, mut last_sidecar_restart) = (0i64, None);
    let mut initializing = false;
    for (i, container) in items_of(status("/initContainerStatuses")).iter().enumerate() {
        let (count, finished) = restarts_of(container);
        restarts = restarts.saturating_add(count);
        keep_latest(&mut last_restart, finished);
        let is_sidecar = restartable(text_of(container.get("name")));
        if is_sidecar {
            sidecar_restarts = sidecar_restarts.saturating_add(count);
            keep_latest(&mut last_sidecar_restart, finished);
        }
        let terminated = object_at(container, "/state/terminated");
        if terminated.is_some_and(|t| int(t, "exitCode") == 0) {
            continue;
        }
        if is_sidecar && container.get("started").and_then(Value::as_bool) == Some(true) {
            ready += usize::from(flag(container, "ready"));
            continue;
        }
        let waiting = text_of(container.pointer("/state/waiting/reason"));
        reason = match terminated {
            Some(terminated) => format!("Init:{}", terminated_reason(terminated)),
            None if !waiting.is_empty() && waiting != "PodInitializing" => format!("Init:{waiting}"),
            None => format!("Init:{i}/{}", init_containers.len()),
        };
        initializing = true;
        break;
    }

    if !initializing || condition_true("Initialized") {
        (restarts, last_restart) = (sidecar_restarts, last_sidecar_restart);
        let mut has_running = false;
        for container in items_of(status("/containerStatuses")).iter().rev() {
            let (count, finished) = restarts_of(container);
            restarts = restarts.saturating_add(count);
            keep_latest(&mut last_restart, finished);
            let waiting = text_of(container.pointer("/state/waiting/reason"));
            if !waiting.is_empty() {
                waiting.clone_into(&mut reason);
            } else if let Some(terminated) = object_at(container, "/state/terminated") {
                reason = terminated_reason(terminated);
            } else if flag(container, "ready") && object_at(container, "/state/running").is_some() {
                has_running = true;
                ready += 1;
            }
        }
        // Some container still runs: the pod is not Completed yet.
        if reason == "Completed" && has_running {
            let pod_ready = conditions.iter().any(|c| text_of(c.get("type")) == "Ready" && text_of(c.get("status")) == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.to_owned();
        }
    }

    if pod.deletion_timestamp().is_some() {
        if text_of(status("/reason")) == "NodeLost" {
            reason = "Unknown".to_owned();
        } else if !matches!(phase, "Succeeded" | "Failed") {
            reason = "Terminating".to_owned();
        }
    }

    let restarts = match last_restart {
        Some(at) if restarts != 0 => format!("{restarts} ({} ago)", human_duration(now.unix() - at.unix())),
        _ => restarts.to_string(),
    };
    // `podIP` wins over `podIPs` (kube's v1 conversion keeps the singular field authoritative).
    let ip = match text_of(status("/podIP")) {
        "" => text_of(status("/podIPs/0/ip")),
        ip => ip,
    };
    let gates = items_of(pod.at("spec.readinessGates"));
    let gates = if gates.is_empty() {
        "<none>".to_owned()
    } else {
        let passed = gates.iter().filter(|g| condition_true(text_of(g.get("conditionType")))).count();
        format!("{passed}/{}", gates.len())
    };
    [
        format!("{ready}/{total}"),
        reason,
        restarts,
        age,
        or(ip, "<none>"),
        or(pod.pod_node_name(), "<none>"),
        or(text_of(status("/nominatedNodeName")), "<none>"),
        gates,
    ]
}

/// The cells of one object's row.
pub fn cells(resource: &Resource, object: &Object, now: Timestamp) -> Vec<Value> {
    let age = match object.creation_timestamp() {
        Some(created) => human_duration(now.unix() - created.unix()),
        None => "<unknown>".to_owned(),
    };
    let name = json!(object.name());
    match *resource {
        Resource::SERVICE_ACCOUNTS => vec![name, json!(object.service_account_secret_count()), json!(age)],
        Resource::NAMESPACES => {
            let phase = object.str_at("status.phase").filter(|p| !p.is_empty()).unwrap_or("Active");
            vec![name, json!(phase), json!(age)]
        }
        Resource::SECRETS => vec![name, json!(object.secret_type()), json!(secret_key_count(object)), json!(age)],
        Resource::NODES => {
            let mut row = vec![name];
            row.extend(node_cells(object, age).map(Value::String));
            row
        }
        Resource::PODS => {
            let mut row = vec![name];
            row.extend(pod_cells(object, age, now).map(Value::String));
            row
        }
        Resource::ROLES | Resource::CLUSTER_ROLES => {
            vec![name, json!(object.creation_timestamp().map(|t| t.to_string()).unwrap_or_default())]
        }
        Resource::ROLE_BINDINGS | Resource::CLUSTER_ROLE_BINDINGS => {
            let role = format!("{}/{}", object.str_at("roleRef.kind").unwrap_or_default(), object.str_at("roleRef.name").unwrap_or_default());
            let wide = ["User", "Group", "ServiceAccount"].map(|kind| json!(subjects_of(object, kind)));
            let mut row = vec![name, json!(role), json!(age)];
            row.extend(wide);
            row
        }
        _ => vec![name, json!(age)],
    }
}

/// `PartialObjectMetadata` of an object, in `meta.k8s.io/<version>`.
pub fn partial_metadata(object: &Object, version: &str) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": object.value().get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// The row conditions kube sets: a finished pod's row is `Completed`.
fn row_conditions(resource: &Resource, object: &Object) -> Option<Value> {
    if *resource != Resource::PODS {
        return None;
    }
    let (reason, message) = match object.str_at("status.phase")? {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
}

/// A row for an object.
pub fn row(resource: &Resource, object: &Object, now: Timestamp, version: &str, include: IncludeObject) -> Value {
    let mut row = json!({"cells": cells(resource, object, now)});
    if let Some(conditions) = row_conditions(resource, object) {
        row["conditions"] = conditions;
    }
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => row["object"] = partial_metadata(object, version),
        IncludeObject::Object => row["object"] = object.clone().into_value(),
    }
    row
}

/// Table options for one response.
#[derive(Clone, Debug)]
pub struct TableOptions<'a> {
    pub version: &'a str,
    pub include: IncludeObject,
    /// Leave out `columnDefinitions` (watch events after the first).
    pub no_headers: bool,
    pub now: Timestamp,
}

/// A `Table` of `objects`; `metadata` is the list metadata (`resourceVersion`, `continue`).
pub fn table(resource: &Resource, objects: &[Object], metadata: Map<String, Value>, options: &TableOptions<'_>) -> Value {
    let rows: Vec<Value> = objects.iter().map(|o| row(resource, o, options.now, options.version, options.include)).collect();
    let columns = if options.no_headers { Vec::new() } else { columns(resource) };
    json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{}", options.version),
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const NOW: Timestamp = Timestamp::from_unix(1_757_000_000);

    /// An object created `secs` before `NOW`.
    fn created(secs: i64, mut value: Value) -> Object {
        value["metadata"]["creationTimestamp"] = json!(NOW.plus(-secs).to_string());
        Object::from_value(value).unwrap()
    }

    fn ago(secs: i64) -> String {
        NOW.plus(-secs).to_string()
    }

    #[test]
    fn secrets_print_type_and_key_count() {
        // The column names and priorities are asserted over HTTP (tests/objects.rs).
        let data = &columns(&Resource::SECRETS)[2];
        assert_eq!(data["type"], "string", "kube declares Data a string column and fills it with an integer");
        assert!(data["description"].as_str().unwrap().starts_with("Data contains the secret data."));

        let secret = created(30, json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}}));
        assert_eq!(cells(&Resource::SECRETS, &secret, NOW), vec![json!("s"), json!("kubernetes.io/tls"), json!(2), json!("30s")]);
        // No data, no type: kube defaults the type to Opaque.
        let bare = created(0, json!({"metadata": {"name": "bare"}}));
        assert_eq!(cells(&Resource::SECRETS, &bare, NOW), vec![json!("bare"), json!("Opaque"), json!(0), json!("0s")]);
        // Wrong JSON types count as nothing.
        let odd = created(0, json!({"metadata": {"name": "odd"}, "type": 7, "data": ["a"]}));
        assert_eq!(cells(&Resource::SECRETS, &odd, NOW), vec![json!("odd"), json!("Opaque"), json!(0), json!("0s")]);
    }

    #[test]
    fn nodes_print_status_roles_version_and_wide_system_info() {
        // A node object nobody reports on.
        let bare = created(120, json!({"metadata": {"name": "n0"}}));
        let row = ["n0", "Unknown", "<none>", "2m", "", "<none>", "<none>", "<unknown>", "<unknown>", "<unknown>"];
        assert_eq!(cells(&Resource::NODES, &bare, NOW), row.map(|c| json!(c)).to_vec());

        // Roles from both label forms, sorted and deduplicated; cordoned; the last Ready
        // condition counts.
        let node = created(
            3 * 86400,
            json!({
                "metadata": {"name": "n1", "labels": {
                    "node-role.kubernetes.io/worker": "",
                    "node-role.kubernetes.io/control-plane": "",
                    "node-role.kubernetes.io/": "ignored",
                    "kubernetes.io/role": "worker",
                    "kubernetes.io/hostname": "n1",
                }},
                "spec": {"unschedulable": true},
                "status": {
                    "conditions": [{"type": "Ready", "status": "True"}, {"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "False"}],
                    "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.1"}, {"type": "InternalIP", "address": "10.0.0.2"}],
                    "nodeInfo": {"kubeletVersion": "v1.33.1", "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.1.0", "containerRuntimeVersion": "containerd://1.7.24"},
                },
            }),
        );
        let row = [
            "n1",
            "NotReady,SchedulingDisabled",
            "control-plane,worker",
            "3d",
            "v1.33.1",
            "10.0.0.1",
            "<none>",
            "Debian GNU/Linux 12 (bookworm)",
            "6.1.0",
            "containerd://1.7.24",
        ];
        assert_eq!(cells(&Resource::NODES, &node, NOW), row.map(|c| json!(c)).to_vec());

        let ready = created(0, json!({"metadata": {"name": "n2", "labels": {"kubernetes.io/role": "edge"}}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}));
        assert_eq!(cells(&Resource::NODES, &ready, NOW)[1..3], [json!("Ready"), json!("edge")]);
        let odd = created(0, json!({"metadata": {"name": "n3"}, "spec": {"unschedulable": "yes"}, "status": {"conditions": {"Ready": 1}, "nodeInfo": []}}));
        assert_eq!(cells(&Resource::NODES, &odd, NOW)[1], json!("Unknown"));
    }

    fn pod(secs: i64, spec: Value, status: Value) -> Object {
        created(secs, json!({"metadata": {"name": "p"}, "spec": spec, "status": status}))
    }

    /// Ready, Status, Restarts (the cells after the name, before the age).
    fn summary(pod: &Object) -> [String; 3] {
        let row = cells(&Resource::PODS, pod, NOW);
        [1, 2, 3].map(|i| row[i].as_str().unwrap().to_owned())
    }

    #[test]
    fn pods_print_readiness_status_restarts_and_wide_placement() {
        assert!(columns(&Resource::PODS).iter().all(|c| c["type"] == "string"), "Restarts is a string column since kube 1.22");

        // A stored pod nobody runs: no status at all, so an empty phase for Status.
        let two = json!({"containers": [{"name": "a"}, {"name": "b"}]});
        let bare = pod(65, two.clone(), Value::Null);
        let row = ["p", "0/2", "", "0", "65s", "<none>", "<none>", "<none>", "<none>"];
        assert_eq!(cells(&Resource::PODS, &bare, NOW), row.map(|c| json!(c)).to_vec());
        assert_eq!(summary(&pod(0, two.clone(), json!({"phase": "Pending"}))), ["0/2", "Pending", "0"]);

        // Terminating while deleted unless it already finished; NodeLost is Unknown.
        let mut deleted = pod(0, two.clone(), json!({"phase": "Pending"}));
        deleted.set_meta("deletionTimestamp", ago(1));
        assert_eq!(summary(&deleted)[1], "Terminating");
        let mut finished = pod(0, two.clone(), json!({"phase": "Succeeded"}));
        finished.set_meta("deletionTimestamp", ago(1));
        assert_eq!(summary(&finished)[1], "Succeeded");
        // A finished pod's row carries kube's Completed condition; a running one none.
        let completed = super::row(&Resource::PODS, &finished, NOW, "v1", IncludeObject::None);
        let condition = json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}]);
        assert_eq!(completed["conditions"], condition);
        assert_eq!(super::row(&Resource::PODS, &bare, NOW, "v1", IncludeObject::None).get("conditions"), None);
        let mut lost = pod(0, two.clone(), json!({"phase": "Running", "reason": "NodeLost"}));
        lost.set_meta("deletionTimestamp", ago(1));
        assert_eq!(summary(&lost)[1], "Unknown");

        // Running: ready counts, restarts summed with the age of the last termination.
        let running = pod(
            600,
            json!({"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1", "readinessGates": [{"conditionType": "x/ok"}, {"conditionType": "x/other"}]}),
            json!({
                "phase": "Running", "podIP": "10.1.0.5", "podIPs": [{"ip": "10.1.0.5"}, {"ip": "fd00::5"}], "nominatedNodeName": "n2",
                "conditions": [{"type": "x/ok", "status": "True"}, {"type": "x/other", "status": "False"}, {"type": "x/ok", "status": "False"}],
                "containerStatuses": [
                    {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(300)}}},
                    {"name": "b", "ready": false, "restartCount": 1, "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(90)}}},
                ],
            }),
        );
        let row = ["p", "1/2", "Running", "3 (90s ago)", "10m", "10.1.0.5", "n1", "n2", "1/2"];
        assert_eq!(cells(&Resource::PODS, &running, NOW), row.map(|c| json!(c)).to_vec());
        // Only `podIPs`: its first entry.
        let dual = pod(0, two.clone(), json!({"podIPs": [{"ip": "fd00::7"}]}));
        assert_eq!(cells(&Resource::PODS, &dual, NOW)[5], json!("fd00::7"));

        // Container reasons: waiting, terminated without a reason, Completed with one still running.
        let waiting = json!({"phase": "Pending", "containerStatuses": [
            {"name": "a", "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
            {"name": "b", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
        ]});
        assert_eq!(summary(&pod(0, two.clone(), waiting)), ["0/2", "CrashLoopBackOff", "4"]);
        let signal = json!({"containerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]});
        assert_eq!(summary(&pod(0, two.clone(), signal))[1], "Signal:9");
        let exit = json!({"containerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 3}}}]});
        assert_eq!(summary(&pod(0, two.clone(), exit))[1], "ExitCode:3");
        let completed = |conditions: Value| {
            json!({"phase": "Running", "conditions": conditions, "containerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "b", "ready": true, "state": {"running": {}}},
            ]})
        };
        assert_eq!(summary(&pod(0, two.clone(), completed(json!([]))))[..2], ["1/2", "NotReady"]);
        assert_eq!(summary(&pod(0, two.clone(), completed(json!([{"type": "Ready", "status": "True"}]))))[1], "Running");
        let gated = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]});
        assert_eq!(summary(&pod(0, two, gated))[1], "SchedulingGated");
    }

    #[test]
    fn pods_print_init_containers_and_sidecars() {
        let spec = json!({
            "initContainers": [{"name": "setup"}, {"name": "proxy", "restartPolicy": "Always"}, {"name": "migrate"}],
            "containers": [{"name": "app"}],
        });
        let init = |statuses: Value| pod(0, spec.clone(), json!({"phase": "Pending", "initContainerStatuses": statuses}));
        // The sidecar counts as a container; the first unfinished init container is the status.
        let started = init(json!([
            {"name": "setup", "restartCount": 1, "state": {"terminated": {"exitCode": 0}}},
            {"name": "proxy", "started": true, "ready": true, "state": {"running": {}}},
            {"name": "migrate", "state": {"running": {}}},
        ]));
        assert_eq!(summary(&started), ["1/2", "Init:2/3", "1"]);
        let waiting = init(json!([{"name": "setup", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]));
        assert_eq!(summary(&waiting)[1], "Init:ImagePullBackOff");
        let initializing = init(json!([{"name": "setup", "state": {"waiting": {"reason": "PodInitializing"}}}]));
        assert_eq!(summary(&initializing)[1], "Init:0/3");
        let failed = init(json!([{"name": "setup", "restartCount": 3, "state": {"terminated": {"exitCode": 2}}}]));
        assert_eq!(summary(&failed)[1..], ["Init:ExitCode:2".to_owned(), "3".to_owned()]);
        let killed = init(json!([{"name": "setup", "state": {"terminated": {"exitCode": 1, "reason": "OOMKilled"}}}]));
        assert_eq!(summary(&killed)[1], "Init:OOMKilled");

        // Initialized: only the sidecar's restarts stay, with the app's.
        let running = pod(
            0,
            spec.clone(),
            json!({
                "phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
                "initContainerStatuses": [
                    {"name": "setup", "restartCount": 5, "state": {"terminated": {"exitCode": 0}}},
                    {"name": "proxy", "started": true, "ready": true, "restartCount": 1, "state": {"running": {}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(200)}}},
                    {"name": "migrate", "state": {"terminated": {"exitCode": 0}}},
                ],
                "containerStatuses": [{"name": "app", "ready": true, "restartCount": 1, "state": {"running": {}}}],
            }),
        );
        assert_eq!(summary(&running), ["2/2", "Running", "2 (3m20s ago)"]);

        // Nonsense where objects belong is ignored, not a panic.
        let odd = pod(0, json!({"containers": "a", "initContainers": [1]}), json!({"initContainerStatuses": [null, 3], "containerStatuses": {"a": 1}}));
        assert_eq!(summary(&odd), ["0/0", "Init:0/1", "0"]);
        let odd = created(0, json!({"metadata": {"name": "p"}, "spec": [], "status": "Running"}));
        assert_eq!(summary(&odd), ["0/0", "", "0"]);
        // Restart counts past what adds up saturate (kube's are 32-bit; anyone may write a status).
        let status = json!({"name": "a", "restartCount": i64::MAX, "state": {"running": {}}});
        let huge = pod(0, json!({"containers": [{"name": "a"}, {"name": "b"}]}), json!({"containerStatuses": [status.clone(), status]}));
        assert_eq!(summary(&huge)[2], i64::MAX.to_string());
    }

    #[test]
    fn durations_print_like_kubectl() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (5, "5s"),
            (119, "119s"),
            (180, "3m"),
            (185, "3m5s"),
            (600, "10m"),
            (3 * 3600 - 1, "179m"),
            (3 * 3600 + 120, "3h2m"),
            (8 * 3600, "8h"),
            (47 * 3600, "47h"),
            (2 * 86400, "2d"),
            (2 * 86400 + 3600, "2d1h"),
            (10 * 86400, "10d"),
            (3 * 365 * 86400, "3y"),
            (3 * 365 * 86400 + 86400, "3y1d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn accept_header_picks_the_table_version() {
        let mut headers = HeaderMap::new();
        assert_eq!(rendering(&headers), Rendering::Plain);
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"),
        );
        assert_eq!(rendering(&headers), Rendering::Table { version: "v1beta1".into() });
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json, application/json;as=Table;v=v1;g=meta.k8s.io"));
        assert_eq!(rendering(&headers), Rendering::Plain);
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1;g=meta.k8s.io"),
        );
        assert_eq!(rendering(&headers), Rendering::Table { version: "v1".into() });
    }
}
