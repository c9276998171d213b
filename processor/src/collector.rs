//! `/metrics`: a custom `prometheus::core::Collector` that renders the flow table and counters
//! at scrape time. The hot path only bumps plain integers in the table; label strings are
//! built here, once per scrape, from a snapshot copied out under the lock (a memcpy of the
//! table: the consumer is held up for a few milliseconds at most, not for the rendering).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use netstream_wire::{Endpoint, FlowKey, KeyKind};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

use crate::enrichment::{Enrichment, OwnedLabels};
use crate::record::InvalidReason;
use crate::state::Shared;
use crate::table::{EvictReason, FlowEntry, Totals};
use crate::workload::{RemoveReason, SeriesCounts, SeriesKey};
use netstream_enrich::{MemberId, Resolved, Resource, WorkloadId};

pub const FLOW_PACKETS: &str = "netstream_flow_packets_total";
pub const FLOW_BYTES: &str = "netstream_flow_bytes_total";
pub const PROTOCOL_PACKETS: &str = "netstream_protocol_packets_total";
pub const PROTOCOL_BYTES: &str = "netstream_protocol_bytes_total";
pub const FLOWS_ACTIVE: &str = "netstream_flows_active";
pub const FLOWS_EVICTED: &str = "netstream_flows_evicted_total";
pub const RECORDS_CONSUMED: &str = "netstream_records_consumed_total";
pub const RECORDS_INVALID: &str = "netstream_records_invalid_total";
pub const PARTITIONS_ASSIGNED: &str = "netstream_processor_partitions_assigned";
pub const COMMIT_ERRORS: &str = "netstream_processor_commit_errors_total";
pub const BRANCH_RECORDS: &str = "netstream_processor_branch_records_total";
pub const WORKLOAD_PACKETS: &str = "netstream_workload_packets_total";
pub const WORKLOAD_BYTES: &str = "netstream_workload_bytes_total";
pub const WORKLOAD_SERIES: &str = "netstream_workload_series";
pub const WORKLOAD_SERIES_EXPIRED: &str = "netstream_workload_series_expired_total";
pub const WORKLOAD_SERIES_EVICTED: &str = "netstream_workload_series_evicted_total";
pub const ENRICHMENT_SYNCED: &str = "netstream_enrichment_synced";
pub const ENRICHMENT_MEMBERS: &str = "netstream_enrichment_members";
pub const ENRICHMENT_WORKLOADS: &str = "netstream_enrichment_workloads";
pub const ENRICHMENT_ADDRESSES: &str = "netstream_enrichment_addresses";
pub const ENRICHMENT_UPDATES: &str = "netstream_enrichment_updates_total";
pub const ENRICHMENT_WATCH_EVENTS: &str = "netstream_enrichment_watch_events_total";
pub const ENRICHMENT_WATCH_ERRORS: &str = "netstream_enrichment_watch_errors_total";
pub const ENRICHMENT_WATCH_RESTARTS: &str = "netstream_enrichment_watch_restarts_total";

const FLOW_LABELS: [&str; 5] = ["protocol", "src_addr", "src_port", "dst_addr", "dst_port"];
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
const WORKLOAD_LABELS: [&str; 8] = [
    "src_namespace",
    "src_workload",
    "src_kind",
    "dst_namespace",
    "dst_workload",
    "dst_kind",
    "protocol",
    "dst_port",
];

/// What the enrichment shows besides the base families: which per-flow labels, and whether
/// its own families exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FlowLabelMode {
    #[default]
    Plain,
    Workloads,
    Pods,
}

impl FlowLabelMode {
    fn labels(self) -> &'static [&'static str] {
        match self {
            FlowLabelMode::Plain => &FLOW_LABELS,
            FlowLabelMode::Workloads => &FLOW_LABELS_ENRICHED,
            FlowLabelMode::Pods => &FLOW_LABELS_PODS,
        }
    }

    fn of(e: Option<&Enrichment>) -> FlowLabelMode {
        match e {
            None => FlowLabelMode::Plain,
            Some(e) if e.flow_pod_labels => FlowLabelMode::Pods,
            Some(_) => FlowLabelMode::Workloads,
        }
    }
}

struct FamilyDef {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    labels: &'static [&'static str],
}

