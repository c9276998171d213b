//! Records in the probe's format (canonical flow key, value header + frame), built from real
//! frames through the probe's own parser, and produced with the probe's producer settings.

use std::time::{Duration, Instant};

use netstream_probe::producer::bare_producer;
use netstream_testkit::frames;
use netstream_wire::{FrameParser, LinkType, MAX_KEY_LEN, PacketMeta, ValueEncoder};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer};

/// One frame per flow: 3 in 4 TCP (a 120-byte payload), 1 in 4 UDP (60 bytes), flow `f` from
/// client 10.x.y.z. `unique` gives every flow its own client address and port.
pub fn frame(f: u32) -> Vec<u8> {
    let b = f.to_be_bytes();
    let client = [10, b[1], b[2], b[3]];
    let port = 1024 + (f % 60_000) as u16;
    if f.is_multiple_of(4) {
        frames::udp4(client, [10, 0, 0, 53], port, 53, &[7u8; 60])
    } else {
        frames::tcp4(client, [10, 0, 0, 80], port, 443, false, &[9u8; 120])
    }
}

/// Builds records for flows `f(i)`, `i` in `0..n`, calling `sink(key, value)` for each.
pub fn build(n: u64, flow_of: impl Fn(u64) -> u32, mut sink: impl FnMut(&[u8], &[u8])) {
    let mut parser = FrameParser::new();
    let mut enc = ValueEncoder::new("bench-node", "eth0");
    let mut kb = [0u8; MAX_KEY_LEN];
    let mut cache: Option<(u32, Vec<u8>)> = None;
    for i in 0..n {
        let f = flow_of(i);
        if cache.as_ref().is_none_or(|(cf, _)| *cf != f) {
            cache = Some((f, frame(f)));
        }
        let data = &cache.as_ref().map(|(_, d)| d).expect("frame")[..];
        let parsed = parser.parse(LinkType::Ethernet, data);
        let meta = PacketMeta {
            direction: parsed.direction,
            tcp_syn: parsed.tcp_syn,
            link_type: 1,
            wire_len: data.len() as u32,
            ts_ns: 1_700_000_000_000_000_000 + i * 1000,
        };
        let key = parsed.key.encode(&mut kb);
        sink(key, enc.encode(&meta, data));
    }
}

/// Produces `n` records (flow `flow_of(i)`) to `topic` with the probe's producer
/// configuration (idempotent, acks=all, lz4, murmur2), waiting for every ack. Returns seconds.
pub fn produce(
    brokers: &str,
    topic: &str,
    n: u64,
    flow_of: impl Fn(u64) -> u32,
    deadline: Instant,
) -> anyhow::Result<f64> {
    let p = bare_producer(brokers, 200_000)?;
    p.client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let start = Instant::now();
    let mut err = None;
    build(n, flow_of, |k, v| {
        if err.is_some() {
            return;
        }
        let mut record = BaseRecord::to(topic).key(k).payload(v);
        loop {
            match p.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    if Instant::now() > deadline {
                        err = Some(anyhow::anyhow!("producing: deadline passed"));
                        return;
                    }
                    record = r;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err((e, _)) => {
                    err = Some(anyhow::anyhow!("produce: {e}"));
                    return;
                }
            }
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    while p.in_flight_count() > 0 {
        anyhow::ensure!(Instant::now() < deadline, "producer flush: deadline passed");
        let _ = p.flush(Duration::from_millis(500));
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Creates `topic` with explicit topic configs (tansu describes none otherwise, and quixstreams
/// reads `retention.ms` and friends of its input topic to derive its changelog topics).
pub fn create_topic(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    use rdkafka::ClientConfig;
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let t = NewTopic::new(topic, partitions, TopicReplication::Fixed(1))
        .set("cleanup.policy", "delete")
        .set("retention.ms", "604800000")
        .set("retention.bytes", "-1")
        .set("max.message.bytes", "1048588");
    let results = netstream_testkit::broker::block_on(admin.create_topics(
        &[t],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    ))?;
    for r in results {
        if let Err((topic, code)) = r {
            anyhow::bail!("creating topic {topic}: {code}");
        }
    }
    Ok(())
}

/// `pcap --out FILE --packets N --flows F`: the frames of [`frame`] as a classic pcap.
pub fn pcap(o: &crate::args::Opts) -> anyhow::Result<serde_json::Value> {
    let out = o.required("out")?;
    let n: u64 = o.get("packets", 1_000_000)?;
    let flows: u64 = o.get("flows", 5_000)?;
    let mut w = netstream_testkit::pcap::PcapWriter::ethernet();
    let frames: Vec<Vec<u8>> = (0..flows as u32).map(frame).collect();
    for i in 0..n {
        w.packet(i, &frames[(i % flows) as usize]);
    }
    w.write_to(std::path::Path::new(out))?;
    Ok(serde_json::Value::Null)
}
