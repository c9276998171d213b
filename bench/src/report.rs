//! The one table: reads what the other steps left in `--raw DIR` (JSON from the subcommands,
//! the replay bench's text output, criterion's estimates) and a `<step>.skip` file with the
//! reason for every step that did not run; prints the table and writes `--out PATH.md` and
//! `PATH.json` with the machine it ran on.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use serde_json::{Value, json};

use crate::args::Opts;

fn read_json(dir: &Path, name: &str) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).ok()?;
    serde_json::from_str(&text).ok()
}

fn skip_reason(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.skip")))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "did not run (no output)".to_string())
}

fn cmd_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_else(|| "unknown".to_string())
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string();
    let tansu = netstream_testkit::tools::find("tansu", "NETSTREAM_TANSU")
        .map(|p| cmd_line(&p.to_string_lossy(), &["--version"]))
        .unwrap_or_else(|| "not installed".into());
    json!({
        "host": host,
        "cpu": cpu,
        "cores": cores,
        "memory_gib": mem_kb as f64 / 1024.0 / 1024.0,
        "kernel": kernel,
        "rustc": cmd_line("rustc", &["--version"]),
        "tansu": tansu,
        "loadavg_at_report": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
    })
}

/// Every number in `line`, in order.
fn numbers(line: &str) -> Vec<f64> {
    line.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|t| t.trim_matches('.').parse().ok())
        .collect()
}

/// The replay bench's lines: rates, min/max, ratio, own ns per packet.
fn replay(dir: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join("replay.txt")).ok()?;
    let line = text.lines().find(|l| l.starts_with("replay into tansu"))?;
    let n = numbers(line);
    let own = text
        .lines()
        .find(|l| l.starts_with("probe's own work"))
        .and_then(|l| numbers(l).last().copied());
    let hdr = text
        .lines()
        .find(|l| l.starts_with("record format:"))
        .map(str::to_string);
    (n.len() >= 9).then(|| {
        json!({
            "packets": n[0], "rounds": n[1],
            "probe": {"median": n[2], "min": n[3], "max": n[4]},
            "bare": {"median": n[5], "min": n[6], "max": n[7]},
            "ratio": n[8], "own_ns_per_packet": own, "record_format_line": hdr,
            "line": line,
        })
    })
}

/// Criterion's median for `id` (e.g. `wire/parse+key`), per element when it has a throughput.
fn criterion(dir: &Path, id: &str, since: u64) -> Option<(f64, f64, f64)> {
    let base = dir.join(id).join("new");
    // Only results of this run, not an older one left in target/criterion.
    let modified = std::fs::metadata(base.join("estimates.json"))
        .ok()?
        .modified()
        .ok()?;
    let secs = modified
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    if secs < since {
        return None;
    }
    let est: Value =
        serde_json::from_str(&std::fs::read_to_string(base.join("estimates.json")).ok()?).ok()?;
    let bm: Value =
        serde_json::from_str(&std::fs::read_to_string(base.join("benchmark.json")).ok()?).ok()?;
    let per = bm["throughput"]["Elements"].as_f64().unwrap_or(1.0);
    let m = &est["median"];
    Some((
        m["point_estimate"].as_f64()? / per,
        m["confidence_interval"]["lower_bound"].as_f64()? / per,
        m["confidence_interval"]["upper_bound"].as_f64()? / per,
    ))
}

fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M/s", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k/s", v / 1e3)
    } else {
        format!("{v:.0}/s")
    }
}

fn mib(b: f64) -> String {
    format!("{:.1} MiB", b / 1048576.0)
}

struct Table {
    rows: Vec<[String; 5]>,
}

impl Table {
    fn row(&mut self, what: &str, median: String, range: String, goal: &str, note: String) {
        self.rows
            .push([what.to_string(), median, range, goal.to_string(), note]);
    }

    fn skipped(&mut self, what: &str, why: &str) {
        self.row(what, "skipped".into(), String::new(), "", why.to_string());
    }

    fn markdown(&self) -> String {
        let mut s = String::from(
            "| measurement | median | min–max | goal | notes |\n|---|---|---|---|---|\n",
        );
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                r[0],
                r[1],
                r[2],
                r[3],
                r[4].replace('|', "/")
            ));
        }
        s
    }
}

fn stat(v: &Value) -> Option<(f64, f64, f64)> {
    Some((
        v["median"].as_f64()?,
        v["min"].as_f64()?,
        v["max"].as_f64()?,
    ))
}

