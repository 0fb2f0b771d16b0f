//! The cluster backend: objects in etcd, so several replicas share one state.
//!
//! Key layout: `<prefix>/<group>/<plural>/<namespace>/<name>` for namespaced resources and
//! `<prefix>/<group>/<plural>/<name>` for cluster-scoped ones (the core group is spelled
//! `core`), so one namespace or one resource is a single range read. Values are the object's
//! JSON without `resourceVersion`: that is the key's `mod_revision`, set on every read, as
//! kube-apiserver does. Keys under `<prefix>/-/` are not objects (the shared key set).
//!
//! Writes run the shared rules of [`crate::write`] against the state read just before, then
//! commit in one etcd transaction that compares the `mod_revision` of every key read (0 for a
//! key that did not exist, i.e. a create). If another replica wrote in between, the write is
//! re-run on the new state, which then yields kube's 409 Conflict or AlreadyExists when the
//! caller's resourceVersion or precondition no longer holds.
//!
//! The live feed is one etcd watch on the prefix per store (`prev_kv`, so a delete carries
//! the last state); a compacted watch closes the broadcast, which makes every follower
//! re-list, as for a lagging receiver of the other backends. `events_since` replays etcd's
//! history with a watch from the revision asked; a compacted revision is 410 Gone.
//!
//! Requests go to one member at a time and fail over to the next when it is unreachable
//! ([`EtcdClients`]); when none answers, the error is [`StoreError::Unavailable`] (503).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType as EtcdEventType, GetOptions, KeyValue, TxnOp,
    WatchOptions,
};
use tokenwarden_core::{Error, Object, ObjectKey, Resource};
use tokio::sync::broadcast;

use crate::health::StoreHealth;
use crate::memory::DEFAULT_BROADCAST_CAPACITY;
use crate::write::{self, Txn};
use crate::{Clock, Event, EventType, ListOptions, ObjectList, Preconditions, Result, Revision, Store, StoreError};

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/tokenwarden";
/// How long one etcd call may take before the store reports etcd unavailable.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts of one write when other writers keep changing the same key.
const WRITE_ATTEMPTS: usize = 32;
/// Objects read from etcd per range request when listing.
const LIST_BATCH: i64 = 500;
/// Pause before the live watch reconnects after an error.
const WATCH_RETRY: Duration = Duration::from_millis(200);
/// The segment under the prefix that holds what is not an object; not a valid API group.
const INTERNAL_SEGMENT: &str = "-";

/// Client certificate and CA for an etcd cluster with TLS (PEM).
#[derive(Clone)]
pub struct EtcdTls {
    pub ca_pem: Vec<u8>,
    pub cert_pem: Option<Vec<u8>>,
    pub key_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the client key.
        f.debug_struct("EtcdTls").field("client_certificate", &self.cert_pem.is_some()).finish_non_exhaustive()
    }
}

/// Where and how to reach etcd.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    pub endpoints: Vec<String>,
    /// Key prefix, without a trailing slash (default `/tokenwarden`).
    pub prefix: String,
    pub tls: Option<EtcdTls>,
    /// Subtracted from etcd revisions to make resourceVersions: 0 (resourceVersion =
    /// `mod_revision`) except in tests sharing one etcd, which start counting at their own
    /// first write like a fresh store.
    pub revision_base: Revision,
}

impl EtcdOptions {
    pub fn new(endpoints: Vec<String>) -> Self {
        Self { endpoints, prefix: DEFAULT_PREFIX.to_owned(), tls: None, revision_base: 0 }
    }
}

// gRPC status codes (tonic's `Code`, named here to keep tonic out of this crate's direct
// dependencies).
const GRPC_CANCELLED: i32 = 1;
const GRPC_DEADLINE_EXCEEDED: i32 = 4;
const GRPC_ABORTED: i32 = 10;
/// etcd's answer to a read or compaction at a compacted revision.
const GRPC_OUT_OF_RANGE: i32 = 11;
const GRPC_UNAVAILABLE: i32 = 14;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// etcd cannot be reached or answer in time: 503, worth trying another member.
    Unavailable,
    /// A read at a compacted revision: 410 Gone.
    Compacted,
    Other,
}

