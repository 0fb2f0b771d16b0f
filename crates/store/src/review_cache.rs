//! The TokenReview decision cache.
//!
//! Keyed by HMAC-SHA256 (a per-process random key) over the length-prefixed token and
//! audiences, as kube-apiserver keys its cache: the raw token is never held. The cached value
//! is the expensive half of a review (signature verified, claims parsed); the cheap half
//! (time, audiences, live objects) runs on every hit, so a deleted ServiceAccount, Pod, Secret
//! or Node takes effect at once, not after a TTL. Entries live until the token expires (capped;
//! at least a few seconds, so an expired token is refused without verifying it again), and
//! concurrent misses for one key verify once.
//!
//! A failed verification is remembered for a few seconds too, under the same key, so a flood of
//! one bad token costs one signature check per window and a review hashes its token once,
//! whatever the answer. Keeping it is as sound as keeping a success: `verify` depends only on the
//! token, the key set and the (fixed) issuer configuration, and a key-set change clears both. A
//! verification that started before a key-set change is neither kept nor shared afterwards:
//! `verify` must read the key set itself, after the cache has taken the generation.
//!
//! A million entries must fit in a few hundred MiB, so this is a plain sharded map (50 to 100
//! bytes per entry besides the token, with the map's load) rather than a general-purpose cache,
//! whose bookkeeping alone is about 430 bytes per entry. When a shard is full, expired entries go first, then
//! an arbitrary eighth of it: keys are HMACs, so which ones is random. Refusals have their own
//! map, an eighth of the capacity, emptied the same way.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use tokenwarden_core::Timestamp;
use tokenwarden_core::cache_key::CacheKeyer;
use tokenwarden_core::review::{LEEWAY_SECONDS, ReviewError, VerifiedToken};

/// Longest time an entry is kept (legacy tokens have no `exp`).
const MAX_TTL_SECONDS: i64 = 3600;

/// How long a refusal, or a token that has already expired, is kept: long enough that a
/// flood of one bad token costs one verification per window.
const REFUSAL_TTL_SECONDS: i64 = 5;

/// Independently locked parts of the map; a key's shard is its first byte.
const SHARDS: usize = 16;

type Key = [u8; 32];

/// A map by [`Key`]. The keys are HMACs, random to anyone without the process's secret, so
/// their own bytes serve as the hash: SipHash over them was a twentieth of a cached check's
/// own instructions.
type KeyMap<V> = HashMap<Key, V, BuildHasherDefault<KeyHasher>>;

#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    /// The key's bytes 8 to 16: not byte 0, which is the same in a whole shard.
    fn write(&mut self, bytes: &[u8]) {
        if let Some(word) = bytes.get(8..).and_then(<[u8]>::first_chunk::<8>) {
            self.0 = u64::from_le_bytes(*word);
        }
    }

    /// The length written before the key: always 32.
    fn write_usize(&mut self, _: usize) {}

    fn finish(&self) -> u64 {
        self.0
    }
}

pub struct ReviewCache {
    shards: Box<[Mutex<Shard>]>,
    shard_capacity: usize,
    /// Bumped by [`ReviewCache::clear`]: a verification that started before is not kept.
    generation: AtomicU64,
    keyer: CacheKeyer,
}

#[derive(Default)]
struct Shard {
    entries: KeyMap<Entry>,
    /// Failed verifications, kept for [`REFUSAL_TTL_SECONDS`]; apart from `entries`, whose
    /// values stay one pointer wide for the million entries that must fit.
    refused: KeyMap<Refusal>,
    /// Verifications under way, which concurrent misses of the same key wait for.
    flights: KeyMap<Arc<Flight>>,
}

struct Entry {
    token: Arc<VerifiedToken>,
    /// Unix seconds from which the entry is stale.
    expires: i64,
}

struct Refusal {
    error: ReviewError,
    expires: i64,
}

struct Flight {
    state: Mutex<FlightProgress>,
    changed: Condvar,
    /// The cache's generation when the verification started.
    generation: u64,
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

/// Makes room for one entry in `map`: the entries stale at `now` (by `expires`) go, then, if
/// that is not enough, an eighth of the map at once (which keeps these scans rare).
fn make_room<V>(map: &mut KeyMap<V>, capacity: usize, now: i64, expires: impl Fn(&V) -> i64) {
    if map.len() < capacity {
        return;
    }
    map.retain(|_, e| expires(e) > now);
    if map.len() >= capacity {
        let mut excess = map.len() + 1 - capacity + capacity / 8;
        map.retain(|_, _| {
            let keep = excess == 0;
            excess = excess.saturating_sub(1);
            keep
        });
    }
}

impl Flight {
    fn new(generation: u64) -> Self {
        Self { state: Mutex::default(), changed: Condvar::new(), generation }
    }

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

impl Leader<'_> {
    /// Takes this flight out of the shard, unless a newer one (after a key-set change) took
    /// its place.
    fn land(&self, shard: &mut Shard) {
        if shard.flights.get(&self.key).is_some_and(|f| Arc::ptr_eq(f, &self.flight)) {
            shard.flights.remove(&self.key);
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if self.flight.is_running() {
            self.land(&mut lock(self.shard));
            self.flight.finish(FlightState::Abandoned);
        }
    }
}

enum Role {
    Hit(Result<Arc<VerifiedToken>, ReviewError>),
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

