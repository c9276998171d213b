//! Live capture: a veth pair into a network namespace made here (198.18.0.0/15, the RFC 2544
//! benchmarking range), the probe binary capturing the host end, `tcpreplay` in the namespace
//! sending a generated capture at stepped packet rates (then `--topspeed`). Per step: packets
//! sent, captured, kernel and queue drops, and the probe's CPU seconds (utime + stime from
//! /proc) per million packets. A step with drops is tried once more; stops at the second.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use netstream_testkit::broker::Broker;
use netstream_testkit::frames;
use netstream_testkit::http;
use netstream_testkit::netns::Netns;
use netstream_testkit::pcap::PcapWriter;
use netstream_testkit::process::KillOnDrop;
use serde_json::{Value, json};

use crate::args::{Opts, cpu_secs};

#[derive(Clone, Copy, Default)]
struct Counters {
    captured: f64,
    kernel: f64,
    interface: f64,
    queue_full: f64,
    delivered: f64,
}

fn counters(addr: SocketAddr, ifname: &str) -> Option<Counters> {
    let (status, body) = http::get(addr, "/metrics")?;
    if status != 200 {
        return None;
    }
    let s = |series: String| http::sample(&body, &series).unwrap_or(0.0);
    Some(Counters {
        captured: s(format!(
            "netstream_probe_packets_captured_total{{interface=\"{ifname}\"}}"
        )),
        kernel: s(format!(
            "netstream_probe_packets_dropped_total{{interface=\"{ifname}\",reason=\"kernel\"}}"
        )),
        interface: s(format!(
            "netstream_probe_packets_dropped_total{{interface=\"{ifname}\",reason=\"interface\"}}"
        )),
        queue_full: s(format!(
            "netstream_probe_packets_dropped_total{{interface=\"{ifname}\",reason=\"queue_full\"}}"
        )),
        delivered: s("netstream_probe_records_delivered_total".to_string()),
    })
}

/// Waits until the captured count stops moving (2 polls 300 ms apart) or `limit` passes.
fn settle(addr: SocketAddr, ifname: &str, want: f64, limit: Duration) -> Option<Counters> {
    let t = Instant::now();
    let mut last = counters(addr, ifname)?;
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let c = counters(addr, ifname)?;
        let still = c.captured == last.captured && c.kernel == last.kernel;
        if (still && (c.captured >= want || t.elapsed() > Duration::from_secs(2)))
            || t.elapsed() > limit
        {
            // libpcap's drop counters are read periodically: one more look after a second.
            std::thread::sleep(Duration::from_millis(1100));
            return counters(addr, ifname);
        }
        last = c;
    }
}

