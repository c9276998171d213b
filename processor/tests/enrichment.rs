//! Kubernetes enrichment end to end, without a cluster: the processor binary with
//! `--enrichment file` (the static identity file the Kubernetes source's index also loads)
//! counts a capture whose addresses match the file, replayed by the real probe into a real
//! tansu broker, and a real Prometheus scrapes it.
//!
//! The identity file has pods of two Deployments in two namespaces, a bare pod, a StatefulSet
//! pod, a Service ClusterIP, a node address, and one IP held by two pods one after the other
//! (IP reuse); the capture also talks to an external address and to one in a
//! `--subnet-label` CIDR. Asserted through PromQL: exact sums by namespace pair and by workload
//! pair, the per-flow identity labels (with `--flow-pod-labels`), and the reused IP's packets
//! split between its two pods' workloads exactly at the switch time.
//!
//! Expiry: a workload that is gone (a pod with `until`) has its series removed after a short
//! `--workload-expiry`, counted, while live workloads' series stay.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Processor, RawProducer, wait_until};
use netstream_testkit::broker::Broker;
use netstream_testkit::frames;
use netstream_testkit::prometheus::Prometheus;

/// Capture time base (µs since the epoch) and the moment 10.3.0.7 changes hands.
const BASE_US: u64 = 1_700_000_000_000_000;
const SWITCH_US: u64 = BASE_US + 10_000_000;

const IDENTITY_FILE: &str = r#"
pods:
  - { namespace: shop, name: web-a, ips: [10.1.0.1], node: node-a, workload: { kind: deployment, name: web } }
  - { namespace: shop, name: web-b, ips: [10.1.0.2], node: node-a, workload: { kind: deployment, name: web } }
  - { namespace: shop, name: debug, ips: [10.1.0.9], node: node-a }
  - { namespace: backend, name: api-x, ips: [10.2.0.1], node: node-a, workload: { kind: deployment, name: api } }
  - { namespace: backend, name: db-0, ips: [10.2.0.5], node: node-a, workload: { kind: statefulset, name: db } }
  # 10.3.0.7: first a Job's pod, then (from the switch) a Deployment's.
  - { namespace: batch, name: report-1-xyz, ips: [10.3.0.7], workload: { kind: job, name: report-1 }, until: SWITCH_NS }
  - { namespace: batch, name: cache-0, ips: [10.3.0.7], workload: { kind: deployment, name: cache }, from: SWITCH_NS }
services:
  - { namespace: backend, name: api, ips: [10.96.0.10] }
nodes:
  - { name: node-a, ips: [192.168.1.10] }
"#;

/// One end as the labels name it.
#[derive(Clone, Copy, Debug)]
struct Id {
    ns: &'static str,
    workload: &'static str,
    kind: &'static str,
    pod: &'static str,
}

const WEB_A: Id = Id {
    ns: "shop",
    workload: "web",
    kind: "deployment",
    pod: "web-a",
};
const WEB_B: Id = Id {
    pod: "web-b",
    ..WEB_A
};
const DEBUG: Id = Id {
    ns: "shop",
    workload: "debug",
    kind: "pod",
    pod: "debug",
};
const API_X: Id = Id {
    ns: "backend",
    workload: "api",
    kind: "deployment",
    pod: "api-x",
};
const DB_0: Id = Id {
    ns: "backend",
    workload: "db",
    kind: "statefulset",
    pod: "db-0",
};
const API_SVC: Id = Id {
    ns: "backend",
    workload: "api",
    kind: "service",
    pod: "",
};
const NODE_A: Id = Id {
    ns: "",
    workload: "node-a",
    kind: "node",
    pod: "",
};
const EXTERNAL: Id = Id {
    ns: "",
    workload: "external",
    kind: "external",
    pod: "",
};
const CORP: Id = Id {
    ns: "",
    workload: "corp",
    kind: "subnet",
    pod: "",
};
const REPORT: Id = Id {
    ns: "batch",
    workload: "report-1",
    kind: "job",
    pod: "report-1-xyz",
};
const CACHE: Id = Id {
    ns: "batch",
    workload: "cache",
    kind: "deployment",
    pod: "cache-0",
};

/// `(src_addr, src_port, dst_addr, dst_port)`.
type FlowId = (String, u16, String, u16);

#[derive(Default)]
struct Expected {
    frames: Vec<(u64, Vec<u8>, u32)>,
    /// bytes by (src_namespace, dst_namespace)
    ns_bytes: BTreeMap<(String, String), u64>,
    /// packets by (src_workload, src_kind, dst_workload, dst_kind)
    workload_packets: BTreeMap<(String, String, String, String), u64>,
    /// per flow: identity of the ends at the flow's last packet, and packets
    flows: BTreeMap<FlowId, (Id, Id, u64)>,
}