fn rate_row(t: &mut Table, what: &str, v: &Value, goal: &str, note: String) {
    match stat(v) {
        Some((m, lo, hi)) => t.row(
            what,
            rate(m),
            format!("{}–{}", rate(lo), rate(hi)),
            goal,
            note,
        ),
        None => t.skipped(what, &note),
    }
}

/// Ratios of two run lists round by round (same length), as median/min/max.
fn ratios(a: &Value, b: &Value) -> Option<(f64, f64, f64)> {
    let a: Vec<f64> = a["runs"]
        .as_array()?
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    let b: Vec<f64> = b["runs"]
        .as_array()?
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    if a.is_empty() || a.len() != b.len() {
        return None;
    }
    let mut r: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x / y).collect();
    r.sort_by(f64::total_cmp);
    let med = crate::args::stats(&r)["median"].as_f64()?;
    Some((med, r[0], r[r.len() - 1]))
}

fn ratio_row(t: &mut Table, what: &str, a: &Value, b: &Value, goal: &str, note: &str) {
    match ratios(a, b) {
        Some((m, lo, hi)) => t.row(
            what,
            format!("{m:.2}"),
            format!("{lo:.2}–{hi:.2}"),
            goal,
            note.to_string(),
        ),
        None => {
            let m = stat(a).zip(stat(b)).map(|((x, ..), (y, ..))| x / y);
            match m {
                Some(m) => t.row(
                    what,
                    format!("{m:.2}"),
                    String::new(),
                    goal,
                    format!("{note} (ratio of medians)"),
                ),
                None => t.skipped(what, "a side is missing"),
            }
        }
    }
}

