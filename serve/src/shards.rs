//! `--runtime thread-per-core`: the gRPC port's connections spread over `--workers` threads, each running a
//! current-thread tokio runtime of its own, so that nothing on a call's path crosses threads.
//!
//! On tokio's multi-thread runtime a call hands off between tasks that may sit on different workers: the stream's
//! task, its server connection's task, and (in the gateway) the task of the connection to compute. Each hand-off to
//! a parked worker is a futex wake-up, and the state they share moves between cores' caches. A current-thread
//! runtime has none of that (measured: the gateway's CPU per call fell by a quarter), but it is one thread. This is
//! the model Envoy's workers and Linkerd's proxy use instead: the accept loop hands each new connection to one
//! shard in turn, and that shard serves it to the end; a server that keeps connections of its own (the gateway's
//! to compute) keeps one per shard, found with [`current`].
//!
//! A shard may also run calls of another shard's connections ([`crate::spread`]): [`Placement`] says which runtime
//! each shard has and how many calls run on it, and at the drain a shard's runtime lasts until every shard has
//! served its last connection, so no call it runs for another shard is cut short.
//!
//! The accept loop, health, the admin port and the drain stay on the process's main runtime (a current-thread one
//! in this mode). Stopping: [`serve`] stops handing out connections when told, tells every shard to stop accepting
//! and drain (tonic's graceful shutdown on each), and returns once all have; dropped before that (the drain's grace
//! expired), it makes every shard stop at once.

