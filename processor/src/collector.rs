//! `/metrics`: a custom `prometheus::core::Collector` that renders at scrape time. The count
//! path only bumps plain integers; label strings are built here, once per scrape, from
//! snapshots copied out under the engine's lock (a memcpy of the flow tables: the consumer is
//! held up for a few milliseconds at most, not for the rendering).
//!
//! The engine's own families (records consumed and invalid, partitions, commit errors) are
//! defined here; every analysis renders its own ([`crate::analysis::Analysis::families`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use netstream_runtime::metrics::{FamilyDef, encode_text};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;

use crate::analysis::{Families, Snapshots};
use crate::decode::InvalidReason;
use crate::state::Shared;

pub const RECORDS_CONSUMED: &str = "netstream_records_consumed_total";
pub const RECORDS_INVALID: &str = "netstream_records_invalid_total";
pub const PARTITIONS_ASSIGNED: &str = "netstream_processor_partitions_assigned";
pub const COMMIT_ERRORS: &str = "netstream_processor_commit_errors_total";

const CORE: [FamilyDef; 4] = [
    FamilyDef::counter(
        RECORDS_CONSUMED,
        "Records consumed from the topic, valid or not.",
        &[],
    ),
    FamilyDef::counter(
        RECORDS_INVALID,
        "Records skipped because their key or value could not be decoded, by reason.",
        &["reason"],
    ),
    FamilyDef::gauge(
        PARTITIONS_ASSIGNED,
        "Topic partitions currently assigned to this processor by the consumer group.",
        &[],
    ),
    FamilyDef::counter(
        COMMIT_ERRORS,
        "Offset commits that failed (the records are consumed again after a restart or rebalance).",
        &[],
    ),
];

/// Everything `/metrics` shows, copied out of the shared state.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every enabled analysis' snapshot.
    pub analyses: Snapshots,
    pub consumed: u64,
    pub invalid: Vec<(&'static str, u64)>,
    pub partitions_assigned: i64,
    pub commit_errors: u64,
}

impl Snapshot {
    /// Copies the state out; the lock is held only for the copy.
    pub fn take(shared: &Shared) -> Snapshot {
        let mut snap = {
            let engine = shared.lock();
            Snapshot {
                analyses: engine.snapshot(),
                consumed: engine.consumed(),
                invalid: InvalidReason::ALL
                    .iter()
                    .map(|r| (r.as_str(), engine.invalid(*r)))
                    .collect(),
                ..Snapshot::default()
            }
        };
        let s = &shared.stats;
        snap.partitions_assigned = s.partitions_assigned.load(Ordering::Relaxed);
        snap.commit_errors = s.commit_errors.load(Ordering::Relaxed);
        snap
    }

    /// The analyses' families (with `direct`, the ones they write as text go to `out.text`),
    /// then the engine's.
    pub fn render_into(&self, out: &mut Families) {
        self.analyses.families(out);
        let [consumed, invalid, partitions, commit_errors] = &CORE;
        out.push(consumed.single(self.consumed as f64));
        out.push(invalid.by(&self.invalid));
        out.push(partitions.single(self.partitions_assigned as f64));
        out.push(commit_errors.single(self.commit_errors as f64));
    }

    /// Every metric family, in render order. Families without samples are left out (the text
    /// format forbids empty ones).
    pub fn families(&self) -> Vec<MetricFamily> {
        let mut out = Families::default();
        self.render_into(&mut out);
        out.list
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
        let defs = shared.lock().defs();
        let descs = defs
            .iter()
            .chain(CORE.iter())
            .map(FamilyDef::desc)
            .collect::<Result<_, _>>()?;
        Ok(ProcessorCollector { shared, descs })
    }

    /// `/metrics`: collects and encodes. Returns the text and the families, so the caller can
    /// drop the families (many small strings) off the request path.
    pub fn render(&self) -> (String, Vec<MetricFamily>) {
        let snap = Snapshot::take(&self.shared);
        let mut out = Families {
            direct: true,
            text: String::with_capacity(64 * 1024),
            list: Vec::new(),
        };
        snap.render_into(&mut out);
        // The direct text is what the first families would have been: an analysis writes text
        // only while nothing has gone to the list yet (`flows` and `workloads` write every
        // family of theirs as text, the per-flow and per-series ones by hand).
        let Families { mut text, list, .. } = out;
        encode_text(&list, &mut text);
        (text, list)
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
    use crate::analysis::branch::BRANCH_RECORDS;
    use crate::analysis::registry::{self, Setup};
    use crate::analysis::workloads::enrichment::Enrichment;
    use crate::engine::Engine;
    use netstream_wire::{Direction, Endpoint, FlowKey, KeyKind, PacketMeta, ValueEncoder};
    use prometheus::Registry;

    /// An engine with the default analyses (and `workloads` when `enrichment` is given).
    fn engine(enrichment: Option<Enrichment>) -> Engine {
        let names = registry::default_names(enrichment.is_some(), false);
        let mut setup = Setup::new(10, 0);
        setup.enrichment = enrichment;
        Engine::new(registry::build(registry::ANALYSES, &names, &mut setup).unwrap())
    }

    fn record(agg: &mut Engine, key: FlowKey, direction: Direction, syn: bool, len: u32) {
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
        agg.record(0, Some(&key.to_vec()), Some(&v), 0).unwrap();
    }

    #[test]
    fn renders_exact_text_through_a_registry() {
        let mut agg = engine(None);
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
        let _ = agg.record(0, None, Some(&[1]), 0);

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

    /// `/metrics` writes the flow (and workload series) families as text directly: the same
    /// bytes as encoding the families, plain, with workload labels and with pod labels (an
    /// escaped value included).
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
            let mut agg = engine((mode > 0).then(|| {
                let mut e = crate::analysis::workloads::enrichment::tests::enrichment();
                e.flow_pod_labels = mode == 2;
                e
            }));
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
            if mode > 0 {
                assert!(
                    direct.contains("netstream_workload_bytes_total{"),
                    "{direct}"
                );
            }
            if mode == 2 {
                assert!(direct.contains(",src_pod=\""), "{direct}");
            }
        }
    }

    #[test]
    fn the_fast_encoder_writes_what_the_prometheus_encoder_writes_for_every_family() {
        use prometheus::Encoder;
        let mut agg = engine(Some(
            crate::analysis::workloads::enrichment::tests::enrichment(),
        ));
        let (k, d) = FlowKey::new(
            KeyKind::Ipv4,
            6,
            Endpoint::v4([10, 0, 0, 1], 1),
            Endpoint::v4([10, 0, 0, 2], 2),
        );
        record(&mut agg, k, d, true, 1500);
        let families = Snapshot::take(&Shared::new(agg)).families();
        let mut expected = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&families, &mut expected)
            .unwrap();
        let mut ours = String::new();
        encode_text(&families, &mut ours);
        assert_eq!(ours, String::from_utf8(expected).unwrap());
        assert!(ours.contains("netstream_workload_bytes_total{"), "{ours}");
    }
}
