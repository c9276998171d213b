//! Allocation accounting with a counting global allocator:
//! - the per-record path (decode, protocol counters, flow table) allocates nothing, for known
//!   flows and for new flows in a full table (evicting in batches);
//! - bytes of heap per tracked flow (goal: <= 100), printed;
//! - with enrichment on, the count path (two identity lookups, the workload series) allocates
//!   nothing once the series exist; bytes of heap per workload series, printed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use netstream_enrich::{
    IdentityIndex, IndexConfig, Member, MemberKind, SourceStats, Update, Workload, WorkloadId,
    WorkloadKind,
};
use netstream_processor::analysis::flows::Flows;
use netstream_processor::analysis::flows::table::EvictReason;
use netstream_processor::analysis::registry::Setup;
use netstream_processor::analysis::workloads::Workloads;
use netstream_processor::analysis::workloads::enrichment::{Enrichment, EnrichmentOptions};
use netstream_processor::analysis::workloads::table::{SeriesKey, WorkloadTable};
use netstream_processor::engine::Engine;
use netstream_wire::{Direction, Endpoint, FlowKey, KeyKind, PacketMeta, ValueEncoder};

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static LIVE: AtomicU64 = AtomicU64::new(0);
static PEAK: AtomicU64 = AtomicU64::new(0);

