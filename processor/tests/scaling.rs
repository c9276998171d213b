//! Scaling: processors in one consumer group on a 6-partition topic share the partitions, and
//! the sum of their counts is exactly what was produced, per flow and in total: nothing lost,
//! nothing counted twice, also when a third processor joins while records are flowing
//! (cooperative-sticky rebalance, offsets committed before partitions move).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Expect, Metrics, Processor, RawProducer, Traffic, canonical, wait_until};
use netstream_testkit::broker::Broker;

/// `flows` flows (TCP with a SYN first for even i, UDP for odd i) of `per_flow` packets,
/// alternating directions.
fn traffic(t: &mut Traffic, first: u32, flows: u32, per_flow: u32) {
    for round in 0..per_flow {
        for i in first..first + flows {
            let client = (
                [10, 2, (i / 256) as u8, (i % 256) as u8],
                30_000 + (i % 20_000) as u16,
            );
            let server = ([10, 3, 0, 1], if i % 2 == 0 { 80 } else { 53 });
            let proto = if i % 2 == 0 { 6 } else { 17 };
            let len = 60 + (i + round) % 1400;
            if round % 2 == 0 {
                t.packet4(proto, client, server, len, proto == 6 && round == 0);
            } else {
                t.packet4(proto, server, client, len, false);
            }
        }
    }
}

fn scrape(ps: &[&Processor]) -> Vec<Metrics> {
    ps.iter().map(|p| p.metrics()).collect()
}

fn total(ms: &[Metrics], name: &str) -> f64 {
    ms.iter().map(|m| m.sum(name, &[])).sum()
}

/// Per canonical flow, summed over processors.
fn flows(ms: &[Metrics]) -> BTreeMap<String, Expect> {
    let mut out: BTreeMap<String, Expect> = BTreeMap::new();
    for m in ms {
        for (labels, v) in m.of("netstream_flow_packets_total") {
            out.entry(canonical(labels)).or_default().packets += v as u64;
        }
        for (labels, v) in m.of("netstream_flow_bytes_total") {
            out.entry(canonical(labels)).or_default().bytes += v as u64;
        }
    }
    out
}

#[test]
fn group_members_share_partitions_and_sum_to_exactly_what_was_produced() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let topic = "scale-packets";
    broker.create_topic(topic, 6).expect("create topic");
    let brokers = broker.bootstrap();
    let p1 = Processor::start(&brokers, topic, "scale", &[]);
    let p2 = Processor::start(&brokers, topic, "scale", &[]);
    wait_until(
        Duration::from_secs(30),
        "both processors own partitions",
        || {
            let ms = scrape(&[&p1, &p2]);
            let owned: Vec<f64> = ms
                .iter()
                .map(|m| m.sum("netstream_processor_partitions_assigned", &[]))
                .collect();
            owned.iter().all(|&n| n > 0.0) && owned.iter().sum::<f64>() == 6.0
        },
    );

    // Phase 1: two processors.
    let mut producer = RawProducer::new(&brokers, topic);
    let mut t1 = Traffic::default();
    traffic(&mut t1, 0, 300, 10);
    t1.produce(&mut producer);
    let n1 = t1.records.len() as f64;
    wait_until(Duration::from_secs(30), "phase 1 consumed", || {
        total(&scrape(&[&p1, &p2]), "netstream_records_consumed_total") == n1
    });

    // Phase 2: records keep coming (old flows and new ones) while a third processor joins.
    let mut t2 = Traffic::default();
    traffic(&mut t2, 150, 300, 10);
    // The first half is paced while the third processor joins; the second half waits until it
    // owns partitions, so some records are certainly counted after the rebalance.
    let records = t2.records.clone();
    let (go, wait_go) = std::sync::mpsc::channel::<()>();
    let pacer = std::thread::spawn(move || {
        let (first, second) = records.split_at(records.len() / 2);
        for (i, half) in [first, second].into_iter().enumerate() {
            if i == 1 {
                wait_go
                    .recv_timeout(Duration::from_secs(60))
                    .expect("third processor joined");
            }
            for chunk in half.chunks(150) {
                for (k, v) in chunk {
                    producer.send(Some(k), Some(v));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        producer.flush();
    });
    let p3 = Processor::start(&brokers, topic, "scale", &[]);
    wait_until(
        Duration::from_secs(60),
        "the third processor owns partitions",
        || {
            p3.metrics()
                .sum("netstream_processor_partitions_assigned", &[])
                > 0.0
        },
    );
    go.send(()).expect("producer thread alive");
    pacer.join().expect("producer thread");
    let n = n1 + t2.records.len() as f64;
    let all = [&p1, &p2, &p3];
    wait_until(
        Duration::from_secs(60),
        "everything consumed by the three",
        || {
            let ms = scrape(&all);
            total(&ms, "netstream_records_consumed_total") >= n
                && total(&ms, "netstream_processor_partitions_assigned") == 6.0
                && ms[2].sum("netstream_processor_partitions_assigned", &[]) > 0.0
        },
    );
    // Nothing more arrives: no record is counted twice.
    std::thread::sleep(Duration::from_secs(2));
    let ms = scrape(&all);
    assert_eq!(
        total(&ms, "netstream_records_consumed_total"),
        n,
        "consumed exactly once"
    );
    assert!(
        ms[2].sum("netstream_records_consumed_total", &[]) > 0.0,
        "the third processor took over partitions mid-stream and counted records\n{}\n{}",
        p1.logs(),
        p3.logs()
    );

    let mut want = t1.flows.clone();
    for (k, v) in &t2.flows {
        let e = want.entry(k.clone()).or_default();
        e.packets += v.packets;
        e.bytes += v.bytes;
    }
    assert_eq!(flows(&ms), want, "per-flow sums across processors");
    for proto in ["tcp", "udp"] {
        let got: f64 = ms
            .iter()
            .map(|m| m.sum("netstream_protocol_bytes_total", &[("protocol", proto)]))
            .sum();
        let expect = t1.protocols[proto].bytes + t2.protocols[proto].bytes;
        assert_eq!(got as u64, expect, "{proto} bytes");
    }
    for p in [p1, p2, p3] {
        let logs = p.stop();
        assert!(!logs.contains("panicked"), "{logs}");
    }
}
