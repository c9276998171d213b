//! The flow table and the per-protocol counters: what the processor counts.
//!
//! Layout, chosen for memory per flow and a scrape-friendly scan:
//! - `entries`: a dense `Vec<FlowEntry>` (80 bytes each: the 40-byte canonical key, four
//!   counters/timestamps, the last-touched tick and the initiator flags);
//! - `index`: a `hashbrown::HashTable<u32>` of positions in `entries` (4 bytes + 1 control byte
//!   per bucket), hashed with ahash over the fixed-size [`FlowKey`].
//!
//! Memory per tracked flow: the 80-byte entry plus the index, which is given room for
//! 2 x `max_flows` once the table reaches its final size (so removals are cleaned up by
//! rehashing in place, never by growing): 93 bytes at 100k flows, 96 at 10k, 101 at 1M (the
//! index rounds up to a power of two). Measured by `tests/alloc.rs` and `benches/table.rs`.
//!
//! Removing a flow swaps the last entry into its place (`swap_remove`) and repoints that entry's
//! index slot. Nothing here allocates once the table has reached its `max_flows` capacity.
//!
//! Eviction, in amortized batches:
//! - idle: [`FlowTable::evict_idle`] (called about once a second by the consumer) removes every
//!   flow this processor has not updated for the idle timeout, in one pass;
//! - capacity: inserting into a full table first evicts idle flows, and when none are idle
//!   evicts the least recently updated ~1/64th of the table (at least one), so the cost of
//!   a full pass is spread over many inserts.
//!
//! "Recently" is the processor's own clock (a tick of one second since start, passed in by the
//! caller), not the capture timestamps: replaying an old capture must not expire its flows.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use hashbrown::HashTable;
use netstream_wire::protocol;
use netstream_wire::{Direction, FlowKey, KeyKind, PacketMeta};

/// Endpoint B (the higher one of the canonical key) initiated the flow.
const FLAG_INITIATOR_B: u8 = 0x01;
/// The initiator was identified by a TCP SYN (else: the sender of the first packet seen).
const FLAG_BY_SYN: u8 = 0x02;

/// How many buckets of one tick the capacity eviction sorts last-update times into.
const AGE_BUCKETS: usize = 64;

/// One tracked flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowEntry {
    pub key: FlowKey,
    pub packets: u64,
    /// Sum of wire lengths.
    pub bytes: u64,
    /// Capture timestamp of the first packet this processor counted, ns since the epoch.
    pub first_ns: u64,
    /// Capture timestamp of the latest packet counted.
    pub last_ns: u64,
    /// Processor tick of the last update (for idle and capacity eviction).
    touched: u32,
    flags: u8,
}

// The memory budget per flow depends on this staying at 80 bytes.
const _: () = assert!(std::mem::size_of::<FlowEntry>() == 80);

/// Who opened a flow, and how we know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitiatedBy {
    /// The sender of a TCP SYN (without ACK).
    Syn,
    /// The sender of the first packet this processor saw.
    FirstPacket,
}

impl InitiatedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            InitiatedBy::Syn => "syn",
            InitiatedBy::FirstPacket => "first_packet",
        }
    }
}

impl FlowEntry {
    /// Whether endpoint B of the key is the initiator (the `src_*` labels).
    pub fn initiator_is_b(&self) -> bool {
        self.flags & FLAG_INITIATOR_B != 0
    }

    pub fn initiated_by(&self) -> InitiatedBy {
        if self.flags & FLAG_BY_SYN != 0 {
            InitiatedBy::Syn
        } else {
            InitiatedBy::FirstPacket
        }
    }

    /// `(src, dst)`: initiator first.
    pub fn src_dst(&self) -> (&netstream_wire::Endpoint, &netstream_wire::Endpoint) {
        if self.initiator_is_b() {
            (self.key.b(), self.key.a())
        } else {
            (self.key.a(), self.key.b())
        }
    }
}

