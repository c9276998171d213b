//! Minimal typed views of third-party CRDs the operator creates: KEDA `ScaledObject` /
//! `TriggerAuthentication` and prometheus-operator `ServiceMonitor`. Only the fields the
//! operator sets are modelled; the schema is not ours to install, hence `schema = "disabled"`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// KEDA ScaledObject spec (keda.sh/v1alpha1).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "keda.sh",
    version = "v1alpha1",
    kind = "ScaledObject",
    plural = "scaledobjects",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct ScaledObjectSpec {
    /// Workload to scale.
    pub scale_target_ref: ScaleTargetRef,
    /// Seconds between trigger polls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub polling_interval: Option<i32>,
    /// Seconds to wait after the last active trigger before scaling to minReplicaCount.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown_period: Option<i32>,
    /// Lower bound of replicas.
    pub min_replica_count: i32,
    /// Upper bound of replicas.
    pub max_replica_count: i32,
    /// Scale triggers.
    pub triggers: Vec<ScaleTrigger>,
}

/// Target of a ScaledObject.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTargetRef {
    /// API version of the target.
    pub api_version: String,
    /// Kind of the target.
    pub kind: String,
    /// Name of the target.
    pub name: String,
}

/// One KEDA trigger.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTrigger {
    /// Scaler type, `kafka` here.
    #[serde(rename = "type")]
    pub type_: String,
    /// Scaler metadata (all values are strings in KEDA's API).
    pub metadata: BTreeMap<String, String>,
    /// TriggerAuthentication carrying credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authentication_ref: Option<AuthenticationRef>,
}

/// Reference to a TriggerAuthentication.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AuthenticationRef {
    /// Name of the TriggerAuthentication.
    pub name: String,
}

/// KEDA TriggerAuthentication spec (keda.sh/v1alpha1).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "keda.sh",
    version = "v1alpha1",
    kind = "TriggerAuthentication",
    plural = "triggerauthentications",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct TriggerAuthenticationSpec {
    /// Trigger parameters taken from Secrets.
    pub secret_target_ref: Vec<SecretTargetRef>,
}

/// Maps a Secret key to a trigger parameter.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SecretTargetRef {
    /// Trigger parameter, e.g. `username`, `ca`.
    pub parameter: String,
    /// Secret name.
    pub name: String,
    /// Key in the Secret.
    pub key: String,
}

/// prometheus-operator ServiceMonitor spec (monitoring.coreos.com/v1).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "monitoring.coreos.com",
    version = "v1",
    kind = "ServiceMonitor",
    plural = "servicemonitors",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    /// Services to scrape.
    pub selector: LabelSelector,
    /// Endpoints (ports) to scrape.
    pub endpoints: Vec<Endpoint>,
}

/// A scrape endpoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Service port name.
    pub port: String,
    /// HTTP path.
    pub path: String,
    /// Scrape interval.
    pub interval: String,
}