    /// The verification of (`token`, `audiences`), running `verify` on a miss, and whether it
    /// came from the cache (a success or a refusal kept earlier, or another caller's
    /// verification waited for). Concurrent misses for the same key wait for one `verify`.
    /// `verify` must read the key set itself (not before this call): a verification is kept
    /// only if no clear came between the miss and its end.
    pub fn get_or_verify(
        &self,
        token: &str,
        audiences: &[String],
        now: Timestamp,
        verify: impl FnOnce() -> Result<VerifiedToken, ReviewError>,
    ) -> (Result<Arc<VerifiedToken>, ReviewError>, bool) {
        let key = self.keyer.key(&[token], audiences);
        let shard = &self.shards[usize::from(key[0]) % SHARDS];
        let now_s = now.unix();
        loop {
            let role = {
                let mut guard = lock(shard);
                if let Some(entry) = guard.entries.get(&key).filter(|e| e.expires > now_s) {
                    Role::Hit(Ok(Arc::clone(&entry.token)))
                } else if let Some(refusal) = guard.refused.get(&key).filter(|r| r.expires > now_s) {
                    Role::Hit(Err(refusal.error.clone()))
                } else {
                    // Read under the shard's lock: a clear bumps it before emptying the shards.
                    let generation = self.generation.load(Ordering::Acquire);
                    match guard.flights.get(&key) {
                        // A verification begun before a key-set change answers for the old keys.
                        Some(flight) if flight.generation == generation => Role::Wait(Arc::clone(flight)),
                        _ => {
                            let flight = Arc::new(Flight::new(generation));
                            guard.flights.insert(key, Arc::clone(&flight));
                            Role::Lead(flight)
                        }
                    }
                }
            };
            match role {
                Role::Hit(result) => return (result, true),
                Role::Wait(flight) => {
                    if let Some(result) = flight.wait() {
                        return (result, true);
                    }
                }
                Role::Lead(flight) => {
                    let leader = Leader { shard, key, flight };
                    let result = verify().map(Arc::new);
                    self.complete(&leader, &result, now_s);
                    return (result, false);
                }
            }
        }
    }

    /// Ends a flight: keeps its outcome unless a clear came since it started, and lets the
    /// waiters go, in that order so that no caller finds neither.
    fn complete(&self, leader: &Leader<'_>, result: &Result<Arc<VerifiedToken>, ReviewError>, now: i64) {
        let mut shard = lock(leader.shard);
        // checked under the shard's lock: a clear bumps the generation before emptying the shards
        if self.shard_capacity > 0 && self.generation.load(Ordering::Acquire) == leader.flight.generation {
            match result {
                Ok(token) => {
                    // An expired token is kept briefly too: the review refuses it on every hit,
                    // without verifying it again.
                    let exp = token.exp().map_or(i64::MAX, |exp| exp.saturating_add(LEEWAY_SECONDS));
                    let expires = exp.max(now.saturating_add(REFUSAL_TTL_SECONDS)).min(now.saturating_add(MAX_TTL_SECONDS));
                    make_room(&mut shard.entries, self.shard_capacity, now, |e| e.expires);
                    shard.entries.insert(leader.key, Entry { token: Arc::clone(token), expires });
                    shard.refused.remove(&leader.key);
                }
                Err(error) => {
                    make_room(&mut shard.refused, self.shard_capacity.div_ceil(8), now, |r| r.expires);
                    let expires = now.saturating_add(REFUSAL_TTL_SECONDS);
                    shard.refused.insert(leader.key, Refusal { error: error.clone(), expires });
                    shard.entries.remove(&leader.key);
                }
            }
        }
        leader.land(&mut shard);
        drop(shard);
        leader.flight.finish(FlightState::Done(result.clone()));
    }

    /// Forgets everything (after a key-set change).
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        for shard in &self.shards {
            let mut shard = lock(shard);
            shard.entries.clear();
            shard.refused.clear();
        }
    }

    /// Verified tokens held (refusals aside).
    pub fn len(&self) -> u64 {
        self.shards.iter().map(|s| u64::try_from(lock(s).entries.len()).unwrap_or(u64::MAX)).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher as _;

    use super::*;

    #[test]
    fn keys_hash_by_bytes_the_shard_does_not_fix() {
        let hash = |key: &Key| BuildHasherDefault::<KeyHasher>::default().hash_one(key);
        let key: Key = std::array::from_fn(|i| u8::try_from(i).unwrap_or_default());
        let mut same_shard = key;
        same_shard[9] ^= 1;
        assert_ne!(hash(&key), hash(&same_shard), "keys of one shard must spread over its map");
        let mut other_shard = key;
        other_shard[0] ^= 1;
        assert_eq!(hash(&key), hash(&other_shard), "byte 0 picks the shard and is not hashed");
    }
}
