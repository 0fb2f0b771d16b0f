//! What makes replicas on one etcd act as one, besides the shared objects.
//!
//! Every replica holds an etcd lease and, under it, a registration
//! (`<prefix>/-/replicas/<id>`) listing the signing keys it has loaded. One replica holds the
//! leader key (`<prefix>/-/leader`, also under its lease) and runs the singleton jobs: it
//! publishes a new signing key when the rotation period is up, activates a published key
//! once every registered replica lists it, and forgets retired keys past their window. Its
//! writes are fenced (they commit only while it still holds the leader key). A replica that
//! stops renewing its lease (crashed, cut off from etcd) drops out within the lease's TTL:
//! its registration no longer holds rotation back, and another replica takes over the lead.
//!
//! The same loop reads the key record every tick, so a published or activated key reaches
//! this replica's [`Authority`] within a tick, and it is the probe behind [`StoreHealth`].

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse};
use serde::{Deserialize, Serialize};
use tokenwarden_core::keys::{Algorithm, KeySet};

use crate::clock::{Stopwatch, random_bytes};
use crate::etcd::{EtcdClients, EtcdStore};
use crate::etcd_keys::{Change, SharedKeys, SharedKeysError, Snapshot};
use crate::health::StoreHealth;
use crate::{Authority, StoreError};

/// Seconds a replica's lease outlives its last renewal: how long a dead replica holds the
/// lead or holds a rotation back.
pub const LEASE_TTL_SECONDS: i64 = 10;
/// How often the loop runs: the delay before a key change reaches this replica.
const TICK: Duration = Duration::from_millis(500);
const RENEW_EVERY: Duration = Duration::from_secs(2);
/// How often the leader compacts etcd's history, and how much a watcher can resume from:
/// kube-apiserver's five minutes. Without it etcd grows until its quota stops every write.
const COMPACT_EVERY: Duration = Duration::from_secs(300);

/// What this replica does in the cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Seconds a key signs before the leader rotates it; `None`: never.
    pub rotation_period: Option<i64>,
    /// The algorithm of rotated-in keys.
    pub algorithm: Algorithm,
}

