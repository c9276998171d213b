//! Replay throughput into a local tansu broker: the probe's whole replay path (libpcap read,
//! parse, key, encode, produce, wait for every ack) against a bare rdkafka producer sending the
//! same pre-built records with the same configuration, in the same run. Goal: ratio >= 0.9.
//!
//! `cargo bench -p netstream-probe --bench replay` (300k packets, 5 rounds). Under `cargo test`
//! it runs once on a small capture as a smoke test.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use netstream_probe::metrics::ProbeMetrics;
use netstream_probe::pipeline::{RunTotals, SourceRun};
use netstream_probe::producer::{Backpressure, ProbeProducer, bare_producer};
use netstream_probe::source;
use netstream_testkit::broker::Broker;
use netstream_testkit::frames;
use netstream_testkit::pcap::PcapWriter;
use netstream_wire::{FrameParser, LinkType, MAX_KEY_LEN, PacketMeta, ValueEncoder};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer};

const QUEUE: u32 = 200_000;

fn capture(n: usize) -> PcapWriter {
    let mut w = PcapWriter::ethernet();
    for i in 0..n {
        let c = (i % 5000) as u32;
        let client = [10, 1, (c >> 8) as u8, c as u8];
        let f = if i % 4 == 0 {
            frames::udp4(
                client,
                [10, 0, 0, 53],
                30000 + (c % 1000) as u16,
                53,
                &[7u8; 60],
            )
        } else {
            frames::tcp4(
                client,
                [10, 0, 0, 80],
                40000 + (c % 2000) as u16,
                443,
                false,
                &[9u8; 120],
            )
        };
        w.packet(i as u64, &f);
    }
    w
}

fn probe_run(broker: &Broker, topic: &str, path: &std::path::Path) -> (f64, u64) {
    let metrics = ProbeMetrics::new();
    let counters = metrics.interface("bench");
    let producer = ProbeProducer::connect(
        &broker.bootstrap(),
        topic,
        QUEUE,
        &[],
        metrics.delivered.clone(),
        vec![counters.drop_produce_error.clone()],
        Duration::from_secs(10),
    )
    .expect("connect");
    let stop = AtomicBool::new(false);
    let totals = Arc::new(RunTotals::default());
    let start = Instant::now();
    let mut src = source::open_file(path, None).expect("open");
    let run = SourceRun {
        index: 0,
        counters,
        producer: &producer,
        backpressure: Backpressure::Wait,
        sampling: 1,
        node: "bench",
        stop: &stop,
        totals: totals.clone(),
    };
    run.run(&mut src).expect("replay");
    assert!(producer.flush(Duration::from_secs(120)), "probe flush");
    let secs = start.elapsed().as_secs_f64();
    let delivered = producer
        .totals
        .delivered
        .load(std::sync::atomic::Ordering::Relaxed);
    (secs, delivered)
}

/// Sends one record, waiting while the local queue is full.
fn send_waiting<C: rdkafka::producer::ProducerContext>(
    p: &rdkafka::producer::ThreadedProducer<C>,
    mut record: BaseRecord<'_, [u8], [u8], C::DeliveryOpaque>,
) {
    loop {
        match p.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_micros(200));
            }
            Err((e, _)) => panic!("send: {e}"),
        }
    }
}

fn bare_run(broker: &Broker, topic: &str, records: &[(Vec<u8>, Vec<u8>)]) -> f64 {
    let p = bare_producer(&broker.bootstrap(), QUEUE).expect("producer");
    // Connected and warm before the clock starts, as the probe is after its start-up check.
    p.client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let start = Instant::now();
    for (k, v) in records {
        send_waiting(&p, BaseRecord::to(topic).key(&k[..]).payload(&v[..]));
    }
    while p.in_flight_count() > 0 {
        let _ = p.flush(Duration::from_millis(500));
    }
    start.elapsed().as_secs_f64()
}

