//! kube's validation of a pod's spec (`validatePodMetadataAndSpec` but for the metadata's name,
//! which [`crate::names`] checks): what `ValidatePodCreate` and `ValidatePodUpdate` refuse with
//! a 422, field by field, with kube's paths, reasons and messages, in the order kube finds them.
//! It reads the pod as [`crate::pod::decode_and_default`] leaves it, and reads each field as
//! `pod.rs` does: a field of another JSON type than kube's (which kube's decoder would refuse
//! with a 400) counts as unset, and nothing panics on any JSON.
//!
//! Checked:
//! - the mirror-pod annotation needs `spec.nodeName` (`ValidatePodSpecificAnnotations`);
//! - `ValidatePodSpec`: `terminationGracePeriodSeconds` set (kube has no rule on its sign);
//!   volumes (a name that is a unique DNS-1123 label, exactly one volume type, an emptyDir's
//!   size limit not negative); containers (at least one) and init containers: a name that is a
//!   DNS-1123 label unique across both lists, an image, the termination message and pull
//!   policies, ports (port numbers, protocol, an IANA service name unique within the
//!   container, host ports unique per protocol and IP), env (names, `valueFrom` sources and
//!   their Secret and ConfigMap keys), `envFrom` (prefix, one source, its name), volume mounts
//!   (a volume of the pod, a unique mount path, sub-paths, propagation, recursive read-only),
//!   resources (quantities not negative, a request not above its limit, equal to it for
//!   resources that cannot be overcommitted, hugepages only beside cpu or memory); which
//!   containers may set a `restartPolicy`, and init containers' lifecycle and probes without
//!   one; host ports matching container ports on the host's network; `restartPolicy`,
//!   `dnsPolicy` (and a `dnsConfig` with a nameserver for `None`), `serviceAccountName` and
//!   `nodeName` (DNS-1123 subdomains), `activeDeadlineSeconds`, `hostname` and `subdomain`
//!   (DNS-1123 labels);
//! - images without leading or trailing whitespace.
//!
//! Not checked (accepted as sent): volume sources' own fields (but an emptyDir's size limit),
//! ephemeral containers' fields (a create refuses them whole), `volumeDevices`, resource names
//! and claims, integer-only and hugepage quantities, resize policies, probes and lifecycle
//! handlers of the containers that may have them, security contexts, `fieldRef` and
//! `resourceFieldRef` selectors, the rest of `dnsConfig`, node selectors, affinity,
//! tolerations, host aliases, topology spread constraints, readiness and scheduling gates,
//! resource claims, overhead, `os`, and pod-level resources. The errors of one container's
//! resources come in the resources' name order, where kube's map order is random. Where the
//! rules moved with feature gates, they are 1.32's defaults: relaxed env var names (beta and
//! on from 1.32; 1.30 and 1.31 allow only `[-._a-zA-Z][-._a-zA-Z0-9]*`), `recursiveReadOnly`
//! checked (beta from 1.31), no image volumes. At most 1,000 errors are answered (kube: all).

use std::collections::HashSet;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use crate::error::go_quote;
use crate::names::{label_errors, subdomain_errors};
use crate::object::{items_of, text_of};
use crate::pod::{CONTAINER_LISTS, MIRROR_ANNOTATION};
use crate::quantity::Quantity;
use crate::{FieldError, Object};

type Fields = Map<String, Value>;

/// A JSON object's fields; none for anything else (a container that is no object is an empty one).
fn fields(value: &Value) -> &Fields {
    static EMPTY: OnceLock<Fields> = OnceLock::new();
    value.as_object().unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

fn fields_of(value: Option<&Value>) -> &Fields {
    static NULL: Value = Value::Null;
    fields(value.unwrap_or(&NULL))
}

/// An integer field, `None` when unset (or not an integer).
fn int_of(value: Option<&Value>) -> Option<i64> {
    value.and_then(Value::as_i64)
}

/// A pointer to a struct in kube's types: set when the field holds an object.
fn is_set(value: Option<&Value>) -> bool {
    value.is_some_and(Value::is_object)
}

/// At most this many errors are kept: 3 MiB of `{}` in a list is a million items, each with
/// its errors, which kube (no bound) would answer with a Status of a few hundred megabytes.
const MAX_ERRORS: usize = 1000;

/// The errors found so far, the first [`MAX_ERRORS`] of them.
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, error: FieldError) {
        if self.0.len() < MAX_ERRORS {
            self.0.push(error);
        }
    }

    fn extend(&mut self, errors: impl IntoIterator<Item = FieldError>) {
        for error in errors {
            self.push(error);
        }
    }
}

/// kube's `validatePodMetadataAndSpec` without `ValidateObjectMeta`: the pod's annotations, its
/// spec, then its images' whitespace. No error for a valid pod.
pub fn validate(pod: &Object) -> Vec<FieldError> {
    let mut errors = Errors(Vec::new());
    let spec = fields_of(pod.value().get("spec"));
    if let Some(mirror) = pod.annotation(MIRROR_ANNOTATION)
        && text_of(spec.get("nodeName")).is_empty()
    {
        let field = format!("metadata.annotations[{MIRROR_ANNOTATION}]");
        errors.push(FieldError::invalid(&field, go_quote(mirror), "must set spec.nodeName if mirror pod annotation is set"));
    }
    validate_spec(spec, &mut errors);
    for list in CONTAINER_LISTS {
        for (i, container) in items_of(spec.get(list)).iter().enumerate() {
            errors.extend(image_whitespace(list, i, text_of(fields(container).get("image"))));
        }
    }
    errors.0
}

/// kube's `validateContainersOnlyForPod`: an image with no leading or trailing whitespace.
pub(crate) fn image_whitespace(list: &str, i: usize, image: &str) -> Option<FieldError> {
    (image.trim() != image).then(|| FieldError::invalid(&format!("spec.{list}[{i}].image"), go_quote(image), "must not have leading or trailing whitespace"))
}

