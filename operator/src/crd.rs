//! Custom resource types: `NetProbe` and `StreamAnalysis` (group `netstream.dev`, `v1alpha1`).
//!
//! Everything the API server can check on its own is put into the schema (ranges, enums,
//! patterns, CEL rules) so mistakes are rejected at `kubectl apply` time instead of surfacing
//! later as a failing pod. Doc comments become the `description`s shown by `kubectl explain`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of all netstream custom resources.
pub const GROUP: &str = "netstream.dev";
/// Served and stored version.
pub const VERSION: &str = "v1alpha1";
/// Default Kafka topic shared by probes and processors.
pub use netstream_wire::DEFAULT_TOPIC;

/// Longest `metadata.name` of a NetProbe or StreamAnalysis: the longest child name,
/// `<name>-processor-metrics` (a Service), must stay a 63-character DNS-1035 label.
pub const NAME_MAX_LEN: usize = 40;
/// CEL: the name is a DNS-1035 label (a lower-case letter first, no dots), because it names
/// child Services. Kubernetes itself accepts any DNS-1123 subdomain (`1st-flows`,
/// `edge.flows`), which then could never be reconciled.
const NAME_RULE: &str = "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')";
const NAME_MESSAGE: &str = "metadata.name must start with a lower-case letter and hold only lower-case letters, digits and '-' (no dots): it names child Services, which must be DNS-1035 labels";

/// The check of [`NAME_RULE`] and [`NAME_MAX_LEN`] in Rust, for objects admitted before the
/// rule existed. `None` when `name` is fine, else what to change.
pub fn name_problem(name: &str) -> Option<String> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= NAME_MAX_LEN
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    (!ok).then(|| {
        format!(
            "metadata.name {name:?} cannot name child objects: use at most {NAME_MAX_LEN} characters, a lower-case letter first, then lower-case letters, digits and '-' (no dots); recreate the resource under such a name"
        )
    })
}

/// Librdkafka properties that carry credentials. They must come from Secret references
/// (`tls` / `sasl`), never from the plain-text `properties` map (a CEL rule lists the same).
pub use netstream_runtime::kafka_config::CREDENTIAL_PROPERTIES as FORBIDDEN_PROPERTIES;

/// Defines a fleet of packet-capture probes: one pod on every selected node captures packets on
/// the given interfaces and produces them to a Kafka topic.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "netstream.dev",
    version = "v1alpha1",
    kind = "NetProbe",
    plural = "netprobes",
    singular = "netprobe",
    shortname = "np",
    category = "netstream",
    namespaced,
    status = "NetProbeStatus",
    derive = "PartialEq",
    doc = "NetProbe runs a packet-capture probe on every selected node and publishes the captured packets to Kafka.",
    printcolumn(name = "Desired", type_ = "integer", json_path = ".status.desiredNodes", description = "Nodes that should run a probe"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyNodes", description = "Nodes whose probe is ready"),
    printcolumn(name = "Topic", type_ = "string", json_path = ".spec.kafka.topic", description = "Kafka topic the probes produce to"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status", description = "Ready condition"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason", description = "Why the probe fleet is (not) ready"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 40").message("metadata.name must be at most 40 characters (child object names append suffixes)"),
    validation = Rule::new(NAME_RULE).message(NAME_MESSAGE)
)]
#[serde(rename_all = "camelCase")]
pub struct NetProbeSpec {
    /// Network interfaces to capture on, e.g. `eth0`. Use `any` to capture on all interfaces.
    #[schemars(
        length(min = 1, max = 16),
        inner(regex(pattern = r"^[a-zA-Z0-9._@:-]{1,15}$")),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub interfaces: Vec<String>,

    /// Optional BPF capture filter in tcpdump syntax, e.g. `tcp port 443`. The operator compiles
    /// it with libpcap and reports an `InvalidFilter` condition instead of rolling it out when it
    /// does not compile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub filter: Option<String>,

    /// Maximum number of bytes captured per packet.
    #[serde(default = "default_snaplen")]
    #[schemars(range(min = 64, max = 262144))]
    pub snaplen: i32,

    /// Put the interfaces into promiscuous mode (capture traffic not addressed to the node).
    #[serde(default)]
    pub promiscuous: bool,

    /// Keep one of every N packets (1-in-N sampling). Omit to keep every packet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub sampling: Option<i32>,

    /// Only nodes with all of these labels run a probe. Empty selects every schedulable node.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Tolerations for the probe pods, e.g. to also capture on tainted control-plane nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// Kafka cluster and topic the probes produce to.
    pub kafka: KafkaSpec,

    /// Probe container image. Defaults to the operator's probe image
    /// (`ghcr.io/netstream-dev/netstream-probe:<operator version>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,

