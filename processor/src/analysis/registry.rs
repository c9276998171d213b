//! Every analysis, in one list: its name (for `--analyses`), what it needs, how it is built
//! from the processor's settings, and its API routes. Enabled analyses see each packet in this
//! order, so one may read what an earlier one noted (`workloads` reads the initiator `flows`
//! found).
//!
//! Adding an analysis: a folder next to `flows/` implementing [`Analysis`], and one line in
//! [`ANALYSES`].

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;

use super::branch::{Branch, BranchAnalysis};
use super::flows::Flows;
use super::workloads::Workloads;
use super::workloads::enrichment::Enrichment;
use super::{Analysis, Host, Hosted};
use crate::state::Shared;

/// What the analyses are built from (the processor's flags and what `main` connected).
pub struct Setup {
    pub max_flows: usize,
    /// Flow tables over every lane: each engine built from this setup shares `max_flows`.
    pub flow_tables: Arc<std::sync::atomic::AtomicUsize>,
    pub idle_ticks: u32,
    /// With `--enrichment` on: taken by `workloads`.
    pub enrichment: Option<Enrichment>,
    /// With `--branch-topic-prefix`: used by `branch`.
    pub branch: Option<Arc<Branch>>,
    /// Set when the process is stopping.
    pub stop: Arc<AtomicBool>,
}

impl Setup {
    /// Settings for `flows` only (tests, benches).
    pub fn new(max_flows: usize, idle_ticks: u32) -> Self {
        Setup {
            max_flows,
            flow_tables: Arc::default(),
            idle_ticks,
            enrichment: None,
            branch: None,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

type Build = fn(&mut Setup) -> Result<Box<dyn Hosted>, String>;

/// One analysis in the list.
pub struct Entry {
    pub name: &'static str,
    /// One line for `--help` and errors.
    pub about: &'static str,
    /// Analyses that must be enabled (and come earlier in [`ANALYSES`]).
    pub needs: &'static [&'static str],
    /// How to turn it on, for the errors of a request to a disabled analysis.
    pub enable: &'static str,
    pub build: Build,
    pub routes: fn(Arc<Shared>) -> Router,
}

/// Every analysis, in the order they see packets.
pub const ANALYSES: &[Entry] = &[
    Entry {
        name: Flows::NAME,
        about: "packets and bytes per flow and per protocol",
        needs: &[],
        enable: "add flows to --analyses",
        build: |s| {
            Ok(host(
                Flows::new(s.max_flows, s.idle_ticks)
                    .with_label_mode(label_mode(s))
                    .with_shared_tables(s.flow_tables.clone()),
            ))
        },
        routes: super::flows::api::routes,
    },
    Entry {
        name: Workloads::NAME,
        about: "traffic between Kubernetes workloads (needs --enrichment)",
        needs: &[Flows::NAME],
        enable: "start the processor with --enrichment kubernetes or --enrichment file",
        build: |s| {
            match s.enrichment.take() {
            Some(e) => Ok(host(Workloads::new(e))),
            None => Err("the workloads analysis needs enrichment: set --enrichment kubernetes or --enrichment file, or drop workloads from --analyses".into()),
        }
        },
        routes: super::workloads::api::routes,
    },
    Entry {
        name: BranchAnalysis::NAME,
        about: "every record again to a per-protocol topic (needs --branch-topic-prefix)",
        needs: &[],
        enable: "start the processor with --branch-topic-prefix P",
        build: |s| {
            match &s.branch {
            Some(b) => Ok(host(BranchAnalysis::new(b.clone(), s.stop.clone()))),
            None => Err("the branch analysis needs --branch-topic-prefix P (the topics P.tcp, P.udp and P.other), or drop branch from --analyses".into()),
        }
        },
        routes: |_| Router::new(),
    },
];

fn host<A: Analysis>(a: A) -> Box<dyn Hosted> {
    Box::new(Host::new(a))
}

fn label_mode(s: &Setup) -> super::flows::FlowLabelMode {
    s.enrichment
        .as_ref()
        .map(Enrichment::flow_label_mode)
        .unwrap_or_default()
}

/// How to turn analysis `name` on (for a 404 from its API).
pub fn how_to_enable(name: &str) -> &'static str {
    ANALYSES
        .iter()
        .find(|e| e.name == name)
        .map(|e| e.enable)
        .unwrap_or("see --analyses")
}

/// The default `--analyses`: `flows`, plus `workloads` with enrichment and `branch` with a
/// branch topic prefix.
pub fn default_names(enrichment: bool, branch: bool) -> Vec<String> {
    let mut names = vec![Flows::NAME.to_string()];
    if enrichment {
        names.push(Workloads::NAME.to_string());
    }
    if branch {
        names.push(BranchAnalysis::NAME.to_string());
    }
    names
}

/// Checks `names` against `list` and returns the enabled entries in list order. Errors name
/// the unknown analysis (and list the known ones) or the missing dependency.
pub fn select<'a>(list: &'a [Entry], names: &[String]) -> Result<Vec<&'a Entry>, String> {
    for n in names {
        if !list.iter().any(|e| e.name == n) {
            let known: Vec<&str> = list.iter().map(|e| e.name).collect();
            return Err(format!(
                "unknown analysis {n:?} in --analyses; known: {}",
                known.join(", ")
            ));
        }
    }
    let enabled: Vec<&Entry> = list
        .iter()
        .filter(|e| names.iter().any(|n| n == e.name))
        .collect();
    for e in &enabled {
        for need in e.needs {
            if !enabled.iter().any(|o| o.name == *need) {
                return Err(format!(
                    "the {} analysis needs {need}: add {need} to --analyses",
                    e.name
                ));
            }
        }
    }
    Ok(enabled)
}

