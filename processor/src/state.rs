//! State shared by the consumer thread (writer), the `/metrics` collector and the API (readers).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
use std::sync::{Mutex, MutexGuard, PoisonError};

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
