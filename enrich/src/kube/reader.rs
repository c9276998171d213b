//! Watch events -> index updates. Synchronous, so the logic is tested without a network: the
//! driver in [`super`] only moves events from the watch streams to [`Reader::handle`].
//!
//! A (re)list (`Init`, `InitApply`..., `InitDone`) becomes one complete set of the resource's
//! members: an [`Update::Resync`] when one watch covers the resource, and when several do (one
//! per listed namespace) a removal of the members that watch had and no longer lists plus an
//! upsert of the others, since a `Resync` would close the other namespaces' members. Only then
//! are members that vanished during a disconnect closed, at the time of the re-list.

use ::kube::core::PartialObjectMeta;
use ::kube::runtime::watcher::{self, Event};
use hashbrown::{HashMap, HashSet};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::Clock;
use super::convert::{self, OwnerRef, PodChange, PodMember};
use super::owners::{OwnerKind, Owners};
use crate::member::{Member, MemberKind, Update};
use crate::source::{Resource, Sink, SourceStats};
use std::sync::Arc;

type Map<K, V> = HashMap<K, V, ahash::RandomState>;
type Set<K> = HashSet<K, ahash::RandomState>;

/// Pods waiting for their ReplicaSet or Job are bounded: past this many (their owner watch
/// failing for good, e.g. RBAC without `replicasets`), new ones keep their guessed workload.
const MAX_WAITING: usize = 10_000;

/// One event of one watch (`scope` indexes the watched namespaces; 0 when cluster-wide).
// Handled as soon as it is received, never stored: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Msg {
    Pod(usize, Result<Event<Pod>, watcher::Error>),
    Service(usize, Result<Event<Service>, watcher::Error>),
    Node(Result<Event<Node>, watcher::Error>),
    ReplicaSet(
        usize,
        Result<Event<PartialObjectMeta<ReplicaSet>>, watcher::Error>,
    ),
    Job(usize, Result<Event<PartialObjectMeta<Job>>, watcher::Error>),
}

/// What one watch has been through.
#[derive(Debug, Default)]
struct Watch {
    /// Members listed since `Init`, sent at `InitDone`.
    listing: Option<Vec<PodMember>>,
    /// The uids of the members this watch has, when the resource has several watches.
    uids: Option<Set<Box<str>>>,
    listed: bool,
    /// Errors in the current streak (logged at its start and end only).
    failing: u64,
}

impl Watch {
    fn new(scoped: bool) -> Self {
        Watch {
            uids: scoped.then(Set::default),
            ..Watch::default()
        }
    }
}

#[derive(Debug)]
struct Scope {
    pods: Watch,
    services: Watch,
    rs: Owners,
    rs_watch: Watch,
    jobs: Owners,
    job_watch: Watch,
}

/// A pod whose ReplicaSet or Job was unknown when it was last seen.
#[derive(Debug)]
struct Waiting {
    scope: usize,
    owner: OwnerRef,
    member: Member,
}

pub(crate) struct Reader {
    clock: Clock,
    sink: Sink,
    stats: Arc<SourceStats>,
    scopes: Vec<Scope>,
    nodes: Watch,
    waiting: Map<Box<str>, Waiting>,
    synced: bool,
}

impl Reader {
    pub(crate) fn new(scopes: usize, clock: Clock, sink: Sink, stats: Arc<SourceStats>) -> Self {
        let scoped = scopes > 1;
        Reader {
            clock,
            sink,
            stats,
            scopes: (0..scopes.max(1))
                .map(|_| Scope {
                    pods: Watch::new(scoped),
                    services: Watch::new(scoped),
                    rs: Owners::new(OwnerKind::ReplicaSet),
                    rs_watch: Watch::default(),
                    jobs: Owners::new(OwnerKind::Job),
                    job_watch: Watch::default(),
                })
                .collect(),
            nodes: Watch::new(false),
            waiting: Map::default(),
            synced: false,
        }
    }

    /// Every ReplicaSet and Job watch has listed once (pods can be labelled by their owners).
    pub(crate) fn owners_listed(&self) -> bool {
        self.scopes
            .iter()
            .all(|s| s.rs_watch.listed && s.job_watch.listed)
    }

    /// ReplicaSets and Jobs remembered, for the memory figures.
    pub(crate) fn owners_len(&self) -> usize {
        self.scopes.iter().map(|s| s.rs.len() + s.jobs.len()).sum()
    }

