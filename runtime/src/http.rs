//! The metrics and health endpoint every netstream binary serves: `/metrics` (Prometheus text
//! format), `/healthz` (the process is alive and its loops are running), `/readyz` (it is doing
//! its job: connected, capturing or consuming). Extra routes (the processor's API) are merged in.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};

/// Health flags flipped by the binary as it starts and stops.
#[derive(Debug, Default)]
pub struct Health {
    pub live: AtomicBool,
    pub ready: AtomicBool,
}

impl Health {
    pub fn new() -> Arc<Self> {
        let h = Health::default();
        h.live.store(true, Ordering::Relaxed);
        Arc::new(h)
    }
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
    pub fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::Relaxed);
    }
}

#[derive(Clone)]
struct AppState {
    registry: Registry,
    health: Arc<Health>,
}

/// Renders a registry in the Prometheus text format.
pub fn render(registry: &Registry) -> Result<String, prometheus::Error> {
    let mut buf = Vec::with_capacity(16 * 1024);
    TextEncoder::new().encode(&registry.gather(), &mut buf)?;
    String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    match render(&s.registry) {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn flag(ok: bool, what: &'static str) -> impl IntoResponse {
    if ok {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, what)
    }
}

/// The base router: `/metrics`, `/healthz`, `/readyz`.
pub fn router(registry: Registry, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route(
            "/healthz",
            get(|State(s): State<AppState>| async move {
                flag(s.health.live.load(Ordering::Relaxed), "not live\n")
            }),
        )
        .route(
            "/readyz",
            get(|State(s): State<AppState>| async move {
                flag(s.health.ready.load(Ordering::Relaxed), "not ready\n")
            }),
        )
        .with_state(AppState { registry, health })
}

/// Binds `addr` (fails fast with a clear message) and serves `app` until `shutdown` resolves.
/// Returns the bound address (useful with port 0) and the server task.
pub async fn serve(
    addr: SocketAddr,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on --metrics-addr {addr}: choose a free address:port")
    })?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok((local, task))
}