fn classify(e: &etcd_client::Error) -> Failure {
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => Failure::Unavailable,
        etcd_client::Error::GRpcStatus(status) => match i32::from(status.code()) {
            GRPC_CANCELLED | GRPC_DEADLINE_EXCEEDED | GRPC_ABORTED | GRPC_UNAVAILABLE => Failure::Unavailable,
            GRPC_OUT_OF_RANGE => Failure::Compacted,
            _ => Failure::Other,
        },
        _ => Failure::Other,
    }
}

/// Maps an etcd client error, once for the whole backend.
pub(crate) fn etcd_err(e: etcd_client::Error) -> StoreError {
    let detail = match &e {
        etcd_client::Error::GRpcStatus(status) => format!("etcd: {}", status.message()),
        other => format!("etcd: {other}"),
    };
    match classify(&e) {
        Failure::Unavailable => StoreError::Unavailable(detail),
        Failure::Compacted => Error::Gone(detail).into(),
        Failure::Other => StoreError::Backend(detail),
    }
}

/// Whether the request surely never reached etcd (no connection), so even a write may be
/// sent again.
fn not_sent(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(status) => {
            i32::from(status.code()) == GRPC_UNAVAILABLE && status.message().contains("connect")
        }
        _ => false,
    }
}

/// One client per endpoint, and the one in use. Requests go to that member; when it cannot
/// be reached the next one is tried, in turn. A request that was never sent may always be
/// retried; other unavailability only for requests that are safe to repeat (reads, compare-
/// guarded creates), since a write may have been applied before its answer was lost.
/// (etcd-client's own balancing keeps picking a dead member for a share of the requests.)
#[derive(Clone)]
pub struct EtcdClients {
    clients: Arc<[Client]>,
    current: Arc<AtomicUsize>,
}

impl std::fmt::Debug for EtcdClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdClients").field("endpoints", &self.clients.len()).finish_non_exhaustive()
    }
}

impl EtcdClients {
    /// Clients for every endpoint (nothing is sent yet: an unreachable cluster shows on
    /// first use).
    pub async fn connect(options: &EtcdOptions) -> Result<Self> {
        if options.endpoints.is_empty() {
            return Err(StoreError::Backend("etcd: no endpoints".to_owned()));
        }
        let mut clients = Vec::new();
        for endpoint in &options.endpoints {
            clients.push(connect(std::slice::from_ref(endpoint), options.tls.as_ref()).await?);
        }
        Ok(Self { clients: clients.into(), current: Arc::new(AtomicUsize::new(0)) })
    }

    fn pick(&self) -> (usize, Client) {
        let i = self.current.load(Ordering::SeqCst) % self.clients.len().max(1);
        (i, self.clients.get(i).cloned().unwrap_or_else(|| unreachable!("EtcdClients is never empty")))
    }

    /// Moves on from endpoint `i` (unless another request already did).
    fn failed(&self, i: usize) {
        let next = (i + 1) % self.clients.len().max(1);
        let _ = self.current.compare_exchange(i, next, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Runs `request` on the endpoint in use, failing over to the others as described above.
    pub(crate) async fn call<T, Fut>(&self, repeatable: bool, request: impl Fn(Client) -> Fut) -> Result<T>
    where
        Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let mut last = None;
        for _ in 0..self.clients.len() {
            let (i, client) = self.pick();
            match request(client).await {
                Ok(value) => return Ok(value),
                Err(e) if not_sent(&e) || (repeatable && classify(&e) == Failure::Unavailable) => {
                    self.failed(i);
                    last = Some(e);
                }
                Err(e) => return Err(etcd_err(e)),
            }
        }
        Err(last.map_or_else(|| StoreError::Unavailable("etcd: no endpoints".to_owned()), etcd_err))
    }
}

impl EtcdClients {
    /// A range read (repeatable).
    pub(crate) async fn get(&self, key: impl Into<Vec<u8>>, options: Option<GetOptions>) -> Result<etcd_client::GetResponse> {
        let key = key.into();
        self.call(true, |mut c| {
            let (key, options) = (key.clone(), options.clone());
            async move { c.get(key, options).await }
        })
        .await
    }

