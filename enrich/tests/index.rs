//! The index's behaviour under churn: IP reuse by capture time, late and out-of-order events,
//! resyncs, history bounds, pruning and id recycling.

use std::net::IpAddr;
use std::time::Duration;

use netstream_enrich::{
    IdentityIndex, IndexConfig, Member, MemberKind, Resolved, SubnetLabel, Update, Workload,
    WorkloadId, WorkloadKind,
};

const S: u64 = 1_000_000_000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pod(uid: &str, ns: &str, deploy: &str, ips: &[&str], from: u64, until: Option<u64>) -> Member {
    Member {
        uid: uid.to_string(),
        kind: MemberKind::Pod,
        namespace: ns.to_string(),
        name: format!("{deploy}-{uid}"),
        workload: Workload::new(ns, deploy, WorkloadKind::Deployment),
        node: "node-a".to_string(),
        ips: ips.iter().map(|s| ip(s)).collect(),
        from_ns: from,
        until_ns: until,
        seen_ns: from,
    }
}

fn index() -> IdentityIndex {
    IdentityIndex::new(IndexConfig {
        tolerance: Duration::from_secs(2),
        retention: Duration::from_secs(60),
        ..IndexConfig::default()
    })
}

/// `namespace/kind/name` of what `addr` resolves to at `ts`, or `kind/name` without namespace.
fn who(index: &IdentityIndex, addr: &str, ts: u64) -> String {
    let r = index.resolve(ip(addr), ts);
    index.workload(r.workload).unwrap().to_string()
}

fn pod_name(index: &IdentityIndex, addr: &str, ts: u64) -> Option<String> {
    let r = index.resolve(ip(addr), ts);
    index.member(r.member).map(|m| m.name.to_string())
}

#[test]
fn ip_reuse_resolves_by_capture_time() {
    let mut ix = index();
    ix.apply(Update::Upsert(pod(
        "a",
        "shop",
        "web",
        &["10.0.0.5"],
        100 * S,
        None,
    )));
    // Pod a dies at 200 s; pod b (another workload) gets the same IP at 201 s.
    ix.apply(Update::Remove {
        uid: "a".into(),
        at_ns: 200 * S,
    });
    ix.apply(Update::Upsert(pod(
        "b",
        "bank",
        "api",
        &["10.0.0.5"],
        201 * S,
        None,
    )));
    assert_eq!(who(&ix, "10.0.0.5", 150 * S), "shop/deployment/web");
    assert_eq!(who(&ix, "10.0.0.5", 200 * S - 1), "shop/deployment/web");
    assert_eq!(who(&ix, "10.0.0.5", 250 * S), "bank/deployment/api");
    assert_eq!(pod_name(&ix, "10.0.0.5", 150 * S).as_deref(), Some("web-a"));
    assert_eq!(pod_name(&ix, "10.0.0.5", 250 * S).as_deref(), Some("api-b"));
    // In the one-second gap: nearer to the end of a (0.4 s) than the start of b (0.6 s).
    assert_eq!(
        who(&ix, "10.0.0.5", 200 * S + 400_000_000),
        "shop/deployment/web"
    );
    assert_eq!(
        who(&ix, "10.0.0.5", 200 * S + 600_000_000),
        "bank/deployment/api"
    );
    // Long before anyone had it: outside the tolerance, so external.
    assert_eq!(who(&ix, "10.0.0.5", 10 * S), "external/external");
    assert_eq!(ix.resolve(ip("10.0.0.5"), 10 * S), Resolved::EXTERNAL);
}

#[test]
fn a_new_owner_ends_the_old_interval_even_without_a_delete() {
    let mut ix = index();
    ix.apply(Update::Upsert(pod(
        "a",
        "shop",
        "web",
        &["10.0.0.5"],
        100 * S,
        None,
    )));
    // The delete of a is lost (or still to come): b taking the IP ends a's interval.
    ix.apply(Update::Upsert(pod(
        "b",
        "bank",
        "api",
        &["10.0.0.5"],
        300 * S,
        None,
    )));
    assert_eq!(who(&ix, "10.0.0.5", 299 * S), "shop/deployment/web");
    assert_eq!(who(&ix, "10.0.0.5", 300 * S), "bank/deployment/api");
    // The late delete of a, stamped after b started, does not touch b.
    ix.apply(Update::Remove {
        uid: "a".into(),
        at_ns: 400 * S,
    });
    assert_eq!(who(&ix, "10.0.0.5", 299 * S), "shop/deployment/web");
    assert_eq!(who(&ix, "10.0.0.5", 500 * S), "bank/deployment/api");
}

