//! The processor's analyses and their settings, as one typed structure shared by
//! `netstream-processor` (which reads it from `--config FILE`) and `netstream-operator` (whose
//! `StreamAnalysis.spec.analyses` embeds [`Analyses`], and which renders a whole
//! [`ProcessorConfig`] into the processor's ConfigMap). One definition means the operator can
//! never spell a setting the processor does not know: a test feeds everything the operator
//! renders through [`ProcessorConfig::from_yaml`].
//!
//! Unknown keys are errors that name the key (`deny_unknown_fields`), at every level.
//! Values are checked by [`ProcessorConfig::check`] with the same rules as the processor's
//! flags (durations, ranges, CIDRs, credentials kept out of files).
//!
//! ```yaml
//! analyses:            # a key present runs that analysis ({} = its defaults)
//!   flows: {maxFlows: 200000, idleTimeout: 5m}
//!   workloads: {expiry: 10m}
//! enrichment: {mode: kubernetes, namespaces: [shop]}
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use netstream_enrich::SubnetLabel as Cidr;
use netstream_runtime::duration::parse_duration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The file's own name in the operator's ConfigMap (mounted under [`MOUNT_DIR`]).
pub const FILE_NAME: &str = "processor.yaml";
/// Where the operator mounts the ConfigMap in the processor's container.
pub const MOUNT_DIR: &str = "/etc/netstream/config";

/// Most flows a processor may be told to track (`maxFlows`, `--max-flows`).
pub const MAX_FLOWS_LIMIT: u64 = 50_000_000;
/// Most workload series per family (`maxSeries`, `--max-workload-series`).
pub const MAX_WORKLOAD_SERIES_LIMIT: u64 = 10_000_000;

/// The whole file.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessorConfig {
    /// Analyses to run and their settings. Absent: `flows`, plus `workloads` when enrichment
    /// is on and `branch` when a branch topic prefix is given on the command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analyses: Option<Analyses>,
    /// Where Kubernetes identities come from (for `workloads` and the flow series' workload
    /// labels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrichment: Option<EnrichmentConfig>,
}

/// The analyses to run: each key present runs that analysis, with its settings (`{}` for the
/// defaults). They see every packet in the processor's registry order.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Analyses {
    /// Packets and bytes per flow and per protocol (`netstream_flow_*`, `/api/v1/flows`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flows: Option<FlowsConfig>,
    /// Traffic between Kubernetes workloads (`netstream_workload_*`); needs enrichment and
    /// `flows`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workloads: Option<WorkloadsConfig>,
    /// Every record again, unchanged, to `<topicPrefix>.tcp|udp|other`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<BranchConfig>,
}

impl Analyses {
    /// The names of the analyses present (the processor's `--analyses` names).
    pub fn names(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.flows.is_some() {
            out.push("flows");
        }
        if self.workloads.is_some() {
            out.push("workloads");
        }
        if self.branch.is_some() {
            out.push("branch");
        }
        out
    }
}

/// Settings of `flows`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlowsConfig {
    /// Most flows tracked at once (about 93 bytes each); beyond that idle flows, then the least
    /// recently updated, are evicted. Default 100000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 50000000))]
    pub max_flows: Option<u64>,
    /// A flow with no packets for this long is evicted with its series: one number and a unit
    /// (`ms`, `s`, `m`, `h`), e.g. `30s`, `5m`; `0s` never. Default `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{1,9}(ms|s|m|h)$"))]
    pub idle_timeout: Option<String>,
    /// With enrichment, per-flow series also get `src_pod` and `dst_pod` labels. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_labels: Option<bool>,
}

/// Settings of `workloads`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadsConfig {
    /// Series of a workload that no longer exists are removed once not updated for this long,
    /// e.g. `10m` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{1,9}(ms|s|m|h)$"))]
    pub expiry: Option<String>,
    /// Most `netstream_workload_*` series per family; the least recently updated are evicted
    /// beyond that. Default 50000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000000))]
    pub max_series: Option<u64>,
}

