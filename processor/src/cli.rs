//! Command line (and `NETSTREAM_<FLAG>` environment) of `netstream-processor`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use netstream_enrich::SubnetLabel;
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
///
/// Enrichment: with --enrichment kubernetes (in a cluster) or --enrichment file --identity-file F
/// (offline, tests), addresses are resolved to pods, workloads, services and nodes at each
/// packet's capture time: netstream_workload_packets_total / netstream_workload_bytes_total count
/// traffic between workloads, and the per-flow series gain src/dst namespace and workload labels.
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

    /// Analyses and their settings from a YAML file (the operator writes one into a
    /// ConfigMap): `analyses: {flows: {maxFlows: N, idleTimeout: D, podLabels: B}, workloads:
    /// {expiry: D, maxSeries: N}, branch: {topicPrefix: P, producerConfig: {K: V}}}` and
    /// `enrichment: {mode, identityFile, namespaces, subnetLabels: [{cidr, name}],
    /// syncTimeout}`. A flag given on the command line or in the environment wins over the
    /// file; unknown keys are errors.
    #[arg(long, env = "NETSTREAM_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Analyses to run, comma-separated, from: flows (per-flow and per-protocol counts),
    /// workloads (traffic between Kubernetes workloads; needs --enrichment), branch (records
    /// again to per-protocol topics; needs --branch-topic-prefix). Default: flows, plus
    /// workloads with --enrichment and branch with --branch-topic-prefix.
    #[arg(
        long,
        env = "NETSTREAM_ANALYSES",
        value_delimiter = ',',
        value_name = "LIST"
    )]
    pub analyses: Vec<String>,

    /// Threads that run the analyses, each with its own engine (a lane) and the partitions
    /// placed on it (so at most one per assigned partition does work). Default 1. The workloads
    /// analysis keeps one lane.
    #[arg(long, env = "NETSTREAM_THREADS", value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,

    /// Most IP flows tracked at once. When full, idle flows and then the least recently updated
    /// ones are evicted (netstream_flows_evicted_total). About 93 bytes of memory per flow.
    #[arg(long, env = "NETSTREAM_MAX_FLOWS", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=netstream_config::MAX_FLOWS_LIMIT))]
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

    /// Resolve addresses to Kubernetes identities: off; kubernetes (watch Pods, Services, Nodes,
    /// ReplicaSets and Jobs through the API; needs list/watch RBAC); file (a static identity
    /// file, --identity-file: offline analysis and tests).
    #[arg(long, env = "NETSTREAM_ENRICHMENT", value_enum, default_value_t = EnrichmentMode::Off)]
    pub enrichment: EnrichmentMode,

    /// The identity file for --enrichment file (YAML: pods, services, nodes with their IPs,
    /// workloads and lifetimes; see the README). A bad file stops the processor at start.
    #[arg(long, env = "NETSTREAM_IDENTITY_FILE", value_name = "PATH")]
    pub identity_file: Option<PathBuf>,

    /// Namespaces whose pods and services --enrichment kubernetes watches (comma-separated;
    /// default: all). Nodes are always watched.
    #[arg(
        long,
        env = "NETSTREAM_ENRICHMENT_NAMESPACES",
        value_delimiter = ',',
        value_name = "NS"
    )]
    pub enrichment_namespaces: Vec<String>,

    /// Name the addresses of a CIDR that are not in the cluster (repeatable), e.g.
    /// --subnet-label 10.0.0.0/8=corp: they count under workload "corp" (kind subnet) instead
    /// of "external". The longest matching prefix wins.
    #[arg(long = "subnet-label", env = "NETSTREAM_SUBNET_LABEL", value_delimiter = ',',
          value_parser = parse_subnet_label, value_name = "CIDR=NAME")]
    pub subnet_label: Vec<SubnetLabel>,

    /// Remove the workload series of a workload that no longer exists once it has not been
    /// updated for this long (netstream_workload_series_expired_total). Series of live
    /// workloads stay.
    #[arg(long, env = "NETSTREAM_WORKLOAD_EXPIRY", default_value = "10m", value_parser = parse_duration)]
    pub workload_expiry: Duration,

    /// Most netstream_workload_* series kept (per family). When full, the least recently
    /// updated are evicted (netstream_workload_series_evicted_total{reason="capacity"}). 47 to 94
    /// bytes of memory per series (hash table rounding; 54 at 100k series).
    #[arg(long, env = "NETSTREAM_MAX_WORKLOAD_SERIES", default_value_t = 50_000,
          value_parser = clap::value_parser!(u64).range(1..=netstream_config::MAX_WORKLOAD_SERIES_LIMIT))]
    pub max_workload_series: u64,

    /// Per-flow series also get src_pod and dst_pod labels (one more label pair per flow;
    /// series still bounded by --max-flows).
    #[arg(long, env = "NETSTREAM_FLOW_POD_LABELS")]
    pub flow_pod_labels: bool,

    /// With --enrichment kubernetes, wait this long at start for the first full list of the
    /// cluster before consuming (so early records are not counted as external); after that,
    /// consume anyway with a warning. /readyz fails meanwhile.
    #[arg(long, env = "NETSTREAM_ENRICHMENT_SYNC_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub enrichment_sync_timeout: Duration,
}

