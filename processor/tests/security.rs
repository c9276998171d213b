//! The processor's security contract, on the real binary against a real tansu:
//! - it runs as uid 65532 with no capabilities on a read-only root filesystem (a mount namespace
//!   made here; /tmp a fresh tmpfs, as the Deployment's emptyDir), counts exactly and serves
//!   /metrics;
//! - a Kafka password from the environment or `--consumer-config` never appears in its output,
//!   /metrics or API, with debug logging on (ours and librdkafka's `debug=all`) against a broker
//!   that runs a real SCRAM exchange and rejects it;
//! - Kafka over TLS end to end: probe (replaying a capture) -> TLS -> tansu -> TLS -> processor,
//!   exact counts; a client trusting the wrong CA fails with a clear error; SASL over TLS gets as
//!   far as the broker's verdict. tansu 0.6.0 serves neither TLS nor a SASL login that can
//!   succeed: see `netstream_testkit::secure_broker`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Metrics, RawProducer, Traffic, wait_until};
use netstream_testkit::broker::Broker;
use netstream_testkit::pcap::PcapWriter;
use netstream_testkit::prometheus::http_get;
use netstream_testkit::secure_broker::{SecureBroker, TestCa};
use netstream_testkit::{frames, http, tools};

const NONROOT: &str = "65532";

fn is_root() -> bool {
    proc_status(std::process::id(), "Uid")
        .split_whitespace()
        .nth(1)
        == Some("0")
}

/// A child killed on drop, its stderr in a file.
struct Running {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Running {
    fn spawn(mut cmd: Command, addr: String, log: PathBuf) -> Running {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(log.with_extension("out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn");
        Running { child, addr, log }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
            + &std::fs::read_to_string(self.log.with_extension("out")).unwrap_or_default()
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(&self.addr, path, Duration::from_secs(10)).ok()
    }

    fn wait_ready(&mut self) {
        wait_until(Duration::from_secs(30), "processor ready", || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("processor exited early: {status}\n{}", self.logs());
            }
            matches!(self.get("/readyz"), Some((200, _)))
        });
    }

    fn metrics(&self) -> Metrics {
        let (status, body) = self.get("/metrics").expect("GET /metrics");
        assert_eq!(status, 200, "{body}");
        Metrics::parse(&body)
    }

    /// Waits (bounded) for the exit status.
    fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "no exit within {timeout:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.wait_exit(Duration::from_secs(20))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn processor_cmd(brokers: &str, topic: &str, addr: &str) -> Command {
    let mut cmd = Command::new(common::PROCESSOR);
    processor_args(&mut cmd, brokers, topic, addr);
    cmd
}

fn processor_args(cmd: &mut Command, brokers: &str, topic: &str, addr: &str) {
    cmd.args(["--brokers", brokers, "--topic", topic, "--group", "sec"])
        .args(["--metrics-addr", addr, "--commit-interval", "200ms"])
        .env("NETSTREAM_LOG_FORMAT", "text");
}

/// Mounts every filesystem read-only in a new mount namespace (kernel filesystems aside: the
/// container runtime gives a pod its own), checks that writing to / and beside the binary
/// fails, mounts a fresh tmpfs on /tmp (the Deployment's emptyDir), then drops to uid/gid 65532
/// with no capabilities and no new privileges and execs the rest of its arguments. A binary
/// under /tmp (a checkout there) is bound back into the new tmpfs, read-only, through a
/// descriptor of its directory opened before the tmpfs hid it (not canonicalized: the
/// descriptor's path names the hidden directory).
const READ_ONLY_ROOT: &str = r#"
findmnt -rn -o TARGET | grep -vE '^/(proc|sys|dev)(/|$)' | while read -r m; do
  mount -o remount,bind,ro "$m" 2>/dev/null || true
done
for probe in /.netstream-rw-check "$(dirname "$1")/.netstream-rw-check"; do
  if touch "$probe" 2>/dev/null; then rm -f "$probe"; echo "still writable: $probe" >&2; exit 97; fi
