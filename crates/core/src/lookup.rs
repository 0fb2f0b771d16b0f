//! What minting and reviewing need to know about live objects, answered from memory.
//! The store's index implements [`ObjectLookup`]; tests use [`StaticLookup`].

use std::collections::HashMap;
use std::sync::Arc;

use crate::Timestamp;

/// The identity of a live object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectMeta {
    pub uid: Arc<str>,
    pub deletion_timestamp: Option<Timestamp>,
}

/// A Pod: identity plus the fields binding reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub meta: ObjectMeta,
    pub service_account: String,
    pub node_name: String,
}

/// A Secret: identity plus what legacy-token validation reads. The token itself is never
/// held: only its SHA-256.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretInfo {
    pub meta: ObjectMeta,
    pub token_sha256: Option<[u8; 32]>,
    /// `kubernetes.io/legacy-token-invalid-since` is set.
    pub legacy_token_invalid: bool,
    /// `kubernetes.io/legacy-token-last-used`: the day its token last authenticated.
    pub legacy_token_last_used: Option<String>,
}

pub trait ObjectLookup {
    fn service_account(&self, namespace: &str, name: &str) -> Option<ObjectMeta>;
    fn pod(&self, namespace: &str, name: &str) -> Option<PodInfo>;
    fn secret(&self, namespace: &str, name: &str) -> Option<SecretInfo>;
    fn node(&self, name: &str) -> Option<ObjectMeta>;
    /// Whether `namespace` is being deleted (status.phase Terminating).
    fn namespace_terminating(&self, _namespace: &str) -> bool {
        false
    }
}

/// A fixed set of objects, keyed by `namespace/name` (`name` for nodes).
#[derive(Clone, Debug, Default)]
pub struct StaticLookup {
    pub service_accounts: HashMap<String, ObjectMeta>,
    pub pods: HashMap<String, PodInfo>,
    pub secrets: HashMap<String, SecretInfo>,
    pub nodes: HashMap<String, ObjectMeta>,
}

impl ObjectLookup for StaticLookup {
    fn service_account(&self, namespace: &str, name: &str) -> Option<ObjectMeta> {
        self.service_accounts.get(&format!("{namespace}/{name}")).cloned()
    }
    fn pod(&self, namespace: &str, name: &str) -> Option<PodInfo> {
        self.pods.get(&format!("{namespace}/{name}")).cloned()
    }
    fn secret(&self, namespace: &str, name: &str) -> Option<SecretInfo> {
        self.secrets.get(&format!("{namespace}/{name}")).cloned()
    }
    fn node(&self, name: &str) -> Option<ObjectMeta> {
        self.nodes.get(name).cloned()
    }
}
