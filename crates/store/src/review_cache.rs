//! The TokenReview decision cache.
//!
//! Keyed by HMAC-SHA256 (a per-process random key) over the length-prefixed token and
//! audiences, as kube-apiserver keys its cache: the raw token is never held. The cached value
//! is the expensive half of a review (signature verified, claims parsed); the cheap half
//! (time, audiences, live objects) runs on every hit, so a deleted ServiceAccount, Pod, Secret
//! or Node takes effect at once, not after a TTL. Entries live until the token expires (capped),
//! and concurrent misses for one key verify once.

use std::sync::Arc;
use std::time::Duration;

use tokenwarden_core::Timestamp;
use tokenwarden_core::cache_key::CacheKeyer;
use tokenwarden_core::review::{LEEWAY_SECONDS, ReviewError, VerifiedToken};

/// Longest time an entry is kept (legacy tokens have no `exp`).
const MAX_TTL: Duration = Duration::from_secs(3600);

#[derive(Clone)]
struct Entry {
    token: Arc<VerifiedToken>,
    ttl: Duration,
}

struct ByTokenExpiry;

impl moka::Expiry<[u8; 32], Entry> for ByTokenExpiry {
    fn expire_after_create(&self, _key: &[u8; 32], entry: &Entry, _created_at: std::time::Instant) -> Option<Duration> {
        Some(entry.ttl)
    }
}

pub struct ReviewCache {
    entries: moka::sync::Cache<[u8; 32], Entry>,
    keyer: CacheKeyer,
}

impl ReviewCache {
    /// A cache of at most `capacity` verified tokens, with a fresh random HMAC key.
    pub fn new(capacity: u64) -> Self {
        Self {
            entries: moka::sync::Cache::builder().max_capacity(capacity).expire_after(ByTokenExpiry).build(),
            keyer: CacheKeyer::new(crate::clock::random_bytes()),
        }
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
        let mut verified_here = false;
        let entry = self.entries.try_get_with(key, || {
            verified_here = true;
            let verified = verify()?;
            let ttl = match verified.exp() {
                Some(exp) => {
                    let left = exp.saturating_add(LEEWAY_SECONDS).saturating_sub(now.unix()).max(0);
                    Duration::from_secs(u64::try_from(left).unwrap_or(0)).min(MAX_TTL)
                }
                None => MAX_TTL,
            };
            Ok::<_, ReviewError>(Entry { token: Arc::new(verified), ttl })
        });
        entry.map(|e| (e.token, !verified_here)).map_err(|e| (*e).clone())
    }

    /// Forgets everything (after a key-set change).
    pub fn clear(&self) {
        self.entries.invalidate_all();
    }

    pub fn len(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
