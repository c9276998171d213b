//! `netstream-bench`: the measurements `bench/run` calls. Each subcommand prints one JSON object
//! on stdout (progress on stderr):
//!
//! - `consume`: the processor's consume + count rate against a bare rdkafka consumer and the
//!   Python peers, on one topic produced once per round;
//! - `render`: `/metrics` render time and size at 10k and 100k flows;
//! - `flood`: the processor binary's RSS under a flood of unique flows with a bounded table;
//! - `live`: live capture on a veth into a network namespace, stepping the packet rate up until
//!   the kernel drops;
//! - `report`: the table and the results files from the JSON the others wrote;
//! - `pcap`: writes a capture of `--packets` frames over `--flows` flows (for profiling).
//!
//! Options are `--name value` pairs; every loop is bounded in count and in time.

mod args;
mod consume;
mod flood;
mod live;
mod records;
mod render;
mod report;

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1);
    let Some(cmd) = argv.next() else {
        eprintln!("usage: netstream-bench consume|render|flood|live|report|pcap [--opt value ...]");
        return ExitCode::from(2);
    };
    let opts = match args::Opts::parse(argv) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("netstream-bench: {e:#}");
            return ExitCode::from(2);
        }
    };
    let result = match cmd.as_str() {
        "consume" => consume::main(&opts),
        "render" => render::main(&opts),
        "flood" => flood::main(&opts),
        "live" => live::main(&opts),
        "report" => report::main(&opts),
        "pcap" => records::pcap(&opts),
        other => Err(anyhow::anyhow!("unknown subcommand {other}")),
    };
    match result {
        Ok(v) => {
            if !v.is_null() {
                println!("{v}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("netstream-bench {cmd}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
