//! `GET /api/v1/workloads?top=N&by=bytes|packets`: the top workload series (who talks to
//! whom).

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use super::Workloads;
use crate::analysis::Analysis;
use crate::analysis::flows::api::parse_flows_query;
use crate::analysis::flows::table::TopBy;
use crate::api::{analysis_off, bad_request};
use crate::state::Shared;

#[derive(Debug, Serialize)]
struct WorkloadEndJson {
    namespace: String,
    workload: String,
    kind: &'static str,
}

#[derive(Debug, Serialize)]
struct WorkloadSeriesJson {
    src: WorkloadEndJson,
    dst: WorkloadEndJson,
    protocol: &'static str,
    dst_port: u16,
    packets: u64,
    bytes: u64,
}

#[derive(Debug, Serialize)]
struct WorkloadsResponse {
    top: usize,
    by: &'static str,
    series_active: usize,
    series: Vec<WorkloadSeriesJson>,
}

async fn workloads(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let pairs = match query {
        Ok(Query(p)) => p,
        Err(e) => return bad_request(format!("{e}; use ?top=N&by=bytes|packets")),
    };
    if let Some((k, _)) = pairs.iter().find(|(k, _)| k != "top" && k != "by") {
        return bad_request(format!("unknown query parameter {k:?}; use top and by"));
    }
    let q = match parse_flows_query(&pairs) {
        Ok(q) => q,
        Err(msg) => return bad_request(msg.replace("flows", "series")),
    };
    let engine = shared.lock();
    let Some(e) = engine.analysis::<Workloads>().map(|w| &w.enrichment) else {
        return analysis_off(Workloads::NAME);
    };
    let end = |id| {
        let (namespace, workload, kind) = e.labels(id);
        WorkloadEndJson {
            namespace: namespace.to_string(),
            workload: workload.to_string(),
            kind,
        }
    };
    let series = e
        .series
        .top(q.top, q.by == TopBy::Packets)
        .into_iter()
        .map(|(k, c)| WorkloadSeriesJson {
            src: end(k.src),
            dst: end(k.dst),
            protocol: netstream_wire::protocol::ip_proto_name(k.protocol),
            dst_port: k.dst_port,
            packets: c.packets,
            bytes: c.bytes,
        })
        .collect();
    let active = e.series.len();
    drop(engine);
    axum::Json(WorkloadsResponse {
        top: q.top,
        by: match q.by {
            TopBy::Bytes => "bytes",
            TopBy::Packets => "packets",
        },
        series_active: active,
        series,
    })
    .into_response()
}

/// The routes of this analysis.
pub fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v1/workloads", get(workloads))
        .with_state(shared)
}
