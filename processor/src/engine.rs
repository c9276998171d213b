//! The analysis engine: decodes each record once, keeps one shard per assigned partition in
//! every enabled analysis, and hands the packet to each analysis in registry order.
//!
//! A partition's shard is created on its first record (so an assignment costs nothing until
//! records flow) and dropped whole when the partition is revoked. Shards live in the same slot
//! in every analysis, so the per-record lookup is one indexed load (`slot_of`), not a hash.

use std::cell::{Cell, OnceCell};

use etherparse::LaxSlicedPacket;

use netstream_wire::{FlowKey, NameCheck, PacketMeta};

use crate::analysis::flows::Flows;
use crate::analysis::registry::{self, Setup};
use crate::analysis::{Analysis, Flush, Host, Hosted, Snapshots, Verdict};
use crate::decode::{Invalid, InvalidReason, decode};
use netstream_runtime::metrics::FamilyDef;
use std::sync::Arc;

/// One decoded packet, as every analysis sees it. Built on the stack per record: nothing in it
/// allocates.
#[derive(Debug)]
pub struct Packet<'a> {
    /// The Kafka partition the record came from.
    pub partition: i32,
    /// The canonical flow key (both directions share it).
    pub key: FlowKey,
    pub meta: PacketMeta,
    /// The captured frame (link layer first).
    pub frame: &'a [u8],
    /// The record as it came from Kafka (for analyses that forward it).
    pub raw_key: &'a [u8],
    pub raw_value: &'a [u8],
    /// The processor's tick (seconds since start) when the record was taken.
    pub now: u32,
    /// Whether endpoint B of the key initiated the flow, once an analysis (`flows`) knows it;
    /// later analyses read it (the workload labels tell src from dst by it).
    pub initiator_is_b: Cell<Option<bool>>,
    /// The frame's headers, dissected on the first [`dissect`](Self::dissect).
    dissected: OnceCell<Option<LaxSlicedPacket<'a>>>,
}

impl<'a> Packet<'a> {
    /// The frame's L2-L4 headers and payload (zero-copy), dissected once however many analyses
    /// ask; `None` when the link layer cannot be read. See [`crate::dissect`].
    #[inline]
    pub fn dissect(&self) -> Option<&LaxSlicedPacket<'a>> {
        self.dissected
            .get_or_init(|| crate::dissect::dissect(self.meta.link_type, self.frame))
            .as_ref()
    }
}

/// Every enabled analysis, their shards, and the record counters that are not any analysis'.
pub struct Engine {
    hosts: Vec<Box<dyn Hosted>>,
    /// Partition -> slot + 1 (0: no shard yet).
    slot_of: Vec<u32>,
    /// Slot -> partition.
    partitions: Vec<i32>,
    /// Every record taken from the topic, valid or not.
    consumed: u64,
    invalid: [u64; InvalidReason::ALL.len()],
    /// The probes' names, validated once while they repeat.
    names: NameCheck,
    /// The latest tick seen (for shard changes outside the record path).
    now: u32,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("analyses", &self.names())
            .field("partitions", &self.partitions)
            .field("consumed", &self.consumed)
            .finish()
    }
}

/// Partitions above this share the last slot's index entry (Kafka topics have far fewer).
const MAX_PARTITION: usize = 1 << 20;

impl Engine {
    /// An engine hosting `hosts`, in the order given (the registry's).
    pub fn new(hosts: Vec<Box<dyn Hosted>>) -> Self {
        Engine {
            hosts,
            slot_of: Vec::new(),
            partitions: Vec::new(),
            consumed: 0,
            invalid: [0; InvalidReason::ALL.len()],
            names: NameCheck::default(),
            now: 0,
        }
    }

