//! `netstream-operator`: reconciles NetProbe and StreamAnalysis resources.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use futures::FutureExt;
use netstream_operator::context::Context;
use netstream_operator::controller::{self, OptionalApis};
use netstream_operator::defaults::Defaults;
use netstream_operator::http::Health;
use netstream_operator::leader::{LeaderElector, LeaseConfig};
use netstream_operator::metrics::Metrics;
use tokio::sync::watch;

/// Kubernetes operator for netstream.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Default probe image for NetProbes without spec.image.
    #[arg(long, env = "NETSTREAM_PROBE_IMAGE")]
    probe_image: Option<String>,
    /// Default processor image for StreamAnalyses without spec.image.
    #[arg(long, env = "NETSTREAM_PROCESSOR_IMAGE")]
    processor_image: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "NETSTREAM_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Elect a leader through a Lease so several replicas can run safely.
    #[arg(long, env = "NETSTREAM_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "NETSTREAM_LEASE_NAME",
        default_value = "netstream-operator"
    )]
    lease_name: String,
    /// Namespace of the Lease; defaults to the operator pod's namespace.
    #[arg(long, env = "NETSTREAM_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Identity in the Lease and in Events; defaults to the pod name (POD_NAME / HOSTNAME).
    #[arg(long, env = "NETSTREAM_IDENTITY")]
    identity: Option<String>,
    /// Log format: auto (JSON in a pod or when stderr is not a terminal), json or text.
    #[arg(long, env = "NETSTREAM_LOG_FORMAT", default_value = "auto")]
    log_format: String,
}

fn pod_namespace() -> String {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "default".into())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    netstream_operator::logging::init(&args.log_format);

    let mut defaults = Defaults::default();
    if let Some(i) = args.probe_image {
        defaults.probe_image = i;
    }
    if let Some(i) = args.processor_image {
        defaults.processor_image = i;
    }
    let identity = args
        .identity
        .or_else(|| std::env::var("POD_NAME").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "netstream-operator".into());

    let client = netstream_operator::client::connect()
        .await
        .context("connecting to the Kubernetes API (in-cluster config or KUBECONFIG)")?;
    let metrics = Metrics::new().context("registering metrics")?;
    // Live from the start; ready as decided below (standby, then caches synced).
    let health = Health::new();

    // One shutdown signal fanned out to the HTTP server, the elector and both controllers.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = {
        let rx = stop_rx.clone();
        async move {
            let mut rx = rx;
            let _ = rx.wait_for(|s| *s).await;
        }
        .shared()
    };
    {
        let health = health.clone();
        tokio::spawn(async move {
            netstream_runtime::signal::shutdown().await;
            tracing::info!("shutdown requested");
            health.set_ready(false);
            let _ = stop_tx.send(true);
        });
    }

    // Bound before anything else so a taken port fails startup instead of silently.
    let (addr, http) = netstream_operator::http::serve(
        args.metrics_addr,
        &metrics,
        health.clone(),
        stopped.clone(),
    )
    .await?;
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");

    let elector = if args.leader_election {
        let cfg = LeaseConfig {
            name: args.lease_name,
            namespace: args.lease_namespace.unwrap_or_else(pod_namespace),
            identity: identity.clone(),
            lease_duration: Duration::from_secs(15),
            retry_period: Duration::from_secs(2),
        };
        let elector = LeaderElector::new(client.clone(), cfg);
        // Standby until we hold the lease. A standby that reaches the API is ready: nothing
        // routes traffic to the operator, and the Deployment (2 replicas, default RollingUpdate:
        // maxSurge 1, maxUnavailable 0) would never finish a rollout, nor would the chart's PDB
        // (maxUnavailable 1) let the leader be evicted, if one replica were never ready.
        loop {
            if *stop_rx.borrow() {
                return Ok(());
            }
            match elector.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => health.set_ready(true),
                Err(e) => {
                    health.set_ready(false);
                    tracing::warn!(error = %e, "leader election attempt failed");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(elector.config().retry_period) => {}
                _ = stopped.clone() => return Ok(()),
            }
        }
        tracing::info!(identity = %identity, lease = %elector.config().name, "became leader");
        // Not ready again until the controllers' caches have synced.
        health.set_ready(false);
        metrics.leader.set(1);
        Some(Arc::new(elector))
    } else {
        None
    };

    // Renew in the background; losing the lease stops this replica so two never reconcile
    // at once (Kubernetes restarts it as a standby).
    let lost = {
        let elector = elector.clone();
        async move {
            let Some(elector) = elector else {
                return std::future::pending::<()>().await;
            };
            let deadline = elector
                .config()
                .lease_duration
                .saturating_sub(elector.config().retry_period);
            let mut last_ok = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(elector.config().retry_period).await;
                // A hanging request must not keep us "leader" past the lease: bound each try.
                let attempt = tokio::time::timeout(
                    elector.config().retry_period,
                    elector.try_acquire_or_renew(),
                )
                .await;
                match attempt {
                    Ok(Ok(true)) => last_ok = tokio::time::Instant::now(),
                    Ok(Ok(false)) => return,
                    Ok(Err(e)) => tracing::warn!(error = %e, "renewing the leader lease failed"),
                    Err(_) => tracing::warn!("renewing the leader lease timed out"),
                }
                if last_ok.elapsed() > deadline {
                    return;
                }
            }
        }
    };

    let optional = OptionalApis::discover(&client).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "API discovery failed; not watching KEDA and ServiceMonitor objects until restart");
        OptionalApis::default()
    });
    tracing::info!(
        keda = optional.keda,
        service_monitor = optional.service_monitor,
        "optional APIs"
    );
    let partitions = Arc::new(netstream_operator::partitions::KafkaPartitions::new(
        client.clone(),
    ));
    let ctx = Arc::new(
        Context::new(client, defaults, metrics.clone(), Some(identity)).with_partitions(partitions),
    );
    let controllers = controller::run_with_health(ctx, optional, stopped.clone(), health.clone());

    let lost_lease = tokio::select! {
        _ = controllers => false,
        _ = lost => true,
    };
    metrics.leader.set(0);
    if let Some(elector) = &elector
        && let Err(e) = elector.release().await
    {
        tracing::warn!(error = %e, "releasing the leader lease failed");
    }
    if lost_lease {
        anyhow::bail!("lost the leader lease; exiting so a standby can take over");
    }
    let _ = http.await;
    tracing::info!("stopped");
    Ok(())
}
