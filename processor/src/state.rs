//! State shared by the consuming threads (writers), the `/metrics` collector and the API
//! (readers): one engine per lane. With `--threads 1` there is one lane and the consumer
//! thread runs it; with N, each worker thread owns a lane and the partitions given to it, so
//! writers never contend (a reader takes each lane's lock in turn, briefly).

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::analysis::{Analysis, Host, Snapshots};
use crate::decode::InvalidReason;
use crate::engine::Engine;

/// Counters the consumer's Kafka callbacks update, outside the engines' locks.
#[derive(Debug, Default)]
pub struct Stats {
    pub partitions_assigned: AtomicI64,
    pub commit_errors: AtomicU64,
}

/// The engines behind their locks, plus the callback counters.
#[derive(Debug)]
pub struct Shared {
    lanes: Vec<Mutex<Engine>>,
    pub stats: Stats,
}

impl Shared {
    /// One lane.
    pub fn new(engine: Engine) -> Self {
        Shared::with_lanes(vec![engine])
    }

    /// One lane per engine (at least one).
    pub fn with_lanes(engines: Vec<Engine>) -> Self {
        assert!(!engines.is_empty(), "at least one lane");
        Shared {
            lanes: engines.into_iter().map(Mutex::new).collect(),
            stats: Stats::default(),
        }
    }

    /// How many lanes (engines) there are.
    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// Locks lane `i` (clamped to the last). A panic while holding the lock cannot leave the
    /// counters in a state worse than "one record partly counted", so a poisoned lock is taken
    /// over.
    #[inline]
    pub fn lane(&self, i: usize) -> MutexGuard<'_, Engine> {
        let i = i.min(self.lanes.len() - 1);
        self.lanes[i].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every lane, locked in order (readers; writers lock one lane at a time, so this cannot
    /// deadlock).
    pub fn lock(&self) -> View<'_> {
        View {
            guards: (0..self.lanes.len()).map(|i| self.lane(i)).collect(),
        }
    }
}

/// Every lane, locked: what readers see as one engine.
pub struct View<'a> {
    guards: Vec<MutexGuard<'a, Engine>>,
}

impl View<'_> {
    /// The engines, in lane order.
    pub fn engines(&self) -> impl Iterator<Item = &Engine> {
        self.guards.iter().map(|g| &**g)
    }

    /// The engines, mutably (an identity update goes to every lane).
    pub fn engines_mut(&mut self) -> impl Iterator<Item = &mut Engine> {
        self.guards.iter_mut().map(|g| &mut **g)
    }

    /// The first lane's engine: what every lane has in common (names, families, flushers).
    pub fn first(&self) -> &Engine {
        &self.guards[0]
    }

    /// The first lane's engine, mutably (the single-lane case: tests, benches).
    pub fn first_mut(&mut self) -> &mut Engine {
        &mut self.guards[0]
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.first().names()
    }

    pub fn consumed(&self) -> u64 {
        self.engines().map(Engine::consumed).sum()
    }

    pub fn invalid(&self, reason: InvalidReason) -> u64 {
        self.engines().map(|e| e.invalid(reason)).sum()
    }

    /// Every analysis' snapshot, accumulated over the lanes.
    pub fn snapshot(&self) -> Snapshots {
        let mut snaps = Snapshots::default();
        for e in self.engines() {
            e.snapshot_into(&mut snaps);
        }
        snaps
    }

    pub fn defs(&self) -> Vec<netstream_runtime::metrics::FamilyDef> {
        self.first().defs()
    }

    pub fn flushers(&self) -> Vec<std::sync::Arc<dyn crate::analysis::Flush>> {
        self.first().flushers()
    }

    /// Analysis `A` with its shards, in every lane where it is enabled.
    pub fn hosts<A: Analysis>(&self) -> impl Iterator<Item = &Host<A>> {
        self.engines().filter_map(|e| e.host::<A>())
    }

    /// Analysis `A` of the first lane: for analyses whose state is not per lane (`workloads`
    /// runs on one lane only).
    pub fn analysis<A: Analysis>(&self) -> Option<&A> {
        self.first().analysis::<A>()
    }
}
