//! Consume + count: the processor's consume loop against a bare rdkafka consumer and the Python
//! peers (a plain confluent-kafka consumer counting per key in a dict; quixstreams with a
//! stateful per-key count), all on the same topic.
//!
//! Per round: a fresh tansu broker (it keeps everything in memory), one topic of `--partitions`
//! partitions, `--records` records over `--flows` flows produced once in the probe's format,
//! then every consumer in its own consumer group, one after the other (the order rotates per
//! round). Each is timed from its first record to its N-th: group join and assignment time is
//! excluded (tansu waits about half the session timeout before the first assignment).
//!
//! The processor runs in-process: `consume::subscribe` and `consume::run` with the structures
//! its `main.rs` builds (the engine behind its lock, the rebalance/commit context, offsets
//! stored per record and committed every second); a watcher thread reads the engine's
//! `consumed` counter every millisecond. The HTTP side is left out: it idles without scrapes.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use netstream_processor::analysis::registry::{self, Setup};
use netstream_processor::clock::Clock;
use netstream_processor::consume::{self, ConsumeContext, LoopOptions};
use netstream_processor::engine::Engine;
use netstream_processor::state::Shared;
use netstream_runtime::http::Health;
use netstream_testkit::broker::Broker;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{Value, json};

use crate::args::{Opts, stats};

/// Session timeout for every consumer: tansu assigns after about half of it.
const SESSION_MS: &str = "6000";

struct Timed {
    /// Records per second from the first record to the N-th.
    rate: f64,
    /// Seconds from subscribing to the first record (group join + assignment + first fetch).
    join: f64,
}

/// The bare consumer: the processor's consumer properties, no counting, no offsets.
fn bare(brokers: &str, topic: &str, group: &str, n: u64, limit: Duration) -> anyhow::Result<Timed> {
    let mut cc = ClientConfig::new();
    for (k, v) in consume::default_config(brokers, group) {
        cc.set(k, v);
    }
    cc.set("session.timeout.ms", SESSION_MS);
    let c: BaseConsumer = cc.create()?;
    let t0 = Instant::now();
    c.subscribe(&[topic])?;
    let mut seen = 0u64;
    let mut touched = 0usize;
    let mut first = None;
    while seen < n {
        anyhow::ensure!(
            t0.elapsed() < limit,
            "bare consumer: {seen} of {n} records within {limit:?}"
        );
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                if first.is_none() {
                    first = Some(Instant::now());
                }
                touched = touched.wrapping_add(m.key().map_or(0, <[u8]>::len));
                touched = touched.wrapping_add(m.payload().map_or(0, <[u8]>::len));
                seen += 1;
            }
            Some(Err(e)) => bail!("bare consumer: {e}"),
            None => {}
        }
    }
    let end = Instant::now();
    std::hint::black_box(touched);
    let first = first.expect("first record");
    Ok(Timed {
        rate: (n - 1) as f64 / end.duration_since(first).as_secs_f64(),
        join: first.duration_since(t0).as_secs_f64(),
    })
}