done
bin="$(readlink -f "$1")"
exec 3<"$(dirname "$bin")"
mount -t tmpfs -o size=64m,mode=1777 tmpfs /tmp
case "$bin" in /tmp/*)
  (umask 022; mkdir -p "$(dirname "$bin")") && touch "$bin" \
    && mount --no-canonicalize --bind "/proc/self/fd/3/$(basename "$bin")" "$bin" \
    && mount -o remount,bind,ro "$bin" || { echo "cannot keep $bin visible" >&2; exit 96; }
esac
exec 3<&-
exec setpriv --reuid=65532 --regid=65532 --clear-groups --inh-caps=-all --ambient-caps=-all \
  --bounding-set=-all --no-new-privs "$@"
"#;

fn proc_status(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// The options of the mount at `/` as process `pid` sees it.
fn root_mount_options(pid: u32) -> String {
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    info.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(4) == Some(&"/")).then(|| f.get(5).unwrap_or(&"").to_string())
        })
        .next_back()
        .unwrap_or_default()
}

/// Whether this machine lets the test make mount namespaces and switch users (else it says
/// why, and the test is skipped).
fn can_sandbox() -> bool {
    if !is_root() {
        eprintln!("SKIPPED: needs root to make a mount namespace and switch to uid {NONROOT}");
        return false;
    }
    for tool in ["unshare", "setpriv", "findmnt"] {
        if tools::find(tool, &format!("NETSTREAM_{}", tool.to_uppercase())).is_none() {
            tools::skip(&format!("{tool} not found (Debian package util-linux)"));
            return false;
        }
    }
    // Root in a container without CAP_SYS_ADMIN cannot make mount namespaces.
    let can_unshare = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !can_unshare {
        eprintln!("SKIPPED: mount namespaces are not permitted here");
    }
    can_unshare
}

/// A checkout under /tmp: the sandbox's fresh tmpfs on /tmp must not hide the binary (it did:
/// "setpriv: failed to execute .../netstream-processor: No such file or directory").
#[test]
fn read_only_root_sandbox_keeps_a_binary_under_tmp() {
    use std::os::unix::fs::PermissionsExt;
    if !can_sandbox() {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("netstream-checkout")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("netstream-processor");
    std::fs::copy(common::PROCESSOR, &bin).unwrap();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(READ_ONLY_ROOT)
        .arg("sh")
        .arg(&bin)
        .arg("--help")
        .output()
        .unwrap();
    let text = netstream_testkit::process::output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("--brokers"), "{text}");
}

#[test]
fn runs_as_non_root_without_capabilities_on_a_read_only_root() {
    if !can_sandbox() {
        return;
    }
    let Some(broker) = Broker::start() else {
        return;
    };
    broker.create_topic("ro", 2).unwrap();
    let mut traffic = Traffic::default();
    for i in 0..200u16 {
        traffic.packet4(
            6,
            ([10, 1, 0, 1], 40000 + i % 20),
            ([10, 1, 0, 2], 443),
            100,
            false,
        );
    }
    for i in 0..50u16 {
        traffic.packet4(
            17,
            ([10, 1, 0, 3], 5353),
            ([10, 1, 0, 4], 53 + i % 5),
            80,
            false,
        );
    }
    let total = traffic.records.len() as f64;

    let dir = tempfile::tempdir().unwrap();
    let addr = http::free_addr().to_string();
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(READ_ONLY_ROOT)
        .args(["sh", common::PROCESSOR]);
    processor_args(&mut cmd, &broker.bootstrap(), "ro", &addr);
    let mut p = Running::spawn(cmd, addr, dir.path().join("processor.log"));
    p.wait_ready();

    // unshare, sh and setpriv all exec: this pid is the processor, as the kernel sees it.
    let pid = p.child.id();
    assert!(proc_status(pid, "Name").starts_with("netstream-proc"));
    assert_eq!(
        proc_status(pid, "Uid")
            .split_whitespace()
            .collect::<Vec<_>>(),
        [NONROOT; 4]
    );
    for caps in ["CapEff", "CapPrm", "CapBnd", "CapAmb"] {
        assert_eq!(proc_status(pid, caps), "0000000000000000", "{caps}");
    }
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");
    let root = root_mount_options(pid);
    assert!(root.split(',').any(|o| o == "ro"), "/ mounted {root}");

    let mut producer = RawProducer::new(&broker.bootstrap(), "ro");
    traffic.produce(&mut producer);
    wait_until(Duration::from_secs(30), "every record consumed", || {
        p.metrics().sum("netstream_records_consumed_total", &[]) >= total
    });
    let m = p.metrics();
    assert_eq!(m.sum("netstream_records_consumed_total", &[]), total);
    for (proto, want) in &traffic.protocols {
        assert_eq!(
            m.sum("netstream_protocol_packets_total", &[("protocol", proto)]),
            want.packets as f64,
            "{proto}"
        );
    }
    assert!(matches!(p.get("/api/v1/flows"), Some((200, _))));
    let status = p.terminate();
    assert!(status.success(), "exit {status}\n{}", p.logs());
}

const ENV_PASSWORD: &str = "planted-env-password-c4e81b";
const ENV_KEY_PASSWORD: &str = "planted-env-key-password-2a97";
const FLAG_PASSWORD: &str = "planted-flag-password-91f0d6";

#[test]
fn planted_kafka_passwords_never_appear_in_output_metrics_or_api() {
    let Some(broker) = SecureBroker::start(None, true) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (case, extra) in [
        ("env", vec![]),
        ("flag", vec![format!("sasl.password={FLAG_PASSWORD}")]),
    ] {
        let addr = http::free_addr().to_string();
        let mut cmd = processor_cmd(&broker.bootstrap(), "t", &addr);
        // Long enough for a SCRAM exchange on a loaded CI machine (4 s was not).
        cmd.args(["--connect-timeout", "10s"]);
        for p in [
            "security.protocol=SASL_PLAINTEXT",
            "sasl.mechanisms=SCRAM-SHA-512",
            "debug=all",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(extra)
        {
            cmd.args(["--consumer-config", &p]);
        }
        cmd.env("RUST_LOG", "debug")
            .env("NETSTREAM_KAFKA_SASL_USERNAME", "netstream")
            .env("NETSTREAM_KAFKA_SASL_PASSWORD", ENV_PASSWORD)
            .env("NETSTREAM_KAFKA_SSL_KEY_PASSWORD", ENV_KEY_PASSWORD);
        let mut p = Running::spawn(cmd, addr, dir.path().join(format!("{case}.log")));
        // Everything it serves while it retries the broker.
        let mut served = String::new();
        wait_until(Duration::from_secs(10), "processor serving", || {
            matches!(p.get("/metrics"), Some((200, _)))
        });
        for path in [
            "/metrics",
            "/healthz",
            "/readyz",
            "/api/v1/flows",
            "/api/v1/protocols",
        ] {
            if let Some((_, body)) = p.get(path) {
                served.push_str(&body);
            }
        }
        let status = p.wait_exit(Duration::from_secs(60));
        let logs = p.logs();
        assert!(!status.success(), "{case}: the broker rejects every login");
        assert!(served.contains("netstream_"), "{case}: nothing served");
        assert!(
            logs.contains("unknown-user"),
            "{case}: no SCRAM rejection\n{logs}"
        );
        assert!(logs.contains("DEBUG"), "{case}: debug logs off");
        assert!(logs.contains("sasl.password=***"), "{case}: {logs}");
        for secret in [ENV_PASSWORD, ENV_KEY_PASSWORD, FLAG_PASSWORD] {
            assert!(
                !logs.contains(secret),
                "{case}: {secret} leaked in the output"
            );
            assert!(
                !served.contains(secret),
                "{case}: {secret} leaked over HTTP"
            );
        }
    }
}

/// The probe binary beside the processor's (cargo builds both for workspace tests).
fn probe_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NETSTREAM_PROBE_BIN") {
        return Some(PathBuf::from(p));
    }
    let sibling = Path::new(common::PROCESSOR)
        .parent()?
        .join("netstream-probe");
    if sibling.is_file() {
        Some(sibling)
    } else {
        tools::skip("netstream-probe not built (cargo build -p netstream-probe)");
        None
    }
}

/// A capture with known protocol counts.
fn capture(path: &Path) -> BTreeMap<&'static str, u64> {
    let mut w = PcapWriter::ethernet();
    let mut ts = 1_000_000u64;
    let (a, b) = ([10, 9, 0, 1], [10, 9, 0, 2]);
    let mut add = |f: Vec<u8>| {
        ts += 10;
        w.packet(ts, &f);
    };
    add(frames::tcp4(a, b, 41000, 9093, true, b""));
    for i in 0..60usize {
        add(frames::tcp4(a, b, 41000, 9093, false, &vec![b'x'; 10 + i]));
    }
    for i in 0..25u16 {
        add(frames::udp4(a, b, 5000 + i, 53, b"query"));
    }
    for i in 0..14u16 {
        add(frames::icmp4_echo(a, b, i));
    }
    w.write_to(path).unwrap();
    BTreeMap::from([("tcp", 61), ("udp", 25), ("icmp", 14)])
}

fn tls_props(ca: &Path) -> Vec<String> {
    vec![
        "security.protocol=ssl".into(),
        format!("ssl.ca.location={}", ca.display()),
    ]
}

fn run_probe(probe: &Path, brokers: &str, pcap: &Path, props: &[String]) -> (bool, String) {
    let mut cmd = Command::new(probe);
    cmd.args(["--brokers", brokers, "--topic", "tls", "--metrics-addr", ""])
        .args([
            "--connect-timeout",
            "10s",
            "--node-name",
            "tls-node",
            "--pcap",
        ])
        .arg(pcap)
        .env("NETSTREAM_LOG_FORMAT", "text");
    for p in props {
        cmd.args(["--producer-config", p]);
    }
    let out = cmd.stdin(Stdio::null()).output().expect("run probe");
    (
        out.status.success(),
        netstream_testkit::process::output_text(&out),
    )
}

#[test]
fn kafka_over_tls_end_to_end_counts_exactly() {
    let Some(probe) = probe_binary() else {
        return;
    };
    let Some(ca) = TestCa::generate() else {
        return;
    };
    let Some(broker) = SecureBroker::start(Some(&ca), false) else {
        return;
    };
    broker.create_topic(Some(&ca), "tls", 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("tls.pcap");
    let want = capture(&pcap);
    let total: u64 = want.values().sum();

    let (ok, out) = run_probe(&probe, &broker.bootstrap(), &pcap, &tls_props(&ca.ca));
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("produced {total}, acknowledged {total}, failed 0")),
        "{out}"
    );

    let addr = http::free_addr().to_string();
    let mut cmd = processor_cmd(&broker.bootstrap(), "tls", &addr);
    for p in tls_props(&ca.ca) {
        cmd.args(["--consumer-config", &p]);
    }
    let mut p = Running::spawn(cmd, addr, dir.path().join("processor.log"));
    p.wait_ready();
    wait_until(Duration::from_secs(30), "every record consumed", || {
        p.metrics().sum("netstream_records_consumed_total", &[]) >= total as f64
    });
    std::thread::sleep(Duration::from_millis(500));
    let m = p.metrics();
    assert_eq!(m.sum("netstream_records_consumed_total", &[]), total as f64);
    for (proto, n) in &want {
        assert_eq!(
            m.sum("netstream_protocol_packets_total", &[("protocol", proto)]),
            *n as f64,
            "{proto}"
        );
    }
    let status = p.terminate();
    assert!(status.success(), "exit {status}\n{}", p.logs());
    // Every client connection went through TLS, none failed.
    let (ok, failed) = broker.handshakes();
    assert!(
        ok >= 2,
        "{ok} TLS handshakes (probe and processor at least)"
    );
    assert_eq!(failed, 0);
}

#[test]
fn tls_with_the_wrong_ca_or_rejected_sasl_fails_with_a_clear_error() {
    let Some(probe) = probe_binary() else {
        return;
    };
    let Some(ca) = TestCa::generate() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("tls.pcap");
    capture(&pcap);

    // A CA that did not sign the broker's certificate: the handshake fails, the probe exits
    // non-zero naming the broker and the certificate problem.
    let Some(broker) = SecureBroker::start(Some(&ca), false) else {
        return;
    };
    let (ok, out) = run_probe(&probe, &broker.bootstrap(), &pcap, &tls_props(&ca.other_ca));
    assert!(!ok, "{out}");
    assert!(!out.contains("panicked"), "{out}");
    assert!(out.contains("certificate verify failed"), "{out}");
    assert!(
        out.contains(&format!(
            "cannot reach the Kafka broker at {}",
            broker.bootstrap()
        )),
        "{out}"
    );
    assert!(
        broker.handshakes().1 > 0,
        "the terminator saw the failed handshakes"
    );

    // SASL over TLS: the TLS session is up and the SCRAM exchange reaches the broker's verdict.
    let Some(sasl) = SecureBroker::start(Some(&ca), true) else {
        return;
    };
    let mut props = tls_props(&ca.ca);
    props[0] = "security.protocol=sasl_ssl".into();
    props.extend([
        "sasl.mechanisms=SCRAM-SHA-256".into(),
        "sasl.username=netstream".into(),
        format!("sasl.password={FLAG_PASSWORD}"),
    ]);
    let (ok, out) = run_probe(&probe, &sasl.bootstrap(), &pcap, &props);
    assert!(!ok, "{out}");
    assert!(out.contains("unknown-user"), "{out}");
    assert!(!out.contains(FLAG_PASSWORD), "{out}");
    let (handshakes, failed) = sasl.handshakes();
    assert!(
        handshakes > 0 && failed == 0,
        "{handshakes} ok, {failed} failed"
    );
}
