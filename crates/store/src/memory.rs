//! The in-memory backend: a B-tree of objects and a bounded event log, for tests and
//! ephemeral use. Not durable.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokenwarden_core::{Object, ObjectKey, Resource};
use tokio::sync::broadcast;

use crate::write::{self, Txn};
use crate::{Clock, Event, EventType, ListOptions, ObjectList, Preconditions, Result, Revision, Store};

/// Events kept before automatic compaction, unless configured otherwise.
pub const DEFAULT_KEEP_EVENTS: usize = 100_000;
/// Capacity of the live broadcast; a receiver further behind is told it lagged.
pub const DEFAULT_BROADCAST_CAPACITY: usize = 1024;

/// A [`Store`] in memory.
pub struct MemoryStore {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    live: broadcast::Sender<Event>,
}

struct State {
    objects: BTreeMap<ObjectKey, Object>,
    events: VecDeque<Event>,
    revision: Revision,
    compacted: Revision,
    keep_events: usize,
}

impl State {
    fn compact_to(&mut self, revision: Revision) {
        self.compacted = write::compaction_target(revision, self.compacted, self.revision);
        while self.events.front().is_some_and(|e| e.revision <= self.compacted) {
            self.events.pop_front();
        }
    }
}

impl Txn for State {
    fn get(&mut self, key: &ObjectKey) -> Result<Option<Object>> {
        Ok(self.objects.get(key).cloned())
    }

    fn revision(&self) -> Revision {
        self.revision
    }

    fn apply(&mut self, key: &ObjectKey, event: &Event) -> Result<()> {
        match event.event_type {
            EventType::Deleted => {
                self.objects.remove(key);
            }
            EventType::Added | EventType::Modified => {
                self.objects.insert(key.clone(), (*event.object).clone());
            }
        }
        self.events.push_back(event.clone());
        self.revision = event.revision;
        if let Some(target) = write::auto_compaction(self.revision, self.compacted, self.keep_events) {
            self.compact_to(target);
        }
        Ok(())
    }
}

impl MemoryStore {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self::with_keep_events(clock, DEFAULT_KEEP_EVENTS)
    }

    /// A store that keeps at most `keep_events` events (older ones are compacted).
    pub fn with_keep_events(clock: Arc<dyn Clock>, keep_events: usize) -> Self {
        let (live, _) = broadcast::channel(DEFAULT_BROADCAST_CAPACITY);
        let state = State {
            objects: BTreeMap::new(),
            events: VecDeque::new(),
            revision: 0,
            compacted: 0,
            keep_events,
        };
        Self { clock, state: Mutex::new(state), live }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something did, the state is still whole.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs one write under the lock and publishes its event before releasing it, so the
    /// feed sees events in revision order.
    fn write(&self, f: impl FnOnce(&mut State) -> Result<Event>) -> Result<Object> {
        let mut state = self.state();
        let event = f(&mut state)?;
        let object = (*event.object).clone();
        // No receivers is not an error.
        let _ = self.live.send(event);
        Ok(object)
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn create(&self, resource: &Resource, object: Object) -> Result<Object> {
        let now = self.clock.now();
        self.write(|state| write::create(state, resource, object, now))
    }

    async fn get(&self, resource: &Resource, namespace: &str, name: &str) -> Result<Object> {
        let key = ObjectKey::new(resource, namespace, name);
        write::found(resource, name, self.state().objects.get(&key).cloned())
    }

    async fn list(&self, resource: &Resource, options: &ListOptions) -> Result<ObjectList> {
        let scan = write::ListScan::new(resource, options)?;
        let state = self.state();
        let scanned = state
            .objects
            .range(scan.start_key()..)
            .take_while(|(key, _)| !scan.past_end(key))
            .filter(|(key, _)| scan.contains(key))
            .map(|(_, object)| Ok(object.clone()));
        // Later pages say the first page's revision (see the SQLite store).
        write::collect_list(scanned, options, scan.revision.map_or(state.revision, |first| first.min(state.revision)))
    }

    async fn update(&self, resource: &Resource, object: Object) -> Result<Object> {
        self.write(|state| write::update(state, resource, object))
    }

    async fn delete(&self, resource: &Resource, namespace: &str, name: &str, preconditions: &Preconditions) -> Result<Object> {
        self.write(|state| write::delete(state, resource, namespace, name, preconditions))
    }

    async fn events_since(&self, after: Revision) -> Result<Vec<Event>> {
        let state = self.state();
        write::check_since(after, state.compacted)?;
        Ok(state.events.iter().filter(|e| e.revision > after).cloned().collect())
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.state().revision)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.state().compact_to(revision);
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.live.subscribe()
    }
}
