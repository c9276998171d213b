//! Desired-state builders tested by value over a matrix of specs, and every emitted object
//! validated with `kubernetes-validate --strict` (Kubernetes 1.33 and 1.37) or, for KEDA and
//! prometheus-operator kinds that have no upstream schema, against the structural schemas in
//! `tests/schemas/`.

mod common;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use netstream_operator::crd::*;
use netstream_operator::defaults::Defaults;
use netstream_operator::desired::processor::{Source, replica_bounds};
use netstream_operator::desired::{autoscaling, probe, processor, rbac, resources};
use netstream_operator::kafka;
use serde_json::{Value, json};

use common::fixtures::*;
use common::tools::tools;

fn v<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn source_of(sa: &StreamAnalysis, partitions: Option<i32>) -> Source {
    let kafka = sa
        .spec
        .kafka
        .clone()
        .unwrap_or_else(|| full_probe_spec().kafka);
    Source { kafka, partitions }
}

#[test]
fn minimal_probe_daemonset_by_value() {
    let np = netprobe("edge", minimal_probe_spec());
    let ds = v(&probe::daemonset(&np, &Defaults::default()));
    let labels = json!({
        "app.kubernetes.io/name": "netstream-probe",
        "app.kubernetes.io/instance": "edge",
        "app.kubernetes.io/component": "probe",
        "app.kubernetes.io/part-of": "netstream",
        "app.kubernetes.io/managed-by": "netstream-operator",
    });
    let probe_http = |path: &str, period: i32| {
        json!({
            "httpGet": {"path": path, "port": "metrics"},
            "periodSeconds": period, "timeoutSeconds": 2, "failureThreshold": 3,
        })
    };
    let expected = json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {
            "name": "edge-probe",
            "namespace": "netstream",
            "labels": labels,
            "ownerReferences": [{
                "apiVersion": "netstream.dev/v1alpha1", "kind": "NetProbe", "name": "edge",
                "uid": "uid-np-edge", "controller": true,
            }],
        },
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "netstream-probe", "app.kubernetes.io/instance": "edge"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": "edge-probe",
                    "automountServiceAccountToken": false,
                    "hostNetwork": true,
                    "dnsPolicy": "ClusterFirstWithHostNet",
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "terminationGracePeriodSeconds": 30,
                    "containers": [{
                        "name": "probe",
                        "image": format!("ghcr.io/netstream-dev/netstream-probe:{}", env!("CARGO_PKG_VERSION")),
                        "args": ["--brokers", "kafka:9092", "--topic", "netstream.packets",
                                 "--interface", "eth0", "--snaplen", "262144",
                                 "--metrics-addr", "0.0.0.0:9090"],
                        "env": [{"name": "NETSTREAM_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                        "ports": [{"name": "metrics", "containerPort": 9090, "hostPort": 9090, "protocol": "TCP"}],
                        "livenessProbe": probe_http("/healthz", 10),
                        "readinessProbe": probe_http("/readyz", 5),
                        "resources": {
                            "limits": {"memory": "512Mi"},
                            "requests": {"cpu": "100m", "memory": "128Mi"},
                        },
                        "securityContext": {
                            "runAsUser": 0,
                            "runAsNonRoot": false,
                            "allowPrivilegeEscalation": false,
                            "privileged": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"], "add": ["NET_RAW", "NET_ADMIN"]},
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                    }],
                },
            },
        },
    });
    assert_eq!(ds, expected);
}

