//! tokenwarden-store: versioned objects with an ordered change feed, and what is built on it.
//!
//! The [`Store`] trait is shaped after etcd: every write bumps one global revision (etcd's
//! `mod_revision`), and the change feed replays every event after a revision or reports
//! [`StoreError::Gone`] once that revision is compacted (etcd's watch). Backends: SQLite
//! (embedded default, durable when a call returns) and memory (tests).

pub mod authority;
pub mod clock;
pub mod cluster;
pub mod etcd;
pub mod etcd_keys;
pub mod feed;
pub mod files;
pub mod health;
pub mod index;
pub mod keystore;
pub mod legacy_cleaner;
pub mod memory;
pub mod namespaces;
pub mod review_cache;
pub mod sqlite;
mod write;

use std::sync::Arc;

use async_trait::async_trait;
use tokenwarden_core::selector::{FieldSelector, LabelSelector};
use tokenwarden_core::{Object, Resource};

pub use clock::{Clock, ManualClock, SystemClock};
pub use authority::{Authority, Part, Review, Reviewed};
pub use feed::EventStream;
pub use index::Index;
pub use keystore::KeyStore;

/// A global, monotonically increasing write counter. Objects carry theirs as
/// `metadata.resourceVersion` (decimal).
pub type Revision = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    /// The watch event type as Kubernetes spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change. For `Deleted`, `object` is the last state with `resourceVersion` set to the
/// deleting revision, as Kubernetes sends it.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub event_type: EventType,
    pub revision: Revision,
    /// `Resource::key_prefix()` of the object's resource.
    pub prefix: Arc<str>,
    pub object: Arc<Object>,
}

/// What to list.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Only this namespace; `None` lists all namespaces.
    pub namespace: Option<String>,
    pub label_selector: LabelSelector,
    pub field_selector: FieldSelector,
    /// At most this many items (0 = no limit).
    pub limit: usize,
    /// The `continue` token of the previous page.
    pub continue_token: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ObjectList {
    pub items: Vec<Object>,
    /// The store revision the list reflects (the list's `resourceVersion`).
    pub revision: Revision,
    /// Set when more items remain after this page.
    pub continue_token: Option<String>,
}

/// Conditions a delete must meet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Api(#[from] tokenwarden_core::Error),
    /// The backend failed (disk, database). Not the caller's fault.
    #[error("storage backend: {0}")]
    Backend(String),
    /// The backend cannot be reached (etcd down or partitioned): retrying later may work.
    #[error("storage backend unavailable: {0}")]
    Unavailable(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Versioned object storage with an ordered change feed.
///
/// `create` sets `metadata.uid`, `metadata.resourceVersion` and `metadata.creationTimestamp`;
/// `update` requires the current `resourceVersion` when the object carries one (else 409
/// Conflict) and keeps uid and creationTimestamp; `delete` returns the deleted object.
/// Every write is durable when the call returns (for durable backends) and is published on
/// the feed in revision order.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn create(&self, resource: &Resource, object: Object) -> Result<Object>;
    async fn get(&self, resource: &Resource, namespace: &str, name: &str) -> Result<Object>;
    async fn list(&self, resource: &Resource, options: &ListOptions) -> Result<ObjectList>;
    async fn update(&self, resource: &Resource, object: Object) -> Result<Object>;
    async fn delete(&self, resource: &Resource, namespace: &str, name: &str, preconditions: &Preconditions) -> Result<Object>;
    /// Every event with a revision greater than `after`, in order; `Gone` (410) when
    /// `after` is older than the compacted revision.
    async fn events_since(&self, after: Revision) -> Result<Vec<Event>>;
    /// The latest revision written.
    async fn current_revision(&self) -> Result<Revision>;
    /// Forgets events up to and including `revision`.
    async fn compact(&self, revision: Revision) -> Result<()>;
    /// Live events from now on (a broadcast; a lagging receiver is told it lagged).
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event>;
    /// How current this replica's view of a shared store is; `None` for a local store,
    /// which is always current.
    fn health(&self) -> Option<Arc<health::StoreHealth>> {
        None
    }
}
