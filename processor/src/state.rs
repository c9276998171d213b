//! State shared by the consumer thread (writer), the `/metrics` collector and the API (readers).

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::engine::Engine;

/// Counters the consumer's Kafka callbacks update, outside the engine's lock.
#[derive(Debug, Default)]
pub struct Stats {
    pub partitions_assigned: AtomicI64,
    pub commit_errors: AtomicU64,
}

/// The engine behind a lock, plus the callback counters.
#[derive(Debug)]
pub struct Shared {
    engine: Mutex<Engine>,
    pub stats: Stats,
}

impl Shared {
    pub fn new(engine: Engine) -> Self {
        Shared {
            engine: Mutex::new(engine),
            stats: Stats::default(),
        }
    }

    /// Locks the engine. A panic while holding the lock cannot leave the counters in a state
    /// worse than "one record partly counted", so a poisoned lock is taken over.
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
