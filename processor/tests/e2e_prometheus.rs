//! End to end on real parts: a capture generated here is replayed by the real probe binary
//! into a tansu broker, the processor binary counts it, and a real Prometheus server scrapes the
//! processor. Per-protocol and per-flow counts read back through Prometheus's query API are
//! exactly what the capture holds; the flow API agrees; `promtool check metrics` is clean.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Processor;
use netstream_testkit::broker::Broker;
use netstream_testkit::frames;
use netstream_testkit::pcap::PcapWriter;
use netstream_testkit::prometheus::Prometheus;

type Labels = (String, String, u16, String, u16);

#[derive(Default)]
struct Expected {
    flows: BTreeMap<Labels, (u64, u64)>,
    protocols: BTreeMap<String, (u64, u64)>,
    frames: Vec<(u64, Vec<u8>, u32)>,
}

impl Expected {
    fn add(
        &mut self,
        w: &mut PcapWriter,
        ts: &mut u64,
        frame: Vec<u8>,
        wire: u32,
        proto: &str,
        flow: Option<Labels>,
    ) {
        *ts += 1000;
        w.packet_cut(*ts, &frame, wire);
        let p = self.protocols.entry(proto.to_string()).or_default();
        p.0 += 1;
        p.1 += u64::from(wire);
        if let Some(f) = flow {
            let e = self.flows.entry(f).or_default();
            e.0 += 1;
            e.1 += u64::from(wire);
        }
        self.frames.push((*ts, frame, wire));
    }
}

fn l(p: &str, s: &str, sp: u16, d: &str, dp: u16) -> Option<Labels> {
    Some((p.into(), s.into(), sp, d.into(), dp))
}

/// A capture with TCP (SYN-initiated), IPv6 UDP, VLAN-tagged UDP, ICMP (one frame cut by
/// snaplen), ARP and junk, and what the processor must count for it.
fn capture() -> (PcapWriter, Expected) {
    let mut w = PcapWriter::ethernet();
    let mut e = Expected::default();
    let mut ts = 1_700_000_000_000_000u64;
    for i in 0..8u8 {
        let client = [10, 1, 0, i + 1];
        let server = [10, 9, 0, 1];
        let cport = 40000 + u16::from(i);
        let c = format!("10.1.0.{}", i + 1);
        let flow = l("tcp", &c, cport, "10.9.0.1", 443);
        let syn = frames::tcp4(client, server, cport, 443, true, b"");
        let n = syn.len() as u32;
        e.add(&mut w, &mut ts, syn, n, "tcp", flow.clone());
        for k in 0..2 {
            let req = frames::tcp4(client, server, cport, 443, false, &[k; 100]);
            let n = req.len() as u32;
            e.add(&mut w, &mut ts, req, n, "tcp", flow.clone());
            let resp = frames::tcp4(server, client, 443, cport, false, &[k; 1000]);
            let n = resp.len() as u32;
            e.add(&mut w, &mut ts, resp, n, "tcp", flow.clone());
        }
    }
    for i in 0..4u8 {
        let a = [
            0x20,
            0x01,
            0x0d,
            0xb8,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            i + 1,
        ];
        let b = [
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff,
        ];
        let flow = l(
            "udp",
            &format!("2001:db8::{}", i + 1),
            5353,
            "2001:db8::ff",
            53,
        );
        let q = frames::udp6(a, b, 5353, 53, b"query");
        let n = q.len() as u32;
        e.add(&mut w, &mut ts, q, n, "udp", flow.clone());
        let r = frames::udp6(b, a, 53, 5353, b"answer!");
        let n = r.len() as u32;
        e.add(&mut w, &mut ts, r, n, "udp", flow);
    }
    let u = frames::udp4([192, 168, 0, 1], [192, 168, 0, 2], 1000, 2000, b"x");
    let flow = l("udp", "192.168.0.1", 1000, "192.168.0.2", 2000);
    let tagged = frames::vlan_tag(&u, 0x8100, 10);
    let n = tagged.len() as u32;
    e.add(&mut w, &mut ts, tagged, n, "udp", flow.clone());
    let qinq = frames::vlan_tag(&frames::vlan_tag(&u, 0x88a8, 20), 0x8100, 30);
    let n = qinq.len() as u32;
    e.add(&mut w, &mut ts, qinq, n, "udp", flow);
    let icmp_flow = l("icmp", "10.0.0.1", 0, "10.0.0.2", 0);
    for seq in 0..3 {
        let f = frames::icmp4_echo([10, 0, 0, 1], [10, 0, 0, 2], seq);
        let wire = if seq == 1 { 1500 } else { f.len() as u32 };
        e.add(&mut w, &mut ts, f, wire, "icmp", icmp_flow.clone());
    }
    for _ in 0..2 {
        let a = frames::arp();
        let n = a.len() as u32;
        e.add(&mut w, &mut ts, a, n, "arp", None);
    }
    e.add(&mut w, &mut ts, vec![1, 2, 3, 4, 5], 5, "unparsed", None);
    (w, e)
}

