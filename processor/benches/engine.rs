//! The engine's own cost per record: decoding alone (`decode_only`), then the engine with 0, 1,
//! 2, 4 and 8 analyses that do nothing (`noop/N`). `noop/N - decode_only` is what hosting costs
//! (the shard lookup, building the packet, one virtual call per analysis); the goal is
//! <= 5 ns + 2 ns x N. `flows` is the real per-record path for comparison.
//!
//!
//! Before the benchmarks it prints the shard scaling: the same records, split by partition,
//! through one engine on one thread and through two engines (each its partitions' shards) on
//! two threads, fed from memory (no broker).
//!
//! `cargo bench -p netstream-processor --bench engine`

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use netstream_processor::analysis::{Analysis, Families, Host, Hosted, Packet, Snapshots, Verdict};
use netstream_processor::decode::decode;
use netstream_processor::engine::Engine;
use netstream_runtime::metrics::FamilyDef;
use netstream_wire::{Endpoint, FlowKey, KeyKind, NameCheck, PacketMeta, ValueEncoder};

/// An analysis that looks at nothing.
struct Noop;

impl Analysis for Noop {
    const NAME: &'static str = "noop";
    type Shard = ();
    type Snapshot = ();
    fn shard(&mut self, _partition: i32) {}
    fn packet(&mut self, _: &mut (), pkt: &Packet<'_>) -> Verdict {
        black_box(pkt);
        Verdict::Continue
    }
    fn snapshot(&self, _: &[()], _: &Snapshots, _: &mut ()) {}
    fn families(_: &(), _: &Snapshots, _: &mut Families) {}
    fn defs(&self) -> Vec<FamilyDef> {
        Vec::new()
    }
}

fn records() -> Vec<(i32, Vec<u8>, Vec<u8>)> {
    let mut enc = ValueEncoder::new("node-1", "eth0");
    (0..4096u32)
        .map(|i| {
            let b = i.to_be_bytes();
            let (k, d) = FlowKey::new(
                KeyKind::Ipv4,
                6,
                Endpoint::v4([10, b[1], b[2], b[3]], 1024 + (i % 50_000) as u16),
                Endpoint::v4([192, 168, 1, 1], 443),
            );
            let meta = PacketMeta {
                direction: d,
                tcp_syn: false,
                link_type: 1,
                wire_len: 60 + i % 1400,
                ts_ns: 1_700_000_000_000_000_000 + u64::from(i),
            };
            // Six partitions, as a real topic.
            (
                (i % 6) as i32,
                k.to_vec(),
                enc.encode(&meta, &[0u8; 64]).to_vec(),
            )
        })
        .collect()
}

/// Records per second through `threads` engines, each taking the partitions `p % threads ==
/// its index`; `rounds` passes over the records.
fn throughput(records: &[(i32, Vec<u8>, Vec<u8>)], threads: usize, rounds: usize) -> f64 {
    let t = Instant::now();
    std::thread::scope(|s| {
        for w in 0..threads {
            s.spawn(move || {
                let mut engine = Engine::flows(100_000, 300);
                let mine: Vec<_> = records
                    .iter()
                    .filter(|r| r.0 as usize % threads == w)
                    .collect();
                for _ in 0..rounds {
                    for (p, k, v) in &mine {
                        black_box(engine.record(*p, Some(k), Some(v), 1)).ok();
                    }
                }
            });
        }
    });
    (records.len() * rounds) as f64 / t.elapsed().as_secs_f64()
}

fn print_scaling(records: &[(i32, Vec<u8>, Vec<u8>)]) {
    // A smoke run under `cargo test` (debug build), a real one under `cargo bench`.
    let rounds = if std::env::args().any(|a| a == "--bench") {
        500
    } else {
        2
    };
    let one = throughput(records, 1, rounds);
    let two = throughput(records, 2, rounds);
    println!(
        "engine fed from memory, flows: 1 thread {:.2} M rec/s, 2 threads (2 engines, 3 partitions each) {:.2} M rec/s: {:.2}x",
        one / 1e6,
        two / 1e6,
        two / one
    );
}

fn bench(c: &mut Criterion) {
    let records = records();
    print_scaling(&records);
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(1));
    let mut names = NameCheck::default();
    let mut j = 0usize;
    g.bench_function("decode_only", |b| {
        b.iter(|| {
            j = (j + 1) % records.len();
            let (_, k, v) = &records[j];
            black_box(decode(Some(k), Some(v), &mut names)).ok();
        })
    });
    for n in [0usize, 1, 2, 4, 8] {
        let hosts: Vec<Box<dyn Hosted>> = (0..n)
            .map(|_| Box::new(Host::new(Noop)) as Box<dyn Hosted>)
            .collect();
        let mut engine = Engine::new(hosts);
        let mut j = 0usize;
        g.bench_function(format!("noop/{n}"), |b| {
            b.iter(|| {
                j = (j + 1) % records.len();
                let (p, k, v) = &records[j];
                black_box(engine.record(*p, Some(k), Some(v), 1)).ok();
            })
        });
    }
    let mut engine = Engine::flows(100_000, 300);
    let mut j = 0usize;
    g.bench_function("flows", |b| {
        b.iter(|| {
            j = (j + 1) % records.len();
            let (p, k, v) = &records[j];
            black_box(engine.record(*p, Some(k), Some(v), 1)).ok();
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
