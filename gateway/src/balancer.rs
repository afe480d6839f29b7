//! The compute replicas the gateway spreads requests over, and which of them may receive traffic.
//!
//! Each endpoint has one HTTP/2 channel (multiplexed: one connection carries every concurrent call) and a task
//! that watches its `grpc.health.v1` status for `offload.v1.Compute` as a stream. A replica is picked only while
//! that stream says `SERVING`: a killed process breaks the stream at once, a draining one says `NOT_SERVING`
//! before it stops accepting, and a restarted one is watched again after `--health-retry`.
//!
//! Picking is "power of two choices" over in-flight counts (the least busy of two candidates, taken round-robin),
//! which is what tower's balancer does. It is written here rather than taken from `Channel::balance_list` because
//! the gateway must retry a failed call on a *different* replica and fail fast when none is healthy; tonic's
//! balanced channel hides which replica served a call and waits (until the deadline) when none is ready.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use offload_proto::{service_names, v1::compute_client::ComputeClient};
use tokio::sync::Notify;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// HTTP/2 PING interval on upstream connections, also while idle: a replica that vanished without closing its
/// socket (node failure) is noticed within `KEEPALIVE + KEEPALIVE_TIMEOUT` even if no request is in flight.
const KEEPALIVE: Duration = Duration::from_secs(5);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// One compute replica.
#[derive(Debug)]
pub struct Upstream {
    /// As configured, for logs and error messages.
    pub url: String,
    /// The multiplexed channel calls go through.
    pub client: ComputeClient<Channel>,
    channel: Channel,
    /// Calls in flight to this replica: the load signal for picking.
    in_flight: AtomicUsize,
    /// What the replica's health stream last said.
    healthy: AtomicBool,
}

/// Marks one call in flight on an upstream until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Upstream>);

impl std::ops::Deref for InFlight {
    type Target = Upstream;
    fn deref(&self) -> &Upstream {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The set of replicas and the picking policy.
#[derive(Debug)]
pub struct Balancer {
    upstreams: Vec<Arc<Upstream>>,
    /// Round-robin cursor for the first candidate.
    next: AtomicUsize,
    /// Woken whenever a replica's health changes, so the gateway's own health can follow.
    changed: Notify,
}

/// Settings for the upstream channels.
#[derive(Debug, Clone, Copy)]
pub struct ChannelSettings {
    pub connect_timeout: Duration,
    pub max_message_bytes: usize,
}

impl Balancer {
    /// Channels (connected lazily) to every URL. Nothing is healthy until its health stream says so.
    pub fn new(urls: &[String], settings: ChannelSettings) -> Result<Arc<Self>, tonic::transport::Error> {
        let upstreams = urls
            .iter()
            .map(|url| {
                let channel = Endpoint::from_shared(url.clone())?
                    .connect_timeout(settings.connect_timeout)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(KEEPALIVE)
                    .keep_alive_timeout(KEEPALIVE_TIMEOUT)
                    .keep_alive_while_idle(true)
                    .connect_lazy();
                let client = ComputeClient::new(channel.clone())
                    .max_decoding_message_size(settings.max_message_bytes)
                    .max_encoding_message_size(settings.max_message_bytes);
                Ok(Arc::new(Upstream {
                    url: url.clone(),
                    client,
                    channel,
                    in_flight: AtomicUsize::new(0),
                    healthy: AtomicBool::new(false),
                }))
            })
            .collect::<Result<Vec<_>, tonic::transport::Error>>()?;
        Ok(Arc::new(Self { upstreams, next: AtomicUsize::new(0), changed: Notify::new() }))
    }

    /// Replicas configured.
    pub fn len(&self) -> usize {
        self.upstreams.len()
    }

    /// Whether no replica is configured.
    pub fn is_empty(&self) -> bool {
        self.upstreams.is_empty()
    }

    /// Replicas currently healthy.
    pub fn healthy(&self) -> usize {
        self.upstreams.iter().filter(|u| u.healthy.load(Ordering::Relaxed)).count()
    }

    /// Resolves after the next health change of any replica.
    pub async fn health_changed(&self) {
        self.changed.notified().await;
    }

    /// The less busy of two healthy candidates, skipping `exclude` (the replica a failed attempt used).
    pub fn pick(&self, exclude: Option<&str>) -> Option<InFlight> {
        let n = self.upstreams.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut candidates = (0..n)
            .map(|i| &self.upstreams[(start + i) % n])
            .filter(|u| u.healthy.load(Ordering::Relaxed) && Some(u.url.as_str()) != exclude);
        let first = candidates.next()?;
        let chosen = match candidates.next() {
            Some(second) if second.in_flight.load(Ordering::Relaxed) < first.in_flight.load(Ordering::Relaxed) => {
                second
            }
            _ => first,
        };
        chosen.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(InFlight(Arc::clone(chosen)))
    }

    /// Starts one health-watching task per replica. They run until the runtime stops.
    pub fn spawn_health_watchers(self: &Arc<Self>, retry: Duration) {
        for upstream in &self.upstreams {
            let balancer = Arc::clone(self);
            let upstream = Arc::clone(upstream);
            tokio::spawn(async move { balancer.watch(&upstream, retry).await });
        }
    }

    async fn watch(&self, upstream: &Upstream, retry: Duration) {
        let mut health = HealthClient::new(upstream.channel.clone());
        loop {
            let request = HealthCheckRequest { service: service_names::COMPUTE.to_owned() };
            match health.watch(request).await {
                Ok(response) => {
                    let mut stream = response.into_inner();
                    loop {
                        match stream.message().await {
                            Ok(Some(update)) => self.set_health(upstream, update.status() == ServingStatus::Serving),
                            Ok(None) => break,
                            Err(status) => {
                                tracing::debug!(url = upstream.url, %status, "health stream broke");
                                break;
                            }
                        }
                    }
                }
                Err(status) => tracing::debug!(url = upstream.url, %status, "health watch failed"),
            }
            self.set_health(upstream, false);
            tokio::time::sleep(retry).await;
        }
    }

    fn set_health(&self, upstream: &Upstream, healthy: bool) {
        if upstream.healthy.swap(healthy, Ordering::Relaxed) != healthy {
            if healthy {
                tracing::info!(url = upstream.url, "compute endpoint healthy");
            } else {
                tracing::warn!(url = upstream.url, "compute endpoint unhealthy: no longer routed to");
            }
            self.changed.notify_waiters();
        }
    }
}