    /// A transaction; `repeatable` when sending it twice cannot apply it twice (its compares
    /// fail once it applied).
    pub(crate) async fn txn(&self, repeatable: bool, txn: etcd_client::Txn) -> Result<etcd_client::TxnResponse> {
        self.call(repeatable, |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
    }

    async fn watch(&self, key: impl Into<Vec<u8>>, options: WatchOptions) -> Result<etcd_client::WatchStream> {
        let key = key.into();
        self.call(true, |mut c| {
            let (key, options) = (key.clone(), options.clone());
            async move { c.watch(key, Some(options)).await }
        })
        .await
    }
}

/// A client of `endpoints`. A member cut off from the quorum refuses requests (rather
/// than answering stale reads or holding watches open). HTTP/2 pings, as kube-apiserver sets
/// them (30 s, answered within 10 s), find a member that froze or whose packets vanish: the
/// request timeout covers only a response's start, and a watch on such a member would wait
/// for its next event for good.
async fn connect(endpoints: &[String], tls: Option<&EtcdTls>) -> Result<Client> {
    let mut connect = ConnectOptions::new()
        .with_timeout(REQUEST_TIMEOUT)
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_keep_alive(Duration::from_secs(30), Duration::from_secs(10))
        .with_keep_alive_while_idle(true)
        .with_require_leader(true);
    if let Some(tls) = tls {
        let mut config = etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(&tls.ca_pem));
        if let (Some(cert), Some(key)) = (&tls.cert_pem, &tls.key_pem) {
            config = config.identity(etcd_client::Identity::from_pem(cert, key));
        }
        connect = connect.with_tls(config);
    }
    Client::connect(endpoints, Some(connect)).await.map_err(etcd_err)
}

fn to_etcd(revision: Revision) -> Result<i64> {
    i64::try_from(revision).map_err(|_| StoreError::Backend(format!("revision {revision} out of range")))
}

/// Key encoding between [`ObjectKey`]s and etcd keys, and revision translation.
#[derive(Clone, Debug)]
struct Layout {
    prefix: String,
    base: Revision,
}

impl Layout {
    /// `<prefix>/<group>/<plural>/`: every object of a resource (`key_prefix` is `group/plural`).
    fn resource_dir(&self, key_prefix: &str) -> String {
        let (group, plural) = key_prefix.split_once('/').unwrap_or(("", key_prefix));
        let group = if group.is_empty() { "core" } else { group };
        format!("{}/{group}/{plural}/", self.prefix)
    }

    fn key(&self, key: &ObjectKey) -> String {
        let mut out = self.resource_dir(&key.prefix);
        if !key.namespace.is_empty() {
            out.push_str(&key.namespace);
            out.push('/');
        }
        out.push_str(&key.name);
        out
    }

    /// The object key of an etcd key under the prefix; `None` for anything else.
    fn object_key(&self, key: &[u8]) -> Option<ObjectKey> {
        let rest = std::str::from_utf8(key).ok()?.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        let (group, plural, namespace, name) = match parts.as_slice() {
            [group, plural, name] => (*group, *plural, "", *name),
            [group, plural, namespace, name] => (*group, *plural, *namespace, *name),
            _ => return None,
        };
        if group == INTERNAL_SEGMENT || plural.is_empty() || name.is_empty() {
            return None;
        }
        let group = if group == "core" { "" } else { group };
        Some(ObjectKey { prefix: format!("{group}/{plural}"), namespace: namespace.to_owned(), name: name.to_owned() })
    }

    /// `<prefix>/-/<name>`: internal records (the key set), never listed as objects.
    fn internal(&self, name: &str) -> String {
        format!("{}/{INTERNAL_SEGMENT}/{name}", self.prefix)
    }

    fn revision(&self, etcd_revision: i64) -> Revision {
        Revision::try_from(etcd_revision).unwrap_or(0).saturating_sub(self.base)
    }

