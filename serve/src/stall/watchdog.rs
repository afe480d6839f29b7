//! The watchdog: an OS thread of its own (the runtime it watches may be frozen) that looks at the calls in flight
//! every half threshold and logs a `WARN` for a poll that has run past the threshold, while it still runs; and the
//! report of a stall once its poll has ended, made by the worker thread that was stalled.
//!
//! A call is registered once, through a lock-free channel that the watchdog drains on its own tick, so the request
//! path never wakes it. Each call's entry holds one atomic word: 0 between polls, else when the current poll began
//! and on which thread. The watchdog forgets a call when it holds the last reference to its entry.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use tracing::{Span, field};

use super::{Stall, StallTag, threads};

/// What a server does with each ended stall (count it).
pub(super) type Hook = Box<dyn Fn(Stall<'_>) + Send + Sync>;

/// The watchdog's tick is half the threshold, so a stall is reported within 1.5 thresholds; but no faster than
/// this, however small the threshold: a thousand wake-ups a second is already more than a stall report needs.
const MIN_TICK: Duration = Duration::from_millis(1);

/// Bits of an entry's word that hold the poll's start (microseconds since the watchdog started, plus one so that
/// 0 means "not polling"): 2^48 µs is almost nine years of uptime. The bits above hold the thread's slot.
const TIME_BITS: u32 = 48;

/// One call in flight, as the watchdog sees it.
#[derive(Debug)]
pub(crate) struct InFlight {
    /// 0 between polls; else `thread slot << TIME_BITS | (poll start in µs + 1)`.
    polling: AtomicU64,
    /// The gRPC path (`/offload.v1.Compute/SumOfSquares`): a reference to the request's own bytes, not a copy.
    path: Option<tonic::codegen::http::uri::PathAndQuery>,
    tag: StallTag,
    /// The request's span (the server span, when a tracing layer sits above): the ended stall's event goes there.
    span: Span,
    /// The request's `traceparent`, for the trace id when export is off.
    traceparent: Option<tonic::codegen::http::HeaderValue>,
}

impl InFlight {
    pub(super) fn new(
        path: Option<tonic::codegen::http::uri::PathAndQuery>,
        tag: StallTag,
        span: Span,
        traceparent: Option<tonic::codegen::http::HeaderValue>,
    ) -> Self {
        Self { polling: AtomicU64::new(0), path, tag, span, traceparent }
    }

    /// A new entry for work the call hands to another task (see [`super::in_current_call`]): the same call, with
    /// its own poll word, since the two may be polled at once on two workers.
    pub(super) fn spawned(&self) -> Self {
        Self::new(self.path.clone(), self.tag.clone(), self.span.clone(), self.traceparent.clone())
    }

    /// The gRPC path without its leading `/` (`offload.v1.Compute/SumOfSquares`).
    fn rpc(&self) -> &str {
        self.path.as_ref().map_or("", |p| p.path().trim_start_matches('/'))
    }

    /// The method's name: the path's last part.
    fn method(&self) -> &str {
        let rpc = self.rpc();
        rpc.rsplit('/').next().unwrap_or(rpc)
    }

    /// Marks a poll begun `micros` after the watchdog's epoch, on this thread.
    pub(super) fn polling_since(&self, micros: u64) {
        let word = (u64::from(threads::current()) << TIME_BITS) | ((micros + 1) & ((1 << TIME_BITS) - 1));
        self.polling.store(word, Ordering::Relaxed);
    }

    /// Marks the poll ended.
    pub(super) fn polling_ended(&self) {
        self.polling.store(0, Ordering::Relaxed);
    }

    fn trace_id(&self) -> Option<String> {
        offload_telemetry::grpc_trace::trace_id(&self.span, self.traceparent.as_ref()).map(|id| id.to_string())
    }
}

/// The watchdog of one server's request path (see the module docs).
pub(crate) struct Watchdog {
    pub(super) threshold: Duration,
    /// The zero of the entries' poll start times.
    epoch: Instant,
    register: mpsc::Sender<Arc<InFlight>>,
    on_stall: Option<Hook>,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog").field("threshold", &self.threshold).finish_non_exhaustive()
    }
}

