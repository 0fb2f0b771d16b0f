//! Kubernetes objects as the JSON the client sent (unknown fields kept), with typed views of
//! the few fields the authority reads.

use serde_json::{Map, Value};

use crate::time::Timestamp;

/// A JSON field read as kube reads its typed field: the string, or `""` when missing or not one.
pub fn text_of(value: Option<&Value>) -> &str {
    value.and_then(Value::as_str).unwrap_or_default()
}

/// A JSON list read as kube reads its typed slice: the items, or none when missing or not a list.
pub fn items_of(value: Option<&Value>) -> &[Value] {
    value.and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

/// A resource type the store holds: enough to route, key and describe objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Resource {
    /// API group, `""` for core.
    pub group: &'static str,
    pub version: &'static str,
    /// Lower-case plural, the URL segment and the store key prefix.
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
}

impl Resource {
    pub const NAMESPACES: Self = Self::core("namespaces", "namespace", "Namespace", false);
    pub const SERVICE_ACCOUNTS: Self = Self::core("serviceaccounts", "serviceaccount", "ServiceAccount", true);
    pub const PODS: Self = Self::core("pods", "pod", "Pod", true);
    pub const SECRETS: Self = Self::core("secrets", "secret", "Secret", true);
    pub const NODES: Self = Self::core("nodes", "node", "Node", false);

    /// Authorino's AuthConfig, served so `kubectl apply -f authconfig.yaml` works.
    pub const AUTH_CONFIGS: Self = Self {
        group: "authorino.kuadrant.io",
        version: "v1beta3",
        plural: "authconfigs",
        singular: "authconfig",
        kind: "AuthConfig",
        namespaced: true,
    };

    pub const ROLES: Self = Self::rbac("roles", "role", "Role", true);
    pub const CLUSTER_ROLES: Self = Self::rbac("clusterroles", "clusterrole", "ClusterRole", false);
    pub const ROLE_BINDINGS: Self = Self::rbac("rolebindings", "rolebinding", "RoleBinding", true);
    pub const CLUSTER_ROLE_BINDINGS: Self = Self::rbac("clusterrolebindings", "clusterrolebinding", "ClusterRoleBinding", false);

    /// The RBAC resource types (`rbac.authorization.k8s.io/v1`).
    pub const RBAC: [Self; 4] = [Self::ROLES, Self::CLUSTER_ROLES, Self::ROLE_BINDINGS, Self::CLUSTER_ROLE_BINDINGS];

    /// The resource types of the authority core.
    pub const CORE: [Self; 5] =
        [Self::NAMESPACES, Self::SERVICE_ACCOUNTS, Self::PODS, Self::SECRETS, Self::NODES];

    /// Every resource type the authority stores (namespace deletion empties each of them).
    pub const STORED: [Self; 10] = [
        Self::NAMESPACES,
        Self::SERVICE_ACCOUNTS,
        Self::PODS,
        Self::SECRETS,
        Self::NODES,
        Self::AUTH_CONFIGS,
        Self::ROLES,
        Self::CLUSTER_ROLES,
        Self::ROLE_BINDINGS,
        Self::CLUSTER_ROLE_BINDINGS,
    ];

    const fn core(plural: &'static str, singular: &'static str, kind: &'static str, namespaced: bool) -> Self {
        Self { group: "", version: "v1", plural, singular, kind, namespaced }
    }

    const fn rbac(plural: &'static str, singular: &'static str, kind: &'static str, namespaced: bool) -> Self {
        Self { group: "rbac.authorization.k8s.io", version: "v1", plural, singular, kind, namespaced }
    }

    /// Whether the kind has a `status` subresource (as the AuthConfig CRD declares
    /// `subresources.status`, and Namespaces and Pods have in kube): its status is written only through
    /// `.../status`, and writes to the object itself keep the stored status.
    pub fn has_status_subresource(&self) -> bool {
        *self == Self::AUTH_CONFIGS || *self == Self::NAMESPACES || *self == Self::PODS
    }

    /// `apiVersion` as written in objects: `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The qualified resource used in API messages: `serviceaccounts`, `authconfigs.authorino.kuadrant.io`.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `group/plural`, unique across groups; the store's key prefix.
    pub fn key_prefix(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }
}