pub fn main(o: &Opts) -> anyhow::Result<Value> {
    let bin = o.required("probe")?;
    let tcpreplay = o.str("tcpreplay").unwrap_or("tcpreplay");
    let step_secs: f64 = o.get("step-secs", 3.0)?;
    let rates: Vec<u64> = o
        .str("rates")
        .unwrap_or("20000,50000,100000,150000,200000,300000,0")
        .split(',')
        .map(|r| r.trim().parse().context("--rates: numbers, 0 = topspeed"))
        .collect::<anyhow::Result<_>>()?;
    let limit = Duration::from_secs(o.get("limit-secs", 120)?);
    let net = Netns::create("bn").map_err(|e| {
        anyhow::anyhow!("cannot create a network namespace (needs root / CAP_NET_ADMIN): {e}")
    })?;
    let broker = Broker::start().context("tansu not found")?;
    broker.create_topic("live", 6)?;
    let dir = tempfile::tempdir()?;
    let pcap = dir.path().join("live.pcap");
    const PER_FILE: u64 = 10_000;
    let mut w = PcapWriter::ethernet();
    for i in 0..PER_FILE {
        let f = frames::udp4(
            [198, 18, 0, 2],
            [198, 18, 0, 1],
            20000 + (i % 1000) as u16,
            40999,
            &[5u8; 64],
        );
        w.packet(i, &f);
    }
    w.write_to(&pcap)?;
    let metrics = http::free_addr();
    let child = Command::new(bin)
        .args(["--brokers", &broker.bootstrap(), "--topic", "live"])
        .args([
            "--interface",
            &net.host_if,
            "--filter",
            "udp and dst port 40999",
        ])
        .args([
            "--metrics-addr",
            &metrics.to_string(),
            "--node-name",
            "bench",
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {bin}"))?;
    let probe = KillOnDrop::new(child);
    let pid = probe.id();
    anyhow::ensure!(
        http::wait_ok(metrics, "/readyz", Duration::from_secs(20)),
        "probe not ready"
    );
    let t0 = Instant::now();
    let mut steps = Vec::new();
    let mut best_zero_drop: Option<f64> = None;
    let mut cpu_per_m_at_best = None;
    let mut todo: std::collections::VecDeque<(u64, bool)> =
        rates.into_iter().map(|r| (r, false)).collect();
    while let Some((rate, retry)) = todo.pop_front() {
        if t0.elapsed() > limit {
            eprintln!("live: time limit reached, stopping the steps");
            break;
        }
        let before = counters(metrics, &net.host_if).context("probe metrics")?;
        let cpu0 = cpu_secs(pid).context("probe cpu")?;
        // Topspeed sends as many as the 300k step would, as fast as it can.
        let packets = if rate == 0 {
            300_000.0 * step_secs
        } else {
            rate as f64 * step_secs
        };
        let loops = (packets / PER_FILE as f64).ceil().max(1.0) as u64;
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &net.ns,
            tcpreplay,
            "-i",
            &net.peer,
            "--loop",
            &loops.to_string(),
        ]);
        if rate == 0 {
            cmd.arg("--topspeed");
        } else {
            cmd.arg(format!("--pps={rate}"));
        }
        let out = cmd
            .arg(&pcap)
            .stdin(Stdio::null())
            .output()
            .context("running tcpreplay")?;
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            bail!("tcpreplay failed: {}", text.trim());
        }
        // "Rated: 1234.5 Bps, 0.01 Mbps, 20000.00 pps" and "Successful packets: N".
        let sent_pps = text
            .lines()
            .find(|l| l.contains("Rated:"))
            .and_then(|l| l.split(',').find(|p| p.contains("pps")))
            .and_then(|p| p.trim().trim_end_matches("pps").trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        let sent = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Successful packets:"))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or((loops * PER_FILE) as f64);
        let after = settle(
            metrics,
            &net.host_if,
            before.captured + sent,
            Duration::from_secs(15),
        )
        .context("probe metrics")?;
        let cpu1 = cpu_secs(pid).context("probe cpu")?;
        let captured = after.captured - before.captured;
        let kernel = after.kernel - before.kernel + after.interface - before.interface;
        let queue = after.queue_full - before.queue_full;
        let missing = (sent - captured - kernel).max(0.0);
        let drops = kernel + queue + missing;
        let cpu_per_m = if captured > 0.0 {
            (cpu1 - cpu0) / captured * 1e6
        } else {
            0.0
        };
        eprintln!(
            "live: target {} pps, sent {sent} at {sent_pps:.0} pps, captured {captured}, kernel drops {kernel}, queue drops {queue}, unaccounted {missing}, {cpu_per_m:.2} CPU s per M packets",
            if rate == 0 {
                "top".to_string()
            } else {
                rate.to_string()
            }
        );
        steps.push(json!({
            "target_pps": rate, "sent": sent, "sent_pps": sent_pps, "captured": captured,
            "kernel_drops": kernel, "queue_drops": queue, "unaccounted": missing,
            "delivered_total": after.delivered, "cpu_secs": cpu1 - cpu0, "cpu_secs_per_million": cpu_per_m,
            "retry": retry,
        }));
        if drops == 0.0 {
            if best_zero_drop.is_none_or(|b| sent_pps > b) {
                best_zero_drop = Some(sent_pps);
                cpu_per_m_at_best = Some(cpu_per_m);
            }
        } else if !retry {
            // Other work on the machine can cause a one-off drop: one more try at this rate.
            todo.push_front((rate, true));
        } else {
            break;
        }
    }
    drop(probe);
    Ok(json!({
        "interface": "veth (host end; sender tcpreplay in a network namespace)",
        "max_zero_drop_pps": best_zero_drop,
        "cpu_secs_per_million_at_max": cpu_per_m_at_best,
        "step_secs": step_secs,
        "steps": steps,
    }))
}