pub fn main(o: &Opts) -> anyhow::Result<Value> {
    let raw = PathBuf::from(o.required("raw")?);
    let out = PathBuf::from(o.required("out")?);
    let crit = PathBuf::from(o.str("criterion").unwrap_or("target/criterion"));
    let mode = o.str("mode").unwrap_or("full");
    let since: u64 = o.get("since", 0)?;
    let mut t = Table { rows: Vec::new() };

    // 1. Probe replay.
    let rp = replay(&raw);
    match &rp {
        Some(r) => {
            let note = format!(
                "{:.0} packets × {:.0} rounds, fresh tansu per round, every record acknowledged; bimodal on tansu (see notes)",
                r["packets"].as_f64().unwrap_or(0.0),
                r["rounds"].as_f64().unwrap_or(0.0)
            );
            rate_row(
                &mut t,
                "probe replay (libpcap → parse → produce → acked)",
                &r["probe"],
                "",
                note,
            );
            rate_row(
                &mut t,
                "bare rdkafka producer, same pre-built records",
                &r["bare"],
                "",
                "probe's producer config".into(),
            );
            let ratio = r["ratio"].as_f64().unwrap_or(0.0);
            t.row(
                "probe / bare producer",
                format!("{ratio:.2}"),
                String::new(),
                "≥ 0.9",
                if ratio >= 0.9 {
                    "met".into()
                } else {
                    "NOT met".into()
                },
            );
            if let Some(own) = r["own_ns_per_packet"].as_f64() {
                t.row(
                    "probe's own work per packet (read, parse, key, encode)",
                    format!("{own:.0} ns"),
                    String::new(),
                    "",
                    "outside Kafka, one pass".into(),
                );
            }
        }
        None => t.skipped(
            "probe replay vs bare producer",
            &skip_reason(&raw, "replay"),
        ),
    }

    // 2. Consume.
    let cs = read_json(&raw, "consume");
    match &cs {
        Some(c) => {
            let k = &c["consumers"];
            let base = format!(
                "{} records, {} flows, {} partitions, {} rounds; first→N-th record, group join excluded",
                c["records"], c["flows"], c["partitions"], c["rounds"]
            );
            rate_row(
                &mut t,
                "bare rdkafka consumer (no work per record)",
                &k["bare_rdkafka"]["rate"],
                "",
                base,
            );
            rate_row(
                &mut t,
                "processor consume + count (in-process loop)",
                &k["processor"]["rate"],
                "",
                "offsets stored per record, committed every 1 s".into(),
            );
            ratio_row(
                &mut t,
                "processor / bare consumer",
                &k["processor"]["rate"],
                &k["bare_rdkafka"]["rate"],
                "≥ 0.8",
                "per round",
            );
            for (name, label) in [
                (
                    "python_confluent",
                    "Python confluent-kafka, dict count per key",
                ),
                ("quixstreams", "quixstreams stateful per-key count"),
            ] {
                let p = &k[name];
                match p["error"].as_str() {
                    Some(e) if stat(&p["rate"]).is_none() => t.skipped(label, e),
                    _ => rate_row(
                        &mut t,
                        label,
                        &p["rate"],
                        "",
                        format!(
                            "first→{}-th record{}",
                            p["records"],
                            p["error"]
                                .as_str()
                                .map(|e| format!("; later round failed: {e}"))
                                .unwrap_or_default()
                        ),
                    ),
                }
            }
            let pr = &k["processor"]["rate"];
            if stat(&k["quixstreams"]["rate"]).is_some() {
                ratio_row(
                    &mut t,
                    "processor / quixstreams",
                    pr,
                    &k["quixstreams"]["rate"],
                    "≥ 10×",
                    "per round",
                );
            }
            if stat(&k["python_confluent"]["rate"]).is_some() {
                ratio_row(
                    &mut t,
                    "processor / Python confluent-kafka",
                    pr,
                    &k["python_confluent"]["rate"],
                    "",
                    "per round",
                );
            }
        }
        None => t.skipped(
            "consume (processor, bare, Python peers)",
            &skip_reason(&raw, "consume"),
        ),
    }

    // 3. Live capture.
    match read_json(&raw, "live") {
        Some(l) => {
            let steps = l["steps"].as_array().map_or(0, Vec::len);
            match l["max_zero_drop_pps"].as_f64() {
                Some(p) => {
                    t.row(
                        "live capture: highest rate with zero drops (veth, netns)",
                        format!("{} packets", rate(p)),
                        String::new(),
                        "",
                        format!(
                            "tcpreplay steps of {} s, {steps} steps; next step: {}",
                            l["step_secs"],
                            l["steps"]
                                .as_array()
                                .and_then(|s| s.last())
                                .map(|s| format!(
                                    "{:.0} sent at {:.0} pps, {:.0} kernel / {:.0} queue drops",
                                    s["sent"].as_f64().unwrap_or(0.0),
                                    s["sent_pps"].as_f64().unwrap_or(0.0),
                                    s["kernel_drops"].as_f64().unwrap_or(0.0),
                                    s["queue_drops"].as_f64().unwrap_or(0.0)
                                ))
                                .unwrap_or_default()
                        ),
                    );
                    if let Some(c) = l["cpu_secs_per_million_at_max"].as_f64() {
                        t.row(
                            "probe CPU per million packets (live, at that rate)",
                            format!("{c:.2} s"),
                            String::new(),
                            "",
                            "utime+stime of the probe process".into(),
                        );
                    }
                }
                None => t.row(
                    "live capture: highest rate with zero drops",
                    "none".into(),
                    String::new(),
                    "",
                    "drops at the first step".into(),
                ),
            }
        }
        None => t.skipped("live capture on a veth", &skip_reason(&raw, "live")),
    }

    // 4. Memory.
    let rn = read_json(&raw, "render");
    if let Some(r) = &rn {
        for n in ["10000", "100000"] {
            if let Some(b) = r[n]["bytes_per_flow"].as_f64() {
                t.row(
                    &format!("flow table bytes per tracked flow ({n} flows)"),
                    format!("{b:.1} B"),
                    String::new(),
                    "",
                    "entries + index heap, max-flows = flows".into(),
                );
            }
        }
    }
    match read_json(&raw, "flood") {
        Some(f) => {
            let g = |k: &str| f[k].as_f64().unwrap_or(0.0);
            t.row(
                &format!(
                    "processor RSS, flood of {} unique flows, --max-flows {}",
                    f["flows"], f["max_flows"]
                ),
                format!("end {}", mib(g("rss_end"))),
                format!(
                    "start {} / after 1st tenth {} / peak {}",
                    mib(g("rss_start")),
                    mib(g("rss_after_first_tenth")),
                    mib(g("rss_peak"))
                ),
                "flat",
                format!(
                    "growth after the first tenth: {}; {:.0} rec/s; {:.0} active, {:.0} evicted",
                    mib(g("growth_after_first_tenth")),
                    g("rate"),
                    g("flows_active"),
                    g("flows_evicted_capacity")
                ),
            );
        }
        None => t.skipped(
            "processor RSS under a unique-flow flood",
            &skip_reason(&raw, "flood"),
        ),
    }

    // 5. Exposition.
    match &rn {
        Some(r) => {
            for n in ["10000", "100000"] {
                if let Some((m, lo, hi)) = stat(&r[n]["render_ms"]) {
                    t.row(
                        &format!("/metrics render at {n} flows"),
                        format!("{m:.1} ms"),
                        format!("{lo:.1}–{hi:.1} ms"),
                        "",
                        format!("{} of text", mib(r[n]["bytes"].as_f64().unwrap_or(0.0))),
                    );
                }
            }
        }
        None => t.skipped("/metrics render", &skip_reason(&raw, "render")),
    }

    // 6. Micro (criterion; range = 95% confidence interval of the median).
    let micro = [
        (
            "wire/parse+key",
            "parse + key (+ key encode) per packet",
            "≤ 50 ns",
        ),
        (
            "wire/parse+key+value",
            "parse + key + value encode per packet",
            "",
        ),
        ("wire/key decode", "key decode per key", ""),
        (
            "update/tracked_flow_100k_table",
            "table update, tracked flow (100k table)",
            "",
        ),
        (
            "update/new_flow_full_table_evicting",
            "table update, new flow into a full table (evicting)",
            "",
        ),
        (
            "update/record_decode_and_count",
            "record decode + count (whole per-record path)",
            "",
        ),
        (
            "render/100k_flows_metrics_endpoint",
            "/metrics render 100k flows (criterion)",
            "",
        ),
    ];
    let mut micro_json = serde_json::Map::new();
    for (id, what, goal) in micro {
        match criterion(&crit, id, since) {
            Some((m, lo, hi)) => {
                let (m, lo, hi, unit) = if m > 1e6 {
                    (m / 1e6, lo / 1e6, hi / 1e6, "ms")
                } else {
                    (m, lo, hi, "ns")
                };
                t.row(
                    what,
                    format!("{m:.1} {unit}"),
                    format!("{lo:.1}–{hi:.1} {unit}"),
                    goal,
                    "criterion median (range: 95% CI)".into(),
                );
                micro_json.insert(
                    id.to_string(),
                    json!({"median": m, "ci_low": lo, "ci_high": hi, "unit": unit}),
                );
            }
            None => t.skipped(
                what,
                &skip_reason(
                    &raw,
                    if id.starts_with("wire") {
                        "micro-wire"
                    } else {
                        "micro-table"
                    },
                ),
            ),
        }
    }

    let m = machine();
    let date = std::fs::read_to_string(raw.join("date"))
        .unwrap_or_default()
        .trim()
        .to_string();
    let head = format!(
        "netstream bench ({mode}), {date}\nmachine: {} · {} cores · {:.1} GiB · kernel {} · {} · tansu {} · load at end {}\n",
        m["cpu"].as_str().unwrap_or(""),
        m["cores"],
        m["memory_gib"].as_f64().unwrap_or(0.0),
        m["kernel"].as_str().unwrap_or(""),
        m["rustc"].as_str().unwrap_or(""),
        m["tansu"].as_str().unwrap_or(""),
        m["loadavg_at_report"].as_str().unwrap_or(""),
    );
    let table = t.markdown();
    println!("{head}\n{table}");
    let notes = std::fs::read_to_string(raw.join("notes.md")).unwrap_or_default();
    let md = format!(
        "# netstream bench results\n\n```\n{head}```\n\n{table}\n{notes}\nRaw numbers: `{}`.\n",
        out.with_extension("json")
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default()
    );
    std::fs::write(out.with_extension("md"), md).context("writing the results .md")?;
    let skipped: Vec<Value> = [
        "replay",
        "consume",
        "live",
        "flood",
        "render",
        "micro-wire",
        "micro-table",
    ]
    .iter()
    .filter(|s| raw.join(format!("{s}.skip")).exists())
    .map(|s| json!({"step": s, "reason": skip_reason(&raw, s)}))
    .collect();
    let all = json!({
        "mode": mode, "date": date, "machine": m,
        "replay": rp, "consume": cs, "live": read_json(&raw, "live"), "flood": read_json(&raw, "flood"),
        "render": rn, "micro": micro_json,
        "skipped": skipped,
    });
    std::fs::write(
        out.with_extension("json"),
        serde_json::to_string_pretty(&all)?,
    )
    .context("writing the results .json")?;
    Ok(Value::Null)
}
