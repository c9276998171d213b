//! The processor binary under a flood of unique flows (every record a new flow) with a bounded
//! table: its RSS sampled every 250 ms from start to the last record. Default consumer
//! properties (librdkafka's prefetch buffers included, as a user would run it).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use netstream_testkit::broker::Broker;
use netstream_testkit::http;
use netstream_testkit::process::KillOnDrop;
use serde_json::{Value, json};

use crate::args::{Opts, rss};

fn consumed(addr: SocketAddr) -> Option<f64> {
    let (status, body) = http::get(addr, "/api/v1/protocols")?;
    if status != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(&body).ok()?;
    Some(
        v["protocols"]
            .as_array()?
            .iter()
            .filter_map(|p| p["packets"].as_f64())
            .sum(),
    )
}

pub fn main(o: &Opts) -> anyhow::Result<Value> {
    let n: u64 = o.get("flows", 10_000_000)?;
    let max_flows: u64 = o.get("max-flows", 100_000)?;
    let bin = o.required("processor")?;
    let limit = Duration::from_secs(o.get("limit-secs", 300)?);
    let broker = Broker::start().context("tansu not found")?;
    let brokers = broker.bootstrap();
    broker.create_topic("flood", 6)?;
    let addr = http::free_addr();
    let child = Command::new(bin)
        .args([
            "--brokers",
            &brokers,
            "--topic",
            "flood",
            "--group",
            "flood",
        ])
        .args([
            "--metrics-addr",
            &addr.to_string(),
            "--max-flows",
            &max_flows.to_string(),
        ])
        .args(["--consumer-config", "session.timeout.ms=6000"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {bin}"))?;
    let proc_ = KillOnDrop::new(child);
    let pid = proc_.id();
    anyhow::ensure!(
        http::wait_ok(addr, "/readyz", Duration::from_secs(30)),
        "processor not ready"
    );
    let start_rss = rss(pid).context("rss")?;
    let t0 = Instant::now();
    let deadline = t0 + limit;
    let producer = {
        let brokers = brokers.clone();
        std::thread::spawn(move || {
            crate::records::produce(&brokers, "flood", n, |i| i as u32, deadline)
        })
    };
    let mut samples: Vec<(f64, u64, f64)> = vec![(0.0, start_rss, 0.0)];
    let mut done = 0.0;
    while done < n as f64 {
        if Instant::now() > deadline {
            bail!("flood: {done} of {n} records counted within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(250));
        done = consumed(addr).unwrap_or(done);
        samples.push((t0.elapsed().as_secs_f64(), rss(pid).context("rss")?, done));
    }
    let secs = t0.elapsed().as_secs_f64();
    let produce_secs = producer
        .join()
        .map_err(|_| anyhow::anyhow!("producer panicked"))??;
    let (active, evicted) = match http::get(addr, "/metrics") {
        Some((200, body)) => (
            http::sample(&body, "netstream_flows_active").unwrap_or(-1.0),
            http::sample(&body, "netstream_flows_evicted_total{reason=\"capacity\"}")
                .unwrap_or(-1.0),
        ),
        _ => (-1.0, -1.0),
    };
    // After the first tenth of the flood: the table is full and librdkafka's buffers are warm.
    let warm = samples
        .iter()
        .find(|s| s.2 >= n as f64 / 10.0)
        .map_or(start_rss, |s| s.1);
    let peak = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let end = samples.last().map_or(0, |s| s.1);
    let tansu_note = "tansu's own memory grows with the topic; only the processor is measured";
    Ok(json!({
        "flows": n,
        "max_flows": max_flows,
        "secs": secs,
        "produce_secs": produce_secs,
        "rate": n as f64 / secs,
        "rss_start": start_rss,
        "rss_after_first_tenth": warm,
        "rss_peak": peak,
        "rss_end": end,
        "growth_after_first_tenth": end as i64 - warm as i64,
        "flows_active": active,
        "flows_evicted_capacity": evicted,
        "samples": samples.iter().map(|s| json!([s.0, s.1, s.2])).collect::<Vec<_>>(),
        "note": tansu_note,
    }))
}
