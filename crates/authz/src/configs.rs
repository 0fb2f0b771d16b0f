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

/// The host index of the valid AuthConfigs, and the status each AuthConfig should have. An
/// AuthConfig that no longer parses keeps its last valid version (from `previous`) in force, as
/// Authorino's reconciler leaves its cache alone on a translation error: dropping it would hand
/// its hosts to a wildcard AuthConfig, or leave them to none.
pub(crate) fn index_and_statuses<T>(mut read: Vec<Read<T>>, previous: &HostIndex) -> (HostIndex, Vec<(T, Value)>) {
    read.sort_by(|a, b| a.order.cmp(&b.order));
    let in_force = |r: &Read<T>| match &r.parsed {
        Ok(config) => Some(Arc::clone(config)),
        Err(_) => previous.configs().find(|c| (c.namespace.as_str(), c.name.as_str()) == (r.order.1.as_str(), r.order.2.as_str())).map(Arc::clone),
    };
    let index = HostIndex::build(read.iter().filter_map(in_force));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn read(name: &str, host: &str, valid: bool) -> Read<String> {
        let spec = json!({"hosts": [host], "authentication": {"anyone": {"anonymous": {}}}});
        let parsed = if valid { AuthConfig::parse_spec("ns", name, &spec).map(Arc::new).map_err(|e| e.to_string()) } else { Err("bad".to_owned()) };
        Read { item: name.to_owned(), order: (None, "ns".to_owned(), name.to_owned()), parsed }
    }

    #[test]
    fn an_authconfig_that_stops_parsing_keeps_its_last_valid_version() {
        let answering = |index: &HostIndex, host: &str| index.lookup(host).map(|c| c.name.clone());
        let (first, _) = index_and_statuses(vec![read("admin", "admin.example.com", true), read("zz-all", "*", true)], &HostIndex::default());
        assert_eq!(answering(&first, "admin.example.com").as_deref(), Some("admin"));

        // A bad update: the catch-all does not take the host over; the status still says why.
        let (second, statuses) = index_and_statuses(vec![read("admin", "admin.example.com", false), read("zz-all", "*", true)], &first);
        assert_eq!(answering(&second, "admin.example.com").as_deref(), Some("admin"));
        assert_eq!(statuses[0].1["conditions"][0]["reason"], "Invalid");
        // Never valid: nothing to keep.
        let (third, _) = index_and_statuses(vec![read("new", "new.example.com", false), read("zz-all", "*", true)], &first);
        assert_eq!(answering(&third, "new.example.com").as_deref(), Some("zz-all"));
    }
}
