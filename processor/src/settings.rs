//! The processor's effective settings: the `--config FILE` (the shared
//! [`netstream_config::ProcessorConfig`], what the operator renders into a ConfigMap), with
//! every flag given on the command line or in the environment taking precedence, and the flags'
//! defaults for the rest. Everything after start-up reads these, never [`Args`] directly.

use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use netstream_config::{ProcessorConfig, parse_setting};
use netstream_enrich::SubnetLabel;

use crate::analysis::workloads::enrichment::EnrichmentOptions;
use crate::cli::{Args, EnrichmentMode};

/// The flags set on the command line or in the environment (not defaulted).
#[derive(Clone, Debug, Default)]
pub struct Explicit(Vec<String>);

impl Explicit {
    fn from_matches(m: &ArgMatches) -> Explicit {
        Explicit(
            m.ids()
                .filter(|id| {
                    matches!(
                        m.value_source(id.as_str()),
                        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                    )
                })
                .map(|id| id.as_str().to_string())
                .collect(),
        )
    }

    /// Whether the flag whose field is `id` (e.g. `max_flows`) was given.
    pub fn has(&self, id: &str) -> bool {
        self.0.iter().any(|i| i == id)
    }
}

/// Parses `argv` (the first item is the program name).
pub fn parse_args<I, T>(argv: I) -> Result<(Args, Explicit), clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let m = Args::command().try_get_matches_from(argv)?;
    Ok((Args::from_arg_matches(&m)?, Explicit::from_matches(&m)))
}

/// What the processor runs with.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Enabled analyses, by name, as given (checked against the registry later).
    pub analyses: Vec<String>,
    /// `--threads`, or the cores this process may use.
    pub threads: usize,
    pub max_flows: usize,
    pub flow_idle_timeout: Duration,
    pub flow_pod_labels: bool,
    pub workload_expiry: Duration,
    pub max_workload_series: usize,
    pub branch_topic_prefix: Option<String>,
    pub branch_producer_config: Vec<(String, String)>,
    pub enrichment: EnrichmentMode,
    pub identity_file: Option<PathBuf>,
    pub enrichment_namespaces: Vec<String>,
    pub subnet_labels: Vec<SubnetLabel>,
    pub enrichment_sync_timeout: Duration,
}

