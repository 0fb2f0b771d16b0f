//! Decoding a pod and the API's defaults: what kube's v1 defaulters (`SetObjectDefaults_Pod`)
//! fill in, so that `kubectl get pod -o yaml` shows what kube's shows and field selectors such
//! as `spec.restartPolicy=Always` match.

use serde_json::{Map, Value, json};

use super::{CONTAINER_LISTS, containers_mut};
use crate::quantity::Quantity;
use crate::{Error, Object};

/// Decoding and the API's defaults (kube's `SetDefaults_Pod`, `_PodSpec`, `_Container`,
/// `_ContainerPort`, `_Probe`, `_HTTPGetAction`, `_ObjectFieldSelector`, `_Volume` and those of
/// each volume source): every quantity must be one (400, as kube's decoder answers) and is kept
/// in canonical form, those of resource lists (requests, limits, the overhead) rounded up to a
/// thousandth; a limit is also the request where none is named; and the fields kube fills in
/// are filled in where empty.
pub fn decode_and_default(pod: &mut Object) -> Result<(), Error> {
    let spec = pod.0.entry("spec").or_insert(Value::Null);
    if spec.is_null() {
        *spec = json!({});
    }
    let Value::Object(spec) = spec else {
        return Ok(());
    };
    // kube's v1 conversion: the deprecated `serviceAccount` names the account where
    // `serviceAccountName` does not, and is written back as its copy.
    let named = ["serviceAccountName", "serviceAccount"].iter().find_map(|k| spec.get(*k).and_then(Value::as_str).filter(|n| !n.is_empty()).map(str::to_owned));
    if let Some(name) = named {
        spec.insert("serviceAccountName".into(), name.clone().into());
        spec.insert("serviceAccount".into(), name.into());
    }
    for container in containers_mut(spec, "ephemeralContainers") {
        decode_quantities(container)?;
    }
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    for list in CONTAINER_LISTS {
        for container in containers_mut(spec, list) {
            decode_quantities(container)?;
            default_container(container, host_network);
        }
    }
    for volume in items_mut(spec, "volumes") {
        decode_and_default_volume(volume)?;
    }
    if let Some(overhead) = object_mut(spec, "overhead") {
        decode_resource_list(overhead)?;
    }
    // Pod-level resources are decoded before their disabled gate drops them.
    if let Some(resources) = object_mut(spec, "resources") {
        decode_requirements(resources)?;
    }
    set_default(spec, "dnsPolicy", "ClusterFirst");
    set_default(spec, "restartPolicy", "Always");
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "terminationGracePeriodSeconds", 30);
    set_default(spec, "schedulerName", "default-scheduler");
    set_default(spec, "enableServiceLinks", true);
    Ok(())
}

/// A container's quantities as kube decodes them: its requests and limits (see
/// [`decode_requirements`]) and its env's `resourceFieldRef` divisors.
fn decode_quantities(container: &mut Map<String, Value>) -> Result<(), Error> {
    if let Some(resources) = object_mut(container, "resources") {
        decode_requirements(resources)?;
    }
    for env in items_mut(container, "env") {
        if let Some(selector) = object_mut(env, "valueFrom").and_then(|from| object_mut(from, "resourceFieldRef")) {
            decode_divisor(selector)?;
        }
    }
    Ok(())
}

/// Requests and limits, each a resource list.
fn decode_requirements(resources: &mut Map<String, Value>) -> Result<(), Error> {
    for part in ["requests", "limits"] {
        if let Some(list) = object_mut(resources, part) {
            decode_resource_list(list)?;
        }
    }
    Ok(())
}

/// A resource list as kube decodes and defaults it (`SetDefaults_ResourceList`): each value a
/// quantity, kept as [`Quantity::stored_json`] writes it.
fn decode_resource_list(list: &mut Map<String, Value>) -> Result<(), Error> {
    for quantity in list.values_mut() {
        *quantity = Value::String(Quantity::stored_json(quantity).map_err(undecodable)?);
    }
    Ok(())
}

