//! The one place that reads the clock. Everything else takes `now` from a [`Clock`].

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use tokenwarden_core::Timestamp;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the sanctioned clock read
    fn now(&self) -> Timestamp {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Timestamp(secs)
    }
}

/// A clock tests set by hand.
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(now: Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(now.unix())))
    }

    pub fn set(&self, now: Timestamp) {
        self.0.store(now.unix(), Ordering::SeqCst);
    }

    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

/// Random bytes from the system's CSPRNG (aws-lc-rs).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // aws-lc's RNG does not fail on supported platforms; a failure here is unrecoverable.
    aws_lc_rs::rand::fill(&mut out).unwrap_or_else(|_| panic!("system random number generator failed"));
    out
}

/// Elapsed time for metrics and logs (monotonic); never a source of domain time.
#[derive(Clone, Copy, Debug)]
pub struct Stopwatch(std::time::Instant);

impl Stopwatch {
    #[allow(clippy::disallowed_methods)] // the sanctioned clock read
    pub fn start() -> Self {
        Self(std::time::Instant::now())
    }

    pub fn elapsed_seconds(&self) -> f64 {
        self.elapsed().as_secs_f64()
    }

    /// Monotonic time since [`Stopwatch::start`]: the `now` of in-memory rate limiters.
    pub fn elapsed(&self) -> std::time::Duration {
        self.0.elapsed()
    }
}
