//! `workloads`: Kubernetes enrichment. Resolves both ends of every IP packet to a pod,
//! workload, service, node, subnet or `external` at its capture time and counts traffic
//! between workloads (`netstream_workload_*`); gives the per-flow series of `flows` their
//! identity labels and `/api/v1/flows` its `src`/`dst` identities; serves
//! `/api/v1/workloads`.
//!
//! Needs `flows` before it (the flow's initiator tells src from dst). Its state is one
//! [`Enrichment`] for the processor, not per partition: workload series sum over flows of every
//! partition, and counters must not go down when a partition moves.

pub mod api;
pub mod enrichment;
pub mod identity;
pub mod table;

use std::collections::HashMap;

use netstream_enrich::{MemberId, Resolved, Resource, WorkloadId};
use netstream_runtime::metrics::{FamilyDef, escape_into, pair, pair_owned, sample};
use netstream_wire::KeyKind;
use prometheus::proto::{LabelPair, Metric, MetricType};

use crate::analysis::flows::table::FlowEntry;
use crate::analysis::flows::{FlowLabelMode, FlowsSnapshot};
use crate::analysis::{Analysis, Families, Packet, Snapshots, Verdict};
use enrichment::{Enrichment, OwnedLabels};
use table::{RemoveReason, SeriesCounts, SeriesKey};

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

/// The families of `workloads`.
pub(crate) const FAMILIES: [FamilyDef; 13] = [
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

/// The `workloads` analysis.
#[derive(Debug)]
pub struct Workloads {
    pub enrichment: Enrichment,
}

impl Workloads {
    pub fn new(enrichment: Enrichment) -> Self {
        Workloads { enrichment }
    }
}

impl Analysis for Workloads {
    const NAME: &'static str = "workloads";
    type Shard = ();
    type Snapshot = EnrichmentSnapshot;

    fn shard(&mut self, _partition: i32) {}

    #[inline]
    fn packet(&mut self, _: &mut (), pkt: &Packet<'_>) -> Verdict {
        if let Some(initiator_is_b) = pkt.initiator_is_b.get()
            && matches!(pkt.key.kind(), KeyKind::Ipv4 | KeyKind::Ipv6)
        {
            self.enrichment
                .count(&pkt.key, initiator_is_b, &pkt.meta, pkt.now);
        }
        Verdict::Continue
    }

    fn tick(&mut self, _: &mut [()], now: u32) {
        self.enrichment.maintain(now);
    }

    fn snapshot(&self, _: &[()], earlier: &Snapshots, into: &mut EnrichmentSnapshot) {
        let flows = earlier
            .get::<FlowsSnapshot>()
            .map(|f| &f.flows[..])
            .unwrap_or_default();
        *into = EnrichmentSnapshot::take(&self.enrichment, flows);
    }

    fn families(snap: &EnrichmentSnapshot, _: &Snapshots, out: &mut Families) {
        for (def, metrics) in FAMILIES.iter().zip(snap.families()) {
            out.push(def.family(metrics));
        }
    }

    fn defs(&self) -> Vec<FamilyDef> {
        FAMILIES.to_vec()
    }
}

/// The enrichment's part of a snapshot: ids resolved under the lock, names copied once per
/// distinct workload (and pod), rendered after the lock is released.
#[derive(Debug, Clone, Default)]
pub struct EnrichmentSnapshot {
    pub flow_labels: FlowLabelMode,
    /// `(src, dst)` of each flow of the `flows` snapshot, resolved at the flow's last capture time.
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
        let flow_labels = e.flow_label_mode();
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
            None => enrichment::EXTERNAL_LABELS,
        }
    }

    fn pod(&self, id: MemberId) -> &str {
        self.pods.get(&id).map(|p| &**p).unwrap_or("")
    }

    /// The identity label values of flow `i`, after the five base labels.
    pub(crate) fn flow_identity(&self, i: usize, out: &mut Vec<LabelPair>) {
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

impl EnrichmentSnapshot {
    /// The identity labels of flow `i` as text, after a leading comma (see
    /// [`flow_identity`](Self::flow_identity)).
    pub(crate) fn write_flow_identity(&self, i: usize, out: &mut String) {
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
