//! Scaling: processors in one consumer group on a 6-partition topic share the partitions, and
//! the sum of their counts is exactly what was produced in total: nothing lost, nothing counted
//! twice, also when a third processor joins while records are flowing (cooperative-sticky
//! rebalance, offsets committed before partitions move). A revoked partition's flows leave the
//! processor that gave it up: every flow is on exactly one processor, never stale on two.

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
    // One, two and three lanes: the sums are exact whichever threads count them.
    let p1 = Processor::start(&brokers, topic, "scale", &["--threads", "1"]);
    let p2 = Processor::start(&brokers, topic, "scale", &["--threads", "2"]);
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
    let p3 = Processor::start(&brokers, topic, "scale", &["--threads", "3"]);
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
    // Each flow is on one processor only: the ones that gave partitions up dropped their flows
    // (counted as evicted, reason revoked), so no flow is served stale by two. A moved flow's
    // series restarts on its new owner: its sum is at most what was produced.
    let mut owners: BTreeMap<String, usize> = BTreeMap::new();
    for m in &ms {
        for (labels, _) in m.of("netstream_flow_packets_total") {
            *owners.entry(canonical(labels)).or_default() += 1;
        }
    }
    let shared: Vec<_> = owners.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        shared.is_empty(),
        "flows on more than one processor: {shared:?}"
    );
    let got = flows(&ms);
    for (flow, counts) in &got {
        let produced = &want[flow];
        assert!(
            counts.packets <= produced.packets && counts.bytes <= produced.bytes,
            "{flow}: {counts:?} > produced {produced:?}"
        );
    }
    let revoked: f64 = ms
        .iter()
        .map(|m| m.sum("netstream_flows_evicted_total", &[("reason", "revoked")]))
        .sum();
    assert!(
        revoked > 0.0,
        "the rebalance moved partitions and their flows"
    );
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

/// Two processors and a rebalance: the one that gives partitions up drops exactly their flows
/// (before, it kept serving them, stale, until they idled out), its other flows keep their
/// counts, and the new owner counts the moved flows from the records after the move.
#[test]
fn revoked_partitions_drop_exactly_their_flows() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let topic = "revoke-packets";
    broker.create_topic(topic, 6).expect("create topic");
    let brokers = broker.bootstrap();
    // p1 runs its partitions on two lanes: a revocation takes them back from its workers.
    let p1 = Processor::start(&brokers, topic, "revoke", &["--threads", "2"]);
    wait_until(Duration::from_secs(30), "p1 owns all partitions", || {
        p1.metrics()
            .sum("netstream_processor_partitions_assigned", &[])
            == 6.0
    });
    let mut producer = RawProducer::new(&brokers, topic);
    let mut t1 = Traffic::default();
    traffic(&mut t1, 0, 400, 4);
    t1.produce(&mut producer);
    wait_until(Duration::from_secs(30), "batch 1 counted by p1", || {
        p1.metrics().sum("netstream_records_consumed_total", &[]) == t1.records.len() as f64
    });
    assert_eq!(flows(&scrape(&[&p1])), t1.flows, "p1 counted every flow");

    let p2 = Processor::start(&brokers, topic, "revoke", &[]);
    wait_until(Duration::from_secs(60), "the partitions are shared", || {
        let ms = scrape(&[&p1, &p2]);
        ms.iter()
            .all(|m| m.sum("netstream_processor_partitions_assigned", &[]) > 0.0)
            && total(&ms, "netstream_processor_partitions_assigned") == 6.0
    });
    let kept = flows(&scrape(&[&p1]));
    assert!(
        !kept.is_empty() && kept.len() < t1.flows.len(),
        "p1 kept {} of {} flows\n{}",
        kept.len(),
        t1.flows.len(),
        p1.logs()
    );
    for (flow, counts) in &kept {
        assert_eq!(
            counts, &t1.flows[flow],
            "{flow}: a kept flow keeps its counts"
        );
    }
    let m1 = p1.metrics();
    assert_eq!(
        m1.sum("netstream_flows_evicted_total", &[("reason", "revoked")]),
        (t1.flows.len() - kept.len()) as f64
    );
    assert_eq!(m1.sum("netstream_flows_active", &[]), kept.len() as f64);

    // The same flows again: p1 adds to the flows it kept, p2 starts the moved ones afresh.
    let mut t2 = Traffic::default();
    traffic(&mut t2, 0, 400, 2);
    t2.produce(&mut producer);
    let n = (t1.records.len() + t2.records.len()) as f64;
    wait_until(Duration::from_secs(30), "batch 2 counted", || {
        total(&scrape(&[&p1, &p2]), "netstream_records_consumed_total") == n
    });
    let (f1, f2) = (flows(&scrape(&[&p1])), flows(&scrape(&[&p2])));
    for (flow, counts) in &f1 {
        let want = Expect {
            packets: t1.flows[flow].packets + t2.flows[flow].packets,
            bytes: t1.flows[flow].bytes + t2.flows[flow].bytes,
        };
        assert_eq!(counts, &want, "{flow} on p1 (never moved)");
        assert!(!f2.contains_key(flow), "{flow} on both processors");
    }
    for (flow, counts) in &f2 {
        assert_eq!(
            counts, &t2.flows[flow],
            "{flow} on p2 (moved: counted from the move on)"
        );
    }
    assert_eq!(
        f1.len() + f2.len(),
        t1.flows.len(),
        "every flow on one processor"
    );
    for p in [p1, p2] {
        let logs = p.stop();
        assert!(!logs.contains("panicked"), "{logs}");
    }
}