#[test]
fn full_probe_daemonset_carries_every_spec_field() {
    let np = netprobe("full", full_probe_spec());
    let ds = probe::daemonset(&np, &Defaults::default());
    let pod = ds.spec.template.spec.clone().unwrap();
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("registry.example/probe:dev"));
    assert_eq!(
        c.args.clone().unwrap(),
        strs(&[
            "--brokers",
            "kafka-0:9093,kafka-1:9093",
            "--topic",
            "packets.secure",
            "--producer-config",
            "security.protocol=SASL_SSL",
            "--producer-config",
            "sasl.mechanisms=SCRAM-SHA-512",
            "--producer-config",
            "ssl.ca.location=/etc/netstream/kafka-tls/ca.crt",
            "--producer-config",
            "ssl.certificate.location=/etc/netstream/kafka-tls/tls.crt",
            "--producer-config",
            "ssl.key.location=/etc/netstream/kafka-tls/tls.key",
            "--producer-config",
            "compression.type=lz4",
            "--interface",
            "eth0",
            "--interface",
            "eth1",
            "--filter",
            "tcp port 443",
            "--snaplen",
            "128",
            "--promiscuous",
            "--sampling",
            "10",
            "--metrics-addr",
            "0.0.0.0:9100",
        ])
    );
    assert_eq!(v(&pod.node_selector), json!({"kubernetes.io/os": "linux"}));
    assert_eq!(
        v(&pod.tolerations),
        json!([{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}])
    );
    // A CPU limit without request gets an equal request (what Kubernetes would default).
    assert_eq!(
        v(&c.resources),
        json!({"limits": {"cpu": "1"}, "requests": {"cpu": "1"}})
    );
    assert_eq!(
        v(&c.ports.as_ref().unwrap()[0]),
        json!({"name": "metrics", "containerPort": 9100, "hostPort": 9100, "protocol": "TCP"})
    );
    assert_eq!(
        v(&ds
            .spec
            .update_strategy
            .unwrap()
            .rolling_update
            .unwrap()
            .max_unavailable),
        json!(2)
    );
    // Credentials only by reference.
    let env = v(&c.env);
    assert_eq!(
        env[1],
        json!({"name": "NETSTREAM_KAFKA_SASL_USERNAME", "valueFrom": {"secretKeyRef": {"name": "kafka-user", "key": "username", "optional": false}}})
    );
    assert_eq!(
        env[2],
        json!({"name": "NETSTREAM_KAFKA_SASL_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "kafka-user", "key": "password", "optional": false}}})
    );
    assert_eq!(
        v(&pod.volumes),
        json!([{"name": "kafka-tls", "secret": {
        "secretName": "kafka-tls", "defaultMode": 0o440, "optional": false,
        "items": [{"key": "ca.crt", "path": "ca.crt"}, {"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}]}}])
    );
    assert_eq!(
        v(&c.volume_mounts),
        json!([{"name": "kafka-tls", "mountPath": "/etc/netstream/kafka-tls", "readOnly": true}])
    );
}

#[test]
fn no_secret_value_ever_reaches_a_pod_spec() {
    // Secret data never passes through the builders; assert that no object mentions a
    // password-like property inline either.
    for (_, np) in probe_matrix() {
        let text = serde_json::to_string(&probe::daemonset(&np, &Defaults::default())).unwrap();
        assert!(
            !text.contains("sasl.password") && !text.contains("sasl.username"),
            "{text}"
        );
    }
}

#[test]
fn kafka_security_protocol_matrix() {
    let mut k = KafkaSpec::plain(&["k:1"]);
    assert_eq!(kafka::security_protocol(&k), "PLAINTEXT");
    assert!(
        kafka::wiring(&k, "--x").args.iter().all(|a| a != "--x"),
        "plaintext needs no client config"
    );
    k.tls = Some(tls());
    assert_eq!(kafka::security_protocol(&k), "SSL");
    k.sasl = Some(sasl());
    assert_eq!(kafka::security_protocol(&k), "SASL_SSL");
    k.tls = None;
    assert_eq!(kafka::security_protocol(&k), "SASL_PLAINTEXT");
    // Same Secret for TLS and SASL is checked once with all keys.
    let mut both = kafka_secure();
    both.sasl.as_mut().unwrap().secret_name = "kafka-tls".into();
    assert_eq!(
        kafka::referenced_secrets(&both),
        vec![(
            "kafka-tls".to_string(),
            strs(&["ca.crt", "tls.crt", "tls.key", "username", "password"])
        )]
    );
}

#[test]
fn processor_deployment_by_value() {
    let sa = analysis("flows", minimal_analysis_spec());
    let dep = processor::deployment(&sa, &source_of(&sa, None), &Defaults::default());
    assert_eq!(dep.spec.replicas, None, "the autoscaler owns replicas");
    let pod = dep.spec.template.spec.clone().unwrap();
    let c = &pod.containers[0];
    assert_eq!(
        c.args.clone().unwrap(),
        strs(&[
            "--brokers",
            "kafka:9092",
            "--topic",
            "netstream.packets",
            "--group",
            "netstream.netstream.flows",
            "--metrics-addr",
            "0.0.0.0:9090",
            "--config",
            "/etc/netstream/config/processor.yaml"
        ])
    );
    assert_eq!(
        v(&pod.security_context),
        json!({
        "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"}})
    );
    assert_eq!(
        v(&c.security_context),
        json!({
        "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
        "allowPrivilegeEscalation": false, "privileged": false, "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}})
    );
    assert_eq!(pod.host_network, None);
    assert_eq!(
        pod.automount_service_account_token,
        Some(true),
        "enrichment (on by default) reads the API with the pod's token"
    );
    assert_eq!(
        processor::service_account(&sa).automount_service_account_token,
        Some(false),
        "the ServiceAccount itself never automounts"
    );
    assert_eq!(
        v(&c.readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path),
        json!("/readyz")
    );
    assert_eq!(
        v(&c.liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path),
        json!("/healthz")
    );
    assert_eq!(
        v(&dep.spec.selector),
        json!({"matchLabels": {"app.kubernetes.io/name": "netstream-processor", "app.kubernetes.io/instance": "flows"}})
    );
    assert_eq!(
        dep.metadata.owner_references.unwrap()[0].uid,
        "uid-sa-flows"
    );
}

/// The config file follows the processor's contract: `flows` by default, `workloads` (and
/// the enrichment section, mode kubernetes) with it when enrichment is on, the older
/// `maxFlows`/`flowIdleTimeout` fields in `analyses.flows`; the pods get an API token only for
/// enrichment, and their template carries the file's hash so an edit rolls them.
#[test]
fn processor_config_by_value_and_token() {
    let matrix: BTreeMap<&str, StreamAnalysis> = analysis_matrix().into_iter().collect();
    let config = |n: &str| serde_json::to_value(processor::config(&matrix[n])).unwrap();
    let token = |n: &str| {
        let sa = &matrix[n];
        processor::deployment(sa, &source_of(sa, None), &Defaults::default())
            .spec
            .template
            .spec
            .unwrap()
            .automount_service_account_token
    };
    assert_eq!(
        config("minimal"),
        json!({
            "analyses": {"flows": {}, "workloads": {"expiry": "10m"}},
            "enrichment": {"mode": "kubernetes"},
        })
    );
    assert_eq!(token("minimal"), Some(true));
    assert_eq!(
        config("keda-secure"),
        json!({"analyses": {"flows": {"maxFlows": 100000, "idleTimeout": "2m"}}}),
        "enrichment disabled: no workloads, no enrichment section"
    );
    assert_eq!(
        token("keda-secure"),
        Some(false),
        "no token without enrichment"
    );
    assert_eq!(
        config("monitored"),
        json!({
            "analyses": {"flows": {"podLabels": true}, "workloads": {"expiry": "30m"}},
            "enrichment": {
                "mode": "kubernetes",
                "namespaces": ["shop", "payments"],
                "subnetLabels": [
                    {"cidr": "10.20.0.0/16", "name": "office"},
                    {"cidr": "2001:db8::/32", "name": "partner_v6"},
                ],
            },
        })
    );
    // spec.analyses wins over the older fields and is taken as given.
    let mut sa = matrix["keda-secure"].clone();
    sa.spec.analyses = Some(
        serde_json::from_value(json!({"flows": {"maxFlows": 7}, "branch": {"topicPrefix": "b"}}))
            .unwrap(),
    );
    assert_eq!(
        serde_json::to_value(processor::config(&sa)).unwrap(),
        json!({"analyses": {"flows": {"maxFlows": 7, "idleTimeout": "2m"}, "branch": {"topicPrefix": "b"}}})
    );

    for (name, sa) in &matrix {
        let args = processor::args(sa, &source_of(sa, None));
        assert!(
            args.ends_with(&strs(&["--config", "/etc/netstream/config/processor.yaml"])),
            "{name}: {args:?}"
        );
        let cm = processor::config_map(sa);
        assert_eq!(
            cm.metadata.name.as_deref(),
            Some(format!("{name}-processor-config").as_str())
        );
        let dep = processor::deployment(sa, &source_of(sa, None), &Defaults::default());
        let template = dep.spec.template;
        assert_eq!(
            template.metadata.unwrap().annotations.unwrap()["netstream.dev/config-hash"],
            processor::config_hash(sa)
        );
        let pod = template.spec.unwrap();
        let volume = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "config")
            .expect("config volume");
        assert_eq!(
            volume.config_map.unwrap().name,
            format!("{name}-processor-config")
        );
    }
    // A changed setting changes the hash (the Deployment rolls); an unchanged one does not.
    let mut edited = matrix["minimal"].clone();
    assert_eq!(
        processor::config_hash(&edited),
        processor::config_hash(&matrix["minimal"])
    );
    edited.spec.max_flows = Some(5);
    assert_ne!(
        processor::config_hash(&edited),
        processor::config_hash(&matrix["minimal"])
    );
}

/// What `spec.analyses` may hold that the processors would refuse is a condition message
/// naming the fix, before anything rolls out.
#[test]
fn processor_config_problems_name_the_fix() {
    let matrix: BTreeMap<&str, StreamAnalysis> = analysis_matrix().into_iter().collect();
    for (base, analyses, want) in [
        (
            "keda-secure",
            json!({"flows": {}, "workloads": {}}),
            "needs spec.enrichment.enabled",
        ),
        ("minimal", json!({"workloads": {}}), "needs flows"),
        ("minimal", json!({}), "names no analysis"),
        (
            "minimal",
            json!({"flows": {}, "branch": {"topicPrefix": "b", "producerConfig": {"sasl.password": "x"}}}),
            "NETSTREAM_KAFKA_SASL_PASSWORD",
        ),
    ] {
        let mut sa = matrix[base].clone();
        sa.spec.analyses = Some(serde_json::from_value(analyses.clone()).unwrap());
        let problem = processor::config_problem(&sa).unwrap_or_default();
        assert!(problem.contains(want), "{analyses}: {problem:?}");
    }
    for sa in matrix.values() {
        assert_eq!(processor::config_problem(sa), None);
    }
}

/// Every StreamAnalysis of the matrix and of `manifests/examples/`, rendered by the operator
/// (container arguments and the ConfigMap's file), goes through the processor's own flag
/// parsing, config file reading and analysis selection, and comes out with the settings the CR
/// asked for.
#[test]
fn every_rendered_config_starts_the_processor() {
    use netstream_processor::analysis::registry;
    use netstream_processor::settings::{Settings, parse_args};
    let mut cases: Vec<(String, StreamAnalysis)> = analysis_matrix()
        .into_iter()
        .map(|(n, sa)| (n.to_string(), sa))
        .collect();
    let dir = common::tools::repo_root()
        .join("manifests")
        .join("examples");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let doc: Value = serde::Deserialize::deserialize(doc).unwrap();
            if doc["kind"] == "StreamAnalysis" {
                let sa: StreamAnalysis = serde_json::from_value(doc).unwrap();
                cases.push((path.display().to_string(), sa));
            }
        }
    }
    assert!(cases.len() >= 5, "{}", cases.len());
    let tmp = tempfile::tempdir().unwrap();
    for (name, sa) in cases {
        let source = source_of(&sa, None);
        let file = tmp.path().join("processor.yaml");
        let cm = processor::config_map(&sa);
        std::fs::write(&file, &cm.data.unwrap()["processor.yaml"]).unwrap();
        let mut argv = vec!["netstream-processor".to_string()];
        argv.extend(processor::args(&sa, &source));
        let config_arg = argv.iter().position(|a| a == "--config").unwrap() + 1;
        argv[config_arg] = file.display().to_string();
        let (args, explicit) = parse_args(&argv).unwrap_or_else(|e| panic!("{name}: {e}"));
        let s = Settings::load(&args, &explicit).unwrap_or_else(|e| panic!("{name}: {e}"));
        registry::select(registry::ANALYSES, &s.analyses).unwrap_or_else(|e| panic!("{name}: {e}"));
        s.check_analyses().unwrap_or_else(|e| panic!("{name}: {e}"));

        let e = &sa.spec.enrichment;
        let want: Vec<&str> = if e.enabled {
            vec!["flows", "workloads"]
        } else {
            vec!["flows"]
        };
        assert_eq!(s.analyses, want, "{name}");
        let flows = sa
            .spec
            .analyses
            .as_ref()
            .and_then(|a| a.flows.clone())
            .unwrap_or_default();
        let max_flows = flows
            .max_flows
            .or(sa.spec.max_flows.map(|n| n as u64))
            .unwrap_or(100_000);
        assert_eq!(s.max_flows as u64, max_flows, "{name}");
        let idle = flows
            .idle_timeout
            .or(sa.spec.flow_idle_timeout.clone())
            .unwrap_or("5m".into());
        assert_eq!(
            s.flow_idle_timeout,
            netstream_runtime::duration::parse_duration(&idle).unwrap(),
            "{name}"
        );
        assert_eq!(
            s.enrichment,
            if e.enabled {
                netstream_processor::cli::EnrichmentMode::Kubernetes
            } else {
                netstream_processor::cli::EnrichmentMode::Off
            },
            "{name}"
        );
        if e.enabled {
            assert_eq!(s.enrichment_namespaces, e.namespaces, "{name}");
            assert_eq!(
                s.subnet_labels
                    .iter()
                    .map(|l| l.name.clone())
                    .collect::<Vec<_>>(),
                e.subnet_labels
                    .iter()
                    .map(|l| l.name.clone())
                    .collect::<Vec<_>>(),
                "{name}"
            );
            assert_eq!(s.flow_pod_labels, e.pod_names, "{name}");
            assert_eq!(
                s.workload_expiry,
                netstream_runtime::duration::parse_duration(&e.workload_expiry).unwrap(),
                "{name}"
            );
        }
        assert_eq!(s.branch_topic_prefix, None, "{name}");
    }
}

/// Cluster-wide: one ClusterRoleBinding to the reader role. Namespaced: a RoleBinding of the
/// reader ClusterRole per namespace plus the nodes-only ClusterRoleBinding. Disabled: none.
#[test]
fn enrichment_bindings_by_value() {
    let matrix: BTreeMap<&str, StreamAnalysis> = analysis_matrix().into_iter().collect();
    let labels = json!({
        "app.kubernetes.io/name": "netstream-processor",
        "app.kubernetes.io/instance": "minimal",
        "app.kubernetes.io/component": "processor",
        "app.kubernetes.io/part-of": "netstream",
        "app.kubernetes.io/managed-by": "netstream-operator",
        "netstream.dev/owner-namespace": NS,
    });
    let cluster_wide = rbac::bindings(&matrix["minimal"]);
    assert!(cluster_wide.namespaced.is_empty());
    assert_eq!(
        v(&cluster_wide.cluster),
        json!([{
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "netstream-processor-reader:netstream:minimal", "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "netstream-processor-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "minimal-processor", "namespace": NS}]
        }])
    );
    assert_eq!(
        rbac::owner_selector(&matrix["minimal"]),
        "app.kubernetes.io/managed-by=netstream-operator,app.kubernetes.io/component=processor,app.kubernetes.io/instance=minimal,netstream.dev/owner-namespace=netstream"
    );

    let namespaced = rbac::bindings(&matrix["monitored"]);
    assert_eq!(namespaced.cluster.len(), 1);
    assert_eq!(
        namespaced.cluster[0].role_ref.name, "netstream-processor-nodes",
        "nodes are cluster-scoped"
    );
    let rbs: Vec<(String, String, String)> = namespaced
        .namespaced
        .iter()
        .map(|rb| {
            (
                rb.metadata.namespace.clone().unwrap(),
                rb.role_ref.kind.clone(),
                rb.role_ref.name.clone(),
            )
        })
        .collect();
    let reader = |ns: &str| {
        (
            ns.to_string(),
            "ClusterRole".to_string(),
            "netstream-processor-reader".to_string(),
        )
    };
    assert_eq!(rbs, [reader("payments"), reader("shop")]);
    for rb in &namespaced.namespaced {
        assert!(
            rb.metadata.owner_references.is_none(),
            "cross-namespace: no owner"
        );
        assert_eq!(
            rb.subjects.as_ref().unwrap()[0].namespace.as_deref(),
            Some(NS),
            "the subject stays in the StreamAnalysis' namespace"
        );
    }

    assert_eq!(
        rbac::bindings(&matrix["keda-secure"]),
        rbac::Bindings::default()
    );
}

#[test]
fn keda_secure_processor_args_and_scaler() {
    let (_, sa) = analysis_matrix()
        .into_iter()
        .find(|(n, _)| *n == "keda-secure")
        .unwrap();
    let src = source_of(&sa, Some(6));
    let args = processor::args(&sa, &src);
    assert_eq!(
        args,
        strs(&[
            "--brokers",
            "kafka-0:9093,kafka-1:9093",
            "--topic",
            "packets.secure",
            "--consumer-config",
            "security.protocol=SASL_SSL",
            "--consumer-config",
            "sasl.mechanisms=SCRAM-SHA-512",
            "--consumer-config",
            "ssl.ca.location=/etc/netstream/kafka-tls/ca.crt",
            "--consumer-config",
            "ssl.certificate.location=/etc/netstream/kafka-tls/tls.crt",
            "--consumer-config",
            "ssl.key.location=/etc/netstream/kafka-tls/tls.key",
            // compression.type (a producer property) is not handed to the consumer.
            "--group",
            "flows",
            "--metrics-addr",
            "0.0.0.0:9090",
            "--config",
            "/etc/netstream/config/processor.yaml",
        ])
    );
    let so = v(&autoscaling::scaled_object(&sa, &src));
    assert_eq!(so["apiVersion"], "keda.sh/v1alpha1");
    assert_eq!(so["metadata"]["name"], "keda-secure-processor");
    assert_eq!(
        so["metadata"]["ownerReferences"][0]["uid"],
        "uid-sa-keda-secure"
    );
    assert_eq!(
        so["spec"]["scaleTargetRef"],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "keda-secure-processor"})
    );
    assert_eq!(so["spec"]["minReplicaCount"], 2);
    assert_eq!(so["spec"]["maxReplicaCount"], 6, "capped at 6 partitions");
    assert_eq!(
        so["spec"]["triggers"][0],
        json!({
            "type": "kafka",
            "metadata": {
                "bootstrapServers": "kafka-0:9093,kafka-1:9093", "consumerGroup": "flows",
                "topic": "packets.secure", "lagThreshold": "5000", "offsetResetPolicy": "latest",
                "sasl": "scram_sha512", "tls": "enable",
            },
            "authenticationRef": {"name": "keda-secure-processor-kafka"},
        })
    );
    let ta = v(&autoscaling::trigger_authentication(&sa, &src).unwrap());
    assert_eq!(
        ta["spec"]["secretTargetRef"],
        json!([
            {"parameter": "username", "name": "kafka-user", "key": "username"},
            {"parameter": "password", "name": "kafka-user", "key": "password"},
            {"parameter": "ca", "name": "kafka-tls", "key": "ca.crt"},
            {"parameter": "cert", "name": "kafka-tls", "key": "tls.crt"},
            {"parameter": "key", "name": "kafka-tls", "key": "tls.key"},
        ])
    );
    let plain = analysis("plain", minimal_analysis_spec());
    assert!(autoscaling::trigger_authentication(&plain, &source_of(&plain, None)).is_none());
}

#[test]
fn hpa_by_value() {
    let (_, sa) = analysis_matrix()
        .into_iter()
        .find(|(n, _)| *n == "monitored")
        .unwrap();
    let hpa = v(&autoscaling::hpa(&sa, &source_of(&sa, None)));
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(
        hpa["spec"],
        json!({
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "monitored-processor"},
            "minReplicas": 1, "maxReplicas": 4,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}],
        })
    );
}

