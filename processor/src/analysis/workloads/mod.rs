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

use std::sync::OnceLock;

use netstream_enrich::{MemberId, Resolved, Resource, WorkloadId};
use netstream_runtime::metrics::{FamilyDef, escape_into, pair, pair_owned, sample, write_header};
use netstream_wire::KeyKind;
use netstream_wire::protocol::ip_proto_name;
use prometheus::proto::{LabelPair, Metric, MetricType};

use crate::analysis::flows::table::FlowEntry;
use crate::analysis::flows::{
    FlowLabelMode, FlowsSnapshot, emit, push_count, push_uint, writes_text,
};
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
        let text = writes_text(out);
        if text {
            snap.write_series_families(&mut out.text);
        }
        for (def, metrics) in FAMILIES.iter().zip(snap.families(!text)) {
            emit(out, def.family(metrics));
        }
    }

    fn defs(&self) -> Vec<FamilyDef> {
        FAMILIES.to_vec()
    }
}

/// The enrichment's part of a snapshot: ids resolved under the lock, names copied once per
/// distinct workload (and pod), rendered after the lock is released.
///
/// Names are kept by id in a `Vec` (workload and member ids are the index's dense slot
/// numbers, and only ids the index names are stored, so it is no longer than the index's own
/// tables): under the lock a flow end costs a bounds check, not a hash lookup.
#[derive(Debug, Clone, Default)]
pub struct EnrichmentSnapshot {
    pub flow_labels: FlowLabelMode,
    /// `(src, dst)` of each flow of the `flows` snapshot, resolved at the flow's last capture time.
    pub flow_ids: Vec<[Resolved; 2]>,
    /// The names of the workloads the flows and series refer to, by `WorkloadId.0` (`None`:
    /// not named by the index, rendered as `external`).
    workloads: Vec<Option<OwnedLabels>>,
    /// Pod names by `MemberId.0` (with `--flow-pod-labels` only; `None`: not a pod).
    pods: Vec<Option<Box<str>>>,
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
    /// The names as escaped label text, made on first use by the text renderer.
    text: OnceLock<LabelText>,
}

/// `slots[i]`, growing `slots` to hold it.
fn slot<T>(slots: &mut Vec<Option<T>>, i: usize) -> &mut Option<T> {
    if i >= slots.len() {
        slots.resize_with(i + 1, || None);
    }
    &mut slots[i]
}

impl EnrichmentSnapshot {
    /// Copies what the families need; called under the lock.
    pub fn take(e: &Enrichment, flows: &[FlowEntry]) -> EnrichmentSnapshot {
        let flow_labels = e.flow_label_mode();
        let with_pods = flow_labels == FlowLabelMode::Pods;
        let mut workloads: Vec<Option<OwnedLabels>> = Vec::new();
        let mut pods: Vec<Option<Box<str>>> = Vec::new();
        let name = |id: WorkloadId, workloads: &mut Vec<Option<OwnedLabels>>| {
            if workloads.get(id.0 as usize).is_some_and(Option::is_some) {
                return;
            }
            if let Some(w) = e.index.workload(id) {
                *slot(workloads, id.0 as usize) = Some(OwnedLabels::of(Some(w)));
            }
        };
        let mut flow_ids: Vec<[Resolved; 2]> = Vec::with_capacity(flows.len());
        for f in flows {
            let ids = e.resolve_key(&f.key, f.initiator_is_b(), f.last_ns);
            for r in &ids {
                name(r.workload, &mut workloads);
                if with_pods && !pods.get(r.member.0 as usize).is_some_and(Option::is_some) {
                    let pod = e.pod_name(r.member);
                    if !pod.is_empty() {
                        *slot(&mut pods, r.member.0 as usize) = Some(pod.into());
                    }
                }
            }
            flow_ids.push(ids);
        }
        let series: Vec<(SeriesKey, SeriesCounts)> =
            e.series.iter().map(|(k, c)| (*k, *c)).collect();
        for (k, _) in &series {
            name(k.src, &mut workloads);
            name(k.dst, &mut workloads);
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
            text: OnceLock::new(),
        }
    }

