//! What every AuthConfig source (the authority's store, a remote API server) derives from the
//! AuthConfigs it read: the host index and the `status` Authorino writes on each of them
//! (conditions and a summary of linked hosts, or why the AuthConfig is invalid).

use std::sync::Arc;

use serde_json::{Value, json};
use tokenwarden_core::Timestamp;
use tokenwarden_core::authconfig::{AuthConfig, HostIndex, HostStatus};

/// One AuthConfig as read.
pub(crate) struct Read<T> {
    /// Returned with its status.
    pub item: T,
    /// `creationTimestamp`, namespace and name: older AuthConfigs win host collisions.
    pub order: (Option<Timestamp>, String, String),
    /// The parsed AuthConfig, or why it is invalid.
    pub parsed: Result<Arc<AuthConfig>, String>,
}

/// The host index of the valid AuthConfigs, and the status each AuthConfig should have.
pub(crate) fn index_and_statuses<T>(mut read: Vec<Read<T>>) -> (HostIndex, Vec<(T, Value)>) {
    read.sort_by(|a, b| a.order.cmp(&b.order));
    let index = HostIndex::build(read.iter().filter_map(|r| r.parsed.as_ref().ok().map(Arc::clone)));
    let statuses = read
        .into_iter()
        .map(|r| {
            let status = match &r.parsed {
                Ok(config) => status_of(config, index.status(&config.namespace, &config.name)),
                Err(message) => invalid_status(message),
            };
            (r.item, status)
        })
        .collect();
    (index, statuses)
}

fn status_of(config: &AuthConfig, host_status: Option<&HostStatus>) -> Value {
    let (ready, reason, message, linked, count) = match host_status {
        Some(status) => (status.ready(), status.reason(), status.message().unwrap_or_default(), status.linked.clone(), status.num_hosts_ready()),
        None => (false, "HostsNotLinked", "no hosts".to_owned(), Vec::new(), format!("0/{}", config.hosts.len())),
    };
    let flag = if ready { "True" } else { "False" };
    json!({
        "conditions": [
            {"type": "Available", "status": flag, "reason": reason, "message": message},
            {"type": "Ready", "status": flag, "reason": if ready { "Reconciled" } else { reason }},
        ],
        "summary": {
            "ready": ready,
            "hostsReady": linked,
            "numHostsReady": count,
            "numIdentitySources": config.authentication.len(),
            "numAuthorizationPolicies": config.authorization.len(),
        },
    })
}

fn invalid_status(message: &str) -> Value {
    json!({
        "conditions": [
            {"type": "Available", "status": "False", "reason": "Invalid", "message": message},
            {"type": "Ready", "status": "False", "reason": "Invalid"},
        ],
        "summary": {"ready": false, "hostsReady": [], "numHostsReady": "0/0"},
    })
}