#[test]
fn events_out_of_order_do_not_mislabel() {
    let mut ix = index();
    // The newer pod is reported first, the older one (already dead) afterwards.
    ix.apply(Update::Upsert(pod(
        "b",
        "bank",
        "api",
        &["10.0.0.5"],
        300 * S,
        None,
    )));
    ix.apply(Update::Upsert(pod(
        "a",
        "shop",
        "web",
        &["10.0.0.5"],
        100 * S,
        None,
    )));
    assert_eq!(who(&ix, "10.0.0.5", 150 * S), "shop/deployment/web");
    assert_eq!(who(&ix, "10.0.0.5", 350 * S), "bank/deployment/api");
    // A deleted object never comes back: a stale update of it after its delete changes nothing.
    ix.apply(Update::Remove {
        uid: "b".into(),
        at_ns: 400 * S,
    });
    ix.apply(Update::Upsert(pod(
        "b",
        "bank",
        "api",
        &["10.0.0.5"],
        300 * S,
        None,
    )));
    assert_eq!(who(&ix, "10.0.0.5", 450 * S), "external/external");
    assert!(!ix.member_by_uid("b").unwrap().live);
}

#[test]
fn resync_closes_only_what_disappeared() {
    let mut ix = index();
    ix.apply(Update::Resync {
        kind: MemberKind::Pod,
        members: vec![
            pod("a", "shop", "web", &["10.0.0.1"], 10 * S, None),
            pod("b", "shop", "web", &["10.0.0.2"], 10 * S, None),
        ],
        at_ns: 10 * S,
    });
    let svc = Member {
        uid: "svc".into(),
        kind: MemberKind::Service,
        namespace: "shop".into(),
        name: "web".into(),
        workload: Workload::new("shop", "web", WorkloadKind::Service),
        node: String::new(),
        ips: vec![ip("10.96.0.10")],
        from_ns: 0,
        until_ns: None,
        seen_ns: 0,
    };
    ix.apply(Update::Upsert(svc));
    // The watch restarts; b vanished during the gap, c appeared with b's IP.
    ix.apply(Update::Resync {
        kind: MemberKind::Pod,
        members: vec![
            pod("a", "shop", "web", &["10.0.0.1"], 10 * S, None),
            pod("c", "ops", "job", &["10.0.0.2"], 50 * S, None),
        ],
        at_ns: 60 * S,
    });
    assert_eq!(who(&ix, "10.0.0.1", 100 * S), "shop/deployment/web");
    assert_eq!(who(&ix, "10.0.0.2", 40 * S), "shop/deployment/web");
    assert_eq!(who(&ix, "10.0.0.2", 55 * S), "ops/deployment/job");
    // A pod resync leaves services alone.
    assert_eq!(who(&ix, "10.96.0.10", 100 * S), "shop/service/web");
    assert!(ix.member_by_uid("a").unwrap().live);
    assert!(!ix.member_by_uid("b").unwrap().live);
}

#[test]
fn history_is_bounded_and_pruned_and_ids_are_recycled() {
    let mut ix = IdentityIndex::new(IndexConfig {
        max_history: 3,
        tolerance: Duration::ZERO,
        retention: Duration::from_secs(60),
        ..IndexConfig::default()
    });
    // Ten short-lived bare pods take turns on one IP.
    for i in 0..10u64 {
        let mut m = pod(
            &format!("p{i}"),
            "batch",
            "x",
            &["10.0.0.9"],
            i * 10 * S,
            None,
        );
        m.workload = Workload::new("batch", &format!("bare-{i}"), WorkloadKind::Pod);
        ix.apply(Update::Upsert(m));
        ix.apply(Update::Remove {
            uid: format!("p{i}"),
            at_ns: i * 10 * S + 5 * S,
        });
    }
    let st = ix.stats();
    assert_eq!(st.intervals, 3, "{st:?}");
    assert_eq!(
        st.members, 3,
        "dead members no interval names are forgotten: {st:?}"
    );
    assert_eq!(st.members_live, 0);
    // external + the three workloads still named by history.
    assert_eq!(st.workloads, 4, "{st:?}");
    assert_eq!(who(&ix, "10.0.0.9", 92 * S), "batch/pod/bare-9");
    assert_eq!(who(&ix, "10.0.0.9", 12 * S), "external/external");
    // A series pins a workload past its last interval.
    let w9 = ix.resolve(ip("10.0.0.9"), 92 * S).workload;
    ix.retain_workload(w9);
    // Everything ended more than the retention ago.
    ix.prune(1000 * S);
    let st = ix.stats();
    assert_eq!(
        (st.intervals, st.members, st.addresses),
        (0, 0, 0),
        "{st:?}"
    );
    assert_eq!(st.workloads, 2, "external and the pinned one: {st:?}");
    assert_eq!(ix.workload(w9).unwrap().name.as_ref(), "bare-9");
    assert!(!ix.is_live(w9));
    ix.release_workload(w9);
    assert_eq!(ix.stats().workloads, 1);
    assert!(ix.workload(w9).is_none());
    // The freed ids are reused, not grown.
    for i in 0..5u64 {
        let mut m = pod(
            &format!("q{i}"),
            "batch",
            "x",
            &["10.0.1.1"],
            2000 * S,
            None,
        );
        m.workload = Workload::new("batch", &format!("again-{i}"), WorkloadKind::Pod);
        ix.apply(Update::Upsert(m));
        ix.apply(Update::Remove {
            uid: format!("q{i}"),
            at_ns: 2000 * S,
        });
    }
    ix.prune(5000 * S);
    assert_eq!(ix.stats().workloads, 1);
}

