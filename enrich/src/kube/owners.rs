//! The controllers above a pod's own controller: ReplicaSet -> Deployment and Job -> CronJob,
//! from metadata-only watches of ReplicaSets and Jobs.
//!
//! Only the uid and the name of the top controller (if any) are kept per ReplicaSet or Job, so
//! the map is bounded by what exists (old ReplicaSets a Deployment keeps for rollbacks
//! included) plus what was deleted in the last [`GRACE`]: a deleted owner is kept that long
//! because its pods are usually deleted after it (garbage collection, graceful termination)
//! and their last updates must not move them to another workload.

use std::collections::VecDeque;
use std::time::Duration;

use hashbrown::{HashMap, HashSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

type Map<K, V> = HashMap<K, V, ahash::RandomState>;

/// How long a deleted ReplicaSet or Job is remembered.
pub(crate) const GRACE: Duration = Duration::from_secs(10 * 60);

/// Which owner map: the owner kind a pod's controller reference names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OwnerKind {
    /// Owned by a Deployment, or not.
    ReplicaSet,
    /// Owned by a CronJob, or not.
    Job,
}

impl OwnerKind {
    /// The kind of the controller above it that names the workload.
    fn top_kind(self) -> &'static str {
        match self {
            OwnerKind::ReplicaSet => "Deployment",
            OwnerKind::Job => "CronJob",
        }
    }
}

#[derive(Debug)]
struct Entry {
    /// The Deployment or CronJob name, if it has one as controller.
    top: Option<Box<str>>,
    deleted: bool,
}

/// The ReplicaSets (or Jobs) of one watch scope, by uid.
#[derive(Debug)]
pub(crate) struct Owners {
    kind: OwnerKind,
    by_uid: Map<Box<str>, Entry>,
    /// Deleted entries in deletion order, forgotten [`GRACE`] after.
    tombstones: VecDeque<(u64, Box<str>)>,
    /// The uids seen since the last `Init` (a list in progress).
    listing: Option<HashSet<Box<str>, ahash::RandomState>>,
}

/// What is known of a pod's ReplicaSet or Job.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Lookup<'a> {
    Unknown,
    /// Known, with this top controller (Deployment or CronJob) name, if any.
    Known(Option<&'a str>),
}

impl Owners {
    pub(crate) fn new(kind: OwnerKind) -> Self {
        Owners {
            kind,
            by_uid: Map::default(),
            tombstones: VecDeque::new(),
            listing: None,
        }
    }

