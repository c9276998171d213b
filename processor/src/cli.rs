//! Command line (and `NETSTREAM_<FLAG>` environment) of `netstream-processor`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use netstream_runtime::duration::parse_duration;
use netstream_runtime::kafka_config::parse_property;

/// Consume netstream packet records in a Kafka consumer group, count packets and bytes per flow
/// and per protocol, and serve them as Prometheus metrics (/metrics) and a JSON API
/// (/api/v1/flows, /api/v1/protocols). Run more instances with the same --group to spread the
/// topic's partitions; each flow is counted by exactly one instance at a time.
///
/// Every flag can also be set in the environment as NETSTREAM_<FLAG> (e.g. NETSTREAM_BROKERS);
/// list flags take comma-separated values there.
///
/// TLS:  --consumer-config security.protocol=SSL --consumer-config ssl.ca.location=/etc/netstream/ca.crt
/// SASL: --consumer-config security.protocol=SASL_SSL --consumer-config sasl.mechanisms=SCRAM-SHA-512
///       with NETSTREAM_KAFKA_SASL_USERNAME / NETSTREAM_KAFKA_SASL_PASSWORD in the environment.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "netstream-processor",
    version,
    about,
    long_about,
    verbatim_doc_comment
)]
pub struct Args {
    /// Kafka bootstrap servers, host:port[,host:port...].
    #[arg(long, env = "NETSTREAM_BROKERS", value_name = "HOST:PORT")]
    pub brokers: String,

    /// Topic of packet records to consume. It must exist.
    #[arg(long, env = "NETSTREAM_TOPIC", default_value = netstream_wire::DEFAULT_TOPIC)]
    pub topic: String,

    /// Consumer group. Instances with the same group share the topic's partitions.
    #[arg(long, env = "NETSTREAM_GROUP", value_name = "GROUP")]
    pub group: String,

    /// Address for /metrics, /healthz, /readyz and /api/v1/*.
    #[arg(
        long,
        env = "NETSTREAM_METRICS_ADDR",
        default_value = "0.0.0.0:9090",
        value_name = "ADDR:PORT"
    )]
    pub metrics_addr: SocketAddr,

    /// Most IP flows tracked at once. When full, idle flows and then the least recently updated
    /// ones are evicted (netstream_flows_evicted_total). About 93 bytes of memory per flow.
    #[arg(long, env = "NETSTREAM_MAX_FLOWS", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=crate::table::MAX_FLOWS_LIMIT as u64))]
    pub max_flows: u64,

    /// Evict a flow (and its series) when this processor has not counted a packet of it for
    /// this long (e.g. 30s, 5m, 1h; 0 = never).
    #[arg(long, env = "NETSTREAM_FLOW_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub flow_idle_timeout: Duration,

    /// Extra librdkafka consumer property key=value (repeatable); overrides the defaults
    /// (fetch.wait.max.ms=10, fetch.queue.backoff.ms=10,
    /// partition.assignment.strategy=cooperative-sticky, auto.offset.reset=earliest,
    /// session.timeout.ms=10000, heartbeat.interval.ms=1000, reconnect.backoff.max.ms=1000).
    /// enable.auto.offset.store cannot be changed. In NETSTREAM_CONSUMER_CONFIG, separate
    /// properties with ';' (values may hold commas).
    #[arg(long = "consumer-config", env = "NETSTREAM_CONSUMER_CONFIG", value_delimiter = ';',
          value_parser = parse_property, value_name = "K=V")]
    pub consumer_config: Vec<(String, String)>,

    /// Also produce every valid record, unchanged and with the same key, to <PREFIX>.tcp,
    /// <PREFIX>.udp or <PREFIX>.other (the topics must exist).
    #[arg(long, env = "NETSTREAM_BRANCH_TOPIC_PREFIX", value_name = "PREFIX")]
    pub branch_topic_prefix: Option<String>,

    /// Extra librdkafka producer property for the branch topics key=value (repeatable).
    #[arg(long = "branch-producer-config", env = "NETSTREAM_BRANCH_PRODUCER_CONFIG",
          value_delimiter = ';', value_parser = parse_property, value_name = "K=V")]
    pub branch_producer_config: Vec<(String, String)>,

    /// How often offsets of counted records are committed.
    #[arg(long, env = "NETSTREAM_COMMIT_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub commit_interval: Duration,

    /// How long to wait for the broker at start (and for the branch producer to flush) before
    /// giving up.
    #[arg(long, env = "NETSTREAM_CONNECT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
}

impl Args {
    pub fn max_flows(&self) -> usize {
        usize::try_from(self.max_flows).unwrap_or(crate::table::MAX_FLOWS_LIMIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_defaults_and_validation() {
        let a = Args::try_parse_from(["p", "--brokers", "k:9092", "--group", "g"]).unwrap();
        assert_eq!(a.topic, "netstream.packets");
        assert_eq!(a.max_flows(), 100_000);
        assert_eq!(a.flow_idle_timeout, Duration::from_secs(300));
        assert_eq!(a.metrics_addr, "0.0.0.0:9090".parse().unwrap());
        assert!(a.branch_topic_prefix.is_none());
        // --group is required; bad values are refused with the flag named.
        assert!(Args::try_parse_from(["p", "--brokers", "k:9092"]).is_err());
        for bad in [
            ["--max-flows", "0"],
            ["--metrics-addr", "nowhere"],
            ["--flow-idle-timeout", "5y"],
            ["--flow-idle-timeout", "100000000000000000000000h"],
            ["--consumer-config", "novalue"],
        ] {
            let err =
                Args::try_parse_from(["p", "--brokers", "k:1", "--group", "g", bad[0], bad[1]])
                    .unwrap_err()
                    .to_string();
            assert!(err.contains(bad[0]), "{err}");
        }
        let a = Args::try_parse_from([
            "p",
            "--brokers",
            "k:1",
            "--group",
            "g",
            "--consumer-config",
            "fetch.wait.max.ms=50",
            "--consumer-config",
            "session.timeout.ms=6000",
        ])
        .unwrap();
        assert_eq!(
            a.consumer_config,
            [
                ("fetch.wait.max.ms".to_string(), "50".to_string()),
                ("session.timeout.ms".to_string(), "6000".to_string())
            ]
        );
    }
}
