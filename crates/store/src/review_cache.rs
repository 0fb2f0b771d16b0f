//! The TokenReview decision cache.
//!
//! Keyed by HMAC-SHA256 (a per-process random key) over the length-prefixed token and
//! audiences, as kube-apiserver keys its cache: the raw token is never held. The cached value
//! is the expensive half of a review (signature verified, claims parsed); the cheap half
//! (time, audiences, live objects) runs on every hit, so a deleted ServiceAccount, Pod, Secret
//! or Node takes effect at once, not after a TTL. Entries live until the token expires (capped),
//! and concurrent misses for one key verify once.
//!
//! A million entries must fit in a few hundred MiB, so this is a plain sharded map (50 to 100
//! bytes per entry besides the token, with the map's load) rather than a general-purpose cache,
//! whose bookkeeping alone is about 430 bytes per entry. When a shard is full, expired entries go first, then
//! an arbitrary eighth of it: keys are HMACs, so which ones is random.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use tokenwarden_core::Timestamp;
use tokenwarden_core::cache_key::CacheKeyer;
use tokenwarden_core::review::{LEEWAY_SECONDS, ReviewError, VerifiedToken};

/// Longest time an entry is kept (legacy tokens have no `exp`).
const MAX_TTL_SECONDS: i64 = 3600;

/// Independently locked parts of the map; a key's shard is its first byte.
const SHARDS: usize = 16;

type Key = [u8; 32];

pub struct ReviewCache {
    shards: Box<[Mutex<Shard>]>,
    shard_capacity: usize,
    /// Bumped by [`ReviewCache::clear`]: a verification that started before is not kept.
    generation: AtomicU64,
    keyer: CacheKeyer,
}

#[derive(Default)]
struct Shard {
    entries: HashMap<Key, Entry>,
    /// Verifications under way, which concurrent misses of the same key wait for.
    flights: HashMap<Key, Arc<Flight>>,
}

struct Entry {
    token: Arc<VerifiedToken>,
    /// Unix seconds from which the entry is stale.
    expires: i64,
}

#[derive(Default)]
struct Flight {
    state: Mutex<FlightProgress>,
    changed: Condvar,
}

#[derive(Default)]
struct FlightProgress {
    state: FlightState,
    /// Callers asleep on `changed`. Almost always none, and a wake-up is a system call even
    /// then (std's futex condvar), so the leader wakes only when someone waits.
    waiting: usize,
}

#[derive(Default)]
enum FlightState {
    #[default]
    Running,
    Done(Result<Arc<VerifiedToken>, ReviewError>),
    /// The verifying caller panicked: waiters start over.
    Abandoned,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shard {
    /// Makes room for one entry.
    fn make_room(&mut self, capacity: usize, now: i64) {
        if self.entries.len() < capacity {
            return;
        }
        self.entries.retain(|_, e| e.expires > now);
        if self.entries.len() >= capacity {
            // An eighth at once keeps these scans rare.
            let mut excess = self.entries.len() + 1 - capacity + capacity / 8;
            self.entries.retain(|_, _| {
                let keep = excess == 0;
                excess = excess.saturating_sub(1);
                keep
            });
        }
    }
}

impl Flight {
    /// The verifying caller's outcome, `None` if it gave up.
    fn wait(&self) -> Option<Result<Arc<VerifiedToken>, ReviewError>> {
        let mut progress = lock(&self.state);
        loop {
            match &progress.state {
                FlightState::Running => {
                    progress.waiting += 1;
                    progress = self.changed.wait(progress).unwrap_or_else(PoisonError::into_inner);
                    progress.waiting -= 1;
                }
                FlightState::Done(result) => return Some(result.clone()),
                FlightState::Abandoned => return None,
            }
        }
    }

    fn finish(&self, state: FlightState) {
        let mut progress = lock(&self.state);
        if matches!(progress.state, FlightState::Running) {
            progress.state = state;
        }
        if progress.waiting > 0 {
            self.changed.notify_all();
        }
    }

    fn is_running(&self) -> bool {
        matches!(lock(&self.state).state, FlightState::Running)
    }
}

/// The caller verifying a key: ends its flight, also on a panic.
struct Leader<'a> {
    shard: &'a Mutex<Shard>,
    key: Key,
    flight: Arc<Flight>,
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if self.flight.is_running() {
            lock(self.shard).flights.remove(&self.key);
            self.flight.finish(FlightState::Abandoned);
        }
    }
}

