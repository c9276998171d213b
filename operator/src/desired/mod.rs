//! Pure desired-state builders: CR in, Kubernetes objects out. No I/O, so they are tested by
//! value; the reconcilers apply what these return.

pub mod autoscaling;
pub mod probe;
pub mod processor;
pub mod rbac;
pub mod thirdparty;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ContainerPort, HTTPGetAction, Probe, ResourceRequirements, SeccompProfile,
    ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;

use crate::labels::{Component, child_meta};

/// Name of the container port serving metrics and health.
pub const METRICS_PORT_NAME: &str = "metrics";

/// `<cr name>-<component>`: name of the workload, its ServiceAccount and autoscaler.
pub fn child_name(cr_name: &str, component: Component) -> String {
    format!("{cr_name}-{}", component.as_str())
}

/// A dedicated ServiceAccount: pods get their own identity (for NetworkPolicies, audit) and
/// no API token by default; a processor with enrichment opts in at the pod level.
pub fn service_account<K>(owner: &K, component: Component, name: String) -> ServiceAccount
where
    K: Resource<DynamicType = ()>,
{
    ServiceAccount {
        metadata: child_meta(owner, component, name),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// The user's resources, with defaults filled in. A CPU request is always present because
/// the CPU HPA computes utilization relative to it.
pub fn resources(user: Option<&ResourceRequirements>) -> ResourceRequirements {
    let mut r = user.cloned().unwrap_or_else(|| ResourceRequirements {
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity("512Mi".into()),
        )])),
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("100m".into())),
            ("memory".to_string(), Quantity("128Mi".into())),
        ])),
        ..ResourceRequirements::default()
    });
    let requests = r.requests.get_or_insert_with(BTreeMap::new);
    if !requests.contains_key("cpu") {
        // A CPU limit implies an equal request in Kubernetes; mirror that instead of
        // inventing a request above the limit.
        let cpu = r
            .limits
            .as_ref()
            .and_then(|l| l.get("cpu").cloned())
            .unwrap_or_else(|| Quantity("100m".into()));
        requests.insert("cpu".into(), cpu);
    }
    r
}

/// Drop every capability, then add back `add`.
pub fn capabilities(add: &[&str]) -> Capabilities {
    Capabilities {
        drop: Some(vec!["ALL".into()]),
        add: if add.is_empty() {
            None
        } else {
            Some(add.iter().map(|c| c.to_string()).collect())
        },
    }
}

/// `RuntimeDefault` seccomp profile.
pub fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..SeccompProfile::default()
    }
}

/// HTTP probe against the metrics port.
pub fn http_probe(path: &str, period: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(METRICS_PORT_NAME.into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failure_threshold),
        ..Probe::default()
    }
}

/// The named metrics container port.
pub fn metrics_port(port: i32, host_port: bool) -> ContainerPort {
    ContainerPort {
        name: Some(METRICS_PORT_NAME.into()),
        container_port: port,
        // With hostNetwork the API server requires hostPort == containerPort; setting it
        // explicitly also makes the scheduler avoid nodes where the port is taken.
        host_port: host_port.then_some(port),
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}