/// Settings of `branch`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BranchConfig {
    /// Records go to `<topicPrefix>.tcp`, `.udp` and `.other`; the topics must exist.
    #[schemars(length(min = 1, max = 240))]
    pub topic_prefix: String,
    /// Extra librdkafka producer properties for the branch topics. Credentials do not belong
    /// here: they come from the environment (`NETSTREAM_KAFKA_SASL_USERNAME`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub producer_config: BTreeMap<String, String>,
}

/// Where identities come from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum EnrichmentMode {
    /// No enrichment.
    #[default]
    Off,
    /// Watch Pods, Services, Nodes, ReplicaSets and Jobs through the Kubernetes API.
    Kubernetes,
    /// A static identity file (`identityFile`): offline analysis and tests.
    File,
}

impl EnrichmentMode {
    pub const ALL: [EnrichmentMode; 3] = [
        EnrichmentMode::Off,
        EnrichmentMode::Kubernetes,
        EnrichmentMode::File,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EnrichmentMode::Off => "off",
            EnrichmentMode::Kubernetes => "kubernetes",
            EnrichmentMode::File => "file",
        }
    }
}

/// Enrichment settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnrichmentConfig {
    /// `off` (default), `kubernetes` or `file`.
    #[serde(default)]
    pub mode: EnrichmentMode,
    /// The identity file for `mode: file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<String>,
    /// Namespaces whose pods and services `mode: kubernetes` watches; empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Names for address ranges outside the cluster; the longest matching prefix wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnet_labels: Vec<SubnetLabel>,
    /// With `mode: kubernetes`, how long to wait at start for the first full list of the
    /// cluster before consuming, e.g. `60s` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_timeout: Option<String>,
}

/// A named address range.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubnetLabel {
    /// IPv4 or IPv6 range in CIDR notation, e.g. `10.20.0.0/16`.
    pub cidr: String,
    /// Label value for traffic in the range (1-63 letters, digits, `_`, `.`, `-`).
    pub name: String,
}

impl SubnetLabel {
    /// The parsed range, with the processor's own rules (the error names the fix).
    pub fn parse(&self) -> Result<Cidr, String> {
        Cidr::new(&self.cidr, &self.name).map_err(|e| e.to_string())
    }
}

