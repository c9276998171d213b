//! `flows`: packets and bytes per IP flow (one bounded [`FlowTable`] per partition) and per
//! protocol (one [`ProtocolCounters`] for the processor), the flow and protocol APIs.
//!
//! `--max-flows` bounds the sum of the partitions' tables: each gets an equal share, re-split
//! when the assignment changes (records are keyed by flow hash, so partitions hold similar
//! numbers of flows). Idle and capacity evictions are counted per table; a revoked partition's
//! flows are counted as `revoked` and its table's evictions kept in the totals.
//!
//! The flow's initiator, which the table knows, is noted on the packet for later analyses
//! (`workloads`).

pub mod api;
pub mod table;

use netstream_runtime::metrics::{
    FamilyDef, escape_into, pair, pair_owned, write_header, write_uint, write_value,
};
use netstream_wire::{Endpoint, KeyKind};
use prometheus::proto::Metric;

use crate::analysis::workloads::EnrichmentSnapshot;
use crate::analysis::{Analysis, Families, Packet, Snapshots, Verdict};
use table::{EvictReason, FlowEntry, FlowTable, ProtocolCounters, Totals};

pub const FLOW_PACKETS: &str = "netstream_flow_packets_total";
pub const FLOW_BYTES: &str = "netstream_flow_bytes_total";
pub const PROTOCOL_PACKETS: &str = "netstream_protocol_packets_total";
pub const PROTOCOL_BYTES: &str = "netstream_protocol_bytes_total";
pub const FLOWS_ACTIVE: &str = "netstream_flows_active";
pub const FLOWS_EVICTED: &str = "netstream_flows_evicted_total";

pub(crate) const FLOW_LABELS: [&str; 5] =
    ["protocol", "src_addr", "src_port", "dst_addr", "dst_port"];
/// With enrichment on, per-flow series also name both ends' workloads.
const FLOW_LABELS_ENRICHED: [&str; 9] = [
    "protocol",
    "src_addr",
    "src_port",
    "dst_addr",
    "dst_port",
    "src_namespace",
    "src_workload",
    "dst_namespace",
    "dst_workload",
];
/// ... and with `--flow-pod-labels`, their pods.
const FLOW_LABELS_PODS: [&str; 11] = [
    "protocol",
    "src_addr",
    "src_port",
    "dst_addr",
    "dst_port",
    "src_namespace",
    "src_workload",
    "dst_namespace",
    "dst_workload",
    "src_pod",
    "dst_pod",
];

const FLOW_PACKETS_DEF: FamilyDef = FamilyDef::counter(
    FLOW_PACKETS,
    "Packets per tracked IP flow; src is the flow's initiator (TCP SYN sender, else the sender of the first packet this processor saw).",
    &FLOW_LABELS,
);
const FLOW_BYTES_DEF: FamilyDef = FamilyDef::counter(
    FLOW_BYTES,
    "Bytes (wire length) per tracked IP flow; src is the flow's initiator.",
    &FLOW_LABELS,
);
const PROTOCOL_PACKETS_DEF: FamilyDef = FamilyDef::counter(
    PROTOCOL_PACKETS,
    "Packets per protocol (IP protocol name or ip-N, arp, non-ip, unparsed).",
    &["protocol"],
);
const PROTOCOL_BYTES_DEF: FamilyDef = FamilyDef::counter(
    PROTOCOL_BYTES,
    "Bytes (wire length) per protocol.",
    &["protocol"],
);
const FLOWS_ACTIVE_DEF: FamilyDef = FamilyDef::gauge(
    FLOWS_ACTIVE,
    "IP flows currently tracked (bounded by --max-flows).",
    &[],
);
const FLOWS_EVICTED_DEF: FamilyDef = FamilyDef::counter(
    FLOWS_EVICTED,
    "Flows removed from the table: idle (not updated for --flow-idle-timeout), capacity (table full at --max-flows) or revoked (their partition moved to another processor).",
    &["reason"],
);

/// Which per-flow labels the flow families have (set by the `workloads` analysis' options).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FlowLabelMode {
    #[default]
    Plain,
    Workloads,
    Pods,
}

impl FlowLabelMode {
    pub fn labels(self) -> &'static [&'static str] {
        match self {
            FlowLabelMode::Plain => &FLOW_LABELS,
            FlowLabelMode::Workloads => &FLOW_LABELS_ENRICHED,
            FlowLabelMode::Pods => &FLOW_LABELS_PODS,
        }
    }
}

/// The `flows` analysis.
#[derive(Debug)]
pub struct Flows {
    pub protocols: ProtocolCounters,
    max_flows: usize,
    idle_ticks: u32,
    /// Evictions of tables already dropped (revoked partitions), and their flows as `revoked`.
    retired: [u64; EvictReason::ALL.len()],
    /// For `Collector::desc` only (the rendered labels follow the snapshot).
    label_mode: FlowLabelMode,
}

