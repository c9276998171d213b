//! The Kubernetes identity source: watches of Pods, Services and Nodes (and, metadata only, of
//! ReplicaSets and Jobs, to follow a pod's owners up to its Deployment or CronJob) turned into
//! index [`Update`](crate::Update)s as they arrive. No object is stored: each is converted to
//! the few fields the index needs and dropped.
//!
//! - Each resource has one watch cluster-wide, or one per namespace listed in
//!   [`KubeSourceConfig::namespaces`] (Nodes are always watched cluster-wide).
//! - A watch that fails is retried with kube-runtime's default backoff (0.8 s doubling to 30 s)
//!   forever; errors are counted in [`SourceStats::error`] and logged once per streak.
//! - A list or re-list (at start, or when the watch's resource version expired) replaces the
//!   resource's members, so what was deleted during a disconnect is closed at the re-list.
//! - [`SourceStats::synced`] turns true once every watch has listed once.
//! - Pods are read only once ReplicaSets and Jobs have listed (or after
//!   [`KubeSourceConfig::owner_wait`]), so that they are labelled by their Deployment or
//!   CronJob from the start; a pod whose owner arrives later is re-labelled then.
//!
//! Memory: the index holds the members (about 460 B per single-stack pod, see
//! `tests/memory.rs`); this source adds 123 B per ReplicaSet and Job (its uid and its owner's
//! name; those deleted in the last ten minutes included), a converted pod only while its owner
//! is unknown (at most 10 000), and, only when several namespaces are listed, 64 B per pod and
//! Service (its uid, to close the right members after a re-list of one namespace). Figures:
//! the `bytes_per_*` unit tests (hash table allocation plus string bytes).

mod convert;
mod owners;
mod reader;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::kube::api::Api;
use ::kube::core::PartialObjectMeta;
use ::kube::runtime::WatchStreamExt;
use ::kube::runtime::watcher::{self, watcher};
use ::kube::{Client, Resource};
use futures::StreamExt;
use futures::stream::{BoxStream, SelectAll};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use crate::source::{Sink, SourceStats};
use reader::{Msg, Reader};

/// The capture-comparable wall clock, in ns since the epoch.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    })
}

/// What to watch.
#[derive(Clone)]
pub struct KubeSourceConfig {
    /// Namespaces whose Pods, Services, ReplicaSets and Jobs are read; empty = all (one
    /// cluster-wide watch each). Nodes are always read cluster-wide.
    pub namespaces: Vec<String>,
    /// "Now" for the times the API does not give (deletions, re-lists, updates seen): the
    /// system clock, a fixed one in tests.
    pub clock: Clock,
    /// How long pods wait for ReplicaSets and Jobs to be listed before being read anyway
    /// (labelled by their ReplicaSet or Job, or a guess, until the owner arrives).
    pub owner_wait: Duration,
}

impl KubeSourceConfig {
    /// Watches `namespaces` (empty = cluster-wide) with the system clock.
    pub fn new(namespaces: Vec<String>) -> Self {
        KubeSourceConfig {
            namespaces,
            ..KubeSourceConfig::default()
        }
    }
}

impl Default for KubeSourceConfig {
    fn default() -> Self {
        KubeSourceConfig {
            namespaces: Vec::new(),
            clock: system_clock(),
            owner_wait: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for KubeSourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeSourceConfig")
            .field("namespaces", &self.namespaces)
            .field("owner_wait", &self.owner_wait)
            .finish_non_exhaustive()
    }
}

/// Starts the watches; the task runs until aborted (it never gives up on API errors).
pub fn spawn(
    client: Client,
    cfg: KubeSourceConfig,
    sink: Sink,
    stats: Arc<SourceStats>,
) -> JoinHandle<()> {
    tokio::spawn(run(client, cfg, sink, stats))
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn full<K>(
    api: Api<K>,
    wrap: impl Fn(Result<watcher::Event<K>, watcher::Error>) -> Msg + Send + 'static,
) -> BoxStream<'static, Msg>
where
    K: Resource + Clone + DeserializeOwned + fmt::Debug + Send + 'static,
{
    watcher(api, watcher::Config::default())
        .default_backoff()
        .map(wrap)
        .boxed()
}

async fn run(client: Client, cfg: KubeSourceConfig, sink: Sink, stats: Arc<SourceStats>) {
    let mut namespaces: Vec<Option<String>> = Vec::new();
    for ns in &cfg.namespaces {
        if !namespaces.contains(&Some(ns.clone())) {
            namespaces.push(Some(ns.clone()));
        }
    }
    if namespaces.is_empty() {
        namespaces.push(None);
    }
    let mut streams: SelectAll<BoxStream<'static, Msg>> = SelectAll::new();
    let mut pods: Vec<BoxStream<'static, Msg>> = Vec::new();
    for (i, ns) in namespaces.iter().enumerate() {
        let ns = ns.as_deref();
        pods.push(full(api::<Pod>(&client, ns), move |e| Msg::Pod(i, e)));
        streams.push(full(api::<Service>(&client, ns), move |e| {
            Msg::Service(i, e)
        }));
        // Metadata-only requests: the owner references are all we need of them.
        streams.push(full(
            api::<PartialObjectMeta<ReplicaSet>>(&client, ns),
            move |e| Msg::ReplicaSet(i, e),
        ));
        streams.push(full(api::<PartialObjectMeta<Job>>(&client, ns), move |e| {
            Msg::Job(i, e)
        }));
    }
    streams.push(full(Api::<Node>::all(client.clone()), Msg::Node));
    tracing::info!(namespaces = ?cfg.namespaces, "watching Kubernetes identities");

    let mut reader = Reader::new(namespaces.len(), cfg.clock.clone(), sink, stats);
    let gate = tokio::time::sleep(cfg.owner_wait);
    tokio::pin!(gate);
    loop {
        tokio::select! {
            msg = streams.next() => {
                let Some(msg) = msg else {
                    // Watchers with a backoff that never gives up do not end.
                    tracing::error!("all Kubernetes watches ended");
                    return;
                };
                reader.handle(msg);
                if !pods.is_empty() && reader.owners_listed() {
                    streams.extend(pods.drain(..));
                }
            }
            () = &mut gate, if !pods.is_empty() => {
                tracing::warn!(
                    wait = ?cfg.owner_wait,
                    "ReplicaSets and Jobs not listed yet; reading pods anyway (labelled by their ReplicaSet or Job until it is)"
                );
                streams.extend(pods.drain(..));
            }
        }
        tracing::trace!(
            owners = reader.owners_len(),
            waiting = reader.waiting_len(),
            "kube source state"
        );
    }
}
