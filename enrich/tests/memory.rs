//! Memory of the index per tracked pod, measured with a counting allocator: the figure the
//! README states, and a budget a change cannot silently blow.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicIsize, Ordering};

use netstream_enrich::{
    IdentityIndex, IndexConfig, Member, MemberKind, Update, Workload, WorkloadKind,
};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn pods(n: u32, dual_stack: bool) -> Vec<Member> {
    (0..n)
        .map(|i| {
            let ns = format!("team-{}", i % 40);
            let mut ips = vec![IpAddr::V4(Ipv4Addr::from(0x0af4_0000 + i))];
            if dual_stack {
                ips.push(IpAddr::V6(Ipv6Addr::from(
                    0xfd00_u128 << 112 | u128::from(i),
                )));
            }
            Member {
                // A real uid is a 36-character UUID; names like a Deployment's pods.
                uid: format!("{i:08x}-1111-2222-3333-444455556666"),
                kind: MemberKind::Pod,
                namespace: ns.clone(),
                name: format!("checkout-service-{}-7d9f8c6b5-{i:05}", i % 400),
                workload: Workload::new(
                    &ns,
                    &format!("checkout-service-{}", i % 400),
                    WorkloadKind::Deployment,
                ),
                node: format!("ip-10-0-{}-{}.ec2.internal", i % 16, i % 200),
                ips,
                from_ns: 1,
                until_ns: None,
                seen_ns: 1,
            }
        })
        .collect()
}

fn bytes_per_pod(n: u32, dual_stack: bool) -> f64 {
    let before = LIVE.load(Ordering::Relaxed);
    let mut ix = IdentityIndex::new(IndexConfig::default());
    // The input is consumed by the index: what stays allocated afterwards is the index alone
    // (its copies of the names, its maps and its intervals).
    for m in pods(n, dual_stack) {
        ix.apply(Update::Upsert(m));
    }
    let after = LIVE.load(Ordering::Relaxed);
    assert_eq!(ix.stats().members_live, n as usize);
    let held = (after - before) as f64 / f64::from(n);
    drop(ix);
    held
}

#[test]
fn memory_per_tracked_pod_is_bounded() {
    let v4 = bytes_per_pod(10_000, false);
    let dual = bytes_per_pod(10_000, true);
    eprintln!("index memory per pod, 10k pods: {v4:.0} B (IPv4), {dual:.0} B (dual stack)");
    assert!(v4 < 600.0, "{v4} B per IPv4 pod");
    assert!(dual < 800.0, "{dual} B per dual-stack pod");
}
