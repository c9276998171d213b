//! The index from (address, capture time) to identity.
//!
//! Each address keeps a short, time-ordered list of the members that held it, as half-open
//! intervals `[from, until)` of capture-clock time that never overlap: a member that takes an
//! address ends the interval of the one before it (at its own start), and an event that arrives
//! late (an older member reported after a newer one) is cut to end where the newer one starts.
//! So IP reuse resolves by the packet's own timestamp, whatever order the events came in, and a
//! watch restart (a [`Update::Resync`]) only closes what really disappeared.
//!
//! The count path calls [`IdentityIndex::resolve_v4`] / [`IdentityIndex::resolve_v6`]: one hash
//! lookup and a scan of at most `max_history` intervals, no allocation, returning two `u32` ids.
//! Names are looked up from the ids only when metrics are rendered.
//!
//! Memory is bounded by what the cluster holds: a live member per pod/service/node, plus the
//! dead ones still referenced by an interval younger than `retention` (at most `max_history`
//! per address). Workload ids are recycled once nothing refers to them: no live member, no
//! interval, and no series pinned by the caller ([`IdentityIndex::retain_workload`]).

use std::net::IpAddr;
use std::time::Duration;

use hashbrown::HashMap;

use crate::identity::{MemberId, Resolved, Workload, WorkloadId, WorkloadKind};
use crate::member::{Member, MemberKind, Update};
use crate::subnet::{SubnetLabel, Subnets, canonical};

type Map<K, V> = HashMap<K, V, ahash::RandomState>;

/// Tuning of the index.
#[derive(Clone, Debug)]
pub struct IndexConfig {
    /// Most intervals kept per address (the live one included).
    pub max_history: usize,
    /// A packet that falls in no interval but within this much of one (before its start or
    /// after its end) is given to it: timestamps of Kubernetes objects have one-second
    /// resolution and come from other clocks than the capture's.
    pub tolerance: Duration,
    /// How long a dead member's intervals are kept after they end, for records that reach the
    /// processor late (consumer lag).
    pub retention: Duration,
    /// Names for addresses outside the cluster.
    pub subnets: Vec<SubnetLabel>,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            max_history: 4,
            tolerance: Duration::from_secs(5),
            retention: Duration::from_secs(15 * 60),
            subnets: Vec::new(),
        }
    }
}

/// What the index knows of a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub uid: Box<str>,
    pub kind: MemberKind,
    pub namespace: Box<str>,
    pub name: Box<str>,
    pub node: Box<str>,
    pub workload: WorkloadId,
    pub ips: Vec<IpAddr>,
    pub live: bool,
    /// Intervals that name this member.
    refs: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Interval {
    from: u64,
    until: u64,
    member: u32,
    workload: WorkloadId,
}

/// The intervals of one address: the newest inline (one cache line on the count path's usual
/// hit), the older ones, rarely present, behind a pointer.
#[derive(Clone, Debug)]
struct Slot {
    newest: Interval,
    older: Box<[Interval]>,
}

impl Slot {
    fn from_vec(mut v: Vec<Interval>) -> Option<Slot> {
        let newest = v.pop()?;
        Some(Slot {
            newest,
            older: v.into_boxed_slice(),
        })
    }

    fn to_vec(&self) -> Vec<Interval> {
        let mut v = Vec::with_capacity(self.older.len() + 1);
        v.extend_from_slice(&self.older);
        v.push(self.newest);
        v
    }

    fn iter(&self) -> impl DoubleEndedIterator<Item = &Interval> {
        self.older.iter().chain(std::iter::once(&self.newest))
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut Interval> {
        self.older
            .iter_mut()
            .chain(std::iter::once(&mut self.newest))
    }

    fn len(&self) -> usize {
        self.older.len() + 1
    }
}

#[derive(Debug)]
struct WorkloadSlot {
    workload: Option<Workload>,
    /// Live members counted under it.
    live: u32,
    /// Members (live or dead, still in the arena) counted under it.
    members: u32,
    /// Holds by the caller (series) and by the index itself (external, subnets).
    pins: u32,
}

/// Counts for the index's own metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexStats {
    pub members_live: usize,
    /// Live members by kind: pods, services, nodes.
    pub live_by_kind: [usize; 3],
    /// Live plus dead members still referenced by history.
    pub members: usize,
    pub addresses: usize,
    pub intervals: usize,
    pub workloads: usize,
    /// Updates applied since start.
    pub updates: u64,
}

