//! Prometheus metrics for both servers, and the routes of the admin HTTP port that serves them (`--metrics-listen`).
//!
//! The heart of it is [`spawn_schedule_probe`]: a tiny task that asks to wake every few milliseconds and records how
//! late it actually ran. On a healthy runtime that is well under a millisecond; when handlers block the workers
//! (`INLINE`) it grows to the length of a job. It turns "the runtime feels stuck" into a histogram.
//!
//! Everything is registered once in [`Metrics::new`]; values that live elsewhere (in-flight requests, queue depths,
//! tokio's own runtime metrics) are read at scrape time by the server's `on_scrape` hook, so the hot path pays only
//! for the request counters it updates, which [`RequestMetricsLayer`] (in each server's request path) updates.
//!
//! Names follow Prometheus's conventions (docs/metrics.md lists them): base units in the name (`_seconds`,
//! `_bytes`), counters for what only grows (exposed with `_total`, so `rate()` applies), `offload_build_info` set to
//! 1 with the version as a label, and the standard `process_*` metrics ([`process`]).

use std::{
    sync::{Arc, Mutex, atomic::AtomicU64},
    time::{Duration, Instant},
};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

mod admin;
mod process;
mod request;
mod text_format;

pub use self::admin::admin_routes;
pub use self::request::{Labels, RequestMetrics, RequestMetricsLayer};
/// The counter type of [`Metrics`]' counters, for code that counts into one.
pub use prometheus_client::metrics::counter::Counter;

/// How often the scheduling-delay probe asks to wake: often enough to catch stalls of a few milliseconds, rarely
/// enough to cost nothing (200 wake-ups a second).
pub const SCHEDULE_PROBE_INTERVAL: Duration = Duration::from_millis(5);

/// Labels of a request metric. Every value is one of a fixed set of names, so they are borrowed for the life of
/// the process: counting a call allocates nothing.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `Factorial` or `SumOfSquares`.
    pub method: &'static str,
    /// The execution mode (compute) or upstream-wait style (gateway) actually used, lower-case.
    pub mode: &'static str,
    /// The gRPC status code name (`OK`, `DEADLINE_EXCEEDED`, …).
    pub code: &'static str,
}

/// The metrics of one server.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Tells this server's metrics from another's in the request series' per-thread cache (tests run several).
    id: u64,
    /// Requests handled, by method, mode and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency in seconds (handler entry to reply), by method, mode and status.
    pub request_duration_seconds: Family<RequestLabels, Histogram>,
    /// Requests in flight (admitted, their reply not yet sent).
    pub in_flight: Gauge,
    /// Requests refused at admission with RESOURCE_EXHAUSTED since start: a counter whose value is copied from the
    /// admission's own at each scrape ([`set_counter`]).
    pub shed: Counter,
    /// Calls run on another shard than their connection's, because it was clearly busier (`--runtime
    /// thread-per-core` only): how often one connection needed more than its own core.
    pub shard_calls_moved: Counter,
    /// Requests allowed in flight now: `--max-inflight`, or the adaptive limit's current value.
    pub concurrency_limit: Gauge,
    /// The ideal latency an adaptive limit measured (one call in flight), in seconds; 0 until measured or when
    /// the limit is fixed.
    pub concurrency_ideal_latency_seconds: Gauge<f64, AtomicU64>,
    /// Jobs waiting in the rayon pool's queue (compute only).
    pub rayon_queue_depth: Gauge,
    /// Compute endpoints the gateway knows now, from `--compute` or DNS (gateway only; 0 on compute).
    pub compute_endpoints: Gauge,
    /// Of those, the ones whose health check says SERVING: what the gateway routes to (gateway only).
    pub compute_endpoints_healthy: Gauge,
    /// How late the scheduling-delay probe woke, in seconds.
    pub schedule_delay_seconds: Histogram,
    /// tokio: worker threads.
    pub runtime_workers: Gauge,
    /// tokio: tasks alive.
    pub runtime_alive_tasks: Gauge,
    /// tokio: tasks in the global (injection) queue.
    pub runtime_global_queue_depth: Gauge,
    /// tokio: per-worker busy time since start, in seconds (a counter copied from tokio at each scrape; its rate is
    /// the busy ratio).
    pub runtime_worker_busy_seconds: Family<WorkerLabel, Counter<f64, AtomicU64>>,
    /// Blocking-pool jobs in flight (compute's `SPAWN_BLOCKING` jobs).
    pub blocking_in_flight: Gauge,
    /// Stalls: a runtime worker that made no progress for `--stall-threshold`, by the call whose poll held it
    /// (method and mode), and the cause.
    pub runtime_stalls: Family<StallLabels, Counter>,
    /// How long each of those polls held its worker thread, in seconds.
    pub runtime_stall_seconds: Family<StallLabels, Histogram>,
}