    fn etcd_revision(&self, revision: Revision) -> Result<i64> {
        to_etcd(revision.saturating_add(self.base))
    }

    /// The stored object of `kv`, with `resourceVersion` = its `mod_revision`.
    fn object(&self, kv: &KeyValue) -> Result<Object> {
        let mut object = write::parse_stored(kv.value())?;
        object.set_meta("resourceVersion", self.revision(kv.mod_revision()).to_string());
        Ok(object)
    }

    /// The change feed event of one etcd event, if it is about an object.
    fn event(&self, event: &etcd_client::Event) -> Result<Option<Event>> {
        let Some(kv) = event.kv() else { return Ok(None) };
        let Some(key) = self.object_key(kv.key()) else { return Ok(None) };
        let revision = self.revision(kv.mod_revision());
        let (event_type, mut object) = match event.event_type() {
            EtcdEventType::Put if kv.create_revision() == kv.mod_revision() => (EventType::Added, write::parse_stored(kv.value())?),
            EtcdEventType::Put => (EventType::Modified, write::parse_stored(kv.value())?),
            EtcdEventType::Delete => {
                let last = match event.prev_kv() {
                    Some(prev) => write::parse_stored(prev.value())?,
                    // The previous state was compacted away: the key is all that is left.
                    None => Object::from_value(serde_json::json!({"metadata": {"name": key.name, "namespace": key.namespace}}))
                        .ok_or_else(|| StoreError::Backend("building a deleted object".to_owned()))?,
                };
                (EventType::Deleted, last)
            }
        };
        if key.namespace.is_empty() {
            object.metadata_mut().remove("namespace");
        }
        object.set_meta("resourceVersion", revision.to_string());
        Ok(Some(Event { event_type, revision, prefix: Arc::from(key.prefix.as_str()), object: Arc::new(object) }))
    }
}

/// The value stored for `object`: its JSON without `resourceVersion`.
fn stored_value(object: &Object) -> Result<Vec<u8>> {
    let mut object = object.clone();
    object.metadata_mut().remove("resourceVersion");
    serde_json::to_vec(&object.0).map_err(|e| StoreError::Backend(format!("serializing object: {e}")))
}

/// The state a write reads: keys fetched ahead (with their `mod_revision`, 0 when absent).
/// A key it was not given reads as absent (a generated name), which the commit's compare
/// checks like any other read.
struct EtcdTxn {
    known: HashMap<ObjectKey, Option<(Object, i64)>>,
    /// Every key read and the `mod_revision` it had (0: absent): the commit's compares.
    reads: Vec<(ObjectKey, i64)>,
    revision: Revision,
    applied: Option<(ObjectKey, EventType, Vec<u8>)>,
}

impl Txn for EtcdTxn {
    fn get(&mut self, key: &ObjectKey) -> Result<Option<Object>> {
        let found = self.known.get(key).cloned().flatten();
        let mod_revision = found.as_ref().map_or(0, |(_, rev)| *rev);
        self.reads.push((key.clone(), mod_revision));
        Ok(found.map(|(object, _)| object))
    }

    /// The revision of the read; the write's real revision is known only at commit.
    fn revision(&self) -> Revision {
        self.revision
    }

    fn apply(&mut self, key: &ObjectKey, event: &Event) -> Result<()> {
        let value = match event.event_type {
            EventType::Deleted => Vec::new(),
            EventType::Added | EventType::Modified => stored_value(&event.object)?,
        };
        self.applied = Some((key.clone(), event.event_type, value));
        Ok(())
    }
}

/// The live feed: the current broadcast, replaced (closing every receiver) when the watch
/// lost events to a compaction.
struct Live {
    sender: Mutex<broadcast::Sender<Event>>,
}

impl Live {
    fn sender(&self) -> broadcast::Sender<Event> {
        self.sender.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn reset(&self) {
        let (sender, _) = broadcast::channel(DEFAULT_BROADCAST_CAPACITY);
        *self.sender.lock().unwrap_or_else(PoisonError::into_inner) = sender;
    }
}

/// A [`Store`] in etcd.
pub struct EtcdStore {
    clients: EtcdClients,
    layout: Layout,
    clock: Arc<dyn Clock>,
    live: Arc<Live>,
    /// The highest revision this store was asked to compact to (etcd cannot compact its
    /// current revision away, so `compact(current)` is remembered here).
    compacted: AtomicU64,
    health: Arc<StoreHealth>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

impl EtcdStore {
    /// Connects and starts the live watch at the current revision. Fails (Unavailable) when
    /// no endpoint answers.
    pub async fn connect(options: EtcdOptions, clock: Arc<dyn Clock>) -> Result<Self> {
        let clients = EtcdClients::connect(&options).await?;
        Self::with_clients(clients, options, clock).await
    }

