//! What every identity source shares: the resources it reads, its counters, and where its
//! updates go.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::member::Update;

/// The Kubernetes resources the enrichment reads (the `resource` label of its metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resource {
    Pod,
    Service,
    Node,
    ReplicaSet,
    Job,
}

impl Resource {
    pub const ALL: [Resource; 5] = [
        Resource::Pod,
        Resource::Service,
        Resource::Node,
        Resource::ReplicaSet,
        Resource::Job,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Pod => "pods",
            Resource::Service => "services",
            Resource::Node => "nodes",
            Resource::ReplicaSet => "replicasets",
            Resource::Job => "jobs",
        }
    }
}

/// Counters of a source, read by the processor's /metrics.
#[derive(Debug, Default)]
pub struct SourceStats {
    events: [AtomicU64; 5],
    errors: [AtomicU64; 5],
    restarts: [AtomicU64; 5],
    synced: AtomicBool,
}

impl SourceStats {
    pub fn event(&self, r: Resource) {
        self.events[r as usize].fetch_add(1, Ordering::Relaxed);
    }
    pub fn error(&self, r: Resource) {
        self.errors[r as usize].fetch_add(1, Ordering::Relaxed);
    }
    /// A watch was (re)started with a fresh list.
    pub fn restart(&self, r: Resource) {
        self.restarts[r as usize].fetch_add(1, Ordering::Relaxed);
    }
    pub fn set_synced(&self) {
        self.synced.store(true, Ordering::Release);
    }

    /// Watch events received for `r`.
    pub fn events(&self, r: Resource) -> u64 {
        self.events[r as usize].load(Ordering::Relaxed)
    }
    /// Watch errors for `r` (each retried with backoff).
    pub fn errors(&self, r: Resource) -> u64 {
        self.errors[r as usize].load(Ordering::Relaxed)
    }
    pub fn restarts(&self, r: Resource) -> u64 {
        self.restarts[r as usize].load(Ordering::Relaxed)
    }
    /// Every resource has been listed once and applied to the index.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }
}

/// Where a source sends its updates: the processor applies them to its index under its lock.
pub type Sink = Arc<dyn Fn(Update) + Send + Sync>;