/// Labels of a stall metric: the call whose poll held its worker thread.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StallLabels {
    /// `Factorial` or `SumOfSquares`, as in [`RequestLabels`].
    pub method: String,
    /// The execution mode (compute) or upstream-wait style (gateway) the call used, lower-case; `unknown` if the
    /// stall came before the server knew it (or, with method `none`, for a task of no call).
    pub mode: String,
    /// Why the stuck thread was stuck: `cpu`, `syscall`, `lock`, `descheduled` or `unknown`.
    pub cause: String,
}

/// The labels of `offload_build_info`: what was built, for joining with other metrics (`* on(instance)
/// group_left(version)`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// The crate version (the workspace's, shared by every offload crate).
    pub version: String,
    /// The target's CPU architecture and OS, as Rust names them (`x86_64`, `linux`).
    pub arch: String,
    pub os: String,
}

/// A tokio worker's index.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabel {
    pub worker: String,
}

/// Request latency buckets, seconds: 50 µs to ~100 s, doubling.
fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(50e-6, 2.0, 22)
}

/// Stall-length buckets, seconds: 1 ms (below any useful threshold) to ~65 s (past the longest job), doubling.
fn stall_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(1e-3, 2.0, 17)
}

/// Scheduling-delay buckets, seconds: 25 µs to ~3.3 s, doubling.
fn delay_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(25e-6, 2.0, 18)
}