const FAMILIES: [FamilyDef; 11] = [
    FamilyDef {
        name: FLOW_PACKETS,
        help: "Packets per tracked IP flow; src is the flow's initiator (TCP SYN sender, else the sender of the first packet this processor saw).",
        kind: MetricType::COUNTER,
        labels: &FLOW_LABELS,
    },
    FamilyDef {
        name: FLOW_BYTES,
        help: "Bytes (wire length) per tracked IP flow; src is the flow's initiator.",
        kind: MetricType::COUNTER,
        labels: &FLOW_LABELS,
    },
    FamilyDef {
        name: PROTOCOL_PACKETS,
        help: "Packets per protocol (IP protocol name or ip-N, arp, non-ip, unparsed).",
        kind: MetricType::COUNTER,
        labels: &["protocol"],
    },
    FamilyDef {
        name: PROTOCOL_BYTES,
        help: "Bytes (wire length) per protocol.",
        kind: MetricType::COUNTER,
        labels: &["protocol"],
    },
    FamilyDef {
        name: FLOWS_ACTIVE,
        help: "IP flows currently tracked (bounded by --max-flows).",
        kind: MetricType::GAUGE,
        labels: &[],
    },
    FamilyDef {
        name: FLOWS_EVICTED,
        help: "Flows removed from the table: idle (not updated for --flow-idle-timeout) or capacity (table full at --max-flows).",
        kind: MetricType::COUNTER,
        labels: &["reason"],
    },
    FamilyDef {
        name: RECORDS_CONSUMED,
        help: "Records consumed from the topic, valid or not.",
        kind: MetricType::COUNTER,
        labels: &[],
    },
    FamilyDef {
        name: RECORDS_INVALID,
        help: "Records skipped because their key or value could not be decoded, by reason.",
        kind: MetricType::COUNTER,
        labels: &["reason"],
    },
    FamilyDef {
        name: PARTITIONS_ASSIGNED,
        help: "Topic partitions currently assigned to this processor by the consumer group.",
        kind: MetricType::GAUGE,
        labels: &[],
    },
    FamilyDef {
        name: COMMIT_ERRORS,
        help: "Offset commits that failed (the records are consumed again after a restart or rebalance).",
        kind: MetricType::COUNTER,
        labels: &[],
    },
    FamilyDef {
        name: BRANCH_RECORDS,
        help: "Records produced to the per-protocol branch topics, by delivery result.",
        kind: MetricType::COUNTER,
        labels: &["result"],
    },
];

/// The enrichment's families, after the base ones (only when enrichment is on).
const ENRICHMENT_FAMILIES: [FamilyDef; 13] = [
    FamilyDef {
        name: WORKLOAD_PACKETS,
        help: "Packets between workloads (src = the flow's initiator), by IP protocol and destination port. Kinds: deployment, statefulset, daemonset, replicaset, cronjob, job, pod (no controller), service, node, subnet (--subnet-label), external.",
        kind: MetricType::COUNTER,
        labels: &WORKLOAD_LABELS,
    },
    FamilyDef {
        name: WORKLOAD_BYTES,
        help: "Bytes (wire length) between workloads (src = the flow's initiator), by IP protocol and destination port.",
        kind: MetricType::COUNTER,
        labels: &WORKLOAD_LABELS,
    },
    FamilyDef {
        name: WORKLOAD_SERIES,
        help: "Workload series currently kept (bounded by --max-workload-series).",
        kind: MetricType::GAUGE,
        labels: &[],
    },
    FamilyDef {
        name: WORKLOAD_SERIES_EXPIRED,
        help: "Workload series removed because one of their workloads no longer exists and they were not updated for --workload-expiry.",
        kind: MetricType::COUNTER,
        labels: &[],
    },
    FamilyDef {
        name: WORKLOAD_SERIES_EVICTED,
        help: "Workload series removed to make room, by reason (capacity: --max-workload-series reached; the least recently updated go first).",
        kind: MetricType::COUNTER,
        labels: &["reason"],
    },
    FamilyDef {
        name: ENRICHMENT_SYNCED,
        help: "1 once the identity source has listed everything (the Kubernetes API or the identity file), else 0.",
        kind: MetricType::GAUGE,
        labels: &[],
    },
    FamilyDef {
        name: ENRICHMENT_MEMBERS,
        help: "Live pods, services and nodes in the identity index, by kind.",
        kind: MetricType::GAUGE,
        labels: &["kind"],
    },
    FamilyDef {
        name: ENRICHMENT_WORKLOADS,
        help: "Workloads (and services, nodes, subnets, external) the identity index names, including ones kept for history or pinned by series.",
        kind: MetricType::GAUGE,
        labels: &[],
    },
    FamilyDef {
        name: ENRICHMENT_ADDRESSES,
        help: "Addresses in the identity index (each with a short history of owners, for IP reuse).",
        kind: MetricType::GAUGE,
        labels: &[],
    },
    FamilyDef {
        name: ENRICHMENT_UPDATES,
        help: "Updates (upserts, removals, resyncs) applied to the identity index.",
        kind: MetricType::COUNTER,
        labels: &[],
    },
    FamilyDef {
        name: ENRICHMENT_WATCH_EVENTS,
        help: "Kubernetes watch events received by the identity source, by resource.",
        kind: MetricType::COUNTER,
        labels: &["resource"],
    },
    FamilyDef {
        name: ENRICHMENT_WATCH_ERRORS,
        help: "Kubernetes watch errors of the identity source (each retried with backoff), by resource.",
        kind: MetricType::COUNTER,
        labels: &["resource"],
    },
    FamilyDef {
        name: ENRICHMENT_WATCH_RESTARTS,
        help: "Kubernetes watches (re)started with a fresh list, by resource.",
        kind: MetricType::COUNTER,
        labels: &["resource"],
    },
];