impl Flows {
    /// At most `max_flows` flows in all (clamped to 1..=[`table::MAX_FLOWS_LIMIT`]), idle out
    /// after `idle_ticks` ticks (0: never).
    pub fn new(max_flows: usize, idle_ticks: u32) -> Self {
        Flows {
            protocols: ProtocolCounters::default(),
            max_flows: max_flows.clamp(1, table::MAX_FLOWS_LIMIT),
            idle_ticks,
            retired: [0; EvictReason::ALL.len()],
            label_mode: FlowLabelMode::Plain,
        }
    }

    /// With the per-flow labels of enrichment (what `Collector::desc` announces).
    pub fn with_label_mode(mut self, mode: FlowLabelMode) -> Self {
        self.label_mode = mode;
        self
    }

    /// The `--max-flows` share of one of `shards` tables.
    fn share(&self, shards: usize) -> usize {
        (self.max_flows / shards.max(1)).max(1)
    }

    /// Flows evicted for `reason` by `shards` and the tables already dropped.
    pub fn evicted(&self, shards: &[FlowTable], reason: EvictReason) -> u64 {
        self.retired[reason as usize] + shards.iter().map(|t| t.evicted(reason)).sum::<u64>()
    }
}

impl Analysis for Flows {
    const NAME: &'static str = "flows";
    type Shard = FlowTable;
    type Snapshot = FlowsSnapshot;

    fn shard(&mut self, _partition: i32) -> FlowTable {
        FlowTable::new(self.max_flows, self.idle_ticks)
    }

    #[inline]
    fn packet(&mut self, table: &mut FlowTable, pkt: &Packet<'_>) -> Verdict {
        self.protocols.add(&pkt.key, pkt.meta.wire_len);
        if matches!(pkt.key.kind(), KeyKind::Ipv4 | KeyKind::Ipv6) {
            let initiator_is_b = table.update(&pkt.key, &pkt.meta, pkt.now);
            pkt.initiator_is_b.set(Some(initiator_is_b));
        }
        Verdict::Continue
    }

    fn shards_changed(&mut self, tables: &mut [FlowTable], now: u32) {
        let share = self.share(tables.len());
        for t in tables {
            t.set_max_flows(share, now);
        }
    }

    fn tick(&mut self, tables: &mut [FlowTable], now: u32) {
        for t in tables {
            t.evict_idle(now);
        }
    }

    fn revoked(&mut self, _partition: i32, table: FlowTable) -> usize {
        for r in EvictReason::ALL {
            self.retired[r as usize] += table.evicted(r);
        }
        self.retired[EvictReason::Revoked as usize] += table.len() as u64;
        table.len()
    }

    fn snapshot(&self, tables: &[FlowTable], _earlier: &Snapshots, into: &mut FlowsSnapshot) {
        let mut flows = Vec::with_capacity(tables.iter().map(FlowTable::len).sum());
        for t in tables {
            flows.extend_from_slice(t.entries());
        }
        into.flows = flows;
        into.protocols = self.protocols.seen().collect();
        into.evicted = EvictReason::ALL.map(|r| (r.as_str(), self.evicted(tables, r)));
    }

    fn families(snap: &FlowsSnapshot, all: &Snapshots, out: &mut Families) {
        let enrichment = all.get::<EnrichmentSnapshot>();
        if out.direct {
            snap.write_flow_families(enrichment, &mut out.text);
        } else {
            out.push(FLOW_PACKETS_DEF.family(snap.flow_family(enrichment, |e| e.packets)));
            out.push(FLOW_BYTES_DEF.family(snap.flow_family(enrichment, |e| e.bytes)));
        }
        let proto = |def: &FamilyDef, f: fn(&Totals) -> u64| {
            def.family(
                snap.protocols
                    .iter()
                    .map(|(name, t)| def.sample(vec![pair("protocol", name)], f(t) as f64))
                    .collect(),
            )
        };
        out.push(proto(&PROTOCOL_PACKETS_DEF, |t| t.packets));
        out.push(proto(&PROTOCOL_BYTES_DEF, |t| t.bytes));
        out.push(FLOWS_ACTIVE_DEF.single(snap.flows.len() as f64));
        out.push(FLOWS_EVICTED_DEF.by(&snap.evicted));
    }

    fn defs(&self) -> Vec<FamilyDef> {
        let labels = self.label_mode.labels();
        vec![
            FLOW_PACKETS_DEF.with_labels(labels),
            FLOW_BYTES_DEF.with_labels(labels),
            PROTOCOL_PACKETS_DEF,
            PROTOCOL_BYTES_DEF,
            FLOWS_ACTIVE_DEF,
            FLOWS_EVICTED_DEF,
        ]
    }
}

