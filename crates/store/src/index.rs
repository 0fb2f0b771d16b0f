//! In-memory indexes of the objects tokens name, of the namespaces being deleted and of the
//! RBAC policy, fed by the change feed, so a review, a TokenRequest or an authorization
//! decision never reads disk.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use tokenwarden_core::lookup::{ObjectLookup, ObjectMeta, PodInfo, SecretInfo};
use tokenwarden_core::object::{LEGACY_TOKEN_INVALID_SINCE_LABEL, SERVICE_ACCOUNT_TOKEN_SECRET_TYPE};
use tokenwarden_core::rbac::{Policy, PolicyRule, Request, RoleRef};
use tokenwarden_core::review::UserInfo;
use tokenwarden_core::{Object, Resource};
use tokio::sync::watch;

use crate::{Event, EventType, Revision};

/// `namespace → name → value`: lookups by `&str` without building a key.
type ByNamespace<V> = HashMap<String, HashMap<String, V>>;

#[derive(Default)]
struct Tables {
    service_accounts: ByNamespace<ObjectMeta>,
    pods: ByNamespace<PodInfo>,
    secrets: ByNamespace<SecretInfo>,
    nodes: HashMap<String, ObjectMeta>,
    /// Namespaces being deleted.
    terminating: HashSet<String>,
    policy: Policy,
}

/// The objects tokens depend on, by namespace and name.
pub struct Index {
    tables: RwLock<Tables>,
    /// The highest revision applied; writers wait on it to read their own writes.
    applied: watch::Sender<Revision>,
}

impl Default for Index {
    fn default() -> Self {
        Self { tables: RwLock::default(), applied: watch::Sender::new(0) }
    }
}

fn meta(object: &Object) -> ObjectMeta {
    ObjectMeta { uid: Arc::from(object.uid()), deletion_timestamp: object.deletion_timestamp() }
}

fn put<V>(table: &mut ByNamespace<V>, object: &Object, value: Option<V>) {
    match value {
        Some(v) => {
            table.entry(object.namespace().to_owned()).or_default().insert(object.name().to_owned(), v);
        }
        None => {
            if let Some(names) = table.get_mut(object.namespace()) {
                names.remove(object.name());
                if names.is_empty() {
                    table.remove(object.namespace());
                }
            }
        }
    }
}

fn secret_info(secret: &Object) -> SecretInfo {
    let token_sha256 = (secret.secret_type() == SERVICE_ACCOUNT_TOKEN_SECRET_TYPE)
        .then(|| secret.secret_data("token"))
        .flatten()
        .map(|token| tokenwarden_core::sha256(&token));
    SecretInfo {
        meta: meta(secret),
        token_sha256,
        // kube-apiserver reads an empty label as no label
        legacy_token_invalid: secret.label(LEGACY_TOKEN_INVALID_SINCE_LABEL).is_some_and(|since| !since.is_empty()),
        legacy_token_last_used: secret.label(tokenwarden_core::legacy_tokens::LAST_USED_LABEL).map(str::to_owned),
    }
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one object's current state (`present`) or its removal.
    fn apply_object(tables: &mut Tables, prefix: &str, object: &Object, present: bool) {
        if prefix == Resource::SERVICE_ACCOUNTS.key_prefix() {
            put(&mut tables.service_accounts, object, present.then(|| meta(object)));
        } else if prefix == Resource::PODS.key_prefix() {
            let info = present.then(|| PodInfo {
                meta: meta(object),
                service_account: object.pod_service_account().to_owned(),
                node_name: object.pod_node_name().to_owned(),
            });
            put(&mut tables.pods, object, info);
        } else if prefix == Resource::SECRETS.key_prefix() {
            put(&mut tables.secrets, object, present.then(|| secret_info(object)));
        } else if prefix == Resource::NODES.key_prefix() {
            if present {
                tables.nodes.insert(object.name().to_owned(), meta(object));
            } else {
                tables.nodes.remove(object.name());
            }
        } else if prefix == Resource::NAMESPACES.key_prefix() {
            if present && object.str_at("status.phase") == Some(crate::write::NAMESPACE_TERMINATING) {
                tables.terminating.insert(object.name().to_owned());
            } else {
                tables.terminating.remove(object.name());
            }
        } else if let Some(resource) = Resource::RBAC.iter().find(|r| r.key_prefix() == prefix) {
            tables.policy.apply(resource, object, present);
        }
    }

    /// Replaces everything with a listing taken at `revision`.
    pub fn reset(&self, objects: &[(Resource, Vec<Object>)], revision: Revision) {
        let mut tables = Tables::default();
        for (resource, items) in objects {
            let prefix = resource.key_prefix();
            for object in items {
                Self::apply_object(&mut tables, &prefix, object, true);
            }
        }
        *self.tables.write().unwrap_or_else(std::sync::PoisonError::into_inner) = tables;
        self.applied.send_replace(revision);
    }

    /// Applies one change-feed event (events arrive in revision order).
    pub fn apply(&self, event: &Event) {
        if event.revision <= *self.applied.borrow() {
            return;
        }
        {
            let mut tables = self.tables.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            Self::apply_object(&mut tables, &event.prefix, &event.object, event.event_type != EventType::Deleted);
        }
        self.applied.send_replace(event.revision);
    }

    /// The highest revision applied.
    pub fn revision(&self) -> Revision {
        *self.applied.borrow()
    }

    /// Waits until the index has applied `revision` (a writer reading its own write).
    pub async fn wait_for(&self, revision: Revision) {
        let mut rx = self.applied.subscribe();
        // The sender lives as long as `self`, so this only ends once the revision is reached.
        let _ = rx.wait_for(|applied| *applied >= revision).await;
    }

    /// RBAC's decision (members of `system:masters` may do everything), with kube's reason
    /// for an allowed or a denied request: see `Policy::decide`.
    pub fn authorize(&self, user: &UserInfo, request: &Request<'_>) -> Result<String, String> {
        self.read().policy.decide(user, request)
    }

    /// The errors of `user`'s bindings in `namespace` whose role does not exist.
    pub fn missing_roles(&self, user: &UserInfo, namespace: &str) -> Vec<String> {
        self.read().policy.missing_roles(user, namespace)
    }

    /// The rules of the role a binding in `namespace` refers to, if it exists.
    pub fn referenced_rules(&self, role_ref: &RoleRef, namespace: &str) -> Option<Vec<PolicyRule>> {
        self.read().policy.referenced_rules(role_ref, namespace)
    }

    /// The rules that apply to `user` in `namespace` (SelfSubjectRulesReview).
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> Vec<PolicyRule> {
        self.read().policy.rules_for(user, namespace)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn get<V: Clone>(table: &ByNamespace<V>, namespace: &str, name: &str) -> Option<V> {
    table.get(namespace)?.get(name).cloned()
}

impl ObjectLookup for Index {
    fn service_account(&self, namespace: &str, name: &str) -> Option<ObjectMeta> {
        get(&self.read().service_accounts, namespace, name)
    }
    fn pod(&self, namespace: &str, name: &str) -> Option<PodInfo> {
        get(&self.read().pods, namespace, name)
    }
    fn secret(&self, namespace: &str, name: &str) -> Option<SecretInfo> {
        get(&self.read().secrets, namespace, name)
    }
    fn node(&self, name: &str) -> Option<ObjectMeta> {
        self.read().nodes.get(name).cloned()
    }
    fn namespace_terminating(&self, namespace: &str) -> bool {
        self.read().terminating.contains(namespace)
    }
}
