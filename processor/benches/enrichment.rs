//! What Kubernetes enrichment adds to the per-record path (goal: <= 20 ns per packet) and to
//! `/metrics`:
//! - `count_path/off` vs `count_path/on`: the whole per-record path (decode, protocol and flow
//!   counters; with enrichment also two identity lookups and the workload series) on 4096
//!   tracked flows, with an index of 10 000 pods;
//! - `count_path/resolve_both_ends`: the two lookups alone;
//! - `render/100k_flows_{off,on}`: `/metrics` with 100k flows, per-flow workload labels on;
//! - memory per workload series, printed.
//!
//! `cargo bench -p netstream-processor --bench enrichment -- --quick`

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use netstream_enrich::{
    IdentityIndex, IndexConfig, Member, MemberKind, SourceStats, Update, Workload, WorkloadId,
    WorkloadKind,
};
use netstream_processor::analysis::registry::Setup;
use netstream_processor::analysis::workloads::enrichment::{Enrichment, EnrichmentOptions};
use netstream_processor::analysis::workloads::table::{SeriesKey, WorkloadTable};
use netstream_processor::collector::ProcessorCollector;
use netstream_processor::engine::Engine;
use netstream_processor::state::Shared;
use netstream_wire::{Direction, Endpoint, FlowKey, KeyKind, PacketMeta, ValueEncoder};

const PODS: u32 = 10_000;

fn key(i: u32) -> FlowKey {
    let b = i.to_be_bytes();
    FlowKey::new(
        KeyKind::Ipv4,
        6,
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
        tcp_syn: false,
        link_type: 1,
        wire_len: 60 + i % 1400,
        ts_ns: 1_700_000_000_000_000_000 + u64::from(i),
    }
}

fn member(kind: MemberKind, name: String, workload: Workload, ip: IpAddr) -> Update {
    Update::Upsert(Member {
        uid: name.clone(),
        kind,
        namespace: "ns".into(),
        name,
        workload,
        node: String::new(),
        ips: vec![ip],
        from_ns: 0,
        until_ns: None,
        seen_ns: 0,
    })
}

/// 10 000 pods of 100 Deployments at 10.0.x.y, a Service at 192.168.1.1.
fn enrichment(flow_pod_labels: bool) -> Enrichment {
    let mut index = IdentityIndex::new(IndexConfig::default());
    for i in 0..PODS {
        let b = i.to_be_bytes();
        index.apply(member(
            MemberKind::Pod,
            format!("pod-{i}"),
            Workload::new("ns", &format!("w{}", i % 100), WorkloadKind::Deployment),
            IpAddr::from([10, b[1], b[2], b[3]]),
        ));
    }
    index.apply(member(
        MemberKind::Service,
        "svc".into(),
        Workload::new("ns", "svc", WorkloadKind::Service),
        IpAddr::from([192, 168, 1, 1]),
    ));
    Enrichment::new(
        index,
        &EnrichmentOptions {
            flow_pod_labels,
            ..EnrichmentOptions::default()
        },
        Arc::new(SourceStats::default()),
    )
}

fn print_memory_per_series() {
    for n in [10_000u32, 100_000, 1_000_000] {
        let mut index = IdentityIndex::new(IndexConfig::default());
        let mut t = WorkloadTable::new(n as usize);
        for i in 0..n {
            let k = SeriesKey {
                src: WorkloadId(i),
                dst: WorkloadId(i / 7),
                protocol: 6,
                dst_port: 443,
            };
            t.add(k, 100, 0, &mut index);
        }
        println!(
            "memory per workload series at {n} series: {:.1} bytes (table heap {} bytes)",
            t.heap_bytes() as f64 / f64::from(n),
            t.heap_bytes()
        );
    }
}

/// `flows`, and with `on` also `workloads`.
fn engine(on: bool) -> Engine {
    let mut setup = Setup::new(100_000, 300);
    if on {
        setup.enrichment = Some(enrichment(false));
        Engine::build(&["flows", "workloads"], setup).expect("engine")
    } else {
        Engine::build(&["flows"], setup).expect("engine")
    }
}

fn count_path(c: &mut Criterion) {
    print_memory_per_series();
    let mut g = c.benchmark_group("count_path");
    g.throughput(Throughput::Elements(1));
    let mut enc = ValueEncoder::new("node-1", "eth0");
    let records: Vec<(Vec<u8>, Vec<u8>)> = (0..4096u32)
        .map(|i| (key(i).to_vec(), enc.encode(&meta(i), &[0u8; 64]).to_vec()))
        .collect();
    for (name, on) in [("off", false), ("on", true)] {
        let mut agg = engine(on);
        for (k, v) in &records {
            agg.record(0, Some(k), Some(v), 0).ok();
        }
        let mut j = 0usize;
        g.bench_function(name, |b| {
            b.iter(|| {
                j = (j + 1) % records.len();
                let (k, v) = &records[j];
                black_box(agg.record(0, Some(k), Some(v), 1)).ok();
            })
        });
    }
    let e = enrichment(false);
    let keys: Vec<FlowKey> = (0..4096u32).map(key).collect();
    let mut j = 0usize;
    g.bench_function("resolve_both_ends", |b| {
        b.iter(|| {
            j = (j + 1) % keys.len();
            black_box(e.resolve_key(black_box(&keys[j]), false, 1_700_000_000_000_000_000))
        })
    });
    // The workload table update alone, on known series (as many as the count path makes).
    let mut e = enrichment(false);
    let series: Vec<SeriesKey> = (0..4096u32)
        .map(|i| SeriesKey {
            src: WorkloadId(1 + i % 100),
            dst: WorkloadId(101),
            protocol: 6,
            dst_port: if i % 2 == 0 { 443 } else { 1024 + i as u16 },
        })
        .collect();
    let mut index = IdentityIndex::new(IndexConfig::default());
    for k in &series {
        e.series.add(*k, 100, 0, &mut index);
    }
    let mut j = 0usize;
    g.bench_function("workload_series_add", |b| {
        b.iter(|| {
            j = (j + 1) % series.len();
            e.series.add(black_box(series[j]), 100, 1, &mut index);
        })
    });
    g.finish();
}

fn render(c: &mut Criterion) {
    let mut g = c.benchmark_group("render");
    g.sample_size(10);
    let mut enc = ValueEncoder::new("node-1", "eth0");
    let records: Vec<(Vec<u8>, Vec<u8>)> = (0..100_000u32)
        .map(|i| (key(i).to_vec(), enc.encode(&meta(i), &[]).to_vec()))
        .collect();
    for (name, on) in [("100k_flows_off", false), ("100k_flows_on", true)] {
        let mut agg = engine(on);
        for (k, v) in &records {
            agg.record(0, Some(k), Some(v), 0).ok();
        }
        let collector = ProcessorCollector::new(Arc::new(Shared::new(agg))).expect("collector");
        let (text, _) = collector.render();
        println!("/metrics {name}: {} bytes", text.len());
        g.bench_function(name, |b| {
            b.iter_batched(|| (), |_| collector.render(), BatchSize::PerIteration)
        });
    }
    g.finish();
}

criterion_group!(benches, count_path, render);
criterion_main!(benches);
