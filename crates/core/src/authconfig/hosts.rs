//! The host index: which AuthConfig answers a request, as Authorino's `pkg/index` does.
//!
//! - an exact host wins; otherwise the most specific `*.` wildcard (`*.pets.com` matches
//!   `dogs.pets.com`, `a.dogs.pets.com` and `pets.com` itself; a bare `*` matches everything);
//! - `host:port` is looked up as written first, then without the port;
//! - a host already answered by another AuthConfig (exactly or through its wildcard) is refused
//!   for the AuthConfig added later, and its status says why (`HostsNotLinked`).
//!
//! Hosts are compared lower-cased (DNS names are case-insensitive).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::spec::AuthConfig;

/// A host of an AuthConfig that was not indexed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostConflict {
    pub host: String,
    /// `namespace/name` of the AuthConfig that holds it.
    pub taken_by: String,
}

/// What the index did with one AuthConfig's hosts (for its `status`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostStatus {
    /// Hosts indexed for this AuthConfig (`status.summary.hostsReady`).
    pub linked: Vec<String>,
    pub refused: Vec<HostConflict>,
}

impl HostStatus {
    /// All hosts linked.
    pub fn ready(&self) -> bool {
        self.refused.is_empty()
    }

    /// `"n/m"` as `status.summary.numHostsReady`.
    pub fn num_hosts_ready(&self) -> String {
        format!("{}/{}", self.linked.len(), self.linked.len() + self.refused.len())
    }

    /// `HostsLinked` or `HostsNotLinked`.
    pub fn reason(&self) -> &'static str {
        if self.ready() { "HostsLinked" } else { "HostsNotLinked" }
    }

    /// The condition message: `None` when every host is linked, else which hosts are taken and by whom.
    pub fn message(&self) -> Option<String> {
        if self.ready() {
            return None;
        }
        let taken: Vec<String> = self.refused.iter().map(|c| format!("{:?} (taken by AuthConfig {})", c.host, c.taken_by)).collect();
        Some(format!("one or more hosts are not linked to the resource: {}", taken.join(", ")))
    }
}

/// Host → AuthConfig.
#[derive(Clone, Debug, Default)]
pub struct HostIndex {
    hosts: HashMap<String, Arc<AuthConfig>>,
    status: BTreeMap<String, HostStatus>,
}

impl HostIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Indexes AuthConfigs in the order given; the caller passes them oldest first
    /// (`creationTimestamp`, then `namespace/name`), as Authorino does at bootstrap, so the
    /// oldest AuthConfig keeps a contested host.
    pub fn build(configs: impl IntoIterator<Item = Arc<AuthConfig>>) -> Self {
        let mut index = Self::new();
        for config in configs {
            index.insert(config);
        }
        index
    }

    /// Adds or replaces an AuthConfig (keyed by `namespace/name`) and returns what happened to
    /// its hosts. Hosts held by others are refused. Replacing keeps the hosts other
    /// AuthConfigs were refused; rebuild the index ([`HostIndex::build`]) after a delete or a
    /// host change to let them in.
    pub fn insert(&mut self, config: Arc<AuthConfig>) -> HostStatus {
        let key = config.key();
        self.remove(&config.namespace, &config.name);
        let mut status = HostStatus::default();
        for host in &config.hosts {
            let host = host.to_ascii_lowercase();
            if let Some(other) = self.find(&host).map(|c| c.key()).filter(|other| *other != key) {
                status.refused.push(HostConflict { host, taken_by: other });
                continue;
            }
            if !status.linked.contains(&host) {
                self.hosts.insert(host.clone(), Arc::clone(&config));
                status.linked.push(host);
            }
        }
        self.status.insert(key, status.clone());
        status
    }

    /// Removes an AuthConfig's hosts. Returns whether it was indexed.
    pub fn remove(&mut self, namespace: &str, name: &str) -> bool {
        let key = format!("{namespace}/{name}");
        let Some(status) = self.status.remove(&key) else { return false };
        for host in status.linked {
            if self.hosts.get(&host).is_some_and(|c| c.key() == key) {
                self.hosts.remove(&host);
            }
        }
        true
    }

    /// What happened to the hosts of `namespace/name`.
    pub fn status(&self, namespace: &str, name: &str) -> Option<&HostStatus> {
        self.status.get(&format!("{namespace}/{name}"))
    }

    /// The AuthConfig for a request's host (`host` context extension, or `:authority` with its
    /// port): `host` as written, then without its port.
    pub fn lookup(&self, host: &str) -> Option<&Arc<AuthConfig>> {
        // hosts are nearly always sent in lower case: copy only when not
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) { std::borrow::Cow::Owned(host.to_ascii_lowercase()) } else { std::borrow::Cow::Borrowed(host) };
        if let Some(found) = self.find(&host) {
            return Some(found);
        }
        let (bare, _port) = host.split_once(':')?;
        self.find(bare)
    }

    /// The indexed AuthConfigs, each once.
    pub fn configs(&self) -> impl Iterator<Item = &Arc<AuthConfig>> {
        let mut seen = std::collections::HashSet::new();
        self.hosts.values().filter(move |config| seen.insert(Arc::as_ptr(config)))
    }

    /// Number of indexed hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Exact, then the closest wildcard walking toward the root, then `*`. The walk starts at
    /// the host itself, as Authorino's tree search starts at the deepest node the host
    /// reaches (for `pets.com`, the node holding `*.pets.com`).
    fn find(&self, host: &str) -> Option<&Arc<AuthConfig>> {
        if let Some(found) = self.hosts.get(host) {
            return Some(found);
        }
        let mut wildcard = String::with_capacity(host.len() + 2);
        let mut domain = Some(host);
        while let Some(name) = domain {
            wildcard.clear();
            wildcard.push_str("*.");
            wildcard.push_str(name);
            if let Some(found) = self.hosts.get(&wildcard) {
                return Some(found);
            }
            domain = name.split_once('.').map(|(_, parent)| parent);
        }
        self.hosts.get("*")
    }
}