    /// A store on existing clients (`options.endpoints` and `tls` are not used).
    pub async fn with_clients(clients: EtcdClients, options: EtcdOptions, clock: Arc<dyn Clock>) -> Result<Self> {
        let layout = Layout { prefix: options.prefix.trim_end_matches('/').to_owned(), base: options.revision_base };
        let (sender, _) = broadcast::channel(DEFAULT_BROADCAST_CAPACITY);
        let live = Arc::new(Live { sender: Mutex::new(sender) });
        let current = etcd_current_revision(&clients, &layout).await?;
        let health = Arc::new(StoreHealth::default());
        let watch = Watch {
            clients: clients.clone(),
            layout: layout.clone(),
            live: Arc::clone(&live),
            health: Arc::clone(&health),
            clock: Arc::clone(&clock),
        };
        let watcher = tokio::spawn(watch.follow(current + 1));
        Ok(Self { clients, layout, clock, live, compacted: AtomicU64::new(0), health, watcher })
    }

    pub fn clients(&self) -> &EtcdClients {
        &self.clients
    }

    /// Since when etcd has been unreachable (set by the watch and the cluster loop).
    pub fn store_health(&self) -> Arc<StoreHealth> {
        Arc::clone(&self.health)
    }

    /// The etcd key of an internal record under the prefix (not an object).
    pub fn internal_key(&self, name: &str) -> String {
        self.layout.internal(name)
    }

    /// Reads `keys` (with their `mod_revision`) at one revision.
    async fn read(&self, keys: &[ObjectKey]) -> Result<(HashMap<ObjectKey, Option<(Object, i64)>>, Revision)> {
        let mut known = HashMap::new();
        let mut revision = 0;
        for key in keys {
            let options = (revision > 0).then(|| GetOptions::new().with_revision(revision));
            let etcd_key = self.layout.key(key);
            let resp = self.clients.get(etcd_key, options).await?;
            if revision == 0 {
                revision = resp.header().map_or(0, |h| h.revision());
            }
            let found = match resp.kvs().first() {
                Some(kv) => Some((self.layout.object(kv)?, kv.mod_revision())),
                None => None,
            };
            known.insert(key.clone(), found);
        }
        if revision == 0 {
            revision = etcd_current_revision(&self.clients, &self.layout).await?;
        }
        Ok((known, self.layout.revision(revision)))
    }

    /// Runs `f` (the shared write rules) on the state read from etcd and commits it if no
    /// key it read changed meanwhile; otherwise reads again and re-runs it.
    async fn write(&self, mut keys: Vec<ObjectKey>, f: impl Fn(&mut EtcdTxn) -> Result<Event>) -> Result<Object> {
        for _ in 0..WRITE_ATTEMPTS {
            let (known, revision) = self.read(&keys).await?;
            let mut txn = EtcdTxn { known, reads: Vec::new(), revision, applied: None };
            let event = f(&mut txn)?;
            let Some((key, event_type, value)) = txn.applied.take() else {
                return Err(StoreError::Backend("write produced no change".to_owned()));
            };
            let compares: Vec<Compare> = txn
                .reads
                .iter()
                .map(|(key, rev)| Compare::mod_revision(self.layout.key(key), CompareOp::Equal, *rev))
                .collect();
            let op = match event_type {
                EventType::Deleted => TxnOp::delete(self.layout.key(&key), None),
                EventType::Added | EventType::Modified => TxnOp::put(self.layout.key(&key), value, None),
            };
            let txn_request = etcd_client::Txn::new().when(compares).and_then(vec![op]);
            let resp = self.clients.txn(false, txn_request).await?;
            if resp.succeeded() {
                let committed = resp.header().map_or(0, |h| h.revision());
                let mut object = (*event.object).clone();
                object.set_meta("resourceVersion", self.layout.revision(committed).to_string());
                return Ok(object);
            }
            // Someone else wrote a key we read: read every key we touched again.
            keys = txn.reads.into_iter().map(|(key, _)| key).collect();
        }
        Err(StoreError::Unavailable("etcd: too many concurrent writes to the same object".to_owned()))
    }

