//! The `flows` API:
//! - `GET /api/v1/flows?top=N&by=bytes|packets&protocol=P`: the top flows of this processor
//!   (over all its partitions) with their counts, first/last seen capture times and
//!   initiator; with `workloads` on, both ends' identities;
//! - `GET /api/v1/protocols`: per-protocol packets and bytes.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use super::Flows;
use super::table::{FlowEntry, FlowTable, ProtocolCounters, TopBy};
use crate::analysis::workloads::Workloads;
use crate::analysis::workloads::enrichment::Enrichment;
use crate::api::{MAX_TOP, bad_request, ip, rfc3339};
use crate::state::Shared;
use netstream_enrich::Resolved;

const DEFAULT_TOP: usize = 10;

/// A parsed `/api/v1/flows` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowsQuery {
    pub top: usize,
    pub by: TopBy,
    pub protocol: Option<String>,
}

/// Parses and checks the query pairs of `/api/v1/flows`.
pub fn parse_flows_query(pairs: &[(String, String)]) -> Result<FlowsQuery, String> {
    let mut q = FlowsQuery {
        top: DEFAULT_TOP,
        by: TopBy::Bytes,
        protocol: None,
    };
    for (k, v) in pairs {
        match k.as_str() {
            "top" => {
                q.top = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_TOP).contains(n))
                    .ok_or_else(|| {
                        format!("top={v:?} is not a number of flows; use 1..={MAX_TOP}")
                    })?
            }
            "by" => {
                q.by = match v.as_str() {
                    "bytes" => TopBy::Bytes,
                    "packets" => TopBy::Packets,
                    _ => {
                        return Err(format!(
                            "by={v:?} is not supported; use by=bytes or by=packets"
                        ));
                    }
                }
            }
            "protocol" => {
                if !ProtocolCounters::is_known_name(v) {
                    return Err(format!(
                        "protocol={v:?} is not a protocol label; use e.g. tcp, udp, icmp, icmpv6, sctp, gre or ip-N"
                    ));
                }
                q.protocol = Some(v.clone());
            }
            other => {
                return Err(format!(
                    "unknown query parameter {other:?}; use top, by and protocol"
                ));
            }
        }
    }
    Ok(q)
}

#[derive(Debug, Serialize, PartialEq)]
pub struct FlowJson {
    pub protocol: &'static str,
    pub src_addr: String,
    pub src_port: u16,
    pub dst_addr: String,
    pub dst_port: u16,
    pub packets: u64,
    pub bytes: u64,
    /// Capture time of the first packet counted (RFC 3339, UTC).
    pub first_seen: String,
    pub last_seen: String,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    /// The flow's initiator (the src endpoint) and how it was identified.
    pub initiator: InitiatorJson,
    /// With enrichment on: who the ends were at the flow's latest capture time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src: Option<IdentityJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst: Option<IdentityJson>,
}

/// One end's identity.
#[derive(Debug, Serialize, PartialEq)]
pub struct IdentityJson {
    pub namespace: String,
    pub workload: String,
    pub kind: &'static str,
    /// The pod's name ("" for services, nodes, subnets, external).
    pub pod: String,
}

impl IdentityJson {
    fn of(e: &Enrichment, r: &Resolved) -> IdentityJson {
        let (namespace, workload, kind) = e.labels(r.workload);
        IdentityJson {
            namespace: namespace.to_string(),
            workload: workload.to_string(),
            kind,
            pod: e.pod_name(r.member).to_string(),
        }
    }
}

impl FlowJson {
    /// The flow with its ends' identities when enrichment is on.
    pub fn with_identity(e: &FlowEntry, enrichment: Option<&Enrichment>) -> FlowJson {
        let mut j = FlowJson::from(e);
        if let Some(en) = enrichment {
            let [src, dst] = en.resolve_key(&e.key, e.initiator_is_b(), e.last_ns);
            j.src = Some(IdentityJson::of(en, &src));
            j.dst = Some(IdentityJson::of(en, &dst));
        }
        j
    }
}

#[derive(Debug, Serialize, PartialEq)]
pub struct InitiatorJson {
    pub addr: String,
    pub port: u16,
    /// `syn` (sent a TCP SYN) or `first_packet` (sent the first packet this processor saw).
    pub by: &'static str,
}

impl From<&FlowEntry> for FlowJson {
    fn from(e: &FlowEntry) -> Self {
        let (src, dst) = e.src_dst();
        let src_addr = ip(&e.key, src).to_string();
        FlowJson {
            protocol: e.key.protocol_name(),
            initiator: InitiatorJson {
                addr: src_addr.clone(),
                port: src.port,
                by: e.initiated_by().as_str(),
            },
            src_addr,
            src_port: src.port,
            dst_addr: ip(&e.key, dst).to_string(),
            dst_port: dst.port,
            packets: e.packets,
            bytes: e.bytes,
            first_seen: rfc3339(e.first_ns),
            last_seen: rfc3339(e.last_ns),
            first_seen_ns: e.first_ns,
            last_seen_ns: e.last_ns,
            src: None,
            dst: None,
        }
    }
}

#[derive(Debug, Serialize)]
struct FlowsResponse {
    top: usize,
    by: &'static str,
    protocol: Option<String>,
    flows_active: usize,
    flows: Vec<FlowJson>,
}

#[derive(Debug, Serialize)]
struct ProtocolJson {
    protocol: &'static str,
    packets: u64,
    bytes: u64,
}

#[derive(Debug, Serialize)]
struct ProtocolsResponse {
    protocols: Vec<ProtocolJson>,
}