    /// An engine with the registry's analyses `names` built from `setup` (tests, benches).
    pub fn build(names: &[&str], mut setup: Setup) -> Result<Engine, String> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        registry::build(registry::ANALYSES, &names, &mut setup).map(Engine::new)
    }

    /// An engine with `flows` only.
    pub fn flows(max_flows: usize, idle_ticks: u32) -> Engine {
        Engine::new(vec![Box::new(Host::new(Flows::new(max_flows, idle_ticks)))])
    }

    /// The enabled analyses' names, in the order they see packets.
    pub fn names(&self) -> Vec<&'static str> {
        self.hosts.iter().map(|h| h.name()).collect()
    }

    /// Records taken from the topic, valid or not.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Records skipped for `reason`.
    pub fn invalid(&self, reason: InvalidReason) -> u64 {
        self.invalid[reason as usize]
    }

    /// The partitions that have a shard, in slot order.
    pub fn partitions(&self) -> &[i32] {
        &self.partitions
    }

    #[inline]
    fn index(partition: i32) -> usize {
        usize::try_from(partition)
            .unwrap_or(0)
            .min(MAX_PARTITION - 1)
    }

    /// The shard slot of `partition`, creating the shards on its first record.
    #[inline]
    fn slot(&mut self, partition: i32, now: u32) -> usize {
        let i = Self::index(partition);
        match self.slot_of.get(i) {
            Some(&s) if s > 0 => s as usize - 1,
            _ => self.add_partition(partition, now),
        }
    }

    #[cold]
    fn add_partition(&mut self, partition: i32, now: u32) -> usize {
        let i = Self::index(partition);
        if i >= self.slot_of.len() {
            self.slot_of.resize(i + 1, 0);
        }
        let slot = self.partitions.len();
        self.partitions.push(partition);
        self.slot_of[i] = slot as u32 + 1;
        for h in &mut self.hosts {
            h.add_shard(partition, now);
        }
        slot
    }

    /// Takes one record of `partition` at processor tick `now`: decodes it once and hands the
    /// packet to every analysis in order, until one says [`Verdict::Stop`]. Returns the key
    /// and the verdict, or why the record is invalid (then only counted in
    /// `netstream_records_invalid_total`).
    #[inline]
    pub fn record(
        &mut self,
        partition: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        now: u32,
    ) -> Result<(FlowKey, Verdict), Invalid> {
        self.consumed += 1;
        self.now = now;
        let (flow, meta, frame) = match decode(key, value, &mut self.names) {
            Ok(d) => d,
            Err(e) => {
                self.invalid[e.reason as usize] += 1;
                return Err(e);
            }
        };
        let slot = self.slot(partition, now);
        let pkt = Packet {
            partition,
            key: flow,
            meta,
            frame,
            raw_key: key.unwrap_or_default(),
            raw_value: value.unwrap_or_default(),
            now,
            initiator_is_b: Cell::new(None),
            dissected: OnceCell::new(),
        };
        for h in &mut self.hosts {
            if h.packet(slot, &pkt) == Verdict::Stop {
                return Ok((flow, Verdict::Stop));
            }
        }
        Ok((flow, Verdict::Continue))
    }

    /// The once-a-second upkeep at tick `now` (idle state out).
    pub fn maintain(&mut self, now: u32) {
        self.now = now;
        for h in &mut self.hosts {
            h.tick(now);
        }
    }

    /// Drops the shards of revoked `partitions` (their new owner counts them from now on).
    /// Totals stay: a counter must not go down. Returns how many entries (flows, connections,
    /// ...) the analyses dropped.
    pub fn revoke(&mut self, partitions: &[i32]) -> usize {
        let mut dropped = 0;
        for &p in partitions {
            let i = Self::index(p);
            let Some(&s) = self.slot_of.get(i) else {
                continue;
            };
            if s == 0 || self.partitions.get(s as usize - 1) != Some(&p) {
                continue;
            }
            let slot = s as usize - 1;
            for h in &mut self.hosts {
                dropped += h.remove_shard(slot, p, self.now);
            }
            self.slot_of[i] = 0;
            self.partitions.swap_remove(slot);
            if let Some(&moved) = self.partitions.get(slot) {
                self.slot_of[Self::index(moved)] = slot as u32 + 1;
            }
        }
        dropped
    }

    /// What must be flushed before offsets are committed.
    pub fn flushers(&self) -> Vec<Arc<dyn Flush>> {
        self.hosts.iter().filter_map(|h| h.flusher()).collect()
    }

    /// Every analysis' snapshot (copied under the caller's lock; rendered after it).
    pub fn snapshot(&self) -> Snapshots {
        let mut snaps = Snapshots::default();
        self.snapshot_into(&mut snaps);
        snaps
    }

    /// Adds this engine's state to `snaps` (one lane's share of a snapshot over all lanes).
    pub fn snapshot_into(&self, snaps: &mut Snapshots) {
        for h in &self.hosts {
            h.snapshot(snaps);
        }
    }

    /// Every family the analyses may write.
    pub fn defs(&self) -> Vec<FamilyDef> {
        self.hosts.iter().flat_map(|h| h.defs()).collect()
    }

    /// Analysis `A` and its shards, if enabled.
    pub fn host<A: Analysis>(&self) -> Option<&Host<A>> {
        self.hosts
            .iter()
            .find_map(|h| h.as_any().downcast_ref::<Host<A>>())
    }

    /// Analysis `A`, if enabled.
    pub fn analysis<A: Analysis>(&self) -> Option<&A> {
        self.host::<A>().map(|h| &h.analysis)
    }

    /// Analysis `A`, mutably (an identity source applying its updates).
    pub fn analysis_mut<A: Analysis>(&mut self) -> Option<&mut A> {
        self.hosts
            .iter_mut()
            .find_map(|h| h.as_any_mut().downcast_mut::<Host<A>>())
            .map(|h| &mut h.analysis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::flows::FlowsSnapshot;
    use netstream_wire::{Direction, Endpoint, KeyKind, ValueEncoder};

    fn value(direction: Direction, wire_len: u32) -> Vec<u8> {
        ValueEncoder::new("node", "eth0")
            .encode(
                &PacketMeta {
                    direction,
                    tcp_syn: false,
                    link_type: 1,
                    wire_len,
                    ts_ns: 1,
                },
                &[0u8; 14],
            )
            .to_vec()
    }

    fn flows_engine() -> Engine {
        Engine::flows(10, 0)
    }

    fn udp(i: u8) -> FlowKey {
        FlowKey::new(
            KeyKind::Ipv4,
            17,
            Endpoint::v4([10, 0, 0, i], 1),
            Endpoint::v4([10, 0, 1, 2], 2),
        )
        .0
    }

    /// Lanes built from one setup split `--max-flows` over all their tables, and a lane
    /// re-splits at its next tick when another lane's tables change.
    #[test]
    fn lanes_share_the_flow_budget() {
        use crate::analysis::flows::Flows;
        let mut setup = registry::Setup::new(120, 0);
        let names = ["flows".to_string()];
        let mut a = Engine::new(registry::build(registry::ANALYSES, &names, &mut setup).unwrap());
        let mut b = Engine::new(registry::build(registry::ANALYSES, &names, &mut setup).unwrap());
        let v = value(Direction::AToB, 100);
        let caps = |e: &Engine| -> Vec<usize> {
            e.host::<Flows>()
                .unwrap()
                .shards
                .iter()
                .map(|t| t.max_flows())
                .collect()
        };
        a.record(0, Some(&udp(1).to_vec()), Some(&v), 0).unwrap();
        assert_eq!(caps(&a), [120]);
        for p in 1..=3 {
            b.record(p, Some(&udp(1).to_vec()), Some(&v), 0).unwrap();
        }
        assert_eq!(caps(&b), [30, 30, 30], "4 tables over both lanes");
        a.maintain(1);
        assert_eq!(caps(&a), [30], "re-split at the tick");
        b.revoke(&[1, 2, 3]);
        a.maintain(2);
        assert_eq!(caps(&a), [120]);
    }

    #[test]
    fn counts_ip_flows_and_protocols_but_non_ip_only_per_protocol() {
        let mut engine = flows_engine();
        let udp = udp(1);
        let (arp, _) = FlowKey::new(
            KeyKind::NonIp,
            0x0806,
            Endpoint::mac([2, 0, 0, 0, 0, 1]),
            Endpoint::mac([0xff; 6]),
        );
        let v = value(Direction::AToB, 100);
        let ok = |k| Ok((k, Verdict::Continue));
        assert_eq!(engine.record(0, Some(&udp.to_vec()), Some(&v), 0), ok(udp));
        assert_eq!(engine.record(0, Some(&arp.to_vec()), Some(&v), 0), ok(arp));
        assert_eq!(
            engine.record(0, Some(&FlowKey::UNPARSED.to_vec()), Some(&v), 0),
            ok(FlowKey::UNPARSED)
        );
        let snaps = engine.snapshot();
        let snap = snaps.get::<FlowsSnapshot>().unwrap();
        assert_eq!(snap.flows.len(), 1);
        let protos: Vec<_> = snap.protocols.iter().map(|(n, t)| (*n, t.bytes)).collect();
        assert_eq!(protos, [("udp", 100), ("arp", 100), ("unparsed", 100)]);
        assert_eq!(engine.consumed(), 3);
    }

    #[test]
    fn invalid_records_are_named_and_counted() {
        let mut engine = flows_engine();
        let (k, _) = FlowKey::new(
            KeyKind::Ipv4,
            6,
            Endpoint::v4([1, 1, 1, 1], 1),
            Endpoint::v4([2, 2, 2, 2], 2),
        );
        let good_key = k.to_vec();
        let good_value = value(Direction::AToB, 60);
        let mut bad_version = good_key.clone();
        bad_version[0] = 9;
        type Case<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, InvalidReason);
        let cases: [Case; 9] = [
            (None, Some(&good_value), InvalidReason::MissingKey),
            (Some(&[]), Some(&good_value), InvalidReason::EmptyKey),
            (
                Some(&bad_version),
                Some(&good_value),
                InvalidReason::UnknownKeyVersion,
            ),
            (
                Some(&[1, 9]),
                Some(&good_value),
                InvalidReason::UnknownKeyKind,
            ),
            (
                Some(&good_key[..10]),
                Some(&good_value),
                InvalidReason::BadKeyLength,
            ),
            (Some(&good_key), None, InvalidReason::MissingValue),
            (Some(&good_key), Some(&[]), InvalidReason::EmptyValue),
            (
                Some(&good_key),
                Some(&[7, 1, 2]),
                InvalidReason::UnknownValueVersion,
            ),
            (
                Some(&good_key),
                Some(&good_value[..10]),
                InvalidReason::TruncatedValue,
            ),
        ];
        for (key, val, reason) in cases {
            let err = engine.record(0, key, val, 0).unwrap_err();
            assert_eq!(err.reason, reason, "{err}");
            assert_eq!(engine.invalid(reason), 1);
        }
        assert_eq!(engine.consumed(), 9);
        // No shard was even created: invalid records reach no analysis.
        assert!(engine.partitions().is_empty());
        let snaps = engine.snapshot();
        let snap = snaps.get::<FlowsSnapshot>().unwrap();
        assert!(snap.flows.is_empty() && snap.protocols.is_empty());
        // Every reason has a distinct label.
        let mut labels: Vec<_> = InvalidReason::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), InvalidReason::ALL.len());
    }

    /// Two analyses read the same dissection (parsed once, by the first that asks).
    #[test]
    fn analyses_share_one_dissection() {
        use crate::analysis::{Families, Snapshots};
        use etherparse::{PacketBuilder, TransportSlice};
        /// `(payload length, payload address)` of each TCP packet seen.
        type Seen = std::sync::Arc<std::sync::Mutex<Vec<(usize, usize)>>>;
        struct Tcp {
            seen: Seen,
        }
        impl Analysis for Tcp {
            const NAME: &'static str = "tcp-test";
            type Shard = ();
            type Snapshot = ();
            fn shard(&mut self, _: i32) {}
            fn packet(&mut self, _: &mut (), pkt: &Packet<'_>) -> Verdict {
                if let Some(Some(TransportSlice::Tcp(t))) = pkt.dissect().map(|d| &d.transport) {
                    let p = t.payload();
                    self.seen
                        .lock()
                        .unwrap()
                        .push((p.len(), p.as_ptr() as usize));
                }
                Verdict::Continue
            }
            fn snapshot(&self, _: &[()], _: &Snapshots, _: &mut ()) {}
            fn families(_: &(), _: &Snapshots, _: &mut Families) {}
            fn defs(&self) -> Vec<FamilyDef> {
                Vec::new()
            }
        }
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut engine = Engine::new(vec![
            Box::new(Host::new(Tcp { seen: seen.clone() })),
            Box::new(Host::new(Tcp { seen: seen.clone() })),
        ]);
        let mut frame = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 443, 1, 100)
            .write(&mut frame, b"GET / HTTP/1.1\r\n")
            .unwrap();
        let (k, d) = FlowKey::new(
            KeyKind::Ipv4,
            6,
            Endpoint::v4([10, 0, 0, 1], 40000),
            Endpoint::v4([10, 0, 0, 2], 443),
        );
        let meta = PacketMeta {
            direction: d,
            tcp_syn: false,
            link_type: 1,
            wire_len: frame.len() as u32,
            ts_ns: 1,
        };
        let v = ValueEncoder::new("n", "i").encode(&meta, &frame).to_vec();
        engine.record(0, Some(&k.to_vec()), Some(&v), 0).unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].0, 16, "the payload, zero-copy from the record");
        assert_eq!(seen[0], seen[1], "the same slice of the same record");
        let start = v.as_ptr() as usize;
        assert!((start..start + v.len()).contains(&seen[0].1));
    }

    #[test]
    fn a_revoked_partition_drops_exactly_its_shard() {
        let mut engine = flows_engine();
        let v = value(Direction::AToB, 10);
        // Partitions 3, 0 and 5 get flows 1, 2 and 3 (two of them for partition 5).
        for (p, k) in [(3, udp(1)), (0, udp(2)), (5, udp(3)), (5, udp(4))] {
            engine.record(p, Some(&k.to_vec()), Some(&v), 0).unwrap();
        }
        assert_eq!(engine.partitions(), [3, 0, 5]);
        // Revoking 3 moves partition 5 into its slot; unknown partitions are ignored.
        assert_eq!(engine.revoke(&[3, 9]), 1);
        assert_eq!(engine.partitions(), [5, 0]);
        // Later records still land in their own shards.
        engine
            .record(5, Some(&udp(3).to_vec()), Some(&v), 1)
            .unwrap();
        engine
            .record(3, Some(&udp(1).to_vec()), Some(&v), 1)
            .unwrap();
        let snaps = engine.snapshot();
        let snap = snaps.get::<FlowsSnapshot>().unwrap();
        let mut flows: Vec<_> = snap.flows.iter().map(|f| (f.key, f.packets)).collect();
        flows.sort();
        let mut want = vec![(udp(1), 1), (udp(2), 1), (udp(3), 2), (udp(4), 1)];
        want.sort();
        assert_eq!(flows, want, "flow 1 started over in a new shard");
        assert_eq!(snap.evicted_revoked(), 1);
        assert_eq!(engine.revoke(&[0, 5, 3]), 4);
        assert!(engine.partitions().is_empty());
        // Protocol totals stay.
        let snaps = engine.snapshot();
        let snap = snaps.get::<FlowsSnapshot>().unwrap();
        assert!(snap.flows.is_empty());
        assert_eq!(
            snap.protocols,
            [(
                "udp",
                crate::analysis::flows::table::Totals {
                    packets: 6,
                    bytes: 60
                }
            )]
        );
    }
}
