//! How current a replica's view of a shared store is, for `/readyz` and metrics.
//!
//! During an etcd outage a replica keeps reviewing tokens from its watch-fed index; this
//! records since when that index may be missing changes, and whether this replica leads
//! the cluster's singleton jobs.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use tokenwarden_core::Timestamp;

/// Shared by the store (its watch), the cluster job (its probe) and the observers.
#[derive(Debug, Default)]
pub struct StoreHealth {
    /// Unix seconds of the first failed contact since the last good one; 0 while reachable.
    unreachable_since: AtomicI64,
    leader: AtomicBool,
}

impl StoreHealth {
    /// etcd answered: the index is following it again.
    pub fn reachable(&self) {
        self.unreachable_since.store(0, Ordering::SeqCst);
    }

    /// etcd did not answer at `now`; the first failure of a streak is kept.
    pub fn unreachable(&self, now: Timestamp) {
        let _ = self.unreachable_since.compare_exchange(
            0,
            now.unix().max(1),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }

    /// Seconds the store has been unreachable at `now` (the most the index can be stale by),
    /// `None` while reachable.
    pub fn stale_seconds(&self, now: Timestamp) -> Option<i64> {
        match self.unreachable_since.load(Ordering::SeqCst) {
            0 => None,
            since => Some(now.unix().saturating_sub(since).max(0)),
        }
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::SeqCst);
    }

    /// Whether this replica runs the cluster's singleton jobs (key rotation).
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staleness_counts_from_the_first_failure_until_etcd_answers() {
        let health = StoreHealth::default();
        assert_eq!(health.stale_seconds(Timestamp(100)), None);
        health.unreachable(Timestamp(100));
        health.unreachable(Timestamp(105));
        assert_eq!(health.stale_seconds(Timestamp(112)), Some(12));
        health.reachable();
        assert_eq!(health.stale_seconds(Timestamp(113)), None);
    }
}