fn grow(n: u64) {
    let live = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        grow(l.size() as u64);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as u64, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        grow(new as u64);
        LIVE.fetch_sub(l.size() as u64, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

fn flows(e: &Engine) -> &netstream_processor::analysis::Host<Flows> {
    e.host::<Flows>().expect("flows is on")
}

#[global_allocator]
static A: Counting = Counting;

fn record(i: u32) -> (Vec<u8>, Vec<u8>) {
    let b = i.to_be_bytes();
    let (k, d) = FlowKey::new(
        KeyKind::Ipv4,
        6,
        Endpoint::v4([10, b[1], b[2], b[3]], 40_000),
        Endpoint::v4([192, 168, 0, 1], 443),
    );
    let meta = PacketMeta {
        direction: d,
        tcp_syn: true,
        link_type: 1,
        wire_len: 1500,
        ts_ns: u64::from(i),
    };
    let v = ValueEncoder::new("n", "eth0")
        .encode(&meta, &[0; 64])
        .to_vec();
    (k.to_vec(), v)
}

#[test]
fn hot_path_allocates_nothing_and_a_flow_costs_under_100_bytes() {
    // (Everything in one test: the allocator counters are process-wide.)
    const MAX: u32 = 100_000;
    let records: Vec<_> = (0..2 * MAX).map(record).collect();
    let _ = Direction::AToB;

    let live0 = LIVE.load(Ordering::Relaxed);
    let mut agg = Engine::flows(MAX as usize, 300);
    for (k, v) in &records[..MAX as usize] {
        agg.record(0, Some(k), Some(v), 0).unwrap();
    }
    let per_flow = (LIVE.load(Ordering::Relaxed) - live0) as f64 / f64::from(MAX);
    println!(
        "heap per tracked flow at {MAX} flows: {per_flow:.1} bytes (table heap {} bytes)",
        flows(&agg).heap_bytes()
    );
    assert!(per_flow <= 100.0, "{per_flow} bytes per flow");
    assert_eq!(flows(&agg).flows_len(), MAX as usize);

    // Known flows: no allocation.
    let before = ALLOCS.load(Ordering::Relaxed);
    for (k, v) in &records[..MAX as usize] {
        agg.record(0, Some(k), Some(v), 1).unwrap();
    }
    assert_eq!(
        ALLOCS.load(Ordering::Relaxed) - before,
        0,
        "allocations for known flows"
    );

    // New flows into the full table: batch evictions, still no allocation.
    let before = ALLOCS.load(Ordering::Relaxed);
    for (k, v) in &records[MAX as usize..] {
        agg.record(0, Some(k), Some(v), 2).unwrap();
    }
    assert_eq!(
        ALLOCS.load(Ordering::Relaxed) - before,
        0,
        "allocations for new flows"
    );
    assert_eq!(
        flows(&agg).flows_len() as u64 + flows(&agg).evicted(EvictReason::Capacity),
        2 * u64::from(MAX)
    );
    assert!(flows(&agg).flows_len() <= MAX as usize);

    // Transient heap of one /metrics render at 100k flows (for sizing memory limits).
    let shared = std::sync::Arc::new(netstream_processor::state::Shared::new(agg));
    let collector = netstream_processor::collector::ProcessorCollector::new(shared).unwrap();
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let (text, families) = collector.render();
    drop(families);
    let peak = PEAK.load(Ordering::Relaxed) - base;
    println!(
        "one /metrics render at {MAX} flows: {} bytes of text, {:.0} MiB of transient heap at peak",
        text.len(),
        peak as f64 / (1024.0 * 1024.0)
    );

    drop(text);

    // Enrichment on: 1000 pods of 10 Deployments (10.0.x.y) talk to a Service (192.168.0.1);
    // the other 99k sources are external.
    let mut index = IdentityIndex::new(IndexConfig::default());
    for i in 0..1000u32 {
        let b = i.to_be_bytes();
        index.apply(Update::Upsert(Member {
            uid: format!("pod-{i}"),
            kind: MemberKind::Pod,
            namespace: "ns".into(),
            name: format!("pod-{i}"),
            workload: Workload::new("ns", &format!("w{}", i % 10), WorkloadKind::Deployment),
            node: String::new(),
            ips: vec![std::net::IpAddr::from([10, b[1], b[2], b[3]])],
            from_ns: 0,
            until_ns: None,
            seen_ns: 0,
        }));
    }
    index.apply(Update::Upsert(Member {
        uid: "svc".into(),
        kind: MemberKind::Service,
        namespace: "ns".into(),
        name: "svc".into(),
        workload: Workload::new("ns", "svc", WorkloadKind::Service),
        node: String::new(),
        ips: vec![std::net::IpAddr::from([192, 168, 0, 1])],
        from_ns: 0,
        until_ns: None,
        seen_ns: 0,
    }));
    let enrichment = Enrichment::new(
        index,
        &EnrichmentOptions::default(),
        std::sync::Arc::new(SourceStats::default()),
    );
    let mut setup = Setup::new(MAX as usize, 300);
    setup.enrichment = Some(enrichment);
    let mut agg = Engine::build(&["flows", "workloads"], setup).unwrap();
    for (k, v) in &records[..MAX as usize] {
        agg.record(0, Some(k), Some(v), 0).unwrap();
    }
    let series = agg
        .analysis::<Workloads>()
        .map(|w| w.enrichment.series.len());
    assert_eq!(
        series,
        Some(11),
        "10 workloads and external, to the service"
    );
    let before = ALLOCS.load(Ordering::Relaxed);
    for (k, v) in &records[..MAX as usize] {
        agg.record(0, Some(k), Some(v), 1).unwrap();
    }
    assert_eq!(
        ALLOCS.load(Ordering::Relaxed) - before,
        0,
        "allocations with enrichment on, known flows and series"
    );

    // Heap per workload series (ids need not exist in an index to be counted).
    const SERIES: u32 = 100_000;
    let mut index = IdentityIndex::new(IndexConfig::default());
    let mut table = WorkloadTable::new(SERIES as usize);
    let live0 = LIVE.load(Ordering::Relaxed);
    for i in 0..SERIES {
        let key = SeriesKey {
            src: WorkloadId(i),
            dst: WorkloadId(i / 7),
            protocol: 6,
            dst_port: 443,
        };
        table.add(key, 100, 0, &mut index);
    }
    let per_series = (LIVE.load(Ordering::Relaxed) - live0) as f64 / f64::from(SERIES);
    println!(
        "heap per workload series at {SERIES} series: {per_series:.1} bytes (table heap {} bytes)",
        table.heap_bytes()
    );
    assert!(
        per_series <= 100.0,
        "{per_series} bytes per workload series"
    );
}
