//! Shared test plumbing: the processor binary as a child process, a producer of hand-made
//! records, and `/metrics` parsing.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use netstream_testkit::broker::Broker;
use netstream_testkit::pcap::PcapWriter;
use netstream_testkit::prometheus::http_get;
use netstream_wire::{
    Direction, Endpoint, FlowKey, FrameParser, KeyKind, LinkType, PacketMeta, ValueEncoder,
};
use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};

pub const PROCESSOR: &str = env!("CARGO_BIN_EXE_netstream-processor");

/// Consumer settings that make group changes quick in tests.
pub const FAST_GROUP: [&str; 4] = [
    "--consumer-config",
    "session.timeout.ms=6000",
    "--consumer-config",
    "heartbeat.interval.ms=300",
];

pub struct Processor {
    child: Child,
    pub addr: String,
    pub log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Processor {
    /// Starts the processor and waits until it serves /readyz.
    pub fn start(brokers: &str, topic: &str, group: &str, extra: &[&str]) -> Processor {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("processor.log");
        let addr = format!("127.0.0.1:{}", free_port());
        // A quick commit interval unless the test picks its own.
        let commit: &[&str] = if extra.contains(&"--commit-interval") {
            &[]
        } else {
            &["--commit-interval", "200ms"]
        };
        let child = Command::new(PROCESSOR)
            .args(["--brokers", brokers, "--topic", topic, "--group", group])
            .args(["--metrics-addr", &addr])
            .args(commit)
            .args(FAST_GROUP)
            .args(extra)
            .env("NETSTREAM_LOG_FORMAT", "text")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn processor");
        let mut p = Processor {
            child,
            addr,
            log,
            _dir: dir,
        };
        p.wait_ready(Duration::from_secs(30));
        p
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("processor exited early: {status}\n{}", self.logs());
            }
            if matches!(self.get("/readyz"), Ok((200, _))) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "processor not ready within {timeout:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        http_get(&self.addr, path, Duration::from_secs(10))
    }

    pub fn metrics(&self) -> Metrics {
        let (status, body) = self.get("/metrics").expect("GET /metrics");
        assert_eq!(status, 200, "{body}");
        Metrics::parse(&body)
    }

    /// The exit status, if the processor has exited (it must not, in fault tests).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size in bytes (Linux).
    pub fn rss(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .expect("VmRSS")
    }

    /// SIGTERM, then waits (bounded) for a clean exit.
    pub fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    assert!(status.success(), "processor exit {status}\n{}", self.logs());
                    return self.logs();
                }
                _ if Instant::now() > deadline => {
                    panic!("processor did not stop within 20s\n{}", self.logs())
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for Processor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parsed text exposition: `(name, labels) -> value`.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    pub samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = value.parse().expect("sample value");
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => {
                    let body = rest.strip_suffix('}').expect("closing brace");
                    let labels = body
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            let (k, v) = p.split_once("=\"").expect("label");
                            (k.to_string(), v.trim_end_matches('"').to_string())
                        })
                        .collect();
                    (n.to_string(), labels)
                }
                None => (series.to_string(), BTreeMap::new()),
            };
            samples.push((name, labels, value));
        }
        Metrics { samples }
    }

    /// Sum of every sample of `name` whose labels include `with`.
    pub fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && with
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }

    /// Samples of `name`.
    pub fn of<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = (&'a BTreeMap<String, String>, f64)> + 'a {
        self.samples
            .iter()
            .filter(move |(n, _, _)| n == name)
            .map(|(_, l, v)| (l, *v))
    }
}

/// A flow's identity independent of which side a processor took as initiator:
/// `protocol|lower endpoint|higher endpoint`.
pub fn canonical(labels: &BTreeMap<String, String>) -> String {
    let a = format!("{}:{}", labels["src_addr"], labels["src_port"]);
    let b = format!("{}:{}", labels["dst_addr"], labels["dst_port"]);
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    format!("{}|{lo}|{hi}", labels["protocol"])
}

/// Same identity from a key.
pub fn canonical_key(k: &FlowKey) -> String {
    let ep = |e: &Endpoint| {
        let ip = match k.kind() {
            KeyKind::Ipv6 => std::net::IpAddr::from(e.addr),
            _ => std::net::IpAddr::from([e.addr[0], e.addr[1], e.addr[2], e.addr[3]]),
        };
        format!("{ip}:{}", e.port)
    };
    let (a, b) = (ep(k.a()), ep(k.b()));
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    format!("{}|{lo}|{hi}", k.protocol_name())
}

#[derive(Default)]
pub struct Deliveries {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
}

pub struct Counting(pub Arc<Deliveries>);
impl ClientContext for Counting {}
impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => self.0.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.0.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Produces raw records (any key and value, including none) and checks every one is acknowledged.
pub struct RawProducer {
    inner: ThreadedProducer<Counting>,
    topic: String,
    pub deliveries: Arc<Deliveries>,
    sent: u64,
}

