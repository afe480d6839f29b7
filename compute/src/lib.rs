//! `offload-compute`: a gRPC server that computes exact factorials and sums of squares, running each job in the
//! execution mode the request (or the server's default) asks for, so the cost of blocking an async runtime can be
//! measured against offloading.
//!
//! Layout: [`kernel`] is the pure CPU work; [`executor`] decides which thread runs it; [`adaptive`] calibrates
//! the mode that chooses for you; [`service`] is the gRPC surface; [`run`] wires them with health, reflection
//! and graceful shutdown.

pub mod adaptive;
pub mod config;
pub mod error;
pub mod executor;
pub mod job;
pub mod kernel;
pub mod limits;
pub mod service;

use std::future::Future;

use anyhow::Context;
use offload_proto::{
    service_names,
    v1::{ExecMode, compute_server::ComputeServer},
};
use offload_serve::{admission::Admission, drain, transport};
use offload_telemetry::{
    grpc_trace,
    metrics::{self, Metrics},
};
use tokio::net::TcpListener;
use tonic_health::ServingStatus;

pub use crate::config::Config;
use crate::{adaptive::CostModel, executor::Executor, limits::Limits, service::ComputeService};

/// Largest request accepted, in bytes. Requests are two varints; anything bigger is garbage or an attack, refused
/// before it is buffered.
const MAX_REQUEST_BYTES: usize = 4 * 1024;

/// Everything `main` does after parsing: the runtime the configuration asks for, `--listen`, serve until
/// SIGTERM/SIGINT and drain. Also used by `offload-bench` to run this server as a child process.
pub fn serve_blocking(config: Config) -> anyhow::Result<()> {
    let (flavor, workers, listen) = (config.runtime, config.workers, config.listen);
    offload_serve::runtime::serve_process(flavor, workers, "offload-compute", listen, |listener, shutdown| {
        run(listener, config, shutdown)
    })
}

/// Serves the compute service on `listener` until `shutdown` resolves, then drains (see
/// [`offload_serve::drain`]). Returns once the server has stopped.
pub async fn run(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    config.validate().map_err(anyhow::Error::msg).context("invalid configuration")?;
    let local_addr = listener.local_addr().context("listener has no local address")?;
    let executor =
        Executor::with_priority(config.rayon_threads, config.rayon_priority).context("cannot start the rayon pool")?;
    let cost_model = CostModel::calibrate(&executor).await;
    tracing::info!(
        hop_us = cost_model.hop.as_secs_f64() * 1e6,
        inline_max_factorial_n = cost_model.inline_max_factorial_n,
        inline_max_sum_of_squares_n = cost_model.inline_max_sum_of_squares_n,
        simd = kernel::sum_of_squares::simd_kind(),
        "adaptive mode calibrated: jobs cheaper than the offload hop run inline"
    );
    let instance_id = config.instance_id.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "compute".to_owned());
        format!("{host}:{}", local_addr.port())
    });
    let limits = Limits {
        max_factorial_n: config.max_factorial_n,
        max_sum_of_squares_n: config.max_sum_of_squares_n,
        max_message_bytes: config.max_message_bytes as u64,
    };
    let metrics = Metrics::new("compute");
    metrics::spawn_schedule_probe(&metrics);
    let admission = Admission::new(config.max_inflight);
    let admin = {
        let (admission, executor) = (admission.clone(), executor.clone());
        metrics::start_admin(config.metrics_listen, &metrics, move |m| {
            m.in_flight.set(admission.in_flight() as i64);
            m.shed.set(admission.shed());
            m.concurrency_limit.set(admission.limit() as i64);
            m.rayon_queue_depth.set(executor.rayon_queue_depth());
            m.blocking_in_flight.set(executor.blocking_in_flight());
        })
        .await?
    };
    let service = ComputeService::new(service::Parts {
        executor: executor.clone(),
        cost_model,
        limits,
        default_mode: ExecMode::from(config.default_mode),
        instance_id: instance_id.clone(),
        panic_on_n: config.panic_on_n,
        admission,
        metrics,
    });

    let (health, health_service, end_watches) = offload_serve::health::reporter();
    health.set_service_status(service_names::COMPUTE, ServingStatus::Serving).await;
    health.set_service_status("", ServingStatus::Serving).await;
    let (reflection, reflection_alpha) = transport::reflection().context("cannot build server reflection")?;

    let compute = ComputeServer::new(service)
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .max_encoding_message_size(config.max_message_bytes);
    // The layer stack, outermost first.
    let layers = tower::ServiceBuilder::new()
        // A server span per call, continuing the caller's W3C trace context; shed calls are traced too.
        .layer(grpc_trace::ServerTraceLayer);
    let mut server = transport::server();
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        let tls = transport::server_tls(cert, key, config.tls_client_ca.as_deref())?;
        server = server.tls_config(tls).context("invalid TLS configuration")?;
    }
    let router = server
        .layer(layers)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(compute);
    tracing::info!(
        addr = %local_addr,
        instance_id,
        runtime = ?config.runtime,
        default_mode = ?config.default_mode,
        rayon_threads = executor.rayon_threads(),
        rayon_priority = ?config.rayon_priority,
        max_inflight = config.max_inflight,
        tls = match (&config.tls_cert, &config.tls_client_ca) {
            (None, _) => "off",
            (Some(_), None) => "on",
            (Some(_), Some(_)) => "mutual",
        },
        metrics_addr = admin.as_ref().map_or("off".to_owned(), |a| a.addr.to_string()),
        "offload-compute serving"
    );

    let incoming = transport::incoming(listener);
    let drained = drain::serve_until(
        move |stop| router.serve_with_incoming_shutdown(incoming, stop),
        shutdown,
        config.drain_timeout,
        // Health first, so balancers stop routing here before connections are refused.
        async {
            health.set_service_status(service_names::COMPUTE, ServingStatus::NotServing).await;
            health.set_service_status("", ServingStatus::NotServing).await;
            // Watchers got NOT_SERVING; their streams now end, or the drain would wait for them.
            end_watches.now();
        },
    )
    .await?;
    drop(admin);
    tracing::info!(?drained, "offload-compute stopped");
    Ok(())
}
