//! A flood of unique flows, far more than --max-flows: the table stays bounded, every flow is
//! either tracked or counted as evicted, memory stays flat from the first wave of the flood to
//! the last,
//! and idle flows expire (with their series) after --flow-idle-timeout.

mod common;

use std::time::Duration;

use common::{Processor, RawProducer, Traffic, wait_until};
use netstream_testkit::broker::Broker;

const MAX_FLOWS: u32 = 2_000;
const WAVE: u32 = 100_000;
const WAVES: u32 = 3;
/// RSS the processor may gain from the end of the first wave to the end of the last (allocator
/// and librdkafka buffer high-water marks move by ~15 MB between waves here).
const RSS_GROWTH_LIMIT: u64 = 24 << 20;
/// Absolute RSS bound after every wave (debug build; librdkafka's buffers included; an
/// unbounded table would hold 300k flows, ~28 MB more, plus their series at every scrape).
const RSS_LIMIT: u64 = 80 << 20;

fn wave(first: u32) -> Traffic {
    let mut t = Traffic::default();
    for i in first..first + WAVE {
        let b = i.to_be_bytes();
        t.packet4(
            17,
            ([10, b[1], b[2], b[3]], 1024),
            ([172, 16, 0, 1], 53),
            64,
            false,
        );
    }
    t
}

#[test]
fn unique_flow_flood_stays_bounded_and_idle_flows_expire() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let topic = "flood-packets";
    broker.create_topic(topic, 2).expect("create topic");
    let brokers = broker.bootstrap();
    let max = MAX_FLOWS.to_string();
    let proc_ = Processor::start(
        &brokers,
        topic,
        "flood",
        &[
            "--max-flows",
            &max,
            "--flow-idle-timeout",
            "3s",
            // Bound librdkafka's prefetch so the RSS comparison is about the flow table.
            "--consumer-config",
            "queued.max.messages.kbytes=4096",
            "--consumer-config",
            "fetch.max.bytes=1048576",
            "--consumer-config",
            "max.partition.fetch.bytes=524288",
        ],
    );
    let mut p = RawProducer::new(&brokers, topic);
    let mut rss = Vec::new();
    for n in 1..=WAVES {
        let first = (n - 1) * WAVE;
        wave(first).produce(&mut p);
        let want = f64::from(n * WAVE);
        wait_until(Duration::from_secs(60), "wave consumed", || {
            let m = proc_.metrics();
            let active = m.sum("netstream_flows_active", &[]);
            assert!(
                active <= f64::from(MAX_FLOWS),
                "active flows {active} > --max-flows"
            );
            m.sum("netstream_records_consumed_total", &[]) == want
        });
        let m = proc_.metrics();
        let active = m.sum("netstream_flows_active", &[]);
        let evicted = m.sum("netstream_flows_evicted_total", &[]);
        assert_eq!(
            active + evicted,
            want,
            "every flow is tracked or counted as evicted"
        );
        assert!(m.sum("netstream_flows_evicted_total", &[("reason", "capacity")]) > 0.0);
        assert_eq!(
            m.of("netstream_flow_packets_total").count() as f64,
            active,
            "one series per tracked flow"
        );
        rss.push(proc_.rss());
    }
    eprintln!(
        "processor RSS (KiB) after each wave of {WAVE} unique flows: {:?} (max-flows {MAX_FLOWS})",
        rss.iter().map(|r| r >> 10).collect::<Vec<_>>()
    );
    let last = rss[rss.len() - 1];
    for r in &rss {
        assert!(*r < RSS_LIMIT, "RSS {r} > {RSS_LIMIT}: {rss:?}");
    }
    assert!(
        last < rss[0] + RSS_GROWTH_LIMIT,
        "memory grows with the flood: {rss:?}"
    );

    // Nothing new arrives: every tracked flow goes idle and is evicted with its series.
    let before = proc_.metrics();
    let active = before.sum("netstream_flows_active", &[]);
    let idle_before = before.sum("netstream_flows_evicted_total", &[("reason", "idle")]);
    wait_until(Duration::from_secs(15), "idle flows expire", || {
        proc_.metrics().sum("netstream_flows_active", &[]) == 0.0
    });
    let after = proc_.metrics();
    assert_eq!(
        after.sum("netstream_flows_evicted_total", &[("reason", "idle")]) - idle_before,
        active
    );
    assert_eq!(after.of("netstream_flow_packets_total").count(), 0);
    assert_eq!(
        after.sum("netstream_protocol_packets_total", &[("protocol", "udp")]),
        f64::from(WAVES * WAVE),
        "protocol totals are not evicted"
    );
    proc_.stop();
}
