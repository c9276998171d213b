//! Prometheus metrics of the operator itself, defined as `FamilyDef`s like every netstream
//! binary's.

use std::time::Duration;

use netstream_runtime::metrics::FamilyDef;
use prometheus::{HistogramVec, IntCounterVec, IntGauge, Registry};

const RECONCILIATIONS: FamilyDef = FamilyDef::counter(
    "netstream_operator_reconciliations_total",
    "Reconcile passes started",
    &["controller"],
);
const FAILURES: FamilyDef = FamilyDef::counter(
    "netstream_operator_reconcile_failures_total",
    "Reconcile passes that failed (API errors) or were blocked by a spec problem, by reason",
    &["controller", "reason"],
);
const DURATION: FamilyDef = FamilyDef::histogram(
    "netstream_operator_reconcile_duration_seconds",
    "Duration of reconcile passes",
    &["controller"],
);
const LEADER: FamilyDef = FamilyDef::gauge(
    "netstream_operator_leader",
    "1 while this replica is the leader",
    &[],
);

/// Operator metrics, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    /// Registry that `/metrics` (`netstream_runtime::http::router`) renders.
    pub registry: Registry,
    reconciliations: IntCounterVec,
    failures: IntCounterVec,
    duration: HistogramVec,
    /// 1 while this replica holds the leader lease.
    pub leader: IntGauge,
}

impl Metrics {
    /// Creates and registers all metrics. Fails only on an invalid (static) definition,
    /// which the unit test rules out.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        Ok(Self {
            reconciliations: RECONCILIATIONS.register_counter_vec(&registry)?,
            failures: FAILURES.register_counter_vec(&registry)?,
            duration: DURATION.register_histogram_vec(
                &registry,
                vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
            )?,
            leader: LEADER.register_gauge(&registry)?,
            registry,
        })
    }

    /// Counts a reconcile pass.
    pub fn reconciled(&self, controller: &str, took: Duration) {
        self.reconciliations.with_label_values(&[controller]).inc();
        self.duration
            .with_label_values(&[controller])
            .observe(took.as_secs_f64());
    }

    /// Counts a failure or blocked pass.
    pub fn failed(&self, controller: &str, reason: &str) {
        self.failures.with_label_values(&[controller, reason]).inc();
    }

    /// Text exposition format, as `/metrics` serves it (empty if encoding fails).
    pub fn render(&self) -> String {
        netstream_runtime::http::render(&self.registry).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels() {
        let m = Metrics::new().unwrap();
        m.reconciled("netprobe", Duration::from_millis(20));
        m.failed("netprobe", "InvalidFilter");
        m.leader.set(1);
        let text = m.render();
        assert!(
            text.contains("netstream_operator_reconciliations_total{controller=\"netprobe\"} 1"),
            "{text}"
        );
        assert!(text.contains("netstream_operator_reconcile_failures_total{controller=\"netprobe\",reason=\"InvalidFilter\"} 1"), "{text}");
        assert!(
            text.contains(
                "netstream_operator_reconcile_duration_seconds_count{controller=\"netprobe\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("netstream_operator_leader 1"), "{text}");
    }
}