    /// Pods waiting for their owner.
    pub(crate) fn waiting_len(&self) -> usize {
        self.waiting.len()
    }

    pub(crate) fn handle(&mut self, msg: Msg) {
        let now = (self.clock)();
        match msg {
            Msg::Pod(s, ev) => {
                if let Some(ev) = self.check(Resource::Pod, s, ev) {
                    self.pod_event(s, ev, now);
                }
            }
            Msg::Service(s, ev) => {
                if let Some(ev) = self.check(Resource::Service, s, ev) {
                    self.member_event(Resource::Service, s, ev, now, |svc, now| {
                        (svc.metadata.uid.clone(), convert::service(svc, now))
                    });
                }
            }
            Msg::Node(ev) => {
                if let Some(ev) = self.check(Resource::Node, 0, ev) {
                    self.member_event(Resource::Node, 0, ev, now, |n, now| {
                        (n.metadata.uid.clone(), convert::node(n, now))
                    });
                }
            }
            Msg::ReplicaSet(s, ev) => {
                if let Some(ev) = self.check(Resource::ReplicaSet, s, ev) {
                    self.owner_event(OwnerKind::ReplicaSet, s, metadata(ev), now);
                }
            }
            Msg::Job(s, ev) => {
                if let Some(ev) = self.check(Resource::Job, s, ev) {
                    self.owner_event(OwnerKind::Job, s, metadata(ev), now);
                }
            }
        }
        self.check_synced();
    }

    fn watch_mut(&mut self, r: Resource, scope: usize) -> Option<&mut Watch> {
        if r == Resource::Node {
            return Some(&mut self.nodes);
        }
        let s = self.scopes.get_mut(scope)?;
        Some(match r {
            Resource::Pod => &mut s.pods,
            Resource::Service => &mut s.services,
            Resource::ReplicaSet => &mut s.rs_watch,
            Resource::Job => &mut s.job_watch,
            Resource::Node => return None,
        })
    }

