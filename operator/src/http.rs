//! `/metrics`, `/healthz` and `/readyz` of the operator: `netstream_runtime::http` serving the
//! operator's registry, so every netstream binary renders and answers the same way.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

pub use netstream_runtime::http::Health;

use crate::metrics::Metrics;

/// Binds `addr` (a taken port fails startup) and serves `metrics` and `health` until
/// `shutdown` resolves. Returns the bound address and the server task.
pub async fn serve(
    addr: SocketAddr,
    metrics: &Metrics,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let app = netstream_runtime::http::router(metrics.registry.clone(), health);
    netstream_runtime::http::serve(addr, app, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_and_health_then_shuts_down() {
        let metrics = Metrics::new().unwrap();
        metrics.failed("netprobe", "InvalidFilter");
        let health = Health::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (addr, server) = serve(
            "127.0.0.1:0".parse().unwrap(),
            &metrics,
            health.clone(),
            async {
                let _ = rx.await;
            },
        )
        .await
        .unwrap();
        let m = get(addr, "/metrics").await;
        assert!(m.starts_with("HTTP/1.1 200"), "{m}");
        assert!(m.contains("netstream_operator_reconcile_failures_total{controller=\"netprobe\",reason=\"InvalidFilter\"} 1"), "{m}");
        let ok = |r: &str| r.starts_with("HTTP/1.1 200") && r.ends_with("ok\n");
        let r = get(addr, "/healthz").await;
        assert!(ok(&r), "/healthz: {r}");
        let r = get(addr, "/readyz").await;
        assert!(r.starts_with("HTTP/1.1 503"), "not ready until set: {r}");
        health.set_ready(true);
        let r = get(addr, "/readyz").await;
        assert!(ok(&r), "/readyz: {r}");
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
        tx.send(()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), server)
            .await
            .expect("graceful shutdown completes")
            .unwrap();
    }

    #[tokio::test]
    async fn taken_port_fails_with_the_flag_name() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let err = serve(addr, &Metrics::new().unwrap(), Health::new(), async {})
            .await
            .unwrap_err();
        assert!(err.to_string().contains("--metrics-addr"), "{err}");
    }
}
