//! The probe's Prometheus metrics. Names are an API (DESIGN.md); label lookups happen once per
//! interface at start, so the capture loop only bumps atomics.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

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

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let v = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name} is malformed: {e}"));
    r.register(Box::new(v.clone()))
        .unwrap_or_else(|e| panic!("metric {name} registered twice: {e}"));
    v
}

impl ProbeMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let captured = counter_vec(
            &registry,
            "netstream_probe_packets_captured_total",
            "Packets read from the interface (or file) by the probe.",
            &["interface"],
        );
        let bytes = counter_vec(
            &registry,
            "netstream_probe_bytes_captured_total",
            "Bytes captured, counted by wire length (frames may be cut short by snaplen).",
            &["interface"],
        );
        let dropped = counter_vec(
            &registry,
            "netstream_probe_packets_dropped_total",
            "Packets lost before reaching Kafka, by reason: kernel (capture buffer full), interface (NIC/driver), queue_full (local producer queue full), produce_error (broker did not accept).",
            &["interface", "reason"],
        );
        let produced = counter_vec(
            &registry,
            "netstream_probe_records_produced_total",
            "Records handed to the Kafka producer.",
            &["interface"],
        );
        let unparsed = counter_vec(
            &registry,
            "netstream_probe_packets_unparsed_total",
            "Frames that could not be parsed to a flow (still produced, with the unparsed key).",
            &["interface"],
        );
        let delivered = IntCounter::new(
            "netstream_probe_records_delivered_total",
            "Records acknowledged by the Kafka broker.",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        registry
            .register(Box::new(delivered.clone()))
            .unwrap_or_else(|e| panic!("{e}"));
        let queue_depth = IntGauge::new(
            "netstream_probe_producer_queue_records",
            "Records waiting in the local producer queue or in flight to the broker.",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        registry
            .register(Box::new(queue_depth.clone()))
            .unwrap_or_else(|e| panic!("{e}"));
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