/// Where identities come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EnrichmentMode {
    Off,
    Kubernetes,
    File,
}

fn parse_subnet_label(s: &str) -> Result<SubnetLabel, String> {
    s.parse::<SubnetLabel>().map_err(|e| e.to_string())
}

impl From<netstream_config::EnrichmentMode> for EnrichmentMode {
    fn from(m: netstream_config::EnrichmentMode) -> Self {
        match m {
            netstream_config::EnrichmentMode::Off => EnrichmentMode::Off,
            netstream_config::EnrichmentMode::Kubernetes => EnrichmentMode::Kubernetes,
            netstream_config::EnrichmentMode::File => EnrichmentMode::File,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Args, clap::Error> {
        let mut argv = vec!["p", "--brokers", "k:1", "--group", "g"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv)
    }

    #[test]
    fn flags_defaults_and_validation() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.topic, "netstream.packets");
        assert_eq!(a.max_flows, 100_000);
        assert_eq!(a.flow_idle_timeout, Duration::from_secs(300));
        assert_eq!(a.metrics_addr, "0.0.0.0:9090".parse().unwrap());
        assert!(a.branch_topic_prefix.is_none() && a.config.is_none());
        assert!(a.analyses.is_empty());
        let a = parse(&["--analyses", "flows,branch", "--config", "/c.yaml"]).unwrap();
        assert_eq!(a.analyses, ["flows", "branch"]);
        assert_eq!(a.config, Some(PathBuf::from("/c.yaml")));
        // --group is required; bad values are refused with the flag named.
        assert!(Args::try_parse_from(["p", "--brokers", "k:9092"]).is_err());
        for bad in [
            ["--max-flows", "0"],
            ["--max-flows", "50000001"],
            ["--metrics-addr", "nowhere"],
            ["--flow-idle-timeout", "5y"],
            ["--flow-idle-timeout", "100000000000000000000000h"],
            ["--consumer-config", "novalue"],
        ] {
            let err = parse(&bad).unwrap_err().to_string();
            assert!(err.contains(bad[0]), "{err}");
        }
        let a = parse(&[
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

    #[test]
    fn enrichment_flags() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.enrichment, EnrichmentMode::Off);
        assert_eq!(a.workload_expiry, Duration::from_secs(600));
        assert_eq!(a.enrichment_sync_timeout, Duration::from_secs(60));
        assert_eq!(a.max_workload_series, 50_000);
        assert!(!a.flow_pod_labels && a.subnet_label.is_empty());
        assert!(a.enrichment_namespaces.is_empty());

        let a = parse(&[
            "--enrichment",
            "file",
            "--identity-file",
            "/x.yaml",
            "--subnet-label",
            "10.0.0.0/8=corp",
            "--subnet-label",
            "fd00::/8=lab",
            "--enrichment-namespaces",
            "a,b",
            "--workload-expiry",
            "30s",
            "--flow-pod-labels",
        ])
        .unwrap();
        assert_eq!(a.enrichment, EnrichmentMode::File);
        assert_eq!(
            a.subnet_label
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["corp", "lab"]
        );
        assert_eq!(a.enrichment_namespaces, ["a", "b"]);
        assert_eq!(a.workload_expiry, Duration::from_secs(30));
        assert!(a.flow_pod_labels);
        for m in netstream_config::EnrichmentMode::ALL {
            let a = parse(&["--enrichment", m.as_str()]).unwrap();
            assert_eq!(a.enrichment, EnrichmentMode::from(m));
        }

        for bad in [
            ["--enrichment", "on"],
            ["--subnet-label", "10.0.0.0/8"],
            ["--subnet-label", "10.0.0.0/33=x"],
            ["--subnet-label", "10.0.0.0/8=bad name"],
            ["--workload-expiry", "soon"],
            ["--max-workload-series", "0"],
        ] {
            let err = parse(&bad).unwrap_err().to_string();
            assert!(err.contains(bad[0]), "{err}");
        }
    }
}