/// The processor's consume loop, in a thread, as `main.rs` wires it (no branch topics), on
/// `lanes` lanes (`--threads`).
fn processor(
    brokers: &str,
    topic: &str,
    group: &str,
    n: u64,
    limit: Duration,
    lanes: usize,
) -> anyhow::Result<Timed> {
    let user = vec![("session.timeout.ms".to_string(), SESSION_MS.to_string())];
    let config = consume::consumer_config(brokers, group, &user, false, |_| None)?;
    let mut setup = Setup::new(100_000, Clock::ticks(Duration::from_secs(300)));
    let mut engines = Vec::with_capacity(lanes);
    for _ in 0..lanes {
        let hosts = registry::build(registry::ANALYSES, &["flows".to_string()], &mut setup)
            .map_err(anyhow::Error::msg)?;
        engines.push(Engine::new(hosts));
    }
    let shared = Arc::new(Shared::with_lanes(engines));
    let health = Health::new();
    let stop = AtomicBool::new(false);
    let heartbeat = AtomicU64::new(0);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .name("processor".into())
            .spawn_scoped(s, || -> anyhow::Result<()> {
                let ctx =
                    ConsumeContext::new(shared.clone(), health.clone(), Duration::from_secs(10));
                let consumer =
                    consume::subscribe(&config, ctx, brokers, topic, Duration::from_secs(10))?;
                consume::run(
                    &consumer,
                    &shared,
                    &LoopOptions::default(),
                    &stop,
                    &heartbeat,
                    t0,
                );
                Ok(())
            })?;
        let mut first = None;
        let result = loop {
            if worker.is_finished() {
                break Err(anyhow::anyhow!("the consume loop ended early"));
            }
            if t0.elapsed() > limit {
                break Err(anyhow::anyhow!(
                    "processor: not all {n} records within {limit:?}"
                ));
            }
            let c = shared.lock().consumed();
            let now = Instant::now();
            if c >= 1 && first.is_none() {
                first = Some(now);
            }
            if c >= n {
                let first = first.expect("first");
                break Ok(Timed {
                    rate: (n - 1) as f64 / now.duration_since(first).as_secs_f64(),
                    join: first.duration_since(t0).as_secs_f64(),
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        stop.store(true, Ordering::Relaxed);
        match worker.join() {
            Ok(Ok(())) => result,
            Ok(Err(e)) => Err(e),
            Err(_) => Err(anyhow::anyhow!("the consume loop panicked")),
        }
    })
}

/// A Python peer from `bench/peers/`: prints one JSON line with `rate` and `join`.
fn python(
    py: &str,
    script: &str,
    brokers: &str,
    topic: &str,
    group: &str,
    n: u64,
    limit: Duration,
) -> anyhow::Result<Timed> {
    let mut child = Command::new(py)
        .arg(script)
        .args(["--brokers", brokers, "--topic", topic, "--group", group])
        .args([
            "--records",
            &n.to_string(),
            "--timeout",
            &limit.as_secs().to_string(),
        ])
        .args(["--session-timeout-ms", SESSION_MS])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {py} {script}"))?;
    let t0 = Instant::now();
    // Bounded: kill it past the limit (plus start-up slack).
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if t0.elapsed() > limit + Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{script} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stdout.lines().rev().find(|l| l.starts_with('{'));
    let Some(line) = line.filter(|_| out.status.success()) else {
        let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
        bail!(
            "{script} failed ({}): {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        );
    };
    let v: Value = serde_json::from_str(line).with_context(|| format!("{script} output {line}"))?;
    Ok(Timed {
        rate: v["rate"].as_f64().context("rate")?,
        join: v["join"].as_f64().unwrap_or(0.0),
    })
}

pub fn main(o: &Opts) -> anyhow::Result<Value> {
    let n: u64 = o.get("records", 1_000_000)?;
    let flows: u32 = o.get("flows", 50_000)?;
    let partitions: i32 = o.get("partitions", 6)?;
    let rounds: usize = o.get("rounds", 3)?;
    let py_n: u64 = o.get("python-records", n)?;
    let quix_n: u64 = o.get("quix-records", n.min(200_000))?;
    let python_bin = o.str("python");
    let peers = o.str("peers").unwrap_or("bench/peers");
    let limit = Duration::from_secs(o.get("limit-secs", 180)?);
    let skip_quix = o.get("skip-quix", false)?;
    // --only NAME: just one consumer (for profiling).
    let only = o.str("only");

    let names = [
        "bare_rdkafka",
        "processor",
        "python_confluent",
        "quixstreams",
        "processor_threads_2",
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut joins: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut errors: Vec<Option<String>> = vec![None; names.len()];
    let mut produce_rates = Vec::new();
    if python_bin.is_none() {
        errors[2] = Some("no Python (--python) given".into());
        errors[3] = errors[2].clone();
    }
    if skip_quix {
        errors[3] = Some("skipped (--skip-quix)".into());
    }
    if let Some(only) = only {
        for (i, name) in names.iter().enumerate() {
            if *name != only {
                errors[i] = Some(format!("skipped (--only {only})"));
            }
        }
    }
    for round in 0..rounds {
        let broker = Broker::start().context("tansu not found (bench/run installs it)")?;
        let brokers = broker.bootstrap();
        let topic = format!("bench-consume-{round}");
        crate::records::create_topic(&brokers, &topic, partitions)?;
        let deadline = Instant::now() + Duration::from_secs(120);
        let secs = crate::records::produce(
            &brokers,
            &topic,
            n,
            |i| (i % u64::from(flows)) as u32,
            deadline,
        )?;
        produce_rates.push(n as f64 / secs);
        eprintln!("round {round}: produced {n} records over {flows} flows in {secs:.2}s");
        for k in 0..names.len() {
            let which = (k + round) % names.len();
            if errors[which].is_some() {
                continue;
            }
            let group = format!("{}-{round}", names[which]);
            let r = match which {
                0 => bare(&brokers, &topic, &group, n, limit),
                1 => processor(&brokers, &topic, &group, n, limit, 1),
                4 => processor(&brokers, &topic, &group, n, limit, 2),
                2 => python(
                    python_bin.unwrap_or("python3"),
                    &format!("{peers}/confluent_count.py"),
                    &brokers,
                    &topic,
                    &group,
                    py_n,
                    limit,
                ),
                3 => python(
                    python_bin.unwrap_or("python3"),
                    &format!("{peers}/quix_count.py"),
                    &brokers,
                    &topic,
                    &group,
                    quix_n,
                    limit,
                ),
                _ => unreachable!("one arm per name"),
            };
            match r {
                Ok(t) => {
                    eprintln!(
                        "round {round}: {:<17} {:>10.0} rec/s (join {:.1}s)",
                        names[which], t.rate, t.join
                    );
                    rates[which].push(t.rate);
                    joins[which].push(t.join);
                }
                Err(e) => {
                    eprintln!("round {round}: {} failed: {e:#}", names[which]);
                    // The Python peers are skipped after a failure; the Rust ones are the point.
                    if which == 2 || which == 3 || only.is_some() {
                        errors[which] = Some(format!("{e:#}"));
                    } else {
                        return Err(e);
                    }
                }
            }
        }
    }
    let mut consumers = serde_json::Map::new();
    for (i, name) in names.iter().enumerate() {
        let records = match i {
            2 => py_n,
            3 => quix_n,
            _ => n,
        };
        consumers.insert(
            name.to_string(),
            json!({
                "rate": stats(&rates[i]),
                "join_secs": stats(&joins[i]),
                "records": records,
                "error": errors[i],
            }),
        );
    }
    Ok(json!({
        "records": n,
        "flows": flows,
        "partitions": partitions,
        "rounds": rounds,
        "produce_rate": stats(&produce_rates),
        "consumers": consumers,
    }))
}
