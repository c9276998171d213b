//! The workload table: packets and bytes per (src workload, dst workload, IP protocol, dst port),
//! the `netstream_workload_*` series.
//!
//! Keys are four small integers (the workload ids of the identity index), so a lookup is one
//! ahash of 12 bytes and nothing is allocated once a series exists. Cardinality is bounded by
//! workloads, not pods, and hard-bounded by `max_series`: a full table evicts its least recently
//! updated ~1/64th (at least one) in one pass, like the flow table, so a cluster with many bare
//! pods or a scan of external addresses cannot grow memory without bound.
//!
//! Every series pins its two workload ids in the index ([`IdentityIndex::retain_workload`]) from
//! creation to removal, so an id is never recycled for another workload while a series still
//! counts under it and names it at scrape time.
//!
//! "Recently" is the processor's own clock (ticks of one second), as for flows: replaying an old
//! capture must not expire its series.

use hashbrown::HashMap;
use netstream_enrich::{IdentityIndex, WorkloadId};

/// How many one-tick buckets the capacity eviction sorts last-update times into.
const AGE_BUCKETS: usize = 64;

/// One workload series' labels, as ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SeriesKey {
    pub src: WorkloadId,
    pub dst: WorkloadId,
    /// IP protocol number.
    pub protocol: u8,
    /// The destination (non-initiator) port; 0 for protocols without ports.
    pub dst_port: u16,
}

impl std::hash::Hash for SeriesKey {
    /// One 128-bit write instead of four small ones (the count path hashes a key per packet).
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let packed = u128::from(self.src.0) << 64
            | u128::from(self.dst.0) << 32
            | u128::from(self.protocol) << 16
            | u128::from(self.dst_port);
        state.write_u128(packed);
    }
}

/// One workload series' counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeriesCounts {
    pub packets: u64,
    pub bytes: u64,
    /// Processor tick of the last update.
    pub touched: u32,
}

/// Why a series left the table (`netstream_workload_series_removed_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoveReason {
    /// One of its workloads no longer exists and it was not updated for `--workload-expiry`.
    Expired,
    /// The table was full (`--max-workload-series`).
    Capacity,
}

impl RemoveReason {
    pub const ALL: [RemoveReason; 2] = [RemoveReason::Expired, RemoveReason::Capacity];
    pub fn as_str(self) -> &'static str {
        match self {
            RemoveReason::Expired => "expired",
            RemoveReason::Capacity => "capacity",
        }
    }
}

/// The bounded table of workload series.
#[derive(Debug)]
pub struct WorkloadTable {
    series: HashMap<SeriesKey, SeriesCounts, ahash::RandomState>,
    max_series: usize,
    removed: [u64; 2],
}