/// Builds the analyses `names` of `list`, in list order.
pub fn build(
    list: &[Entry],
    names: &[String],
    setup: &mut Setup,
) -> Result<Vec<Box<dyn Hosted>>, String> {
    select(list, names)?
        .into_iter()
        .map(|e| (e.build)(setup))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{Families, Packet, Snapshots, Verdict};
    use crate::engine::Engine;
    use netstream_runtime::metrics::FamilyDef;
    use netstream_wire::{Direction, Endpoint, FlowKey, KeyKind, PacketMeta, ValueEncoder};

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn unknown_and_unmet_analyses_are_errors_that_name_the_fix() {
        let err = build(ANALYSES, &names(&["flows", "dns"]), &mut Setup::new(10, 0))
            .err()
            .unwrap();
        assert!(
            err.contains("\"dns\"") && err.contains("known: flows, workloads, branch"),
            "{err}"
        );
        let err = select(ANALYSES, &names(&["workloads"])).err().unwrap();
        assert!(err.contains("add flows to --analyses"), "{err}");
        let err = build(
            ANALYSES,
            &names(&["flows", "workloads"]),
            &mut Setup::new(10, 0),
        )
        .err()
        .unwrap();
        assert!(err.contains("--enrichment"), "{err}");
        let err = build(ANALYSES, &names(&["branch"]), &mut Setup::new(10, 0))
            .err()
            .unwrap();
        assert!(err.contains("--branch-topic-prefix"), "{err}");
        // Given in any order, they run in list order.
        let order: Vec<&str> = select(ANALYSES, &names(&["branch", "flows"]))
            .unwrap()
            .iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(order, ["flows", "branch"]);
        assert_eq!(default_names(false, false), ["flows"]);
        assert_eq!(default_names(true, true), ["flows", "workloads", "branch"]);
    }

    /// A new analysis is one module (this one: counts UDP packets per partition and its own
    /// family) and one line in a list.
    mod example {
        use super::*;

        pub struct UdpCount {
            pub revoked: u64,
        }

        #[derive(Default)]
        pub struct UdpSnapshot(pub u64);

        const UDP: FamilyDef =
            FamilyDef::counter("netstream_example_udp_total", "UDP packets.", &[]);

        impl Analysis for UdpCount {
            const NAME: &'static str = "example";
            type Shard = u64;
            type Snapshot = UdpSnapshot;
            fn shard(&mut self, _partition: i32) -> u64 {
                0
            }
            fn packet(&mut self, n: &mut u64, pkt: &Packet<'_>) -> Verdict {
                *n += u64::from(pkt.key.ip_proto() == Some(17));
                Verdict::Continue
            }
            fn revoked(&mut self, _partition: i32, n: u64) -> usize {
                self.revoked += n;
                0
            }
            fn snapshot(&self, shards: &[u64], _: &Snapshots, into: &mut UdpSnapshot) {
                into.0 = self.revoked + shards.iter().sum::<u64>();
            }
            fn families(snap: &UdpSnapshot, _: &Snapshots, out: &mut Families) {
                out.push(UDP.single(snap.0 as f64));
            }
            fn defs(&self) -> Vec<FamilyDef> {
                vec![UDP]
            }
        }
    }

    #[test]
    fn a_new_analysis_is_one_module_and_one_line() {
        let list = [
            Entry {
                name: Flows::NAME,
                about: "",
                needs: &[],
                enable: "",
                build: ANALYSES[0].build,
                routes: |_| Router::new(),
            },
            // The one line:
            Entry {
                name: "example",
                about: "UDP packets",
                needs: &[],
                enable: "",
                build: |_| Ok(host(example::UdpCount { revoked: 0 })),
                routes: |_| Router::new(),
            },
        ];
        let hosts = build(&list, &names(&["example", "flows"]), &mut Setup::new(10, 0)).unwrap();
        let mut engine = Engine::new(hosts);
        assert_eq!(engine.names(), ["flows", "example"]);
        let v = ValueEncoder::new("n", "i")
            .encode(
                &PacketMeta {
                    direction: Direction::AToB,
                    tcp_syn: false,
                    link_type: 1,
                    wire_len: 60,
                    ts_ns: 1,
                },
                &[],
            )
            .to_vec();
        for (partition, proto) in [(0, 17), (1, 17), (1, 6), (2, 17)] {
            let (k, _) = FlowKey::new(
                KeyKind::Ipv4,
                proto,
                Endpoint::v4([10, 0, 0, 1], 1),
                Endpoint::v4([10, 0, 0, 2], 2),
            );
            engine
                .record(partition, Some(&k.to_vec()), Some(&v), 0)
                .unwrap();
        }
        engine.revoke(&[1]);
        let snaps = engine.snapshot();
        assert_eq!(snaps.names(), ["flows", "example"]);
        assert_eq!(snaps.get::<example::UdpSnapshot>().map(|s| s.0), Some(3));
        let mut out = Families::default();
        snaps.families(&mut out);
        let names: Vec<&str> = out.list.iter().map(|f| f.name()).collect();
        assert!(names.contains(&"netstream_example_udp_total"), "{names:?}");
        assert!(
            engine
                .defs()
                .iter()
                .any(|d| d.name == "netstream_example_udp_total")
        );
    }
}