    /// Compute resources of the probe container. Defaults to requests of 100m CPU / 128Mi memory
    /// and a 512Mi memory limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Port of the probe's metrics and health endpoints (`/metrics`, `/healthz`, `/readyz`).
    /// Probes use the host network, so this port must be free on every selected node.
    #[serde(default = "default_metrics_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub metrics_port: i32,

    /// How many nodes may be without a ready probe during a rolling update.
    #[serde(default = "default_max_unavailable")]
    #[schemars(range(min = 1))]
    pub max_unavailable: i32,
}

/// Observed state of a NetProbe.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetProbeStatus {
    /// Number of nodes that should run a probe.
    #[serde(default)]
    pub desired_nodes: i32,
    /// Number of nodes whose probe passes its readiness check.
    #[serde(default)]
    pub ready_nodes: i32,
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Current state: `Ready`, `Progressing` and `Degraded`, each with a reason and message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Defines an autoscaled group of flow processors consuming a packet topic and exposing flow
/// metrics to Prometheus.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "netstream.dev",
    version = "v1alpha1",
    kind = "StreamAnalysis",
    plural = "streamanalyses",
    singular = "streamanalysis",
    shortname = "sta",
    category = "netstream",
    namespaced,
    status = "StreamAnalysisStatus",
    derive = "PartialEq",
    doc = "StreamAnalysis runs an autoscaled group of processors that count flows from a Kafka packet topic and expose them as Prometheus metrics.",
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.replicas", description = "Processor replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas", description = "Ready processor replicas"),
    printcolumn(name = "Topic", type_ = "string", json_path = ".status.topic", description = "Kafka topic being consumed"),
    printcolumn(name = "Partitions", type_ = "integer", json_path = ".status.partitions", description = "Partitions of the topic, when known", priority = 1),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status", description = "Ready condition"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason", description = "Why the processors are (not) ready"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 40").message("metadata.name must be at most 40 characters (child object names append suffixes)"),
    validation = Rule::new(NAME_RULE).message(NAME_MESSAGE)
)]
#[x_kube(
    validation = Rule::new("has(self.kafka) != has(self.probeRef)").message("set exactly one of spec.kafka and spec.probeRef"),
    validation = Rule::new("self.minReplicas <= self.maxReplicas").message("spec.minReplicas must be less than or equal to spec.maxReplicas")
)]
#[serde(rename_all = "camelCase")]
pub struct StreamAnalysisSpec {
    /// Kafka cluster and topic to consume. Exactly one of `kafka` and `probeRef` must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaSpec>,

    /// Reuse the Kafka settings (brokers, topic, credentials) of a NetProbe in the same
    /// namespace. Exactly one of `kafka` and `probeRef` must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_ref: Option<ProbeRef>,

    /// Kafka consumer group of the processors. Defaults to `netstream.<namespace>.<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249))]
    pub consumer_group: Option<String>,

    /// Lowest number of processor replicas.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,

    /// Highest number of processor replicas. Capped at the topic's partition count when that is
    /// known, because extra consumers in a group would sit idle.
    #[serde(default = "default_max_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,

    /// How the processor group is scaled between `minReplicas` and `maxReplicas`.
    #[serde(default)]
    pub autoscaling: AutoscalingSpec,

    /// The analyses the processors run and their settings, as in the processor's config file
    /// (the operator renders it into a ConfigMap): each key present runs that analysis, `{}`
    /// with its defaults. Absent: `flows`. `workloads` joins `flows` whenever enrichment is
    /// enabled. Settings given here win over the older `maxFlows` and `flowIdleTimeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analyses: Option<netstream_config::Analyses>,

    /// Most flows a processor tracks at once; the least recently seen are evicted beyond that.
    /// Defaults to the processor's 100000. Same as `analyses.flows.maxFlows`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 50000000))]
    pub max_flows: Option<i64>,

    /// A flow with no packets for this long is closed: one number and a unit (`ms`, `s`, `m`,
    /// `h`), e.g. `30s`, `5m`, `1h`. Defaults to the processor's `5m`. Same as
    /// `analyses.flows.idleTimeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{1,9}(ms|s|m|h)$"))]
    pub flow_idle_timeout: Option<String>,

    /// Port of the processor's metrics and health endpoints (`/metrics`, `/healthz`, `/readyz`).
    #[serde(default = "default_metrics_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub metrics_port: i32,

    /// Create a prometheus-operator ServiceMonitor for the processors' metrics Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_monitor: Option<ServiceMonitorSpec>,

    /// Processor container image. Defaults to the operator's processor image
    /// (`ghcr.io/netstream-dev/netstream-processor:<operator version>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,