    fn names(&self, id: WorkloadId) -> (&str, &str, &'static str) {
        match self.workloads.get(id.0 as usize) {
            Some(Some(l)) => (&l.namespace, &l.workload, l.kind),
            _ => enrichment::EXTERNAL_LABELS,
        }
    }

    fn pod(&self, id: MemberId) -> &str {
        match self.pods.get(id.0 as usize) {
            Some(Some(p)) => p,
            _ => "",
        }
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
                    pair("protocol", ip_proto_name(k.protocol)),
                    pair_owned("dst_port", k.dst_port.to_string()),
                ];
                sample(labels, value(c) as f64, false)
            })
            .collect()
    }

    /// Every family's samples; the two series families only `with_series` (else they are
    /// written as text, [`write_series_families`](Self::write_series_families)).
    fn families(&self, with_series: bool) -> [Vec<Metric>; 13] {
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
        let series = |value: fn(&SeriesCounts) -> u64| {
            if with_series {
                self.series_family(value)
            } else {
                Vec::new()
            }
        };
        [
            series(|c| c.packets),
            series(|c| c.bytes),
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

    fn label_text(&self) -> &LabelText {
        self.text.get_or_init(|| LabelText::of(self))
    }

    /// What the text renderer of `flows` needs for the identity labels of its flows.
    pub(crate) fn flow_identity_text(&self) -> FlowIdentity<'_> {
        FlowIdentity {
            ids: &self.flow_ids,
            text: self.label_text(),
            pods: self.flow_labels == FlowLabelMode::Pods,
        }
    }

    /// Both workload series families in the text format, byte for byte what the encoder
    /// writes for [`series_family`](Self::series_family): each end's labels one copy of text
    /// escaped once per workload, the label block formatted once for both families.
    fn write_series_families(&self, out: &mut String) {
        if self.series.is_empty() {
            return;
        }
        let text = self.label_text();
        out.reserve(self.series.len() * 2 * 240);
        let mut blocks: Vec<(usize, usize)> = Vec::with_capacity(self.series.len());
        let [packets, bytes, ..] = &FAMILIES;
        write_header(packets, out);
        for (k, c) in &self.series {
            out.push_str(packets.name);
            let start = out.len();
            out.push_str(text.get(text.workload(k.src)[SERIES_SRC]));
            out.push_str(text.get(text.workload(k.dst)[SERIES_DST]));
            out.push_str(",protocol=\"");
            // A fixed lower-case name: nothing to escape.
            out.push_str(ip_proto_name(k.protocol));
            out.push_str("\",dst_port=\"");
            push_uint(u64::from(k.dst_port), out);
            out.push_str("\"}");
            blocks.push((start, out.len()));
            out.push(' ');
            push_count(c.packets, out);
            out.push('\n');
        }
        write_header(bytes, out);
        for ((_, c), &(start, end)) in self.series.iter().zip(&blocks) {
            out.push_str(bytes.name);
            out.extend_from_within(start..end);
            out.push(' ');
            push_count(c.bytes, out);
            out.push('\n');
        }
    }
}

/// A fragment of label text: `LabelText::text[start..end]`.
type Span = (usize, usize);

/// Which fragment of a workload's [`LabelText`].
const FLOW_SRC: usize = 0;
const FLOW_DST: usize = 1;
const SERIES_SRC: usize = 2;
const SERIES_DST: usize = 3;