impl Metrics {
    /// Registers every metric under the `offload_` prefix, labelled with `server` (`compute` or `gateway`), and the
    /// standard `process_*` metrics beside them.
    pub fn new(server: &str) -> Self {
        let mut root = Registry::default();
        root.register_collector(Box::new(process::ProcessCollector));
        let registry = root.sub_registry_with_prefix("offload").sub_registry_with_label((
            std::borrow::Cow::Borrowed("server"),
            std::borrow::Cow::Owned(server.to_owned()),
        ));
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                arch: std::env::consts::ARCH.to_owned(),
                os: std::env::consts::OS.to_owned(),
            })
            .set(1);
        // A gauge, as client_golang's `go_build_info`: Prometheus's text format (which promtool checks) has no
        // `info` type.
        registry.register("build_info", "The version this server was built from, always 1", build_info);
        let mut metrics = Self {
            requests: Family::default(),
            request_duration_seconds: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            in_flight: Gauge::default(),
            shed: Counter::default(),
            shard_calls_moved: Counter::default(),
            concurrency_limit: Gauge::default(),
            concurrency_ideal_latency_seconds: Gauge::default(),
            rayon_queue_depth: Gauge::default(),
            compute_endpoints: Gauge::default(),
            compute_endpoints_healthy: Gauge::default(),
            schedule_delay_seconds: Histogram::new(delay_buckets()),
            runtime_workers: Gauge::default(),
            runtime_alive_tasks: Gauge::default(),
            runtime_global_queue_depth: Gauge::default(),
            runtime_worker_busy_seconds: Family::default(),
            blocking_in_flight: Gauge::default(),
            runtime_stalls: Family::default(),
            runtime_stall_seconds: Family::new_with_constructor(|| Histogram::new(stall_buckets())),
            // Replaced below, once every metric above is registered in it.
            registry: Arc::default(),
            id: {
                static NEXT: AtomicU64 = AtomicU64::new(0);
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
        };
        registry.register("requests", "Requests handled, by method, mode and gRPC status", metrics.requests.clone());
        registry.register(
            "request_duration_seconds",
            "Request latency in seconds, by method, mode and gRPC status",
            metrics.request_duration_seconds.clone(),
        );
        registry.register("in_flight", "Requests admitted whose reply is not yet sent", metrics.in_flight.clone());
        registry.register("shed", "Requests refused with RESOURCE_EXHAUSTED since start", metrics.shed.clone());
        registry.register(
            "shard_calls_moved",
            "Calls run on a less busy shard than their connection's (--runtime thread-per-core)",
            metrics.shard_calls_moved.clone(),
        );
        registry.register(
            "concurrency_limit",
            "Requests allowed in flight now (--max-inflight, or the adaptive limit)",
            metrics.concurrency_limit.clone(),
        );
        registry.register(
            "concurrency_ideal_latency_seconds",
            "The ideal latency the adaptive limit compares with (0: not measured, or the limit is fixed)",
            metrics.concurrency_ideal_latency_seconds.clone(),
        );
        registry.register("rayon_queue_depth", "Jobs waiting for a rayon thread", metrics.rayon_queue_depth.clone());
        registry.register(
            "compute_endpoints",
            "Compute endpoints the gateway knows (gateway only)",
            metrics.compute_endpoints.clone(),
        );
        registry.register(
            "compute_endpoints_healthy",
            "Compute endpoints the gateway knows whose health check says SERVING (gateway only)",
            metrics.compute_endpoints_healthy.clone(),
        );
        registry.register(
            "runtime_schedule_delay_seconds",
            "How late a task asking to wake every 5 ms actually ran: the runtime's responsiveness",
            metrics.schedule_delay_seconds.clone(),
        );
        registry.register("runtime_workers", "tokio worker threads", metrics.runtime_workers.clone());
        registry.register("runtime_alive_tasks", "tokio tasks alive", metrics.runtime_alive_tasks.clone());
        registry.register(
            "runtime_global_queue_depth",
            "tokio tasks waiting in the global queue",
            metrics.runtime_global_queue_depth.clone(),
        );
        registry.register(
            "runtime_worker_busy_seconds",
            "Seconds each tokio worker has been busy since start (its rate is the worker's busy ratio)",
            metrics.runtime_worker_busy_seconds.clone(),
        );
        registry.register(
            "blocking_in_flight",
            "Jobs running or queued on tokio's blocking pool",
            metrics.blocking_in_flight.clone(),
        );
        registry.register(
            "runtime_stalls",
            "Stalls: a tokio worker that made no progress past --stall-threshold, by the call behind it (method, mode) and cause",
            metrics.runtime_stalls.clone(),
        );
        registry.register(
            "runtime_stall_seconds",
            "How long each stall held its tokio worker, in seconds, by method, mode and cause",
            metrics.runtime_stall_seconds.clone(),
        );
        metrics.registry = Arc::new(root);
        metrics
    }

    /// Counts one finished request.
    pub fn observe_request(&self, method: &'static str, mode: &'static str, code: tonic::Code, elapsed: Duration) {
        request::with_series(self, RequestLabels { method, mode, code: code_name(code) }, |(requests, duration)| {
            requests.inc();
            duration.observe(elapsed.as_secs_f64());
        });
    }

    /// Counts one stall of a `method` call in `mode` (`none`/`unknown` for a task of no call) that held its worker
    /// for `length`, stuck for `cause`.
    pub fn observe_stall(&self, method: &str, mode: &str, cause: &str, length: Duration) {
        let labels = StallLabels { method: method.to_owned(), mode: mode.to_owned(), cause: cause.to_owned() };
        self.runtime_stalls.get_or_create(&labels).inc();
        self.runtime_stall_seconds.get_or_create(&labels).observe(length.as_secs_f64());
    }

    /// Reads tokio's runtime metrics from the runtimes serving calls (the server's, or its shards', not the admin
    /// port's) into the gauges: their workers numbered in turn, the tasks and queues summed.
    pub fn sample_runtimes(&self, runtimes: &[tokio::runtime::Handle]) {
        let (mut workers, mut alive, mut queued) = (0, 0, 0);
        for runtime in runtimes {
            let m = runtime.metrics();
            #[cfg(target_has_atomic = "64")]
            for worker in 0..m.num_workers() {
                let busy = m.worker_total_busy_duration(worker).as_secs_f64();
                let label = WorkerLabel { worker: (workers + worker).to_string() };
                set_counter_f64(&self.runtime_worker_busy_seconds.get_or_create(&label), busy);
            }
            workers += m.num_workers();
            alive += m.num_alive_tasks();
            queued += m.global_queue_depth();
        }
        self.runtime_workers.set(workers as i64);
        self.runtime_alive_tasks.set(alive as i64);
        self.runtime_global_queue_depth.set(queued as i64);
    }

    /// The exposition text in OpenMetrics (which Prometheus asks for; the admin port rewrites it for other scrapers).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Sets a counter kept elsewhere (the admission's refusals) to its current value at scrape time. The source only
