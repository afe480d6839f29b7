//! `offload-compute`: a gRPC server that computes exact factorials and sums of squares, running each job in the
//! execution mode the request (or the server's default) asks for, so the cost of blocking an async runtime can be
//! measured against offloading.
//!
//! Layout: [`kernel`] is the pure CPU work and [`job`] names it; [`executor`] decides which thread runs it;
//! [`adaptive`] calibrates the mode that chooses for you; [`limits`] bounds what a request may ask; [`service`]
//! is the gRPC surface and its request path, whose last step is [`run_job`]; [`error`] is every failure and its
//! status; [`config`] the flags. [`run`] builds them on the skeleton every offload server shares
//! ([`offload_serve::server`]: health, reflection, metrics, drain).

pub mod adaptive;
pub mod config;
pub mod error;
pub mod executor;
pub mod job;
pub mod kernel;
pub mod limits;
pub mod run_job;
pub mod service;

use std::future::Future;

use anyhow::Context;
use offload_proto::{service_names, v1::compute_server::ComputeServer};
use offload_serve::{
    admission::Admission,
    server::{Settings, Skeleton},
    transport,
};
use tokio::net::TcpListener;

pub use crate::config::Config;
use crate::{adaptive::CostModel, executor::Executor, limits::Limits, service::ComputeService};

/// Largest request accepted, in bytes. Requests are two varints; anything bigger is garbage or an attack, refused
/// before it is buffered.
const MAX_REQUEST_BYTES: usize = 4 * 1024;

/// Everything `main` does after parsing: the runtime the configuration asks for, `--listen`, serve until
/// SIGTERM/SIGINT and drain. Also used by `offload-bench` to run this server as a child process.
pub fn serve_blocking(config: Config) -> anyhow::Result<()> {
    let (flavor, workers, listen, stall) = (config.runtime, config.workers, config.listen, config.stall_threshold);
    offload_serve::runtime::serve_process(flavor, workers, "offload-compute", listen, stall, |listener, shutdown| {
        run(listener, config, shutdown)
    })
}

/// Serves the compute service on `listener` until `shutdown` resolves, then drains (see
/// [`offload_serve::drain`]). Returns once the server has stopped.
pub async fn run(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    config.validate().map_err(anyhow::Error::msg).context("invalid configuration")?;
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
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(transport::server_tls(cert, key, config.tls_client_ca.as_deref())?),
        _ => None,
    };
    // A call waiting for its fair share of the slots waits at most two send timeouts (see `Admission`).
    let admission = Admission::new(config.max_inflight).waiting_at_most(config.limits.send_timeout * 2);
    let settings = Settings {
        name: "offload-compute",
        metrics_label: "compute",
        readiness: service_names::COMPUTE,
        metrics_listen: config.metrics_listen,
        drain_timeout: config.drain_timeout,
        lame_duck: config.lame_duck,
        tls,
        stall_threshold: config.stall_threshold,
        shards: config.runtime.shards(config.workers),
        limits: config.limits.clone(),
    };
    let skeleton = {
        let executor = executor.clone();
        Skeleton::start(listener, settings, &admission, move |m| {
            m.rayon_queue_depth.set(executor.rayon_queue_depth());
            m.blocking_in_flight.set(executor.blocking_in_flight());
        })
        .await?
    };
    let local_addr = skeleton.local_addr();
    let instance_id = config.instance_id(local_addr.port());
    let limits = Limits {
        max_factorial_n: config.max_factorial_n,
        max_sum_of_squares_n: config.max_sum_of_squares_n,
        max_message_bytes: config.max_message_bytes as u64,
    };
    let service = ComputeService::new(service::Parts {
        executor: executor.clone(),
        cost_model,
        limits,
        default_mode: config.default_mode,
        instance_id: instance_id.clone(),
        panic_on_n: config.panic_on_n,
        admission,
        metrics: skeleton.metrics().clone(),
    });
    let compute = ComputeServer::new(service)
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .max_encoding_message_size(config.max_message_bytes)
        // gzip both ways, as ghz, grpcurl and grpcio clients use it: requests may come compressed, and a reply is
        // compressed when (and only when) the client's grpc-accept-encoding names gzip (the gateway's does with
        // --compute-compression=gzip).
        .accept_compressed(transport::COMPRESSION)
        .send_compressed(transport::COMPRESSION);
    skeleton.ready().await;
    tracing::info!(
        addr = %local_addr,
        instance_id,
        runtime = ?config.runtime,
        default_mode = ?config.default_mode,
        rayon_threads = executor.rayon_threads(),
        rayon_priority = ?config.rayon_priority,
        max_inflight = config.max_inflight,
        stall_threshold = ?config.stall_threshold,
        drain_timeout = ?config.drain_timeout,
        tls = match (&config.tls_cert, &config.tls_client_ca) {
            (None, _) => "off",
            (Some(_), None) => "on",
            (Some(_), Some(_)) => "mutual",
        },
        metrics_addr = skeleton.metrics_addr(),
        "offload-compute serving"
    );
    skeleton.serve(compute, shutdown).await
}
