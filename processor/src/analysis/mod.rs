//! Analyses: many views of one packet stream. An analysis is one folder here implementing
//! [`Analysis`], listed once in [`registry`]; the [`crate::engine::Engine`] decodes each record
//! once and hands the packet to every enabled analysis in registry order.
//!
//! State lives per Kafka partition ([`Analysis::Shard`]): a flow never spans partitions (records
//! are keyed by the flow), so a shard is everything an analysis knows about its partition's
//! flows, and a revoked partition's shard is dropped whole ([`Analysis::revoked`] folds what
//! must not go down, like totals, into the analysis first). What is not per flow (per-protocol
//! totals, the identity index) lives in the analysis itself.
//!
//! `/metrics` and the API read an analysis through its [`Analysis::Snapshot`]: copied under the
//! engine's lock (quick), rendered after it is released. Later analyses may read earlier ones'
//! snapshots (the workload labels of per-flow series) and, per packet, what earlier ones noted
//! on it ([`Packet::initiator_is_b`]).
//!
//! The cost of hosting: one virtual call per packet per enabled analysis; an analysis that is
//! off is not in the list at all (`benches/engine.rs` measures it).

pub mod branch;
pub mod flows;
pub mod registry;
pub mod workloads;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use prometheus::proto::MetricFamily;

pub use crate::engine::Packet;
use netstream_runtime::metrics::FamilyDef;

/// What an analysis says after seeing a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    /// The record could not be fully processed (the process is stopping): the engine stops, and
    /// the record's offset is not committed.
    Stop,
}

/// Something an analysis holds in flight that must be flushed before offsets are committed
/// (the branch producer). Called without the engine's lock.
pub trait Flush: Send + Sync {
    /// Waits until everything handed over so far is acknowledged (or failed for good).
    fn flush(&self, timeout: Duration) -> Result<(), String>;
    /// Records still in flight (for the log line when a flush times out).
    fn in_flight(&self) -> i64;
}

/// One analysis. See the module docs for the model.
pub trait Analysis: Send + 'static {
    /// The name in `--analyses` and the config file.
    const NAME: &'static str;
    /// Everything it knows about one partition.
    type Shard: Send + 'static;
    /// What `/metrics` and the API render; starts at `Default` and accumulates over shards.
    type Snapshot: Default + Send + Sync + 'static;

    /// State for a partition the engine sees for the first time (after an assignment).
    fn shard(&mut self, partition: i32) -> Self::Shard;

    /// One packet of `shard`'s partition. Allocates nothing on the common path.
    fn packet(&mut self, shard: &mut Self::Shard, pkt: &Packet<'_>) -> Verdict;

    /// The set of shards changed (one was added or removed): e.g. re-split a memory budget.
    fn shards_changed(&mut self, _shards: &mut [Self::Shard], _now: u32) {}

    /// About once a second, at processor tick `now`: idle state out.
    fn tick(&mut self, _shards: &mut [Self::Shard], _now: u32) {}

    /// The partition was revoked; its shard is dropped after this. Fold in what must not go
    /// down (counter totals). Returns how many entries (flows, connections) go with it.
    fn revoked(&mut self, _partition: i32, _shard: Self::Shard) -> usize {
        0
    }

    /// What must be flushed before offsets are committed, if anything.
    fn flusher(&self) -> Option<Arc<dyn Flush>> {
        None
    }

    /// Adds this analysis' state to `into` (called under the engine's lock: copy, do not
    /// render). `earlier` holds the snapshots of the analyses before it in the registry.
    fn snapshot(&self, shards: &[Self::Shard], earlier: &Snapshots, into: &mut Self::Snapshot);

    /// The metric families of `snap` (outside the lock). `all` has every analysis' snapshot.
    fn families(snap: &Self::Snapshot, all: &Snapshots, out: &mut Families);

    /// Every family [`families`](Self::families) may write (for `Collector::desc`).
    fn defs(&self) -> Vec<FamilyDef>;
}

/// Rendered metric families: text written directly (fast paths, e.g. per-flow series), then
/// families for the encoder. `direct` says whether text is wanted at all (a `Collector` wants
/// families only).
#[derive(Debug, Default)]
pub struct Families {
    pub direct: bool,
    pub text: String,
    pub list: Vec<MetricFamily>,
}

impl Families {
    /// Adds a family (left out when it has no samples).
    pub fn push(&mut self, family: MetricFamily) {
        if !family.get_metric().is_empty() {
            self.list.push(family);
        }
    }
}