/// Why a flow left the table (the `reason` label of `netstream_flows_evicted_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvictReason {
    Idle,
    Capacity,
    /// Its partition was revoked (a rebalance moved it to another processor).
    Revoked,
}

impl EvictReason {
    pub const ALL: [EvictReason; 3] = [
        EvictReason::Idle,
        EvictReason::Capacity,
        EvictReason::Revoked,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            EvictReason::Idle => "idle",
            EvictReason::Capacity => "capacity",
            EvictReason::Revoked => "revoked",
        }
    }
}

/// Bounded table of IP flows.
pub struct FlowTable {
    entries: Vec<FlowEntry>,
    index: HashTable<u32>,
    hasher: ahash::RandomState,
    max_flows: usize,
    idle_ticks: u32,
    evicted: [u64; EvictReason::ALL.len()],
}

impl std::fmt::Debug for FlowTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowTable")
            .field("len", &self.entries.len())
            .field("max_flows", &self.max_flows)
            .field("idle_ticks", &self.idle_ticks)
            .field("evicted", &self.evicted)
            .finish()
    }
}

/// Largest `max_flows` (positions are `u32`; 50 M flows is ~4.3 GB anyway).
pub const MAX_FLOWS_LIMIT: usize = netstream_config::MAX_FLOWS_LIMIT as usize;