impl Watchdog {
    /// Starts the watchdog thread; it stops once this is dropped.
    pub(super) fn start(threshold: Duration, on_stall: Option<Hook>) -> Arc<Self> {
        let (register, registered) = mpsc::channel();
        let epoch = Instant::now();
        let spawned = std::thread::Builder::new()
            .name("stall-watchdog".to_owned())
            .spawn(move || watch(&registered, threshold, epoch));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the stall watchdog: stalls are reported only once they end");
        }
        Arc::new(Self { threshold, epoch, register, on_stall })
    }

    /// Microseconds from the epoch to `at`.
    pub(super) fn micros_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_micros() as u64
    }

    /// Watches `call` until it ends.
    pub(super) fn watch(&self, call: Arc<InFlight>) {
        // Fails only if the watchdog thread is gone: then calls are reported when their stalls end.
        let _ = self.register.send(call);
    }

    /// Reports a poll of `call` that held its worker for `length`, from that worker, once the poll has ended.
    pub(super) fn ended(&self, call: &InFlight, length: Duration) {
        let (method, mode) = (call.method(), call.tag.mode());
        // Without a span (none is built per call at the default log level) the line names the trace itself.
        let trace_id = call.span.is_disabled().then(|| call.trace_id()).flatten();
        call.span.in_scope(|| {
            tracing::warn!(
                method = call.rpc(),
                mode,
                n = call.tag.n(),
                thread = threads::name(threads::current()),
                stall_ms = millis(length),
                trace_id = trace_id.map(field::display),
                "runtime stall ended: one poll of this call held its worker thread for {length:.1?}"
            );
        });
        if let Some(on_stall) = &self.on_stall {
            on_stall(Stall { method, mode, length });
        }
    }
}

/// A call the watchdog watches, and the poll it has already warned about.
struct Watched {
    call: Arc<InFlight>,
    warned: u64,
}

/// The watchdog thread's loop: until every sender is gone, take new calls, and warn once about each poll past
/// `threshold`.
fn watch(registered: &mpsc::Receiver<Arc<InFlight>>, threshold: Duration, epoch: Instant) {
    let tick = (threshold / 2).max(MIN_TICK);
    let threshold_us = threshold.as_micros() as u64;
    let mut watched: Vec<Watched> = Vec::new();
    loop {
        std::thread::sleep(tick);
        loop {
            match registered.try_recv() {
                Ok(call) => watched.push(Watched { call, warned: 0 }),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        let now_us = Instant::now().saturating_duration_since(epoch).as_micros() as u64;
        watched.retain_mut(|w| {
            if Arc::strong_count(&w.call) == 1 {
                return false;
            }
            let word = w.call.polling.load(Ordering::Relaxed);
            if word == 0 || word == w.warned {
                return true;
            }
            let started_us = (word & ((1 << TIME_BITS) - 1)) - 1;
            let so_far_us = now_us.saturating_sub(started_us);
            if so_far_us >= threshold_us {
                w.warned = word;
                warn_running(&w.call, (word >> TIME_BITS) as u16, Duration::from_micros(so_far_us), threshold);
            }
            true
        });
    }
}

/// The `WARN` of a poll still running past the threshold.
fn warn_running(call: &InFlight, thread: u16, so_far: Duration, threshold: Duration) {
    tracing::warn!(
        method = call.rpc(),
        mode = call.tag.mode(),
        n = call.tag.n(),
        thread = threads::name(thread),
        so_far_ms = millis(so_far),
        threshold_ms = millis(threshold),
        trace_id = call.trace_id().map(field::display),
        "runtime stall: a poll of this call has held its worker thread for {so_far:.1?} and is still running"
    );
}

/// `d` in milliseconds, to a tenth: what a log reader needs of a stall's length.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}
