//! `flows`: packets and bytes per IP flow (one bounded [`FlowTable`] per partition) and per
//! protocol (one [`ProtocolCounters`] for the processor), the flow and protocol APIs.
//!
//! `--max-flows` bounds the sum of the partitions' tables: each gets an equal share, re-split
//! when the assignment changes (records are keyed by flow hash, so partitions hold similar
//! numbers of flows), over every lane's tables (`--threads`: the lanes share the count). Idle and capacity evictions are counted per table; a revoked partition's
//! flows are counted as `revoked` and its table's evictions kept in the totals.
//!
//! The flow's initiator, which the table knows, is noted on the packet for later analyses
//! (`workloads`).

pub mod api;
pub mod table;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use netstream_runtime::metrics::{
    FamilyDef, encode_text, pair, pair_owned, write_header, write_value,
};
use netstream_wire::{Endpoint, KeyKind};
use prometheus::proto::{Metric, MetricFamily};

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
    /// Tables over every lane (one counter shared by each lane's `flows`): `max_flows` is the
    /// processor's, split over all of them whichever lane holds them.
    all_tables: Arc<AtomicUsize>,
    /// This lane's share of `all_tables`, and the total the tables were last split for.
    own_tables: usize,
    split_for: usize,
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
            all_tables: Arc::new(AtomicUsize::new(0)),
            own_tables: 0,
            split_for: 0,
        }
    }

    /// Shares `max_flows` with the `flows` of other lanes that hold the same counter.
    pub fn with_shared_tables(mut self, all_tables: Arc<AtomicUsize>) -> Self {
        self.all_tables = all_tables;
        self
    }

    fn split(&mut self, tables: &mut [FlowTable], now: u32) {
        let total = self.all_tables.load(Ordering::Relaxed).max(tables.len());
        self.split_for = total;
        let share = (self.max_flows / total.max(1)).max(1);
        for t in tables {
            t.set_max_flows(share, now);
        }
    }

    /// With the per-flow labels of enrichment (what `Collector::desc` announces).
    pub fn with_label_mode(mut self, mode: FlowLabelMode) -> Self {
        self.label_mode = mode;
        self
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
        if tables.len() >= self.own_tables {
            self.all_tables
                .fetch_add(tables.len() - self.own_tables, Ordering::Relaxed);
        } else {
            self.all_tables
                .fetch_sub(self.own_tables - tables.len(), Ordering::Relaxed);
        }
        self.own_tables = tables.len();
        self.split(tables, now);
    }

    fn tick(&mut self, tables: &mut [FlowTable], now: u32) {
        // Another lane gained or lost a table: this lane's share changed too.
        if self.all_tables.load(Ordering::Relaxed) != self.split_for {
            self.split(tables, now);
        }
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

    /// Accumulates: with several lanes each adds its flows and totals.
    fn snapshot(&self, tables: &[FlowTable], _earlier: &Snapshots, into: &mut FlowsSnapshot) {
        into.flows.reserve(tables.iter().map(FlowTable::len).sum());
        for t in tables {
            into.flows.extend_from_slice(t.entries());
        }
        for (protocol, t) in self.protocols.seen() {
            match into.protocols.iter_mut().find(|(p, _)| *p == protocol) {
                Some((_, sum)) => {
                    sum.packets += t.packets;
                    sum.bytes += t.bytes;
                }
                None => into.protocols.push((protocol, t)),
            }
        }
        for (slot, r) in into.evicted.iter_mut().zip(EvictReason::ALL) {
            *slot = (r.as_str(), slot.1 + self.evicted(tables, r));
        }
    }

    fn families(snap: &FlowsSnapshot, all: &Snapshots, out: &mut Families) {
        let enrichment = all.get::<EnrichmentSnapshot>();
        if writes_text(out) {
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
        emit(out, proto(&PROTOCOL_PACKETS_DEF, |t| t.packets));
        emit(out, proto(&PROTOCOL_BYTES_DEF, |t| t.bytes));
        emit(out, FLOWS_ACTIVE_DEF.single(snap.flows.len() as f64));
        emit(out, FLOWS_EVICTED_DEF.by(&snap.evicted));
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
    ///
    /// A flow's label block (`{...}`, the same in both families) is formatted once, for
    /// `netstream_flow_packets_total`, and copied for `netstream_flow_bytes_total`; identity
    /// labels are one copy per flow end of text escaped once per workload (`FlowIdentity` of
    /// `workloads`), not a hash lookup and an escape per label. `/metrics` at 100k flows
    /// (`benches/enrichment.rs`, 2-core VM): with workload labels 120 -> 50-58 ms
    /// (`render/100k_flows_on`), without 30 -> 11-15 ms (`render/100k_flows_off`); about half
    /// of what is left is the kernel faulting in the fresh output buffer (52 MB, 25 MB).
    fn write_flow_families(&self, enrichment: Option<&EnrichmentSnapshot>, out: &mut String) {
        if self.flows.is_empty() {
            return;
        }
        let identity = enrichment.map(EnrichmentSnapshot::flow_identity_text);
        // Bytes per flow (both families) with room to spare: regrowing copies tens of MB.
        let per_flow = if enrichment.is_some() {
            2 * 300
        } else {
            2 * 140
        };
        out.reserve(self.flows.len() * per_flow);
        // Where each flow's label block is in the first family, for the second.
        let mut blocks: Vec<(usize, usize)> = Vec::with_capacity(self.flows.len());
        write_header(&FLOW_PACKETS_DEF, out);
        for (i, e) in self.flows.iter().enumerate() {
            out.push_str(FLOW_PACKETS);
            let start = out.len();
            let (src, dst) = e.src_dst();
            let kind = e.key.kind();
            out.push_str("{protocol=\"");
            // A fixed lower-case name: nothing to escape (`protocol_names_need_no_escaping`).
            out.push_str(e.key.protocol_name());
            out.push_str("\",src_addr=\"");
            write_addr(kind, src, out);
            out.push_str("\",src_port=\"");
            push_uint(u64::from(src.port), out);
            out.push_str("\",dst_addr=\"");
            write_addr(kind, dst, out);
            out.push_str("\",dst_port=\"");
            push_uint(u64::from(dst.port), out);
            out.push('"');
            if let Some(id) = &identity {
                id.write(i, out);
            }
            out.push('}');
            blocks.push((start, out.len()));
            out.push(' ');
            push_count(e.packets, out);
            out.push('\n');
        }
        write_header(&FLOW_BYTES_DEF, out);
        for (e, &(start, end)) in self.flows.iter().zip(&blocks) {
            out.push_str(FLOW_BYTES);
            out.extend_from_within(start..end);
            out.push(' ');
            push_count(e.bytes, out);
            out.push('\n');
        }
    }
}

/// Whether an analysis writes its families to `out.text`: when the caller wants text and
/// everything before went to text too (the text comes first in the output, so the order of
/// the families stays what the list would have had).
pub(crate) fn writes_text(out: &Families) -> bool {
    out.direct && out.list.is_empty()
}

/// Adds `family`: encoded into `out.text` while [`writes_text`], else to the list. (A family
/// without samples is left out either way.)
pub(crate) fn emit(out: &mut Families, family: MetricFamily) {
    if writes_text(out) {
        encode_text(std::slice::from_ref(&family), &mut out.text);
    } else {
        out.push(family);
    }
}

/// Decimal digits of `v`, the bytes of `netstream_runtime::metrics::write_uint` (which checks
/// its digits as UTF-8 per number: a tenth of the per-flow render).
#[inline]
pub(crate) fn push_uint(mut v: u64, out: &mut String) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for &d in &buf[i..] {
        out.push(char::from(d));
    }
}

/// A counter sample's value: what `write_value(v as f64)` writes (digits below 9e15, where
/// `v as f64` is exact).
#[inline]
pub(crate) fn push_count(v: u64, out: &mut String) {
    if v < 9_000_000_000_000_000 {
        push_uint(v, out);
    } else {
        write_value(v as f64, out);
    }
}

/// One IPv4 octet in decimal.
#[inline]
fn push_octet(v: u8, out: &mut String) {
    if v >= 100 {
        out.push(char::from(b'0' + v / 100));
    }
    if v >= 10 {
        out.push(char::from(b'0' + v / 10 % 10));
    }
    out.push(char::from(b'0' + v % 10));
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
            let [a, b, c, d, ..] = e.addr;
            push_octet(a, out);
            out.push('.');
            push_octet(b, out);
            out.push('.');
            push_octet(c, out);
            out.push('.');
            push_octet(d, out);
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

#[cfg(test)]
mod tests {
    use super::*;
    use netstream_runtime::metrics::{escape_into, write_uint};

    #[test]
    fn hand_written_numbers_and_addresses_are_what_the_encoder_writes() {
        let mut values = vec![0, 1, 9, 10, 99, 100, 65_535, 1_000_000_007, u64::MAX];
        values.extend([9_000_000_000_000_000 - 1, 9_000_000_000_000_000, 1 << 53]);
        for v in values {
            let (mut ours, mut theirs) = (String::new(), String::new());
            push_count(v, &mut ours);
            write_value(v as f64, &mut theirs);
            assert_eq!(ours, theirs, "{v}");
            if v < 9_000_000_000_000_000 {
                let (mut a, mut b) = (String::new(), String::new());
                push_uint(v, &mut a);
                write_uint(v, &mut b);
                assert_eq!(a, b);
            }
        }
        for addr in [
            [0, 0, 0, 0],
            [255, 255, 255, 255],
            [10, 0, 100, 9],
            [1, 20, 3, 199],
        ] {
            let e = Endpoint::v4(addr, 0);
            assert_eq!(
                addr_string(KeyKind::Ipv4, &e),
                std::net::Ipv4Addr::from(addr).to_string()
            );
        }
    }

    #[test]
    fn protocol_names_need_no_escaping() {
        for p in 0..=255u8 {
            let name = netstream_wire::protocol::ip_proto_name(p);
            let mut escaped = String::new();
            escape_into(name, true, &mut escaped);
            assert_eq!(escaped, name);
        }
    }
}