/// The enrichment's part of a snapshot: ids resolved under the lock, names copied once per
/// distinct workload (and pod), rendered after the lock is released.
#[derive(Debug, Clone, Default)]
pub struct EnrichmentSnapshot {
    pub flow_labels: FlowLabelMode,
    /// `(src, dst)` of each flow of [`Snapshot::flows`], resolved at the flow's last capture time.
    pub flow_ids: Vec<[Resolved; 2]>,
    pub workloads: HashMap<WorkloadId, OwnedLabels>,
    pub pods: HashMap<MemberId, Box<str>>,
    pub series: Vec<(SeriesKey, SeriesCounts)>,
    pub expired: u64,
    pub evicted_capacity: u64,
    pub synced: bool,
    /// Live members `[pod, service, node]`.
    pub members: [usize; 3],
    pub index_workloads: usize,
    pub addresses: usize,
    pub updates: u64,
    /// `(resource, events, errors, restarts)`.
    pub watch: Vec<(&'static str, u64, u64, u64)>,
}

impl EnrichmentSnapshot {
    /// Copies what the families need; called under the lock.
    pub fn take(e: &Enrichment, flows: &[FlowEntry]) -> EnrichmentSnapshot {
        let flow_labels = FlowLabelMode::of(Some(e));
        let mut workloads: HashMap<WorkloadId, OwnedLabels> = HashMap::new();
        let mut pods: HashMap<MemberId, Box<str>> = HashMap::new();
        let name = |r: &Resolved, workloads: &mut HashMap<WorkloadId, OwnedLabels>| {
            workloads
                .entry(r.workload)
                .or_insert_with(|| OwnedLabels::of(e.index.workload(r.workload)));
        };
        let flow_ids: Vec<[Resolved; 2]> = flows
            .iter()
            .map(|f| e.resolve_key(&f.key, f.initiator_is_b(), f.last_ns))
            .collect();
        for ids in &flow_ids {
            for r in ids {
                name(r, &mut workloads);
                if flow_labels == FlowLabelMode::Pods {
                    pods.entry(r.member)
                        .or_insert_with(|| e.pod_name(r.member).into());
                }
            }
        }
        let series: Vec<(SeriesKey, SeriesCounts)> =
            e.series.iter().map(|(k, c)| (*k, *c)).collect();
        for (k, _) in &series {
            for id in [k.src, k.dst] {
                workloads
                    .entry(id)
                    .or_insert_with(|| OwnedLabels::of(e.index.workload(id)));
            }
        }
        let stats = e.index.stats();
        EnrichmentSnapshot {
            flow_labels,
            flow_ids,
            workloads,
            pods,
            series,
            expired: e.removed(RemoveReason::Expired),
            evicted_capacity: e.removed(RemoveReason::Capacity),
            synced: e.source.synced(),
            members: e.live_members(),
            index_workloads: stats.workloads,
            addresses: stats.addresses,
            updates: stats.updates,
            watch: Resource::ALL
                .iter()
                .map(|r| {
                    (
                        r.as_str(),
                        e.source.events(*r),
                        e.source.errors(*r),
                        e.source.restarts(*r),
                    )
                })
                .collect(),
        }
    }

    fn names(&self, id: WorkloadId) -> (&str, &str, &'static str) {
        match self.workloads.get(&id) {
            Some(l) => (&l.namespace, &l.workload, l.kind),
            None => crate::enrichment::EXTERNAL_LABELS,
        }
    }

    fn pod(&self, id: MemberId) -> &str {
        self.pods.get(&id).map(|p| &**p).unwrap_or("")
    }

    /// The identity label values of flow `i`, in [`FLOW_LABELS_PODS`] order after the five
    /// base labels.
    fn flow_identity(&self, i: usize, out: &mut Vec<LabelPair>) {
        let Some([src, dst]) = self.flow_ids.get(i) else {
            return;
        };
        let (sns, sw, _) = self.names(src.workload);
        let (dns, dw, _) = self.names(dst.workload);
        out.push(pair("src_namespace", sns));
        out.push(pair("src_workload", sw));
        out.push(pair("dst_namespace", dns));
        out.push(pair("dst_workload", dw));
        if self.flow_labels == FlowLabelMode::Pods {
            out.push(pair("src_pod", self.pod(src.member)));
            out.push(pair("dst_pod", self.pod(dst.member)));
        }
    }