/// kube's `ValidatePodSpec`, the part checked here.
fn validate_spec(spec: &Fields, errors: &mut Errors) {
    if int_of(spec.get("terminationGracePeriodSeconds")).is_none() {
        errors.push(FieldError::required("spec.terminationGracePeriodSeconds", ""));
    }
    let volumes = validate_volumes(items_of(spec.get("volumes")), errors);
    let containers = items_of(spec.get("containers"));
    validate_containers(containers, &volumes, errors);
    validate_init_containers(items_of(spec.get("initContainers")), containers, &volumes, errors);
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        for (i, container) in containers.iter().enumerate() {
            for (j, port) in items_of(fields(container).get("ports")).iter().enumerate() {
                let port = fields(port);
                let host_port = int_of(port.get("hostPort")).unwrap_or(0);
                if host_port != int_of(port.get("containerPort")).unwrap_or(0) {
                    let field = format!("spec.containers[{i}].ports[{j}].hostPort");
                    errors.push(FieldError::invalid(&field, host_port, "must match `containerPort` when `hostNetwork` is true"));
                }
            }
        }
    }
    one_of(errors, "spec.restartPolicy", text_of(spec.get("restartPolicy")), &["Always", "OnFailure", "Never"]);
    let dns_policy = text_of(spec.get("dnsPolicy"));
    one_of(errors, "spec.dnsPolicy", dns_policy, &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]);
    if dns_policy == "None" {
        if !is_set(spec.get("dnsConfig")) {
            errors.push(FieldError::required("spec.dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None"));
        } else if items_of(fields_of(spec.get("dnsConfig")).get("nameservers")).is_empty() {
            errors.push(FieldError::required("spec.dnsConfig.nameservers", "must provide at least one DNS nameserver when `dnsPolicy` is None"));
        }
    }
    for key in ["serviceAccountName", "nodeName"] {
        let name = text_of(spec.get(key));
        if !name.is_empty() {
            errors.extend(subdomain_errors(&format!("spec.{key}"), name, false));
        }
    }
    if let Some(deadline) = int_of(spec.get("activeDeadlineSeconds"))
        && !(1..=i64::from(i32::MAX)).contains(&deadline)
    {
        errors.push(FieldError::invalid("spec.activeDeadlineSeconds", deadline, "must be between 1 and 2147483647, inclusive"));
    }
    for key in ["hostname", "subdomain"] {
        let name = text_of(spec.get(key));
        if !name.is_empty() {
            errors.extend(label_errors(&format!("spec.{key}"), name));
        }
    }
}

/// A field with a fixed set of values: `Required` when empty, `NotSupported` when another.
fn one_of(errors: &mut Errors, field: &str, value: &str, supported: &[&str]) {
    if value.is_empty() {
        errors.push(FieldError::required(field, ""));
    } else if !supported.contains(&value) {
        errors.push(FieldError::not_supported(field, go_quote(value), supported));
    }
}

/// The volume types in the order kube's `validateVolumeSource` counts them, each with the field
/// name its "more than 1 volume type" error names (kube's own spelling, typos included). Not
/// `image`: its gate (ImageVolume) is off by default through 1.32, whose decoder drops it.
const VOLUME_TYPES: [(&str, &str); 29] = [
    ("emptyDir", "emptyDir"),
    ("hostPath", "hostPath"),
    ("gitRepo", "gitRepo"),
    ("gcePersistentDisk", "gcePersistentDisk"),
    ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("secret", "secret"),
    ("nfs", "nfs"),
    ("iscsi", "iscsi"),
    ("glusterfs", "glusterfs"),
    ("flocker", "flocker"),
    ("persistentVolumeClaim", "persistentVolumeClaim"),
    ("rbd", "rbd"),
    ("cinder", "cinder"),
    ("cephfs", "cephFS"),
    ("quobyte", "quobyte"),
    ("downwardAPI", "downwarAPI"),
    ("fc", "fc"),
    ("flexVolume", "flexVolume"),
    ("configMap", "configMap"),
    ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"),
    ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"),
    ("azureDisk", "azureDisk"),
    ("storageos", "storageos"),
    ("projected", "projected"),
    ("scaleIO", "scaleIO"),
    ("csi", "csi"),
    ("ephemeral", "ephemeral"),
];

/// kube's `ValidateVolumes`: the names of the valid volumes (those the containers may mount).
fn validate_volumes<'a>(volumes: &'a [Value], errors: &mut Errors) -> HashSet<&'a str> {
    let mut valid = HashSet::new();
    for (i, volume) in volumes.iter().enumerate() {
        let volume = fields(volume);
        let path = format!("spec.volumes[{i}]");
        let mut found = Vec::new();
        let mut types = 0;
        for (key, shown) in VOLUME_TYPES {
            if is_set(volume.get(key)) {
                if types > 0 {
                    found.push(FieldError::forbidden(&format!("{path}.{shown}"), "may not specify more than 1 volume type"));
                } else {
                    types += 1;
                }
            }
            // The emptyDir, counted first, has its size limit checked before the others count.
            let size_limit = fields_of(volume.get("emptyDir")).get("sizeLimit").filter(|l| !l.is_null());
            if key == "emptyDir" && size_limit.and_then(|l| Quantity::from_json(l).ok()).is_some_and(|l| l.0 < 0) {
                found.push(FieldError::forbidden(&format!("{path}.emptyDir.sizeLimit"), "SizeLimit field must be a valid resource quantity"));
            }
        }
        if types == 0 {
            found.push(FieldError::required(&path, "must specify a volume type"));
        }
        let name = text_of(volume.get("name"));
        let name_field = format!("{path}.name");
        if name.is_empty() {
            found.push(FieldError::required(&name_field, ""));
        } else {
            found.extend(label_errors(&name_field, name));
        }
        if valid.contains(name) {
            found.push(FieldError::duplicate(&name_field, go_quote(name)));
        }
        if found.is_empty() {
            valid.insert(name);
        } else {
            errors.extend(found);
        }
    }
    valid
}

/// kube's `validateContainers`: at least one; each valid, named uniquely, setting no
/// `restartPolicy`; no host port twice among them.
fn validate_containers(containers: &[Value], volumes: &HashSet<&str>, errors: &mut Errors) {
    if containers.is_empty() {
        errors.push(FieldError::required("spec.containers", ""));
        return;
    }
    let mut names = HashSet::new();
    for (i, container) in containers.iter().enumerate() {
        let container = fields(container);
        let path = format!("spec.containers[{i}]");
        validate_container(container, &path, volumes, errors);
        let name = text_of(container.get("name"));
        if !names.insert(name) {
            errors.push(FieldError::duplicate(&format!("{path}.name"), go_quote(name)));
        }
        if container.get("restartPolicy").is_some_and(Value::is_string) {
            errors.push(FieldError::forbidden(&format!("{path}.restartPolicy"), "may not be set for non-init containers"));
        }
    }
    host_port_conflicts(containers.iter().enumerate(), "spec.containers", errors);
}