/// A `resourceFieldRef`'s divisor: a quantity in canonical form, and `0` when absent, as Go
/// writes a `Quantity` that is not a pointer (`omitempty` leaves no struct out).
fn decode_divisor(selector: &mut Map<String, Value>) -> Result<(), Error> {
    let divisor = selector.get("divisor").unwrap_or(&Value::Null);
    let canonical = Quantity::canonical_json(divisor).map_err(undecodable)?;
    selector.insert("divisor".to_owned(), Value::String(canonical));
    Ok(())
}

/// The 400 kube's decoder answers for a value that is not a quantity.
fn undecodable(reason: &str) -> Error {
    Error::BadRequest(format!("Pod in version \"v1\" cannot be handled as a Pod: {reason}"))
}

/// A container's defaults: requests from limits, the pull policy from the image's tag, the
/// termination message's, the ports' protocol (and, on the host's network, their host port).
fn default_container(container: &mut Map<String, Value>, host_network: bool) {
    if let Some(Value::Object(resources)) = container.get_mut("resources")
        && let Some(Value::Object(limits)) = resources.get("limits").cloned()
    {
        let requests = resources.entry("requests").or_insert(Value::Null);
        if requests.is_null() {
            *requests = json!({});
        }
        if let Value::Object(requests) = requests {
            for (name, limit) in limits {
                requests.entry(name).or_insert(limit);
            }
        }
    }
    let pull = image_pull_policy(container.get("image").and_then(Value::as_str).unwrap_or_default());
    set_default(container, "imagePullPolicy", pull);
    set_default(container, "terminationMessagePath", "/dev/termination-log");
    set_default(container, "terminationMessagePolicy", "File");
    for port in container.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten().filter_map(Value::as_object_mut) {
        set_default(port, "protocol", "TCP");
        if host_network
            && port.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0
            && let Some(container_port) = port.get("containerPort").filter(|p| p.is_number()).cloned()
        {
            port.insert("hostPort".into(), container_port);
        }
    }
    for env in items_mut(container, "env") {
        if let Some(field_ref) = object_mut(env, "valueFrom").and_then(|from| object_mut(from, "fieldRef")) {
            set_default(field_ref, "apiVersion", "v1");
        }
    }
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(probe) = object_mut(container, key) {
            default_probe(probe);
        }
    }
    if let Some(lifecycle) = object_mut(container, "lifecycle") {
        for key in ["postStart", "preStop"] {
            if let Some(http_get) = object_mut(lifecycle, key).and_then(|handler| object_mut(handler, "httpGet")) {
                default_http_get(http_get);
            }
        }
    }
}