/// The same records with the metadata as Kafka record headers instead of the fixed value
/// header: the measured alternative behind the record format's choice.
fn headers_run(broker: &Broker, topic: &str, records: &[(Vec<u8>, Vec<u8>)]) -> f64 {
    use rdkafka::message::{Header, OwnedHeaders};
    let p = bare_producer(&broker.bootstrap(), QUEUE).expect("producer");
    p.client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let start = Instant::now();
    for (k, v) in records {
        let Ok(meta) = netstream_wire::RecordValue::decode(v) else {
            panic!("bench record")
        };
        let ts = meta.meta.ts_ns.to_le_bytes();
        let len = meta.meta.wire_len.to_le_bytes();
        let link = meta.meta.link_type.to_le_bytes();
        let dir = [meta.meta.direction as u8];
        let headers = OwnedHeaders::new_with_capacity(6)
            .insert(Header {
                key: "ts",
                value: Some(&ts[..]),
            })
            .insert(Header {
                key: "len",
                value: Some(&len[..]),
            })
            .insert(Header {
                key: "link",
                value: Some(&link[..]),
            })
            .insert(Header {
                key: "dir",
                value: Some(&dir[..]),
            })
            .insert(Header {
                key: "node",
                value: Some(meta.node),
            })
            .insert(Header {
                key: "if",
                value: Some(meta.interface),
            });
        send_waiting(
            &p,
            BaseRecord::to(topic)
                .key(&k[..])
                .payload(meta.frame)
                .headers(headers),
        );
    }
    while p.in_flight_count() > 0 {
        let _ = p.flush(Duration::from_millis(500));
    }
    start.elapsed().as_secs_f64()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (n, rounds) = if full { (300_000, 7) } else { (2_000, 1) };
    if Broker::start().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.pcap");
    capture(n).write_to(&path).expect("write pcap");

    // The same records the probe produces, built ahead of time for the bare producer. Timing
    // this loop gives the probe's own cost per packet outside Kafka (read, parse, key, encode).
    let mut records = Vec::with_capacity(n);
    let own = Instant::now();
    {
        let mut src = source::open_file(&path, None).expect("open");
        let mut parser = FrameParser::new();
        let mut enc = ValueEncoder::new("bench", "bench.pcap");
        let mut kb = [0u8; MAX_KEY_LEN];
        while let Ok(p) = src.capture.next_packet() {
            let parsed = parser.parse(LinkType::Ethernet, p.data);
            let meta = PacketMeta {
                direction: parsed.direction,
                tcp_syn: parsed.tcp_syn,
                link_type: 1,
                wire_len: p.header.len,
                ts_ns: 0,
            };
            records.push((
                parsed.key.encode(&mut kb).to_vec(),
                enc.encode(&meta, p.data).to_vec(),
            ));
        }
    }

    let own_ns = own.elapsed().as_nanos() as f64 / n as f64;
    let (mut probe_rates, mut bare_rates, mut header_rates) = (Vec::new(), Vec::new(), Vec::new());
    // Alternate which goes first, so neither always meets a warmer (or busier) broker.
    for round in 0..rounds {
        // A fresh broker per round: tansu keeps everything in memory, and a broker holding the
        // previous rounds' records would slow later runs.
        let Some(broker) = Broker::start() else {
            return;
        };
        for probe_first in [round % 2 == 0, round % 2 != 0] {
            if probe_first {
                let t = format!("bench-probe-{round}");
                broker.create_topic(&t, 6).expect("topic");
                let (secs, delivered) = probe_run(&broker, &t, &path);
                assert_eq!(delivered, n as u64, "probe delivered every record");
                probe_rates.push(n as f64 / secs);
            } else {
                let t = format!("bench-bare-{round}");
                broker.create_topic(&t, 6).expect("topic");
                let secs = bare_run(&broker, &t, &records);
                bare_rates.push(n as f64 / secs);
            }
        }
        let t = format!("bench-headers-{round}");
        broker.create_topic(&t, 6).expect("topic");
        header_rates.push(n as f64 / headers_run(&broker, &t, &records));
    }
    let (p, b) = (median(&mut probe_rates), median(&mut bare_rates));
    let h = median(&mut header_rates);
    println!(
        "replay into tansu, {n} packets x {rounds} rounds: probe {:.0} pkt/s (min {:.0}, max {:.0}), bare rdkafka {:.0} pkt/s (min {:.0}, max {:.0}), ratio {:.2}",
        p,
        probe_rates[0],
        probe_rates[probe_rates.len() - 1],
        b,
        bare_rates[0],
        bare_rates[bare_rates.len() - 1],
        p / b
    );
    println!(
        "probe's own work outside Kafka (libpcap read, parse, key, value encode, copy): {own_ns:.0} ns/packet"
    );
    println!(
        "record format: fixed value header {b:.0} rec/s vs the same metadata as 6 Kafka headers {h:.0} rec/s (min {:.0}, max {:.0}): {:.2}x",
        header_rates[0],
        header_rates[header_rates.len() - 1],
        b / h
    );
}