impl Expected {
    /// A conversation: `n` request/response pairs from `client` to `server` starting at
    /// `at_us`, counted under the given identities. TCP opens with a SYN.
    #[allow(clippy::too_many_arguments)]
    fn talk(
        &mut self,
        tcp: bool,
        client: ([u8; 4], u16, Id),
        server: ([u8; 4], u16, Id),
        at_us: u64,
        n: usize,
    ) {
        let (c, cport, cid) = client;
        let (s, sport, sid) = server;
        let mut ts = at_us;
        let mut push = |frame: Vec<u8>, this: &mut Expected| {
            let wire = frame.len() as u32;
            this.frames.push((ts, frame, wire));
            ts += 1000;
            *this
                .ns_bytes
                .entry((cid.ns.into(), sid.ns.into()))
                .or_default() += u64::from(wire);
            *this
                .workload_packets
                .entry((
                    cid.workload.into(),
                    cid.kind.into(),
                    sid.workload.into(),
                    sid.kind.into(),
                ))
                .or_default() += 1;
            let ip = |a: [u8; 4]| std::net::Ipv4Addr::from(a).to_string();
            let f = this
                .flows
                .entry((ip(c), cport, ip(s), sport))
                .or_insert((cid, sid, 0));
            *f = (cid, sid, f.2 + 1);
        };
        if tcp {
            push(frames::tcp4(c, s, cport, sport, true, b""), self);
        }
        for i in 0..n {
            let req = vec![i as u8; 50 + 10 * i];
            let resp = vec![i as u8; 300 + 7 * i];
            if tcp {
                push(frames::tcp4(c, s, cport, sport, false, &req), self);
                push(frames::tcp4(s, c, sport, cport, false, &resp), self);
            } else {
                push(frames::udp4(c, s, cport, sport, &req), self);
                push(frames::udp4(s, c, sport, cport, &resp), self);
            }
        }
    }
}

fn capture() -> Expected {
    let mut e = Expected::default();
    let s = |secs: u64| BASE_US + secs * 1_000_000;
    e.talk(
        true,
        ([10, 1, 0, 1], 40001, WEB_A),
        ([10, 96, 0, 10], 8080, API_SVC),
        s(1),
        3,
    );
    e.talk(
        true,
        ([10, 2, 0, 1], 40002, API_X),
        ([10, 2, 0, 5], 5432, DB_0),
        s(2),
        4,
    );
    e.talk(
        false,
        ([10, 1, 0, 2], 40003, WEB_B),
        ([8, 8, 8, 8], 53, EXTERNAL),
        s(3),
        2,
    );
    e.talk(
        true,
        ([10, 1, 0, 9], 40004, DEBUG),
        ([172, 16, 5, 5], 443, CORP),
        s(4),
        1,
    );
    e.talk(
        true,
        ([192, 168, 1, 10], 50000, NODE_A),
        ([10, 1, 0, 1], 8080, WEB_A),
        s(5),
        2,
    );
    // The same UDP flow on either side of the switch: the Job's pod before, cache-0 after.
    e.talk(
        false,
        ([10, 3, 0, 7], 40005, REPORT),
        ([10, 2, 0, 1], 9000, API_X),
        SWITCH_US - 2_000_000,
        3,
    );
    e.talk(
        false,
        ([10, 3, 0, 7], 40005, CACHE),
        ([10, 2, 0, 1], 9000, API_X),
        SWITCH_US + 2_000_000,
        2,
    );
    e
}