    /// Replays the events after `after` up to the current revision from etcd's history.
    /// It watches the whole keyspace because only there every revision has an event, which
    /// is how the replay knows it reached the current revision.
    async fn replay(&self, after: Revision, current: i64) -> Result<Vec<Event>> {
        let start = self.layout.etcd_revision(after)?.saturating_add(1);
        let options = WatchOptions::new().with_all_keys().with_start_revision(start).with_prev_key();
        let mut stream = self.clients.watch(vec![0u8], options).await?;
        let mut events = Vec::new();
        loop {
            let Some(resp) = stream.message().await.map_err(etcd_err)? else {
                return Err(StoreError::Unavailable("etcd: watch ended during a replay".to_owned()));
            };
            if resp.compact_revision() > 0 {
                // etcd keeps revisions from compact_revision on: everything before is gone.
                let compacted = self.layout.revision(resp.compact_revision()).saturating_sub(1);
                write::check_since(after, compacted)?;
            }
            if resp.canceled() {
                return Err(StoreError::Backend(format!("etcd: replay watch canceled: {}", resp.cancel_reason())));
            }
            for event in resp.events() {
                let revision = event.kv().map_or(0, KeyValue::mod_revision);
                if revision > current {
                    return Ok(events);
                }
                if let Some(event) = self.layout.event(event)? {
                    events.push(event);
                }
                if revision == current {
                    return Ok(events);
                }
            }
        }
    }
}

async fn etcd_current_revision(clients: &EtcdClients, layout: &Layout) -> Result<i64> {
    let options = GetOptions::new().with_count_only();
    let key = layout.internal("revision");
    let resp = clients.get(key, Some(options)).await?;
    resp.header().map(|h| h.revision()).ok_or_else(|| StoreError::Backend("etcd response without a header".to_owned()))
}

/// The live watch of one store.
struct Watch {
    clients: EtcdClients,
    layout: Layout,
    live: Arc<Live>,
    health: Arc<StoreHealth>,
    clock: Arc<dyn Clock>,
}

impl Watch {
    /// Every event under the prefix from `from` on, broadcast in order; resumes after errors
    /// (etcd counts as unreachable until it answers again), and resets the broadcast when
    /// events were compacted away.
    async fn follow(self, mut from: i64) {
        let Self { clients, layout, live, health, clock } = self;
        let dir = format!("{}/", layout.prefix);
        loop {
            let options = WatchOptions::new().with_prefix().with_start_revision(from).with_prev_key();
            let (member, mut client) = clients.pick();
            let mut stream = match client.watch(dir.clone(), Some(options)).await {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "etcd watch: connecting failed; trying the next member");
                    health.unreachable(clock.now());
                    clients.failed(member);
                    tokio::time::sleep(WATCH_RETRY).await;
                    continue;
                }
            };
            loop {
                match stream.message().await {
                    Ok(Some(resp)) => {
                        health.reachable();
                        if resp.compact_revision() > 0 {
                            tracing::warn!(from, compacted = resp.compact_revision(), "etcd watch: events compacted; followers re-list");
                            from = etcd_current_revision(&clients, &layout).await.map_or(resp.compact_revision(), |r| r + 1);
                            live.reset();
                            break;
                        }
                        if resp.canceled() {
                            tracing::warn!(reason = resp.cancel_reason(), "etcd watch canceled; restarting");
                            break;
                        }
                        let sender = live.sender();
                        for event in resp.events() {
                            if let Some(kv) = event.kv() {
                                from = from.max(kv.mod_revision() + 1);
                            }
                            match layout.event(event) {
                                // No receivers is not an error.
                                Ok(Some(event)) => drop(sender.send(event)),
                                Ok(None) => {}
                                Err(e) => tracing::error!(error = %e, "etcd watch: skipping an unreadable object"),
                            }
                        }
                    }
                    // The member went away: resume on the next one from the last revision seen.
                    Ok(None) => {
                        clients.failed(member);
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "etcd watch: stream failed; resuming on the next member");
                        health.unreachable(clock.now());
                        clients.failed(member);
                        break;
                    }
                }
            }
            tokio::time::sleep(WATCH_RETRY).await;
        }
    }
}

