//! Invalid records produced straight to the topic are counted by reason, skipped and committed
//! past (a restarted processor in the same group does not see them again); the valid records
//! around them are all counted. And with --branch-topic-prefix every valid record is produced
//! unchanged, same key, to its protocol's topic.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Processor, RawProducer, Traffic, wait_until};
use netstream_testkit::broker::Broker;
use netstream_wire::{Direction, Endpoint, FlowKey, KeyKind};

#[test]
fn invalid_records_are_counted_skipped_and_committed_past() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let topic = "bad-packets";
    broker.create_topic(topic, 1).expect("create topic");
    let brokers = broker.bootstrap();

    // Valid records with every kind of bad record in between, all on one partition.
    let mut t = Traffic::default();
    for i in 0..20u8 {
        t.packet4(
            17,
            ([10, 0, 0, 1], 1000 + u16::from(i)),
            ([10, 0, 0, 2], 53),
            100,
            false,
        );
    }
    let (good_key, good_value) = t.records[0].clone();
    let mut bad_version = good_key.clone();
    bad_version[0] = 2;
    type Bad = (Option<Vec<u8>>, Option<Vec<u8>>, &'static str);
    let bad: Vec<Bad> = vec![
        (None, Some(good_value.clone()), "missing_key"),
        (
            Some(bad_version),
            Some(good_value.clone()),
            "unknown_key_version",
        ),
        (
            Some(vec![0xde, 0xad, 0xbe, 0xef]),
            Some(good_value.clone()),
            "unknown_key_version",
        ),
        (
            Some(vec![1, 4, 6]),
            Some(good_value.clone()),
            "bad_key_length",
        ),
        (Some(good_key.clone()), Some(Vec::new()), "empty_value"),
        (Some(good_key.clone()), None, "missing_value"),
        (
            Some(good_key.clone()),
            Some(good_value[..10].to_vec()),
            "truncated_value",
        ),
        (
            Some(good_key.clone()),
            Some(b"garbage bytes!".to_vec()),
            "unknown_value_version",
        ),
    ];
    let mut p = RawProducer::new(&brokers, topic);
    let mut want_invalid: BTreeMap<&str, f64> = BTreeMap::new();
    for (i, (k, v)) in t.records.iter().enumerate() {
        p.send(Some(k), Some(v));
        if let Some((bk, bv, reason)) = bad.get(i) {
            p.send(bk.as_deref(), bv.as_deref());
            *want_invalid.entry(reason).or_default() += 1.0;
        }
    }
    p.flush();
    let total = (t.records.len() + bad.len()) as f64;

    let proc_ = Processor::start(&brokers, topic, "bad", &[]);
    wait_until(Duration::from_secs(30), "all records consumed", || {
        proc_.metrics().sum("netstream_records_consumed_total", &[]) == total
    });
    let m = proc_.metrics();
    for (reason, n) in &want_invalid {
        assert_eq!(
            m.sum("netstream_records_invalid_total", &[("reason", reason)]),
            *n,
            "{reason}"
        );
    }
    assert_eq!(
        m.sum("netstream_records_invalid_total", &[]),
        bad.len() as f64
    );
    assert_eq!(
        m.sum("netstream_flow_packets_total", &[]),
        20.0,
        "every valid record counted"
    );
    assert_eq!(m.sum("netstream_flows_active", &[]), 20.0);
    assert_eq!(
        m.sum("netstream_protocol_bytes_total", &[("protocol", "udp")]),
        2000.0
    );
    let logs = proc_.stop();
    assert!(
        logs.contains("skipping invalid record"),
        "bad records are logged:\n{logs}"
    );
    let warned = logs.matches("skipping invalid record").count();
    assert!(
        warned < bad.len(),
        "logged at a bounded rate ({warned} lines)"
    );

    // Committed past: the group resumes after the last record, bad ones included.
    let mut p = RawProducer::new(&brokers, topic);
    p.send(Some(&good_key), Some(&good_value));
    p.flush();
    let again = Processor::start(&brokers, topic, "bad", &[]);
    wait_until(Duration::from_secs(30), "the new record consumed", || {
        again.metrics().sum("netstream_records_consumed_total", &[]) >= 1.0
    });
    std::thread::sleep(Duration::from_secs(1));
    let m = again.metrics();
    assert_eq!(m.sum("netstream_records_consumed_total", &[]), 1.0);
    assert_eq!(m.sum("netstream_records_invalid_total", &[]), 0.0);
    again.stop();
}

#[test]
fn branch_topics_get_every_valid_record_unchanged() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let topic = "branch-src";
    broker.create_topic(topic, 3).expect("create topic");
    for b in ["br.tcp", "br.udp", "br.other"] {
        broker.create_topic(b, 3).expect("create branch topic");
    }
    let brokers = broker.bootstrap();
    let mut t = Traffic::default();
    for i in 0..10u8 {
        t.packet4(6, ([10, 0, 1, i], 4000), ([10, 0, 9, 9], 443), 80, true);
        t.packet4(17, ([10, 0, 2, i], 5000), ([10, 0, 9, 9], 53), 90, false);
        t.packet4(1, ([10, 0, 3, i], 0), ([10, 0, 9, 9], 0), 70, false);
    }
    let arp = FlowKey::new(
        KeyKind::NonIp,
        0x0806,
        Endpoint::mac([2, 0, 0, 0, 0, 1]),
        Endpoint::mac([0xff; 6]),
    );
    t.push(arp.0, Direction::AToB, 42, false);
    let mut p = RawProducer::new(&brokers, topic);
    t.produce(&mut p);
    p.send(None, Some(b"junk")); // invalid: not branched
    p.flush();

    let proc_ = Processor::start(&brokers, topic, "branch", &["--branch-topic-prefix", "br"]);
    let n = t.records.len() as f64 + 1.0;
    wait_until(Duration::from_secs(30), "all consumed", || {
        proc_.metrics().sum("netstream_records_consumed_total", &[]) == n
    });
    let read = |name: &str, expected: usize| {
        broker
            .read_all(
                name,
                expected,
                Duration::from_secs(20),
                Duration::from_millis(500),
            )
            .expect("read branch topic")
    };
    let tcp = read("br.tcp", 10);
    let udp = read("br.udp", 10);
    let other = read("br.other", 11);
    assert_eq!((tcp.len(), udp.len(), other.len()), (10, 10, 11));
    let mut want: Vec<(Vec<u8>, Vec<u8>)> = t.records.clone();
    let mut got: Vec<(Vec<u8>, Vec<u8>)> = tcp
        .iter()
        .chain(&udp)
        .chain(&other)
        .map(|r| (r.key.clone(), r.value.clone()))
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "records unchanged, same keys");
    for r in &tcp {
        assert_eq!(FlowKey::decode(&r.key).unwrap().protocol_name(), "tcp");
    }
    for r in &udp {
        assert_eq!(FlowKey::decode(&r.key).unwrap().protocol_name(), "udp");
    }
    let m = proc_.metrics();
    assert_eq!(
        m.sum(
            "netstream_processor_branch_records_total",
            &[("result", "delivered")]
        ),
        31.0
    );
    proc_.stop();
}