/// kube's `validateInitContainers`: each valid, named unlike any other container, with no host
/// port twice (each init container runs alone), and, unless it restarts `Always` (a sidecar),
/// without lifecycle handlers or probes.
fn validate_init_containers(init_containers: &[Value], containers: &[Value], volumes: &HashSet<&str>, errors: &mut Errors) {
    let mut names: HashSet<&str> = containers.iter().map(|c| text_of(fields(c).get("name"))).collect();
    for (i, container) in init_containers.iter().enumerate() {
        let ctr = fields(container);
        let path = format!("spec.initContainers[{i}]");
        validate_container(ctr, &path, volumes, errors);
        let mut restarts_always = false;
        if let Some(policy) = ctr.get("restartPolicy").and_then(Value::as_str) {
            if policy != "Always" {
                errors.push(FieldError::not_supported(&format!("{path}.restartPolicy"), go_quote(policy), &["Always"]));
            }
            restarts_always = policy == "Always";
        }
        let name = text_of(ctr.get("name"));
        if names.contains(name) {
            errors.push(FieldError::duplicate(&format!("{path}.name"), go_quote(name)));
        } else if !name.is_empty() {
            names.insert(name);
        }
        // kube checks each init container as a list of one: its errors name index 0.
        host_port_conflicts([(0, container)].into_iter(), "spec.initContainers", errors);
        if !restarts_always {
            for key in ["lifecycle", "livenessProbe", "readinessProbe", "startupProbe"] {
                if is_set(ctr.get(key)) {
                    errors.push(FieldError::forbidden(&format!("{path}.{key}"), "may not be set for init containers without restartPolicy=Always"));
                }
            }
        }
    }
}

/// kube's `checkHostPortConflicts`: a host port used twice for one protocol and host IP.
fn host_port_conflicts<'a>(containers: impl Iterator<Item = (usize, &'a Value)>, list: &str, errors: &mut Errors) {
    let mut used = HashSet::new();
    for (i, container) in containers {
        for (j, port) in items_of(fields(container).get("ports")).iter().enumerate() {
            let port = fields(port);
            let host_port = int_of(port.get("hostPort")).unwrap_or(0);
            if host_port == 0 {
                continue;
            }
            let key = format!("{}/{}/{host_port}", text_of(port.get("protocol")), text_of(port.get("hostIP")));
            if !used.insert(key.clone()) {
                errors.push(FieldError::duplicate(&format!("{list}[{i}].ports[{j}].hostPort"), go_quote(&key)));
            }
        }
    }
}

/// kube's `validateContainerCommon`, the part checked here.
fn validate_container(container: &Fields, path: &str, volumes: &HashSet<&str>, errors: &mut Errors) {
    let name = text_of(container.get("name"));
    if name.is_empty() {
        errors.push(FieldError::required(&format!("{path}.name"), ""));
    } else {
        errors.extend(label_errors(&format!("{path}.name"), name));
    }
    // kube checks only that an image is not empty here: whitespace is refused after the spec.
    if text_of(container.get("image")).is_empty() {
        errors.push(FieldError::required(&format!("{path}.image"), ""));
    }
    one_of(errors, &format!("{path}.terminationMessagePolicy"), text_of(container.get("terminationMessagePolicy")), &["File", "FallbackToLogsOnError"]);
    validate_ports(items_of(container.get("ports")), &format!("{path}.ports"), errors);
    validate_env(items_of(container.get("env")), &format!("{path}.env"), errors);
    validate_env_from(items_of(container.get("envFrom")), &format!("{path}.envFrom"), errors);
    validate_volume_mounts(container, &format!("{path}.volumeMounts"), volumes, errors);
    one_of(errors, &format!("{path}.imagePullPolicy"), text_of(container.get("imagePullPolicy")), &["Always", "IfNotPresent", "Never"]);
    validate_resources(fields_of(container.get("resources")), &format!("{path}.resources"), errors);
}

const PORT_RANGE: &str = "must be between 1 and 65535, inclusive";

/// kube's `validateContainerPorts`.
fn validate_ports(ports: &[Value], path: &str, errors: &mut Errors) {
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let port = fields(port);
        let name = text_of(port.get("name"));
        if !name.is_empty() {
            let problems = port_name_problems(name);
            let field = format!("{path}[{i}].name");
            if !problems.is_empty() {
                errors.extend(problems.into_iter().map(|problem| FieldError::invalid(&field, go_quote(name), problem)));
            } else if !names.insert(name) {
                errors.push(FieldError::duplicate(&field, go_quote(name)));
            }
        }
        match int_of(port.get("containerPort")).unwrap_or(0) {
            0 => errors.push(FieldError::required(&format!("{path}[{i}].containerPort"), "")),
            number if !(1..=65535).contains(&number) => errors.push(FieldError::invalid(&format!("{path}[{i}].containerPort"), number, PORT_RANGE)),
            _ => {}
        }
        let host_port = int_of(port.get("hostPort")).unwrap_or(0);
        if host_port != 0 && !(1..=65535).contains(&host_port) {
            errors.push(FieldError::invalid(&format!("{path}[{i}].hostPort"), host_port, PORT_RANGE));
        }
        // kube lists a set's values sorted.
        one_of(errors, &format!("{path}[{i}].protocol"), text_of(port.get("protocol")), &["SCTP", "TCP", "UDP"]);
    }
}

/// apimachinery's `IsValidPortName` (an IANA service name): its messages.
fn port_name_problems(name: &str) -> Vec<&'static str> {
    let mut problems = Vec::new();
    if name.len() > 15 {
        problems.push("must be no more than 15 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        problems.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        problems.push("must contain at least one letter (a-z)");
    }
    if name.contains("--") {
        problems.push("must not contain consecutive hyphens");
    }
    if name.starts_with('-') || name.ends_with('-') {
        problems.push("must not begin or end with a hyphen");
    }
    problems
}

/// apimachinery's `IsRelaxedEnvVarName` (kube's rule since its RelaxedEnvironmentVariableValidation
/// gate, on by default from 1.32) of a name that is not empty: printable ASCII but `=`.
fn env_name_problem(name: &str) -> Option<&'static str> {
    let printable = |c: char| (' '..='~').contains(&c) && c != '=';
    (!name.chars().all(printable)).then_some("a valid environment variable name must consist only of printable ASCII characters other than '='")
}

