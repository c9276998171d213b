//! Where the enrichment's identities come from, and how they reach the index: the static
//! identity file (loaded once at start) or the Kubernetes API (a source task whose updates the
//! [`sink`] applies under the aggregate's lock).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use netstream_enrich::file::{FileError, IdentityFile};
use netstream_enrich::{IdentityIndex, IndexConfig, Sink, SourceStats, SubnetLabel, Update};

use super::Workloads;
use crate::state::Shared;

/// The index configuration for the flags.
pub fn index_config(subnets: &[SubnetLabel]) -> IndexConfig {
    IndexConfig {
        subnets: subnets.to_vec(),
        ..IndexConfig::default()
    }
}

/// Loads an identity file into a new index. Errors name the file and what is wrong.
pub fn load_file(path: &Path, cfg: IndexConfig) -> Result<IdentityIndex, FileError> {
    let file = IdentityFile::load(path)?;
    let updates = file.updates().map_err(|e| match e {
        FileError::Invalid { what, .. } => FileError::Invalid {
            path: path.display().to_string(),
            what,
        },
        other => other,
    })?;
    let mut index = IdentityIndex::new(cfg);
    for u in updates {
        index.apply(u);
    }
    Ok(index)
}

/// Where a source's updates go: applied to the index under the engine's lock (a no-op if
/// `workloads` is off).
pub fn sink(shared: Arc<Shared>) -> Sink {
    Arc::new(move |update: Update| {
        // `workloads` runs on one lane (see `settings`): the first lane's engine holds it.
        if let Some(w) = shared.lane(0).analysis_mut::<Workloads>() {
            w.enrichment.index.apply(update);
        }
    })
}

/// Waits until the source has listed everything, `stop` is set, or `timeout` passes. Returns
/// whether it synced.
pub fn wait_synced(stats: &SourceStats, timeout: Duration, stop: &AtomicBool) -> bool {
    let deadline = Instant::now() + timeout;
    while !stats.synced() {
        if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// Starts the Kubernetes identity source on `runtime`: a client from the in-cluster config or
/// KUBECONFIG, and the watches of `netstream_enrich::kube` feeding `sink`. The source retries
/// API errors on its own (counted in `stats`); only a client that cannot be built at all (no
/// config) stops the processor.
pub fn start_kubernetes(
    runtime: &tokio::runtime::Runtime,
    namespaces: &[String],
    sink: Sink,
    stats: Arc<SourceStats>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let client = runtime
        .block_on(kube::Client::try_default())
        .context("--enrichment kubernetes: cannot build a Kubernetes client from the in-cluster config or KUBECONFIG (run in a pod with a service account, or use --enrichment file)")?;
    let _guard = runtime.enter();
    // The task runs for the life of the process; its handle is not needed.
    drop(netstream_enrich::kube::spawn(
        client,
        netstream_enrich::kube::KubeSourceConfig::new(namespaces.to_vec()),
        sink,
        stats,
    ));
    tracing::info!(namespaces = ?namespaces, "Kubernetes identity source started");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_file_names_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("pods: [ {namespace: a} ]", "missing field `name`"),
            ("pods:\n  - {namespace: a, name: p}\n", "`ips` is empty"),
            ("nodes: [{name: n, ips: [not-an-ip]}]", "invalid IP address"),
            (
                "pods: [{namespace: a, name: p, ips: [10.0.0.1], until: yesterday}]",
                "until",
            ),
            ("colour: blue", "unknown field `colour`"),
        ];
        for (i, (text, needle)) in cases.iter().enumerate() {
            let path = dir.path().join(format!("bad{i}.yaml"));
            std::fs::write(&path, text).unwrap();
            let err = load_file(&path, IndexConfig::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(err.contains(needle), "{text}: {err}");
        }
        let missing = dir.path().join("none.yaml");
        let err = load_file(&missing, IndexConfig::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read identity file") && err.contains("none.yaml"));
    }

    #[test]
    fn the_sink_applies_updates_to_the_shared_index() {
        use super::super::enrichment::{Enrichment, EnrichmentOptions};
        use crate::analysis::Host;
        use crate::analysis::flows::Flows;
        use crate::engine::Engine;
        use netstream_enrich::{Member, MemberKind, Workload, WorkloadKind};
        let enrichment = Enrichment::new(
            IdentityIndex::new(IndexConfig::default()),
            &EnrichmentOptions::default(),
            Arc::new(SourceStats::default()),
        );
        let shared = Arc::new(Shared::new(Engine::new(vec![
            Box::new(Host::new(Flows::new(10, 0))),
            Box::new(Host::new(Workloads::new(enrichment))),
        ])));
        let sink = sink(shared.clone());
        sink(Update::Upsert(Member {
            uid: "u1".into(),
            kind: MemberKind::Pod,
            namespace: "a".into(),
            name: "p".into(),
            workload: Workload::new("a", "web", WorkloadKind::Deployment),
            node: String::new(),
            ips: vec!["10.0.0.1".parse().unwrap()],
            from_ns: 0,
            until_ns: None,
            seen_ns: 0,
        }));
        let engine = shared.lock();
        let e = &engine.analysis::<Workloads>().unwrap().enrichment;
        let r = e.index.resolve("10.0.0.1".parse().unwrap(), 5);
        assert_eq!(e.labels(r.workload), ("a", "web", "deployment"));
        // With enrichment off the sink is a no-op.
        let off = Arc::new(Shared::new(Engine::new(vec![Box::new(Host::new(
            Flows::new(10, 0),
        ))])));
        super::sink(off.clone())(Update::Remove {
            uid: "u1".into(),
            at_ns: 1,
        });
        assert!(off.lock().analysis::<Workloads>().is_none());
    }

    #[test]
    fn a_good_file_loads_into_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids.yaml");
        std::fs::write(
            &path,
            "pods: [{namespace: a, name: p, ips: [10.0.0.1], workload: {kind: deployment, name: web}}]\n",
        )
        .unwrap();
        let index = load_file(&path, IndexConfig::default()).unwrap();
        let r = index.resolve("10.0.0.1".parse().unwrap(), 1);
        assert_eq!(index.workload(r.workload).map(|w| &*w.name), Some("web"));
    }
}