/// grows, so the exposed series is a true counter; prometheus-client's `inner()` is the documented way to do this.
pub fn set_counter(counter: &Counter, value: u64) {
    counter.inner().store(value, std::sync::atomic::Ordering::Relaxed);
}

/// [`set_counter`] for a counter of seconds (tokio's busy durations).
fn set_counter_f64(counter: &Counter<f64, AtomicU64>, value: f64) {
    counter.inner().store(value.to_bits(), std::sync::atomic::Ordering::Relaxed);
}

/// A gRPC status code's name as the gRPC spec writes it (`OK`, `DEADLINE_EXCEEDED`, …).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The scheduling-delay probe's progress, shared with the scrape so that a runtime blocked right now shows in
/// the histogram while the block lasts, not only once it ends (the probe itself cannot run until then).
#[derive(Debug, Clone)]
pub struct ScheduleProbe {
    histogram: Histogram,
    /// The instant up to which the probe's delay has been counted: its due time, or the last scrape that found it
    /// overdue.
    counted_until: Arc<Mutex<Instant>>,
}

impl ScheduleProbe {
    /// At scrape time: if the probe is overdue by more than two intervals (a blocked runtime, not jitter), counts
    /// the delay so far now; the probe counts only the rest when it finally runs. A block scraped in the middle is
    /// two samples whose sum is its length.
    pub fn observe_overdue(&self) {
        let now = Instant::now();
        let mut counted_until = lock(&self.counted_until);
        if now > *counted_until + 2 * SCHEDULE_PROBE_INTERVAL {
            self.histogram.observe(now.duration_since(*counted_until).as_secs_f64());
            *counted_until = now;
        }
    }
}

fn lock(counted_until: &Mutex<Instant>) -> std::sync::MutexGuard<'_, Instant> {
    counted_until.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts the scheduling-delay probe on the current runtime; it runs until the runtime stops.
pub fn spawn_schedule_probe(metrics: &Metrics) -> ScheduleProbe {
    let probe = ScheduleProbe {
        histogram: metrics.schedule_delay_seconds.clone(),
        counted_until: Arc::new(Mutex::new(Instant::now())),
    };
    let running = probe.clone();
    tokio::spawn(async move {
        loop {
            let due = Instant::now() + SCHEDULE_PROBE_INTERVAL;
            *lock(&running.counted_until) = due;
            tokio::time::sleep_until(due.into()).await;
            let now = Instant::now();
            let from = (*lock(&running.counted_until)).max(due);
            running.histogram.observe(now.saturating_duration_since(from).as_secs_f64());
        }
    });
    probe
}
