//! Keeps the authorizer in step with the authority's store: AuthConfigs (rebuilt into the host
//! index the moment an event arrives, so `kubectl apply` takes effect at once) and API-key
//! Secrets. Each AuthConfig's status says whether its hosts are linked, and why not.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Value, json};
use tokenwarden_core::authconfig::{AuthConfig, HostIndex, HostStatus};
use tokenwarden_core::{Object, Resource};
use tokenwarden_store::{Authority, Event, EventType, ListOptions, Revision, StoreError};

use crate::Authorizer;
use crate::identity::{ApiKeySecret, sha256};

/// `namespace/name` → object, for the kinds the authorizer reads.
#[derive(Default)]
struct Objects {
    authconfigs: BTreeMap<String, Arc<Object>>,
    secrets: BTreeMap<String, Arc<Object>>,
}

fn key(object: &Object) -> String {
    format!("{}/{}", object.namespace(), object.name())
}

impl Objects {
    fn apply(&mut self, event: &Event) -> bool {
        let table = if *event.prefix == *Resource::AUTH_CONFIGS.key_prefix() {
            &mut self.authconfigs
        } else if *event.prefix == *Resource::SECRETS.key_prefix() {
            &mut self.secrets
        } else {
            return false;
        };
        if event.event_type == EventType::Deleted {
            table.remove(&key(&event.object));
        } else {
            table.insert(key(&event.object), Arc::clone(&event.object));
        }
        true
    }
}

/// The `status` Authorino writes: conditions and a summary of linked hosts.
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

/// Rebuilds the host index (oldest AuthConfig first, as host collisions are resolved) and the
/// API-key index; returns the status each AuthConfig should have.
fn rebuild(objects: &Objects, authorizer: &Authorizer) -> Vec<(Arc<Object>, Value)> {
    let mut parsed = Vec::new();
    let mut statuses = Vec::new();
    for object in objects.authconfigs.values() {
        match AuthConfig::parse(&Value::Object(object.value().clone())) {
            Ok(config) => parsed.push((Arc::clone(object), Arc::new(config))),
            Err(err) => statuses.push((Arc::clone(object), invalid_status(&err.to_string()))),
        }
    }
    parsed.sort_by(|(a, _), (b, _)| {
        (a.creation_timestamp(), a.namespace(), a.name()).cmp(&(b.creation_timestamp(), b.namespace(), b.name()))
    });
    let index = HostIndex::build(parsed.iter().map(|(_, config)| Arc::clone(config)));
    for (object, config) in &parsed {
        statuses.push((Arc::clone(object), status_of(config, index.status(&config.namespace, &config.name))));
    }
    authorizer.set_configs(index);

    let api_keys: HashMap<String, ApiKeySecret> = objects
        .secrets
        .iter()
        .filter_map(|(key, secret)| {
            let api_key = secret.secret_data("api_key")?;
            Some((key.clone(), ApiKeySecret { namespace: secret.namespace().to_owned(), object: Arc::clone(secret), key_sha256: sha256(&api_key) }))
        })
        .collect();
    authorizer.identities().set_api_keys(api_keys);
    statuses
}

/// Writes statuses that changed (a status write comes back as an event and settles).
async fn write_statuses(authority: &Authority, statuses: Vec<(Arc<Object>, Value)>) {
    for (object, status) in statuses {
        if object.value().get("status") == Some(&status) {
            continue;
        }
        let mut updated = (*object).clone();
        updated.0.insert("status".into(), status);
        match authority.update_status(&Resource::AUTH_CONFIGS, updated).await {
            // A conflict means a newer version is on its way through the feed.
            Ok(_) | Err(StoreError::Api(tokenwarden_core::Error::Conflict { .. } | tokenwarden_core::Error::NotFound { .. })) => {}
            Err(e) => tracing::warn!(authconfig = %key(&object), error = %e, "cannot write AuthConfig status"),
        }
    }
}

async fn load(authority: &Authority) -> Result<(Objects, Revision), StoreError> {
    let store = authority.store();
    let revision = store.current_revision().await?;
    let mut objects = Objects::default();
    for object in store.list(&Resource::AUTH_CONFIGS, &ListOptions::default()).await?.items {
        objects.authconfigs.insert(key(&object), Arc::new(object));
    }
    for object in store.list(&Resource::SECRETS, &ListOptions::default()).await?.items {
        objects.secrets.insert(key(&object), Arc::new(object));
    }
    Ok((objects, revision))
}

/// Loads the current AuthConfigs into `authorizer` (so it is ready when this returns), then
/// follows the store's change feed in a background task.
pub async fn follow_authority(authority: Arc<Authority>, authorizer: Arc<Authorizer>) -> Result<tokio::task::JoinHandle<()>, StoreError> {
    let (objects, revision) = load(&authority).await?;
    let statuses = rebuild(&objects, &authorizer);
    write_statuses(&authority, statuses).await;
    Ok(tokio::spawn(follow(authority, authorizer, objects, revision)))
}

async fn follow(authority: Arc<Authority>, authorizer: Arc<Authorizer>, mut objects: Objects, mut revision: Revision) {
    loop {
        match tokenwarden_store::feed::watch(Arc::clone(authority.store()), revision).await {
            Ok(mut events) => {
                'feed: while let Some(event) = events.next().await {
                    let Ok(event) = event else { break };
                    revision = event.revision;
                    let mut changed = objects.apply(&event);
                    // Take every event already waiting before rebuilding once: a burst of
                    // writes (or our own status writes) costs one rebuild, not one each.
                    while let Ok(Some(next)) = tokio::time::timeout(std::time::Duration::ZERO, events.next()).await {
                        let Ok(next) = next else { break 'feed };
                        revision = next.revision;
                        changed |= objects.apply(&next);
                    }
                    if changed {
                        let statuses = rebuild(&objects, &authorizer);
                        write_statuses(&authority, statuses).await;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "authorizer: watch failed; re-listing"),
        }
        match load(&authority).await {
            Ok((loaded, at)) => {
                objects = loaded;
                revision = at;
                let statuses = rebuild(&objects, &authorizer);
                write_statuses(&authority, statuses).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "authorizer: re-list failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}