    /// Compute resources of each processor. Defaults to requests of 100m CPU / 128Mi memory and a
    /// 512Mi memory limit. A CPU request is always set because CPU autoscaling needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Kubernetes enrichment: label traffic with the namespace, workload, pod and node of each
    /// endpoint. On by default; the operator then grants the processors' ServiceAccount
    /// read-only access (get/list/watch) to what they need and nothing more.
    #[serde(default)]
    pub enrichment: EnrichmentSpec,
}

/// Kubernetes enrichment of the processors' metrics.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnrichmentSpec {
    /// Watch Pods, Services, Nodes, ReplicaSets and Jobs to label traffic with Kubernetes
    /// identities (`--enrichment kubernetes`). When true the processor pods get an API token
    /// and the operator binds the `netstream-processor-reader` ClusterRole to their
    /// ServiceAccount; when false they get neither.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Limit the watches of Pods, Services, ReplicaSets and Jobs (and the RBAC grant) to these
    /// namespaces. Empty watches the whole cluster. Nodes are cluster-scoped and always read
    /// cluster-wide.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        inner(regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub namespaces: Vec<String>,

    /// Names for address ranges outside the cluster (`--subnet-label CIDR=NAME`), e.g.
    /// `{cidr: 10.20.0.0/16, name: office}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 256),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["cidr"])
    )]
    pub subnet_labels: Vec<SubnetLabel>,

    /// Also label per-flow series with the source and destination pod names
    /// (`--flow-pod-labels`). Off by default: pod names churn and multiply series.
    #[serde(default)]
    pub pod_names: bool,

    /// Series of workloads that no longer exist are dropped after this long: one number and a
    /// unit (`ms`, `s`, `m`, `h`), e.g. `10m`.
    #[serde(default = "default_workload_expiry")]
    #[schemars(regex(pattern = r"^[0-9]{1,9}(ms|s|m|h)$"))]
    pub workload_expiry: String,
}

impl Default for EnrichmentSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            namespaces: Vec::new(),
            subnet_labels: Vec::new(),
            pod_names: false,
            workload_expiry: default_workload_expiry(),
        }
    }
}

/// A named address range.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubnetLabel {
    /// IPv4 or IPv6 range in CIDR notation, e.g. `10.20.0.0/16` or `2001:db8::/32`.
    // A pattern rather than CEL `isCIDR()`: the CEL network library needs Kubernetes 1.31 and
    // the operator supports 1.25+. IPv6 is only checked for shape here; the operator parses
    // every range before rolling it out and reports an `InvalidSubnetLabel` condition.
    #[schemars(
        length(max = 49),
        regex(
            pattern = r"^(((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])/(3[0-2]|[12]?[0-9])|[0-9a-fA-F.]*:[0-9a-fA-F:.]*/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))$"
        )
    )]
    pub cidr: String,
    /// Label value for traffic in the range: letters, digits, `_`, `.` and `-`, starting with
    /// a letter or digit, at most 63 characters.
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"))]
    pub name: String,
}

/// Reference to a NetProbe in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeRef {
    /// Name of the NetProbe.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Autoscaling of the processor group.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// `hpa` scales on CPU with an autoscaling/v2 HorizontalPodAutoscaler; `keda` scales on the
    /// consumer group's lag with a KEDA ScaledObject (KEDA must be installed).
    #[serde(default)]
    pub mode: AutoscalingMode,

    /// Target average CPU utilization in percent of the CPU request (`hpa` mode).
    #[serde(default = "default_target_cpu")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization: i32,

    /// Consumer lag (messages) per replica at which KEDA adds a replica (`keda` mode).
    #[serde(default = "default_lag_threshold")]
    #[schemars(range(min = 1))]
    pub lag_threshold: i64,
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        Self {
            mode: AutoscalingMode::default(),
            target_cpu_utilization: default_target_cpu(),
            lag_threshold: default_lag_threshold(),
        }
    }
}

/// Autoscaler implementation.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AutoscalingMode {
    /// autoscaling/v2 HorizontalPodAutoscaler on CPU utilization.
    #[default]
    Hpa,
    /// KEDA ScaledObject with the Kafka trigger on consumer lag.
    Keda,
}