impl FlowTable {
    /// A table holding at most `max_flows` (clamped to 1..=[`MAX_FLOWS_LIMIT`]) flows, evicting
    /// flows not updated for `idle_ticks` ticks (0: never idle).
    pub fn new(max_flows: usize, idle_ticks: u32) -> Self {
        FlowTable {
            entries: Vec::new(),
            index: HashTable::new(),
            hasher: ahash::RandomState::new(),
            max_flows: max_flows.clamp(1, MAX_FLOWS_LIMIT),
            idle_ticks,
            evicted: [0; EvictReason::ALL.len()],
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn max_flows(&self) -> usize {
        self.max_flows
    }

    /// Flows evicted so far for `reason`.
    pub fn evicted(&self, reason: EvictReason) -> u64 {
        self.evicted[reason as usize]
    }

    /// Every tracked flow, in no particular order.
    pub fn entries(&self) -> &[FlowEntry] {
        &self.entries
    }

    /// The flow of `key`, if tracked.
    pub fn get(&self, key: &FlowKey) -> Option<&FlowEntry> {
        let hash = self.hasher.hash_one(key);
        let entries = &self.entries;
        self.index
            .find(hash, |&i| entries[i as usize].key == *key)
            .map(|&i| &entries[i as usize])
    }

    /// Heap bytes held by the table (entries and index), for the memory-per-flow figure.
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<FlowEntry>() + self.index.allocation_size()
    }

    /// Counts one packet of an IP flow at processor tick `now`. Returns whether endpoint B of
    /// the key is the flow's initiator (what the enrichment needs to tell src from dst).
    #[inline]
    pub fn update(&mut self, key: &FlowKey, meta: &PacketMeta, now: u32) -> bool {
        let hash = self.hasher.hash_one(key);
        let entries = &mut self.entries;
        if let Some(&i) = self.index.find(hash, |&i| entries[i as usize].key == *key) {
            let e = &mut entries[i as usize];
            e.packets += 1;
            e.bytes += u64::from(meta.wire_len);
            e.first_ns = e.first_ns.min(meta.ts_ns);
            e.last_ns = e.last_ns.max(meta.ts_ns);
            e.touched = now;
            return e.flags & FLAG_INITIATOR_B != 0;
        }
        if self.entries.len() >= self.max_flows {
            self.make_room(now);
        }
        self.insert_new(hash, key, meta, now)
    }

    #[cold]
    fn insert_new(&mut self, hash: u64, key: &FlowKey, meta: &PacketMeta, now: u32) -> bool {
        let sender_is_b = meta.direction == Direction::BToA;
        let flags = if sender_is_b { FLAG_INITIATOR_B } else { 0 }
            | if meta.tcp_syn { FLAG_BY_SYN } else { 0 };
        if self.entries.len() == self.entries.capacity() {
            // Grow by doubling but never past max_flows: at capacity the Vec is exactly full.
            let want = (self.entries.capacity() * 2).max(1024).min(self.max_flows);
            self.entries
                .reserve_exact(want.saturating_sub(self.entries.len()).max(1));
            if want == self.max_flows {
                // Final size: give the index room for twice the flows, so removals (which leave
                // tombstones) are cleaned up by rehashing in place, never by growing again.
                let entries = &self.entries;
                let hasher = &self.hasher;
                self.index
                    .reserve(2 * self.max_flows - self.index.len(), |&i| {
                        hasher.hash_one(entries[i as usize].key)
                    });
            }
        }
        let pos = self.entries.len() as u32;
        self.entries.push(FlowEntry {
            key: *key,
            packets: 1,
            bytes: u64::from(meta.wire_len),
            first_ns: meta.ts_ns,
            last_ns: meta.ts_ns,
            touched: now,
            flags,
        });
        let entries = &self.entries;
        let hasher = &self.hasher;
        self.index
            .insert_unique(hash, pos, |&i| hasher.hash_one(entries[i as usize].key));
        sender_is_b
    }

    /// Removes the entry at `pos`, moving the last entry into its place.
    fn remove_at(&mut self, pos: usize) {
        let last = self.entries.len() - 1;
        let hash = self.hasher.hash_one(self.entries[pos].key);
        if let Ok(slot) = self.index.find_entry(hash, |&i| i as usize == pos) {
            slot.remove();
        }
        if pos != last {
            let hash = self.hasher.hash_one(self.entries[last].key);
            if let Some(slot) = self.index.find_mut(hash, |&i| i as usize == last) {
                *slot = pos as u32;
            }
        }
        self.entries.swap_remove(pos);
    }

    /// Removes every flow not updated for the idle timeout. Returns how many were removed.
    pub fn evict_idle(&mut self, now: u32) -> usize {
        if self.idle_ticks == 0 {
            return 0;
        }
        let idle = self.idle_ticks;
        let removed = self.remove_where(usize::MAX, |e| now.wrapping_sub(e.touched) >= idle);
        self.evicted[EvictReason::Idle as usize] += removed as u64;
        removed
    }

    /// Changes the bound to `max_flows` (clamped like [`new`](Self::new)): a table that holds
    /// more evicts down to it (idle flows first, then the least recently updated, counted as
    /// capacity evictions) and gives the memory back. The engine splits `--max-flows` over the
    /// partitions' tables when the assignment changes.
    pub fn set_max_flows(&mut self, max_flows: usize, now: u32) {
        self.max_flows = max_flows.clamp(1, MAX_FLOWS_LIMIT);
        if self.entries.len() > self.max_flows {
            self.evict_idle(now);
        }
        if self.entries.len() > self.max_flows {
            self.evict_oldest(now, self.entries.len() - self.max_flows);
        }
        if self.entries.capacity() > self.max_flows {
            self.entries.shrink_to(self.max_flows);
            let entries = &self.entries;
            let hasher = &self.hasher;
            self.index.shrink_to(2 * self.max_flows, |&i| {
                hasher.hash_one(entries[i as usize].key)
            });
        }
    }

    /// Removes up to `limit` entries matching `pred`, scanning from the front; returns the count.
    fn remove_where(&mut self, limit: usize, mut pred: impl FnMut(&FlowEntry) -> bool) -> usize {
        let mut removed = 0;
        let mut i = 0;
        while i < self.entries.len() && removed < limit {
            if pred(&self.entries[i]) {
                // The entry swapped in from the end has not been looked at yet: stay at i.
                self.remove_at(i);
                removed += 1;
            } else {
                i += 1;
            }
        }
        removed
    }

    /// Frees room in a full table: idle flows first, else the least recently updated batch.
    #[cold]
    fn make_room(&mut self, now: u32) {
        if self.evict_idle(now) > 0 && self.entries.len() < self.max_flows {
            return;
        }
        self.evict_oldest(now, (self.max_flows / 64).max(1));
    }

    /// Evicts the `batch` least recently updated flows in one pass (capacity evictions).
    fn evict_oldest(&mut self, now: u32, batch: usize) {
        // Age histogram in ticks, oldest first; the last bucket collects everything newer.
        let oldest = self
            .entries
            .iter()
            .map(|e| now.wrapping_sub(e.touched))
            .max()
            .unwrap_or(0);
        let mut counts = [0usize; AGE_BUCKETS];
        let bucket = |e: &FlowEntry| {
            let age = now.wrapping_sub(e.touched);
            ((oldest - age.min(oldest)) as usize).min(AGE_BUCKETS - 1)
        };
        for e in &self.entries {
            counts[bucket(e)] += 1;
        }
        // Evict every bucket strictly older than `cut`, then from `cut` until `batch` is reached.
        let mut cut = 0;
        let mut before = 0;
        while cut < AGE_BUCKETS - 1 && before + counts[cut] < batch {
            before += counts[cut];
            cut += 1;
        }
        let mut from_cut = batch - before;
        let removed = self.remove_where(batch, |e| {
            let b = bucket(e);
            if b < cut {
                true
            } else if b == cut && from_cut > 0 {
                from_cut -= 1;
                true
            } else {
                false
            }
        });
        self.evicted[EvictReason::Capacity as usize] += removed as u64;
    }

    /// The `n` flows with the most bytes (or packets), largest first, optionally of one
    /// protocol. Ties are broken by key so the answer is deterministic.
    pub fn top(&self, n: usize, by: TopBy, protocol: Option<&str>) -> Vec<FlowEntry> {
        if n == 0 {
            return Vec::new();
        }
        // Min-heap of the best n seen so far.
        let mut heap: BinaryHeap<Reverse<Ranked>> =
            BinaryHeap::with_capacity(n.min(self.entries.len()) + 1);
        for (i, e) in self.entries.iter().enumerate() {
            if protocol.is_some_and(|p| e.key.protocol_name() != p) {
                continue;
            }
            let item = Reverse((by.rank(e), Reverse(e.key), i as u32));
            if heap.len() < n {
                heap.push(item);
            } else if let Some(min) = heap.peek()
                && item < *min
            {
                heap.pop();
                heap.push(item);
            }
        }
        let mut out: Vec<_> = heap.into_iter().map(|Reverse(t)| t).collect();
        out.sort_unstable_by(|a, b| b.cmp(a));
        out.into_iter()
            .map(|(_, _, i)| self.entries[i as usize])
            .collect()
    }
}

/// `(primary, secondary)` count, then the key (smaller first), then the position.
type Ranked = ((u64, u64), Reverse<FlowKey>, u32);

/// The ordering of [`FlowTable::top`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopBy {
    Bytes,
    Packets,
}

