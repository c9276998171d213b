//! The probe's security contract, on the real binary:
//! - it captures live as a non-root user holding only CAP_NET_RAW and CAP_NET_ADMIN (set with
//!   util-linux `setpriv`), exactly the traffic sent;
//! - without those capabilities it exits non-zero with an error naming them (not a panic);
//! - a Kafka password, from the environment or `--producer-config`, never appears in its output
//!   or `/metrics`, with debug logging on everywhere (ours and librdkafka's `debug=all`), against
//!   a broker that runs a real SCRAM exchange and rejects it.
//!
//! The capability tests need root (to switch user and make a network namespace) and are skipped
//! with a message otherwise.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use netstream_testkit::broker::Broker;
use netstream_testkit::netns::Netns;
use netstream_testkit::pcap::PcapWriter;
use netstream_testkit::process::KillOnDrop;
use netstream_testkit::secure_broker::SecureBroker;
use netstream_testkit::{frames, http, tools};

const PROBE: &str = env!("CARGO_BIN_EXE_netstream-probe");
/// The uid/gid the operator's pods use for non-root containers.
const NONROOT: &str = "65532";
/// CAP_NET_ADMIN (12) and CAP_NET_RAW (13), as /proc/PID/status shows them.
const NET_CAPS_MASK: &str = "0000000000003000";
const SENT: usize = 100;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `setpriv` running the probe as uid/gid 65532, no supplementary groups, with `caps` (e.g.
/// `+net_raw,+net_admin`) as the only capabilities in every set, or none when empty.
fn as_nonroot(caps: &str) -> Option<Command> {
    let Some(setpriv) = tools::find("setpriv", "NETSTREAM_SETPRIV") else {
        tools::skip("setpriv not found (Debian package util-linux)");
        return None;
    };
    let set = format!("-all{}{caps}", if caps.is_empty() { "" } else { "," });
    let mut cmd = Command::new(setpriv);
    cmd.args([
        &format!("--reuid={NONROOT}"),
        &format!("--regid={NONROOT}"),
        "--clear-groups",
        &format!("--inh-caps={set}"),
        &format!("--ambient-caps={set}"),
        &format!("--bounding-set={set}"),
    ])
    .arg(PROBE);
    Some(cmd)
}

/// A line of /proc/PID/status, e.g. `CapEff`.
fn proc_status(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

#[test]
fn captures_live_as_non_root_with_only_net_raw_and_net_admin() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to switch to uid {NONROOT} and make a network namespace");
        return;
    }
    let Some(mut cmd) = as_nonroot("+net_raw,+net_admin") else {
        return;
    };
    let net = match Netns::create("sc") {
        Ok(n) => n,
        Err(e) => {
            eprintln!("SKIPPED: cannot create a network namespace here ({e})");
            return;
        }
    };
    let Some(broker) = Broker::start() else {
        return;
    };
    broker.create_topic("secure-live", 1).unwrap();
    let metrics = http::free_addr();
    let child = cmd
        .args(["--brokers", &broker.bootstrap(), "--topic", "secure-live"])
        .args([
            "--interface",
            &net.host_if,
            "--filter",
            "udp and dst port 40998",
        ])
        .args(["--metrics-addr", &metrics.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start probe under setpriv");
    let probe = KillOnDrop::new(child);
    assert!(
        http::wait_ok(metrics, "/readyz", Duration::from_secs(20)),
        "probe never became ready"
    );
    // setpriv execs the probe: this pid is the probe, and it really is unprivileged.
    let pid = probe.id();
    assert!(proc_status(pid, "Name").starts_with("netstream-prob"));
    assert_eq!(
        proc_status(pid, "Uid")
            .split_whitespace()
            .collect::<Vec<_>>(),
        [NONROOT; 4]
    );
    assert_eq!(proc_status(pid, "CapEff"), NET_CAPS_MASK);
    assert_eq!(proc_status(pid, "CapBnd"), NET_CAPS_MASK);

    common::send_udp_across(&net, SENT, "secure", 40002, 40998);
    common::assert_captured(metrics, &net, SENT);
    common::stop_and_read(probe, &broker, "secure-live", SENT);
}

#[test]
fn without_capture_capabilities_it_fails_with_an_error_naming_them() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to switch to uid {NONROOT}");
        return;
    }
    let Some(mut cmd) = as_nonroot("") else {
        return;
    };
    // Nothing listens on port 1: the interface must fail first, before any broker talk.
    let child = cmd
        .args([
            "--brokers",
            "127.0.0.1:1",
            "--topic",
            "t",
            "--interface",
            "lo",
        ])
        .args(["--metrics-addr", ""])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start probe under setpriv");
    let out = wait_bounded(KillOnDrop::new(child), Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "a panic: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("netstream-probe: error: cannot capture on interface \"lo\"")
            && stderr.contains("CAP_NET_RAW and CAP_NET_ADMIN"),
        "{stderr}"
    );
}

