//! StreamAnalysis → ServiceAccount + config ConfigMap + Deployment + metrics Service
//! (+ ServiceMonitor).
//! The RBAC bindings for enrichment are in [`super::rbac`].

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, PodSecurityContext, PodSpec,
    PodTemplateSpec, SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use netstream_config::{
    Analyses, EnrichmentConfig, EnrichmentMode, FlowsConfig, ProcessorConfig, WorkloadsConfig,
};

use super::thirdparty::{Endpoint, ServiceMonitor, ServiceMonitorSpec};
use super::{
    METRICS_PORT_NAME, capabilities, child_name, http_probe, metrics_port, resources,
    runtime_default_seccomp,
};
use crate::crd::{KafkaSpec, StreamAnalysis};
use crate::defaults::Defaults;
use crate::kafka;
use crate::labels::{Component, child_meta, labels, selector_labels};

/// Unprivileged uid/gid of the processor (the distroless "nonroot" user).
pub const NONROOT_ID: i64 = 65532;

/// What the processor builders need besides the CR: the Kafka settings after resolving
/// `probeRef`, and the topic's partition count when known.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    /// Effective Kafka settings.
    pub kafka: KafkaSpec,
    /// Partition count of the topic, if known.
    pub partitions: Option<i32>,
}

/// Name of the Deployment, ServiceAccount and autoscaler.
pub fn name(sa: &StreamAnalysis) -> String {
    child_name(&sa.name_any(), Component::Processor)
}

/// Name of the metrics Service.
pub fn service_name(sa: &StreamAnalysis) -> String {
    format!("{}-metrics", name(sa))
}

/// Consumer group: the spec's, or `netstream.<namespace>.<name>` so two StreamAnalyses never
/// share offsets by accident.
pub fn consumer_group(sa: &StreamAnalysis) -> String {
    sa.spec.consumer_group.clone().unwrap_or_else(|| {
        format!(
            "netstream.{}.{}",
            sa.namespace().unwrap_or_else(|| "default".into()),
            sa.name_any()
        )
    })
}

/// `(min, max)` replicas: max is capped at the partition count (a consumer group cannot use
/// more consumers than partitions), and min never exceeds max.
pub fn replica_bounds(sa: &StreamAnalysis, partitions: Option<i32>) -> (i32, i32) {
    let max = match partitions {
        Some(p) if p > 0 => sa.spec.max_replicas.min(p),
        _ => sa.spec.max_replicas,
    };
    let max = max.max(1);
    (sa.spec.min_replicas.clamp(1, max), max)
}

/// The processor's ServiceAccount.
pub fn service_account(sa: &StreamAnalysis) -> ServiceAccount {
    super::service_account(sa, Component::Processor, name(sa))
}

/// Name of the ConfigMap holding the processor's config file.
pub fn config_map_name(sa: &StreamAnalysis) -> String {
    format!("{}-config", name(sa))
}

/// Path of the config file inside the processor's container.
pub fn config_path() -> String {
    format!(
        "{}/{}",
        netstream_config::MOUNT_DIR,
        netstream_config::FILE_NAME
    )
}

/// The processor's config file: `spec.analyses` (default `flows`) with `workloads` added to
/// `flows` when enrichment is enabled, the older `spec.maxFlows` / `spec.flowIdleTimeout`
/// filling what `analyses.flows` leaves unset, and the enrichment section (mode kubernetes)
/// whenever `workloads` runs.
pub fn config(sa: &StreamAnalysis) -> ProcessorConfig {
    let spec = &sa.spec;
    let e = &spec.enrichment;
    let mut analyses = spec.analyses.clone().unwrap_or_else(|| Analyses {
        flows: Some(FlowsConfig::default()),
        ..Analyses::default()
    });
    if e.enabled && analyses.flows.is_some() && analyses.workloads.is_none() {
        analyses.workloads = Some(WorkloadsConfig::default());
    }
    if let Some(f) = analyses.flows.as_mut() {
        f.max_flows = f
            .max_flows
            .or(spec.max_flows.and_then(|n| u64::try_from(n).ok()));
        f.idle_timeout = f.idle_timeout.clone().or(spec.flow_idle_timeout.clone());
        if e.enabled && e.pod_names && f.pod_labels.is_none() {
            f.pod_labels = Some(true);
        }
    }
    let enrichment = analyses.workloads.as_mut().map(|w| {
        w.expiry.get_or_insert_with(|| e.workload_expiry.clone());
        EnrichmentConfig {
            mode: EnrichmentMode::Kubernetes,
            identity_file: None,
            namespaces: e.namespaces.clone(),
            subnet_labels: e
                .subnet_labels
                .iter()
                .map(|s| netstream_config::SubnetLabel {
                    cidr: s.cidr.clone(),
                    name: s.name.clone(),
                })
                .collect(),
            sync_timeout: None,
        }
    });
    ProcessorConfig {
        analyses: Some(analyses),
        enrichment,
    }
}

/// What in `spec.analyses` the processors would refuse at start, as the condition to report.
pub fn config_problem(sa: &StreamAnalysis) -> Option<String> {
    let config = config(sa);
    let analyses = config.analyses.as_ref()?;
    if analyses.workloads.is_some() && !sa.spec.enrichment.enabled {
        return Some(
            "spec.analyses.workloads needs spec.enrichment.enabled: true; enable enrichment or remove workloads".into(),
        );
    }
    if analyses.workloads.is_some() && analyses.flows.is_none() {
        return Some(
            "spec.analyses.workloads needs flows: add `flows: {}` to spec.analyses".into(),
        );
    }
    if analyses.names().is_empty() {
        return Some("spec.analyses names no analysis: add at least `flows: {}`".into());
    }
    config.check().err().map(|e| format!("spec.analyses: {e}"))
}

