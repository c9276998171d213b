//! Replay captures generated here, with exactly known content, through the real probe binary
//! into a real tansu broker, then read the topic back: every frame arrives exactly once, with
//! the right key and value, and both directions of every flow share a partition.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Command;
use std::time::Duration;

use netstream_testkit::broker::Broker;
use netstream_testkit::frames;
use netstream_testkit::pcap::PcapWriter;
use netstream_wire::{Direction, Endpoint, FlowKey, KeyKind, RecordValue};

struct Expected {
    key: FlowKey,
    direction: Direction,
    frame: Vec<u8>,
    wire_len: u32,
}

fn ip4(kind_proto: u16, src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16) -> (FlowKey, Direction) {
    FlowKey::new(
        KeyKind::Ipv4,
        kind_proto,
        Endpoint::v4(src, sp),
        Endpoint::v4(dst, dp),
    )
}

/// A capture of many flows in both directions plus non-IP, VLAN, IPv6 and junk frames.
fn generate() -> (PcapWriter, Vec<(u64, Expected)>) {
    let mut w = PcapWriter::ethernet();
    let mut exp = Vec::new();
    let mut ts = 1_700_000_000_000_000u64;
    let mut push = |w: &mut PcapWriter, frame: Vec<u8>, wire_len: u32, kd: (FlowKey, Direction)| {
        ts += 7;
        w.packet_cut(ts, &frame, wire_len);
        exp.push((
            ts,
            Expected {
                key: kd.0,
                direction: kd.1,
                frame,
                wire_len,
            },
        ));
    };
    for i in 0..40u8 {
        let client = [10, 1, i, 2];
        let server = [10, 9, 0, 1];
        let cport = 40000 + u16::from(i);
        let syn = frames::tcp4(client, server, cport, 443, true, b"");
        let len = syn.len() as u32;
        push(&mut w, syn, len, ip4(6, client, cport, server, 443));
        for n in 0..3 {
            let req = frames::tcp4(client, server, cport, 443, false, &[n; 100]);
            let len = req.len() as u32;
            push(&mut w, req, len, ip4(6, client, cport, server, 443));
            let resp = frames::tcp4(server, client, 443, cport, false, &[n; 1000]);
            let len = resp.len() as u32;
            push(&mut w, resp, len, ip4(6, server, 443, client, cport));
        }
    }
    for i in 0..10u8 {
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
        let q = frames::udp6(a, b, 5353, 53, b"query");
        let len = q.len() as u32;
        let kd = FlowKey::new(
            KeyKind::Ipv6,
            17,
            Endpoint::v6(a, 5353),
            Endpoint::v6(b, 53),
        );
        push(&mut w, q, len, kd);
        let r = frames::udp6(b, a, 53, 5353, b"answer");
        let len = r.len() as u32;
        let kd = FlowKey::new(
            KeyKind::Ipv6,
            17,
            Endpoint::v6(b, 53),
            Endpoint::v6(a, 5353),
        );
        push(&mut w, r, len, kd);
    }
    // VLAN and QinQ-tagged UDP: same flow as untagged.
    let u = frames::udp4([192, 168, 0, 1], [192, 168, 0, 2], 1000, 2000, b"x");
    for (tpid, vid) in [(0x8100, 10), (0x88a8, 20)] {
        let tagged = frames::vlan_tag(&u, tpid, vid);
        let tagged = if tpid == 0x88a8 {
            frames::vlan_tag(&tagged, 0x8100, 30)
        } else {
            tagged
        };
        let len = tagged.len() as u32;
        push(
            &mut w,
            tagged,
            len,
            ip4(17, [192, 168, 0, 1], 1000, [192, 168, 0, 2], 2000),
        );
    }
    // ICMP: ports 0. A snaplen-cut frame: wire length larger than captured.
    let icmp = frames::icmp4_echo([10, 0, 0, 1], [10, 0, 0, 2], 1);
    push(
        &mut w,
        icmp.clone(),
        1500,
        ip4(1, [10, 0, 0, 1], 0, [10, 0, 0, 2], 0),
    );
    // ARP (non-IP, keyed by MACs) and junk (unparsed).
    let arp = frames::arp();
    let len = arp.len() as u32;
    let arp_key = FlowKey::new(
        KeyKind::NonIp,
        0x0806,
        Endpoint::mac([0x02, 0, 0, 0, 0, 0x0a]),
        Endpoint::mac([0xff; 6]),
    );
    push(&mut w, arp, len, arp_key);
    push(
        &mut w,
        vec![1, 2, 3, 4, 5],
        5,
        (FlowKey::UNPARSED, Direction::AToB),
    );
    (w, exp)
}

#[test]
fn replay_produces_every_frame_once_with_the_right_key_and_value() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let topic = "replay-test";
    broker.create_topic(topic, 6).expect("create topic");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gen.pcap");
    let (w, expected) = generate();
    w.write_to(&path).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_netstream-probe"))
        .args([
            "--brokers",
            &broker.bootstrap(),
            "--topic",
            topic,
            "--metrics-addr",
            "",
        ])
        .args(["--node-name", "test-node", "--pcap"])
        .arg(&path)
        .output()
        .expect("run probe");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "probe failed: {stdout}\n{stderr}");
    let n = expected.len();
    assert!(
        stdout.contains(&format!("read {n} packets"))
            && stdout.contains(&format!("produced {n}, acknowledged {n}, failed 0")),
        "summary: {stdout}"
    );

    let records = broker
        .read_all(topic, n, Duration::from_secs(30), Duration::from_secs(1))
        .expect("read back");
    assert_eq!(records.len(), n, "every frame exactly once");

    let by_ts: HashMap<u64, &Expected> = expected.iter().map(|(t, e)| (t * 1000, e)).collect();
    let mut seen = BTreeSet::new();
    let mut partitions: BTreeMap<Vec<u8>, BTreeSet<i32>> = BTreeMap::new();
    for r in &records {
        let v = RecordValue::decode(&r.value).expect("value decodes");
        let e = by_ts
            .get(&v.meta.ts_ns)
            .unwrap_or_else(|| panic!("unexpected record ts {}", v.meta.ts_ns));
        assert!(
            seen.insert(v.meta.ts_ns),
            "duplicate record ts {}",
            v.meta.ts_ns
        );
        assert_eq!(
            FlowKey::decode(&r.key),
            Ok(e.key),
            "key of ts {}",
            v.meta.ts_ns
        );
        assert_eq!(r.key, e.key.to_vec());
        assert_eq!(v.frame, e.frame.as_slice());
        assert_eq!(v.meta.wire_len, e.wire_len);
        assert_eq!(v.meta.direction, e.direction);
        assert_eq!(v.meta.link_type, 1);
        assert_eq!(v.node, "test-node");
        assert_eq!(v.interface, "gen.pcap");
        partitions
            .entry(r.key.clone())
            .or_default()
            .insert(r.partition);
    }
    for (key, parts) in &partitions {
        assert_eq!(
            parts.len(),
            1,
            "flow {:?} spread over {parts:?}",
            FlowKey::decode(key)
        );
    }
    // The 40 TCP flows really were spread (the key is what is hashed, not something constant).
    let used: BTreeSet<i32> = records.iter().map(|r| r.partition).collect();
    assert!(used.len() >= 4, "records used partitions {used:?}");
}
