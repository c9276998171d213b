//! Hot-path and scrape-time costs:
//! - `update/*`: counting one record (ns/record): the table alone on tracked flows, a flood of
//!   new flows through a full table (capacity evictions), and the whole per-record path
//!   (key and value decoding, protocol and flow counters);
//! - `render/*`: `/metrics` text for 100 000 tracked flows: what the endpoint does (snapshot,
//!   the custom collector's families, the fast text encoder), and the registry path for
//!   comparison;
//! - memory per tracked flow, printed before the benchmarks run.
//!
//! `cargo bench -p netstream-processor --bench table`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use netstream_processor::analysis::flows::Flows;
use netstream_processor::analysis::flows::table::FlowTable;
use netstream_processor::collector::ProcessorCollector;
use netstream_processor::engine::Engine;
use netstream_processor::state::Shared;
use netstream_wire::{Direction, Endpoint, FlowKey, KeyKind, PacketMeta, ValueEncoder};

fn key(i: u32) -> FlowKey {
    let b = i.to_be_bytes();
    FlowKey::new(
        KeyKind::Ipv4,
        if i.is_multiple_of(3) { 17 } else { 6 },
        Endpoint::v4([10, b[1], b[2], b[3]], 1024 + (i % 50_000) as u16),
        Endpoint::v4([192, 168, 1, 1], 443),
    )
    .0
}

fn meta(i: u32) -> PacketMeta {
    PacketMeta {
        direction: if i.is_multiple_of(2) {
            Direction::AToB
        } else {
            Direction::BToA
        },
        tcp_syn: i.is_multiple_of(7),
        link_type: 1,
        wire_len: 60 + i % 1400,
        ts_ns: 1_700_000_000_000_000_000 + u64::from(i),
    }
}

fn filled(n: u32) -> FlowTable {
    let mut t = FlowTable::new(n as usize, 300);
    for i in 0..n {
        t.update(&key(i), &meta(i), 0);
    }
    t
}

fn print_memory_per_flow() {
    for n in [10_000u32, 100_000, 1_000_000] {
        let t = filled(n);
        println!(
            "memory per tracked flow at {n} flows (max-flows {n}): {:.1} bytes (table heap {} bytes)",
            t.heap_bytes() as f64 / f64::from(n),
            t.heap_bytes()
        );
    }
}

fn update(c: &mut Criterion) {
    print_memory_per_flow();
    let mut g = c.benchmark_group("update");
    g.throughput(Throughput::Elements(1));
    const N: u32 = 100_000;
    let keys: Vec<FlowKey> = (0..N).map(key).collect();
    let mut t = filled(N);
    let mut i = 0u32;
    g.bench_function("tracked_flow_100k_table", |b| {
        b.iter(|| {
            i = (i + 7919) % N;
            t.update(black_box(&keys[i as usize]), &meta(i), 1);
        })
    });
    // Every record a new flow: the table is full, so inserts evict in batches.
    let mut t = filled(N);
    let mut next = N;
    g.bench_function("new_flow_full_table_evicting", |b| {
        b.iter(|| {
            next = next.wrapping_add(1);
            t.update(black_box(&key(next)), &meta(next), 2);
        })
    });
    // The whole per-record path on encoded records.
    let mut enc = ValueEncoder::new("node-1", "eth0");
    let records: Vec<(Vec<u8>, Vec<u8>)> = (0..4096u32)
        .map(|i| (key(i).to_vec(), enc.encode(&meta(i), &[0u8; 64]).to_vec()))
        .collect();
    let mut agg = Engine::flows(N as usize, 300);
    let mut j = 0usize;
    g.bench_function("record_decode_and_count", |b| {
        b.iter(|| {
            j = (j + 1) % records.len();
            let (k, v) = &records[j];
            black_box(agg.record(0, Some(k), Some(v), 1)).ok();
        })
    });
    g.finish();
}

fn render(c: &mut Criterion) {
    let mut g = c.benchmark_group("render");
    g.sample_size(10);
    let mut agg = Engine::flows(100_000, 300);
    let mut enc = ValueEncoder::new("node-1", "eth0");
    for i in 0..100_000u32 {
        let v = enc.encode(&meta(i), &[]).to_vec();
        agg.record(0, Some(&key(i).to_vec()), Some(&v), 0).ok();
    }
    assert_eq!(agg.host::<Flows>().map(|h| h.flows_len()), Some(100_000));
    let shared = Arc::new(Shared::new(agg));
    let collector = ProcessorCollector::new(shared.clone()).expect("collector");
    let (text, _) = collector.render();
    println!(
        "/metrics with 100k flows: {} bytes, {} lines",
        text.len(),
        text.lines().count()
    );
    // What GET /metrics waits for: collect + fast text encoding (the families are dropped
    // off the request path, outside the measurement).
    g.bench_function("100k_flows_metrics_endpoint", |b| {
        b.iter_batched(|| (), |_| collector.render(), BatchSize::PerIteration)
    });
    // For comparison: the same collector through prometheus::Registry::gather (sorts every
    // sample by label values) and TextEncoder, drop included.
    let registry = prometheus::Registry::new();
    registry
        .register(Box::new(
            ProcessorCollector::new(shared).expect("collector"),
        ))
        .expect("register");
    g.bench_function("100k_flows_via_registry", |b| {
        b.iter(|| black_box(netstream_runtime::http::render(&registry).map(|s| s.len())))
    });
    g.finish();
}

criterion_group!(benches, update, render);
criterion_main!(benches);