/// The etcd key range of a list: `[start, end)`.
fn list_range(layout: &Layout, scan: &write::ListScan) -> (Vec<u8>, Vec<u8>) {
    let dir = match &scan.namespace {
        Some(ns) => format!("{}{ns}/", layout.resource_dir(&scan.prefix)),
        None => layout.resource_dir(&scan.prefix),
    };
    let mut end = dir.clone().into_bytes();
    // '/' + 1 = '0': the end of every key under `dir`.
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let start = match &scan.after {
        Some((ns, name)) => {
            let key = ObjectKey { prefix: scan.prefix.clone(), namespace: ns.clone(), name: name.clone() };
            let mut start = layout.key(&key).into_bytes();
            start.push(0);
            start
        }
        None => dir.into_bytes(),
    };
    (start, end)
}

#[async_trait]
impl Store for EtcdStore {
    async fn create(&self, resource: &Resource, object: Object) -> Result<Object> {
        let now = self.clock.now();
        // A generated name is not known before the write: it reads as absent, and the
        // commit's compare catches a collision (the retry generates another name).
        let mut keys = if object.name().is_empty() { Vec::new() } else { vec![write::object_key(resource, &object)] };
        if resource.namespaced {
            keys.push(write::namespace_key(&object));
        }
        self.write(keys, |txn| write::create(txn, resource, object.clone(), now)).await
    }

    async fn get(&self, resource: &Resource, namespace: &str, name: &str) -> Result<Object> {
        let key = ObjectKey::new(resource, namespace, name);
        let etcd_key = self.layout.key(&key);
        let resp = self.clients.get(etcd_key, None).await?;
        let object = resp.kvs().first().map(|kv| self.layout.object(kv)).transpose()?;
        write::found(resource, name, object)
    }

    async fn list(&self, resource: &Resource, options: &ListOptions) -> Result<ObjectList> {
        let scan = write::ListScan::new(resource, options)?;
        let (mut start, end) = list_range(&self.layout, &scan);
        let mut at = match scan.revision {
            Some(revision) => self.layout.etcd_revision(revision)?,
            None => 0,
        };
        // One more than the page (to know whether more follow), in bounded reads so a large
        // list never exceeds a gRPC message; every read is at the same revision.
        let wanted = if options.limit > 0 { i64::try_from(options.limit).unwrap_or(i64::MAX).saturating_add(1) } else { i64::MAX };
        let batch = wanted.min(LIST_BATCH);
        let mut items = Vec::new();
        loop {
            let mut get = GetOptions::new().with_range(end.clone()).with_limit(batch);
            if at > 0 {
                get = get.with_revision(at);
            }
            let resp = match self.clients.get(start.clone(), Some(get)).await {
                Ok(resp) => resp,
                Err(StoreError::Api(Error::Gone(_))) => return Err(Error::Gone(CONTINUE_TOO_OLD.to_owned()).into()),
                Err(e) => return Err(e),
            };
            if at == 0 {
                at = resp.header().map_or(0, |h| h.revision());
            }
            for kv in resp.kvs() {
                let object = self.layout.object(kv)?;
                if options.label_selector.matches(&object) && options.field_selector.matches(&object) {
                    items.push(object);
                }
            }
            let filled = options.limit > 0 && items.len() > options.limit;
            match resp.kvs().last() {
                Some(last) if resp.more() && !filled => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => break,
            }
        }
        write::collect_list(items.into_iter().map(Ok), options, self.layout.revision(at))
    }

