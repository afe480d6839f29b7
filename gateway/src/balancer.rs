//! The compute replicas the gateway spreads requests over, and which of them may receive traffic.
//!
//! The set of endpoints comes from [`crate::discovery`] and may change at any time (pods joining and leaving). Each
//! endpoint has its HTTP/2 connections ([`crate::connection`]: one unless `--compute-connections` asks for more; each
//! multiplexed, calls taking them in turn) and a task that watches its `grpc.health.v1` status for
//! `offload.v1.Compute` as a stream on the first. A replica is picked only while that stream says `SERVING`: a killed
//! process breaks the stream at once, a draining one says `NOT_SERVING` before it stops accepting, a silent one (a
//! partition: nothing reset) breaks it when the connection's keepalive PING goes unanswered (within
//! `--compute-keepalive-interval` + `--compute-keepalive-timeout`), and a restarted one is watched again after
//! `--health-retry`.
//!
//! Picking is "power of two choices" over in-flight counts (the least busy of two candidates, taken round-robin),
//! which is what tower's balancer does. It is written here rather than taken from `Channel::balance_list` because
//! the gateway must retry a failed call on a *different* replica and fail fast when none is healthy; tonic's
//! balanced channel hides which replica served a call and waits (until the deadline) when none is ready. (The
//! gateway's synchronous client has a balancer of its own, whose connections live on its own I/O thread.)