/// Where an object lives: resource, namespace (empty for cluster-scoped) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub prefix: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(resource: &Resource, namespace: &str, name: &str) -> Self {
        let namespace = if resource.namespaced { namespace } else { "" };
        Self { prefix: resource.key_prefix(), namespace: namespace.to_owned(), name: name.to_owned() }
    }
}

/// One object: the full JSON document. Accessors read `metadata` and the binding fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Object(pub Map<String, Value>);

impl Object {
    /// Wraps a JSON value; anything but an object is refused.
    pub fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Object(map) => Some(Self(map)),
            _ => None,
        }
    }

    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }

    pub fn value(&self) -> &Map<String, Value> {
        &self.0
    }

    fn metadata(&self) -> Option<&Map<String, Value>> {
        self.0.get("metadata")?.as_object()
    }

    /// `metadata`, created if absent or not an object.
    pub fn metadata_mut(&mut self) -> &mut Map<String, Value> {
        let entry = self.0.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        match entry {
            Value::Object(map) => map,
            _ => unreachable!("metadata was just made an object"),
        }
    }

    fn meta_str(&self, field: &str) -> &str {
        self.metadata().and_then(|m| m.get(field)).and_then(Value::as_str).unwrap_or("")
    }

    pub fn name(&self) -> &str {
        self.meta_str("name")
    }

    /// The name admission refusals give an object not yet created, as kube's do: its name,
    /// else its generateName (none is generated yet), else "Unknown".
    pub fn name_as_asked(&self) -> &str {
        let generate_name = self.str_at("metadata.generateName").filter(|g| !g.is_empty());
        if self.name().is_empty() { generate_name.unwrap_or("Unknown") } else { self.name() }
    }

    pub fn namespace(&self) -> &str {
        self.meta_str("namespace")
    }

    pub fn uid(&self) -> &str {
        self.meta_str("uid")
    }

    pub fn resource_version(&self) -> &str {
        self.meta_str("resourceVersion")
    }

    pub fn creation_timestamp(&self) -> Option<Timestamp> {
        Timestamp::parse_rfc3339(self.meta_str("creationTimestamp"))
    }

    pub fn deletion_timestamp(&self) -> Option<Timestamp> {
        Timestamp::parse_rfc3339(self.meta_str("deletionTimestamp"))
    }

    fn meta_map(&self, field: &str) -> Option<&Map<String, Value>> {
        self.metadata()?.get(field)?.as_object()
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.meta_map("labels")?.get(key)?.as_str()
    }

    pub fn labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.meta_map("labels").into_iter().flatten().filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.meta_map("annotations")?.get(key)?.as_str()
    }

    pub fn set_meta(&mut self, field: &str, value: impl Into<Value>) {
        self.metadata_mut().insert(field.to_owned(), value.into());
    }

    pub fn set_annotation(&mut self, key: &str, value: &str) {
        self.set_in_meta_map("annotations", key, value);
    }

    pub fn set_label(&mut self, key: &str, value: &str) {
        self.set_in_meta_map("labels", key, value);
    }

    fn set_in_meta_map(&mut self, map: &str, key: &str, value: &str) {
        let entries = self.metadata_mut().entry(map).or_insert_with(|| Value::Object(Map::new()));
        if !entries.is_object() {
            *entries = Value::Object(Map::new());
        }
        if let Value::Object(entries) = entries {
            entries.insert(key.to_owned(), Value::String(value.to_owned()));
        }
    }

    /// A string at a `.`-separated path, e.g. `spec.serviceAccountName`.
    pub fn str_at(&self, path: &str) -> Option<&str> {
        self.at(path)?.as_str()
    }

    /// The value at a `.`-separated path, e.g. `status.conditions`.
    pub fn at(&self, path: &str) -> Option<&Value> {
        let mut parts = path.split('.');
        let mut current = self.0.get(parts.next()?)?;
        for part in parts {
            current = current.as_object()?.get(part)?;
        }
        Some(current)
    }

    // --- The fields token binding reads ---

    /// Pod: `spec.serviceAccountName` (Kubernetes defaults it to `default`).
    pub fn pod_service_account(&self) -> &str {
        match self.str_at("spec.serviceAccountName") {
            Some(name) if !name.is_empty() => name,
            _ => "default",
        }
    }

    /// Pod: `spec.nodeName`, empty until scheduled.
    pub fn pod_node_name(&self) -> &str {
        self.str_at("spec.nodeName").unwrap_or("")
    }

    /// Secret: `type`, `Opaque` when absent (the Kubernetes default).
    pub fn secret_type(&self) -> &str {
        match self.0.get("type").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => t,
            _ => "Opaque",
        }
    }

    /// Secret: one base64-encoded `data` entry, decoded.
    pub fn secret_data(&self, key: &str) -> Option<Vec<u8>> {
        use base64::Engine as _;
        let encoded = self.0.get("data")?.as_object()?.get(key)?.as_str()?;
        base64::engine::general_purpose::STANDARD.decode(encoded).ok()
    }

    /// Secret: sets one `data` entry (base64-encoded as the API stores it).
    pub fn set_secret_data(&mut self, key: &str, value: &[u8]) {
        use base64::Engine as _;
        let data = self.0.entry("data").or_insert_with(|| Value::Object(Map::new()));
        if !data.is_object() {
            *data = Value::Object(Map::new());
        }
        if let Value::Object(map) = data {
            map.insert(key.to_owned(), Value::String(base64::engine::general_purpose::STANDARD.encode(value)));
        }
    }

    /// ServiceAccount: the number of `secrets` references (the SECRETS column of `kubectl get sa`).
    pub fn service_account_secret_count(&self) -> usize {
        self.0.get("secrets").and_then(Value::as_array).map_or(0, Vec::len)
    }
}

