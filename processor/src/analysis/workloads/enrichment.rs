//! Kubernetes enrichment in the processor: the identity index (address + capture time ->
//! pod, workload, service, node, subnet or `external`) and the workload table, kept in the
//! `workloads` analysis behind the engine's lock, so the count path resolves without another lock
//! and an identity source applies its updates under the same one.
//!
//! Count path (IP flows only, after the flow table update told us the initiator): two index
//! lookups straight from the key's address bytes at the record's capture time, then one workload
//! table update. Per-flow series are resolved at scrape time from the flow's latest capture time,
//! so the flow table's 80-byte entries do not change.

use std::sync::Arc;
use std::time::Duration;

use netstream_enrich::{
    IdentityIndex, MemberId, MemberKind, Resolved, SourceStats, Workload, WorkloadId, WorkloadKind,
};
use netstream_wire::{FlowKey, KeyKind, PacketMeta};

use super::table::{RemoveReason, SeriesKey, WorkloadTable};
use crate::clock::Clock;

/// The labels of one resolved identity: `(namespace, workload, kind)`.
pub type IdentityLabels<'a> = (&'a str, &'a str, &'static str);

/// What `external` renders as (and anything the index cannot name any more).
pub const EXTERNAL_LABELS: IdentityLabels<'static> = ("", "external", "external");

/// Settings of the enrichment (from the flags).
#[derive(Debug, Clone)]
pub struct EnrichmentOptions {
    /// Per-flow series also get `src_pod` / `dst_pod`.
    pub flow_pod_labels: bool,
    /// Series of workloads that no longer exist are removed after this long without updates.
    pub workload_expiry: Duration,
    /// Most workload series kept.
    pub max_series: usize,
}

impl Default for EnrichmentOptions {
    fn default() -> Self {
        EnrichmentOptions {
            flow_pod_labels: false,
            workload_expiry: Duration::from_secs(600),
            max_series: 50_000,
        }
    }
}

/// The index, the workload table and their counters.
#[derive(Debug)]
pub struct Enrichment {
    pub index: IdentityIndex,
    pub series: WorkloadTable,
    pub flow_pod_labels: bool,
    expiry_ticks: u32,
    /// The newest capture time counted: the index's notion of "now" for pruning history.
    newest_ns: u64,
    /// The identity source's counters (watch events, errors, sync).
    pub source: Arc<SourceStats>,
}

impl Enrichment {
    pub fn new(index: IdentityIndex, opts: &EnrichmentOptions, source: Arc<SourceStats>) -> Self {
        Enrichment {
            index,
            series: WorkloadTable::new(opts.max_series),
            flow_pod_labels: opts.flow_pod_labels,
            expiry_ticks: Clock::ticks(opts.workload_expiry),
            newest_ns: 0,
            source,
        }
    }

    /// The per-flow labels it gives the `flows` series.
    pub fn flow_label_mode(&self) -> crate::analysis::flows::FlowLabelMode {
        use crate::analysis::flows::FlowLabelMode;
        if self.flow_pod_labels {
            FlowLabelMode::Pods
        } else {
            FlowLabelMode::Workloads
        }
    }

    /// The newest capture time counted so far (ns since the epoch).
    pub fn newest_ns(&self) -> u64 {
        self.newest_ns
    }

    /// Resolves both endpoints of an IP flow key at capture time `ts_ns`: `(src, dst)`.
    #[inline]
    pub fn resolve_key(&self, key: &FlowKey, initiator_is_b: bool, ts_ns: u64) -> [Resolved; 2] {
        let [a, b] = self.resolve_ab(key, ts_ns);
        if initiator_is_b { [b, a] } else { [a, b] }
    }

    /// Resolves endpoints A and B of the key. Independent of which end initiated the flow, so
    /// the CPU can run these lookups alongside the flow table's.
    #[inline]
    fn resolve_ab(&self, key: &FlowKey, ts_ns: u64) -> [Resolved; 2] {
        let (a, b) = (key.a(), key.b());
        match key.kind() {
            KeyKind::Ipv6 => [
                self.index.resolve_v6(u128::from_be_bytes(a.addr), ts_ns),
                self.index.resolve_v6(u128::from_be_bytes(b.addr), ts_ns),
            ],
            _ => [
                self.index.resolve_v4(v4(&a.addr), ts_ns),
                self.index.resolve_v4(v4(&b.addr), ts_ns),
            ],
        }
    }