    /// Counts an event, or counts and logs an error (the watcher retries it after a backoff).
    fn check<K>(
        &mut self,
        r: Resource,
        scope: usize,
        ev: Result<Event<K>, watcher::Error>,
    ) -> Option<Event<K>> {
        let stats = self.stats.clone();
        let watch = self.watch_mut(r, scope)?;
        match ev {
            Ok(ev) => {
                if watch.failing > 0 {
                    tracing::info!(
                        resource = r.as_str(),
                        scope,
                        errors = watch.failing,
                        "watch recovered"
                    );
                    watch.failing = 0;
                }
                match &ev {
                    Event::Init => stats.restart(r),
                    Event::InitDone => {}
                    _ => stats.event(r),
                }
                Some(ev)
            }
            // The resource version we resumed from is too old: the watcher lists again, which
            // is the normal recovery (counted as a restart), not a failure.
            Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                tracing::debug!(
                    resource = r.as_str(),
                    scope,
                    "watch expired (410), re-listing"
                );
                None
            }
            Err(e) => {
                stats.error(r);
                if watch.failing == 0 {
                    tracing::warn!(
                        resource = r.as_str(),
                        scope,
                        error = %e,
                        "Kubernetes watch failed; retrying with backoff (further errors until it recovers are logged at debug level)"
                    );
                } else {
                    tracing::debug!(resource = r.as_str(), scope, error = %e, "watch still failing");
                }
                watch.failing += 1;
                None
            }
        }
    }

    fn check_synced(&mut self) {
        if self.synced || !self.nodes.listed {
            return;
        }
        let all = self
            .scopes
            .iter()
            .all(|s| s.pods.listed && s.services.listed && s.rs_watch.listed && s.job_watch.listed);
        if all {
            self.synced = true;
            self.stats.set_synced();
            tracing::info!("Kubernetes identities listed");
        }
    }

    fn send(&self, u: Update) {
        (self.sink)(u)
    }

    // ---- pods, services, nodes --------------------------------------------------------------

    fn pod_event(&mut self, s: usize, ev: Event<Pod>, now: u64) {
        let Some(scope) = self.scopes.get(s) else {
            return;
        };
        match ev {
            Event::Init => self.scopes[s].pods.listing = Some(Vec::new()),
            Event::InitApply(p) => {
                let change = convert::pod(&p, now, &scope.rs, &scope.jobs);
                if let PodChange::Member(m) = change
                    && let Some(listing) = self.scopes[s].pods.listing.as_mut()
                {
                    listing.push(m);
                }
            }
            Event::Apply(p) => match convert::pod(&p, now, &scope.rs, &scope.jobs) {
                PodChange::Member(m) => {
                    self.track(Resource::Pod, s, &m.member.uid);
                    self.wait(s, &m);
                    self.send(Update::Upsert(m.member));
                }
                PodChange::Gone { uid, at_ns } => {
                    self.waiting.remove(uid.as_str());
                    self.untrack(Resource::Pod, s, &uid);
                    self.send(Update::Remove { uid, at_ns });
                }
                PodChange::Skip => {}
            },
            Event::Delete(p) => {
                if let Some(uid) = p.metadata.uid.clone() {
                    self.waiting.remove(uid.as_str());
                    self.untrack(Resource::Pod, s, &uid);
                    let at_ns = convert::pod_deleted_at(&p, now);
                    self.send(Update::Remove { uid, at_ns });
                }
            }
            Event::InitDone => {
                let mut listed = self.scopes[s].pods.listing.take().unwrap_or_default();
                // Owners that arrived during the list label their pods now.
                let scope = &self.scopes[s];
                for m in listed.iter_mut() {
                    if let Some(o) = &m.waiting {
                        let owners = match o.kind {
                            OwnerKind::ReplicaSet => &scope.rs,
                            OwnerKind::Job => &scope.jobs,
                        };
                        if let Some(w) = convert::owned_workload(&m.member.namespace, o, owners) {
                            m.member.workload = w;
                            m.waiting = None;
                        }
                    }
                }
                let uids: Set<&str> = listed.iter().map(|m| m.member.uid.as_str()).collect();
                self.waiting
                    .retain(|uid, w| w.scope != s || uids.contains(&**uid));
                drop(uids);
                for m in &listed {
                    self.wait(s, m);
                }
                let members = listed.into_iter().map(|m| m.member).collect();
                self.relisted(Resource::Pod, s, members, now);
            }
        }
    }

    /// Services and nodes: no owners to follow.
    fn member_event<K>(
        &mut self,
        r: Resource,
        s: usize,
        ev: Event<K>,
        now: u64,
        convert: impl Fn(&K, u64) -> (Option<String>, Option<Member>),
    ) {
        match ev {
            Event::Init => {
                if let Some(w) = self.watch_mut(r, s) {
                    w.listing = Some(Vec::new());
                }
            }
            Event::InitApply(obj) => {
                if let (_, Some(member)) = convert(&obj, now)
                    && let Some(listing) = self.watch_mut(r, s).and_then(|w| w.listing.as_mut())
                {
                    listing.push(PodMember {
                        member,
                        waiting: None,
                    });
                }
            }
            Event::Apply(obj) => match convert(&obj, now) {
                (_, Some(member)) => {
                    self.track(r, s, &member.uid);
                    self.send(Update::Upsert(member));
                }
                // It lost its addresses (a Service made headless cannot happen; a node
                // without addresses can): its old ones are no longer its.
                (Some(uid), None) => {
                    self.untrack(r, s, &uid);
                    self.send(Update::Remove { uid, at_ns: now });
                }
                (None, None) => {}
            },
            Event::Delete(obj) => {
                if let (Some(uid), _) = convert(&obj, now) {
                    self.untrack(r, s, &uid);
                    self.send(Update::Remove { uid, at_ns: now });
                }
            }
            Event::InitDone => {
                let listed = self
                    .watch_mut(r, s)
                    .and_then(|w| w.listing.take())
                    .unwrap_or_default();
                let members = listed.into_iter().map(|m| m.member).collect();
                self.relisted(r, s, members, now);
            }
        }
    }

    /// A list is complete: its members are the complete set of the watch.
    fn relisted(&mut self, r: Resource, s: usize, members: Vec<Member>, now: u64) {
        let kind = match r {
            Resource::Pod => MemberKind::Pod,
            Resource::Service => MemberKind::Service,
            _ => MemberKind::Node,
        };
        let Some(watch) = self.watch_mut(r, s) else {
            return;
        };
        watch.listed = true;
        let Some(old) = watch.uids.take() else {
            self.send(Update::Resync {
                kind,
                members,
                at_ns: now,
            });
            return;
        };
        let new: Set<Box<str>> = members.iter().map(|m| m.uid.as_str().into()).collect();
        for uid in old.difference(&new) {
            self.send(Update::Remove {
                uid: uid.to_string(),
                at_ns: now,
            });
        }
        if let Some(w) = self.watch_mut(r, s) {
            w.uids = Some(new);
        }
        for m in members {
            self.send(Update::Upsert(m));
        }
    }

    fn track(&mut self, r: Resource, s: usize, uid: &str) {
        if let Some(uids) = self.watch_mut(r, s).and_then(|w| w.uids.as_mut())
            && !uids.contains(uid)
        {
            uids.insert(uid.into());
        }
    }

    fn untrack(&mut self, r: Resource, s: usize, uid: &str) {
        if let Some(uids) = self.watch_mut(r, s).and_then(|w| w.uids.as_mut()) {
            uids.remove(uid);
        }
    }

    /// Remembers a pod whose owner is unknown (or forgets one whose owner is now known).
    fn wait(&mut self, s: usize, m: &PodMember) {
        match &m.waiting {
            // A pod that ended does not need relabelling: the index ignores updates of it.
            Some(owner) if m.member.until_ns.is_none() => {
                if self.waiting.len() >= MAX_WAITING
                    && !self.waiting.contains_key(m.member.uid.as_str())
                {
                    return;
                }
                self.waiting.insert(
                    m.member.uid.as_str().into(),
                    Waiting {
                        scope: s,
                        owner: owner.clone(),
                        member: m.member.clone(),
                    },
                );
            }
            _ => {
                self.waiting.remove(m.member.uid.as_str());
            }
        }
    }

    // ---- ReplicaSets and Jobs ---------------------------------------------------------------

    fn owner_event(&mut self, kind: OwnerKind, s: usize, ev: Event<ObjectMeta>, now: u64) {
        let Some(scope) = self.scopes.get_mut(s) else {
            return;
        };
        let (owners, watch) = match kind {
            OwnerKind::ReplicaSet => (&mut scope.rs, &mut scope.rs_watch),
            OwnerKind::Job => (&mut scope.jobs, &mut scope.job_watch),
        };
        owners.expire(now);
        let known = match ev {
            Event::Init => {
                owners.init();
                None
            }
            Event::InitApply(meta) | Event::Apply(meta) => owners.apply(&meta),
            Event::Delete(meta) => {
                owners.delete(&meta, now);
                None
            }
            Event::InitDone => {
                owners.init_done(now);
                watch.listed = true;
                None
            }
        };
        if let Some(uid) = known {
            self.relabel(kind, s, &uid, now);
        }
    }

    /// Pods that waited for owner `uid` get their workload.
    fn relabel(&mut self, kind: OwnerKind, s: usize, uid: &str, now: u64) {
        if self.waiting.is_empty() {
            return;
        }
        let ready: Vec<Box<str>> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.scope == s && w.owner.kind == kind && &*w.owner.uid == uid)
            .map(|(pod, _)| pod.clone())
            .collect();
        for pod in ready {
            let Some(mut w) = self.waiting.remove(&pod) else {
                continue;
            };
            let owners = match kind {
                OwnerKind::ReplicaSet => &self.scopes[s].rs,
                OwnerKind::Job => &self.scopes[s].jobs,
            };
            if let Some(workload) = convert::owned_workload(&w.member.namespace, &w.owner, owners)
                && workload != w.member.workload
            {
                w.member.workload = workload;
                w.member.seen_ns = now;
                self.send(Update::Upsert(w.member));
            }
        }
    }
}

fn metadata<K>(ev: Event<PartialObjectMeta<K>>) -> Event<ObjectMeta> {
    match ev {
        Event::Apply(o) => Event::Apply(o.metadata),
        Event::Delete(o) => Event::Delete(o.metadata),
        Event::Init => Event::Init,
        Event::InitApply(o) => Event::InitApply(o.metadata),
        Event::InitDone => Event::InitDone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The memory figure of the README: what watching several namespaces adds per pod and
    /// Service (its uid, to close the right members after one namespace's re-list).
    #[test]
    fn bytes_per_tracked_uid_when_namespaces_are_listed() {
        const N: usize = 10_000;
        let uids: Set<Box<str>> = (0..N)
            .map(|i| format!("6f1c2d3e-4b5a-4978-8a9b-{i:012}").into())
            .collect();
        let bytes = uids.allocation_size() + uids.iter().map(|u| u.len()).sum::<usize>();
        let per = bytes as f64 / N as f64;
        println!("uid set: {bytes} bytes for {N} pods: {per:.0} bytes each");
        assert!(per < 100.0, "{per}");
    }
}
