//! The skeleton both servers are built on: everything a server is besides its own gRPC service, assembled in one
//! place so compute and the gateway start, report and stop the same way.
//!
//! A [`Skeleton`] owns the listener, the gRPC health service (`""` for liveness, one service name for
//! readiness), server reflection, the metrics with their scheduling-delay probe and admin port, the HTTP-level
//! layers every route shares (stream bounds, tracing, the stall detector), connection limits, TLS, and the drain. A server starts one, builds its own service with the skeleton's
//! [`Metrics`], logs its serving line (with [`Skeleton::local_addr`] and [`Skeleton::metrics_addr`]: launchers
//! parse `addr=` and `metrics_addr=`), and hands its service to [`Skeleton::serve`].

use std::{convert::Infallible, future::Future, net::SocketAddr, time::Duration};

use anyhow::Context;
use offload_telemetry::{
    grpc_trace::ServerTraceLayer,
    metrics::{self, Metrics},
};
use tokio::{net::TcpListener, task::AbortHandle};
use tonic::{body::Body, codegen::http, server::NamedService, transport::ServerTlsConfig};
use tonic_health::{ServingStatus, pb::health_server::HealthServer, server::HealthReporter};

use crate::{
    admin::{self, AdminServer},
    admission::Admission,
    connection, drain,
    health::{self, DrainingHealth, EndWatches},
    limits::ConnectionLimits,
    shards,
    spread::SpreadLayer,
    stall,
    stream::StreamBoundsLayer,
    transport,
};

/// What a server tells its skeleton.
#[derive(Debug)]
pub struct Settings {
    /// The process's name, in the log line that says it stopped (`offload-compute`).
    pub name: &'static str,
    /// The `server` label of every metric (`compute`).
    pub metrics_label: &'static str,
    /// The service whose health says the server can take work (`offload.v1.Compute`). It starts `NOT_SERVING`:
    /// call [`Skeleton::ready`] when it can.
    pub readiness: &'static str,
    /// `--metrics-listen`: where to serve `/metrics`, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// `--drain-timeout`: how long in-flight requests may take to finish once shutdown begins.
    pub drain_timeout: Duration,
    /// `--lame-duck`: how long the server keeps taking new calls after its health says `NOT_SERVING`. The
    /// servers' default, 100 ms, is long enough for a health update to reach watchers on the same network
    /// (sub-millisecond on loopback, a few ms across a cluster) and short enough not to matter to a shutdown.
    pub lame_duck: Duration,
    /// The server's TLS, if it serves over TLS.
    pub tls: Option<ServerTlsConfig>,
    /// `--stall-threshold`: a worker of the server's runtimes that makes no progress for this long is reported as
    /// a stall (0: off).
    pub stall_threshold: Duration,
    /// Connections, streams, windows and timeouts: what one client can make the server hold.
    pub limits: ConnectionLimits,
    /// `--runtime thread-per-core`: the connections are served on this many [`crate::shards`]; on the calling
    /// runtime when `None`.
    pub shards: Option<usize>,
}

/// A server without its own service yet (see the module docs).
#[derive(Debug)]
pub struct Skeleton {
    settings: Settings,
    listener: TcpListener,
    local_addr: SocketAddr,
    health: HealthReporter,
    health_service: HealthServer<DrainingHealth>,
    /// Ends the health `Watch` streams at the drain, or the drain would wait for every watcher.
    end_watches: EndWatches,
    metrics: Metrics,
    /// The `/metrics` port on its own thread, stopped when the skeleton is dropped (after the drain).
    admin: Option<AdminServer>,
    /// Background tasks of the server that must stop before health says `NOT_SERVING` for good.
    stop_at_drain: Vec<AbortHandle>,
    /// The shards' runtimes once they run (`--runtime thread-per-core`), for the scrapes.
    observed_shards: shards::Observed,
    /// The stall detector watching the server's runtimes; `None` when `--stall-threshold 0`.
    stalls: Option<stall::Detector>,
}

impl Skeleton {
    /// Takes `listener`, says the process is alive (`""` `SERVING`, readiness `NOT_SERVING`), starts the metrics
    /// and their admin port. At each scrape the admission gauges are read from `admission`, then `on_scrape`
    /// refreshes the server's own.
    pub async fn start(
        listener: TcpListener,
        settings: Settings,
        admission: &Admission,
        on_scrape: impl Fn(&Metrics) + Send + Sync + 'static,
    ) -> anyhow::Result<Self> {
        let local_addr = listener.local_addr().context("listener has no local address")?;
        let (health, health_service, end_watches) = health::reporter();
        health.set_service_status("", ServingStatus::Serving).await;
        health.set_service_status(settings.readiness, ServingStatus::NotServing).await;
        let metrics = Metrics::new(settings.metrics_label);
        let stalls = stall::for_server(settings.stall_threshold, settings.name, &metrics);
        let probe = metrics::spawn_schedule_probe(&metrics);
        let admission = admission.clone();
        // The admin port runs on its own runtime: scrapes read this one's metrics through its handle, or the
        // shards' (which also probe their own scheduling delay).
        let runtime = tokio::runtime::Handle::current();
        let observed_shards = shards::Observed::default();
        let observed = observed_shards.clone();
        let sharded = settings.shards.is_some();
        let routes = metrics::admin_routes(metrics.clone(), move |m| {
            probe.observe_overdue();
            observed.observe_overdue();
            if sharded {
                m.sample_runtimes(&observed.runtimes());
            } else {
                m.sample_runtimes(std::slice::from_ref(&runtime));
            }
            m.in_flight.set(admission.in_flight() as i64);
            metrics::set_counter(&m.shed, admission.shed());
            m.concurrency_limit.set(admission.limit() as i64);
            m.concurrency_ideal_latency_seconds.set(admission.ideal_latency().map_or(0.0, |d| d.as_secs_f64()));
            on_scrape(m);
        });
        let routes = {
            let stalls = stalls.clone();
            routes.route(
                "/debug/stalls",
                axum::routing::get(move || {
                    let json = stall::debug_json(stalls.as_ref()).to_string();
                    async move { ([(http::header::CONTENT_TYPE, "application/json")], json) }
                }),
            )
        };
        let admin = settings.metrics_listen.map(|addr| admin::start(addr, routes)).transpose()?;
        Ok(Self {
            settings,
            listener,
            local_addr,
            health,
            health_service,
            end_watches,
            metrics,
            admin,
            stop_at_drain: Vec::new(),
            observed_shards,
            stalls,
        })
    }