#[test]
fn workloads_live_while_any_member_lives() {
    let mut ix = index();
    ix.apply(Update::Upsert(pod(
        "a",
        "shop",
        "web",
        &["10.0.0.1"],
        0,
        None,
    )));
    ix.apply(Update::Upsert(pod(
        "b",
        "shop",
        "web",
        &["10.0.0.2"],
        0,
        None,
    )));
    let w = ix.resolve(ip("10.0.0.1"), S).workload;
    assert_eq!(
        ix.resolve(ip("10.0.0.2"), S).workload,
        w,
        "one workload, two pods"
    );
    ix.apply(Update::Remove {
        uid: "a".into(),
        at_ns: 5 * S,
    });
    assert!(ix.is_live(w));
    ix.apply(Update::Remove {
        uid: "b".into(),
        at_ns: 6 * S,
    });
    assert!(!ix.is_live(w));
    assert!(ix.is_live(WorkloadId::EXTERNAL));
}

#[test]
fn owner_learned_later_moves_the_pod_to_its_workload() {
    let mut ix = index();
    let mut m = pod("a", "shop", "web", &["10.0.0.1"], 0, None);
    m.workload = Workload::new("shop", "web-7d9f8c", WorkloadKind::ReplicaSet);
    ix.apply(Update::Upsert(m.clone()));
    assert_eq!(who(&ix, "10.0.0.1", S), "shop/replicaset/web-7d9f8c");
    m.workload = Workload::new("shop", "web", WorkloadKind::Deployment);
    ix.apply(Update::Upsert(m));
    assert_eq!(who(&ix, "10.0.0.1", S), "shop/deployment/web");
    assert_eq!(ix.stats().workloads, 2, "the replicaset name is recycled");
}

#[test]
fn dual_stack_mapped_addresses_subnets_and_nodes() {
    let mut ix = IdentityIndex::new(IndexConfig {
        subnets: vec![
            "10.0.0.0/8=corp".parse::<SubnetLabel>().unwrap(),
            "2001:db8::/32=lab".parse().unwrap(),
        ],
        ..IndexConfig::default()
    });
    ix.apply(Update::Upsert(pod(
        "a",
        "shop",
        "web",
        &["10.244.0.5", "fd00::5"],
        0,
        None,
    )));
    ix.apply(Update::Upsert(Member {
        uid: "n1".into(),
        kind: MemberKind::Node,
        namespace: String::new(),
        name: "node-a".into(),
        workload: Workload::new("", "node-a", WorkloadKind::Node),
        node: "node-a".into(),
        ips: vec![ip("192.168.1.10")],
        from_ns: 0,
        until_ns: None,
        seen_ns: 0,
    }));
    assert_eq!(who(&ix, "10.244.0.5", S), "shop/deployment/web");
    assert_eq!(who(&ix, "::ffff:10.244.0.5", S), "shop/deployment/web");
    assert_eq!(who(&ix, "fd00::5", S), "shop/deployment/web");
    assert_eq!(who(&ix, "192.168.1.10", S), "node/node-a");
    assert_eq!(who(&ix, "10.1.2.3", S), "subnet/corp");
    assert_eq!(who(&ix, "2001:db8::1", S), "subnet/lab");
    assert_eq!(who(&ix, "8.8.8.8", S), "external/external");
    let corp = ix.resolve(ip("10.1.2.3"), S).workload;
    assert!(ix.is_live(corp));
}