/// The ConfigMap with the processor's config file.
pub fn config_map(sa: &StreamAnalysis) -> ConfigMap {
    ConfigMap {
        metadata: child_meta(sa, Component::Processor, config_map_name(sa)),
        data: Some(BTreeMap::from([(
            netstream_config::FILE_NAME.to_string(),
            config(sa).to_yaml(),
        )])),
        ..ConfigMap::default()
    }
}

/// A ConfigMap edit does not restart pods: the Deployment's pod template carries this hash of
/// the file, so a changed config rolls the processors.
pub fn config_hash(sa: &StreamAnalysis) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, config(sa).to_yaml().as_bytes());
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Pod template annotation holding [`config_hash`].
pub const CONFIG_HASH_ANNOTATION: &str = "netstream.dev/config-hash";

/// Command-line arguments of `netstream-processor`: the Kafka wiring and the consumer group;
/// everything about the analyses is in the config file.
pub fn args(sa: &StreamAnalysis, source: &Source) -> Vec<String> {
    let mut args = kafka::wiring(&source.kafka, kafka::CONSUMER_CONFIG_FLAG).args;
    args.push("--group".into());
    args.push(consumer_group(sa));
    args.push("--metrics-addr".into());
    args.push(format!("0.0.0.0:{}", sa.spec.metrics_port));
    args.push("--config".into());
    args.push(config_path());
    args
}

/// The processor Deployment. `replicas` is left unset: the autoscaler owns it, and setting it
/// under server-side apply would fight the HPA on every reconcile.
pub fn deployment(sa: &StreamAnalysis, source: &Source, defaults: &Defaults) -> Deployment {
    let spec = &sa.spec;
    let instance = sa.name_any();
    let wiring = kafka::wiring(&source.kafka, kafka::CONSUMER_CONFIG_FLAG);
    let mut mounts = vec![
        VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "config".into(),
            mount_path: netstream_config::MOUNT_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
    ];
    mounts.extend(wiring.mounts);
    let mut volumes = vec![Volume {
        // Writable scratch space despite the read-only root filesystem.
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity("64Mi".into())),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }];
    volumes.push(Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map_name(sa),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    });
    volumes.extend(wiring.volumes);

    let container = Container {
        name: "processor".into(),
        image: Some(
            spec.image
                .clone()
                .unwrap_or_else(|| defaults.processor_image.clone()),
        ),
        args: Some(args(sa, source)),
        env: (!wiring.env.is_empty()).then_some(wiring.env),
        ports: Some(vec![metrics_port(spec.metrics_port, false)]),
        liveness_probe: Some(http_probe("/healthz", 10, 3)),
        readiness_probe: Some(http_probe("/readyz", 5, 3)),
        resources: Some(resources(spec.resources.as_ref())),
        volume_mounts: Some(mounts),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(NONROOT_ID),
            run_as_group: Some(NONROOT_ID),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(capabilities(&[])),
            seccomp_profile: Some(runtime_default_seccomp()),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };

    Deployment {
        metadata: child_meta(sa, Component::Processor, name(sa)),
        spec: DeploymentSpec {
            replicas: None,
            selector: LabelSelector {
                match_labels: Some(selector_labels(Component::Processor, &instance)),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    // Keep consuming during rollouts; one extra consumer at a time limits
                    // group rebalances.
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(Component::Processor, &instance)),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.to_string(),
                        config_hash(sa),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(name(sa)),
                    // The API token is mounted only for enrichment's watches; the
                    // ServiceAccount itself keeps automount off.
                    automount_service_account_token: Some(spec.enrichment.enabled),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(NONROOT_ID),
                        run_as_group: Some(NONROOT_ID),
                        // Makes the 0440 TLS files readable by the non-root user.
                        fs_group: Some(NONROOT_ID),
                        seccomp_profile: Some(runtime_default_seccomp()),
                        ..PodSecurityContext::default()
                    }),
                    termination_grace_period_seconds: Some(30),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        status: None,
    }
}

/// ClusterIP Service in front of the processors' metrics port.
pub fn service(sa: &StreamAnalysis) -> Service {
    Service {
        metadata: child_meta(sa, Component::Processor, service_name(sa)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(Component::Processor, &sa.name_any())),
            ports: Some(vec![ServicePort {
                name: Some(METRICS_PORT_NAME.into()),
                port: sa.spec.metrics_port,
                target_port: Some(IntOrString::String(METRICS_PORT_NAME.into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// ServiceMonitor for the metrics Service, when `spec.serviceMonitor.enabled`.
pub fn service_monitor(sa: &StreamAnalysis) -> Option<ServiceMonitor> {
    let sm = sa.spec.service_monitor.as_ref().filter(|sm| sm.enabled)?;
    let mut meta = child_meta(sa, Component::Processor, name(sa));
    let mut labels: BTreeMap<String, String> = sm.labels.clone();
    // Our standard labels win so the object stays recognisable as ours.
    labels.extend(meta.labels.take().unwrap_or_default());
    meta.labels = Some(labels);
    let selector = selector_labels(Component::Processor, &sa.name_any());
    let mut obj = ServiceMonitor::new(
        &name(sa),
        ServiceMonitorSpec {
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            endpoints: vec![Endpoint {
                port: METRICS_PORT_NAME.into(),
                path: "/metrics".into(),
                interval: sm.interval.clone(),
            }],
        },
    );
    obj.metadata = meta;
    Some(obj)
}