    /// Where gRPC is served (the real port when the listener was bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where `/metrics` is served, or `off`: the serving line's `metrics_addr` field.
    pub fn metrics_addr(&self) -> String {
        self.admin.as_ref().map_or("off".to_owned(), |a| a.addr.to_string())
    }

    /// The server's metrics, for its request path.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The health reporter, for a server whose readiness follows something else (the gateway's replicas).
    pub fn health(&self) -> &HealthReporter {
        &self.health
    }

    /// Says the server can take work: its readiness service `SERVING`.
    pub async fn ready(&self) {
        self.health.set_service_status(self.settings.readiness, ServingStatus::Serving).await;
    }

    /// Stops `task` when the drain begins, before health says `NOT_SERVING` (a task that sets health must not set
    /// it back).
    pub fn stop_at_drain(&mut self, task: AbortHandle) {
        self.stop_at_drain.push(task);
    }

    /// Serves `service` beside health and reflection until `shutdown` resolves, then drains (see [`drain`]).
    pub async fn serve<S>(self, service: S, shutdown: impl Future<Output = ()>) -> anyhow::Result<()>
    where
        S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let Self {
            settings,
            listener,
            health,
            health_service,
            end_watches,
            metrics,
            admin,
            stop_at_drain,
            observed_shards,
            stalls,
            ..
        } = self;
        let (reflection, reflection_alpha) =
            transport::reflection(S::NAME).context("cannot build server reflection")?;
        let placement = settings.shards.map(shards::Placement::new);
        // The layers every route shares, outermost first.
        let layers = tower::ServiceBuilder::new()
            // The stream's arrival (deadlines count from it), its request's read timeout, and its reply's hold on
            // the admission slot and send timeout: outermost, so the arrival is stamped before anything runs.
            .layer(StreamBoundsLayer::new(settings.limits.request_read_timeout, settings.limits.send_timeout))
            // With shards, a call runs on a less busy shard when its connection's own is clearly busier, so one
            // connection can use every core; below the arrival stamp, which stays on the connection's shard.
            .layer(SpreadLayer::new(placement.clone(), metrics.shard_calls_moved.clone()))
            // A server span per call, continuing the caller's W3C trace context; shed calls are traced too.
            .layer(ServerTraceLayer)
            // Stalls: each poll of a handler marked with its call, inside the span so a stall's stack lands on its
            // call's trace.
            .layer(stall::layer(stalls.as_ref()));
        let mut server = transport::server(&settings.limits);
        if let Some(tls) = settings.tls {
            server = server.tls_config(tls).context("invalid TLS configuration")?;
        }
        let router = server
            .layer(layers)
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_alpha)
            .add_service(service);
        let (max_connections, preface_timeout) = (settings.limits.max_connections, settings.limits.preface_timeout);
        let sharding = settings.shards.zip(placement).map(|(count, placement)| shards::ShardSettings {
            shards: count,
            name: settings.metrics_label,
            preface_timeout,
            metrics,
            observed: observed_shards,
            stalls: stall::process().map(|p| p.detector.clone()),
            placement,
        });
        let serve = move |stop: drain::StopAccepting| async move {
            match sharding {
                None => {
                    let incoming = connection::incoming(listener, max_connections, preface_timeout);
                    router.serve_with_incoming_shutdown(incoming, stop).await?;
                }
                Some(sharding) => {
                    let accepted = connection::accepted(listener, max_connections);
                    let serve_shard = move |incoming, stop| router.clone().serve_with_incoming_shutdown(incoming, stop);
                    shards::serve(serve_shard, accepted, sharding, stop).await?;
                }
            }
            Ok(())
        };
        let readiness = settings.readiness;
        let drained = drain::serve_until(
            serve,
            shutdown,
            settings.drain_timeout,
            settings.lame_duck,
            // Health first, so balancers stop routing here before connections are refused.
            async {
                for task in &stop_at_drain {
                    task.abort();
                }
                health.set_service_status(readiness, ServingStatus::NotServing).await;
                health.set_service_status("", ServingStatus::NotServing).await;
                // Watchers got NOT_SERVING; their streams now end, or the drain would wait for them.
                end_watches.now();
            },
        )
        .await?;
        drop(admin);
        tracing::info!(?drained, "{} stopped", settings.name);
        Ok(())
    }
}