/// Waits for the child's exit at most `timeout` (then it is killed and the test fails).
fn wait_bounded(child: KillOnDrop, timeout: Duration) -> Output {
    let mut child = child.into_inner();
    let deadline = Instant::now() + timeout;
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Secrets planted below; none may appear anywhere the probe writes or serves.
const ENV_PASSWORD: &str = "planted-env-password-5f1c9a";
const ENV_KEY_PASSWORD: &str = "planted-env-key-password-0be2";
const FLAG_PASSWORD: &str = "planted-flag-password-7d3e41";

#[test]
fn planted_kafka_passwords_never_appear_in_output_or_metrics() {
    // SASL required: librdkafka runs the SCRAM exchange with the planted password and tansu
    // rejects it, so the password is really in use, and errors (where leaks hide) are logged.
    let Some(broker) = SecureBroker::start(None, true) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("few.pcap");
    let mut w = PcapWriter::ethernet();
    for i in 0..5u16 {
        w.packet(
            1_000 + u64::from(i),
            &frames::udp4([10, 0, 0, 1], [10, 0, 0, 2], 1000 + i, 53, b"q"),
        );
    }
    w.write_to(&pcap).unwrap();

    // Once with the credentials from the environment only, once with the password as a flag.
    for (case, flags) in [
        ("env", vec![]),
        ("flag", vec![format!("sasl.password={FLAG_PASSWORD}")]),
    ] {
        let metrics = http::free_addr();
        let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
        let mut cmd = Command::new(PROBE);
        cmd.args(["--brokers", &broker.bootstrap(), "--topic", "t"])
            .args([
                "--metrics-addr",
                &metrics.to_string(),
                "--connect-timeout",
                "10s",
            ])
            .arg("--pcap")
            .arg(&pcap);
        for p in [
            "security.protocol=SASL_PLAINTEXT",
            "sasl.mechanisms=SCRAM-SHA-512",
            "debug=all",
            "message.timeout.ms=3000",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(flags)
        {
            cmd.args(["--producer-config", &p]);
        }
        let child = cmd
            .env("RUST_LOG", "debug")
            .env("NETSTREAM_KAFKA_SASL_USERNAME", "netstream")
            .env("NETSTREAM_KAFKA_SASL_PASSWORD", ENV_PASSWORD)
            .env("NETSTREAM_KAFKA_SSL_KEY_PASSWORD", ENV_KEY_PASSWORD)
            // Files, not pipes: debug output overfills a pipe nobody reads while we wait.
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .expect("start probe");
        let child = KillOnDrop::new(child);
        // Scrape while it retries the broker (the probe serves /metrics from the start).
        let mut served = String::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some((200, body)) = http::get(metrics, "/metrics") {
                served = body;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for path in ["/healthz", "/readyz"] {
            if let Some((_, body)) = http::get(metrics, path) {
                served.push_str(&body);
            }
        }
        let out = wait_bounded(child, Duration::from_secs(60));
        let stdout = std::fs::read_to_string(&out_path).unwrap();
        let stderr = std::fs::read_to_string(&err_path).unwrap();
        assert!(
            !out.status.success(),
            "{case}: the broker rejects every login"
        );
        assert!(
            served.contains("netstream_probe_"),
            "{case}: /metrics not served"
        );
        // Evidence the secrets were in play: the SCRAM exchange ran, librdkafka's debug output
        // is on, and our own config line printed the password masked.
        assert!(
            stderr.contains("unknown-user"),
            "{case}: no SCRAM rejection\n{stderr}"
        );
        assert!(
            stderr.contains("\"level\":\"DEBUG\""),
            "{case}: debug logs off"
        );
        assert!(stderr.contains("sasl.password=***"), "{case}: {stderr}");
        for secret in [ENV_PASSWORD, ENV_KEY_PASSWORD, FLAG_PASSWORD] {
            for (what, text) in [
                ("stdout", &stdout),
                ("stderr", &stderr),
                ("/metrics", &served),
            ] {
                assert!(!text.contains(secret), "{case}: {secret} leaked in {what}");
            }
        }
    }
}
