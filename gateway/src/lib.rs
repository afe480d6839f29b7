//! `offload-gateway`: the front door. Accepts the same `offload.v1` requests as compute and forwards them to a
//! balanced set of compute replicas, with deadlines, retries of these idempotent calls, and admission control.
//!
//! Layout: [`discovery`] finds the replicas and [`balancer`] knows their health, each replica reached over HTTP/2
//! [`connection`]s of the gateway's own and called by tonic's generated client ([`compute_client`]); [`service`] is the gRPC
//! surface and its request path, whose last step, [`wait`], gets compute's reply in the requested style: through
//! [`forward`] (one replica per attempt, transport failures retried) or the [`blocking_client`]. [`method`] makes one
//! generic path serve both methods; [`upstream_status`] decides what a status from compute means, and [`error`] how
//! each failure is answered. [`run`] builds them on the skeleton every offload server shares
//! ([`offload_serve::server`]), with the gateway's own readiness: NOT_SERVING for `offload.v1.Gateway` while no
//! replica is healthy.

pub mod balancer;
pub mod blocking_client;
pub mod compute_client;
pub mod config;
pub mod connection;
pub mod discovery;
pub mod error;
pub mod forward;
pub mod method;
pub mod service;
pub mod upstream_status;
pub mod wait;

use std::{future::Future, sync::Arc};

use anyhow::Context;
use offload_proto::{service_names, v1::gateway_server::GatewayServer};
use offload_serve::{
    server::{Settings, Skeleton},
    transport,
};
use tokio::net::TcpListener;
use tonic_health::{ServingStatus, server::HealthReporter};

pub use crate::config::Config;
use crate::{
    balancer::{Balancer, ClientSettings},
    blocking_client::BlockingComputeClient,
    connection::ConnectSettings,
    discovery::{Discovery, Endpoints, Resolve, SystemResolver},
    service::GatewayService,
};

/// Largest request accepted, in bytes: requests are a few varints.
const MAX_REQUEST_BYTES: usize = 4 * 1024;

/// Everything `main` does after parsing: the runtime the configuration asks for, `--listen`, serve until
/// SIGTERM/SIGINT and drain. Also used by `offload-bench` to run this server as a child process.
pub fn serve_blocking(config: Config) -> anyhow::Result<()> {
    let (flavor, workers, listen, stall) = (config.runtime, config.workers, config.listen, config.stall_threshold);
    offload_serve::runtime::serve_process(flavor, workers, "offload-gateway", listen, stall, |listener, shutdown| {
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
    let tls = config.compute_tls()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let settings = ClientSettings {
        connect: ConnectSettings {
            connect_timeout: config.connect_timeout,
            keepalive_interval: config.compute_keepalive_interval,
            keepalive_timeout: config.compute_keepalive_timeout,
            tls,
        },
        max_message_bytes: config.max_message_bytes,
        accept_compressed: config.compute_compression.accepted(),
        connections: config.compute_connections,
        shards: config.runtime.shards(config.workers),
    };
    let balancer = Balancer::new(settings.clone(), config.health_retry);
    // The synchronous client runs on one I/O thread: one connection per replica serves it.
    let sync_settings = ClientSettings { connections: 1, shards: None, ..settings };
    let sync_client = Arc::new(
        BlockingComputeClient::new(sync_settings, config.health_retry)
            .context("cannot start the synchronous client")?,
    );
    let targets = config.targets().map_err(anyhow::Error::msg)?;
    let consumers: Vec<Arc<dyn Endpoints>> = vec![balancer.clone(), sync_client.clone()];
    Discovery::new(targets, resolver, scheme).start(config.dns_refresh, consumers).await;

    let admission = config.admission();
    let settings = Settings {
        name: "offload-gateway",
        metrics_label: "gateway",
        // "" says the process is alive (liveness); offload.v1.Gateway says it can serve (readiness).
        readiness: service_names::GATEWAY,
        metrics_listen: config.metrics_listen,
        drain_timeout: config.drain_timeout,
        lame_duck: config.lame_duck,
        tls: None,
        stall_threshold: config.stall_threshold,
        shards: config.runtime.shards(config.workers),
        limits: config.limits.clone(),
    };
    let scraped = Arc::clone(&balancer);
    let mut skeleton = Skeleton::start(listener, settings, &admission, move |m| {
        m.compute_endpoints.set(scraped.len() as i64);
        m.compute_endpoints_healthy.set(scraped.healthy() as i64);
    })
    .await?;
    let balancers = [Arc::clone(&balancer), Arc::clone(sync_client.balancer())];
    let follower = tokio::spawn(follow_replica_health(balancers, skeleton.health().clone()));
    skeleton.stop_at_drain(follower.abort_handle());
    let gateway = GatewayServer::new(GatewayService::new(service::Parts {
        balancer: Arc::clone(&balancer),
        default_timeout: config.default_timeout,
        sync_client,
        default_wait: config.default_upstream_wait,
        admission,
        metrics: skeleton.metrics().clone(),
    }))
    .max_decoding_message_size(MAX_REQUEST_BYTES)
    .max_encoding_message_size(config.max_message_bytes)
    // gzip both ways, as ghz, grpcurl and grpcio clients use it: requests may come compressed, and a reply is
    // compressed when (and only when) the client's grpc-accept-encoding names gzip.
    .accept_compressed(transport::COMPRESSION)
    .send_compressed(transport::COMPRESSION);
    tracing::info!(
        addr = %skeleton.local_addr(),
        compute = ?config.compute,
        runtime = ?config.runtime,
        max_inflight = config.max_inflight,
        adaptive_concurrency = config.adaptive_concurrency,
        stall_threshold = ?config.stall_threshold,
        drain_timeout = ?config.drain_timeout,
        metrics_addr = skeleton.metrics_addr(),
        "offload-gateway serving"
    );
    skeleton.serve(gateway, shutdown).await
}

/// Keeps `offload.v1.Gateway`'s health in step with the replicas: SERVING while each of the gateway's clients (the
/// async path's balancer and the synchronous client's) has at least one healthy replica, so a call in any wait style
/// can be served.
async fn follow_replica_health(balancers: [Arc<Balancer>; 2], health: HealthReporter) {
    let [async_path, sync_client] = balancers;
    let mut serving = false;
    loop {
        // Created before the check, so a change that lands in between is not missed.
        let (async_changed, sync_changed) = (async_path.health_changed(), sync_client.health_changed());
        let now_serving = async_path.healthy() > 0 && sync_client.healthy() > 0;
        if now_serving != serving {
            serving = now_serving;
            let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
            tracing::info!(healthy = async_path.healthy(), of = async_path.len(), ?status, "gateway readiness changed");
            health.set_service_status(service_names::GATEWAY, status).await;
        }
        tokio::select! {
            () = async_changed => {}
            () = sync_changed => {}
        }
    }
}
