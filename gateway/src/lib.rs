//! `offload-gateway`: the front door. Accepts the same `offload.v1` requests as compute and forwards them to a
//! balanced set of compute replicas, with deadlines, retries of these idempotent calls, and admission control.
//!
//! Layout: [`balancer`] knows the replicas and their health; [`service`] forwards; [`run`] wires them with the
//! gateway's own health (NOT_SERVING for `offload.v1.Gateway` while no replica is healthy), reflection and
//! graceful shutdown.

pub mod balancer;
pub mod blocking_client;
pub mod config;
pub mod discovery;
pub mod error;
pub mod service;

use std::{future::Future, sync::Arc};

use anyhow::Context;
use offload_proto::{service_names, v1::gateway_server::GatewayServer};
use offload_serve::{drain, transport};
use offload_telemetry::{
    grpc_trace,
    metrics::{self, Metrics},
};
use tokio::net::TcpListener;
use tonic_health::{ServingStatus, server::HealthReporter};

pub use crate::config::Config;
use crate::{
    balancer::{Balancer, ChannelSettings},
    blocking_client::BlockingComputeClient,
    discovery::{Discovery, Endpoints, Resolve, SystemResolver},
    service::GatewayService,
};

/// Largest request accepted, in bytes: requests are a few varints.
const MAX_REQUEST_BYTES: usize = 4 * 1024;

/// Everything `main` does after parsing: the runtime the configuration asks for, `--listen`, serve until
/// SIGTERM/SIGINT and drain. Also used by `offload-bench` to run this server as a child process.
pub fn serve_blocking(config: Config) -> anyhow::Result<()> {
    let (flavor, workers, listen) = (config.runtime, config.workers, config.listen);
    offload_serve::runtime::serve_process(flavor, workers, "offload-gateway", listen, |listener, shutdown| {
        run(listener, config, shutdown)
    })
}

/// Serves the gateway on `listener` until `shutdown` resolves, then drains. `dns:///` targets are resolved by the
/// system resolver.
pub async fn run(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    run_with_resolver(listener, config, Arc::new(SystemResolver), shutdown).await
}

/// [`run`] with the resolver for `dns:///` targets given (tests add and remove replicas through their own).
pub async fn run_with_resolver(
    listener: TcpListener,
    config: Config,
    resolver: Arc<dyn Resolve>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    config.validate().map_err(anyhow::Error::msg).context("invalid configuration")?;
    let local_addr = listener.local_addr().context("listener has no local address")?;
    let tls = config.compute_tls()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let settings =
        ChannelSettings { connect_timeout: config.connect_timeout, max_message_bytes: config.max_message_bytes, tls };
    let balancer = Balancer::new(settings.clone(), config.health_retry);
    let sync_client = Arc::new(BlockingComputeClient::new(settings).context("cannot start the synchronous client")?);
    let targets = config.targets().map_err(anyhow::Error::msg)?;
    let consumers: Vec<Arc<dyn Endpoints>> = vec![balancer.clone(), sync_client.clone()];
    Discovery::new(targets, resolver, scheme).start(config.dns_refresh, consumers).await;

    let (health, health_service, end_watches) = offload_serve::health::reporter();
    // "" says the process is alive (liveness); offload.v1.Gateway says it can serve (readiness).
    health.set_service_status("", ServingStatus::Serving).await;
    health.set_service_status(service_names::GATEWAY, ServingStatus::NotServing).await;
    let follower = tokio::spawn(follow_upstream_health(Arc::clone(&balancer), health.clone()));

    let (reflection, reflection_alpha) = transport::reflection().context("cannot build server reflection")?;
    let metrics = Metrics::new("gateway");
    metrics::spawn_schedule_probe(&metrics);
    let admission = config.admission();
    let admin = {
        let admission = admission.clone();
        metrics::start_admin(config.metrics_listen, &metrics, move |m| {
            m.in_flight.set(admission.in_flight() as i64);
            m.shed.set(admission.shed());
            m.concurrency_limit.set(admission.limit() as i64);
            m.concurrency_ideal_latency_seconds.set(admission.ideal_latency().map_or(0.0, |d| d.as_secs_f64()));
        })
        .await?
    };
    let gateway = GatewayServer::new(GatewayService::new(service::Parts {
        balancer: Arc::clone(&balancer),
        default_timeout: config.default_timeout,
        sync_client,
        default_wait: config.default_upstream_wait.into(),
        admission,
        metrics,
    }))
    .max_decoding_message_size(MAX_REQUEST_BYTES)
    .max_encoding_message_size(config.max_message_bytes);
    // The layer stack, outermost first.
    let layers = tower::ServiceBuilder::new()
        // A server span per call, continuing the caller's W3C trace context; shed calls are traced too.
        .layer(grpc_trace::ServerTraceLayer);
    let router = transport::server()
        .layer(layers)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(gateway);
    tracing::info!(
        addr = %local_addr,
        compute = ?config.compute,
        runtime = ?config.runtime,
        max_inflight = config.max_inflight,
        adaptive_concurrency = config.adaptive_concurrency,
        metrics_addr = admin.as_ref().map_or("off".to_owned(), |a| a.addr.to_string()),
        "offload-gateway serving"
    );

    let incoming = transport::incoming(listener);
    let drained = drain::serve_until(
        move |stop| router.serve_with_incoming_shutdown(incoming, stop),
        shutdown,
        config.drain_timeout,
        async {
            follower.abort();
            health.set_service_status(service_names::GATEWAY, ServingStatus::NotServing).await;
            health.set_service_status("", ServingStatus::NotServing).await;
            // Watchers got NOT_SERVING; their streams now end, or the drain would wait for them.
            end_watches.now();
        },
    )
    .await?;
    drop(admin);
    tracing::info!(?drained, "offload-gateway stopped");
    Ok(())
}

/// Keeps `offload.v1.Gateway`'s health in step with the replicas: SERVING while at least one is healthy.
async fn follow_upstream_health(balancer: Arc<Balancer>, health: HealthReporter) {
    let mut serving = false;
    loop {
        let changed = balancer.health_changed();
        let now_serving = balancer.healthy() > 0;
        if now_serving != serving {
            serving = now_serving;
            let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
            tracing::info!(healthy = balancer.healthy(), of = balancer.len(), ?status, "gateway readiness changed");
            health.set_service_status(service_names::GATEWAY, status).await;
        }
        changed.await;
    }
}
