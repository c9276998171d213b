//! The HTTP API, merged into the metrics server's router: each analysis serves its own
//! `/api/v1/...` routes (listed in [`crate::analysis::registry`]); this module holds what they
//! share and `/metrics`.
//!
//! Bad query parameters get a 400 with a JSON `{"error": "..."}` naming the fix; an analysis
//! that is off answers 404 saying how to turn it on.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use netstream_wire::{Endpoint, FlowKey, KeyKind};

use crate::analysis::registry;
use crate::collector::ProcessorCollector;
use crate::state::Shared;

/// Most entries one request may ask for.
pub const MAX_TOP: usize = 10_000;

/// A 400 naming the fix.
pub fn bad_request(msg: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(serde_json::json!({ "error": msg })),
    )
        .into_response()
}

/// A 404 for an analysis that is not enabled, with how to enable it.
pub fn analysis_off(name: &str) -> Response {
    let how = registry::how_to_enable(name);
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({ "error": format!("the {name} analysis is off; {how}") })),
    )
        .into_response()
}

/// The endpoint address as an [`IpAddr`].
pub fn ip(key: &FlowKey, e: &Endpoint) -> IpAddr {
    match key.kind() {
        KeyKind::Ipv6 => IpAddr::V6(Ipv6Addr::from(e.addr)),
        _ => IpAddr::V4(Ipv4Addr::new(e.addr[0], e.addr[1], e.addr[2], e.addr[3])),
    }
}

/// Every analysis' API routes (enabled or not: one that is off answers 404 with the fix).
pub fn routes(shared: Arc<Shared>) -> Router {
    registry::ANALYSES.iter().fold(Router::new(), |r, entry| {
        r.merge((entry.routes)(shared.clone()))
    })
}

/// `/metrics` rendered by [`ProcessorCollector::render`]: the collector's families written by
/// the fast text encoder on a blocking thread, and dropped after the response is on its way.
/// (The runtime router's own `/metrics` goes through `Registry::gather`, which sorts every
/// sample by its label values: ~3x slower at 100k flows.)
pub fn metrics_route(collector: Arc<ProcessorCollector>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(collector)
}

async fn metrics(State(collector): State<Arc<ProcessorCollector>>) -> Response {
    let rendered = tokio::task::spawn_blocking(move || {
        let (text, families) = collector.render();
        (text, families)
    })
    .await;
    match rendered {
        Ok((text, families)) => {
            tokio::task::spawn_blocking(move || drop(families));
            (
                StatusCode::OK,
                [(
                    axum::http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                text,
            )
                .into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("rendering metrics failed: {e}\n"),
        )
            .into_response(),
    }
}

/// Nanoseconds since the Unix epoch as RFC 3339 UTC with nanoseconds.
pub fn rfc3339(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let nanos = ns % 1_000_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
        assert_eq!(
            rfc3339(4_102_444_799_000_000_000),
            "2099-12-31T23:59:59.000000000Z"
        );
    }
}