fn identity_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("identities.yaml");
    let text = IDENTITY_FILE.replace("SWITCH_NS", &(SWITCH_US * 1000).to_string());
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn prometheus_sees_who_talks_to_whom_by_namespace_workload_and_pod() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let topic = "enrich-packets";
    broker.create_topic(topic, 3).expect("create topic");
    let dir = tempfile::tempdir().unwrap();
    let file = identity_file(dir.path());
    let proc_ = Processor::start(
        &broker.bootstrap(),
        topic,
        "enrich",
        &[
            "--enrichment",
            "file",
            "--identity-file",
            file.to_str().unwrap(),
            "--subnet-label",
            "172.16.0.0/12=corp",
            "--flow-pod-labels",
        ],
    );
    let Some(prom) = Prometheus::start(
        std::slice::from_ref(&proc_.addr),
        Duration::from_millis(500),
    ) else {
        return;
    };
    let e = capture();
    common::replay_frames(&broker, topic, &e.frames);
    let total = e.frames.len();
    prom.wait_for(
        "sum(netstream_records_consumed_total)",
        Duration::from_secs(30),
        |r| r.first().is_some_and(|s| s.value as usize == total),
    )
    .unwrap_or_else(|err| panic!("{err:#}\n{}", proc_.logs()));

    // Who talks to whom by namespace ("" for nodes, subnets and external).
    let got: BTreeMap<(String, String), u64> = prom
        .query("sum by (src_namespace, dst_namespace) (netstream_workload_bytes_total)")
        .unwrap()
        .iter()
        .map(|s| {
            (
                (
                    s.label("src_namespace").to_string(),
                    s.label("dst_namespace").to_string(),
                ),
                s.value as u64,
            )
        })
        .collect();
    assert_eq!(got, e.ns_bytes);

    // ... and by workload and kind: the reused IP's 6 + 4 packets split at the switch.
    let got: BTreeMap<(String, String, String, String), u64> = prom
        .query("sum by (src_workload, src_kind, dst_workload, dst_kind) (netstream_workload_packets_total)")
        .unwrap()
        .iter()
        .map(|s| {
            (
                (
                    s.label("src_workload").to_string(),
                    s.label("src_kind").to_string(),
                    s.label("dst_workload").to_string(),
                    s.label("dst_kind").to_string(),
                ),
                s.value as u64,
            )
        })
        .collect();
    assert_eq!(got, e.workload_packets);
    let key = |a: &str, b: &str, c: &str, d: &str| (a.into(), b.into(), c.into(), d.into());
    assert_eq!(got[&key("report-1", "job", "api", "deployment")], 6);
    assert_eq!(got[&key("cache", "deployment", "api", "deployment")], 4);

    // Server ports and protocols on the workload series.
    let svc = prom
        .query(r#"netstream_workload_packets_total{src_workload="web",dst_kind="service"}"#)
        .unwrap();
    assert_eq!(svc.len(), 1, "{svc:?}");
    assert_eq!(
        (svc[0].label("protocol"), svc[0].label("dst_port")),
        ("tcp", "8080")
    );
    assert_eq!(svc[0].value as u64, 7);

    // Per-flow series name both ends (at the flow's last packet: cache-0 for the reused IP).
    let flows = prom.query("netstream_flow_packets_total").unwrap();
    assert_eq!(flows.len(), e.flows.len());
    for s in &flows {
        let id: FlowId = (
            s.label("src_addr").into(),
            s.label("src_port").parse().unwrap(),
            s.label("dst_addr").into(),
            s.label("dst_port").parse().unwrap(),
        );
        let (src, dst, packets) = e.flows[&id];
        let got = [
            "src_namespace",
            "src_workload",
            "src_pod",
            "dst_namespace",
            "dst_workload",
            "dst_pod",
        ]
        .map(|l| s.label(l).to_string());
        let want = [src.ns, src.workload, src.pod, dst.ns, dst.workload, dst.pod].map(String::from);
        assert_eq!(got, want, "{s:?}");
        assert_eq!(s.value as u64, packets, "{s:?}");
    }

    // The dashboard's rate query works once two scrapes are in.
    prom.wait_for(
        "sum by (src_namespace, dst_namespace) (rate(netstream_workload_bytes_total[1m]))",
        Duration::from_secs(10),
        |r| r.len() == e.ns_bytes.len(),
    )
    .unwrap();

    // Enrichment's own metrics.
    let one = |q: &str| prom.query(q).unwrap().first().map(|s| s.value);
    assert_eq!(one("netstream_enrichment_synced"), Some(1.0));
    assert_eq!(
        one(r#"netstream_enrichment_members{kind="pod"}"#),
        Some(6.0)
    );
    assert_eq!(
        one(r#"netstream_enrichment_members{kind="service"}"#),
        Some(1.0)
    );
    assert_eq!(
        one(r#"netstream_enrichment_members{kind="node"}"#),
        Some(1.0)
    );
    assert_eq!(
        one("netstream_workload_series"),
        Some(e.workload_packets.len() as f64)
    );
    assert_eq!(one("netstream_workload_series_expired_total"), Some(0.0));

    // The APIs agree.
    let (status, body) = proc_.get("/api/v1/workloads?top=100&by=packets").unwrap();
    assert_eq!(status, 200, "{body}");
    let api: serde_json::Value = serde_json::from_str(&body).unwrap();
    let series = api["series"].as_array().unwrap();
    assert_eq!(series.len(), e.workload_packets.len());
    let first = &series[0];
    let top_packets = e.workload_packets.values().max().copied().unwrap();
    assert_eq!(first["packets"].as_u64(), Some(top_packets), "{first}");
    let (_, body) = proc_.get("/api/v1/flows?top=100").unwrap();
    let api: serde_json::Value = serde_json::from_str(&body).unwrap();
    for f in api["flows"].as_array().unwrap() {
        let id: FlowId = (
            f["src_addr"].as_str().unwrap().into(),
            f["src_port"].as_u64().unwrap() as u16,
            f["dst_addr"].as_str().unwrap().into(),
            f["dst_port"].as_u64().unwrap() as u16,
        );
        let (src, dst, _) = e.flows[&id];
        assert_eq!(f["src"]["workload"], src.workload, "{f}");
        assert_eq!(f["src"]["kind"], src.kind, "{f}");
        assert_eq!(f["dst"]["namespace"], dst.ns, "{f}");
        assert_eq!(f["dst"]["pod"], dst.pod, "{f}");
    }
    let (status, _) = proc_.get("/api/v1/workloads?limit=1").unwrap();
    assert_eq!(status, 400);

    let (_, text) = proc_.get("/metrics").unwrap();
    common::promtool_check(&text);
    let logs = proc_.stop();
    assert!(!logs.contains("panicked"), "{logs}");
}

#[test]
fn series_of_gone_workloads_expire_and_live_ones_stay() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let topic = "enrich-expiry";
    broker.create_topic(topic, 1).expect("create topic");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ids.yaml");
    // `gone` gave its IP up (until) after the traffic below; `web` is live.
    let until_ns = (BASE_US + 100_000_000) * 1000;
    std::fs::write(
        &file,
        format!(
            "pods:\n  - {{ namespace: a, name: web-1, ips: [10.0.0.1], workload: {{ kind: deployment, name: web }} }}\n  - {{ namespace: a, name: gone, ips: [10.0.0.2], until: {until_ns} }}\n"
        ),
    )
    .unwrap();
    let proc_ = Processor::start(
        &broker.bootstrap(),
        topic,
        "expiry",
        &[
            "--enrichment",
            "file",
            "--identity-file",
            file.to_str().unwrap(),
            "--workload-expiry",
            "2s",
        ],
    );
    let mut e = Expected::default();
    let web = Id {
        ns: "a",
        workload: "web",
        kind: "deployment",
        pod: "web-1",
    };
    let gone = Id {
        ns: "a",
        workload: "gone",
        kind: "pod",
        pod: "gone",
    };
    e.talk(
        false,
        ([10, 0, 0, 2], 1000, gone),
        ([10, 0, 0, 1], 80, web),
        BASE_US,
        2,
    );
    e.talk(
        false,
        ([10, 0, 0, 1], 1001, web),
        ([8, 8, 4, 4], 53, EXTERNAL),
        BASE_US,
        1,
    );
    let mut p = RawProducer::new(&broker.bootstrap(), topic);
    let mut parser = netstream_wire::FrameParser::default();
    let mut enc = netstream_wire::ValueEncoder::new("n", "eth0");
    for (ts, frame, wire) in &e.frames {
        let parsed = parser.parse(netstream_wire::LinkType::Ethernet, frame);
        let meta = netstream_wire::PacketMeta {
            direction: parsed.direction,
            tcp_syn: parsed.tcp_syn,
            link_type: 1,
            wire_len: *wire,
            ts_ns: ts * 1000,
        };
        p.send(Some(&parsed.key.to_vec()), Some(enc.encode(&meta, frame)));
    }
    p.flush();

    let series = |m: &common::Metrics, src: &str| {
        m.of("netstream_workload_packets_total")
            .filter(|(l, _)| l["src_workload"] == src)
            .count()
    };
    // The gone workload's series expires (it was counted: the counter says so); web's stays.
    wait_until(
        Duration::from_secs(30),
        "the gone workload's series expires",
        || {
            let m = proc_.metrics();
            m.sum("netstream_records_consumed_total", &[]) == e.frames.len() as f64
                && m.sum("netstream_workload_series_expired_total", &[]) == 1.0
        },
    );
    let m = proc_.metrics();
    assert_eq!(series(&m, "gone"), 0);
    assert_eq!(series(&m, "web"), 1);
    assert_eq!(
        m.sum(
            "netstream_workload_packets_total",
            &[("src_workload", "web"), ("dst_workload", "external")]
        ),
        2.0
    );
    assert_eq!(m.sum("netstream_workload_series", &[]), 1.0);
    // The flow itself is still tracked (flows have their own idle timeout) and still named.
    assert_eq!(
        m.sum(
            "netstream_flow_packets_total",
            &[("src_workload", "gone"), ("dst_workload", "web")]
        ),
        4.0
    );
    proc_.stop();
}
