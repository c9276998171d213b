//! `netstream-processor` binary: wiring, signals, shutdown.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use netstream_enrich::{IdentityIndex, SourceStats};
use netstream_processor::analysis::branch::{Branch, BranchAnalysis};
use netstream_processor::analysis::registry::{self, Setup};
use netstream_processor::analysis::workloads::enrichment::Enrichment;
use netstream_processor::analysis::workloads::identity;
use netstream_processor::analysis::{Analysis, Flush};
use netstream_processor::api;
use netstream_processor::cli::{Args, EnrichmentMode};
use netstream_processor::clock::Clock;
use netstream_processor::collector::ProcessorCollector;
use netstream_processor::consume::{self, ConsumeContext, LoopOptions};
use netstream_processor::engine::Engine;
use netstream_processor::settings::{self, Settings};
use netstream_processor::state::Shared;
use netstream_runtime::http::{self, Health};
use netstream_runtime::kafka_config;

/// The consume loop must report in at least this often, or /healthz fails.
const STALL_LIMIT: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let (args, explicit) = match settings::parse_args(std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(e) => e.exit(),
    };
    netstream_runtime::logging::init();
    let settings = match Settings::load(&args, &explicit) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("netstream-processor: error: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args, &explicit, settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netstream-processor: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args, explicit: &settings::Explicit, settings: Settings) -> anyhow::Result<()> {
    let config = consume::consumer_config(
        &args.brokers,
        &args.group,
        &args.consumer_config,
        settings.branch_topic_prefix.is_some(),
        |k| std::env::var(k).ok(),
    )?;
    tracing::info!(config = %kafka_config::redacted(&config), "kafka consumer config");

    let analyses = &settings.analyses;
    registry::select(registry::ANALYSES, analyses).map_err(anyhow::Error::msg)?;
    settings.check_analyses().map_err(anyhow::Error::msg)?;
    let branching = analyses.iter().any(|a| a == BranchAnalysis::NAME);
    let source_stats = Arc::new(SourceStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut setup = Setup::new(settings.max_flows, Clock::ticks(settings.flow_idle_timeout));
    setup.stop = stop.clone();
    let index_config = identity::index_config(&settings.subnet_labels);
    let index = match (settings.enrichment, &settings.identity_file) {
        (EnrichmentMode::Off, _) => None,
        (EnrichmentMode::File, Some(path)) => {
            // The error's text already holds its cause: `{e:#}` of the chain would repeat it.
            let index =
                identity::load_file(path, index_config).map_err(|e| anyhow::anyhow!("{e}"))?;
            source_stats.set_synced();
            let stats = index.stats();
            tracing::info!(file = %path.display(), members = stats.members, addresses = stats.addresses,
                workloads = stats.workloads, "identity file loaded");
            Some(index)
        }
        (EnrichmentMode::File, None) => {
            anyhow::bail!("--enrichment file needs --identity-file PATH")
        }
        (EnrichmentMode::Kubernetes, _) => Some(IdentityIndex::new(index_config)),
    };
    setup.enrichment = index
        .map(|index| Enrichment::new(index, &settings.enrichment_options(), source_stats.clone()));
    if let (true, Some(prefix)) = (branching, &settings.branch_topic_prefix) {
        setup.branch = Some(Arc::new(Branch::connect(
            &args.brokers,
            prefix,
            &settings.branch_producer_config,
            args.connect_timeout,
        )?));
    }
    let branch = setup.branch.clone();
    // The first lane: what the analyses need is checked here, before anything connects.
    let first = Engine::new(
        registry::build(registry::ANALYSES, analyses, &mut setup).map_err(anyhow::Error::msg)?,
    );
    let lanes = consume::lanes_for(settings.threads, analyses);
    if lanes < settings.threads && explicit.has("threads") {
        tracing::info!(
            threads = settings.threads,
            "the workloads analysis keeps one lane: running on one thread"
        );
    }
    // No lane takes anything from `setup` (workloads keeps one lane), so the first is simply
    // built again; the lanes' `flows` share --max-flows through `setup`.
    let mut engines = vec![first];
    while engines.len() < lanes {
        let hosts = registry::build(registry::ANALYSES, analyses, &mut setup)
            .map_err(anyhow::Error::msg)?;
        engines.push(Engine::new(hosts));
    }
    tracing::info!(analyses = ?engines[0].names(), lanes, "analyses");
    let shared = Arc::new(Shared::with_lanes(engines));
    let registry = prometheus::Registry::new();
    registry
        .register(Box::new(ProcessorCollector::new(shared.clone())?))
        .context("registering the processor's metrics")?;
    let health = Health::new();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        // /metrics renders on blocking threads: few of them, so few malloc arenas.
        .max_blocking_threads(2)
        .enable_all()
        .thread_name("netstream-http")
        .build()
        .context("cannot start the async runtime")?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    // /metrics from the collector directly (fast path), /api/v1/*, and the runtime router's
    // /healthz and /readyz behind them.
    let app = api::metrics_route(Arc::new(ProcessorCollector::new(shared.clone())?))
        .merge(api::routes(shared.clone()))
        .fallback_service(http::router(registry, health.clone()));
    let mut rx = shutdown_rx.clone();
    let (bound, server) = runtime.block_on(http::serve(args.metrics_addr, app, async move {
        let _ = rx.wait_for(|s| *s).await;
    }))?;
    tracing::info!(%bound, "serving /metrics, /healthz, /readyz, /api/v1/flows, /api/v1/protocols");
    {
        let stop = stop.clone();
        runtime.spawn(async move {
            netstream_runtime::signal::shutdown().await;
            tracing::info!("stopping: committing counted records");
            stop.store(true, Ordering::Relaxed);
            netstream_runtime::signal::shutdown().await;
            std::process::exit(130);
        });
    }

    if settings.enrichment == EnrichmentMode::Kubernetes {
        identity::start_kubernetes(
            &runtime,
            &settings.enrichment_namespaces,
            identity::sink(shared.clone()),
            source_stats.clone(),
        )?;
        // Consuming before the first full list would count early records as external.
        // /readyz stays not ready meanwhile (it turns ready on the first partition assignment).
        let waited = Instant::now();
        if identity::wait_synced(&source_stats, settings.enrichment_sync_timeout, &stop) {
            tracing::info!(took = ?waited.elapsed(), "identity source synced");
        } else if !stop.load(Ordering::Relaxed) {
            tracing::warn!(timeout = ?settings.enrichment_sync_timeout,
                "identity source not synced in time (see netstream_enrichment_watch_errors_total); consuming anyway: addresses not listed yet count as external");
        }
    }

    let context = ConsumeContext::new(shared.clone(), health.clone(), args.connect_timeout);
    let consumer = consume::subscribe(
        &config,
        context,
        &args.brokers,
        &args.topic,
        args.connect_timeout,
    )?;

    // Liveness: the consume loop reports after every poll (at least every 100 ms when idle).
    let started = Instant::now();
    let heartbeat = Arc::new(AtomicU64::new(0));
    {
        let heartbeat = heartbeat.clone();
        let health = health.clone();
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let last = Duration::from_millis(heartbeat.load(Ordering::Relaxed));
                let stalled = started.elapsed().saturating_sub(last) > STALL_LIMIT;
                if stalled {
                    tracing::error!("the consume loop has not run for over {STALL_LIMIT:?}");
                }
                health.set_live(!stalled);
            }
        });
    }

    let opts = LoopOptions {
        commit_interval: args.commit_interval,
        ..LoopOptions::default()
    };
    consume::run(&consumer, &shared, &opts, &stop, &heartbeat, started);
    health.set_ready(false);
    // Leaving the group revokes our partitions (committing once more) before the process ends.
    drop(consumer);
    if let Some(branch) = &branch
        && let Err(e) = Flush::flush(branch.as_ref(), args.connect_timeout)
    {
        tracing::warn!(error = %e, "branch producer did not flush before exit");
    }
    let _ = shutdown_tx.send(true);
    let _ = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(5), server).await });
    let engine = shared.lock();
    tracing::info!(consumed = engine.consumed(), "stopped");
    Ok(())
}