type RenderFn = fn(&dyn Any, &Snapshots, &mut Families);

/// Every enabled analysis' snapshot, in registry order.
#[derive(Default)]
pub struct Snapshots {
    entries: Vec<(&'static str, Box<dyn Any + Send + Sync>, RenderFn)>,
}

impl std::fmt::Debug for Snapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| e.0))
            .finish()
    }
}

impl Snapshots {
    /// The snapshot of type `S`, if its analysis is enabled.
    pub fn get<S: 'static>(&self) -> Option<&S> {
        self.entries.iter().find_map(|(_, s, _)| s.downcast_ref())
    }

    /// The names of the analyses in it.
    pub fn names(&self) -> Vec<&'static str> {
        self.entries.iter().map(|e| e.0).collect()
    }

    /// Every analysis' families, in registry order.
    pub fn families(&self, out: &mut Families) {
        for (_, snap, render) in &self.entries {
            render(snap.as_ref(), self, out);
        }
    }
}

/// An analysis with its shards, as the engine holds it (one slot per assigned partition, the
/// same slot in every host).
pub struct Host<A: Analysis> {
    pub analysis: A,
    pub shards: Vec<A::Shard>,
}

impl<A: Analysis> Host<A> {
    pub fn new(analysis: A) -> Self {
        Host {
            analysis,
            shards: Vec::new(),
        }
    }
}

/// [`Analysis`] behind one vtable, for the engine's list.
pub trait Hosted: Send {
    fn name(&self) -> &'static str;
    fn add_shard(&mut self, partition: i32, now: u32);
    fn packet(&mut self, slot: usize, pkt: &Packet<'_>) -> Verdict;
    /// Removes slot `slot` (the last slot moves into its place, as in the engine). Returns the
    /// entries dropped with it.
    fn remove_shard(&mut self, slot: usize, partition: i32, now: u32) -> usize;
    fn tick(&mut self, now: u32);
    fn flusher(&self) -> Option<Arc<dyn Flush>>;
    fn snapshot(&self, snaps: &mut Snapshots);
    fn defs(&self) -> Vec<FamilyDef>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

fn render<A: Analysis>(snap: &dyn Any, all: &Snapshots, out: &mut Families) {
    if let Some(s) = snap.downcast_ref::<A::Snapshot>() {
        A::families(s, all, out);
    }
}

impl<A: Analysis> Hosted for Host<A> {
    fn name(&self) -> &'static str {
        A::NAME
    }

    fn add_shard(&mut self, partition: i32, now: u32) {
        let shard = self.analysis.shard(partition);
        self.shards.push(shard);
        self.analysis.shards_changed(&mut self.shards, now);
    }

    #[inline]
    fn packet(&mut self, slot: usize, pkt: &Packet<'_>) -> Verdict {
        match self.shards.get_mut(slot) {
            Some(shard) => self.analysis.packet(shard, pkt),
            None => Verdict::Continue,
        }
    }

    fn remove_shard(&mut self, slot: usize, partition: i32, now: u32) -> usize {
        if slot >= self.shards.len() {
            return 0;
        }
        let shard = self.shards.swap_remove(slot);
        let dropped = self.analysis.revoked(partition, shard);
        self.analysis.shards_changed(&mut self.shards, now);
        dropped
    }

    fn tick(&mut self, now: u32) {
        self.analysis.tick(&mut self.shards, now);
    }

    fn flusher(&self) -> Option<Arc<dyn Flush>> {
        self.analysis.flusher()
    }

    fn snapshot(&self, snaps: &mut Snapshots) {
        // A later lane accumulates into the entry the first one made.
        match snaps.entries.iter().position(|e| e.0 == A::NAME) {
            Some(i) => {
                let mut entry = std::mem::replace(&mut snaps.entries[i].1, Box::new(()));
                if let Some(snap) = entry.downcast_mut::<A::Snapshot>() {
                    self.analysis.snapshot(&self.shards, snaps, snap);
                }
                snaps.entries[i].1 = entry;
            }
            None => {
                let mut snap = A::Snapshot::default();
                self.analysis.snapshot(&self.shards, snaps, &mut snap);
                snaps.entries.push((A::NAME, Box::new(snap), render::<A>));
            }
        }
    }

    fn defs(&self) -> Vec<FamilyDef> {
        self.analysis.defs()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}