impl Settings {
    /// Reads `--config` (when given) and resolves every setting. Errors name the file, the key
    /// or the flag at fault.
    pub fn load(args: &Args, explicit: &Explicit) -> Result<Settings, String> {
        let file = match &args.config {
            None => ProcessorConfig::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("--config {}: cannot read it: {e}", path.display()))?;
                ProcessorConfig::from_yaml(&text)
                    .map_err(|e| format!("--config {}: {e}", path.display()))?
            }
        };
        Settings::resolve(args, explicit, &file)
    }

    /// Flags given explicitly win over `file`, which wins over the flags' defaults.
    pub fn resolve(
        args: &Args,
        explicit: &Explicit,
        file: &ProcessorConfig,
    ) -> Result<Settings, String> {
        let given = |id: &str| explicit.has(id);
        let analyses_file = file.analyses.clone().unwrap_or_default();
        let flows = analyses_file.flows.clone().unwrap_or_default();
        let workloads = analyses_file.workloads.clone().unwrap_or_default();
        let enrich = file.enrichment.clone().unwrap_or_default();

        let pick_duration = |id: &str, flag: Duration, key: &str, value: Option<&str>| {
            if given(id) {
                Ok(flag)
            } else {
                parse_setting(key, value).map(|d| d.unwrap_or(flag))
            }
        };
        let max_flows = match (given("max_flows"), flows.max_flows) {
            (false, Some(n)) => n,
            _ => args.max_flows,
        };
        let max_workload_series = match (given("max_workload_series"), workloads.max_series) {
            (false, Some(n)) => n,
            _ => args.max_workload_series,
        };
        let branch_topic_prefix = if given("branch_topic_prefix") {
            args.branch_topic_prefix.clone()
        } else {
            analyses_file
                .branch
                .as_ref()
                .map(|b| b.topic_prefix.clone())
        };
        // The file's producer properties, then the flags' (last wins).
        let mut branch_producer_config: Vec<(String, String)> = analyses_file
            .branch
            .as_ref()
            .map(|b| b.producer_config.clone().into_iter().collect())
            .unwrap_or_default();
        branch_producer_config.extend(args.branch_producer_config.iter().cloned());

        let enrichment = if given("enrichment") {
            args.enrichment
        } else if file.enrichment.is_some() {
            enrich.mode.into()
        } else {
            args.enrichment
        };
        let identity_file = if given("identity_file") {
            args.identity_file.clone()
        } else {
            enrich.identity_file.as_ref().map(PathBuf::from)
        };
        let enrichment_namespaces = if given("enrichment_namespaces") {
            args.enrichment_namespaces.clone()
        } else {
            enrich.namespaces.clone()
        };
        let subnet_labels = if given("subnet_label") {
            args.subnet_label.clone()
        } else {
            enrich
                .subnet_labels
                .iter()
                .map(|s| s.parse())
                .collect::<Result<_, _>>()?
        };

        let settings = Settings {
            analyses: Vec::new(),
            threads: match args.threads {
                Some(n) => usize::from(n),
                // One until a lane's flow share follows other lanes' tables at once (it follows
                // at the next tick: the cap overshoots meanwhile).
                None => 1,
            },
            max_flows: usize::try_from(max_flows)
                .unwrap_or(crate::analysis::flows::table::MAX_FLOWS_LIMIT),
            flow_idle_timeout: pick_duration(
                "flow_idle_timeout",
                args.flow_idle_timeout,
                "analyses.flows.idleTimeout",
                flows.idle_timeout.as_deref(),
            )?,
            flow_pod_labels: if given("flow_pod_labels") {
                args.flow_pod_labels
            } else {
                flows.pod_labels.unwrap_or(args.flow_pod_labels)
            },
            workload_expiry: pick_duration(
                "workload_expiry",
                args.workload_expiry,
                "analyses.workloads.expiry",
                workloads.expiry.as_deref(),
            )?,
            max_workload_series: usize::try_from(max_workload_series).unwrap_or(10_000_000),
            branch_topic_prefix,
            branch_producer_config,
            enrichment,
            identity_file,
            enrichment_namespaces,
            subnet_labels,
            enrichment_sync_timeout: pick_duration(
                "enrichment_sync_timeout",
                args.enrichment_sync_timeout,
                "enrichment.syncTimeout",
                enrich.sync_timeout.as_deref(),
            )?,
        };
        let analyses = if given("analyses") {
            args.analyses.iter().map(|a| a.trim().to_string()).collect()
        } else if let Some(a) = &file.analyses {
            a.names().into_iter().map(String::from).collect()
        } else {
            crate::analysis::registry::default_names(
                settings.enrichment != EnrichmentMode::Off,
                settings.branch_topic_prefix.is_some(),
            )
        };
        let settings = Settings {
            analyses,
            ..settings
        };
        settings.check_enrichment()?;
        Ok(settings)
    }

    /// Checks the enrichment settings that depend on each other.
    pub fn check_enrichment(&self) -> Result<(), String> {
        match (self.enrichment, &self.identity_file) {
            (EnrichmentMode::File, None) => Err(
                "--enrichment file needs --identity-file PATH (the identity file to load)".into(),
            ),
            (EnrichmentMode::Off | EnrichmentMode::Kubernetes, Some(_)) => Err(format!(
                "--identity-file is only used with --enrichment file (now: --enrichment {}); remove it or set --enrichment file",
                match self.enrichment {
                    EnrichmentMode::Off => "off",
                    _ => "kubernetes",
                }
            )),
            _ => Ok(()),
        }
    }

    /// Settings that only make sense with an analysis that is not enabled.
    pub fn check_analyses(&self) -> Result<(), String> {
        let on = |n: &str| self.analyses.iter().any(|a| a == n);
        if self.branch_topic_prefix.is_some() && !on("branch") {
            return Err(
                "--branch-topic-prefix is set but branch is not in --analyses; add branch or drop the prefix"
                    .into(),
            );
        }
        if self.enrichment != EnrichmentMode::Off && !on("workloads") {
            return Err(
                "--enrichment is on but workloads is not in --analyses; add workloads or set --enrichment off"
                    .into(),
            );
        }
        Ok(())
    }

    pub fn enrichment_options(&self) -> EnrichmentOptions {
        EnrichmentOptions {
            flow_pod_labels: self.flow_pod_labels,
            workload_expiry: self.workload_expiry,
            max_series: self.max_workload_series,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(extra: &[&str], file: &str) -> Result<Settings, String> {
        let mut argv = vec!["p", "--brokers", "k:1", "--group", "g"];
        argv.extend_from_slice(extra);
        let (args, explicit) = parse_args(argv).map_err(|e| e.to_string())?;
        Settings::resolve(&args, &explicit, &ProcessorConfig::from_yaml(file)?)
    }

    #[test]
    fn defaults_without_a_file() {
        let s = settings(&[], "").unwrap();
        assert_eq!(s.analyses, ["flows"]);
        assert_eq!(s.max_flows, 100_000);
        assert_eq!(s.flow_idle_timeout, Duration::from_secs(300));
        assert_eq!(s.workload_expiry, Duration::from_secs(600));
        assert_eq!(s.enrichment_sync_timeout, Duration::from_secs(60));
        assert_eq!(s.max_workload_series, 50_000);
        assert_eq!(s.enrichment, EnrichmentMode::Off);
        assert!(s.threads >= 1);
        assert_eq!(settings(&["--threads", "3"], "").unwrap().threads, 3);
        assert!(settings(&["--threads", "0"], "").is_err());
        let s = settings(&["--branch-topic-prefix", "b"], "").unwrap();
        assert_eq!(s.analyses, ["flows", "branch"]);
        let s = settings(&["--analyses", "flows, branch"], "").unwrap();
        assert_eq!(s.analyses, ["flows", "branch"]);
    }

    #[test]
    fn the_file_sets_what_no_flag_does() {
        let file = r#"
analyses:
  flows: {maxFlows: 7, idleTimeout: 30s, podLabels: true}
  workloads: {expiry: 1m, maxSeries: 9}
  branch: {topicPrefix: b, producerConfig: {linger.ms: "5"}}
enrichment:
  mode: file
  identityFile: /ids.yaml
  namespaces: [shop]
  subnetLabels: [{cidr: 10.0.0.0/8, name: corp}]
  syncTimeout: 2s
"#;
        let s = settings(&[], file).unwrap();
        assert_eq!(s.analyses, ["flows", "workloads", "branch"]);
        assert_eq!(s.max_flows, 7);
        assert_eq!(s.flow_idle_timeout, Duration::from_secs(30));
        assert!(s.flow_pod_labels);
        assert_eq!(s.workload_expiry, Duration::from_secs(60));
        assert_eq!(s.max_workload_series, 9);
        assert_eq!(s.branch_topic_prefix.as_deref(), Some("b"));
        assert_eq!(
            s.branch_producer_config,
            [("linger.ms".to_string(), "5".to_string())]
        );
        assert_eq!(s.enrichment, EnrichmentMode::File);
        assert_eq!(s.identity_file, Some(PathBuf::from("/ids.yaml")));
        assert_eq!(s.enrichment_namespaces, ["shop"]);
        assert_eq!(s.subnet_labels[0].name, "corp");
        assert_eq!(s.enrichment_sync_timeout, Duration::from_secs(2));

        // Flags given win, key by key; the rest still comes from the file.
        let s = settings(
            &[
                "--max-flows",
                "11",
                "--analyses",
                "flows,workloads",
                "--flow-idle-timeout",
                "0",
                "--branch-producer-config",
                "linger.ms=9",
            ],
            file,
        )
        .unwrap();
        assert_eq!(s.max_flows, 11);
        assert_eq!(s.analyses, ["flows", "workloads"]);
        assert_eq!(s.flow_idle_timeout, Duration::ZERO);
        assert_eq!(s.workload_expiry, Duration::from_secs(60));
        assert_eq!(s.branch_producer_config.last().unwrap().1, "9");
        // --enrichment off overrides the file's mode, and then its identity file is refused.
        let err = settings(&["--enrichment", "off"], file).unwrap_err();
        assert!(err.contains("--identity-file is only used"), "{err}");
    }

    #[test]
    fn enrichment_flags_depend_on_each_other() {
        let err = settings(&["--enrichment", "file"], "").unwrap_err();
        assert!(err.contains("--identity-file PATH"), "{err}");
        let err =
            settings(&["--enrichment", "kubernetes", "--identity-file", "/x"], "").unwrap_err();
        assert!(err.contains("only used with --enrichment file"), "{err}");
        assert!(settings(&["--identity-file", "/x"], "").is_err());
        let s = settings(&["--enrichment", "kubernetes"], "").unwrap();
        assert_eq!(s.analyses, ["flows", "workloads"]);
    }

    #[test]
    fn a_config_file_that_is_missing_or_wrong_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.yaml");
        let run = |argv: Vec<String>| {
            let (args, explicit) = parse_args(argv).unwrap();
            Settings::load(&args, &explicit)
        };
        let argv = || {
            vec![
                "p".to_string(),
                "--brokers=k:1".into(),
                "--group=g".into(),
                format!("--config={}", path.display()),
            ]
        };
        let err = run(argv()).unwrap_err();
        assert!(err.contains("p.yaml: cannot read it"), "{err}");
        std::fs::write(&path, "analyses:\n  flows: {maxFlow: 3}\n").unwrap();
        let err = run(argv()).unwrap_err();
        assert!(
            err.contains("p.yaml") && err.contains("maxFlow") && err.contains("line 2"),
            "{err}"
        );
        std::fs::write(&path, "analyses: {flows: {maxFlows: 3}}\n").unwrap();
        assert_eq!(run(argv()).unwrap().max_flows, 3);
    }
}
