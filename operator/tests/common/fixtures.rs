//! CR fixtures: a matrix of specs that covers every branch of the builders.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use netstream_operator::crd::*;

pub const NS: &str = "netstream";

fn meta(name: &str, uid: &str) -> kube::api::ObjectMeta {
    kube::api::ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NS.into()),
        uid: Some(uid.into()),
        generation: Some(1),
        ..Default::default()
    }
}

pub fn netprobe(name: &str, spec: NetProbeSpec) -> NetProbe {
    let mut np = NetProbe::new(name, spec);
    np.metadata = meta(name, &format!("uid-np-{name}"));
    np
}

/// A StreamAnalysis as the API server holds it after the operator's first pass, i.e. with its
/// finalizer (so a reconcile goes straight to applying; [`analysis_new`] has none).
pub fn analysis(name: &str, spec: StreamAnalysisSpec) -> StreamAnalysis {
    let mut sa = analysis_new(name, spec);
    sa.metadata.finalizers = Some(vec![
        netstream_operator::reconcile::streamanalysis::FINALIZER.into(),
    ]);
    sa
}

/// A freshly created StreamAnalysis (no finalizer yet).
pub fn analysis_new(name: &str, spec: StreamAnalysisSpec) -> StreamAnalysis {
    let mut sa = StreamAnalysis::new(name, spec);
    sa.metadata = meta(name, &format!("uid-sa-{name}"));
    sa
}

pub fn tls() -> KafkaTls {
    KafkaTls {
        secret_name: "kafka-tls".into(),
        ca_key: "ca.crt".into(),
        cert_key: Some("tls.crt".into()),
        key_key: Some("tls.key".into()),
    }
}

pub fn sasl() -> KafkaSasl {
    KafkaSasl {
        mechanism: SaslMechanism::ScramSha512,
        secret_name: "kafka-user".into(),
        username_key: "username".into(),
        password_key: "password".into(),
    }
}

pub fn kafka_secure() -> KafkaSpec {
    let mut k = KafkaSpec::plain(&["kafka-0:9093", "kafka-1:9093"]);
    k.topic = "packets.secure".into();
    k.tls = Some(tls());
    k.sasl = Some(sasl());
    k.properties = BTreeMap::from([("compression.type".into(), "lz4".into())]);
    k
}

pub fn minimal_probe_spec() -> NetProbeSpec {
    serde_json::from_value(serde_json::json!({
        "interfaces": ["eth0"],
        "kafka": {"bootstrapServers": ["kafka:9092"]}
    }))
    .unwrap()
}

pub fn full_probe_spec() -> NetProbeSpec {
    NetProbeSpec {
        interfaces: vec!["eth0".into(), "eth1".into()],
        filter: Some("tcp port 443".into()),
        snaplen: 128,
        promiscuous: true,
        sampling: Some(10),
        node_selector: BTreeMap::from([("kubernetes.io/os".into(), "linux".into())]),
        tolerations: vec![Toleration {
            key: Some("node-role.kubernetes.io/control-plane".into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        }],
        kafka: kafka_secure(),
        image: Some("registry.example/probe:dev".into()),
        resources: Some(ResourceRequirements {
            limits: Some(BTreeMap::from([("cpu".into(), Quantity("1".into()))])),
            ..Default::default()
        }),
        metrics_port: 9100,
        max_unavailable: 2,
    }
}

/// Named NetProbe matrix.
pub fn probe_matrix() -> Vec<(&'static str, NetProbe)> {
    let mut tls_only = minimal_probe_spec();
    tls_only.kafka.tls = Some(KafkaTls {
        cert_key: None,
        key_key: None,
        ..tls()
    });
    let mut sasl_only = minimal_probe_spec();
    sasl_only.kafka.sasl = Some(KafkaSasl {
        mechanism: SaslMechanism::Plain,
        ..sasl()
    });
    vec![
        ("minimal", netprobe("minimal", minimal_probe_spec())),
        ("full", netprobe("full", full_probe_spec())),
        ("tls-only", netprobe("tls-only", tls_only)),
        ("sasl-only", netprobe("sasl-only", sasl_only)),
    ]
}

pub fn minimal_analysis_spec() -> StreamAnalysisSpec {
    serde_json::from_value(serde_json::json!({
        "kafka": {"bootstrapServers": ["kafka:9092"]}
    }))
    .unwrap()
}

/// Named StreamAnalysis matrix.
pub fn analysis_matrix() -> Vec<(&'static str, StreamAnalysis)> {
    let minimal = minimal_analysis_spec();
    let mut keda = minimal_analysis_spec();
    keda.kafka = Some(kafka_secure());
    keda.autoscaling.mode = AutoscalingMode::Keda;
    keda.autoscaling.lag_threshold = 5000;
    keda.min_replicas = 2;
    keda.max_replicas = 10;
    keda.max_flows = Some(100_000);
    keda.flow_idle_timeout = Some("2m".into());
    keda.consumer_group = Some("flows".into());
    keda.enrichment.enabled = false;
    let mut monitored = minimal_analysis_spec();
    monitored.kafka = None;
    monitored.probe_ref = Some(ProbeRef {
        name: "full".into(),
    });
    monitored.service_monitor = Some(ServiceMonitorSpec {
        enabled: true,
        interval: "15s".into(),
        labels: BTreeMap::from([("release".into(), "prometheus".into())]),
    });
    monitored.resources = Some(ResourceRequirements {
        requests: Some(BTreeMap::from([("memory".into(), Quantity("1Gi".into()))])),
        ..Default::default()
    });
    monitored.image = Some("registry.example/processor:dev".into());
    monitored.metrics_port = 9200;
    monitored.autoscaling.target_cpu_utilization = 50;
    monitored.enrichment = EnrichmentSpec {
        enabled: true,
        namespaces: vec!["shop".into(), "payments".into()],
        subnet_labels: vec![
            SubnetLabel {
                cidr: "10.20.0.0/16".into(),
                name: "office".into(),
            },
            SubnetLabel {
                cidr: "2001:db8::/32".into(),
                name: "partner_v6".into(),
            },
        ],
        pod_names: true,
        workload_expiry: "30m".into(),
    };
    vec![
        ("minimal", analysis("minimal", minimal)),
        ("keda-secure", analysis("keda-secure", keda)),
        ("monitored", analysis("monitored", monitored)),
    ]
}