    /// Counts one packet of an IP flow (the caller checked the key kind) at processor tick
    /// `now`.
    #[inline]
    pub fn count(&mut self, key: &FlowKey, initiator_is_b: bool, meta: &PacketMeta, now: u32) {
        let ts = meta.ts_ns;
        self.newest_ns = self.newest_ns.max(ts);
        let [a, b] = self.resolve_ab(key, ts);
        let (src, dst, dst_port) = if initiator_is_b {
            (b, a, key.a().port)
        } else {
            (a, b, key.b().port)
        };
        let series = SeriesKey {
            src: src.workload,
            dst: dst.workload,
            protocol: key.ip_proto().unwrap_or(0),
            dst_port,
        };
        self.series.add(series, meta.wire_len, now, &mut self.index);
    }

    /// The once-a-second upkeep: expires the series of workloads that are gone and forgets
    /// index history older than its retention (relative to the newest capture time).
    pub fn maintain(&mut self, now: u32) -> usize {
        let expired = self.series.expire(now, self.expiry_ticks, &mut self.index);
        if self.newest_ns > 0 {
            self.index.prune(self.newest_ns);
        }
        expired
    }

    /// The labels of a workload id; [`EXTERNAL_LABELS`] if the index no longer names it.
    pub fn labels(&self, id: WorkloadId) -> IdentityLabels<'_> {
        match self.index.workload(id) {
            Some(w) => (&w.namespace, &w.name, w.kind.as_str()),
            None => EXTERNAL_LABELS,
        }
    }

    /// The pod name of a resolved member ("" for services, nodes, subnets and external).
    pub fn pod_name(&self, id: MemberId) -> &str {
        match self.index.member(id) {
            Some(m) if m.kind == MemberKind::Pod => &m.name,
            _ => "",
        }
    }

    /// Live members by kind `[pod, service, node]`.
    pub fn live_members(&self) -> [usize; 3] {
        self.index.stats().live_by_kind
    }

    pub fn removed(&self, reason: RemoveReason) -> u64 {
        self.series.removed(reason)
    }
}

#[inline]
fn v4(addr: &[u8; 16]) -> u32 {
    u32::from_be_bytes([addr[0], addr[1], addr[2], addr[3]])
}

/// An owned copy of a workload's labels, for rendering outside the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedLabels {
    pub namespace: Box<str>,
    pub workload: Box<str>,
    pub kind: &'static str,
}