#[test]
fn replica_bounds_cap_at_partitions() {
    let mut spec = minimal_analysis_spec();
    spec.min_replicas = 3;
    spec.max_replicas = 12;
    let sa = analysis("b", spec);
    assert_eq!(
        replica_bounds(&sa, None),
        (3, 12),
        "unknown partitions: spec bounds"
    );
    assert_eq!(
        replica_bounds(&sa, Some(0)),
        (3, 12),
        "zero partitions means unknown"
    );
    assert_eq!(replica_bounds(&sa, Some(24)), (3, 12));
    assert_eq!(replica_bounds(&sa, Some(8)), (3, 8));
    assert_eq!(
        replica_bounds(&sa, Some(2)),
        (2, 2),
        "min follows the cap down"
    );
}

#[test]
fn resources_defaults_and_cpu_request() {
    let d = resources(None);
    assert_eq!(
        v(&d),
        json!({"limits": {"memory": "512Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}})
    );
    let user = ResourceRequirements {
        requests: Some(BTreeMap::from([("memory".into(), Quantity("1Gi".into()))])),
        ..Default::default()
    };
    assert_eq!(
        v(&resources(Some(&user))),
        json!({"requests": {"cpu": "100m", "memory": "1Gi"}})
    );
}

#[test]
fn service_and_service_monitor() {
    let (_, sa) = analysis_matrix()
        .into_iter()
        .find(|(n, _)| *n == "monitored")
        .unwrap();
    let svc = v(&processor::service(&sa));
    assert_eq!(svc["metadata"]["name"], "monitored-processor-metrics");
    assert_eq!(
        svc["spec"],
        json!({
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": "netstream-processor", "app.kubernetes.io/instance": "monitored"},
            "ports": [{"name": "metrics", "port": 9200, "targetPort": "metrics", "protocol": "TCP"}],
        })
    );
    let sm = v(&processor::service_monitor(&sa).unwrap());
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(
        sm["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "netstream-operator"
    );
    assert_eq!(
        sm["spec"]["selector"]["matchLabels"], svc["spec"]["selector"],
        "selects the metrics Service by its labels"
    );
    for (k, val) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            &svc["metadata"]["labels"][k], val,
            "Service carries selector label {k}"
        );
    }
    assert_eq!(
        sm["spec"]["endpoints"],
        json!([{"port": "metrics", "path": "/metrics", "interval": "15s"}])
    );
    let plain = analysis("plain", minimal_analysis_spec());
    assert!(processor::service_monitor(&plain).is_none());
}

/// `(label, JSON)` of objects with an upstream schema.
type CoreObjects = Vec<(String, Value)>;
/// `(label, schema file, JSON)` of third-party objects.
type ThirdPartyObjects = Vec<(String, &'static str, Value)>;

/// Every object the builders emit for the matrix.
fn all_objects() -> (CoreObjects, ThirdPartyObjects) {
    let d = Defaults::default();
    let mut core = Vec::new();
    let mut third = Vec::new();
    for (name, np) in probe_matrix() {
        core.push((format!("probe-{name}-sa"), v(&probe::service_account(&np))));
        core.push((format!("probe-{name}-ds"), v(&probe::daemonset(&np, &d))));
    }
    for (name, sa) in analysis_matrix() {
        for partitions in [None, Some(3)] {
            let src = source_of(&sa, partitions);
            let p = partitions
                .map(|p| p.to_string())
                .unwrap_or("unknown".into());
            core.push((
                format!("sa-{name}-{p}-hpa"),
                v(&autoscaling::hpa(&sa, &src)),
            ));
            third.push((
                format!("sa-{name}-{p}-so"),
                "scaledobject.json",
                v(&autoscaling::scaled_object(&sa, &src)),
            ));
            if let Some(ta) = autoscaling::trigger_authentication(&sa, &src) {
                third.push((
                    format!("sa-{name}-{p}-ta"),
                    "triggerauthentication.json",
                    v(&ta),
                ));
            }
        }
        let src = source_of(&sa, None);
        core.push((format!("sa-{name}-sa"), v(&processor::service_account(&sa))));
        core.push((
            format!("sa-{name}-deploy"),
            v(&processor::deployment(&sa, &src, &d)),
        ));
        core.push((format!("sa-{name}-svc"), v(&processor::service(&sa))));
        core.push((format!("sa-{name}-cm"), v(&processor::config_map(&sa))));
        if let Some(sm) = processor::service_monitor(&sa) {
            third.push((format!("sa-{name}-sm"), "servicemonitor.json", v(&sm)));
        }
        let b = rbac::bindings(&sa);
        for (i, crb) in b.cluster.iter().enumerate() {
            core.push((format!("sa-{name}-crb{i}"), v(crb)));
        }
        for (i, rb) in b.namespaced.iter().enumerate() {
            core.push((format!("sa-{name}-rb{i}"), v(rb)));
        }
    }
    (core, third)
}

#[test]
fn emitted_objects_validate_with_kubernetes_validate() {
    let Some(t) = tools("emitted_objects_validate_with_kubernetes_validate") else {
        return;
    };
    let (core, _) = all_objects();
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (label, obj) in &core {
        let path = dir.path().join(format!("{label}.yaml"));
        std::fs::write(&path, serde_yaml::to_string(obj).unwrap()).unwrap();
        files.push(path);
    }
    // A deliberately broken object proves the validator rejects things (and runs strict).
    let broken = dir.path().join("zz-broken.yaml");
    let mut bad = core
        .iter()
        .find(|(l, _)| l.ends_with("-ds"))
        .unwrap()
        .1
        .clone();
    bad["spec"]["template"]["spec"]["hostNetwrk"] = json!(true);
    std::fs::write(&broken, serde_yaml::to_string(&bad).unwrap()).unwrap();

    for version in ["1.33.0", "1.37.0"] {
        let out = std::process::Command::new(&t.kubernetes_validate)
            .args(["--strict", "-k", version])
            .args(&files)
            .output()
            .unwrap();
        let text = netstream_testkit::process::output_text(&out);
        assert!(
            out.status.success(),
            "kubernetes-validate {version} failed:\n{text}"
        );
        assert!(
            !text.contains("Couldn't find schema"),
            "missing schema counts as failure ({version}):\n{text}"
        );
        assert_eq!(
            text.matches(" passed ").count(),
            files.len(),
            "every object passed ({version}):\n{text}"
        );

        let out = std::process::Command::new(&t.kubernetes_validate)
            .args(["--strict", "-k", version])
            .arg(&broken)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "strict validation must reject an unknown field"
        );
    }
}

#[test]
fn third_party_objects_validate_structurally() {
    let Some(t) = tools("third_party_objects_validate_structurally") else {
        return;
    };
    let (_, third) = all_objects();
    let kinds: std::collections::BTreeSet<&str> = third.iter().map(|(_, s, _)| *s).collect();
    assert_eq!(
        kinds.len(),
        3,
        "matrix covers ScaledObject, TriggerAuthentication and ServiceMonitor"
    );
    let schema = |file: &str| -> Value {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join("schemas")
            .join(file);
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let cases: Vec<(String, Value, Value)> = third
        .iter()
        .map(|(l, s, o)| (l.clone(), schema(s), o.clone()))
        .collect();
    let (ok, report) = common::tools::python_schema_check(&t.python, &cases);
    assert!(ok, "{report}");
    // And the schemas are strict enough to catch a typo.
    let mut bad = third[0].2.clone();
    bad["spec"]["maxReplicaCont"] = json!(3);
    let (ok, _) =
        common::tools::python_schema_check(&t.python, &[("typo".into(), schema(third[0].1), bad)]);
    assert!(!ok);
}

/// The RBAC files and the operator's own install manifest are valid for both versions.
#[test]
fn operator_install_manifests_validate() {
    let Some(t) = tools("operator_install_manifests_validate") else {
        return;
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for version in ["1.33.0", "1.37.0"] {
        let out = std::process::Command::new(&t.kubernetes_validate)
            .args(["--strict", "-k", version])
            .arg(root.join("rbac").join("clusterrole.yaml"))
            .arg(root.join("rbac").join("processor-clusterroles.yaml"))
            .arg(root.join("deploy").join("operator.yaml"))
            .output()
            .unwrap();
        let text = netstream_testkit::process::output_text(&out);
        assert!(out.status.success(), "{version}: {text}");
        assert!(!text.contains("Couldn't find schema"), "{version}: {text}");
        assert_eq!(text.matches(" passed ").count(), 8, "{version}: {text}");
    }
}