/// `SetDefaults_Probe`, with its handler's: the zero timings become kube's.
fn default_probe(probe: &mut Map<String, Value>) {
    for (key, seconds) in [("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1), ("failureThreshold", 3)] {
        if probe.get(key).is_none_or(|v| v.is_null() || v.as_i64() == Some(0)) {
            probe.insert(key.to_owned(), seconds.into());
        }
    }
    if let Some(http_get) = object_mut(probe, "httpGet") {
        default_http_get(http_get);
    }
    // GRPCAction's `service` is `+default=""`.
    if let Some(grpc) = object_mut(probe, "grpc") {
        set_absent(grpc, "service", "");
    }
}

fn default_http_get(http_get: &mut Map<String, Value>) {
    set_default(http_get, "path", "/");
    set_default(http_get, "scheme", "HTTP");
}

/// A volume's quantities as kube decodes them (an emptyDir's size limit, the divisors of its
/// downward API files, an ephemeral volume's claim requests and limits), then
/// `SetDefaults_Volume` and the sources' own: a volume that names no source is an emptyDir
/// (kube's decoder leaves every source pointer nil); files are written with mode 0644; a
/// projected token lives an hour; the in-tree drivers get their documented defaults.
fn decode_and_default_volume(volume: &mut Map<String, Value>) -> Result<(), Error> {
    if let Some(limit) = object_mut(volume, "emptyDir").and_then(|dir| dir.get_mut("sizeLimit")).filter(|l| !l.is_null()) {
        *limit = Value::String(Quantity::canonical_json(limit).map_err(undecodable)?);
    }
    if !crate::pod_spec::names_a_source(volume) {
        volume.insert("emptyDir".into(), json!({}));
    }
    if let Some(host_path) = object_mut(volume, "hostPath") {
        set_absent(host_path, "type", "");
    }
    for key in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(source) = object_mut(volume, key) {
            set_absent(source, "defaultMode", 0o644);
        }
    }
    if let Some(downward) = object_mut(volume, "downwardAPI") {
        decode_and_default_files(downward)?;
    }
    if let Some(projected) = object_mut(volume, "projected") {
        for source in items_mut(projected, "sources") {
            if let Some(downward) = object_mut(source, "downwardAPI") {
                decode_and_default_files(downward)?;
            }
            if let Some(token) = object_mut(source, "serviceAccountToken") {
                set_absent(token, "expirationSeconds", 3600);
            }
        }
    }
    if let Some(iscsi) = object_mut(volume, "iscsi") {
        set_default(iscsi, "iscsiInterface", "default");
    }
    if let Some(rbd) = object_mut(volume, "rbd") {
        set_default(rbd, "pool", "rbd");
        set_default(rbd, "user", "admin");
        set_default(rbd, "keyring", "/etc/ceph/keyring");
    }
    if let Some(azure) = object_mut(volume, "azureDisk") {
        set_absent(azure, "cachingMode", "ReadWrite");
        set_absent(azure, "fsType", "ext4");
        set_absent(azure, "readOnly", false);
        set_absent(azure, "kind", "Shared");
    }
    if let Some(scale_io) = object_mut(volume, "scaleIO") {
        set_default(scale_io, "storageMode", "ThinProvisioned");
        set_default(scale_io, "fsType", "xfs");
    }
    let claim = object_mut(volume, "ephemeral").and_then(|e| object_mut(e, "volumeClaimTemplate")).and_then(|t| object_mut(t, "spec"));
    if let Some(claim) = claim {
        set_absent(claim, "volumeMode", "Filesystem");
        if let Some(resources) = object_mut(claim, "resources") {
            decode_requirements(resources)?;
        }
    }
    Ok(())
}

/// A downward API's items: each `fieldRef` is read in API version v1 unless it names one.
/// A downward API volume's files: a field's API version, a resource's divisor.
fn decode_and_default_files(downward: &mut Map<String, Value>) -> Result<(), Error> {
    for item in items_mut(downward, "items") {
        if let Some(field_ref) = object_mut(item, "fieldRef") {
            set_default(field_ref, "apiVersion", "v1");
        }
        if let Some(selector) = object_mut(item, "resourceFieldRef") {
            decode_divisor(selector)?;
        }
    }
    Ok(())
}

fn object_mut<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    map.get_mut(key).and_then(Value::as_object_mut)
}

fn items_mut<'a>(map: &'a mut Map<String, Value>, key: &str) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    map.get_mut(key).and_then(Value::as_array_mut).into_iter().flatten().filter_map(Value::as_object_mut)
}

/// Sets `key` where it is absent or null (a pointer field kube's defaulter finds nil).
fn set_absent(map: &mut Map<String, Value>, key: &str, value: impl Into<Value>) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.to_owned(), value.into());
    }
}

/// Sets `key` where it is absent, null or an empty string (Go's zero value of the field).
fn set_default(map: &mut Map<String, Value>, key: &str, value: impl Into<Value>) {
    let empty = match map.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    };
    if empty {
        map.insert(key.to_owned(), value.into());
    }
}

/// `SetDefaults_Container`'s pull policy: Always for the `latest` tag (which an image with
/// neither tag nor digest means), IfNotPresent otherwise.
pub(super) fn image_pull_policy(image: &str) -> &'static str {
    let (name, digest) = image.split_once('@').map_or((image, false), |(name, _)| (name, true));
    let last = name.rsplit('/').next().unwrap_or(name);
    let repository = last.rsplit_once(':').map_or(last, |(repository, _)| repository);
    // A reference kube cannot parse (a repository must be lower case) has no tag to it.
    if image.chars().any(char::is_whitespace) || repository.chars().any(|c| c.is_ascii_uppercase()) {
        return "IfNotPresent";
    }
    match last.rsplit_once(':').map(|(_, tag)| tag) {
        Some("latest") => "Always",
        Some(_) => "IfNotPresent",
        None if digest || image.is_empty() => "IfNotPresent",
        None => "Always",
    }
}