/// kube's `ValidateEnv`.
fn validate_env(env: &[Value], path: &str, errors: &mut Errors) {
    for (i, var) in env.iter().enumerate() {
        let var = fields(var);
        let name = text_of(var.get("name"));
        let field = format!("{path}[{i}].name");
        if name.is_empty() {
            errors.push(FieldError::required(&field, ""));
        } else if let Some(problem) = env_name_problem(name) {
            errors.push(FieldError::invalid(&field, go_quote(name), problem));
        }
        let Some(from) = var.get("valueFrom").and_then(Value::as_object) else {
            continue;
        };
        let path = format!("{path}[{i}].valueFrom");
        let mut sources = 0;
        for source in ["fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef"] {
            if is_set(from.get(source)) {
                sources += 1;
                if source.ends_with("KeyRef") {
                    validate_key_selector(fields_of(from.get(source)), &format!("{path}.{source}"), errors);
                }
            }
        }
        let detail = if sources == 0 {
            "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"
        } else if !text_of(var.get("value")).is_empty() {
            "may not be specified when `value` is not empty"
        } else if sources > 1 {
            "may not have more than one field specified at a time"
        } else {
            continue;
        };
        errors.push(FieldError::invalid(&path, go_quote(""), detail));
    }
}

/// kube's `validateConfigMapKeySelector` and `validateSecretKeySelector`: the object's name is a
/// DNS-1123 subdomain, the key a ConfigMap key.
fn validate_key_selector(selector: &Fields, path: &str, errors: &mut Errors) {
    errors.extend(subdomain_errors(&format!("{path}.name"), text_of(selector.get("name")), false));
    let key = text_of(selector.get("key"));
    let field = format!("{path}.key");
    if key.is_empty() {
        errors.push(FieldError::required(&field, ""));
        return;
    }
    let mut problems = Vec::new();
    if key.len() > 253 {
        problems.push("must be no more than 253 characters");
    }
    if !key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) {
        problems.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')");
    }
    match key {
        "." => problems.push("must not be '.'"),
        ".." => problems.push("must not be '..'"),
        _ if key.starts_with("..") => problems.push("must not start with '..'"),
        _ => {}
    }
    errors.extend(problems.into_iter().map(|problem| FieldError::invalid(&field, go_quote(key), problem)));
}

/// kube's `ValidateEnvFrom`.
fn validate_env_from(sources: &[Value], path: &str, errors: &mut Errors) {
    for (i, source) in sources.iter().enumerate() {
        let source = fields(source);
        let prefix = text_of(source.get("prefix"));
        if let Some(problem) = env_name_problem(prefix) {
            errors.push(FieldError::invalid(&format!("{path}[{i}].prefix"), go_quote(prefix), problem));
        }
        let mut count = 0;
        for kind in ["configMapRef", "secretRef"] {
            if is_set(source.get(kind)) {
                count += 1;
                let name = text_of(fields_of(source.get(kind)).get("name"));
                let field = format!("{path}[{i}].{kind}.name");
                if name.is_empty() {
                    errors.push(FieldError::required(&field, ""));
                } else {
                    // kube checks these names as prefixes (a trailing dash passes).
                    errors.extend(subdomain_errors(&field, name, true));
                }
            }
        }
        // kube names the list here, not the item.
        match count {
            0 => errors.push(FieldError::invalid(path, go_quote(""), "must specify one of: `configMapRef` or `secretRef`")),
            1 => {}
            _ => errors.push(FieldError::invalid(path, go_quote(""), "may not have more than one field specified at a time")),
        }
    }
}

/// kube's `ValidateVolumeMounts` (`path` is the list's: kube names some errors by it).
fn validate_volume_mounts(container: &Fields, path: &str, volumes: &HashSet<&str>, errors: &mut Errors) {
    let mut mount_paths = HashSet::new();
    for (i, mount) in items_of(container.get("volumeMounts")).iter().enumerate() {
        let mount = fields(mount);
        let item = format!("{path}[{i}]");
        let name = text_of(mount.get("name"));
        if name.is_empty() {
            errors.push(FieldError::required(&format!("{item}.name"), ""));
        }
        if !volumes.contains(name) {
            errors.push(FieldError::not_found(&format!("{item}.name"), go_quote(name)));
        }
        let mount_path = text_of(mount.get("mountPath"));
        if mount_path.is_empty() {
            errors.push(FieldError::required(&format!("{item}.mountPath"), ""));
        }
        if !mount_paths.insert(mount_path) {
            errors.push(FieldError::invalid(&format!("{item}.mountPath"), go_quote(mount_path), "must be unique"));
        }
        let sub_path = text_of(mount.get("subPath"));
        if !sub_path.is_empty() {
            local_descending_path(sub_path, &format!("{path}.subPath"), errors);
        }
        let sub_path_expr = text_of(mount.get("subPathExpr"));
        if !sub_path_expr.is_empty() {
            if !sub_path.is_empty() {
                errors.push(FieldError::invalid(&format!("{item}.subPathExpr"), go_quote(sub_path_expr), "subPathExpr and subPath are mutually exclusive"));
            }
            local_descending_path(sub_path_expr, &format!("{path}.subPathExpr"), errors);
        }
        let propagation = mount.get("mountPropagation").and_then(Value::as_str);
        if let Some(propagation) = propagation {
            let field = format!("{path}.mountPropagation");
            if !["Bidirectional", "HostToContainer", "None"].contains(&propagation) {
                errors.push(FieldError::not_supported(&field, go_quote(propagation), &["Bidirectional", "HostToContainer", "None"]));
            }
            let privileged = fields_of(container.get("securityContext")).get("privileged").and_then(Value::as_bool) == Some(true);
            if propagation == "Bidirectional" && !privileged {
                errors.push(FieldError::forbidden(&field, "Bidirectional mount propagation is available only to privileged containers"));
            }
        }
        let field = format!("{path}.recursiveReadOnly");
        match mount.get("recursiveReadOnly").and_then(Value::as_str) {
            None | Some("Disabled") => {}
            Some("Enabled" | "IfPossible") => {
                if mount.get("readOnly").and_then(Value::as_bool) != Some(true) {
                    errors.push(FieldError::forbidden(&field, "may only be specified when readOnly is true"));
                }
                if propagation.is_some_and(|p| p != "None") {
                    errors.push(FieldError::forbidden(&field, "may only be specified when mountPropagation is None or not specified"));
                }
            }
            Some(other) => errors.push(FieldError::not_supported(&field, go_quote(other), &["Disabled", "Enabled", "IfPossible"])),
        }
    }
}

/// kube's `validateLocalDescendingPath`: a relative path that never steps up.
fn local_descending_path(path: &str, field: &str, errors: &mut Errors) {
    if path.starts_with('/') {
        errors.push(FieldError::invalid(field, go_quote(path), "must be a relative path"));
    }
    if path.split('/').any(|part| part == "..") {
        errors.push(FieldError::invalid(field, go_quote(path), "must not contain '..'"));
    }
}

/// kube's `helper.IsOvercommitAllowed`: a native resource (unprefixed, or prefixed by
/// `kubernetes.io/`) other than hugepages.
fn overcommit_allowed(resource: &str) -> bool {
    (!resource.contains('/') || resource.contains("kubernetes.io/")) && !resource.starts_with("hugepages-")
}