use std::{
    collections::BTreeSet,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use offload_proto::service_names;
use tokio::{sync::Notify, task::AbortHandle};
use tonic::codec::CompressionEncoding;

use crate::{
    compute_client::{self, ComputeClient},
    connection::{ConnectSettings, Connection},
    discovery::Endpoints,
};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// One compute replica.
#[derive(Debug)]
pub struct Replica {
    /// As configured, for logs and error messages.
    pub url: String,
    /// A client per connection to the replica: `--compute-connections` of them for each shard of a
    /// `--runtime thread-per-core` gateway (shard `s` has the `s`-th run of them), calls taking their shard's in turn.
    clients: Vec<ComputeClient>,
    /// How many of `clients` each shard has (all of them when the gateway is not sharded).
    per_shard: usize,
    /// The next call's client, modulo `per_shard`.
    next_client: AtomicUsize,
    /// The connection the health stream runs on: the first, or one of its own when the gateway is sharded (a
    /// connection is driven on the runtime that opened it, and the health stream's runs on the main one).
    connection: Connection,
    /// Calls in flight to this replica: the load signal for picking.
    in_flight: AtomicUsize,
    /// What the replica's health stream last said.
    healthy: AtomicBool,
    /// The health-watching task, stopped when the endpoint leaves the set.
    watcher: std::sync::OnceLock<AbortHandle>,
}

impl Replica {
    /// The client for the next call: each of the calling shard's connections to the replica in turn.
    pub fn client(&self) -> &ComputeClient {
        // One connection per shard (the default) takes no turn: the counter is shared by every shard's thread.
        let turn = match self.per_shard {
            1 => 0,
            per_shard => self.next_client.fetch_add(1, Ordering::Relaxed) % per_shard,
        };
        let first = offload_serve::shards::current().map_or(0, |shard| shard * self.per_shard);
        &self.clients[(first + turn) % self.clients.len()]
    }
}

/// Marks one call in flight on a replica until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Replica>);

impl std::ops::Deref for InFlight {
    type Target = Replica;
    fn deref(&self) -> &Replica {
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
    /// The current endpoints, replaced by [`Endpoints::set_endpoints`]; read (cheaply) on every pick.
    replicas: RwLock<Vec<Arc<Replica>>>,
    /// Round-robin cursor for the first candidate.
    next: AtomicUsize,
    /// Woken whenever a replica's health (or the set) changes, so the gateway's own health can follow.
    changed: Arc<Notify>,
    settings: ClientSettings,
    /// Pause before re-watching a replica whose health stream broke.
    health_retry: Duration,
}

/// Settings for the replica connections and the clients on them.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// How each replica's connection is made and kept (connect timeout, keepalive, TLS).
    pub connect: ConnectSettings,
    pub max_message_bytes: usize,
    /// The compression compute may use for its replies (`--compute-compression`); none when `None`.
    pub accept_compressed: Option<CompressionEncoding>,
    /// Connections to each replica (`--compute-connections`, at least 1), for each shard.
    pub connections: usize,
    /// The gateway's shards (`--runtime thread-per-core`): each calls compute on connections of its own.
    pub shards: Option<usize>,
}

impl ClientSettings {
    /// A compute client on `connection` with these settings (both of the gateway's clients are built here).
    pub fn client(&self, connection: Connection) -> ComputeClient {
        compute_client::on(connection, self.max_message_bytes, self.accept_compressed)
    }
}

impl Balancer {
    /// A balancer with no endpoints yet (see [`Endpoints::set_endpoints`]). Nothing is healthy until its health
    /// stream says so.
    pub fn new(settings: ClientSettings, health_retry: Duration) -> Arc<Self> {
        Arc::new(Self {
            replicas: RwLock::default(),
            next: AtomicUsize::new(0),
            changed: Arc::new(Notify::new()),
            settings,
            health_retry,
        })
    }

    fn current(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Replica>>> {
        self.replicas.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Endpoints known now.
    pub fn len(&self) -> usize {
        self.current().len()
    }

    /// Whether no endpoint is known.
    pub fn is_empty(&self) -> bool {
        self.current().is_empty()
    }

    /// Endpoints currently healthy.
    pub fn healthy(&self) -> usize {
        self.current().iter().filter(|u| u.healthy.load(Ordering::Relaxed)).count()
    }

    /// Resolves after the next health change of any replica, or a change of the set, counted from this call (not
    /// from the first poll: a change between the call and the await is not missed).
    pub fn health_changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// The less busy of two healthy candidates, skipping `exclude` (the replica a failed attempt used).
    pub fn pick(&self, exclude: Option<&str>) -> Option<InFlight> {
        let replicas = self.current();
        let n = replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut candidates = (0..n)
            .map(|i| &replicas[(start + i) % n])
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

    /// A new replica for `url` (connected lazily) with its health watcher running.
    fn connect(&self, url: &str) -> Result<Arc<Replica>, String> {
        let open = || Connection::lazy(url, self.settings.connect.clone());
        let (per_shard, shards) = (self.settings.connections.max(1), self.settings.shards.unwrap_or(1).max(1));
        let connections = (0..per_shard * shards).map(|_| open()).collect::<Result<Vec<_>, String>>()?;
        let connection = match self.settings.shards {
            Some(_) => open()?,
            None => connections[0].clone(),
        };
        let clients = connections.into_iter().map(|c| self.settings.client(c)).collect();
        let replica = Arc::new(Replica {
            url: url.to_owned(),
            clients,
            per_shard,
            next_client: AtomicUsize::new(0),
            connection,
            in_flight: AtomicUsize::new(0),
            healthy: AtomicBool::new(false),
            watcher: std::sync::OnceLock::new(),
        });
        let watched = Arc::clone(&replica);
        let (changed, retry) = (Arc::clone(&self.changed), self.health_retry);
        let task = tokio::spawn(async move { watch(&watched, &changed, retry).await });
        let _ = replica.watcher.set(task.abort_handle());
        Ok(replica)
    }
}

impl Endpoints for Balancer {
    /// Adds connections (and health watchers) for new URLs and drops the ones no longer listed. Calls in flight on a
    /// removed replica finish on their connection; new calls no longer go there.
    fn set_endpoints(&self, urls: &BTreeSet<String>) {
        let mut replicas = self.replicas.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = replicas.len();
        replicas.retain(|u| {
            let keep = urls.contains(&u.url);
            if !keep {
                tracing::info!(url = u.url, "compute endpoint removed");
                if let Some(watcher) = u.watcher.get() {
                    watcher.abort();
                }
                u.healthy.store(false, Ordering::Relaxed);
            }
            keep
        });
        let removed = before != replicas.len();
        let mut added = false;
        for url in urls {
            if replicas.iter().any(|u| &u.url == url) {
                continue;
            }
            match self.connect(url) {
                Ok(replica) => {
                    tracing::info!(url, "compute endpoint added");
                    replicas.push(replica);
                    added = true;
                }
                Err(error) => tracing::warn!(url, %error, "ignoring an unusable compute endpoint"),
            }
        }
        drop(replicas);
        if removed || added {
            self.changed.notify_waiters();
        }
    }
}

/// Watches one replica's health stream for as long as it is in the set, re-watching `retry` after it breaks.
async fn watch(replica: &Replica, changed: &Notify, retry: Duration) {
    let mut health = HealthClient::new(replica.connection.clone());
    loop {
        let request = HealthCheckRequest { service: service_names::COMPUTE.to_owned() };
        match health.watch(request).await {
            Ok(response) => {
                let mut stream = response.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(update)) => set_health(replica, changed, update.status() == ServingStatus::Serving),
                        Ok(None) => break,
                        Err(status) => {
                            tracing::debug!(url = replica.url, %status, "health stream broke");
                            break;
                        }
                    }
                }
            }
            Err(status) => tracing::debug!(url = replica.url, %status, "health watch failed"),
        }
        set_health(replica, changed, false);
        tokio::time::sleep(retry).await;
    }
}

fn set_health(replica: &Replica, changed: &Notify, healthy: bool) {
    if replica.healthy.swap(healthy, Ordering::Relaxed) != healthy {
        if healthy {
            tracing::info!(url = replica.url, "compute endpoint healthy");
        } else {
            tracing::warn!(url = replica.url, "compute endpoint unhealthy: no longer routed to");
        }
        changed.notify_waiters();
    }
}
