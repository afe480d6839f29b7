//! The admin port's routes (`--metrics-listen`): `GET /metrics` answers the exposition text, refreshed at each
//! scrape.
//!
//! A separate port from gRPC so a scraper needs no HTTP/2 and the metrics stay reachable while the gRPC port drains;
//! `offload-serve` serves these routes on a thread and runtime of their own, so that they answer while the server's
//! runtime is blocked.

use std::sync::Arc;

use super::{
    Metrics,
    text_format::{OPENMETRICS_TEXT, PROMETHEUS_TEXT, to_prometheus_text, wants_openmetrics},
};

/// `GET /metrics`, refreshing scrape-time values with `on_scrape` first. OpenMetrics to a scraper that asks for it
/// (Prometheus), the classic text format to anything else (`curl`, `promtool check metrics`), as client_golang's
/// handler negotiates.
pub fn admin_routes(metrics: Metrics, on_scrape: impl Fn(&Metrics) + Send + Sync + 'static) -> axum::Router {
    let on_scrape = Arc::new(on_scrape);
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let (metrics, on_scrape) = (metrics.clone(), Arc::clone(&on_scrape));
            async move {
                on_scrape(&metrics);
                let accept = headers.get(axum::http::header::ACCEPT).and_then(|v| v.to_str().ok());
                if wants_openmetrics(accept) {
                    ([(axum::http::header::CONTENT_TYPE, OPENMETRICS_TEXT)], metrics.encode())
                } else {
                    ([(axum::http::header::CONTENT_TYPE, PROMETHEUS_TEXT)], to_prometheus_text(&metrics.encode()))
                }
            }
        }),
    )
}