impl WorkloadTable {
    /// A table of at most `max_series` (at least 1) series.
    pub fn new(max_series: usize) -> Self {
        WorkloadTable {
            series: HashMap::default(),
            max_series: max_series.max(1),
            removed: [0; 2],
        }
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    pub fn max_series(&self) -> usize {
        self.max_series
    }

    /// Series removed so far for `reason`.
    pub fn removed(&self, reason: RemoveReason) -> u64 {
        self.removed[reason as usize]
    }

    pub fn get(&self, key: &SeriesKey) -> Option<&SeriesCounts> {
        self.series.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&SeriesKey, &SeriesCounts)> {
        self.series.iter()
    }

    /// Heap bytes of the table (for the memory-per-series figure).
    pub fn heap_bytes(&self) -> usize {
        self.series.allocation_size()
    }

    /// Counts one packet of `wire_len` bytes at tick `now`. A new series pins its workloads in
    /// `index`.
    #[inline]
    pub fn add(&mut self, key: SeriesKey, wire_len: u32, now: u32, index: &mut IdentityIndex) {
        if let Some(c) = self.series.get_mut(&key) {
            c.packets += 1;
            c.bytes += u64::from(wire_len);
            c.touched = now;
            return;
        }
        self.insert_new(key, wire_len, now, index);
    }

    #[cold]
    fn insert_new(&mut self, key: SeriesKey, wire_len: u32, now: u32, index: &mut IdentityIndex) {
        if self.series.len() >= self.max_series {
            self.make_room(now, index);
        }
        index.retain_workload(key.src);
        index.retain_workload(key.dst);
        self.series.insert(
            key,
            SeriesCounts {
                packets: 1,
                bytes: u64::from(wire_len),
                touched: now,
            },
        );
    }

    /// Removes the series of which a workload no longer exists (`!index.is_live`) and that were
    /// not updated for `expiry_ticks`. Returns how many were removed.
    pub fn expire(&mut self, now: u32, expiry_ticks: u32, index: &mut IdentityIndex) -> usize {
        let mut released: Vec<WorkloadId> = Vec::new();
        self.series.retain(|k, c| {
            let gone = !index.is_live(k.src) || !index.is_live(k.dst);
            let expired = gone && now.wrapping_sub(c.touched) >= expiry_ticks;
            if expired {
                released.extend([k.src, k.dst]);
            }
            !expired
        });
        let n = released.len() / 2;
        for id in released {
            index.release_workload(id);
        }
        self.removed[RemoveReason::Expired as usize] += n as u64;
        n
    }

    /// Frees room in a full table: evicts the least recently updated ~1/64th (at least one).
    #[cold]
    fn make_room(&mut self, now: u32, index: &mut IdentityIndex) {
        let batch = (self.max_series / 64).max(1);
        let oldest = self
            .series
            .values()
            .map(|c| now.wrapping_sub(c.touched))
            .max()
            .unwrap_or(0);
        // Age histogram, oldest first; the last bucket collects everything newer.
        let bucket = |c: &SeriesCounts| {
            let age = now.wrapping_sub(c.touched);
            ((oldest - age.min(oldest)) as usize).min(AGE_BUCKETS - 1)
        };
        let mut counts = [0usize; AGE_BUCKETS];
        for c in self.series.values() {
            counts[bucket(c)] += 1;
        }
        let mut cut = 0;
        let mut before = 0;
        while cut < AGE_BUCKETS - 1 && before + counts[cut] < batch {
            before += counts[cut];
            cut += 1;
        }
        let mut from_cut = batch - before;
        let mut removed = 0usize;
        self.series.retain(|k, c| {
            if removed >= batch {
                return true;
            }
            let b = bucket(c);
            let evict = b < cut || (b == cut && from_cut > 0);
            if !evict {
                return true;
            }
            if b == cut {
                from_cut -= 1;
            }
            removed += 1;
            // Releasing inside the pass: no list of ids to allocate while at capacity.
            index.release_workload(k.src);
            index.release_workload(k.dst);
            false
        });
        self.removed[RemoveReason::Capacity as usize] += removed as u64;
    }

    /// The `n` series with the most bytes (or packets, `by_packets`), largest first; ties by key.
    pub fn top(&self, n: usize, by_packets: bool) -> Vec<(SeriesKey, SeriesCounts)> {
        let mut all: Vec<(SeriesKey, SeriesCounts)> =
            self.series.iter().map(|(k, c)| (*k, *c)).collect();
        let metric = |c: &SeriesCounts| {
            if by_packets {
                (c.packets, c.bytes)
            } else {
                (c.bytes, c.packets)
            }
        };
        all.sort_unstable_by(|a, b| metric(&b.1).cmp(&metric(&a.1)).then(a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netstream_enrich::{IndexConfig, Member, MemberKind, Update, Workload, WorkloadKind};

    fn pod(uid: &str, ip: [u8; 4], workload: &str, until: Option<u64>) -> Update {
        Update::Upsert(Member {
            uid: uid.into(),
            kind: MemberKind::Pod,
            namespace: "ns".into(),
            name: uid.into(),
            workload: Workload::new("ns", workload, WorkloadKind::Deployment),
            node: String::new(),
            ips: vec![std::net::IpAddr::from(ip)],
            from_ns: 0,
            until_ns: until,
            seen_ns: 0,
        })
    }

    fn key(src: WorkloadId, dst: WorkloadId, port: u16) -> SeriesKey {
        SeriesKey {
            src,
            dst,
            protocol: 6,
            dst_port: port,
        }
    }

    fn wid(index: &IdentityIndex, ip: [u8; 4]) -> WorkloadId {
        index.resolve_v4(u32::from_be_bytes(ip), 10).workload
    }

    #[test]
    fn counts_per_series() {
        let mut index = IdentityIndex::new(IndexConfig::default());
        index.apply(pod("a", [10, 0, 0, 1], "web", None));
        let web = wid(&index, [10, 0, 0, 1]);
        let mut t = WorkloadTable::new(10);
        let k = key(web, WorkloadId::EXTERNAL, 443);
        t.add(k, 100, 0, &mut index);
        t.add(k, 50, 3, &mut index);
        t.add(key(web, WorkloadId::EXTERNAL, 80), 7, 3, &mut index);
        assert_eq!(
            t.get(&k),
            Some(&SeriesCounts {
                packets: 2,
                bytes: 150,
                touched: 3
            })
        );
        assert_eq!(t.len(), 2);
        let top = t.top(1, false);
        assert_eq!(top[0].0, k);
        assert_eq!(t.top(5, true).len(), 2);
    }

    #[test]
    fn series_of_gone_workloads_expire_and_their_ids_stay_pinned_until_then() {
        let mut index = IdentityIndex::new(IndexConfig::default());
        index.apply(pod("live", [10, 0, 0, 1], "web", None));
        // Dead from the start (the file's `until`): counted while its interval holds.
        index.apply(pod("gone", [10, 0, 0, 2], "batch", Some(1_000)));
        let web = wid(&index, [10, 0, 0, 1]);
        let batch = wid(&index, [10, 0, 0, 2]);
        assert!(index.is_live(web) && !index.is_live(batch));
        let mut t = WorkloadTable::new(10);
        t.add(key(web, WorkloadId::EXTERNAL, 1), 1, 0, &mut index);
        t.add(key(batch, web, 2), 1, 0, &mut index);
        // The batch pod's interval is pruned: only the series' pin keeps its name.
        index.prune(u64::MAX);
        assert_eq!(index.workload(batch).map(|w| &*w.name), Some("batch"));
        // Not idle long enough yet.
        assert_eq!(t.expire(5, 10, &mut index), 0);
        assert_eq!(t.expire(10, 10, &mut index), 1);
        assert_eq!(t.removed(RemoveReason::Expired), 1);
        assert!(t.get(&key(batch, web, 2)).is_none());
        // The live workload's series stays, however idle; the dead workload's id is freed.
        assert_eq!(t.expire(1_000, 10, &mut index), 0);
        assert_eq!(t.len(), 1);
        assert_eq!(index.workload(batch), None);
        assert_eq!(index.workload(web).map(|w| &*w.name), Some("web"));
    }

    #[test]
    fn a_full_table_evicts_the_least_recently_updated_and_releases_them() {
        let mut index = IdentityIndex::new(IndexConfig::default());
        let mut ids = Vec::new();
        for i in 0..200u8 {
            index.apply(pod(&format!("p{i}"), [10, 0, 1, i], &format!("w{i}"), None));
            ids.push(wid(&index, [10, 0, 1, i]));
        }
        let mut t = WorkloadTable::new(128);
        for (i, id) in ids.iter().enumerate() {
            t.add(key(*id, WorkloadId::EXTERNAL, 53), 1, i as u32, &mut index);
            assert!(t.len() <= 128);
        }
        // 72 inserts into a full table, batches of 128/64 = 2: 72 evicted, oldest first.
        assert_eq!(t.removed(RemoveReason::Capacity), 72);
        assert_eq!(t.len(), 128);
        for (i, id) in ids.iter().enumerate() {
            let present = t.get(&key(*id, WorkloadId::EXTERNAL, 53)).is_some();
            assert_eq!(present, i >= 72, "series {i}");
        }
    }
}