/// The index. Not thread-safe by itself: the processor keeps it beside its counters, behind
/// the same lock.
#[derive(Debug)]
pub struct IdentityIndex {
    max_history: usize,
    tolerance_ns: u64,
    retention_ns: u64,
    v4: Map<u32, Slot>,
    v6: Map<u128, Slot>,
    by_uid: Map<Box<str>, u32>,
    members: Vec<Option<MemberInfo>>,
    free_members: Vec<u32>,
    workloads: Vec<WorkloadSlot>,
    free_workloads: Vec<u32>,
    by_workload: Map<Workload, WorkloadId>,
    subnets: Subnets,
    subnet_ids: Vec<WorkloadId>,
    updates: u64,
}

impl Default for IdentityIndex {
    fn default() -> Self {
        IdentityIndex::new(IndexConfig::default())
    }
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl IdentityIndex {
    pub fn new(cfg: IndexConfig) -> Self {
        let mut index = IdentityIndex {
            max_history: cfg.max_history.max(1),
            tolerance_ns: ns(cfg.tolerance),
            retention_ns: ns(cfg.retention),
            v4: Map::default(),
            v6: Map::default(),
            by_uid: Map::default(),
            members: Vec::new(),
            free_members: Vec::new(),
            workloads: Vec::new(),
            free_workloads: Vec::new(),
            by_workload: Map::default(),
            subnets: Subnets::new(cfg.subnets),
            subnet_ids: Vec::new(),
            updates: 0,
        };
        let external = index.intern(Workload::external());
        debug_assert_eq!(external, WorkloadId::EXTERNAL);
        index.workloads[external.0 as usize].pins += 1;
        let names: Vec<String> = index
            .subnets
            .labels()
            .iter()
            .map(|l| l.name.clone())
            .collect();
        for name in names {
            let id = index.intern(Workload::new("", &name, WorkloadKind::Subnet));
            index.workloads[id.0 as usize].pins += 1;
            index.subnet_ids.push(id);
        }
        index
    }

    // ---- the count path -------------------------------------------------------------------

    /// Resolves an IPv4 address (as a big-endian `u32`) at capture time `ts_ns`.
    #[inline]
    pub fn resolve_v4(&self, addr: u32, ts_ns: u64) -> Resolved {
        match self.v4.get(&addr) {
            Some(slot) => match self.pick(slot, ts_ns) {
                Some(r) => r,
                None => self.outside(self.subnets.find_v4(addr)),
            },
            None => self.outside(self.subnets.find_v4(addr)),
        }
    }

    /// Resolves an IPv6 address at capture time `ts_ns` (IPv4-mapped addresses as IPv4).
    #[inline]
    pub fn resolve_v6(&self, addr: u128, ts_ns: u64) -> Resolved {
        if addr >> 32 == 0xffff {
            return self.resolve_v4(addr as u32, ts_ns);
        }
        match self.v6.get(&addr) {
            Some(slot) => match self.pick(slot, ts_ns) {
                Some(r) => r,
                None => self.outside(self.subnets.find_v6(addr)),
            },
            None => self.outside(self.subnets.find_v6(addr)),
        }
    }

    pub fn resolve(&self, ip: IpAddr, ts_ns: u64) -> Resolved {
        match ip {
            IpAddr::V4(v4) => self.resolve_v4(u32::from(v4), ts_ns),
            IpAddr::V6(v6) => self.resolve_v6(u128::from(v6), ts_ns),
        }
    }

    /// The interval holding `ts`, else the nearest one within the tolerance.
    #[inline]
    fn pick(&self, slot: &Slot, ts: u64) -> Option<Resolved> {
        let newest = &slot.newest;
        if newest.from <= ts && ts < newest.until {
            return Some(resolved(newest));
        }
        // Intervals are sorted by `from`, a handful at most: scan from the newest.
        let mut next: Option<&Interval> = None;
        for iv in slot.iter().rev() {
            if iv.from <= ts {
                if ts < iv.until {
                    return Some(resolved(iv));
                }
                let after = ts - iv.until;
                let before = next.map(|n| n.from - ts);
                return match before {
                    Some(b) if b <= after && b <= self.tolerance_ns => next.map(resolved),
                    _ if after <= self.tolerance_ns => Some(resolved(iv)),
                    Some(b) if b <= self.tolerance_ns => next.map(resolved),
                    _ => None,
                };
            }
            next = Some(iv);
        }
        match next {
            Some(n) if n.from - ts <= self.tolerance_ns => Some(resolved(n)),
            _ => None,
        }
    }

    #[inline]
    fn outside(&self, subnet: Option<usize>) -> Resolved {
        match subnet {
            Some(i) => Resolved {
                workload: self.subnet_ids[i],
                member: MemberId::NONE,
            },
            None => Resolved::EXTERNAL,
        }
    }

    // ---- names, for rendering ---------------------------------------------------------------

    pub fn workload(&self, id: WorkloadId) -> Option<&Workload> {
        self.workloads.get(id.0 as usize)?.workload.as_ref()
    }

    pub fn member(&self, id: MemberId) -> Option<&MemberInfo> {
        self.members.get(id.0 as usize)?.as_ref()
    }

    pub fn member_by_uid(&self, uid: &str) -> Option<&MemberInfo> {
        self.member(MemberId(*self.by_uid.get(uid)?))
    }

    /// Whether the workload still exists: it has a live member, or it is `external` or a
    /// subnet. Series of workloads that are not live may be expired by the caller.
    pub fn is_live(&self, id: WorkloadId) -> bool {
        if id == WorkloadId::EXTERNAL || self.subnet_ids.contains(&id) {
            return true;
        }
        self.workloads
            .get(id.0 as usize)
            .is_some_and(|w| w.live > 0)
    }

    /// Keeps `id` (and its name) valid until [`IdentityIndex::release_workload`], e.g. while a
    /// series counts under it.
    pub fn retain_workload(&mut self, id: WorkloadId) {
        if let Some(w) = self.workloads.get_mut(id.0 as usize) {
            w.pins += 1;
        }
    }

    pub fn release_workload(&mut self, id: WorkloadId) {
        if let Some(w) = self.workloads.get_mut(id.0 as usize) {
            w.pins = w.pins.saturating_sub(1);
        }
        self.maybe_free_workload(id);
    }

    pub fn stats(&self) -> IndexStats {
        let members = self.members.iter().flatten();
        let mut live_by_kind = [0usize; 3];
        for m in members.clone().filter(|m| m.live) {
            live_by_kind[match m.kind {
                MemberKind::Pod => 0,
                MemberKind::Service => 1,
                MemberKind::Node => 2,
            }] += 1;
        }
        IndexStats {
            members_live: live_by_kind.iter().sum(),
            live_by_kind,
            members: members.count(),
            addresses: self.v4.len() + self.v6.len(),
            intervals: self.v4.values().map(Slot::len).sum::<usize>()
                + self.v6.values().map(Slot::len).sum::<usize>(),
            workloads: self.by_workload.len(),
            updates: self.updates,
        }
    }

    /// Checks the index's invariants (for property tests): intervals sorted, non-empty and
    /// non-overlapping, at most `max_history` per address, reference counts exact.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut refs: Map<u32, u32> = Map::default();
        for (addr, slot) in self
            .v4
            .iter()
            .map(|(a, s)| (a.to_string(), s))
            .chain(self.v6.iter().map(|(a, s)| (a.to_string(), s)))
        {
            let slot = slot.to_vec();
            if slot.len() > self.max_history {
                return Err(format!("{addr}: {} intervals", slot.len()));
            }
            for w in slot.windows(2) {
                if w[0].until > w[1].from || w[0].from >= w[1].from {
                    return Err(format!("{addr}: overlap or disorder {w:?}"));
                }
            }
            for iv in &slot {
                if iv.from >= iv.until {
                    return Err(format!("{addr}: empty interval {iv:?}"));
                }
                let m = self
                    .members
                    .get(iv.member as usize)
                    .and_then(Option::as_ref);
                let Some(m) = m else {
                    return Err(format!("{addr}: interval names a freed member {iv:?}"));
                };
                if m.workload != iv.workload {
                    return Err(format!(
                        "{addr}: interval workload differs from its member's"
                    ));
                }
                *refs.entry(iv.member).or_default() += 1;
            }
        }
        for (id, m) in self.members.iter().enumerate() {
            let Some(m) = m else { continue };
            let n = refs.get(&(id as u32)).copied().unwrap_or(0);
            if n != m.refs {
                return Err(format!(
                    "member {} refs {} but {n} intervals",
                    m.uid, m.refs
                ));
            }
            if !m.live && m.refs == 0 {
                return Err(format!("dead unreferenced member {} kept", m.uid));
            }
            if self.workload(m.workload).is_none() {
                return Err(format!("member {} names a freed workload", m.uid));
            }
        }
        Ok(())
    }