/// A replica's membership; leaves (stops renewing) when dropped.
pub struct Replica {
    id: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Replica {
    /// Joins the cluster on `store` and starts the loop.
    pub fn join(
        store: &EtcdStore,
        keys: SharedKeys,
        authority: Arc<Authority>,
        options: ClusterOptions,
    ) -> Self {
        let id: String = random_bytes::<8>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let job = Job {
            clients: store.clients().clone(),
            registration: store.internal_key(&format!("replicas/{id}")),
            registry: store.internal_key("replicas/"),
            leader_key: store.internal_key("leader"),
            id: id.clone(),
            keys,
            health: store.store_health(),
            authority,
            options,
            lease: None,
            renewed: Stopwatch::start(),
            seen_record: 0,
            registered: None,
            failing: false,
            compaction: Compaction::default(),
            compacted_at: Stopwatch::start(),
        };
        tracing::info!(replica = %id, "joining the cluster");
        Self {
            id,
            task: tokio::spawn(job.run()),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Registration {
    /// Every kid this replica verifies (its signing key's first).
    kids: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] SharedKeysError),
}

struct Job {
    clients: EtcdClients,
    registration: String,
    registry: String,
    leader_key: String,
    id: String,
    keys: SharedKeys,
    health: Arc<StoreHealth>,
    authority: Arc<Authority>,
    options: ClusterOptions,
    lease: Option<i64>,
    renewed: Stopwatch,
    /// `mod_revision` of the key record last loaded.
    seen_record: i64,
    /// The lease and kids last registered.
    registered: Option<(i64, Vec<String>)>,
    /// Whether the last tick failed (to log transitions, not every tick).
    failing: bool,
    compaction: Compaction,
    /// Since the last compaction step (or the start).
    compacted_at: Stopwatch,
}

/// The leader's compaction of the shared history, as kube-apiserver's compactor runs it: each
/// step compacts up to the revision the previous step saw, so a watcher can always resume from
/// anything one interval old.
#[derive(Debug, Default)]
struct Compaction {
    seen: Option<crate::Revision>,
}

impl Compaction {
    async fn step(&mut self, store: &dyn crate::Store) -> Result<(), StoreError> {
        if let Some(revision) = self.seen.take() {
            store.compact(revision).await?;
        }
        self.seen = Some(store.current_revision().await?);
        Ok(())
    }
}

fn kids(keys: &KeySet) -> Vec<String> {
    keys.verifying()
        .iter()
        .map(|k| k.kid().to_owned())
        .collect()
}

impl Job {
    async fn run(mut self) {
        loop {
            let now = self.authority.clock().now();
            match self.tick(now).await {
                Ok(()) => {
                    self.health.reachable();
                    if std::mem::take(&mut self.failing) {
                        tracing::info!("etcd reachable again");
                    }
                }
                Err(e) => {
                    if matches!(e, JobError::Store(StoreError::Unavailable(_))) {
                        self.health.unreachable(now);
                    }
                    if !std::mem::replace(&mut self.failing, true) {
                        tracing::warn!(error = %e, "cluster membership: etcd step failed; retrying");
                    }
                }
            }
            tokio::time::sleep(TICK).await;
        }
    }

    async fn tick(&mut self, now: tokenwarden_core::Timestamp) -> Result<(), JobError> {
        let lease = self.renew().await?;
        let snapshot = self.keys.read().await?;
        if let Some(snapshot) = &snapshot
            && snapshot.mod_revision() != self.seen_record
        {
            let loaded = self.keys.key_set(snapshot, now)?;
            let current = self.authority.keys();
            if kids(&loaded) != kids(&current) {
                tracing::info!(
                    signing = loaded.signing().kid(),
                    verifying = loaded.verifying().len(),
                    "signing keys changed in etcd"
                );
                self.authority.set_keys(loaded);
            }
            self.seen_record = snapshot.mod_revision();
        }
        self.register(lease).await?;
        let leader = self.campaign(lease).await?;
        if leader != self.health.is_leader() {
            tracing::info!(replica = %self.id, leader, "cluster leadership changed");
        }
        self.health.set_leader(leader);
        if leader && let Some(snapshot) = snapshot {
            self.lead(&snapshot, now).await?;
        }
        if leader && self.compacted_at.elapsed() >= COMPACT_EVERY {
            self.compacted_at = Stopwatch::start();
            self.compaction.step(self.authority.store().as_ref()).await?;
        }
        Ok(())
    }

    /// This replica's lease, renewed every few seconds; a new one if it expired (which also
    /// dropped the registration and any leadership held under it).
    async fn renew(&mut self) -> Result<i64, JobError> {
        if let Some(id) = self.lease {
            if self.renewed.elapsed() < RENEW_EVERY {
                return Ok(id);
            }
            let ttl = self
                .clients
                .call(true, |mut client| async move {
                    match client.lease_keep_alive(id).await {
                        // etcd answers an expired lease with TTL 0, which the client turns into
                        // this error: join again (it failed every tick, for good, before).
                        Err(etcd_client::Error::LeaseKeepAliveError(reason)) if reason == "lease not found" => Ok(0),
                        Err(e) => Err(e),
                        Ok((mut keeper, mut responses)) => {
                            keeper.keep_alive().await?;
                            Ok(responses.message().await?.map_or(0, |r| r.ttl()))
                        }
                    }
                })
                .await?;
            if ttl > 0 {
                self.renewed = Stopwatch::start();
                return Ok(id);
            }
            tracing::warn!(replica = %self.id, "the cluster lease expired; joining again");
            self.lease = None;
            self.registered = None;
        }
        let id = self
            .clients
            .call(true, |mut client| async move {
                client
                    .lease_grant(LEASE_TTL_SECONDS, None)
                    .await
                    .map(|r| r.id())
            })
            .await?;
        self.lease = Some(id);
        self.renewed = Stopwatch::start();
        Ok(id)
    }

    /// Registers (again, when they changed) the kids this replica verifies.
    async fn register(&mut self, lease: i64) -> Result<(), JobError> {
        let kids = kids(&self.authority.keys());
        if self
            .registered
            .as_ref()
            .is_some_and(|(l, k)| *l == lease && *k == kids)
        {
            return Ok(());
        }
        let value = serde_json::to_vec(&Registration { kids: kids.clone() })
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let put = TxnOp::put(
            self.registration.clone(),
            value,
            Some(PutOptions::new().with_lease(lease)),
        );
        self.clients
            .txn(true, Txn::new().and_then(vec![put]))
            .await?;
        self.registered = Some((lease, kids));
        Ok(())
    }

    /// Takes the leader key if nobody holds it; whether this replica holds it.
    async fn campaign(&self, lease: i64) -> Result<bool, JobError> {
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                self.leader_key.clone(),
                CompareOp::Equal,
                0,
            )])
            .and_then(vec![TxnOp::put(
                self.leader_key.clone(),
                self.id.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else(vec![TxnOp::get(self.leader_key.clone(), None)]);
        let resp = self.clients.txn(true, txn).await?;
        if resp.succeeded() {
            return Ok(true);
        }
        Ok(resp.op_responses().iter().any(|op| match op {
            TxnOpResponse::Get(get) => get
                .kvs()
                .first()
                .is_some_and(|kv| kv.value() == self.id.as_bytes()),
            _ => false,
        }))
    }

    /// The leader's jobs on the key record.
    async fn lead(
        &self,
        snapshot: &Snapshot,
        now: tokenwarden_core::Timestamp,
    ) -> Result<(), JobError> {
        let fence = || {
            vec![Compare::value(
                self.leader_key.clone(),
                CompareOp::Equal,
                self.id.clone(),
            )]
        };
        if let Some(next) = snapshot.next() {
            if self.every_replica_knows(next).await? {
                let longest_lifetime = self.authority.config().longest_token_lifetime();
                if self
                    .keys
                    .apply(
                        snapshot,
                        Change::ActivateNext { longest_lifetime },
                        now,
                        fence(),
                    )
                    .await?
                {
                    tracing::info!(
                        kid = next,
                        "activated the published signing key: every replica knows it"
                    );
                }
            }
            return Ok(());
        }
        if let Some(period) = self.options.rotation_period
            && snapshot.rotation_due(now, period)
        {
            let algorithm = self.options.algorithm;
            let key = tokio::task::spawn_blocking(move || crate::keystore::generate(algorithm))
                .await
                .map_err(|_| SharedKeysError::Generate)?
                .map_err(|_| SharedKeysError::Generate)?;
            if self
                .keys
                .apply(snapshot, Change::Publish(&key), now, fence())
                .await?
            {
                tracing::info!(kid = key.kid(), "rotation: published a new signing key");
            }
            return Ok(());
        }
        self.keys
            .apply(snapshot, Change::Prune, now, fence())
            .await?;
        Ok(())
    }

    /// Whether every live replica (one holding its lease) has loaded `kid`.
    async fn every_replica_knows(&self, kid: &str) -> Result<bool, JobError> {
        let resp = self
            .clients
            .get(self.registry.clone(), Some(GetOptions::new().with_prefix()))
            .await?;
        let mut any = false;
        for kv in resp.kvs() {
            any = true;
            let knows = serde_json::from_slice::<Registration>(kv.value())
                .is_ok_and(|r| r.kids.iter().any(|k| k == kid));
            if !knows {
                return Ok(false);
            }
        }
        Ok(any)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
    use super::*;
    use crate::Store as _;

    #[tokio::test]
    async fn each_compaction_step_drops_the_history_the_previous_step_saw() {
        let clock = Arc::new(crate::clock::ManualClock::new(tokenwarden_core::Timestamp(1_700_000_000)));
        let store = crate::memory::MemoryStore::new(clock);
        let namespace = |name: &str| tokenwarden_core::Object::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
        let mut compaction = Compaction::default();
        store.create(&tokenwarden_core::Resource::NAMESPACES, namespace("a")).await.unwrap();
        compaction.step(&store).await.unwrap();
        assert!(store.events_since(0).await.is_ok(), "the first step only notes where history stands");
        store.create(&tokenwarden_core::Resource::NAMESPACES, namespace("b")).await.unwrap();
        compaction.step(&store).await.unwrap();
        assert!(matches!(store.events_since(0).await, Err(StoreError::Api(tokenwarden_core::Error::Gone(_)))), "compacted to what the first step saw");
        let kept = store.events_since(1).await.unwrap();
        assert_eq!(kept.len(), 1, "the last interval's history stays");
    }
}
