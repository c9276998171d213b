//! Reads a netstream packet topic from the beginning and prints what it holds per protocol and
//! per flow: a quick look at what the probe produced, without the processor.
//!
//! Usage: `cargo run -p netstream-probe --example topic_flows -- BROKERS TOPIC`

use std::collections::HashMap;
use std::time::{Duration, Instant};

use netstream_wire::{FlowKey, KeyKind, RecordValue};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(brokers), Some(topic)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: topic_flows BROKERS TOPIC");
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "netstream-topic-flows")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let md = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
    let parts = md.topics().first().map_or(0, |t| t.partitions().len());
    let mut tpl = TopicPartitionList::new();
    for p in 0..parts as i32 {
        tpl.add_partition_offset(&topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;

    let mut flows: HashMap<FlowKey, (u64, u64)> = HashMap::new();
    let mut protocols: HashMap<&'static str, (u64, u64)> = HashMap::new();
    let (mut records, mut invalid) = (0u64, 0u64);
    let mut last = Instant::now();
    while last.elapsed() < Duration::from_secs(2) {
        let Some(msg) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let msg = msg?;
        last = Instant::now();
        records += 1;
        let (Ok(key), Ok(value)) = (
            FlowKey::decode(msg.key().unwrap_or_default()),
            RecordValue::decode(msg.payload().unwrap_or_default()),
        ) else {
            invalid += 1;
            continue;
        };
        let bytes = u64::from(value.meta.wire_len);
        let p = protocols.entry(key.protocol_name()).or_default();
        p.0 += 1;
        p.1 += bytes;
        if matches!(key.kind(), KeyKind::Ipv4 | KeyKind::Ipv6) {
            let f = flows.entry(key).or_default();
            f.0 += 1;
            f.1 += bytes;
        }
    }
    println!("{records} records in {topic} ({parts} partitions), {invalid} invalid\n");
    println!("{:<10} {:>10} {:>12}", "PROTOCOL", "PACKETS", "BYTES");
    let mut ps: Vec<_> = protocols.into_iter().collect();
    ps.sort_by_key(|p| std::cmp::Reverse(p.1.1));
    for (p, (n, b)) in ps {
        println!("{p:<10} {n:>10} {b:>12}");
    }
    println!(
        "\n{:<64} {:>8} {:>10}",
        "FLOW (proto|addrA|portA|addrB|portB)", "PACKETS", "BYTES"
    );
    let mut fs: Vec<_> = flows.into_iter().collect();
    fs.sort_by_key(|f| std::cmp::Reverse(f.1.1));
    for (k, (n, b)) in fs.iter().take(15) {
        println!("{:<64} {n:>8} {b:>10}", k.to_string());
    }
    if fs.len() > 15 {
        println!("... and {} more flows", fs.len() - 15);
    }
    Ok(())
}