/// prometheus-operator ServiceMonitor settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    /// Create the ServiceMonitor (requires the prometheus-operator CRDs).
    #[serde(default)]
    pub enabled: bool,
    /// Scrape interval, e.g. `30s` or `1m30s` (Prometheus duration, largest unit first).
    #[serde(default = "default_scrape_interval")]
    #[schemars(
        length(min = 2),
        regex(pattern = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?$")
    )]
    pub interval: String,
    /// Extra labels on the ServiceMonitor, typically what your Prometheus selects on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Observed state of a StreamAnalysis.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamAnalysisStatus {
    /// Current number of processor replicas.
    #[serde(default)]
    pub replicas: i32,
    /// Number of processor replicas passing their readiness check.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Partition count of the topic; absent while unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// Topic being consumed (resolved through `probeRef` when used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Consumer group in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_group: Option<String>,
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Current state: `Ready`, `Progressing` and `Degraded`, each with a reason and message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Kafka connection settings shared by probes (producers) and processors (consumers).
// The credentials rule iterates the fixed list and does map lookups, not the user's keys:
// map keys have no maxLength, so iterating them would blow the API server's CEL cost budget.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.properties) || ['sasl.username', 'sasl.password', 'ssl.key.password', 'ssl.key.pem', 'ssl.certificate.pem', 'ssl.keystore.password', 'sasl.oauthbearer.client.secret'].all(p, !(p in self.properties))").message("credentials must not be set in kafka.properties; use kafka.sasl / kafka.tls Secret references"))]
#[serde(rename_all = "camelCase")]
pub struct KafkaSpec {
    /// Bootstrap brokers as `host:port`.
    #[schemars(
        length(min = 1, max = 32),
        inner(regex(pattern = r"^[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}$")),
        extend("x-kubernetes-list-type" = "set")
    )]
    pub bootstrap_servers: Vec<String>,

    /// Topic carrying the captured packets.
    #[serde(default = "default_topic")]
    #[schemars(regex(pattern = r"^[a-zA-Z0-9._-]{1,249}$"))]
    pub topic: String,

    /// TLS to the brokers, with the CA (and optionally a client certificate) from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<KafkaTls>,

    /// SASL authentication with username and password from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<KafkaSasl>,

    /// Extra librdkafka properties, e.g. `compression.type: lz4`. Credentials are rejected here;
    /// use `tls` and `sasl`.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 64))]
    pub properties: BTreeMap<String, String>,
}

/// TLS material for Kafka, read from a Secret in the same namespace. Mounted read-only into the
/// pods at `/etc/netstream/kafka-tls/`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.certKey) == has(self.keyKey)").message("set both certKey and keyKey for a client certificate, or neither"))]
#[serde(rename_all = "camelCase")]
pub struct KafkaTls {
    /// Name of the Secret holding the TLS material.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// Key of the CA certificate (PEM) in the Secret.
    #[serde(default = "default_ca_key")]
    #[schemars(length(min = 1))]
    pub ca_key: String,
    /// Key of the client certificate (PEM) in the Secret, for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub cert_key: Option<String>,
    /// Key of the client private key (PEM) in the Secret, for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub key_key: Option<String>,
}

/// SASL credentials for Kafka, read from a Secret in the same namespace and passed to the pods
/// as `NETSTREAM_KAFKA_SASL_USERNAME` / `NETSTREAM_KAFKA_SASL_PASSWORD` environment variables.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSasl {
    /// SASL mechanism.
    #[serde(default)]
    pub mechanism: SaslMechanism,
    /// Name of the Secret holding the credentials.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// Key of the username in the Secret.
    #[serde(default = "default_username_key")]
    #[schemars(length(min = 1))]
    pub username_key: String,
    /// Key of the password in the Secret.
    #[serde(default = "default_password_key")]
    #[schemars(length(min = 1))]
    pub password_key: String,
}

/// SASL mechanism (librdkafka `sasl.mechanisms`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SaslMechanism {
    /// PLAIN (only sensible together with TLS).
    #[serde(rename = "PLAIN")]
    Plain,
    /// SCRAM-SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// SCRAM-SHA-512.
    #[default]
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// The librdkafka spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_workload_expiry() -> String {
    "10m".to_string()
}
fn default_snaplen() -> i32 {
    262144
}
fn default_metrics_port() -> i32 {
    9090
}
fn default_max_unavailable() -> i32 {
    1
}
fn default_min_replicas() -> i32 {
    1
}
fn default_max_replicas() -> i32 {
    4
}
fn default_target_cpu() -> i32 {
    70
}
fn default_lag_threshold() -> i64 {
    1000
}
fn default_topic() -> String {
    DEFAULT_TOPIC.to_string()
}
fn default_scrape_interval() -> String {
    "30s".to_string()
}
fn default_ca_key() -> String {
    "ca.crt".to_string()
}
fn default_username_key() -> String {
    "username".to_string()
}
fn default_password_key() -> String {
    "password".to_string()
}

impl KafkaSpec {
    /// A plain-text Kafka spec with default topic, for tests and examples.
    pub fn plain(bootstrap_servers: &[&str]) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.iter().map(|s| s.to_string()).collect(),
            topic: default_topic(),
            tls: None,
            sasl: None,
            properties: BTreeMap::new(),
        }
    }
}