    async fn update(&self, resource: &Resource, object: Object) -> Result<Object> {
        let keys = vec![write::object_key(resource, &object)];
        self.write(keys, |txn| write::update(txn, resource, object.clone())).await
    }

    async fn delete(&self, resource: &Resource, namespace: &str, name: &str, preconditions: &Preconditions) -> Result<Object> {
        let keys = vec![ObjectKey::new(resource, namespace, name)];
        self.write(keys, |txn| write::delete(txn, resource, namespace, name, preconditions)).await
    }

    async fn events_since(&self, after: Revision) -> Result<Vec<Event>> {
        write::check_since(after, self.compacted.load(Ordering::SeqCst))?;
        let current = etcd_current_revision(&self.clients, &self.layout).await?;
        if self.layout.etcd_revision(after)? >= current {
            return Ok(Vec::new());
        }
        match tokio::time::timeout(REQUEST_TIMEOUT * 2, self.replay(after, current)).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable("etcd: replaying the change feed timed out".to_owned())),
        }
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.layout.revision(etcd_current_revision(&self.clients, &self.layout).await?))
    }

    /// Compacts etcd's history (all of it: etcd compacts the whole keyspace). etcd keeps
    /// the compaction revision itself, hence `revision + 1`; it cannot compact past its
    /// current revision, so the rest is remembered by this store.
    async fn compact(&self, revision: Revision) -> Result<()> {
        let current = self.current_revision().await?;
        let target = write::compaction_target(revision, self.compacted.load(Ordering::SeqCst), current);
        let etcd_target = self.layout.etcd_revision(target.saturating_add(1))?.min(self.layout.etcd_revision(current)?);
        match self.clients.call(true, |mut c| async move { c.compact(etcd_target, None).await }).await {
            // Already compacted further: compaction never goes backwards.
            Ok(_) | Err(StoreError::Api(Error::Gone(_))) => {}
            Err(e) => return Err(e),
        }
        self.compacted.fetch_max(target, Ordering::SeqCst);
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.live.sender().subscribe()
    }

    fn health(&self) -> Option<Arc<StoreHealth>> {
        Some(self.store_health())
    }
}

const CONTINUE_TOO_OLD: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_internal_keys_are_not_objects() {
        let layout = Layout { prefix: "/tw".to_owned(), base: 0 };
        let sa = ObjectKey::new(&Resource::SERVICE_ACCOUNTS, "ns", "bot");
        assert_eq!(layout.key(&sa), "/tw/core/serviceaccounts/ns/bot");
        assert_eq!(layout.object_key(layout.key(&sa).as_bytes()), Some(sa));
        let node = ObjectKey::new(&Resource::NODES, "ignored", "n1");
        assert_eq!(layout.key(&node), "/tw/core/nodes/n1");
        assert_eq!(layout.object_key(layout.key(&node).as_bytes()), Some(node));
        assert_eq!(layout.object_key(layout.internal("keys").as_bytes()), None);
        assert_eq!(layout.object_key(b"/twx/core/nodes/n1"), None);
        assert_eq!(layout.object_key(b"/other/core/nodes/n1"), None);
    }

    #[test]
    fn a_namespace_is_one_range() {
        let layout = Layout { prefix: "/tw".to_owned(), base: 0 };
        let options = ListOptions { namespace: Some("a".to_owned()), ..Default::default() };
        let scan = write::ListScan::new(&Resource::SERVICE_ACCOUNTS, &options).unwrap();
        let (start, end) = list_range(&layout, &scan);
        assert_eq!((start.as_slice(), end.as_slice()), (&b"/tw/core/serviceaccounts/a/"[..], &b"/tw/core/serviceaccounts/a0"[..]));
    }
}
