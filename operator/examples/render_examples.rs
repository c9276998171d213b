//! Prints, as multi-document YAML, the objects the operator would apply for the given
//! NetProbe / StreamAnalysis manifests: ServiceAccounts, the enrichment RBAC bindings, the probe
//! DaemonSet, the processor Deployment, its metrics Service, the HPA or KEDA ScaledObject
//! (+ TriggerAuthentication) and the ServiceMonitor. It calls the same pure desired-state builders the reconcilers use, so
//! static checkers (checkov, kubernetes-validate) can inspect what only exists at runtime.
//!
//! ```sh
//! cargo run -p netstream-operator --example render_examples -- manifests/examples/*.yaml
//! ```
//!
//! Without arguments it reads every `manifests/examples/*.yaml` of the repository. A
//! StreamAnalysis with `spec.probeRef` is resolved against the NetProbes in the same input
//! (same namespace), as the reconciler resolves it against the cluster. Objects without a uid
//! get a fixed placeholder so owner references can be built. The topic's partition count is
//! unknown here, so replica bounds are the spec's.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use kube::ResourceExt;
use netstream_operator::crd::{AutoscalingMode, NetProbe, StreamAnalysis};
use netstream_operator::defaults::Defaults;
use netstream_operator::desired::processor::Source;
use netstream_operator::desired::{autoscaling, probe, processor, rbac};
use serde::Deserialize;

const PLACEHOLDER_UID: &str = "00000000-0000-0000-0000-000000000000";

fn repo_root() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    dir.canonicalize().unwrap_or(dir)
}

fn inputs() -> anyhow::Result<Vec<PathBuf>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if !args.is_empty() {
        return Ok(args);
    }
    let dir = repo_root().join("manifests").join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

fn fill_identity(meta: &mut kube::api::ObjectMeta) {
    meta.namespace.get_or_insert_with(|| "default".into());
    meta.uid.get_or_insert_with(|| PLACEHOLDER_UID.into());
}

fn emit<T: serde::Serialize>(out: &mut String, source: &str, obj: &T) -> anyhow::Result<()> {
    out.push_str("---\n");
    out.push_str(&format!("# Source: {source}\n"));
    out.push_str(&serde_yaml::to_string(obj)?);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut probes: Vec<(String, NetProbe)> = Vec::new();
    let mut analyses: Vec<(String, StreamAnalysis)> = Vec::new();
    for path in inputs()? {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc)
                .with_context(|| format!("parsing {}", path.display()))?;
            if value.is_null() {
                continue;
            }
            let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
            let label = path
                .strip_prefix(repo_root())
                .unwrap_or(&path)
                .display()
                .to_string();
            match kind {
                "NetProbe" => {
                    let mut np: NetProbe = serde_yaml::from_value(value)
                        .with_context(|| format!("{label}: not a valid NetProbe"))?;
                    fill_identity(&mut np.metadata);
                    probes.push((label, np));
                }
                "StreamAnalysis" => {
                    let mut sa: StreamAnalysis = serde_yaml::from_value(value)
                        .with_context(|| format!("{label}: not a valid StreamAnalysis"))?;
                    fill_identity(&mut sa.metadata);
                    analyses.push((label, sa));
                }
                other => {
                    bail!("{label}: unexpected kind {other:?} (want NetProbe or StreamAnalysis)")
                }
            }
        }
    }

    let defaults = Defaults::default();
    let mut out = String::new();
    for (label, np) in &probes {
        emit(&mut out, label, &probe::service_account(np))?;
        emit(&mut out, label, &probe::daemonset(np, &defaults))?;
    }
    for (label, sa) in &analyses {
        let kafka = match (&sa.spec.kafka, &sa.spec.probe_ref) {
            (Some(k), _) => k.clone(),
            (None, Some(r)) => probes
                .iter()
                .map(|(_, np)| np)
                .find(|np| np.name_any() == r.name && np.namespace() == sa.namespace())
                .map(|np| np.spec.kafka.clone())
                .with_context(|| {
                    format!(
                        "{label}: spec.probeRef names NetProbe {:?}, which is not among the inputs",
                        r.name
                    )
                })?,
            (None, None) => bail!("{label}: set spec.kafka or spec.probeRef"),
        };
        let source = Source {
            kafka,
            partitions: None,
        };
        emit(&mut out, label, &processor::service_account(sa))?;
        let bindings = rbac::bindings(sa);
        for b in &bindings.cluster {
            emit(&mut out, label, b)?;
        }
        for b in &bindings.namespaced {
            emit(&mut out, label, b)?;
        }
        emit(
            &mut out,
            label,
            &processor::deployment(sa, &source, &defaults),
        )?;
        emit(&mut out, label, &processor::service(sa))?;
        match sa.spec.autoscaling.mode {
            AutoscalingMode::Hpa => emit(&mut out, label, &autoscaling::hpa(sa, &source))?,
            AutoscalingMode::Keda => {
                emit(&mut out, label, &autoscaling::scaled_object(sa, &source))?;
                if let Some(ta) = autoscaling::trigger_authentication(sa, &source) {
                    emit(&mut out, label, &ta)?;
                }
            }
        }
        if let Some(sm) = processor::service_monitor(sa) {
            emit(&mut out, label, &sm)?;
        }
    }
    print!("{out}");
    Ok(())
}