impl TopBy {
    /// `(primary, secondary)` count of `e`: larger ranks first.
    #[inline]
    pub fn rank(self, e: &FlowEntry) -> (u64, u64) {
        match self {
            TopBy::Bytes => (e.bytes, e.packets),
            TopBy::Packets => (e.packets, e.bytes),
        }
    }
}

/// Packets and bytes of one protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub packets: u64,
    pub bytes: u64,
}

/// Per-protocol counters in a fixed array: the 256 IP protocol numbers, then `arp`, `non-ip`,
/// `unparsed`. No hashing, no allocation.
#[derive(Clone, Debug)]
pub struct ProtocolCounters {
    slots: [Totals; PROTOCOL_SLOTS],
}

const PROTOCOL_SLOTS: usize = 259;
const SLOT_ARP: usize = 256;
const SLOT_NON_IP: usize = 257;
const SLOT_UNPARSED: usize = 258;

impl Default for ProtocolCounters {
    fn default() -> Self {
        ProtocolCounters {
            slots: [Totals::default(); PROTOCOL_SLOTS],
        }
    }
}

fn slot_of(key: &FlowKey) -> usize {
    match key.kind() {
        KeyKind::Unparsed => SLOT_UNPARSED,
        KeyKind::NonIp => {
            if key.ethertype() == Some(protocol::ETHERTYPE_ARP) {
                SLOT_ARP
            } else {
                SLOT_NON_IP
            }
        }
        KeyKind::Ipv4 | KeyKind::Ipv6 => usize::from(key.ip_proto().unwrap_or(0)),
    }
}

