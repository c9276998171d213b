//! NetProbe → ServiceAccount + DaemonSet.

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, ObjectFieldSelector, PodSecurityContext, PodSpec,
    PodTemplateSpec, SecurityContext, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{
    capabilities, child_name, http_probe, metrics_port, resources, runtime_default_seccomp,
};
use crate::crd::NetProbe;
use crate::defaults::Defaults;
use crate::kafka;
use crate::labels::{Component, child_meta, labels, selector_labels};

/// Capabilities the probe needs: raw sockets and (for promiscuous mode / ring setup) admin.
pub const PROBE_CAPABILITIES: &[&str] = &["NET_RAW", "NET_ADMIN"];

/// Name of the probe DaemonSet and ServiceAccount.
pub fn name(probe: &NetProbe) -> String {
    child_name(&probe.name_any(), Component::Probe)
}

/// The probe's ServiceAccount.
pub fn service_account(probe: &NetProbe) -> ServiceAccount {
    super::service_account(probe, Component::Probe, name(probe))
}

/// Command-line arguments of `netstream-probe` for this spec.
pub fn args(probe: &NetProbe) -> Vec<String> {
    let spec = &probe.spec;
    let mut args = kafka::wiring(&spec.kafka, kafka::PRODUCER_CONFIG_FLAG).args;
    for iface in &spec.interfaces {
        args.push("--interface".into());
        args.push(iface.clone());
    }
    if let Some(filter) = spec.filter.as_deref().filter(|f| !f.trim().is_empty()) {
        args.push("--filter".into());
        args.push(filter.to_string());
    }
    args.push("--snaplen".into());
    args.push(spec.snaplen.to_string());
    if spec.promiscuous {
        args.push("--promiscuous".into());
    }
    if let Some(n) = spec.sampling {
        args.push("--sampling".into());
        args.push(n.to_string());
    }
    args.push("--metrics-addr".into());
    args.push(format!("0.0.0.0:{}", spec.metrics_port));
    args
}

/// The probe DaemonSet: one capture pod per selected node.
pub fn daemonset(probe: &NetProbe, defaults: &Defaults) -> DaemonSet {
    let spec = &probe.spec;
    let instance = probe.name_any();
    let wiring = kafka::wiring(&spec.kafka, kafka::PRODUCER_CONFIG_FLAG);
    let mut env = vec![EnvVar {
        // Read by the probe as --node-name (flags are also env vars); tags every packet.
        name: "NETSTREAM_NODE_NAME".into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "spec.nodeName".into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }];
    env.extend(wiring.env);

    let container = Container {
        name: "probe".into(),
        image: Some(
            spec.image
                .clone()
                .unwrap_or_else(|| defaults.probe_image.clone()),
        ),
        args: Some(args(probe)),
        env: Some(env),
        ports: Some(vec![metrics_port(spec.metrics_port, true)]),
        liveness_probe: Some(http_probe("/healthz", 10, 3)),
        readiness_probe: Some(http_probe("/readyz", 5, 3)),
        resources: Some(resources(spec.resources.as_ref())),
        volume_mounts: (!wiring.mounts.is_empty()).then_some(wiring.mounts),
        security_context: Some(SecurityContext {
            // Capabilities only take effect for uid 0 without file capabilities on the
            // binary, so the probe runs as root but with everything else locked down.
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(capabilities(PROBE_CAPABILITIES)),
            seccomp_profile: Some(runtime_default_seccomp()),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };

    DaemonSet {
        metadata: child_meta(probe, Component::Probe, name(probe)),
        spec: DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(selector_labels(Component::Probe, &instance)),
                ..LabelSelector::default()
            },
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: Some(IntOrString::Int(spec.max_unavailable)),
                    // A surge pod would collide with the old one on the host port.
                    max_surge: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(Component::Probe, &instance)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(name(probe)),
                    automount_service_account_token: Some(false),
                    host_network: Some(true),
                    dns_policy: Some("ClusterFirstWithHostNet".into()),
                    node_selector: (!spec.node_selector.is_empty())
                        .then(|| spec.node_selector.clone()),
                    tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
                    security_context: Some(PodSecurityContext {
                        seccomp_profile: Some(runtime_default_seccomp()),
                        ..PodSecurityContext::default()
                    }),
                    termination_grace_period_seconds: Some(30),
                    containers: vec![container],
                    volumes: (!wiring.volumes.is_empty()).then_some(wiring.volumes),
                    ..PodSpec::default()
                }),
            },
            ..DaemonSetSpec::default()
        },
        status: None,
    }
}