    pub(crate) fn lookup(&self, uid: &str) -> Lookup<'_> {
        match self.by_uid.get(uid) {
            Some(e) => Lookup::Known(e.top.as_deref()),
            None => Lookup::Unknown,
        }
    }

    /// Records an added or changed owner; returns its uid if it was not known before or its
    /// top controller changed (pods waiting for it can then be resolved).
    pub(crate) fn apply(&mut self, meta: &ObjectMeta) -> Option<Box<str>> {
        let uid = meta.uid.as_deref().filter(|u| !u.is_empty())?;
        let top: Option<Box<str>> = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true) && o.kind == self.kind.top_kind())
            .map(|o| o.name.as_str().into());
        if let Some(listing) = self.listing.as_mut()
            && !listing.contains(uid)
        {
            listing.insert(uid.into());
        }
        match self.by_uid.get_mut(uid) {
            Some(e) if e.top == top => None,
            Some(e) => {
                e.top = top;
                Some(uid.into())
            }
            None => {
                self.by_uid.insert(
                    uid.into(),
                    Entry {
                        top,
                        deleted: false,
                    },
                );
                Some(uid.into())
            }
        }
    }

    pub(crate) fn delete(&mut self, meta: &ObjectMeta, now_ns: u64) {
        if let Some(uid) = meta.uid.as_deref() {
            self.tombstone(uid, now_ns);
        }
    }

    fn tombstone(&mut self, uid: &str, now_ns: u64) {
        if let Some(e) = self.by_uid.get_mut(uid)
            && !e.deleted
        {
            e.deleted = true;
            self.tombstones.push_back((now_ns, uid.into()));
        }
    }

    /// A (re)list starts.
    pub(crate) fn init(&mut self) {
        self.listing = Some(HashSet::default());
    }

    /// The list is complete: what it did not name was deleted meanwhile.
    pub(crate) fn init_done(&mut self, now_ns: u64) {
        let Some(listing) = self.listing.take() else {
            return;
        };
        let gone: Vec<Box<str>> = self
            .by_uid
            .iter()
            .filter(|(uid, e)| !e.deleted && !listing.contains(&**uid))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in gone {
            self.tombstone(&uid, now_ns);
        }
    }

    /// Forgets owners deleted more than [`GRACE`] before `now_ns`.
    pub(crate) fn expire(&mut self, now_ns: u64) {
        let grace = GRACE.as_nanos() as u64;
        while let Some((at, _)) = self.tombstones.front() {
            if now_ns.saturating_sub(*at) < grace {
                break;
            }
            if let Some((_, uid)) = self.tombstones.pop_front()
                && self.by_uid.get(&uid).is_some_and(|e| e.deleted)
            {
                self.by_uid.remove(&uid);
            }
        }
    }

    /// Owners remembered (live and recently deleted).
    pub(crate) fn len(&self) -> usize {
        self.by_uid.len()
    }

    /// Heap bytes held (the table, the uid and name strings, the tombstone queue).
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.by_uid.allocation_size()
            + self
                .by_uid
                .iter()
                .map(|(uid, e)| uid.len() + e.top.as_deref().map_or(0, str::len))
                .sum::<usize>()
            + self.tombstones.capacity() * std::mem::size_of::<(u64, Box<str>)>()
            + self.tombstones.iter().map(|(_, u)| u.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn rs(uid: &str, deployment: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            uid: Some(uid.into()),
            owner_references: deployment.map(|d| {
                vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    name: d.into(),
                    uid: format!("{d}-uid"),
                    controller: Some(true),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }
    }

    #[test]
    fn deleted_owners_are_kept_for_the_grace_period_then_forgotten() {
        let mut o = Owners::new(OwnerKind::ReplicaSet);
        assert_eq!(o.apply(&rs("a", Some("web"))).as_deref(), Some("a"));
        assert_eq!(o.apply(&rs("a", Some("web"))), None, "no change");
        assert_eq!(o.lookup("a"), Lookup::Known(Some("web")));
        o.delete(&rs("a", None), 1_000);
        assert_eq!(o.lookup("a"), Lookup::Known(Some("web")));
        o.expire(1_000 + GRACE.as_nanos() as u64 - 1);
        assert_eq!(o.len(), 1);
        o.expire(1_000 + GRACE.as_nanos() as u64);
        assert_eq!(o.lookup("a"), Lookup::Unknown);
        assert_eq!(o.len(), 0);
    }

    /// The memory figure of the README: bytes per ReplicaSet (or Job) remembered.
    #[test]
    fn bytes_per_owner() {
        const N: usize = 5_000;
        let mut o = Owners::new(OwnerKind::ReplicaSet);
        for i in 0..N {
            o.apply(&rs(
                &format!("6f1c2d3e-4b5a-4978-8a9b-{i:012}"),
                Some(&format!("checkout-service-{}", i / 10)),
            ));
        }
        let per = o.heap_bytes() as f64 / N as f64;
        println!(
            "owners: {} bytes for {N} ReplicaSets: {per:.0} bytes each",
            o.heap_bytes()
        );
        assert!(per < 200.0, "{per}");
    }

    #[test]
    fn a_relist_tombstones_what_it_did_not_name() {
        let mut o = Owners::new(OwnerKind::ReplicaSet);
        o.apply(&rs("a", Some("web")));
        o.apply(&rs("b", None));
        o.init();
        o.apply(&rs("b", None));
        o.init_done(5);
        o.expire(5 + GRACE.as_nanos() as u64);
        assert_eq!(o.lookup("a"), Lookup::Unknown);
        assert_eq!(o.lookup("b"), Lookup::Known(None));
    }
}