fn slot_name(slot: usize) -> &'static str {
    match slot {
        SLOT_ARP => protocol::ARP,
        SLOT_NON_IP => protocol::NON_IP,
        SLOT_UNPARSED => protocol::UNPARSED,
        n => protocol::ip_proto_name(n as u8),
    }
}

impl ProtocolCounters {
    #[inline]
    pub fn add(&mut self, key: &FlowKey, wire_len: u32) {
        let t = &mut self.slots[slot_of(key)];
        t.packets += 1;
        t.bytes += u64::from(wire_len);
    }

    /// Every protocol seen at least once, with its name, in slot order.
    pub fn seen(&self) -> impl Iterator<Item = (&'static str, Totals)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, t)| t.packets > 0)
            .map(|(i, t)| (slot_name(i), *t))
    }

    /// Whether `name` is a protocol label value this build can produce.
    pub fn is_known_name(name: &str) -> bool {
        (0..PROTOCOL_SLOTS).any(|i| slot_name(i) == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netstream_wire::Endpoint;

    fn key4(proto: u16, a: [u8; 4], pa: u16, b: [u8; 4], pb: u16) -> (FlowKey, Direction) {
        FlowKey::new(
            KeyKind::Ipv4,
            proto,
            Endpoint::v4(a, pa),
            Endpoint::v4(b, pb),
        )
    }

    fn meta(direction: Direction, syn: bool, len: u32, ts: u64) -> PacketMeta {
        PacketMeta {
            direction,
            tcp_syn: syn,
            link_type: 1,
            wire_len: len,
            ts_ns: ts,
        }
    }

    fn flow(i: u32) -> FlowKey {
        let b = i.to_be_bytes();
        key4(17, [10, b[1], b[2], b[3]], 1000, [192, 168, 0, 1], 53).0
    }

    #[test]
    fn counts_packets_bytes_and_times_per_flow() {
        let mut t = FlowTable::new(10, 0);
        // Server (10.0.0.9:443) is A; the client (10.0.0.20) sends the SYN.
        let (k, d) = key4(6, [10, 0, 0, 20], 40000, [10, 0, 0, 9], 443);
        assert_eq!(d, Direction::BToA);
        t.update(&k, &meta(d, true, 60, 1_000), 0);
        t.update(&k, &meta(Direction::AToB, false, 1500, 3_000), 0);
        t.update(&k, &meta(d, false, 100, 2_000), 1);
        let e = t.get(&k).copied().unwrap();
        assert_eq!((e.packets, e.bytes), (3, 1660));
        assert_eq!((e.first_ns, e.last_ns), (1_000, 3_000));
        assert!(e.initiator_is_b());
        assert_eq!(e.initiated_by(), InitiatedBy::Syn);
        let (src, dst) = e.src_dst();
        assert_eq!((src.port, dst.port), (40000, 443));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn first_packet_sender_initiates_non_syn_flows() {
        let mut t = FlowTable::new(10, 0);
        let (k, _) = key4(17, [10, 0, 0, 1], 5353, [10, 0, 0, 2], 53);
        t.update(&k, &meta(Direction::AToB, false, 80, 5), 0);
        t.update(&k, &meta(Direction::BToA, false, 120, 6), 0);
        let e = *t.get(&k).unwrap();
        assert!(!e.initiator_is_b());
        assert_eq!(e.initiated_by(), InitiatedBy::FirstPacket);
        // A flow first seen from B: B is the source.
        let (k2, _) = key4(17, [10, 0, 0, 1], 7, [10, 0, 0, 2], 8);
        t.update(&k2, &meta(Direction::BToA, false, 80, 5), 0);
        let e2 = t.get(&k2).unwrap();
        assert!(e2.initiator_is_b());
        assert_eq!(e2.src_dst().0.port, 8);
    }

    #[test]
    fn idle_flows_are_evicted_and_counted() {
        let mut t = FlowTable::new(100, 5);
        for i in 0..10 {
            t.update(&flow(i), &meta(Direction::AToB, false, 1, 0), i);
        }
        // At tick 12 flows touched at ticks 0..=7 are idle (age >= 5).
        assert_eq!(t.evict_idle(12), 8);
        assert_eq!(t.len(), 2);
        assert!(t.get(&flow(8)).is_some() && t.get(&flow(9)).is_some());
        assert!(t.get(&flow(0)).is_none());
        assert_eq!(t.evicted(EvictReason::Idle), 8);
        assert_eq!(t.evicted(EvictReason::Capacity), 0);
        // Evicted flows start over when they come back.
        t.update(&flow(0), &meta(Direction::BToA, false, 7, 9), 12);
        assert_eq!(t.get(&flow(0)).unwrap().packets, 1);
        assert!(t.get(&flow(0)).unwrap().initiator_is_b());
    }

    #[test]
    fn full_table_evicts_the_least_recently_updated() {
        let mut t = FlowTable::new(128, 0);
        for i in 0..128 {
            t.update(&flow(i), &meta(Direction::AToB, false, 1, 0), 1000 + i);
        }
        // Refresh the oldest: flow 0 becomes the newest.
        t.update(&flow(0), &meta(Direction::AToB, false, 1, 0), 2000);
        t.update(&flow(1000), &meta(Direction::AToB, false, 1, 0), 2001);
        // Batch = 128/64 = 2: flows 1 and 2 (ticks 1001, 1002) go.
        assert_eq!(t.len(), 127);
        assert_eq!(t.evicted(EvictReason::Capacity), 2);
        assert!(t.get(&flow(0)).is_some());
        assert!(t.get(&flow(1)).is_none() && t.get(&flow(2)).is_none());
        assert!(t.get(&flow(3)).is_some() && t.get(&flow(1000)).is_some());
        // Every surviving entry is still reachable through the index.
        for e in t.entries() {
            assert_eq!(t.get(&e.key), Some(e));
        }
    }

    #[test]
    fn full_table_prefers_idle_evictions() {
        let mut t = FlowTable::new(4, 10);
        for i in 0..4 {
            t.update(&flow(i), &meta(Direction::AToB, false, 1, 0), i);
        }
        t.update(&flow(9), &meta(Direction::AToB, false, 1, 0), 11);
        // Flows 0 and 1 were idle (age >= 10): evicted as idle, no capacity eviction.
        assert_eq!(t.evicted(EvictReason::Idle), 2);
        assert_eq!(t.evicted(EvictReason::Capacity), 0);
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn a_flood_stays_bounded() {
        let mut t = FlowTable::new(1000, 300);
        for i in 0..50_000u32 {
            t.update(&flow(i), &meta(Direction::AToB, false, 64, 0), i / 10_000);
            assert!(t.len() <= 1000);
        }
        assert_eq!(
            t.evicted(EvictReason::Capacity) + t.len() as u64,
            50_000,
            "every flow is either tracked or counted as evicted"
        );
        // The Vec never grows past max_flows.
        // Entries: exactly max_flows; index: room for 2 x max_flows (4096 buckets of 5 bytes).
        assert_eq!(t.heap_bytes(), 1000 * 80 + 4096 * 5 + 16);
        for e in t.entries() {
            assert_eq!(t.get(&e.key), Some(e));
        }
    }

    #[test]
    fn a_smaller_bound_evicts_down_to_it() {
        let mut t = FlowTable::new(1000, 10);
        for i in 0..1000 {
            t.update(&flow(i), &meta(Direction::AToB, false, 1, 0), 100 + i / 100);
        }
        // Ticks 100..=109; at 115, flows of ticks 100..=105 (600) are idle.
        t.set_max_flows(300, 115);
        assert_eq!(t.len(), 300);
        assert_eq!(t.evicted(EvictReason::Idle), 600);
        assert_eq!(t.evicted(EvictReason::Capacity), 100);
        // The newest stay, every survivor is reachable, and the memory shrank.
        assert!(t.entries().iter().all(|e| e.touched >= 107));
        for e in t.entries() {
            assert_eq!(t.get(&e.key), Some(e));
        }
        assert!(
            t.heap_bytes() < 300 * 80 + 1024 * 5 + 64,
            "{}",
            t.heap_bytes()
        );
        // A larger bound lets it grow again.
        t.set_max_flows(2000, 115);
        for i in 5000..6000 {
            t.update(&flow(i), &meta(Direction::AToB, false, 1, 0), 115);
        }
        assert_eq!(t.len(), 1300);
    }

    #[test]
    fn top_flows_by_bytes_or_packets_and_protocol() {
        let mut t = FlowTable::new(100, 0);
        let udp = flow(1);
        let (tcp, _) = key4(6, [1, 1, 1, 1], 1, [2, 2, 2, 2], 2);
        let udp2 = flow(2);
        for _ in 0..5 {
            t.update(&udp, &meta(Direction::AToB, false, 10, 0), 0);
        }
        t.update(&tcp, &meta(Direction::AToB, true, 1000, 0), 0);
        t.update(&udp2, &meta(Direction::AToB, false, 20, 0), 0);
        let keys = |v: Vec<FlowEntry>| v.into_iter().map(|e| e.key).collect::<Vec<_>>();
        assert_eq!(keys(t.top(10, TopBy::Bytes, None)), [tcp, udp, udp2]);
        assert_eq!(keys(t.top(2, TopBy::Packets, None)), [udp, tcp]);
        assert_eq!(keys(t.top(10, TopBy::Bytes, Some("udp"))), [udp, udp2]);
        assert_eq!(keys(t.top(10, TopBy::Bytes, Some("icmp"))), []);
        assert!(t.top(0, TopBy::Bytes, None).is_empty());
    }

    #[test]
    fn protocol_counters_name_every_kind() {
        let mut p = ProtocolCounters::default();
        let (tcp, _) = key4(6, [1, 1, 1, 1], 1, [2, 2, 2, 2], 2);
        let (ospf, _) = key4(89, [1, 1, 1, 1], 0, [2, 2, 2, 2], 0);
        let (arp, _) = FlowKey::new(
            KeyKind::NonIp,
            0x0806,
            Endpoint::mac([2, 0, 0, 0, 0, 1]),
            Endpoint::mac([0xff; 6]),
        );
        let (lldp, _) = FlowKey::new(
            KeyKind::NonIp,
            0x88cc,
            Endpoint::mac([2, 0, 0, 0, 0, 1]),
            Endpoint::mac([1, 0x80, 0xc2, 0, 0, 0xe]),
        );
        p.add(&tcp, 60);
        p.add(&tcp, 40);
        p.add(&ospf, 90);
        p.add(&arp, 42);
        p.add(&lldp, 100);
        p.add(&FlowKey::UNPARSED, 5);
        let seen: Vec<_> = p.seen().map(|(n, t)| (n, t.packets, t.bytes)).collect();
        assert_eq!(
            seen,
            [
                ("tcp", 2, 100),
                ("ip-89", 1, 90),
                ("arp", 1, 42),
                ("non-ip", 1, 100),
                ("unparsed", 1, 5)
            ]
        );
        assert!(ProtocolCounters::is_known_name("icmpv6"));
        assert!(ProtocolCounters::is_known_name("ip-200"));
        assert!(!ProtocolCounters::is_known_name("http"));
    }
}