enum Role {
    Hit(Arc<VerifiedToken>),
    Wait(Arc<Flight>),
    Lead(Arc<Flight>),
}

impl ReviewCache {
    /// A cache of at most about `capacity` verified tokens, with a fresh random HMAC key.
    pub fn new(capacity: u64) -> Self {
        let per_shard = capacity.div_ceil(SHARDS as u64);
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shard_capacity: usize::try_from(per_shard).unwrap_or(usize::MAX),
            generation: AtomicU64::new(0),
            keyer: CacheKeyer::new(crate::clock::random_bytes()),
        }
    }

    /// The cached verification of (`token`, `audiences`), if there is a fresh one; never
    /// verifies.
    pub fn get(&self, token: &str, audiences: &[String], now: Timestamp) -> Option<Arc<VerifiedToken>> {
        let key = self.keyer.key(&[token], audiences);
        let shard = lock(&self.shards[usize::from(key[0]) % SHARDS]);
        shard.entries.get(&key).filter(|entry| entry.expires > now.unix()).map(|entry| Arc::clone(&entry.token))
    }

    /// The verified token for (`token`, `audiences`), running `verify` on a miss, and whether
    /// it came from the cache. Concurrent misses for the same key wait for one `verify`.
    /// Failures are not cached.
    pub fn get_or_verify(
        &self,
        token: &str,
        audiences: &[String],
        now: Timestamp,
        verify: impl FnOnce() -> Result<VerifiedToken, ReviewError>,
    ) -> Result<(Arc<VerifiedToken>, bool), ReviewError> {
        let key = self.keyer.key(&[token], audiences);
        let shard = &self.shards[usize::from(key[0]) % SHARDS];
        loop {
            let role = {
                let mut guard = lock(shard);
                match guard.entries.get(&key) {
                    Some(entry) if entry.expires > now.unix() => Role::Hit(Arc::clone(&entry.token)),
                    stale => {
                        if stale.is_some() {
                            guard.entries.remove(&key);
                        }
                        match guard.flights.get(&key) {
                            Some(flight) => Role::Wait(Arc::clone(flight)),
                            None => {
                                let flight = Arc::new(Flight::default());
                                guard.flights.insert(key, Arc::clone(&flight));
                                Role::Lead(flight)
                            }
                        }
                    }
                }
            };
            match role {
                Role::Hit(token) => return Ok((token, true)),
                Role::Wait(flight) => {
                    if let Some(result) = flight.wait() {
                        return result.map(|token| (token, true));
                    }
                }
                Role::Lead(flight) => {
                    let leader = Leader { shard, key, flight };
                    let generation = self.generation.load(Ordering::Acquire);
                    let result = verify().map(Arc::new);
                    self.complete(&leader, &result, now.unix(), generation);
                    return result.map(|token| (token, false));
                }
            }
        }
    }

    /// Ends a flight: keeps a success that started at `generation` (unless a clear came since)
    /// and lets the waiters go, in that order so that no caller finds neither.
    fn complete(&self, leader: &Leader<'_>, result: &Result<Arc<VerifiedToken>, ReviewError>, now: i64, generation: u64) {
        let mut shard = lock(leader.shard);
        if let Ok(token) = result {
            let expires = token.exp().map_or(i64::MAX, |exp| exp.saturating_add(LEEWAY_SECONDS)).min(now.saturating_add(MAX_TTL_SECONDS));
            // checked under the shard's lock: a clear bumps the generation before emptying the shards
            if expires > now && self.shard_capacity > 0 && self.generation.load(Ordering::Acquire) == generation {
                shard.make_room(self.shard_capacity, now);
                shard.entries.insert(leader.key, Entry { token: Arc::clone(token), expires });
            }
        }
        shard.flights.remove(&leader.key);
        drop(shard);
        leader.flight.finish(FlightState::Done(result.clone()));
    }

    /// Forgets everything (after a key-set change).
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        for shard in &self.shards {
            lock(shard).entries.clear();
        }
    }

    pub fn len(&self) -> u64 {
        self.shards.iter().map(|s| u64::try_from(lock(s).entries.len()).unwrap_or(u64::MAX)).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