impl RawProducer {
    pub fn new(brokers: &str, topic: &str) -> RawProducer {
        let deliveries = Arc::new(Deliveries::default());
        let inner = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "5")
            .set("partitioner", "murmur2_random")
            .set("queue.buffering.max.messages", "1000000")
            .create_with_context(Counting(deliveries.clone()))
            .expect("producer");
        RawProducer {
            inner,
            topic: topic.to_string(),
            deliveries,
            sent: 0,
        }
    }

    pub fn send(&mut self, key: Option<&[u8]>, value: Option<&[u8]>) {
        loop {
            let mut r = BaseRecord::<[u8], [u8]>::to(&self.topic);
            if let Some(k) = key {
                r = r.key(k);
            }
            if let Some(v) = value {
                r = r.payload(v);
            }
            match self.inner.send(r) {
                Ok(()) => break,
                Err((e, _)) => {
                    assert!(e.to_string().contains("Queue full"), "produce failed: {e}");
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        self.sent += 1;
    }

    /// Waits until every record sent so far is acknowledged; panics on any failure.
    pub fn flush(&self) {
        self.inner
            .flush(Duration::from_secs(60))
            .expect("flush within 60s");
        assert_eq!(self.deliveries.failed.load(Ordering::Relaxed), 0);
        assert_eq!(self.deliveries.ok.load(Ordering::Relaxed), self.sent);
    }
}

/// What the processor should count for one flow.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expect {
    pub packets: u64,
    pub bytes: u64,
}

/// Records for hand-made traffic, with the expected counts.
pub struct Traffic {
    enc: ValueEncoder,
    pub records: Vec<(Vec<u8>, Vec<u8>)>,
    /// By canonical flow identity.
    pub flows: BTreeMap<String, Expect>,
    pub protocols: BTreeMap<&'static str, Expect>,
    ts: u64,
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            enc: ValueEncoder::new("test-node", "eth0"),
            records: Vec::new(),
            flows: BTreeMap::new(),
            protocols: BTreeMap::new(),
            ts: 1_700_000_000_000_000_000,
        }
    }
}

impl Traffic {
    /// One packet from `src` to `dst` (IPv4) of `proto` and `len` wire bytes.
    pub fn packet4(
        &mut self,
        proto: u16,
        src: ([u8; 4], u16),
        dst: ([u8; 4], u16),
        len: u32,
        syn: bool,
    ) {
        let (key, direction) = FlowKey::new(
            KeyKind::Ipv4,
            proto,
            Endpoint::v4(src.0, src.1),
            Endpoint::v4(dst.0, dst.1),
        );
        self.push(key, direction, len, syn);
    }

    pub fn push(&mut self, key: FlowKey, direction: Direction, len: u32, syn: bool) {
        self.ts += 1000;
        let meta = PacketMeta {
            direction,
            tcp_syn: syn,
            link_type: 1,
            wire_len: len,
            ts_ns: self.ts,
        };
        let value = self.enc.encode(&meta, &[0u8; 20]).to_vec();
        self.records.push((key.to_vec(), value));
        let p = self.protocols.entry(key.protocol_name()).or_default();
        p.packets += 1;
        p.bytes += u64::from(len);
        if matches!(key.kind(), KeyKind::Ipv4 | KeyKind::Ipv6) {
            let f = self.flows.entry(canonical_key(&key)).or_default();
            f.packets += 1;
            f.bytes += u64::from(len);
        }
    }

    pub fn produce(&self, p: &mut RawProducer) {
        for (k, v) in &self.records {
            p.send(Some(k), Some(v));
        }
        p.flush();
    }
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The probe binary: `NETSTREAM_PROBE_BIN`, else the one built beside the processor.
pub fn probe_binary() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("NETSTREAM_PROBE_BIN") {
        return Some(std::path::PathBuf::from(p));
    }
    let sibling = std::path::PathBuf::from(PROCESSOR)
        .parent()?
        .join("netstream-probe");
    sibling.is_file().then_some(sibling)
}

/// Replays Ethernet frames `(ts_us, frame, wire_len)` into `topic`: as a pcap through the probe
/// binary when it is built, else as the same records produced directly (parsed and encoded by
/// the wire crate, as the probe does).
pub fn replay_frames(broker: &Broker, topic: &str, frames: &[(u64, Vec<u8>, u32)]) {
    if let Some(probe) = probe_binary() {
        let mut w = PcapWriter::ethernet();
        for (ts, frame, wire) in frames {
            w.packet_cut(*ts, frame, *wire);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replay.pcap");
        w.write_to(&path).unwrap();
        let out = Command::new(&probe)
            .args([
                "--brokers",
                &broker.bootstrap(),
                "--topic",
                topic,
                "--metrics-addr",
                "",
            ])
            .args(["--node-name", "e2e", "--pcap"])
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .expect("run probe");
        assert!(
            out.status.success(),
            "probe failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "replayed with {}: {}",
            probe.display(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    } else {
        eprintln!(
            "netstream-probe not built (cargo build -p netstream-probe); producing the same records directly"
        );
        let mut parser = FrameParser::default();
        let mut enc = ValueEncoder::new("e2e", "replay.pcap");
        let mut p = RawProducer::new(&broker.bootstrap(), topic);
        for (ts_us, frame, wire) in frames {
            let parsed = parser.parse(LinkType::Ethernet, frame);
            let meta = PacketMeta {
                direction: parsed.direction,
                tcp_syn: parsed.tcp_syn,
                link_type: 1,
                wire_len: *wire,
                ts_ns: ts_us * 1000,
            };
            p.send(Some(&parsed.key.to_vec()), Some(enc.encode(&meta, frame)));
        }
        p.flush();
    }
}

/// Runs `promtool check metrics` on an exposition; skips cleanly when promtool is absent.
pub fn promtool_check(text: &str) {
    use netstream_testkit::tools;
    use std::io::Write;
    let Some(promtool) = tools::find("promtool", "NETSTREAM_PROMTOOL") else {
        tools::skip("promtool not found (apt-get install prometheus)");
        return;
    };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = netstream_testkit::process::output_text(&out);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );
}

/// Committed offsets of `group` on partitions `0..partitions` of `topic`, read with a consumer
/// that does not join the group (OffsetFetch only). A partition without one maps to -1001.
pub fn committed(brokers: &str, group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("offset reader");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    got.elements()
        .iter()
        .map(|e| (e.partition(), e.offset().to_raw().unwrap_or(-1)))
        .collect()
}