/// The snapshot's names as escaped label text, each written once per render: a flow end (or a
/// series end) is then one copy instead of a name lookup and an escape per label value (at
/// 100k flows, 400k labels from ~100 distinct values).
#[derive(Debug, Clone, Default)]
struct LabelText {
    text: String,
    /// Per `WorkloadId.0`: `,src_namespace="..",src_workload=".."` (flows, `FLOW_SRC`), the
    /// same with `dst_` (`FLOW_DST`), `{src_namespace="..",src_workload="..",src_kind=".."`
    /// (series, `SERIES_SRC`) and `,dst_namespace="..",dst_workload="..",dst_kind=".."`
    /// (`SERIES_DST`).
    workloads: Vec<[Span; 4]>,
    /// The fragments of `external` (and of any id the snapshot does not name).
    external: [Span; 4],
    /// Per `MemberId.0`: `,src_pod=".."` and `,dst_pod=".."`.
    pods: Vec<[Span; 2]>,
    /// `,src_pod=""` and `,dst_pod=""`.
    no_pod: [Span; 2],
}

impl LabelText {
    fn of(snap: &EnrichmentSnapshot) -> LabelText {
        let mut t = LabelText::default();
        let external = t.add_workload(enrichment::EXTERNAL_LABELS);
        let workloads = snap
            .workloads
            .iter()
            .map(|l| match l {
                Some(l) => t.add_workload((&l.namespace, &l.workload, l.kind)),
                None => external,
            })
            .collect();
        let no_pod = t.add_pod("");
        let pods = snap
            .pods
            .iter()
            .map(|p| match p {
                Some(p) => t.add_pod(p),
                None => no_pod,
            })
            .collect();
        LabelText {
            workloads,
            external,
            pods,
            no_pod,
            ..t
        }
    }

    /// Writes `labels` as (`name`, value) pairs after `open` and returns the span.
    fn add(&mut self, open: &str, labels: &[(&str, &str)]) -> Span {
        let start = self.text.len();
        self.text.push_str(open);
        for (i, (name, value)) in labels.iter().enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            self.text.push_str(name);
            self.text.push_str("=\"");
            escape_into(value, true, &mut self.text);
            self.text.push('"');
        }
        (start, self.text.len())
    }

    fn add_workload(&mut self, (ns, w, kind): enrichment::IdentityLabels<'_>) -> [Span; 4] {
        [
            self.add(",", &[("src_namespace", ns), ("src_workload", w)]),
            self.add(",", &[("dst_namespace", ns), ("dst_workload", w)]),
            self.add(
                "{",
                &[
                    ("src_namespace", ns),
                    ("src_workload", w),
                    ("src_kind", kind),
                ],
            ),
            self.add(
                ",",
                &[
                    ("dst_namespace", ns),
                    ("dst_workload", w),
                    ("dst_kind", kind),
                ],
            ),
        ]
    }

    fn add_pod(&mut self, pod: &str) -> [Span; 2] {
        [
            self.add(",", &[("src_pod", pod)]),
            self.add(",", &[("dst_pod", pod)]),
        ]
    }

    #[inline]
    fn workload(&self, id: WorkloadId) -> &[Span; 4] {
        self.workloads.get(id.0 as usize).unwrap_or(&self.external)
    }

    #[inline]
    fn pod(&self, id: MemberId) -> &[Span; 2] {
        self.pods.get(id.0 as usize).unwrap_or(&self.no_pod)
    }

    #[inline]
    fn get(&self, (start, end): Span) -> &str {
        &self.text[start..end]
    }
}

/// The identity labels of the flows of a snapshot, as text (see [`EnrichmentSnapshot::flow_identity`]).
pub(crate) struct FlowIdentity<'a> {
    ids: &'a [[Resolved; 2]],
    text: &'a LabelText,
    pods: bool,
}

impl FlowIdentity<'_> {
    /// The identity labels of flow `i`, after a leading comma.
    #[inline]
    pub(crate) fn write(&self, i: usize, out: &mut String) {
        let Some([src, dst]) = self.ids.get(i) else {
            return;
        };
        let t = self.text;
        out.push_str(t.get(t.workload(src.workload)[FLOW_SRC]));
        out.push_str(t.get(t.workload(dst.workload)[FLOW_DST]));
        if self.pods {
            out.push_str(t.get(t.pod(src.member)[0]));
            out.push_str(t.get(t.pod(dst.member)[1]));
        }
    }
}
