//! The resources this server serves: what discovery lists and what the object handlers store.

use tokenwarden_core::{Error, Resource};

use crate::fields::{self, Schema};

/// A stored resource type and how the API presents it.
#[derive(Clone, Copy, Debug)]
pub struct ResourceDef {
    pub resource: Resource,
    pub short_names: &'static [&'static str],
    /// Known fields, for `fieldValidation`.
    pub schema: Schema,
    /// The fields a `fieldSelector` may name.
    pub field_labels: FieldLabels,
    /// A PUT of a missing object creates it (kube's strategy `AllowCreateOnUpdate`).
    pub create_on_update: bool,
}

const OBJECT_VERBS: [&str; 8] = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
/// kube's namespace storage deletes one namespace at a time: no `deletecollection`.
const NAMESPACE_VERBS: [&str; 7] = ["create", "delete", "get", "list", "patch", "update", "watch"];

impl ResourceDef {
    pub fn verbs(&self) -> &'static [&'static str] {
        if self.resource == Resource::NAMESPACES { &NAMESPACE_VERBS } else { &OBJECT_VERBS }
    }
}

/// kube's `ConvertFieldLabel` for a kind: the fields its field selectors take.
#[derive(Clone, Copy, Debug)]
pub enum FieldLabels {
    /// `runtime.DefaultMetaV1FieldSelectorConversion`, for kinds with no conversion of their own.
    Meta,
    /// The kind's own conversion (pkg/apis/core/v1/conversion.go; a CRD's converter, which
    /// answers the same for any other field).
    Only(&'static [&'static str]),
}

impl FieldLabels {
    /// The field `label` selects, or kube's refusal: 400 BadRequest.
    pub fn convert(self, label: &str) -> Result<String, Error> {
        match self {
            Self::Meta if matches!(label, "metadata.name" | "metadata.namespace") => Ok(label.to_owned()),
            Self::Meta => Err(Error::BadRequest(format!(
                r#""{label}" is not a known field selector: only "metadata.name", "metadata.namespace""#
            ))),
            // Pods' `spec.host` is what old v1 clients send for `spec.nodeName`.
            Self::Only(labels) if labels.contains(&label) => Ok(if label == "spec.host" { "spec.nodeName" } else { label }.to_owned()),
            Self::Only(_) => Err(Error::BadRequest(format!("field label not supported: {label}"))),
        }
    }
}

const NAMESPACE_LABELS: FieldLabels = FieldLabels::Only(&["status.phase", "metadata.name"]);
const NODE_LABELS: FieldLabels = FieldLabels::Only(&["metadata.name", "spec.unschedulable"]);
const POD_LABELS: FieldLabels = FieldLabels::Only(&[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.podIPs",
    "status.nominatedNodeName",
    "spec.host",
]);
const SECRET_LABELS: FieldLabels = FieldLabels::Only(&["type", "metadata.namespace", "metadata.name"]);
/// A namespaced CRD's (Authorino's declares no `selectableFields`).
const CUSTOM_LABELS: FieldLabels = FieldLabels::Only(&["metadata.name", "metadata.namespace"]);

/// Every stored resource, in discovery order.
pub const STORED: [ResourceDef; 10] = [
    ResourceDef { resource: Resource::NAMESPACES, short_names: &["ns"], schema: fields::NAMESPACE, field_labels: NAMESPACE_LABELS, create_on_update: false },
    ResourceDef { resource: Resource::NODES, short_names: &["no"], schema: fields::SPEC_AND_STATUS, field_labels: NODE_LABELS, create_on_update: false },
    ResourceDef { resource: Resource::PODS, short_names: &["po"], schema: fields::SPEC_AND_STATUS, field_labels: POD_LABELS, create_on_update: false },
    ResourceDef { resource: Resource::SECRETS, short_names: &[], schema: fields::SECRET, field_labels: SECRET_LABELS, create_on_update: false },
    ResourceDef { resource: Resource::SERVICE_ACCOUNTS, short_names: &["sa"], schema: fields::SERVICE_ACCOUNT, field_labels: FieldLabels::Meta, create_on_update: false },
    ResourceDef { resource: Resource::AUTH_CONFIGS, short_names: &[], schema: fields::SPEC_AND_STATUS, field_labels: CUSTOM_LABELS, create_on_update: false },
    // kube's RBAC strategies allow create on update.
    ResourceDef { resource: Resource::CLUSTER_ROLE_BINDINGS, short_names: &[], schema: fields::BINDING, field_labels: FieldLabels::Meta, create_on_update: true },
    ResourceDef { resource: Resource::CLUSTER_ROLES, short_names: &[], schema: fields::ROLE, field_labels: FieldLabels::Meta, create_on_update: true },
    ResourceDef { resource: Resource::ROLE_BINDINGS, short_names: &[], schema: fields::BINDING, field_labels: FieldLabels::Meta, create_on_update: true },
    ResourceDef { resource: Resource::ROLES, short_names: &[], schema: fields::ROLE, field_labels: FieldLabels::Meta, create_on_update: true },
];

/// The stored resource at `group/version/plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    STORED.iter().find(|d| d.resource.group == group && d.resource.version == version && d.resource.plural == plural)
}
