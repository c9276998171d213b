//! Allocation accounting with a counting global allocator:
//! - the per-record path (decode, protocol counters, flow table) allocates nothing, for known
//!   flows and for new flows in a full table (evicting in batches);
//! - bytes of heap per tracked flow (goal: <= 100), printed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use netstream_processor::record::Aggregate;
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
    let mut agg = Aggregate::new(MAX as usize, 300);
    for (k, v) in &records[..MAX as usize] {
        agg.record(Some(k), Some(v), 0).unwrap();
    }
    let per_flow = (LIVE.load(Ordering::Relaxed) - live0) as f64 / f64::from(MAX);
    println!(
        "heap per tracked flow at {MAX} flows: {per_flow:.1} bytes (table heap {} bytes)",
        agg.flows.heap_bytes()
    );
    assert!(per_flow <= 100.0, "{per_flow} bytes per flow");
    assert_eq!(agg.flows.len(), MAX as usize);

    // Known flows: no allocation.
    let before = ALLOCS.load(Ordering::Relaxed);
    for (k, v) in &records[..MAX as usize] {
        agg.record(Some(k), Some(v), 1).unwrap();
    }
    assert_eq!(
        ALLOCS.load(Ordering::Relaxed) - before,
        0,
        "allocations for known flows"
    );

    // New flows into the full table: batch evictions, still no allocation.
    let before = ALLOCS.load(Ordering::Relaxed);
    for (k, v) in &records[MAX as usize..] {
        agg.record(Some(k), Some(v), 2).unwrap();
    }
    assert_eq!(
        ALLOCS.load(Ordering::Relaxed) - before,
        0,
        "allocations for new flows"
    );
    assert_eq!(
        agg.flows.len() as u64
            + agg
                .flows
                .evicted(netstream_processor::table::EvictReason::Capacity),
        2 * u64::from(MAX)
    );
    assert!(agg.flows.len() <= MAX as usize);

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
}
