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
//! checked (beta from 1.31), no image volumes (a create drops them first, with their mounts:
//! [`crate::pod::drop_disabled_fields`]). At most 1,000 errors are answered (kube: all).

use std::collections::HashSet;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use crate::error::{MAX_ERRORS, go_quote};
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

/// The errors found so far, the first [`MAX_ERRORS`] of them (kube: all of them).
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
/// `image`: its gate (ImageVolume) is off by default through 1.32, whose pod strategy drops it.
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

/// Whether a volume names a source: kube's decoder leaves every source of one that does not
/// nil, and `SetDefaults_Volume` makes it an emptyDir. Any value but null names one: a source
/// that is not an object (kube's decoder refuses it) is refused by validation, not defaulted
/// away. An image volume names one too, and is dropped later ([`crate::pod::drop_disabled_fields`]).
pub(crate) fn names_a_source(volume: &Map<String, Value>) -> bool {
    VOLUME_TYPES.iter().map(|(key, _)| *key).chain(["image"]).any(|key| volume.get(key).is_some_and(|source| !source.is_null()))
}

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
mod tests;
