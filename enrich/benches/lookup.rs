//! IP -> identity lookup cost on the count path: an index of 10k pods (plus services and
//! nodes), resolving the two addresses of a packet at its capture time.
//!
//! Cases: both addresses are pods (the common case), one external (the miss path: subnet
//! scan), IPv6 pods, and an address reused by several pods over time (history scan).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use netstream_enrich::{
    IdentityIndex, IndexConfig, Member, MemberKind, SubnetLabel, Update, Workload, WorkloadKind,
};

const PODS: u32 = 10_000;
const S: u64 = 1_000_000_000;

fn v4(i: u32) -> u32 {
    u32::from(Ipv4Addr::new(10, 244, 0, 0)) + i
}

fn v6(i: u32) -> u128 {
    u128::from(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0)) + u128::from(i)
}

fn build() -> IdentityIndex {
    let mut ix = IdentityIndex::new(IndexConfig {
        subnets: vec![
            "192.168.0.0/16=office".parse::<SubnetLabel>().unwrap(),
            "172.16.0.0/12=vpn".parse().unwrap(),
            "100.64.0.0/10=cgnat".parse().unwrap(),
        ],
        retention: Duration::from_secs(3600),
        ..IndexConfig::default()
    });
    let mut pods = Vec::new();
    for i in 0..PODS {
        let ns = format!("ns-{}", i % 50);
        pods.push(Member {
            uid: format!("pod-{i}"),
            kind: MemberKind::Pod,
            namespace: ns.clone(),
            name: format!("app-{}-{i}", i % 500),
            workload: Workload::new(&ns, &format!("app-{}", i % 500), WorkloadKind::Deployment),
            node: format!("node-{}", i % 100),
            ips: vec![
                IpAddr::V4(Ipv4Addr::from(v4(i))),
                IpAddr::V6(Ipv6Addr::from(v6(i))),
            ],
            from_ns: 1000 * S,
            until_ns: None,
            seen_ns: 1000 * S,
        });
    }
    ix.apply(Update::Resync {
        kind: MemberKind::Pod,
        members: pods,
        at_ns: 1000 * S,
    });
    // One address reused by four pods in turn (the history case).
    for k in 0..4u64 {
        ix.apply(Update::Upsert(Member {
            uid: format!("reuse-{k}"),
            kind: MemberKind::Pod,
            namespace: "batch".into(),
            name: format!("job-{k}"),
            workload: Workload::new("batch", &format!("job-{k}"), WorkloadKind::Job),
            node: "node-0".into(),
            ips: vec![IpAddr::V4(Ipv4Addr::new(10, 250, 0, 1))],
            from_ns: (2000 + 100 * k) * S,
            until_ns: Some((2000 + 100 * k + 90) * S),
            seen_ns: (2000 + 100 * k) * S,
        }));
    }
    ix
}

fn bench(c: &mut Criterion) {
    let ix = build();
    let st = ix.stats();
    eprintln!("index: {st:?}");
    let mut g = c.benchmark_group("resolve_pair");
    g.throughput(Throughput::Elements(1));
    let ts = 5000 * S;
    let mut i = 0u32;
    g.bench_function("v4_pod_to_pod", |b| {
        b.iter(|| {
            i = (i + 7919) % PODS;
            let s = ix.resolve_v4(black_box(v4(i)), ts);
            let d = ix.resolve_v4(black_box(v4((i + 1) % PODS)), ts);
            black_box((s, d))
        })
    });
    // A realistic working set: the pods of 256 busy flows, cycled (warm caches).
    let mut j = 0u32;
    g.bench_function("v4_pod_to_pod_hot_256", |b| {
        b.iter(|| {
            j = (j + 1) & 255;
            let s = ix.resolve_v4(black_box(v4(j * 37)), ts);
            let d = ix.resolve_v4(black_box(v4(j * 37 + 1)), ts);
            black_box((s, d))
        })
    });
    let ext = u32::from(Ipv4Addr::new(8, 8, 8, 8));
    g.bench_function("v4_pod_to_external", |b| {
        b.iter(|| {
            i = (i + 7919) % PODS;
            let s = ix.resolve_v4(black_box(v4(i)), ts);
            let d = ix.resolve_v4(black_box(ext), ts);
            black_box((s, d))
        })
    });
    g.bench_function("v6_pod_to_pod", |b| {
        b.iter(|| {
            i = (i + 7919) % PODS;
            let s = ix.resolve_v6(black_box(v6(i)), ts);
            let d = ix.resolve_v6(black_box(v6((i + 1) % PODS)), ts);
            black_box((s, d))
        })
    });
    let reused = u32::from(Ipv4Addr::new(10, 250, 0, 1));
    g.bench_function("v4_reused_ip_history", |b| {
        b.iter(|| {
            i = (i + 7919) % PODS;
            let s = ix.resolve_v4(black_box(reused), (2000 + 50) * S);
            let d = ix.resolve_v4(black_box(v4(i)), ts);
            black_box((s, d))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