impl OwnedLabels {
    pub fn of(w: Option<&Workload>) -> OwnedLabels {
        match w {
            Some(w) => OwnedLabels {
                namespace: w.namespace.clone(),
                workload: w.name.clone(),
                kind: w.kind.as_str(),
            },
            None => OwnedLabels {
                namespace: "".into(),
                workload: "external".into(),
                kind: WorkloadKind::External.as_str(),
            },
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use netstream_enrich::{IndexConfig, Member, SubnetLabel, Update};
    use netstream_wire::{Direction, Endpoint};

    fn member(kind: MemberKind, ns: &str, name: &str, w: Workload, ip: &str) -> Update {
        Update::Upsert(Member {
            uid: format!("{}/{ns}/{name}", kind.as_str()),
            kind,
            namespace: ns.into(),
            name: name.into(),
            workload: w,
            node: String::new(),
            ips: vec![ip.parse().unwrap()],
            from_ns: 0,
            until_ns: None,
            seen_ns: 0,
        })
    }

    pub(crate) fn enrichment() -> Enrichment {
        let mut index = IdentityIndex::new(IndexConfig {
            subnets: vec!["172.16.0.0/12=corp".parse::<SubnetLabel>().unwrap()],
            ..IndexConfig::default()
        });
        for u in [
            member(
                MemberKind::Pod,
                "shop",
                "web-1",
                Workload::new("shop", "web", WorkloadKind::Deployment),
                "10.0.0.1",
            ),
            member(
                MemberKind::Pod,
                "data",
                "db-0",
                Workload::new("data", "db", WorkloadKind::StatefulSet),
                "10.0.0.2",
            ),
            member(
                MemberKind::Pod,
                "shop",
                "debug",
                Workload::new("shop", "debug", WorkloadKind::Pod),
                "fd00::7",
            ),
            member(
                MemberKind::Service,
                "data",
                "db",
                Workload::new("data", "db", WorkloadKind::Service),
                "10.96.0.10",
            ),
            member(
                MemberKind::Node,
                "",
                "node-a",
                Workload::new("", "node-a", WorkloadKind::Node),
                "192.168.1.10",
            ),
        ] {
            index.apply(u);
        }
        Enrichment::new(
            index,
            &EnrichmentOptions::default(),
            Arc::new(SourceStats::default()),
        )
    }

    fn labels_of(e: &Enrichment, ip: &str) -> (String, String, &'static str, String) {
        let r = e.index.resolve(ip.parse().unwrap(), 1);
        let (ns, w, k) = e.labels(r.workload);
        (ns.into(), w.into(), k, e.pod_name(r.member).into())
    }

    #[test]
    fn labels_for_every_kind_of_identity() {
        let e = enrichment();
        let l = |ns: &str, w: &str, k: &'static str, pod: &str| {
            (ns.to_string(), w.to_string(), k, pod.to_string())
        };
        assert_eq!(
            labels_of(&e, "10.0.0.1"),
            l("shop", "web", "deployment", "web-1")
        );
        assert_eq!(
            labels_of(&e, "10.0.0.2"),
            l("data", "db", "statefulset", "db-0")
        );
        assert_eq!(labels_of(&e, "fd00::7"), l("shop", "debug", "pod", "debug"));
        assert_eq!(labels_of(&e, "10.96.0.10"), l("data", "db", "service", ""));
        assert_eq!(labels_of(&e, "192.168.1.10"), l("", "node-a", "node", ""));
        assert_eq!(labels_of(&e, "172.20.1.1"), l("", "corp", "subnet", ""));
        assert_eq!(labels_of(&e, "8.8.8.8"), l("", "external", "external", ""));
        assert_eq!(e.live_members(), [3, 1, 1]);
        assert_eq!(e.labels(WorkloadId(9999)), EXTERNAL_LABELS);
    }

    #[test]
    fn counts_by_initiator_workload_and_server_port() {
        let mut e = enrichment();
        // The client (web, 10.0.0.1:40000) opens to the db service (10.96.0.10:5432).
        let (k, d) = FlowKey::new(
            KeyKind::Ipv4,
            6,
            Endpoint::v4([10, 0, 0, 1], 40000),
            Endpoint::v4([10, 96, 0, 10], 5432),
        );
        let meta = |direction, len| PacketMeta {
            direction,
            tcp_syn: false,
            link_type: 1,
            wire_len: len,
            ts_ns: 5,
        };
        let initiator_is_b = d == Direction::BToA;
        e.count(&k, initiator_is_b, &meta(d, 100), 0);
        // The answer counts under the same series (src stays the initiator).
        let back = if initiator_is_b {
            Direction::AToB
        } else {
            Direction::BToA
        };
        e.count(&k, initiator_is_b, &meta(back, 1000), 0);
        assert_eq!(e.series.len(), 1);
        let (key, counts) = e.series.iter().next().map(|(k, c)| (*k, *c)).unwrap();
        assert_eq!(e.labels(key.src), ("shop", "web", "deployment"));
        assert_eq!(e.labels(key.dst), ("data", "db", "service"));
        assert_eq!((key.protocol, key.dst_port), (6, 5432));
        assert_eq!((counts.packets, counts.bytes), (2, 1100));
        assert_eq!(e.newest_ns(), 5);

        // IPv6: the bare pod at fd00::7 opens to an external address; the external end is B.
        let v6 = |last: u8| {
            let mut a = [0u8; 16];
            a[0] = 0xfd;
            a[15] = last;
            a
        };
        let ext = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let (k6, d6) = FlowKey::new(
            KeyKind::Ipv6,
            17,
            Endpoint::v6(v6(7), 5000),
            Endpoint::v6(ext, 53),
        );
        e.count(&k6, d6 == Direction::BToA, &meta(d6, 80), 1);
        let debug = e
            .series
            .iter()
            .find(|(k, _)| e.labels(k.src).1 == "debug")
            .map(|(k, c)| (*k, *c))
            .unwrap();
        assert_eq!(e.labels(debug.0.dst), EXTERNAL_LABELS);
        assert_eq!((debug.0.protocol, debug.0.dst_port), (17, 53));
        assert_eq!(debug.1.bytes, 80);
    }
}
