//! State shared by the consumer thread (writer), the `/metrics` collector and the API (readers).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::record::Aggregate;

/// Counters the consumer's Kafka callbacks update, outside the aggregate's lock.
#[derive(Debug, Default)]
pub struct Stats {
    pub partitions_assigned: AtomicI64,
    pub commit_errors: AtomicU64,
    pub branch_enabled: AtomicBool,
    pub branch_delivered: AtomicU64,
    pub branch_failed: AtomicU64,
}

/// The processor's clock: ticks of one second since start, for idle and capacity eviction.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            start: Instant::now(),
        }
    }
}

impl Clock {
    /// The tick at instant `at`: seconds since start (wraps after 136 years). The caller reads
    /// the clock once and uses it for several things.
    #[inline]
    pub fn tick_at(&self, at: Instant) -> u32 {
        at.saturating_duration_since(self.start).as_secs() as u32
    }

    /// A duration in ticks, rounded up, saturating.
    pub fn ticks(d: Duration) -> u32 {
        u32::try_from(d.as_millis().div_ceil(1000)).unwrap_or(u32::MAX)
    }
}

/// The aggregate behind a lock, plus the callback counters.
#[derive(Debug)]
pub struct Shared {
    agg: Mutex<Aggregate>,
    pub stats: Stats,
}

impl Shared {
    pub fn new(agg: Aggregate) -> Self {
        Shared {
            agg: Mutex::new(agg),
            stats: Stats::default(),
        }
    }

    /// Locks the aggregate. A panic while holding the lock cannot leave the counters in a state
    /// worse than "one record partly counted", so a poisoned lock is taken over.
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, Aggregate> {
        self.agg.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