/// kube's `ValidateContainerResourceRequirements`, the part checked here. Quantities are the
/// ones decoding let through; one that does not parse is passed over.
fn validate_resources(resources: &Fields, path: &str, errors: &mut Errors) {
    let (limits, requests) = (fields_of(resources.get("limits")), fields_of(resources.get("requests")));
    let shown = |quantity: &Value| go_quote(&Quantity::canonical_json(quantity).unwrap_or_default());
    let (mut cpu_or_memory, mut hugepages) = (false, false);
    for (part, list) in [("limits", limits), ("requests", requests)] {
        for (resource, quantity) in list {
            let Ok(amount) = Quantity::from_json(quantity) else {
                continue;
            };
            if amount.0 < 0 {
                errors.push(FieldError::invalid(&format!("{path}.{part}[{resource}]"), shown(quantity), "must be greater than or equal to 0"));
            }
            if part == "requests" {
                let requests_path = format!("{path}.requests");
                match limits.get(resource).map(|limit| (limit, Quantity::from_json(limit))) {
                    Some((limit, Ok(limit_amount))) => {
                        if amount != limit_amount && !overcommit_allowed(resource) {
                            let detail = format!("must be equal to {resource} limit of {}", Quantity::canonical_json(limit).unwrap_or_default());
                            errors.push(FieldError::invalid(&requests_path, shown(quantity), &detail));
                        } else if amount > limit_amount {
                            let detail = format!("must be less than or equal to {resource} limit of {}", Quantity::canonical_json(limit).unwrap_or_default());
                            errors.push(FieldError::invalid(&requests_path, shown(quantity), &detail));
                        }
                    }
                    Some((_, Err(_))) => {}
                    None if !overcommit_allowed(resource) => {
                        errors.push(FieldError::required(&format!("{path}.limits"), "Limit must be set for non overcommitable resources"));
                    }
                    None => {}
                }
            }
            hugepages |= resource.starts_with("hugepages-");
            cpu_or_memory |= resource == "cpu" || resource == "memory";
        }
    }
    if hugepages && !cpu_or_memory {
        errors.push(FieldError::forbidden(path, "HugePages require cpu or memory"));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::pod::decode_and_default;

    /// The errors for `spec`, decoded and defaulted as a create sends it.
    fn errors_of(spec: Value) -> Vec<String> {
        errors_of_pod(json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": spec}))
    }

    fn errors_of_pod(pod: Value) -> Vec<String> {
        let mut pod = Object::from_value(pod).unwrap();
        decode_and_default(&mut pod).unwrap();
        validate(&pod).iter().map(ToString::to_string).collect()
    }

    /// A spec with one valid container, `container` merged into it.
    fn with_container(container: Value) -> Value {
        let mut base = json!({"name": "app", "image": "busybox"});
        if let (Value::Object(base), Value::Object(extra)) = (&mut base, container) {
            base.extend(extra);
        }
        json!({"containers": [base]})
    }

    const LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
    const SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

    #[test]
    fn a_full_valid_pod_passes() {
        let spec = json!({
            "serviceAccountName": "bot", "nodeName": "node-1.example", "hostname": "web", "subdomain": "svc",
            "activeDeadlineSeconds": 600, "restartPolicy": "OnFailure", "dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.1"]},
            "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "1Gi"}}, {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
                        {"name": "creds", "secret": {"secretName": "creds"}}],
            "initContainers": [{"name": "init", "image": "busybox:1.36", "command": ["true"], "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                               {"name": "sidecar", "image": "envoy", "restartPolicy": "Always", "livenessProbe": {"tcpSocket": {"port": 80}}}],
            "containers": [{
                "name": "app", "image": "registry.example:5000/app@sha256:abc", "imagePullPolicy": "Never",
                "ports": [{"name": "http", "containerPort": 8080, "hostPort": 80}, {"name": "dns", "containerPort": 53, "protocol": "UDP"}, {"containerPort": 9090}],
                "env": [{"name": "MODE", "value": "prod"}, {"name": "my.env-name with spaces", "value": "x"},
                        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "settings"}}, {"secretRef": {"name": "creds"}}],
                "volumeMounts": [{"name": "data", "mountPath": "/data", "subPath": "app"}, {"name": "token", "mountPath": "/var/run/token", "readOnly": true, "recursiveReadOnly": "IfPossible"}],
                "resources": {"requests": {"cpu": "500m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi", "hugepages-2Mi": "4Mi"}},
            }, {"name": "second", "image": "busybox", "ports": [{"name": "http", "containerPort": 8081, "hostPort": 81}]}],
        });
        assert_eq!(errors_of(spec), Vec::<String>::new());
        // A bare pod with one container is valid too.
        assert_eq!(errors_of(with_container(json!({}))), Vec::<String>::new());
    }

    #[test]
    fn a_pod_needs_containers_with_names_and_images() {
        assert_eq!(errors_of(json!({})), ["spec.containers: Required value"]);
        assert_eq!(errors_of(json!({"containers": []})), ["spec.containers: Required value"]);
        assert_eq!(errors_of(json!({"containers": [{}]})), ["spec.containers[0].name: Required value", "spec.containers[0].image: Required value"]);
        assert_eq!(errors_of(with_container(json!({"image": ""}))), ["spec.containers[0].image: Required value"]);
        assert_eq!(errors_of(with_container(json!({"name": "Web_1"}))), [format!(r#"spec.containers[0].name: Invalid value: "Web_1": {LABEL}"#)]);
        assert_eq!(errors_of(with_container(json!({"name": "a.b"}))), [r#"spec.containers[0].name: Invalid value: "a.b": must not contain dots"#]);
        // Whitespace around an image is refused after the rest of the spec; an image of spaces is
        // not empty to kube.
        assert_eq!(
            errors_of(json!({"restartPolicy": "Sometimes", "containers": [{"name": "a", "image": " busybox"}]})),
            [
                r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never""#,
                r#"spec.containers[0].image: Invalid value: " busybox": must not have leading or trailing whitespace"#,
            ]
        );
        assert_eq!(errors_of(with_container(json!({"image": "  "}))), [r#"spec.containers[0].image: Invalid value: "  ": must not have leading or trailing whitespace"#]);
        // Not a list, or an item that is not an object: read as kube's decoder would not, but
        // without a panic.
        assert_eq!(errors_of(json!({"containers": "app"})), ["spec.containers: Required value"]);
        assert_eq!(errors_of(json!({"containers": [7]})), ["spec.containers[0].name: Required value", "spec.containers[0].image: Required value", "spec.containers[0].terminationMessagePolicy: Required value", "spec.containers[0].imagePullPolicy: Required value"]);
    }

    #[test]
    fn container_names_are_unique_across_containers_and_init_containers() {
        let spec = json!({"containers": [{"name": "a", "image": "x"}, {"name": "a", "image": "x"}],
                          "initContainers": [{"name": "a", "image": "x"}, {"name": "i", "image": "x"}, {"name": "i", "image": "x"}]});
        assert_eq!(
            errors_of(spec),
            [r#"spec.containers[1].name: Duplicate value: "a""#, r#"spec.initContainers[0].name: Duplicate value: "a""#, r#"spec.initContainers[2].name: Duplicate value: "i""#]
        );
        let init = json!({"containers": [{"name": "a", "image": "x"}], "initContainers": [{"image": ""}]});
        assert_eq!(errors_of(init), ["spec.initContainers[0].name: Required value", "spec.initContainers[0].image: Required value"]);
    }

    #[test]
    fn policies_take_kubes_values() {
        assert_eq!(
            errors_of(with_container(json!({"imagePullPolicy": "Sometimes"}))),
            [r#"spec.containers[0].imagePullPolicy: Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never""#]
        );
        assert_eq!(
            errors_of(with_container(json!({"terminationMessagePolicy": "Log"}))),
            [r#"spec.containers[0].terminationMessagePolicy: Unsupported value: "Log": supported values: "File", "FallbackToLogsOnError""#]
        );
        let mut spec = with_container(json!({}));
        spec["dnsPolicy"] = json!("Cluster");
        assert_eq!(
            errors_of(spec),
            [r#"spec.dnsPolicy: Unsupported value: "Cluster": supported values: "ClusterFirstWithHostNet", "ClusterFirst", "Default", "None""#]
        );
        let mut none = with_container(json!({}));
        none["dnsPolicy"] = json!("None");
        assert_eq!(errors_of(none.clone()), ["spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"]);
        none["dnsConfig"] = json!({"searches": ["a.example"]});
        assert_eq!(errors_of(none), ["spec.dnsConfig.nameservers: Required value: must provide at least one DNS nameserver when `dnsPolicy` is None"]);
        // Only init containers may restart Always.
        assert_eq!(errors_of(with_container(json!({"restartPolicy": "Always"}))), ["spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers"]);
        let init = |extra: Value| {
            let mut spec = with_container(json!({}));
            let mut container = json!({"name": "init", "image": "x"});
            if let (Value::Object(c), Value::Object(extra)) = (&mut container, extra) {
                c.extend(extra);
            }
            spec["initContainers"] = json!([container]);
            errors_of(spec)
        };
        assert_eq!(init(json!({"restartPolicy": "Never"})), [r#"spec.initContainers[0].restartPolicy: Unsupported value: "Never": supported values: "Always""#]);
        assert_eq!(
            init(json!({"livenessProbe": {"exec": {"command": ["true"]}}, "lifecycle": {}})),
            [
                "spec.initContainers[0].lifecycle: Forbidden: may not be set for init containers without restartPolicy=Always",
                "spec.initContainers[0].livenessProbe: Forbidden: may not be set for init containers without restartPolicy=Always",
            ]
        );
        assert_eq!(init(json!({"restartPolicy": "Always", "livenessProbe": {"exec": {"command": ["true"]}}})), Vec::<String>::new());
    }

    #[test]
    fn ports_follow_kubes_rules() {
        let ports = |ports: Value| errors_of(with_container(json!({"ports": ports})));
        assert_eq!(ports(json!([{}])), ["spec.containers[0].ports[0].containerPort: Required value"]);
        assert_eq!(
            ports(json!([{"containerPort": 70000, "hostPort": -1, "protocol": "HTTP"}])),
            [
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.containers[0].ports[0].hostPort: Invalid value: -1: must be between 1 and 65535, inclusive",
                r#"spec.containers[0].ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP""#,
            ]
        );
        assert_eq!(
            ports(json!([{"name": "-Web--too-long-name", "containerPort": 80}])),
            [
                r#"spec.containers[0].ports[0].name: Invalid value: "-Web--too-long-name": must be no more than 15 characters"#,
                r#"spec.containers[0].ports[0].name: Invalid value: "-Web--too-long-name": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"#,
                r#"spec.containers[0].ports[0].name: Invalid value: "-Web--too-long-name": must not contain consecutive hyphens"#,
                r#"spec.containers[0].ports[0].name: Invalid value: "-Web--too-long-name": must not begin or end with a hyphen"#,
            ]
        );
        assert_eq!(ports(json!([{"name": "8080", "containerPort": 80}])), [r#"spec.containers[0].ports[0].name: Invalid value: "8080": must contain at least one letter (a-z)"#]);
        assert_eq!(
            ports(json!([{"name": "http", "containerPort": 80}, {"name": "http", "containerPort": 81}])),
            [r#"spec.containers[0].ports[1].name: Duplicate value: "http""#]
        );
        // Host ports are unique per protocol and IP across the containers; each init container
        // runs alone.
        let spec = json!({"containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 53, "hostPort": 8080, "protocol": "UDP"}]},
                                         {"name": "b", "image": "x", "ports": [{"containerPort": 81, "hostPort": 8080}]}],
                          "initContainers": [{"name": "i", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}]}]});
        assert_eq!(errors_of(spec), [r#"spec.containers[1].ports[0].hostPort: Duplicate value: "TCP//8080""#]);
        // Within one init container a host port twice is a conflict, named at index 0 as kube
        // names it (it checks each init container as a list of one).
        let init = json!({"containers": [{"name": "a", "image": "x"}],
                          "initContainers": [{"name": "i", "image": "x"}, {"name": "j", "image": "x", "ports": [{"containerPort": 80, "hostPort": 9090}, {"containerPort": 81, "hostPort": 9090}]}]});
        assert_eq!(errors_of(init), [r#"spec.initContainers[0].ports[1].hostPort: Duplicate value: "TCP//9090""#]);
        // On the host's network a host port is the container port (the defaults fill it in).
        let host = json!({"hostNetwork": true, "containers": [{"name": "a", "image": "x", "ports": [{"containerPort": 80}, {"containerPort": 81, "hostPort": 8081}]}]});
        assert_eq!(errors_of(host), ["spec.containers[0].ports[1].hostPort: Invalid value: 8081: must match `containerPort` when `hostNetwork` is true"]);
    }

    #[test]
    fn env_names_and_sources_follow_kubes_rules() {
        let env = |env: Value| errors_of(with_container(json!({"env": env})));
        assert_eq!(
            env(json!([{"value": "x"}, {"name": "A=B"}, {"name": "caf\u{e9}"}, {"name": "1ST"}])),
            [
                "spec.containers[0].env[0].name: Required value",
                r#"spec.containers[0].env[1].name: Invalid value: "A=B": a valid environment variable name must consist only of printable ASCII characters other than '='"#,
                r#"spec.containers[0].env[2].name: Invalid value: "café": a valid environment variable name must consist only of printable ASCII characters other than '='"#,
            ]
        );
        assert_eq!(
            env(json!([{"name": "A", "valueFrom": {}}])),
            [r#"spec.containers[0].env[0].valueFrom: Invalid value: "": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"#]
        );
        assert_eq!(
            env(json!([{"name": "A", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}])),
            [r#"spec.containers[0].env[0].valueFrom: Invalid value: "": may not be specified when `value` is not empty"#]
        );
        assert_eq!(
            env(json!([{"name": "A", "valueFrom": {"secretKeyRef": {"name": "Creds", "key": ""}, "configMapKeyRef": {"name": "c", "key": "../k"}}}])),
            [
                r#"spec.containers[0].env[0].valueFrom.configMapKeyRef.key: Invalid value: "../k": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"#,
                r#"spec.containers[0].env[0].valueFrom.configMapKeyRef.key: Invalid value: "../k": must not start with '..'"#,
                &format!(r#"spec.containers[0].env[0].valueFrom.secretKeyRef.name: Invalid value: "Creds": {SUBDOMAIN}"#),
                "spec.containers[0].env[0].valueFrom.secretKeyRef.key: Required value",
                r#"spec.containers[0].env[0].valueFrom: Invalid value: "": may not have more than one field specified at a time"#,
            ]
        );
        let from = |env_from: Value| errors_of(with_container(json!({"envFrom": env_from})));
        assert_eq!(from(json!([{"prefix": "P_", "secretRef": {"name": "s-"}}])), Vec::<String>::new(), "a name checked as a prefix");
        assert_eq!(
            from(json!([{"prefix": "A=", "configMapRef": {}}, {}, {"configMapRef": {"name": "c"}, "secretRef": {"name": "s"}}])),
            [
                r#"spec.containers[0].envFrom[0].prefix: Invalid value: "A=": a valid environment variable name must consist only of printable ASCII characters other than '='"#,
                "spec.containers[0].envFrom[0].configMapRef.name: Required value",
                r#"spec.containers[0].envFrom: Invalid value: "": must specify one of: `configMapRef` or `secretRef`"#,
                r#"spec.containers[0].envFrom: Invalid value: "": may not have more than one field specified at a time"#,
            ]
        );
    }

    #[test]
    fn volumes_and_mounts_follow_kubes_rules() {
        let spec = json!({
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "data", "emptyDir": {}}, {"name": "Bad", "secret": {"secretName": "s"}},
                        {"name": "two", "emptyDir": {}, "configMap": {"name": "c"}, "downwardAPI": {}}, {"name": "none"}, {"emptyDir": {"sizeLimit": "-1Gi"}}],
            "containers": [{"name": "a", "image": "x", "volumeMounts": [
                {"name": "data", "mountPath": "/data"}, {"name": "missing", "mountPath": "/data"}, {"name": "Bad", "mountPath": "/b"}, {"mountPath": ""},
                {"name": "data", "mountPath": "/c", "subPath": "/abs/../x", "subPathExpr": "$(POD)"},
                {"name": "data", "mountPath": "/d", "mountPropagation": "Bidirectional", "recursiveReadOnly": "Enabled"},
                {"name": "data", "mountPath": "/e", "mountPropagation": "Sideways", "recursiveReadOnly": "Always"},
            ]}],
        });
        assert_eq!(
            errors_of(spec),
            [
                r#"spec.volumes[1].name: Duplicate value: "data""#,
                &format!(r#"spec.volumes[2].name: Invalid value: "Bad": {LABEL}"#),
                "spec.volumes[3].downwarAPI: Forbidden: may not specify more than 1 volume type",
                "spec.volumes[3].configMap: Forbidden: may not specify more than 1 volume type",
                "spec.volumes[4]: Required value: must specify a volume type",
                "spec.volumes[5].emptyDir.sizeLimit: Forbidden: SizeLimit field must be a valid resource quantity",
                "spec.volumes[5].name: Required value",
                r#"spec.containers[0].volumeMounts[1].name: Not found: "missing""#,
                r#"spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/data": must be unique"#,
                r#"spec.containers[0].volumeMounts[2].name: Not found: "Bad""#,
                "spec.containers[0].volumeMounts[3].name: Required value",
                r#"spec.containers[0].volumeMounts[3].name: Not found: """#,
                "spec.containers[0].volumeMounts[3].mountPath: Required value",
                r#"spec.containers[0].volumeMounts.subPath: Invalid value: "/abs/../x": must be a relative path"#,
                r#"spec.containers[0].volumeMounts.subPath: Invalid value: "/abs/../x": must not contain '..'"#,
                r#"spec.containers[0].volumeMounts[4].subPathExpr: Invalid value: "$(POD)": subPathExpr and subPath are mutually exclusive"#,
                "spec.containers[0].volumeMounts.mountPropagation: Forbidden: Bidirectional mount propagation is available only to privileged containers",
                "spec.containers[0].volumeMounts.recursiveReadOnly: Forbidden: may only be specified when readOnly is true",
                "spec.containers[0].volumeMounts.recursiveReadOnly: Forbidden: may only be specified when mountPropagation is None or not specified",
                r#"spec.containers[0].volumeMounts.mountPropagation: Unsupported value: "Sideways": supported values: "Bidirectional", "HostToContainer", "None""#,
                r#"spec.containers[0].volumeMounts.recursiveReadOnly: Unsupported value: "Always": supported values: "Disabled", "Enabled", "IfPossible""#,
            ]
        );
        let mut privileged = with_container(json!({"securityContext": {"privileged": true}, "volumeMounts": [{"name": "v", "mountPath": "/v", "mountPropagation": "Bidirectional"}]}));
        privileged["volumes"] = json!([{"name": "v", "hostPath": {"path": "/v"}}]);
        assert_eq!(errors_of(privileged), Vec::<String>::new());
    }

    #[test]
    fn requests_stay_within_limits() {
        let resources = |resources: Value| errors_of(with_container(json!({"resources": resources})));
        assert_eq!(
            resources(json!({"requests": {"cpu": "2", "memory": "1.5Gi"}, "limits": {"cpu": "1000m", "memory": "1Gi"}})),
            [
                r#"spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1"#,
                r#"spec.containers[0].resources.requests: Invalid value: "1536Mi": must be less than or equal to memory limit of 1Gi"#,
            ]
        );
        // Limits alone are the requests too (the defaults copy them).
        assert_eq!(resources(json!({"limits": {"cpu": "1", "example.com/gpu": "1"}})), Vec::<String>::new());
        assert_eq!(
            resources(json!({"requests": {"cpu": "-100m", "example.com/gpu": "1"}, "limits": {"hugepages-2Mi": "2Mi"}})),
            [
                r#"spec.containers[0].resources.requests[cpu]: Invalid value: "-100m": must be greater than or equal to 0"#,
                "spec.containers[0].resources.limits: Required value: Limit must be set for non overcommitable resources",
            ]
        );
        assert_eq!(
            resources(json!({"requests": {"hugepages-2Mi": "2Mi"}, "limits": {"hugepages-2Mi": "4Mi"}})),
            [
                r#"spec.containers[0].resources.requests: Invalid value: "2Mi": must be equal to hugepages-2Mi limit of 4Mi"#,
                "spec.containers[0].resources: Forbidden: HugePages require cpu or memory",
            ]
        );
    }

    #[test]
    fn pod_fields_follow_kubes_rules() {
        let spec = |extra: Value| {
            let mut spec = with_container(json!({}));
            if let (Value::Object(spec), Value::Object(extra)) = (&mut spec, extra) {
                spec.extend(extra);
            }
            errors_of(spec)
        };
        assert_eq!(
            spec(json!({"serviceAccountName": "Bot", "nodeName": "node_1", "activeDeadlineSeconds": 0, "hostname": "web.example", "subdomain": "-svc"})),
            [
                format!(r#"spec.serviceAccountName: Invalid value: "Bot": {SUBDOMAIN}"#),
                format!(r#"spec.nodeName: Invalid value: "node_1": {SUBDOMAIN}"#),
                "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive".to_owned(),
                r#"spec.hostname: Invalid value: "web.example": must not contain dots"#.to_owned(),
                format!(r#"spec.subdomain: Invalid value: "-svc": {LABEL}"#),
            ]
        );
        assert_eq!(spec(json!({"activeDeadlineSeconds": 2_147_483_648_i64})), ["spec.activeDeadlineSeconds: Invalid value: 2147483648: must be between 1 and 2147483647, inclusive"]);
        // kube sets no bound on the grace period (a negative one is allowed to become 1 on update).
        assert_eq!(spec(json!({"terminationGracePeriodSeconds": -5})), Vec::<String>::new());
        assert_eq!(spec(json!({"terminationGracePeriodSeconds": "30"})), ["spec.terminationGracePeriodSeconds: Required value"]);
        let mirror = json!({"metadata": {"name": "m", "annotations": {"kubernetes.io/config.mirror": "hash"}}, "spec": with_container(json!({}))});
        assert_eq!(
            errors_of_pod(mirror),
            [r#"metadata.annotations[kubernetes.io/config.mirror]: Invalid value: "hash": must set spec.nodeName if mirror pod annotation is set"#]
        );
    }

    #[test]
    fn errors_come_in_kubes_order() {
        let spec = json!({
            "restartPolicy": "Sometimes", "serviceAccountName": "Bot",
            "volumes": [{"name": "v"}],
            "initContainers": [{"name": "init"}],
            "containers": [{"name": "app", "image": " x", "ports": [{"containerPort": 0}]}, {"name": "app", "image": "y", "volumeMounts": [{"name": "v", "mountPath": "/v"}]}],
        });
        assert_eq!(
            errors_of(spec),
            [
                "spec.volumes[0]: Required value: must specify a volume type".to_owned(),
                "spec.containers[0].ports[0].containerPort: Required value".to_owned(),
                r#"spec.containers[1].volumeMounts[0].name: Not found: "v""#.to_owned(),
                r#"spec.containers[1].name: Duplicate value: "app""#.to_owned(),
                "spec.initContainers[0].image: Required value".to_owned(),
                r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never""#.to_owned(),
                format!(r#"spec.serviceAccountName: Invalid value: "Bot": {SUBDOMAIN}"#),
                r#"spec.containers[0].image: Invalid value: " x": must not have leading or trailing whitespace"#.to_owned(),
            ]
        );
    }

    #[test]
    fn an_image_volume_has_no_volume_type_in_1_32() {
        let spec = json!({"volumes": [{"name": "model", "image": {"reference": "registry.example/model:1"}}], "containers": [{"name": "a", "image": "x"}]});
        assert_eq!(errors_of(spec), ["spec.volumes[0]: Required value: must specify a volume type"]);
    }

    #[test]
    fn a_flood_of_list_items_is_answered_with_the_first_thousand_errors() {
        let mounts: Vec<Value> = (0..50_000).map(|_| json!({})).collect();
        let errors = errors_of(with_container(json!({"volumeMounts": mounts})));
        assert_eq!(errors.len(), MAX_ERRORS);
        assert_eq!(errors[0], "spec.containers[0].volumeMounts[0].name: Required value");
    }

    #[test]
    fn no_json_panics_it() {
        let odd = [json!(null), json!(1), json!("x"), json!([]), json!([null]), json!({}), json!([{"a": 1}]), json!(-1), json!(1e300), json!(true)];
        let keys = ["containers", "initContainers", "volumes", "restartPolicy", "dnsPolicy", "dnsConfig", "hostNetwork", "activeDeadlineSeconds", "nodeName"];
        let container_keys = ["name", "image", "ports", "env", "envFrom", "volumeMounts", "resources", "restartPolicy", "livenessProbe"];
        for value in &odd {
            for key in keys {
                let _ = errors_of(json!({key: value}));
            }
            for key in container_keys {
                let _ = errors_of(json!({"containers": [{key: value}], "initContainers": [{key: value}]}));
                let _ = errors_of(json!({"containers": [{"ports": [{key: value, "containerPort": value, "hostPort": value, "name": value, "protocol": value}],
                                                          "env": [{"name": value, "valueFrom": {"secretKeyRef": value, "configMapKeyRef": {"name": value, "key": value}}}],
                                                          "envFrom": [{"prefix": value, "secretRef": value}],
                                                          "volumeMounts": [{"name": value, "mountPath": value, "subPath": value, "mountPropagation": value}],
                                                          "resources": {"limits": {"cpu": "1"}, "requests": value}}],
                                         "volumes": [{"name": value, "emptyDir": value}]}));
            }
        }
    }
}