    // ---- updates ----------------------------------------------------------------------------

    pub fn apply(&mut self, update: Update) {
        self.updates += 1;
        match update {
            Update::Upsert(m) => self.upsert(m),
            Update::Remove { uid, at_ns } => self.remove(&uid, at_ns),
            Update::Resync {
                kind,
                members,
                at_ns,
            } => {
                let gone: Vec<Box<str>> = {
                    let keep: hashbrown::HashSet<&str, ahash::RandomState> =
                        members.iter().map(|m| m.uid.as_str()).collect();
                    self.members
                        .iter()
                        .flatten()
                        .filter(|m| m.live && m.kind == kind && !keep.contains(&*m.uid))
                        .map(|m| m.uid.clone())
                        .collect()
                };
                for uid in gone {
                    self.remove(&uid, at_ns);
                }
                for m in members {
                    self.upsert(m);
                }
            }
        }
    }

    fn upsert(&mut self, m: Member) {
        let until = m.until_ns.unwrap_or(u64::MAX);
        let from = m.from_ns.min(until);
        if let Some(&id) = self.by_uid.get(m.uid.as_str()) {
            let Some(info) = self.members[id as usize].as_ref() else {
                return;
            };
            // An object that was deleted never comes back (uids are not reused): a late
            // update of it changes nothing.
            if !info.live {
                return;
            }
            let old_ips = info.ips.clone();
            let old_wid = info.workload;
            let wid = self.intern(m.workload.clone());
            if wid != old_wid {
                self.move_member(id, old_wid, wid);
            }
            if let Some(info) = self.members[id as usize].as_mut() {
                info.namespace = m.namespace.into();
                info.name = m.name.into();
                info.node = m.node.into();
                info.ips = m.ips.clone();
            }
            for ip in &old_ips {
                if !m.ips.contains(ip) {
                    self.close(*ip, id, m.seen_ns.max(from));
                }
            }
            // An address added later is the member's from when it was seen with it.
            let added_from = from.max(m.seen_ns).min(until);
            for ip in &m.ips {
                if !old_ips.contains(ip) {
                    self.insert(*ip, id, wid, added_from, until);
                }
            }
            if until != u64::MAX {
                self.end_member(id, until);
            }
            self.maybe_free_workload(old_wid);
            return;
        }
        let wid = self.intern(m.workload.clone());
        let info = MemberInfo {
            uid: m.uid.as_str().into(),
            kind: m.kind,
            namespace: m.namespace.into(),
            name: m.name.into(),
            node: m.node.into(),
            workload: wid,
            ips: m.ips.clone(),
            live: until == u64::MAX,
            refs: 0,
        };
        let id = match self.free_members.pop() {
            Some(id) => {
                self.members[id as usize] = Some(info);
                id
            }
            None => {
                self.members.push(Some(info));
                (self.members.len() - 1) as u32
            }
        };
        self.by_uid.insert(m.uid.into_boxed_str(), id);
        let slot = &mut self.workloads[wid.0 as usize];
        slot.members += 1;
        if until == u64::MAX {
            slot.live += 1;
        }
        for ip in m.ips {
            self.insert(ip, id, wid, from, until);
        }
        self.maybe_free_member(id);
    }