use std::{
    cell::Cell,
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use offload_telemetry::metrics::{self, Metrics, ScheduleProbe};
use tokio::{
    runtime::Handle,
    sync::{Notify, mpsc, watch},
};
use tokio_stream::{Stream, StreamExt};

use crate::{
    connection::{Accepted, Detached, Guarded},
    drain::{RUNTIME_SHUTDOWN, ServeError, StopAccepting},
};

/// The shards' runtimes and their scheduling-delay probes, for the metrics read at each scrape: a server's runtime
/// gauges and `offload_runtime_schedule_delay_seconds` describe the runtimes that serve its calls.
#[derive(Debug, Clone, Default)]
pub struct Observed(Arc<Mutex<Vec<(Handle, ScheduleProbe)>>>);

impl Observed {
    /// The runtimes of the shards started so far.
    pub fn runtimes(&self) -> Vec<Handle> {
        self.lock().iter().map(|(runtime, _)| runtime.clone()).collect()
    }

    /// [`ScheduleProbe::observe_overdue`] for each shard.
    pub fn observe_overdue(&self) {
        for (_, probe) in self.lock().iter() {
            probe.observe_overdue();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Handle, ScheduleProbe)>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Each shard's runtime and the calls running on it: where [`crate::spread`] places a call, and what a shard waits
/// for before its runtime stops.
#[derive(Debug, Clone)]
pub struct Placement(Arc<Slots>);

#[derive(Debug, Default)]
struct Slot {
    /// Set once the shard's runtime runs.
    runtime: OnceLock<Handle>,
    /// Calls running on the shard, its own connections' and other shards' alike.
    running: AtomicUsize,
}

impl Placement {
    /// For `shards` shards, none running yet.
    pub fn new(shards: usize) -> Self {
        let slots = (0..shards.max(1)).map(|_| Slot::default()).collect();
        Self(Arc::new(Slots { slots, serving: AtomicUsize::new(shards.max(1)), all_served: Notify::new() }))
    }

    /// How many shards.
    pub fn shards(&self) -> usize {
        self.0.slots.len()
    }

    /// Calls running on `shard` now.
    pub fn running(&self, shard: usize) -> usize {
        self.0.slots[shard].running.load(Ordering::Relaxed)
    }

    /// `shard`'s runtime, once it runs.
    pub fn runtime(&self, shard: usize) -> Option<&Handle> {
        self.0.slots[shard].runtime.get()
    }

    /// Counts a call as running on `shard` until the guard is dropped.
    pub fn enter(&self, shard: usize) -> Running {
        self.0.slots[shard].running.fetch_add(1, Ordering::Relaxed);
        Running { placement: self.clone(), shard }
    }

    /// Says one shard has served its last connection, and waits until every shard has: only then has every call
    /// ended, this shard's guests from other shards' connections included.
    async fn served(&self) {
        let all_served = self.0.all_served.notified();
        if self.0.serving.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.all_served.notify_waiters();
            return;
        }
        all_served.await;
    }
}

#[derive(Debug)]
struct Slots {
    slots: Box<[Slot]>,
    /// Shards still serving connections.
    serving: AtomicUsize,
    all_served: Notify,
}

/// A call counted as running on a shard (see [`Placement::enter`]).
#[derive(Debug)]
pub struct Running {
    placement: Placement,
    shard: usize,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.placement.0.slots[self.shard].running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How a sharded server's shards are set up.
#[derive(Debug, Clone)]
pub struct ShardSettings {
    /// How many (`--workers`).
    pub shards: usize,
    /// Their threads are `{name}-shard-{i}`.
    pub name: &'static str,
    /// `--preface-timeout`, started on the shard.
    pub preface_timeout: Duration,
    /// Each shard runs a scheduling-delay probe into these metrics, and registers it and its runtime here.
    pub metrics: Metrics,
    pub observed: Observed,
    /// The process's stall detector, which watches each shard's runtime too.
    pub stalls: Option<crate::stall::Detector>,
    /// Where each shard's runtime is, for calls spread over the shards; sized for `shards`.
    pub placement: Placement,
}

thread_local! {
    static SHARD: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The shard the calling thread serves (`0..workers`), or `None` outside a shard (any other runtime, any other
/// thread). Stable for a thread's life: what keeps a per-shard resource on its shard.
pub fn current() -> Option<usize> {
    SHARD.with(Cell::get)
}

/// What a shard serves with: given the shard's connections and the future that says to stop accepting, tonic's
/// `serve_with_incoming_shutdown` on a clone of the server's router. Called on the shard's own thread.
pub trait ServeShard: Fn(Incoming, StopAccepting) -> Self::Served + Clone + Send + 'static {
    type Served: Future<Output = Result<(), tonic::transport::Error>>;
}

impl<F, Fut> ServeShard for F
where
    F: Fn(Incoming, StopAccepting) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), tonic::transport::Error>>,
{
    type Served = Fut;
}

/// Serves the connections of `accepted` over `settings.shards` threads with `serve_shard`, until `stop` resolves;
/// then drains every shard (see the module docs).
pub async fn serve(
    serve_shard: impl ServeShard,
    accepted: impl Stream<Item = io::Result<Accepted>>,
    settings: ShardSettings,
    stop: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let shards = settings.shards.max(1);
    assert_eq!(settings.placement.shards(), shards, "the placement is sized for the shards");
    let (stop_tx, stop_rx) = watch::channel(false);
    // Dropped with this future: a shard whose sender is gone stops at once (the grace expired).
    let (abandon_tx, abandon_rx) = watch::channel(());
    // Each shard's end, reported by its thread however it ends (a panic included).
    let (ended_tx, mut ended) = mpsc::unbounded_channel::<(usize, Result<(), ServeError>)>();
    let mut hand_to = Vec::with_capacity(shards);
    for shard in 0..shards {
        let (tx, rx) = mpsc::unbounded_channel::<Detached>();
        let (serve_shard, stop, abandon) = (serve_shard.clone(), stop_rx.clone(), abandon_rx.clone());
        let incoming = Incoming { handed: rx, preface_timeout: settings.preface_timeout };
        let observed = (settings.metrics.clone(), settings.observed.clone());
        let stalls = settings.stalls.clone().map(|d| (d, format!("{}-shard-{shard}", settings.name)));
        let placement = settings.placement.clone();
        let report = Report { shard, to: ended_tx.clone(), result: None };
        std::thread::Builder::new()
            .name(format!("{}-shard-{shard}", settings.name))
            .spawn(move || {
                let mut report = report;
                report.result =
                    Some(run_shard(shard, serve_shard, incoming, observed, stalls, placement, stop, abandon));
            })
            .map_err(|e| ServeError::Shard(format!("cannot start shard {shard}: {e}")))?;
        hand_to.push(tx);
    }
    drop(ended_tx);
    tokio::pin!(accepted, stop);
    let mut next = 0;
    loop {
        tokio::select! {
            () = &mut stop => break,
            // A shard that ends before the drain has failed (it could not start its runtime, or panicked): the
            // server fails, as a server on one runtime does when its serving ends.
            Some((shard, result)) = ended.recv() => {
                result?;
                return Err(ServeError::Shard(format!("shard {shard} stopped serving before the drain")));
            }
            connection = accepted.next() => match connection {
                Some(Ok(connection)) => {
                    // Out of this runtime's reactor, into the shard's when it arrives there.
                    let Ok(connection) = connection.detach() else { continue };
                    let _ = hand_to[next].send(connection);
                    next = (next + 1) % shards;
                }
                Some(Err(error)) => tracing::debug!(%error, "accept failed"),
                None => break,
            },
        }
    }
    drop(hand_to);
    let _ = stop_tx.send(true);
    for _ in 0..shards {
        match ended.recv().await {
            Some((_, result)) => result?,
            None => break,
        }
    }
    drop(abandon_tx);
    Ok(())
}

/// Sends a shard's result when its thread ends, or that it panicked.
struct Report {
    shard: usize,
    to: mpsc::UnboundedSender<(usize, Result<(), ServeError>)>,
    result: Option<Result<(), ServeError>>,
}

impl Drop for Report {
    fn drop(&mut self) {
        let shard = self.shard;
        let result = self.result.take().unwrap_or_else(|| Err(ServeError::Shard(format!("shard {shard} panicked"))));
        let _ = self.to.send((shard, result));
    }
}

/// One shard's thread: its runtime, serving the connections handed to it until told to stop and then running
/// what it runs of other shards' calls to their end.
#[allow(clippy::too_many_arguments)]
fn run_shard(
    shard: usize,
    serve_shard: impl ServeShard,
    incoming: Incoming,
    (metrics, observed): (Metrics, Observed),
    stalls: Option<(crate::stall::Detector, String)>,
    placement: Placement,
    mut stop: watch::Receiver<bool>,
    mut abandon: watch::Receiver<()>,
) -> Result<(), ServeError> {
    SHARD.with(|s| s.set(Some(shard)));
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all();
    if let Some((detector, name)) = &stalls {
        detector.instrument(&mut builder, name);
    }
    let runtime =
        builder.build().map_err(|e| ServeError::Shard(format!("cannot start shard {shard}'s runtime: {e}")))?;
    let served = runtime.block_on(async move {
        observed.lock().push((Handle::current(), metrics::spawn_schedule_probe(&metrics)));
        let _ = placement.0.slots[shard].runtime.set(Handle::current());
        let stopped = Box::pin(async move {
            let _ = stop.wait_for(|stop| *stop).await;
        });
        let served = async {
            let served = serve_shard(incoming, stopped).await;
            // Other shards' connections may still wait for calls this shard runs for them.
            placement.served().await;
            served
        };
        tokio::select! {
            served = served => served.map_err(ServeError::from),
            // The grace expired: what is still in flight is dropped with the runtime.
            _ = abandon.changed() => Ok(()),
        }
    });
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    served
}

/// A shard's connections, each registered with the shard's reactor and guarded there.
#[derive(Debug)]
pub struct Incoming {
    handed: mpsc::UnboundedReceiver<Detached>,
    preface_timeout: Duration,
}

impl Stream for Incoming {
    type Item = io::Result<Guarded>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<Guarded>>> {
        let connection = std::task::ready!(self.handed.poll_recv(cx));
        Poll::Ready(connection.map(|connection| connection.guard(self.preface_timeout)))
    }
}
