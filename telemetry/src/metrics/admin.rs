//! The admin HTTP port of `--metrics-listen`: `GET /metrics` answers the exposition text, refreshed at each scrape.
//!
//! A separate port from gRPC so a scraper needs no HTTP/2 and the metrics stay reachable while the gRPC port drains.

use std::sync::Arc;

use tokio::net::TcpListener;

use super::{
    Metrics,
    text_format::{OPENMETRICS_TEXT, PROMETHEUS_TEXT, to_prometheus_text, wants_openmetrics},
};

/// The admin HTTP server of `--metrics-listen`, stopped when dropped.
#[derive(Debug)]
pub struct AdminServer {
    /// Where it listens (the real port when the flag said port 0).
    pub addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the admin server on `addr` if one was configured; `on_scrape` refreshes scrape-time values.
pub async fn start_admin(
    addr: Option<std::net::SocketAddr>,
    metrics: &Metrics,
    on_scrape: impl Fn(&Metrics) + Send + Sync + 'static,
) -> anyhow::Result<Option<AdminServer>> {
    use anyhow::Context;
    let Some(addr) = addr else { return Ok(None) };
    let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} for metrics"))?;
    let addr = listener.local_addr().context("metrics listener has no address")?;
    let task = tokio::spawn(serve(listener, metrics.clone(), on_scrape));
    Ok(Some(AdminServer { addr, task }))
}

/// Serves `GET /metrics` on `listener` until the task is aborted ([`AdminServer`]'s drop). `on_scrape` refreshes
/// the values read at scrape time before each encoding. OpenMetrics to a scraper that asks for it (Prometheus), the
/// classic text format to anything else (`curl`, `promtool check metrics`), as client_golang's handler negotiates.
async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    on_scrape: impl Fn(&Metrics) + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let on_scrape = Arc::new(on_scrape);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let (metrics, on_scrape) = (metrics.clone(), Arc::clone(&on_scrape));
            async move {
                metrics.sample_runtime();
                on_scrape(&metrics);
                let accept = headers.get(axum::http::header::ACCEPT).and_then(|v| v.to_str().ok());
                if wants_openmetrics(accept) {
                    ([(axum::http::header::CONTENT_TYPE, OPENMETRICS_TEXT)], metrics.encode())
                } else {
                    ([(axum::http::header::CONTENT_TYPE, PROMETHEUS_TEXT)], to_prometheus_text(&metrics.encode()))
                }
            }
        }),
    );
    axum::serve(listener, app).await?;
    Ok(())
}