    fn remove(&mut self, uid: &str, at_ns: u64) {
        let Some(&id) = self.by_uid.get(uid) else {
            return;
        };
        self.end_member(id, at_ns);
    }

    /// The member's addresses stop being its at `at` (it is dead from then on).
    fn end_member(&mut self, id: u32, at: u64) {
        let Some(info) = self.members[id as usize].as_mut() else {
            return;
        };
        let ips = info.ips.clone();
        let wid = info.workload;
        if info.live {
            info.live = false;
            let slot = &mut self.workloads[wid.0 as usize];
            slot.live = slot.live.saturating_sub(1);
        }
        for ip in ips {
            self.close(ip, id, at);
        }
        self.maybe_free_member(id);
    }

    /// Ends member `id`'s interval on `ip` at `at` (removing it if it would be empty).
    fn close(&mut self, ip: IpAddr, id: u32, at: u64) {
        let mut dropped = 0;
        let mut slot = self.take_slot(ip);
        slot.retain_mut(|iv| {
            if iv.member != id {
                return true;
            }
            iv.until = iv.until.min(at);
            if iv.until <= iv.from {
                dropped += 1;
                return false;
            }
            true
        });
        self.put_slot(ip, slot);
        self.unref_member(id, dropped);
    }

    fn insert(&mut self, ip: IpAddr, id: u32, wid: WorkloadId, from: u64, until: u64) {
        let max_history = self.max_history;
        let mut new = Interval {
            from,
            until,
            member: id,
            workload: wid,
        };
        let mut dropped: Vec<u32> = Vec::new();
        let mut slot = self.take_slot(ip);
        for iv in slot.iter_mut() {
            if iv.member == id {
                continue;
            }
            if iv.from < new.from {
                iv.until = iv.until.min(new.from);
            } else {
                new.until = new.until.min(iv.from);
            }
        }
        slot.retain(|iv| {
            let keep = iv.from < iv.until;
            if !keep {
                dropped.push(iv.member);
            }
            keep
        });
        let mut added = false;
        if new.from < new.until && !slot.iter().any(|iv| iv.member == id) {
            let at = slot.partition_point(|iv| iv.from < new.from);
            slot.insert(at, new);
            added = true;
        }
        while slot.len() > max_history {
            dropped.push(slot.remove(0).member);
        }
        self.put_slot(ip, slot);
        if added && let Some(info) = self.members[id as usize].as_mut() {
            info.refs += 1;
        }
        for m in dropped {
            self.unref_member(m, 1);
        }
    }

