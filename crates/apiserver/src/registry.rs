//! The resources this server serves: what discovery lists and what the object handlers store.

use tokenwarden_core::Resource;

use crate::fields::{self, Schema};

/// A stored resource type and how the API presents it.
#[derive(Clone, Copy, Debug)]
pub struct ResourceDef {
    pub resource: Resource,
    pub short_names: &'static [&'static str],
    /// Known fields, for `fieldValidation`.
    pub schema: Schema,
}

const OBJECT_VERBS: [&str; 8] = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

impl ResourceDef {
    pub fn verbs(&self) -> &'static [&'static str] {
        &OBJECT_VERBS
    }
}

/// Every stored resource, in discovery order.
pub const STORED: [ResourceDef; 10] = [
    ResourceDef { resource: Resource::NAMESPACES, short_names: &["ns"], schema: fields::NAMESPACE },
    ResourceDef { resource: Resource::NODES, short_names: &["no"], schema: fields::SPEC_AND_STATUS },
    ResourceDef { resource: Resource::PODS, short_names: &["po"], schema: fields::SPEC_AND_STATUS },
    ResourceDef { resource: Resource::SECRETS, short_names: &[], schema: fields::SECRET },
    ResourceDef { resource: Resource::SERVICE_ACCOUNTS, short_names: &["sa"], schema: fields::SERVICE_ACCOUNT },
    ResourceDef { resource: Resource::AUTH_CONFIGS, short_names: &[], schema: fields::SPEC_AND_STATUS },
    ResourceDef { resource: Resource::CLUSTER_ROLE_BINDINGS, short_names: &[], schema: fields::BINDING },
    ResourceDef { resource: Resource::CLUSTER_ROLES, short_names: &[], schema: fields::ROLE },
    ResourceDef { resource: Resource::ROLE_BINDINGS, short_names: &[], schema: fields::BINDING },
    ResourceDef { resource: Resource::ROLES, short_names: &[], schema: fields::ROLE },
];

/// The stored resource at `group/version/plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    STORED.iter().find(|d| d.resource.group == group && d.resource.version == version && d.resource.plural == plural)
}