/// Replays the capture with the probe binary when it is built, else produces the same
/// records directly.
fn replay(broker: &Broker, topic: &str, _w: &PcapWriter, e: &Expected) {
    common::replay_frames(broker, topic, &e.frames);
}

fn by_labels(samples: &[netstream_testkit::prometheus::Sample]) -> BTreeMap<Labels, u64> {
    samples
        .iter()
        .map(|s| {
            (
                (
                    s.label("protocol").to_string(),
                    s.label("src_addr").to_string(),
                    s.label("src_port").parse().unwrap(),
                    s.label("dst_addr").to_string(),
                    s.label("dst_port").parse().unwrap(),
                ),
                s.value as u64,
            )
        })
        .collect()
}

#[test]
fn prometheus_sees_exact_counts_per_protocol_and_flow() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let topic = "e2e-packets";
    broker.create_topic(topic, 6).expect("create topic");
    let proc_ = Processor::start(&broker.bootstrap(), topic, "e2e", &[]);
    let Some(prom) = Prometheus::start(
        std::slice::from_ref(&proc_.addr),
        Duration::from_millis(500),
    ) else {
        return;
    };
    let (w, e) = capture();
    let total = e.frames.len();
    replay(&broker, topic, &w, &e);

    prom.wait_for(
        "sum(netstream_records_consumed_total)",
        Duration::from_secs(30),
        |r| r.first().is_some_and(|s| s.value as usize == total),
    )
    .unwrap_or_else(|err| panic!("{err:#}\n{}", proc_.logs()));

    // Per protocol, exactly.
    for (metric, pick) in [
        ("netstream_protocol_packets_total", 0usize),
        ("netstream_protocol_bytes_total", 1),
    ] {
        let got: BTreeMap<String, u64> = prom
            .query(metric)
            .unwrap()
            .iter()
            .map(|s| (s.label("protocol").to_string(), s.value as u64))
            .collect();
        let want: BTreeMap<String, u64> = e
            .protocols
            .iter()
            .map(|(p, c)| (p.clone(), if pick == 0 { c.0 } else { c.1 }))
            .collect();
        assert_eq!(got, want, "{metric}");
    }
    // The dashboard query works and covers every protocol (once two scrapes are in).
    let n = e.protocols.len();
    prom.wait_for(
        "sum by (protocol) (rate(netstream_protocol_bytes_total[1m]))",
        Duration::from_secs(10),
        |r| r.len() == n,
    )
    .unwrap();

    // Per flow, exactly, with the initiator as src.
    let packets = by_labels(&prom.query("netstream_flow_packets_total").unwrap());
    let bytes = by_labels(&prom.query("netstream_flow_bytes_total").unwrap());
    let want_packets: BTreeMap<Labels, u64> =
        e.flows.iter().map(|(k, v)| (k.clone(), v.0)).collect();
    let want_bytes: BTreeMap<Labels, u64> = e.flows.iter().map(|(k, v)| (k.clone(), v.1)).collect();
    assert_eq!(packets, want_packets);
    assert_eq!(bytes, want_bytes);
    let active = prom.query("netstream_flows_active").unwrap();
    assert_eq!(active[0].value as usize, e.flows.len());
    let invalid = prom.query("sum(netstream_records_invalid_total)").unwrap();
    assert_eq!(invalid[0].value, 0.0);

    // The top-flows table (Grafana's topk) and the flow API agree with each other and the capture.
    let topk = prom.query("topk(3, netstream_flow_bytes_total)").unwrap();
    let (status, body) = proc_.get("/api/v1/flows?top=3&by=bytes").unwrap();
    assert_eq!(status, 200, "{body}");
    let api: serde_json::Value = serde_json::from_str(&body).unwrap();
    let api_top: BTreeMap<Labels, u64> = api["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                (
                    f["protocol"].as_str().unwrap().to_string(),
                    f["src_addr"].as_str().unwrap().to_string(),
                    f["src_port"].as_u64().unwrap() as u16,
                    f["dst_addr"].as_str().unwrap().to_string(),
                    f["dst_port"].as_u64().unwrap() as u16,
                ),
                f["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(api_top, by_labels(&topk));

    let (_, body) = proc_.get("/api/v1/flows?top=1000").unwrap();
    let all: serde_json::Value = serde_json::from_str(&body).unwrap();
    let flows = all["flows"].as_array().unwrap();
    assert_eq!(flows.len(), e.flows.len());
    assert_eq!(all["flows_active"].as_u64(), Some(e.flows.len() as u64));
    for f in flows {
        let key: Labels = (
            f["protocol"].as_str().unwrap().into(),
            f["src_addr"].as_str().unwrap().into(),
            f["src_port"].as_u64().unwrap() as u16,
            f["dst_addr"].as_str().unwrap().into(),
            f["dst_port"].as_u64().unwrap() as u16,
        );
        assert_eq!(
            (f["packets"].as_u64().unwrap(), f["bytes"].as_u64().unwrap()),
            e.flows[&key],
            "{f}"
        );
        assert_eq!(f["initiator"]["addr"], f["src_addr"]);
        let by = if key.0 == "tcp" {
            "syn"
        } else {
            "first_packet"
        };
        assert_eq!(f["initiator"]["by"], by, "{f}");
        assert!(f["first_seen_ns"].as_u64() <= f["last_seen_ns"].as_u64());
        assert!(f["first_seen"].as_str().unwrap().starts_with("2023-11-14T"));
    }
    let (_, body) = proc_.get("/api/v1/protocols").unwrap();
    let protos: serde_json::Value = serde_json::from_str(&body).unwrap();
    let api_protos: BTreeMap<String, (u64, u64)> = protos["protocols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["protocol"].as_str().unwrap().to_string(),
                (p["packets"].as_u64().unwrap(), p["bytes"].as_u64().unwrap()),
            )
        })
        .collect();
    assert_eq!(api_protos, e.protocols);
    for bad in [
        "/api/v1/flows?top=0",
        "/api/v1/flows?by=size",
        "/api/v1/flows?protocol=http",
        "/api/v1/flows?limit=3",
    ] {
        let (status, body) = proc_.get(bad).unwrap();
        assert_eq!(status, 400, "{bad}: {body}");
        let err: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            err["error"].as_str().is_some_and(|m| m.contains("use")),
            "{body}"
        );
    }
    assert_eq!(proc_.get("/healthz").unwrap().0, 200);
    assert_eq!(proc_.get("/readyz").unwrap().0, 200);

    // promtool lints the exposition.
    let (_, text) = proc_.get("/metrics").unwrap();
    common::promtool_check(&text);
    let logs = proc_.stop();
    assert!(!logs.contains("panicked"), "{logs}");
}