    /// Forgets intervals that ended more than `retention` before `now_ns` (the newest capture
    /// time seen, so replaying an old capture keeps its history), and the members and
    /// workloads nothing refers to any more. Call about once a second.
    pub fn prune(&mut self, now_ns: u64) {
        let horizon = now_ns.saturating_sub(self.retention_ns);
        let mut dropped: Vec<u32> = Vec::new();
        let expired = |iv: &Interval| iv.until != u64::MAX && iv.until < horizon;
        let mut prune_slot = |slot: &mut Slot| {
            if !slot.iter().any(expired) {
                return true;
            }
            let mut v = slot.to_vec();
            v.retain(|iv| {
                if expired(iv) {
                    dropped.push(iv.member);
                    return false;
                }
                true
            });
            match Slot::from_vec(v) {
                Some(s) => {
                    *slot = s;
                    true
                }
                None => false,
            }
        };
        self.v4.retain(|_, s| prune_slot(s));
        self.v6.retain(|_, s| prune_slot(s));
        for m in dropped {
            self.unref_member(m, 1);
        }
    }

    // ---- bookkeeping ------------------------------------------------------------------------

    /// Removes the address's intervals from the map for editing (empty if it has none).
    fn take_slot(&mut self, ip: IpAddr) -> Vec<Interval> {
        let slot = match canonical(ip) {
            IpAddr::V4(v4) => self.v4.remove(&u32::from(v4)),
            IpAddr::V6(v6) => self.v6.remove(&u128::from(v6)),
        };
        slot.map(|s| s.to_vec()).unwrap_or_default()
    }