/// Secret type of long-lived ServiceAccount tokens.
pub const SERVICE_ACCOUNT_TOKEN_SECRET_TYPE: &str = "kubernetes.io/service-account-token";
/// Annotation naming the ServiceAccount of a token Secret.
pub const SERVICE_ACCOUNT_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
/// Annotation with the ServiceAccount uid of a token Secret (set by the tokens controller).
pub const SERVICE_ACCOUNT_UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";
/// Label that disables a legacy token (set by the legacy token cleaner).
pub const LEGACY_TOKEN_INVALID_SINCE_LABEL: &str = "kubernetes.io/legacy-token-invalid-since";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_binding_fields_and_keeps_unknown_ones() {
        let pod = Object::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "x"},
                         "deletionTimestamp": "2025-09-05T01:27:43Z"},
            "spec": {"serviceAccountName": "bot", "nodeName": "n1", "containers": [{"name": "c"}]},
        }))
        .unwrap();
        assert_eq!((pod.name(), pod.namespace(), pod.uid()), ("p", "ns", "u1"));
        assert_eq!(pod.pod_service_account(), "bot");
        assert_eq!(pod.pod_node_name(), "n1");
        assert_eq!(pod.label("app"), Some("x"));
        assert_eq!(pod.deletion_timestamp(), Some(Timestamp(1_757_035_663)));
        assert_eq!(pod.value()["spec"]["containers"][0]["name"], "c");
    }

    #[test]
    fn defaults_like_kubernetes() {
        let pod = Object::from_value(json!({"metadata": {"name": "p"}, "spec": {}})).unwrap();
        assert_eq!(pod.pod_service_account(), "default");
        let secret = Object::from_value(json!({"metadata": "garbage"})).unwrap();
        assert_eq!(secret.secret_type(), "Opaque");
        assert_eq!(secret.name(), "");
    }

    #[test]
    fn secret_data_is_base64() {
        let mut secret = Object::from_value(json!({"metadata": {"name": "s"}, "data": {"bad": "%%%"}})).unwrap();
        secret.set_secret_data("token", b"abc");
        assert_eq!(secret.value()["data"]["token"], "YWJj");
        assert_eq!(secret.secret_data("token").as_deref(), Some(&b"abc"[..]));
        assert_eq!(secret.secret_data("bad"), None);
    }

    #[test]
    fn keys_ignore_namespace_of_cluster_scoped() {
        assert_eq!(ObjectKey::new(&Resource::NODES, "ns", "n").namespace, "");
        assert_eq!(ObjectKey::new(&Resource::PODS, "ns", "p").prefix, "/pods");
    }
}
