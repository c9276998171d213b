//! Consume throughput of one processor (ignored by default; numbers only mean something in a
//! release build):
//! `cargo test --release -p netstream-processor --test throughput -- --ignored --nocapture`

mod common;

use std::time::{Duration, Instant};

use common::{Processor, RawProducer, Traffic, wait_until};
use netstream_testkit::broker::Broker;

#[test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
fn consume_throughput() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let topic = "throughput";
    broker.create_topic(topic, 6).expect("create topic");
    let brokers = broker.bootstrap();
    const N: u32 = 1_000_000;
    const FLOWS: u32 = 50_000;
    let mut t = Traffic::default();
    for i in 0..N {
        let f = i % FLOWS;
        let b = f.to_be_bytes();
        t.packet4(
            6,
            ([10, b[1], b[2], b[3]], 40_000),
            ([192, 168, 0, 1], 443),
            1000,
            false,
        );
    }
    let mut p = RawProducer::new(&brokers, topic);
    t.produce(&mut p);
    let proc_ = Processor::start(&brokers, topic, "tp", &[]);
    let start = Instant::now();
    let mut last = 0.0;
    // Polls the cheap protocols API, not /metrics (rendering 50k flows every 100 ms would
    // compete with the consumer for the CPU).
    wait_until(Duration::from_secs(300), "all consumed", || {
        let (_, body) = proc_.get("/api/v1/protocols").expect("protocols");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        last = v["protocols"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p["packets"].as_f64()).sum())
            .unwrap_or(0.0);
        last >= f64::from(N)
    });
    let secs = start.elapsed().as_secs_f64();
    println!(
        "consumed {N} records ({FLOWS} flows, 6 partitions) in {secs:.2}s: {:.0} records/s",
        f64::from(N) / secs
    );
    proc_.stop();
}