    fn series_family(&self, value: impl Fn(&SeriesCounts) -> u64) -> Vec<Metric> {
        self.series
            .iter()
            .map(|(k, c)| {
                let (sns, sw, sk) = self.names(k.src);
                let (dns, dw, dk) = self.names(k.dst);
                let labels = vec![
                    pair("src_namespace", sns),
                    pair("src_workload", sw),
                    pair("src_kind", sk),
                    pair("dst_namespace", dns),
                    pair("dst_workload", dw),
                    pair("dst_kind", dk),
                    pair(
                        "protocol",
                        netstream_wire::protocol::ip_proto_name(k.protocol),
                    ),
                    pair_owned("dst_port", k.dst_port.to_string()),
                ];
                sample(labels, value(c) as f64, false)
            })
            .collect()
    }

    fn families(&self) -> [Vec<Metric>; 13] {
        let by = |label: &str, values: &[(&'static str, u64)]| {
            values
                .iter()
                .map(|(v, n)| sample(vec![pair(label, v)], *n as f64, false))
                .collect::<Vec<_>>()
        };
        let watch = |f: fn(&(&'static str, u64, u64, u64)) -> u64| {
            let v: Vec<(&'static str, u64)> = self.watch.iter().map(|w| (w.0, f(w))).collect();
            by("resource", &v)
        };
        let gauge = |v: f64| vec![sample(Vec::new(), v, true)];
        [
            self.series_family(|c| c.packets),
            self.series_family(|c| c.bytes),
            gauge(self.series.len() as f64),
            vec![sample(Vec::new(), self.expired as f64, false)],
            by("reason", &[("capacity", self.evicted_capacity)]),
            gauge(if self.synced { 1.0 } else { 0.0 }),
            ["pod", "service", "node"]
                .iter()
                .zip(self.members)
                .map(|(k, n)| sample(vec![pair("kind", k)], n as f64, true))
                .collect(),
            gauge(self.index_workloads as f64),
            gauge(self.addresses as f64),
            vec![sample(Vec::new(), self.updates as f64, false)],
            watch(|w| w.1),
            watch(|w| w.2),
            watch(|w| w.3),
        ]
    }
}

/// Everything `/metrics` shows, copied out of the shared state.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub flows: Vec<FlowEntry>,
    pub protocols: Vec<(&'static str, Totals)>,
    pub consumed: u64,
    pub invalid: Vec<(&'static str, u64)>,
    pub evicted: Vec<(&'static str, u64)>,
    pub partitions_assigned: i64,
    pub commit_errors: u64,
    /// `(delivered, failed)` when branching is on.
    pub branch: Option<(u64, u64)>,
    /// When enrichment is on.
    pub enrichment: Option<EnrichmentSnapshot>,
}

impl Snapshot {
    /// Copies the state out; the lock is held only for the copy.
    pub fn take(shared: &Shared) -> Snapshot {
        let mut snap = {
            let agg = shared.lock();
            let flows = agg.flows.entries().to_vec();
            let enrichment = agg
                .enrichment
                .as_ref()
                .map(|e| EnrichmentSnapshot::take(e, &flows));
            Snapshot {
                enrichment,
                flows,
                protocols: agg.protocols.seen().collect(),
                consumed: agg.consumed,
                invalid: InvalidReason::ALL
                    .iter()
                    .map(|r| (r.as_str(), agg.invalid(*r)))
                    .collect(),
                evicted: EvictReason::ALL
                    .iter()
                    .map(|r| (r.as_str(), agg.evicted(*r)))
                    .collect(),
                ..Snapshot::default()
            }
        };
        let s = &shared.stats;
        snap.partitions_assigned = s.partitions_assigned.load(Ordering::Relaxed);
        snap.commit_errors = s.commit_errors.load(Ordering::Relaxed);
        if s.branch_enabled.load(Ordering::Relaxed) {
            snap.branch = Some((
                s.branch_delivered.load(Ordering::Relaxed),
                s.branch_failed.load(Ordering::Relaxed),
            ));
        }
        snap
    }

    /// The metric families, in the order of [`FAMILIES`]. Families without samples are left
    /// out (the text format forbids empty ones).
    pub fn families(&self) -> Vec<MetricFamily> {
        self.families_with(true)
    }

    /// [`families`](Self::families), with or without the two per-flow families (which
    /// [`write_flow_families`](Self::write_flow_families) writes as text directly).
    fn families_with(&self, flows: bool) -> Vec<MetricFamily> {
        let (flow_packets, flow_bytes) = if flows {
            self.flow_samples()
        } else {
            (Vec::new(), Vec::new())
        };
        let proto = |f: fn(&Totals) -> u64| {
            self.protocols
                .iter()
                .map(|(name, t)| sample(vec![pair("protocol", name)], f(t) as f64, false))
                .collect::<Vec<_>>()
        };
        let by = |label: &str, values: &[(&'static str, u64)]| {
            values
                .iter()
                .map(|(v, n)| sample(vec![pair(label, v)], *n as f64, false))
                .collect::<Vec<_>>()
        };
        let samples: [Vec<Metric>; 11] = [
            flow_packets,
            flow_bytes,
            proto(|t| t.packets),
            proto(|t| t.bytes),
            vec![sample(Vec::new(), self.flows.len() as f64, true)],
            by("reason", &self.evicted),
            vec![sample(Vec::new(), self.consumed as f64, false)],
            by("reason", &self.invalid),
            vec![sample(Vec::new(), self.partitions_assigned as f64, true)],
            vec![sample(Vec::new(), self.commit_errors as f64, false)],
            self.branch
                .map(|(ok, failed)| by("result", &[("delivered", ok), ("failed", failed)]))
                .unwrap_or_default(),
        ];
        let enrichment: Vec<(&FamilyDef, Vec<Metric>)> = match &self.enrichment {
            Some(e) => ENRICHMENT_FAMILIES.iter().zip(e.families()).collect(),
            None => Vec::new(),
        };
        let flow_labels = self.flow_label_mode();
        let flow_defs: [FamilyDef; 2] = [0, 1].map(|i| FamilyDef {
            labels: flow_labels.labels(),
            ..FAMILIES[i]
        });
        flow_defs
            .iter()
            .chain(FAMILIES[2..].iter())
            .zip(samples)
            .chain(enrichment)
            .filter(|(_, s)| !s.is_empty())
            .map(|(def, metrics)| {
                let mut mf = MetricFamily::default();
                mf.set_name(def.name.to_string());
                mf.set_help(def.help.to_string());
                mf.set_field_type(def.kind);
                mf.set_metric(metrics);
                mf
            })
            .collect()
    }
}

impl Snapshot {
    /// The per-flow samples of both flow families, in table order.
    fn flow_samples(&self) -> (Vec<Metric>, Vec<Metric>) {
        (
            self.flow_family(|e| e.packets),
            self.flow_family(|e| e.bytes),
        )
    }

    fn flow_label_mode(&self) -> FlowLabelMode {
        self.enrichment
            .as_ref()
            .map(|e| e.flow_labels)
            .unwrap_or_default()
    }

    fn flow_family(&self, value: impl Fn(&FlowEntry) -> u64) -> Vec<Metric> {
        let width = self.flow_label_mode().labels().len();
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
                if let Some(en) = &self.enrichment {
                    en.flow_identity(i, &mut labels);
                }
                sample(labels, value(e) as f64, false)
            })
            .collect()
    }
}

impl Snapshot {
    /// Both per-flow families in the text format, byte for byte what [`encode_text`] writes for
    /// [`families`](Self::families), straight from the snapshot: no `LabelPair` strings per
    /// flow (9 to 11 allocations per sample, 2 samples per flow), which was most of the
    /// render time at 100k flows.
    fn write_flow_families(&self, out: &mut String) {
        if self.flows.is_empty() {
            return;
        }
        type Value = fn(&FlowEntry) -> u64;
        let defs: [(&FamilyDef, Value); 2] =
            [(&FAMILIES[0], |e| e.packets), (&FAMILIES[1], |e| e.bytes)];
        for (def, value) in defs {
            out.push_str("# HELP ");
            out.push_str(def.name);
            out.push(' ');
            escape_into(def.help, false, out);
            out.push_str("\n# TYPE ");
            out.push_str(def.name);
            out.push_str(" counter\n");
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
                if let Some(en) = &self.enrichment {
                    en.write_flow_identity(i, out);
                }
                out.push_str("} ");
                write_value(value(e) as f64, out);
                out.push('\n');
            }
        }
    }
}

impl EnrichmentSnapshot {
    /// The identity labels of flow `i` as text, after a leading comma (see
    /// [`flow_identity`](Self::flow_identity)).
    fn write_flow_identity(&self, i: usize, out: &mut String) {
        let Some([src, dst]) = self.flow_ids.get(i) else {
            return;
        };
        let (sns, sw, _) = self.names(src.workload);
        let (dns, dw, _) = self.names(dst.workload);
        let mut label = |name: &str, value: &str| {
            out.push(',');
            out.push_str(name);
            out.push_str("=\"");
            escape_into(value, true, out);
            out.push('"');
        };
        label("src_namespace", sns);
        label("src_workload", sw);
        label("dst_namespace", dns);
        label("dst_workload", dw);
        if self.flow_labels == FlowLabelMode::Pods {
            label("src_pod", self.pod(src.member));
            label("dst_pod", self.pod(dst.member));
        }
    }
}

/// The address as `Ipv4Addr`/`Ipv6Addr` display it; IPv4 by hand (most flows, and
/// `fmt::Write` per octet was a visible share of the render).
fn write_addr(kind: KeyKind, e: &Endpoint, out: &mut String) {
    match kind {
        KeyKind::Ipv6 => {
            let _ = write!(out, "{}", Ipv6Addr::from(e.addr));
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

/// Decimal digits of `v` without `fmt` machinery.
fn write_uint(mut v: u64, out: &mut String) {
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
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or_default());
}

/// A sample value as [`encode_text`] writes it.
fn write_value(v: f64, out: &mut String) {
    if v.fract() == 0.0 && (0.0..9.0e15).contains(&v) {
        write_uint(v as u64, out);
    } else if v.fract() == 0.0 && v.abs() < 9.0e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

fn pair_owned(name: &str, value: String) -> LabelPair {
    let mut p = LabelPair::default();
    p.set_name(name.to_string());
    p.set_value(value);
    p
}

fn pair(name: &str, value: &str) -> LabelPair {
    let mut p = LabelPair::default();
    p.set_name(name.to_string());
    p.set_value(value.to_string());
    p
}

fn sample(labels: Vec<LabelPair>, value: f64, gauge: bool) -> Metric {
    let mut m = Metric::from_label(labels);
    if gauge {
        let mut g = Gauge::default();
        g.set_value(value);
        m.set_gauge(g);
    } else {
        let mut c = Counter::default();
        c.set_value(value);
        m.set_counter(c);
    }
    m
}

/// The address of an endpoint as text (IP keys only; flows are never non-IP).
pub fn addr_string(kind: KeyKind, e: &Endpoint) -> String {
    let mut s = String::with_capacity(16);
    write_addr(kind, e, &mut s);
    s
}

/// The endpoint address as an [`IpAddr`].
pub fn ip(key: &FlowKey, e: &Endpoint) -> IpAddr {
    match key.kind() {
        KeyKind::Ipv6 => IpAddr::V6(Ipv6Addr::from(e.addr)),
        _ => IpAddr::V4(Ipv4Addr::new(e.addr[0], e.addr[1], e.addr[2], e.addr[3])),
    }
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

/// Writes metric families in the Prometheus text format (0.0.4), byte for byte what
/// `prometheus::TextEncoder` writes for counters and gauges, without its per-sample
/// allocations: at 100k flows this is ~4x faster. Families are written in the given order and
/// samples unsorted (Prometheus does not need them sorted).
pub fn encode_text(families: &[MetricFamily], out: &mut String) {
    for mf in families {
        if mf.get_metric().is_empty() {
            continue;
        }
        let name = mf.name();
        if !mf.help().is_empty() {
            out.push_str("# HELP ");
            out.push_str(name);
            out.push(' ');
            escape_into(mf.help(), false, out);
            out.push('\n');
        }
        let kind = mf.get_field_type();
        out.push_str("# TYPE ");
        out.push_str(name);
        out.push_str(match kind {
            MetricType::GAUGE => " gauge\n",
            MetricType::COUNTER => " counter\n",
            MetricType::SUMMARY => " summary\n",
            MetricType::HISTOGRAM => " histogram\n",
            MetricType::UNTYPED => " untyped\n",
        });
        for m in mf.get_metric() {
            out.push_str(name);
            let mut sep = '{';
            for lp in m.get_label() {
                out.push(sep);
                out.push_str(lp.name());
                out.push_str("=\"");
                escape_into(lp.value(), true, out);
                out.push('"');
                sep = ',';
            }
            if sep == ',' {
                out.push('}');
            }
            out.push(' ');
            let v = match kind {
                MetricType::GAUGE => m.get_gauge().get_value(),
                _ => m.get_counter().get_value(),
            };
            write_value(v, out);
            out.push('\n');
        }
    }
}

fn escape_into(v: &str, quote: bool, out: &mut String) {
    if !v
        .bytes()
        .any(|b| b == b'\\' || b == b'\n' || (quote && b == b'"'))
    {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// The processor's collector: register it in a registry, or render it directly with
/// [`ProcessorCollector::render`] (what `/metrics` does).
pub struct ProcessorCollector {
    shared: Arc<Shared>,
    descs: Vec<Desc>,
}

impl ProcessorCollector {
    pub fn new(shared: Arc<Shared>) -> Result<Self, prometheus::Error> {
        let (mode, enriched) = {
            let agg = shared.lock();
            (
                FlowLabelMode::of(agg.enrichment.as_ref()),
                agg.enrichment.is_some(),
            )
        };
        let flow_defs: [FamilyDef; 2] = [0, 1].map(|i| FamilyDef {
            labels: mode.labels(),
            ..FAMILIES[i]
        });
        let extra: &[FamilyDef] = if enriched { &ENRICHMENT_FAMILIES } else { &[] };
        let descs = flow_defs
            .iter()
            .chain(FAMILIES[2..].iter())
            .chain(extra)
            .map(|f| {
                Desc::new(
                    f.name.to_string(),
                    f.help.to_string(),
                    f.labels.iter().map(|l| l.to_string()).collect(),
                    HashMap::new(),
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(ProcessorCollector { shared, descs })
    }
}

impl ProcessorCollector {
    /// `/metrics`: collects and encodes. Returns the text and the families, so the caller can
    /// drop the families (millions of small strings at 100k flows) off the request path.
    pub fn render(&self) -> (String, Vec<MetricFamily>) {
        let snap = Snapshot::take(&self.shared);
        // Bytes per flow (both families) with room to spare: regrowing copies tens of MB.
        let per_flow = if snap.enrichment.is_some() {
            2 * 300
        } else {
            2 * 140
        };
        let mut out = String::with_capacity(snap.flows.len() * per_flow + 64 * 1024);
        // The flow families come first in `families()`, so the text is the same.
        snap.write_flow_families(&mut out);
        let families = snap.families_with(false);
        encode_text(&families, &mut out);
        (out, families)
    }
}

impl Collector for ProcessorCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        Snapshot::take(&self.shared).families()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Aggregate;
    use netstream_wire::{Direction, PacketMeta, ValueEncoder};
    use prometheus::Registry;

    fn record(agg: &mut Aggregate, key: FlowKey, direction: Direction, syn: bool, len: u32) {
        let v = ValueEncoder::new("n", "i")
            .encode(
                &PacketMeta {
                    direction,
                    tcp_syn: syn,
                    link_type: 1,
                    wire_len: len,
                    ts_ns: 7,
                },
                &[],
            )
            .to_vec();
        agg.record(Some(&key.to_vec()), Some(&v), 0).unwrap();
    }

    #[test]
    fn renders_exact_text_through_a_registry() {
        let mut agg = Aggregate::new(10, 0);
        // Client 10.0.0.20:40000 → server 10.0.0.9:443 (the server is endpoint A).
        let (tcp, d) = FlowKey::new(
            KeyKind::Ipv4,
            6,
            Endpoint::v4([10, 0, 0, 20], 40000),
            Endpoint::v4([10, 0, 0, 9], 443),
        );
        record(&mut agg, tcp, d, true, 60);
        record(&mut agg, tcp, Direction::AToB, false, 1500);
        let mut v6a = [0u8; 16];
        v6a[..2].copy_from_slice(&[0x20, 0x01]);
        v6a[15] = 1;
        let mut v6b = v6a;
        v6b[15] = 2;
        let (udp6, d) = FlowKey::new(
            KeyKind::Ipv6,
            17,
            Endpoint::v6(v6a, 53),
            Endpoint::v6(v6b, 5353),
        );
        record(&mut agg, udp6, d, false, 100);
        let (arp, d) = FlowKey::new(
            KeyKind::NonIp,
            0x0806,
            Endpoint::mac([2, 0, 0, 0, 0, 1]),
            Endpoint::mac([0xff; 6]),
        );
        record(&mut agg, arp, d, false, 42);
        let _ = agg.record(None, Some(&[1]), 0);

        let shared = Arc::new(Shared::new(agg));
        shared.stats.partitions_assigned.store(3, Ordering::Relaxed);
        let registry = Registry::new();
        registry
            .register(Box::new(ProcessorCollector::new(shared).unwrap()))
            .unwrap();
        let text = netstream_runtime::http::render(&registry).unwrap();
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        let expected = [
            r#"netstream_flow_bytes_total{protocol="tcp",src_addr="10.0.0.20",src_port="40000",dst_addr="10.0.0.9",dst_port="443"} 1560"#,
            r#"netstream_flow_bytes_total{protocol="udp",src_addr="2001::1",src_port="53",dst_addr="2001::2",dst_port="5353"} 100"#,
            r#"netstream_flow_packets_total{protocol="tcp",src_addr="10.0.0.20",src_port="40000",dst_addr="10.0.0.9",dst_port="443"} 2"#,
            r#"netstream_flow_packets_total{protocol="udp",src_addr="2001::1",src_port="53",dst_addr="2001::2",dst_port="5353"} 1"#,
            r#"netstream_flows_active 2"#,
            r#"netstream_flows_evicted_total{reason="capacity"} 0"#,
            r#"netstream_flows_evicted_total{reason="idle"} 0"#,
            r#"netstream_flows_evicted_total{reason="revoked"} 0"#,
            r#"netstream_processor_commit_errors_total 0"#,
            r#"netstream_processor_partitions_assigned 3"#,
            r#"netstream_protocol_bytes_total{protocol="arp"} 42"#,
            r#"netstream_protocol_bytes_total{protocol="tcp"} 1560"#,
            r#"netstream_protocol_bytes_total{protocol="udp"} 100"#,
            r#"netstream_protocol_packets_total{protocol="arp"} 1"#,
            r#"netstream_protocol_packets_total{protocol="tcp"} 2"#,
            r#"netstream_protocol_packets_total{protocol="udp"} 1"#,
            r#"netstream_records_consumed_total 5"#,
        ];
        assert_eq!(&samples[..expected.len()], expected, "{text}");
        let invalid: Vec<&str> = samples[expected.len()..].to_vec();
        assert_eq!(invalid.len(), InvalidReason::ALL.len());
        assert!(invalid.contains(&r#"netstream_records_invalid_total{reason="missing_key"} 1"#));
        assert!(invalid.contains(&r#"netstream_records_invalid_total{reason="empty_value"} 0"#));
        assert!(text.contains("# TYPE netstream_flows_active gauge"));
        assert!(text.contains("# TYPE netstream_flow_bytes_total counter"));
        assert!(
            !text.contains(BRANCH_RECORDS),
            "branch metrics only when branching"
        );
    }

    /// `/metrics` writes the flow families as text directly: the same bytes as encoding the
    /// families, plain, with workload labels and with pod labels (an escaped value included).
    #[test]
    fn direct_flow_text_equals_the_encoded_families() {
        let keys = [
            FlowKey::new(
                KeyKind::Ipv4,
                6,
                Endpoint::v4([10, 0, 0, 1], 40000),
                Endpoint::v4([10, 96, 0, 10], 5432),
            ),
            FlowKey::new(
                KeyKind::Ipv4,
                17,
                Endpoint::v4([8, 8, 8, 8], 53),
                Endpoint::v4([10, 0, 0, 2], 33000),
            ),
        ];
        let mut v6 = [0u8; 16];
        v6[..2].copy_from_slice(&[0xfd, 0]);
        v6[15] = 7;
        let keys = keys.into_iter().chain([FlowKey::new(
            KeyKind::Ipv6,
            58,
            Endpoint::v6(v6, 0),
            Endpoint::v6([0xff; 16], 0),
        )]);
        for mode in 0..3 {
            let mut agg = Aggregate::new(10, 0);
            if mode > 0 {
                let mut e = crate::enrichment::tests::enrichment();
                e.flow_pod_labels = mode == 2;
                agg = agg.with_enrichment(e);
            }
            for (k, d) in keys.clone() {
                record(&mut agg, k, d, true, 1_000_000_007);
                record(&mut agg, k, Direction::BToA, false, 60);
            }
            let shared = Arc::new(Shared::new(agg));
            let collector = ProcessorCollector::new(shared.clone()).unwrap();
            let (direct, _) = collector.render();
            let mut encoded = String::new();
            encode_text(&collector.collect(), &mut encoded);
            assert_eq!(direct, encoded, "mode {mode}");
            assert!(direct.contains("netstream_flow_bytes_total{"), "{direct}");
            if mode == 2 {
                assert!(direct.contains(",src_pod=\""), "{direct}");
            }
        }
    }

    #[test]
    fn fast_encoder_writes_what_the_prometheus_encoder_writes() {
        use prometheus::Encoder;
        let mut fam = MetricFamily::default();
        fam.set_name("x_total".into());
        fam.set_help("Help with \\ and\na newline.".into());
        fam.set_field_type(MetricType::COUNTER);
        fam.set_metric(vec![
            sample(
                vec![pair("a", "plain"), pair("b", "q\"uo\\te\nnl")],
                12.0,
                false,
            ),
            sample(vec![pair("a", "ü")], 0.5, false),
            sample(vec![pair("a", "big")], 1e20, false),
        ]);
        let mut gauge = MetricFamily::default();
        gauge.set_name("y".into());
        gauge.set_field_type(MetricType::GAUGE);
        gauge.set_metric(vec![sample(Vec::new(), -3.0, true)]);
        let empty = MetricFamily::default();
        let mut snap_families = {
            let mut agg = Aggregate::new(10, 0);
            let (k, d) = FlowKey::new(
                KeyKind::Ipv4,
                6,
                Endpoint::v4([10, 0, 0, 1], 1),
                Endpoint::v4([10, 0, 0, 2], 2),
            );
            record(&mut agg, k, d, true, 1500);
            Snapshot::take(&Shared::new(agg)).families()
        };
        snap_families.extend([fam, gauge]);
        let mut expected = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&snap_families, &mut expected)
            .unwrap();
        let mut ours = String::new();
        encode_text(&snap_families, &mut ours);
        assert_eq!(ours, String::from_utf8(expected).unwrap());
        let mut none = String::new();
        encode_text(&[empty], &mut none);
        assert_eq!(none, "");
    }
}
