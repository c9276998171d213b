//! The probe's Prometheus metrics, defined as `FamilyDef`s like every netstream binary's.
//! Names are an API (DESIGN.md); label lookups happen once per
//! interface at start, so the capture loop only bumps atomics.

use netstream_runtime::metrics::FamilyDef;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Registry};

/// Why a packet was captured but not delivered to Kafka (the `reason` label).
pub const DROP_KERNEL: &str = "kernel";
pub const DROP_INTERFACE: &str = "interface";
pub const DROP_QUEUE_FULL: &str = "queue_full";
pub const DROP_PRODUCE_ERROR: &str = "produce_error";

#[derive(Clone)]
pub struct ProbeMetrics {
    pub registry: Registry,
    captured: IntCounterVec,
    bytes: IntCounterVec,
    dropped: IntCounterVec,
    produced: IntCounterVec,
    unparsed: IntCounterVec,
    pub delivered: IntCounter,
    pub queue_depth: IntGauge,
}

/// One interface's counters, resolved once.
#[derive(Clone)]
pub struct InterfaceCounters {
    pub captured: IntCounter,
    pub bytes: IntCounter,
    pub produced: IntCounter,
    pub unparsed: IntCounter,
    pub drop_kernel: IntCounter,
    pub drop_interface: IntCounter,
    pub drop_queue_full: IntCounter,
    pub drop_produce_error: IntCounter,
}

const CAPTURED: FamilyDef = FamilyDef::counter(
    "netstream_probe_packets_captured_total",
    "Packets read from the interface (or file) by the probe.",
    &["interface"],
);
const BYTES: FamilyDef = FamilyDef::counter(
    "netstream_probe_bytes_captured_total",
    "Bytes captured, counted by wire length (frames may be cut short by snaplen).",
    &["interface"],
);
const DROPPED: FamilyDef = FamilyDef::counter(
    "netstream_probe_packets_dropped_total",
    "Packets lost before reaching Kafka, by reason: kernel (capture buffer full), interface (NIC/driver), queue_full (local producer queue full), produce_error (broker did not accept).",
    &["interface", "reason"],
);
const PRODUCED: FamilyDef = FamilyDef::counter(
    "netstream_probe_records_produced_total",
    "Records handed to the Kafka producer.",
    &["interface"],
);
const UNPARSED: FamilyDef = FamilyDef::counter(
    "netstream_probe_packets_unparsed_total",
    "Frames that could not be parsed to a flow (still produced, with the unparsed key).",
    &["interface"],
);
const DELIVERED: FamilyDef = FamilyDef::counter(
    "netstream_probe_records_delivered_total",
    "Records acknowledged by the Kafka broker.",
    &[],
);
const QUEUE_DEPTH: FamilyDef = FamilyDef::gauge(
    "netstream_probe_producer_queue_records",
    "Records waiting in the local producer queue or in flight to the broker.",
    &[],
);

/// The definitions are static and their names distinct (the unit test registers them all), so
/// a failure here is a bug in this file, not bad input.
fn static_def<T>(def: &FamilyDef, r: Result<T, prometheus::Error>) -> T {
    r.unwrap_or_else(|e| panic!("metric {} is malformed or registered twice: {e}", def.name))
}

impl ProbeMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let vec = |def: &FamilyDef| static_def(def, def.register_counter_vec(&registry));
        let (captured, bytes, dropped, produced, unparsed) = (
            vec(&CAPTURED),
            vec(&BYTES),
            vec(&DROPPED),
            vec(&PRODUCED),
            vec(&UNPARSED),
        );
        let delivered = static_def(&DELIVERED, DELIVERED.register_counter(&registry));
        let queue_depth = static_def(&QUEUE_DEPTH, QUEUE_DEPTH.register_gauge(&registry));
        ProbeMetrics {
            registry,
            captured,
            bytes,
            dropped,
            produced,
            unparsed,
            delivered,
            queue_depth,
        }
    }

    pub fn interface(&self, name: &str) -> InterfaceCounters {
        let drop = |reason| self.dropped.with_label_values(&[name, reason]);
        InterfaceCounters {
            captured: self.captured.with_label_values(&[name]),
            bytes: self.bytes.with_label_values(&[name]),
            produced: self.produced.with_label_values(&[name]),
            unparsed: self.unparsed.with_label_values(&[name]),
            drop_kernel: drop(DROP_KERNEL),
            drop_interface: drop(DROP_INTERFACE),
            drop_queue_full: drop(DROP_QUEUE_FULL),
            drop_produce_error: drop(DROP_PRODUCE_ERROR),
        }
    }
}

impl Default for ProbeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_registers_and_renders_per_interface() {
        let m = ProbeMetrics::new();
        let eth0 = m.interface("eth0");
        eth0.captured.inc();
        eth0.bytes.inc_by(60);
        eth0.drop_queue_full.inc();
        m.delivered.inc();
        m.queue_depth.set(2);
        let text = netstream_runtime::http::render(&m.registry).unwrap();
        for line in [
            r#"netstream_probe_packets_captured_total{interface="eth0"} 1"#,
            r#"netstream_probe_bytes_captured_total{interface="eth0"} 60"#,
            r#"netstream_probe_packets_dropped_total{interface="eth0",reason="queue_full"} 1"#,
            r#"netstream_probe_packets_dropped_total{interface="eth0",reason="kernel"} 0"#,
            r#"netstream_probe_records_produced_total{interface="eth0"} 0"#,
            r#"netstream_probe_packets_unparsed_total{interface="eth0"} 0"#,
            "netstream_probe_records_delivered_total 1",
            "netstream_probe_producer_queue_records 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }
}
