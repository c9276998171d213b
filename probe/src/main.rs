//! `netstream-probe` binary: wiring, signals, exit summary.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use netstream_probe::cli::Args;
use netstream_probe::metrics::ProbeMetrics;
use netstream_probe::pipeline::{Ended, RunTotals, SourceRun};
use netstream_probe::producer::{Backpressure, ProbeProducer, StallWatch};
use netstream_probe::progress::Progress;
use netstream_probe::source::{self, LiveOptions};
use netstream_runtime::http::{self, Health};

fn main() -> ExitCode {
    let args = Args::parse();
    netstream_runtime::logging::init();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("netstream-probe: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn node_name(args: &Args) -> String {
    args.node_name.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into())
    })
}

/// Publishes the queue depth and stops every source when the producer has stalled.
fn sample_queue(
    producer: &ProbeProducer,
    metrics: &ProbeMetrics,
    watch: &mut StallWatch,
    stop: &AtomicBool,
    stalled: &AtomicBool,
) {
    let in_flight = producer.in_flight();
    metrics.queue_depth.set(i64::from(in_flight));
    if !stalled.load(Ordering::Relaxed)
        && watch.stalled(producer.delivered(), in_flight, Instant::now())
    {
        tracing::error!(in_flight, limit = ?producer.stall_limit, "the Kafka producer holds records but delivered none for too long; stopping");
        stalled.store(true, Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let metrics_addr = args.metrics_addr().map_err(anyhow::Error::msg)?;
    let node = node_name(&args);
    let replay = !args.pcap.is_empty();

    // Open every source first: a missing file, unknown link type, bad filter or missing
    // interface is one clear error before anything is produced.
    let mut files = Vec::new();
    for path in &args.pcap {
        files.push(source::open_file(path, args.filter.as_deref())?);
    }
    let live_opts = LiveOptions {
        snaplen: args.snaplen,
        promiscuous: args.promiscuous,
        buffer_bytes: args.buffer_mb.saturating_mul(1024 * 1024),
        immediate: args.immediate_mode,
        filter: args.filter.clone(),
    };
    let mut lives = Vec::new();
    for iface in &args.interfaces {
        lives.push(source::open_live(iface, &live_opts)?);
    }
    let labels: Vec<String> = files
        .iter()
        .map(|f| f.label.clone())
        .chain(lives.iter().map(|l| l.label.clone()))
        .collect();

    let metrics = ProbeMetrics::new();
    let counters: Vec<_> = labels.iter().map(|l| metrics.interface(l)).collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("netstream-http")
        .build()
        .context("cannot start the async runtime")?;
    let health = Health::new();
    let stop = Arc::new(AtomicBool::new(false));
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);

    if let Some(addr) = metrics_addr {
        let app = http::router(metrics.registry.clone(), health.clone());
        let mut rx = shutdown_rx.clone();
        let (bound, _task) = runtime.block_on(http::serve(addr, app, async move {
            let _ = rx.wait_for(|s| *s).await;
        }))?;
        tracing::info!(%bound, "serving /metrics, /healthz, /readyz");
    }
    {
        let stop = stop.clone();
        runtime.spawn(async move {
            netstream_runtime::signal::shutdown().await;
            tracing::info!("stopping: flushing pending records");
            stop.store(true, Ordering::Relaxed);
            // A second signal exits at once.
            netstream_runtime::signal::shutdown().await;
            std::process::exit(130);
        });
    }

    let producer = ProbeProducer::connect(
        &args.brokers,
        &args.topic,
        args.queue_size,
        &args.producer_config,
        metrics.delivered.clone(),
        counters
            .iter()
            .map(|c| c.drop_produce_error.clone())
            .collect(),
        args.connect_timeout,
    )?;
    health.set_ready(true);

    let totals = Arc::new(RunTotals::default());
    let stalled = AtomicBool::new(false);
    let started = Instant::now();
    let mut truncated = Vec::new();

    if replay {
        let total_bytes: u64 = files.iter().filter_map(|f| f.file_size).sum();
        let show = match args.progress.as_str() {
            "always" => true,
            "never" => false,
            _ => std::io::stderr().is_terminal(),
        };
        let progress = show.then(|| {
            Progress::start(
                totals.clone(),
                total_bytes,
                format!("replaying {} file(s)", files.len()),
            )
        });
        // The queue gauge is sampled while replaying too: during a broker outage it is the
        // back-pressure a user sees (it stayed 0 until the end of the replay before).
        let replaying = AtomicBool::new(true);
        let replayed = std::thread::scope(|s| -> anyhow::Result<()> {
            s.spawn(|| {
                let mut watch = StallWatch::new(producer.stall_limit);
                while replaying.load(Ordering::Relaxed) {
                    sample_queue(&producer, &metrics, &mut watch, &stop, &stalled);
                    // Short, so the end of the replay is not held up waiting for this thread.
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
            let result = (|| -> anyhow::Result<()> {
                for (index, file) in files.iter_mut().enumerate() {
                    let run = SourceRun {
                        index,
                        counters: counters[index].clone(),
                        producer: &producer,
                        backpressure: Backpressure::Wait,
                        sampling: args.sampling,
                        node: &node,
                        stop: &stop,
                        totals: totals.clone(),
                    };
                    match run
                        .run(file)
                        .with_context(|| format!("reading {}", file.label))?
                    {
                        Ended::Done => {}
                        Ended::Truncated(msg) => {
                            tracing::warn!(file = %file.label, %msg, "capture file ends in the middle of a packet; the partial packet is skipped");
                            truncated.push(file.label.clone());
                        }
                    }
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
                Ok(())
            })();
            replaying.store(false, Ordering::Relaxed);
            result
        });
        drop(progress);
        replayed?;
    } else {
        std::thread::scope(|s| {
            let offset = files.len();
            let mut handles = Vec::new();
            for (i, mut live) in lives.drain(..).enumerate() {
                let run = SourceRun {
                    index: offset + i,
                    counters: counters[offset + i].clone(),
                    producer: &producer,
                    backpressure: Backpressure::Drop,
                    sampling: args.sampling,
                    node: &node,
                    stop: &stop,
                    totals: totals.clone(),
                };
                tracing::info!(interface = %live.label, link = ?live.link, "capturing");
                handles.push(s.spawn(move || {
                    let label = live.label.clone();
                    if let Err(e) = run.run(&mut live) {
                        tracing::error!(interface = %label, error = %e, "capture failed");
                    }
                }));
            }
            // Sample the queue depth while capturing.
            let mut watch = StallWatch::new(producer.stall_limit);
            while handles.iter().any(|h| !h.is_finished()) {
                sample_queue(&producer, &metrics, &mut watch, &stop, &stalled);
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        // Every capture thread ended: if nobody asked us to stop, that is a failure.
        if !stop.load(Ordering::Relaxed) {
            health.set_live(false);
        }
    }

    let stalled = stalled.load(Ordering::Relaxed);
    // A stalled producer will not flush either.
    let flushed = producer.flush(if stalled {
        Duration::ZERO
    } else {
        args.flush_timeout
    });
    metrics.queue_depth.set(i64::from(producer.in_flight()));
    let _ = shutdown_tx.send(true);

    let t = &*totals;
    let read = t.read.load(Ordering::Relaxed);
    let produced = t.produced.load(Ordering::Relaxed);
    let delivered = producer.totals.delivered.load(Ordering::Relaxed);
    let delivery_failed = producer.totals.failed.load(Ordering::Relaxed);
    // Records with no delivery report at all; those with a failed report are already counted
    // (they were counted twice before).
    let failed = delivery_failed
        + t.refused.load(Ordering::Relaxed)
        + if flushed {
            0
        } else {
            produced.saturating_sub(delivered + delivery_failed)
        };
    let dropped = t.queue_full.load(Ordering::Relaxed)
        + t.kernel_drops.load(Ordering::Relaxed)
        + t.interface_drops.load(Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "netstream-probe: read {read} packets ({} wire bytes), produced {produced}, acknowledged {delivered}, failed {failed}, dropped {dropped}, unparsed {}, sampled out {}{} in {secs:.2}s ({:.0} packets/s)",
        t.wire_bytes.load(Ordering::Relaxed),
        t.unparsed.load(Ordering::Relaxed),
        t.sampled_out.load(Ordering::Relaxed),
        if truncated.is_empty() {
            String::new()
        } else {
            format!(", truncated file(s): {}", truncated.join(", "))
        },
        read as f64 / secs.max(1e-9),
    );
    if let Some(fatal) = producer.fatal_error() {
        eprintln!(
            "netstream-probe: error: the Kafka producer failed for good ({fatal}); it stopped capturing because no record could be sent any more: run it again (under Kubernetes the container is restarted)"
        );
    } else if stalled {
        eprintln!(
            "netstream-probe: error: the Kafka producer delivered nothing for {:?} while holding {} record(s); it stopped capturing: run it again (under Kubernetes the container is restarted), and check the broker if this repeats",
            producer.stall_limit,
            producer.in_flight()
        );
    } else if !flushed {
        eprintln!(
            "netstream-probe: error: {} record(s) were not acknowledged within --flush-timeout {:?}; is the broker at {} up?",
            producer.in_flight(),
            args.flush_timeout,
            args.brokers
        );
    }
    let interrupted = replay && stop.load(Ordering::Relaxed);
    let complete = flushed
        && failed == 0
        && delivered == produced
        && (!replay || produced + t.sampled_out.load(Ordering::Relaxed) == read);
    Ok(if complete && !interrupted {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