impl crate::analysis::Host<Flows> {
    /// Flows tracked over all partitions.
    pub fn flows_len(&self) -> usize {
        self.shards.iter().map(FlowTable::len).sum()
    }

    /// Heap bytes of all partitions' tables.
    pub fn heap_bytes(&self) -> usize {
        self.shards.iter().map(FlowTable::heap_bytes).sum()
    }

    /// Flows evicted for `reason` so far.
    pub fn evicted(&self, reason: EvictReason) -> u64 {
        self.analysis.evicted(&self.shards, reason)
    }
}

/// What `/metrics` shows of `flows`, copied out under the lock.
#[derive(Debug, Clone, Default)]
pub struct FlowsSnapshot {
    /// Every tracked flow, shard after shard.
    pub flows: Vec<FlowEntry>,
    pub protocols: Vec<(&'static str, Totals)>,
    pub evicted: [(&'static str, u64); EvictReason::ALL.len()],
}

impl FlowsSnapshot {
    /// Flows dropped with revoked partitions so far.
    pub fn evicted_revoked(&self) -> u64 {
        self.evicted[EvictReason::Revoked as usize].1
    }

    fn flow_family(
        &self,
        enrichment: Option<&EnrichmentSnapshot>,
        value: impl Fn(&FlowEntry) -> u64,
    ) -> Vec<Metric> {
        let mode = enrichment.map(|e| e.flow_labels).unwrap_or_default();
        let width = mode.labels().len();
        self.flows
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut labels = Vec::with_capacity(width);
                labels.extend(
                    FLOW_LABELS
                        .iter()
                        .zip(flow_label_values(e))
                        .map(|(n, v)| pair_owned(n, v)),
                );
                if let Some(en) = enrichment {
                    en.flow_identity(i, &mut labels);
                }
                FLOW_PACKETS_DEF.sample(labels, value(e) as f64)
            })
            .collect()
    }

    /// Both per-flow families in the text format, byte for byte what the encoder writes for
    /// [`flow_family`](Self::flow_family), straight from the snapshot: no `LabelPair` strings
    /// per flow (9 to 11 allocations per sample, 2 samples per flow), which was most of the
    /// render time at 100k flows.
    fn write_flow_families(&self, enrichment: Option<&EnrichmentSnapshot>, out: &mut String) {
        if self.flows.is_empty() {
            return;
        }
        // Bytes per flow (both families) with room to spare: regrowing copies tens of MB.
        let per_flow = if enrichment.is_some() {
            2 * 300
        } else {
            2 * 140
        };
        out.reserve(self.flows.len() * per_flow);
        type Value = fn(&FlowEntry) -> u64;
        let defs: [(&FamilyDef, Value); 2] = [
            (&FLOW_PACKETS_DEF, |e| e.packets),
            (&FLOW_BYTES_DEF, |e| e.bytes),
        ];
        for (def, value) in defs {
            write_header(def, out);
            for (i, e) in self.flows.iter().enumerate() {
                let (src, dst) = e.src_dst();
                let kind = e.key.kind();
                out.push_str(def.name);
                out.push_str("{protocol=\"");
                escape_into(e.key.protocol_name(), true, out);
                out.push_str("\",src_addr=\"");
                write_addr(kind, src, out);
                out.push_str("\",src_port=\"");
                write_uint(u64::from(src.port), out);
                out.push_str("\",dst_addr=\"");
                write_addr(kind, dst, out);
                out.push_str("\",dst_port=\"");
                write_uint(u64::from(dst.port), out);
                out.push('"');
                if let Some(en) = enrichment {
                    en.write_flow_identity(i, out);
                }
                out.push_str("} ");
                write_value(value(e) as f64, out);
                out.push('\n');
            }
        }
    }
}

/// The address as `Ipv4Addr`/`Ipv6Addr` display it; IPv4 by hand (most flows, and
/// `fmt::Write` per octet was a visible share of the render).
pub fn write_addr(kind: KeyKind, e: &Endpoint, out: &mut String) {
    match kind {
        KeyKind::Ipv6 => {
            use std::fmt::Write as _;
            let _ = write!(out, "{}", std::net::Ipv6Addr::from(e.addr));
        }
        _ => {
            for (i, &octet) in e.addr[..4].iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                write_uint(u64::from(octet), out);
            }
        }
    }
}

/// The address of an endpoint as text (IP keys only; flows are never non-IP).
pub fn addr_string(kind: KeyKind, e: &Endpoint) -> String {
    let mut s = String::with_capacity(16);
    write_addr(kind, e, &mut s);
    s
}

fn flow_label_values(e: &FlowEntry) -> [String; 5] {
    let (src, dst) = e.src_dst();
    let kind = e.key.kind();
    [
        e.key.protocol_name().to_string(),
        addr_string(kind, src),
        src.port.to_string(),
        addr_string(kind, dst),
        dst.port.to_string(),
    ]
}