async fn flows(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let pairs = match query {
        Ok(Query(p)) => p,
        Err(e) => return bad_request(format!("{e}; use ?top=N&by=bytes|packets&protocol=P")),
    };
    let q = match parse_flows_query(&pairs) {
        Ok(q) => q,
        Err(msg) => return bad_request(msg),
    };
    let (flows, active) = {
        let engine = shared.lock();
        let tables: Vec<&FlowTable> = engine.hosts::<Flows>().flat_map(|h| &h.shards).collect();
        if engine.hosts::<Flows>().next().is_none() {
            return crate::api::analysis_off(<Flows as crate::analysis::Analysis>::NAME);
        }
        let enrichment = engine.analysis::<Workloads>().map(|w| &w.enrichment);
        let flows: Vec<FlowJson> = top(&tables, q.top, q.by, q.protocol.as_deref())
            .iter()
            .map(|e| FlowJson::with_identity(e, enrichment))
            .collect();
        (flows, tables.iter().map(|t| t.len()).sum::<usize>())
    };
    axum::Json(FlowsResponse {
        top: q.top,
        by: match q.by {
            TopBy::Bytes => "bytes",
            TopBy::Packets => "packets",
        },
        protocol: q.protocol,
        flows_active: active,
        flows,
    })
    .into_response()
}

async fn protocols(State(shared): State<Arc<Shared>>) -> Response {
    let engine = shared.lock();
    if engine.hosts::<Flows>().next().is_none() {
        return crate::api::analysis_off(<Flows as crate::analysis::Analysis>::NAME);
    }
    // Summed over the lanes, in the protocols' own order.
    let mut protocols: Vec<ProtocolJson> = Vec::new();
    for flows in engine.hosts::<Flows>() {
        for (protocol, t) in flows.analysis.protocols.seen() {
            match protocols.iter_mut().find(|p| p.protocol == protocol) {
                Some(p) => {
                    p.packets += t.packets;
                    p.bytes += t.bytes;
                }
                None => protocols.push(ProtocolJson {
                    protocol,
                    packets: t.packets,
                    bytes: t.bytes,
                }),
            }
        }
    }
    drop(engine);
    protocols.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.protocol.cmp(b.protocol)));
    axum::Json(ProtocolsResponse { protocols }).into_response()
}

/// The top `n` flows over every partition's table, in [`FlowTable::top`]'s order (a flow is in
/// one table only, so the top of the tops is exact).
///
/// [`FlowTable::top`]: super::table::FlowTable::top
pub fn top(tables: &[&FlowTable], n: usize, by: TopBy, protocol: Option<&str>) -> Vec<FlowEntry> {
    let mut all: Vec<FlowEntry> = tables.iter().flat_map(|t| t.top(n, by, protocol)).collect();
    all.sort_unstable_by(|a, b| by.rank(b).cmp(&by.rank(a)).then(a.key.cmp(&b.key)));
    all.truncate(n);
    all
}

/// The routes of this analysis.
pub fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v1/flows", get(flows))
        .route("/api/v1/protocols", get(protocols))
        .with_state(shared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netstream_wire::{Direction, Endpoint, FlowKey, KeyKind, PacketMeta};

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_flow_queries_and_explains_bad_ones() {
        assert_eq!(
            parse_flows_query(&[]),
            Ok(FlowsQuery {
                top: 10,
                by: TopBy::Bytes,
                protocol: None
            })
        );
        assert_eq!(
            parse_flows_query(&pairs(&[
                ("top", "3"),
                ("by", "packets"),
                ("protocol", "udp")
            ])),
            Ok(FlowsQuery {
                top: 3,
                by: TopBy::Packets,
                protocol: Some("udp".into())
            })
        );
        for (q, needle) in [
            (("top", "0"), "use 1..=10000"),
            (("top", "x"), "use 1..=10000"),
            (("top", "10001"), "use 1..=10000"),
            (("by", "size"), "by=bytes or by=packets"),
            (("protocol", "http"), "not a protocol label"),
            (("limit", "3"), "unknown query parameter"),
        ] {
            let err = parse_flows_query(&pairs(&[q])).unwrap_err();
            assert!(err.contains(needle), "{q:?}: {err}");
        }
    }

    #[test]
    fn flow_json_names_the_initiator() {
        let mut t = super::super::table::FlowTable::new(4, 0);
        let (k, d) = FlowKey::new(
            KeyKind::Ipv4,
            6,
            Endpoint::v4([10, 0, 0, 20], 40000),
            Endpoint::v4([10, 0, 0, 9], 443),
        );
        let meta = PacketMeta {
            direction: d,
            tcp_syn: true,
            link_type: 1,
            wire_len: 60,
            ts_ns: 1_700_000_000_123_456_789,
        };
        t.update(&k, &meta, 0);
        let j = FlowJson::from(t.get(&k).unwrap());
        assert_eq!(
            serde_json::to_value(&j).unwrap(),
            serde_json::json!({
                "protocol": "tcp",
                "src_addr": "10.0.0.20", "src_port": 40000,
                "dst_addr": "10.0.0.9", "dst_port": 443,
                "packets": 1, "bytes": 60,
                "first_seen": "2023-11-14T22:13:20.123456789Z",
                "last_seen": "2023-11-14T22:13:20.123456789Z",
                "first_seen_ns": 1_700_000_000_123_456_789u64,
                "last_seen_ns": 1_700_000_000_123_456_789u64,
                "initiator": {"addr": "10.0.0.20", "port": 40000, "by": "syn"}
            })
        );
        let _ = Direction::AToB;
    }
}
