//! Keeps the authorizer in step with the authority's store: AuthConfigs (rebuilt into the host
//! index the moment an event arrives, so `kubectl apply` takes effect at once) and API-key
//! Secrets. Each AuthConfig's status says whether its hosts are linked, and why not.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use tokenwarden_core::authconfig::AuthConfig;
use tokenwarden_core::{Object, Resource};
use tokenwarden_store::{Authority, Event, EventType, ListOptions, Revision, StoreError};

use crate::Authorizer;
use crate::configs::{self, Read};
use crate::identity::ApiKeySecret;

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

/// Rebuilds the host index and the API-key index; returns the status each AuthConfig should
/// have.
fn rebuild(objects: &Objects, authorizer: &Authorizer) -> Vec<(Arc<Object>, Value)> {
    let read = objects
        .authconfigs
        .values()
        .map(|object| Read {
            item: Arc::clone(object),
            order: (object.creation_timestamp(), object.namespace().to_owned(), object.name().to_owned()),
            parsed: AuthConfig::parse(&Value::Object(object.value().clone())).map(Arc::new).map_err(|e| e.to_string()),
        })
        .collect();
    let (index, statuses) = configs::index_and_statuses(read, &authorizer.configs());
    authorizer.set_configs(index);
    let api_keys = objects.secrets.iter().filter_map(|(key, secret)| Some((key.clone(), ApiKeySecret::from_secret(Arc::clone(secret))?))).collect();
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