    /// Puts edited intervals back (sorted by `from`); none: the address is forgotten.
    fn put_slot(&mut self, ip: IpAddr, intervals: Vec<Interval>) {
        let Some(slot) = Slot::from_vec(intervals) else {
            return;
        };
        match canonical(ip) {
            IpAddr::V4(v4) => self.v4.insert(u32::from(v4), slot),
            IpAddr::V6(v6) => self.v6.insert(u128::from(v6), slot),
        };
    }

    fn unref_member(&mut self, id: u32, n: u32) {
        if n == 0 {
            return;
        }
        if let Some(info) = self.members[id as usize].as_mut() {
            info.refs = info.refs.saturating_sub(n);
        }
        self.maybe_free_member(id);
    }

    /// A dead member no interval names is forgotten.
    fn maybe_free_member(&mut self, id: u32) {
        let free = matches!(&self.members[id as usize], Some(m) if !m.live && m.refs == 0);
        if !free {
            return;
        }
        if let Some(info) = self.members[id as usize].take() {
            self.by_uid.remove(&info.uid);
            self.free_members.push(id);
            let slot = &mut self.workloads[info.workload.0 as usize];
            slot.members = slot.members.saturating_sub(1);
            self.maybe_free_workload(info.workload);
        }
    }

    fn move_member(&mut self, id: u32, from: WorkloadId, to: WorkloadId) {
        let live = self.members[id as usize].as_ref().is_some_and(|m| m.live);
        let old = &mut self.workloads[from.0 as usize];
        old.members = old.members.saturating_sub(1);
        if live {
            old.live = old.live.saturating_sub(1);
        }
        let new = &mut self.workloads[to.0 as usize];
        new.members += 1;
        if live {
            new.live += 1;
        }
        if let Some(m) = self.members[id as usize].as_mut() {
            m.workload = to;
        }
        for slot in self.v4.values_mut().chain(self.v6.values_mut()) {
            for iv in slot.iter_mut().filter(|iv| iv.member == id) {
                iv.workload = to;
            }
        }
    }

    fn intern(&mut self, w: Workload) -> WorkloadId {
        if let Some(&id) = self.by_workload.get(&w) {
            return id;
        }
        let slot = WorkloadSlot {
            workload: Some(w.clone()),
            live: 0,
            members: 0,
            pins: 0,
        };
        let id = match self.free_workloads.pop() {
            Some(id) => {
                self.workloads[id as usize] = slot;
                WorkloadId(id)
            }
            None => {
                self.workloads.push(slot);
                WorkloadId((self.workloads.len() - 1) as u32)
            }
        };
        self.by_workload.insert(w, id);
        id
    }

    fn maybe_free_workload(&mut self, id: WorkloadId) {
        let Some(slot) = self.workloads.get_mut(id.0 as usize) else {
            return;
        };
        if slot.workload.is_none() || slot.live > 0 || slot.members > 0 || slot.pins > 0 {
            return;
        }
        if let Some(w) = slot.workload.take() {
            self.by_workload.remove(&w);
            self.free_workloads.push(id.0);
        }
    }
}

#[inline]
fn resolved(iv: &Interval) -> Resolved {
    Resolved {
        workload: iv.workload,
        member: MemberId(iv.member),
    }
}