#[test]
fn identity_file_loads_into_the_same_index() {
    let text = r#"
pods:
  - namespace: shop
    name: web-7d9f8c6b5-x2x4q
    ips: [10.244.1.5]
    node: node-a
    workload: { kind: deployment, name: web }
    until: "1970-01-01T00:01:40Z"
  - namespace: bank
    name: api-0
    ips: [10.244.1.5]
    workload: { kind: statefulset, name: api }
    from: 100000000000
  - namespace: kube-system
    name: kube-proxy-abcde
    hostNetwork: true
    node: node-a
  - { namespace: default, name: debug, ips: ["fd00::7"] }
services:
  - { namespace: shop, name: web, ips: [10.96.0.10] }
nodes:
  - { name: node-a, ips: [192.168.1.10] }
"#;
    let file = netstream_enrich::file::IdentityFile::parse(text).unwrap();
    let mut ix = index();
    for u in file.updates().unwrap() {
        ix.apply(u);
    }
    assert_eq!(who(&ix, "10.244.1.5", 50 * S), "shop/deployment/web");
    assert_eq!(who(&ix, "10.244.1.5", 150 * S), "bank/statefulset/api");
    assert_eq!(who(&ix, "fd00::7", S), "default/pod/debug");
    assert_eq!(who(&ix, "10.96.0.10", S), "shop/service/web");
    assert_eq!(who(&ix, "192.168.1.10", S), "node/node-a");

    for (bad, needle) in [
        ("pods: [{namespace: a, name: b}]", "`ips` is empty"),
        (
            "pods: [{namespace: a, name: b, hostNetwork: true}]",
            "needs its `node`",
        ),
        (
            "pods: [{namespace: a, name: b, ips: [1.2.3.4], from: yesterday}]",
            "RFC 3339",
        ),
        (
            "pods: [{namespace: a, name: b, ips: [1.2.3.4], from: 5, until: 5}]",
            "after `from`",
        ),
    ] {
        let err = netstream_enrich::file::IdentityFile::parse(bad)
            .unwrap()
            .updates()
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{bad}: {err}");
    }
    for bad in [
        "pods: [{namespace: a, name: b, ips: [not-an-ip]}]",
        "pod: []",
        "pods: [{namespace: a, name: b, ips: [1.2.3.4], workload: {kind: lambda, name: x}}]",
    ] {
        assert!(
            netstream_enrich::file::IdentityFile::parse(bad).is_err(),
            "{bad}"
        );
    }
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Upsert {
            uid: u8,
            ip: u8,
            wl: u8,
            from: u16,
            until: Option<u16>,
        },
        Remove {
            uid: u8,
            at: u16,
        },
        Resync {
            uids: Vec<u8>,
            at: u16,
        },
        Prune {
            now: u16,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..12, 0u8..4, 0u8..3, 0u16..500, proptest::option::of(0u16..600))
                .prop_map(|(uid, ip, wl, from, until)| Op::Upsert { uid, ip, wl, from, until }),
            2 => (0u8..12, 0u16..600).prop_map(|(uid, at)| Op::Remove { uid, at }),
            1 => (proptest::collection::vec(0u8..12, 0..6), 0u16..600)
                .prop_map(|(uids, at)| Op::Resync { uids, at }),
            1 => (0u16..2000).prop_map(|now| Op::Prune { now }),
        ]
    }

    fn member(uid: u8, ip: u8, wl: u8, from: u16, until: Option<u16>) -> Member {
        let mut m = pod(
            &format!("u{uid}"),
            "ns",
            &format!("w{wl}"),
            &[&format!("10.0.0.{ip}")],
            u64::from(from) * S,
            until.map(|u| u64::from(u) * S),
        );
        m.seen_ns = m.from_ns;
        m
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Whatever the order of events, the index stays consistent, and a lookup inside the
        /// interval of the member that most recently took an address finds that member.
        #[test]
        fn any_event_order_keeps_the_index_consistent(ops in proptest::collection::vec(op(), 1..60)) {
            let mut ix = IdentityIndex::new(IndexConfig {
                max_history: 3,
                tolerance: Duration::from_secs(1),
                retention: Duration::from_secs(100),
                ..IndexConfig::default()
            });
            for op in ops {
                match op {
                    Op::Upsert { uid, ip, wl, from, until } => {
                        ix.apply(Update::Upsert(member(uid, ip, wl, from, until)));
                    }
                    Op::Remove { uid, at } => {
                        ix.apply(Update::Remove { uid: format!("u{uid}"), at_ns: u64::from(at) * S });
                    }
                    Op::Resync { uids, at } => {
                        let members = uids.iter().map(|&u| member(u, u % 4, u % 3, 0, None)).collect();
                        ix.apply(Update::Resync { kind: MemberKind::Pod, members, at_ns: u64::from(at) * S });
                    }
                    Op::Prune { now } => ix.prune(u64::from(now) * S),
                }
                if let Err(e) = ix.check_invariants() {
                    prop_assert!(false, "{}", e);
                }
            }
        }
    }
}