impl ProcessorConfig {
    /// Parses and checks a config file's text. Errors name the key (and line) at fault.
    pub fn from_yaml(text: &str) -> Result<ProcessorConfig, String> {
        // An empty file is an empty config, not an error.
        let config: ProcessorConfig = if text.trim().is_empty() {
            ProcessorConfig::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| e.to_string())?
        };
        config.check()?;
        Ok(config)
    }

    /// The file's text (what the operator writes into the ConfigMap).
    pub fn to_yaml(&self) -> String {
        // Plain data: serialization of these types cannot fail.
        serde_yaml::to_string(self).unwrap_or_default()
    }

    /// Checks every value with the processor's rules; the error names the key.
    pub fn check(&self) -> Result<(), String> {
        if let Some(a) = &self.analyses {
            if let Some(f) = &a.flows {
                if let Some(n) = f.max_flows {
                    range("analyses.flows.maxFlows", n, MAX_FLOWS_LIMIT)?;
                }
                duration("analyses.flows.idleTimeout", f.idle_timeout.as_deref())?;
            }
            if let Some(w) = &a.workloads {
                duration("analyses.workloads.expiry", w.expiry.as_deref())?;
                if let Some(n) = w.max_series {
                    range("analyses.workloads.maxSeries", n, MAX_WORKLOAD_SERIES_LIMIT)?;
                }
            }
            if let Some(b) = &a.branch {
                if b.topic_prefix.trim().is_empty() {
                    return Err("analyses.branch.topicPrefix must not be empty".into());
                }
                for k in b.producer_config.keys() {
                    if netstream_runtime::kafka_config::is_secret(k) {
                        return Err(format!(
                            "analyses.branch.producerConfig.{k}: credentials do not belong in the config file; set them in the environment ({})",
                            netstream_runtime::kafka_config::SECRET_ENV
                                .iter()
                                .map(|(var, _)| *var)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                }
            }
        }
        if let Some(e) = &self.enrichment {
            for (i, s) in e.subnet_labels.iter().enumerate() {
                s.parse()
                    .map_err(|err| format!("enrichment.subnetLabels[{i}]: {err}"))?;
            }
            duration("enrichment.syncTimeout", e.sync_timeout.as_deref())?;
            match (e.mode, &e.identity_file) {
                (EnrichmentMode::File, None) => {
                    return Err(
                        "enrichment.mode file needs enrichment.identityFile (the identity file to load)"
                            .into(),
                    );
                }
                (EnrichmentMode::Off | EnrichmentMode::Kubernetes, Some(_)) => {
                    return Err(format!(
                        "enrichment.identityFile is only used with mode file (now: {}); remove it or set mode: file",
                        e.mode.as_str()
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// A duration setting's value, checked (`None` when unset).
pub fn parse_setting(key: &str, value: Option<&str>) -> Result<Option<Duration>, String> {
    value
        .map(|v| parse_duration(v).map_err(|e| format!("{key}: {e}")))
        .transpose()
}

fn duration(key: &str, value: Option<&str>) -> Result<(), String> {
    parse_setting(key, value).map(|_| ())
}

fn range(key: &str, n: u64, max: u64) -> Result<(), String> {
    if (1..=max).contains(&n) {
        Ok(())
    } else {
        Err(format!("{key}: {n} is out of range; use 1 to {max}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_round_trips() {
        let text = r#"
analyses:
  flows: {maxFlows: 200000, idleTimeout: 30s, podLabels: true}
  workloads: {expiry: 10m, maxSeries: 1000}
  branch: {topicPrefix: b, producerConfig: {linger.ms: "5"}}
enrichment:
  mode: file
  identityFile: /x.yaml
  namespaces: [a, b]
  subnetLabels: [{cidr: 10.0.0.0/8, name: corp}]
  syncTimeout: 5s
"#;
        let c = ProcessorConfig::from_yaml(text).unwrap();
        let a = c.analyses.as_ref().unwrap();
        assert_eq!(a.names(), ["flows", "workloads", "branch"]);
        assert_eq!(a.flows.as_ref().unwrap().max_flows, Some(200_000));
        assert_eq!(c.enrichment.as_ref().unwrap().mode, EnrichmentMode::File);
        assert_eq!(ProcessorConfig::from_yaml(&c.to_yaml()).unwrap(), c);
        // Present with defaults, absent, empty.
        let c = ProcessorConfig::from_yaml("analyses: {flows: {}}").unwrap();
        assert_eq!(c.analyses.unwrap().names(), ["flows"]);
        assert_eq!(
            ProcessorConfig::from_yaml("").unwrap(),
            ProcessorConfig::default()
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        for (text, want) in [
            ("analyses: {flows: {maxFlow: 3}}", "maxFlow"),
            ("analyses: {dns: {}}", "dns"),
            ("analyze: {}", "analyze"),
            ("enrichment: {mode: on}", "mode"),
            (
                "analyses: {flows: {maxFlows: 0}}",
                "analyses.flows.maxFlows",
            ),
            (
                "analyses: {flows: {idleTimeout: soon}}",
                "analyses.flows.idleTimeout",
            ),
            (
                "analyses: {workloads: {maxSeries: 99999999999}}",
                "maxSeries",
            ),
            ("analyses: {branch: {}}", "topicPrefix"),
            (
                "analyses: {branch: {topicPrefix: b, producerConfig: {sasl.password: x}}}",
                "NETSTREAM_KAFKA_SASL_PASSWORD",
            ),
            (
                "enrichment: {subnetLabels: [{cidr: 10.0.0.0/33, name: x}]}",
                "enrichment.subnetLabels[0]",
            ),
            ("enrichment: {mode: file}", "identityFile"),
            ("enrichment: {identityFile: /x}", "only used with mode file"),
        ] {
            let err = ProcessorConfig::from_yaml(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
