//! Who blocked the runtime: a tower layer that times every request's handler future poll by poll, and names the
//! call whose single poll held its worker thread longer than a threshold (a **stall**: meanwhile that worker ran
//! nothing else; on a current-thread runtime, the whole server did nothing else).
//!
//! A poll that blocks cannot report itself until it returns, and the runtime it blocks may be frozen, so a
//! [watchdog](watchdog) on its own OS thread looks at the calls in flight every half threshold and logs a `WARN`
//! while the stall is still going on. When the poll ends, the worker itself logs its total length as an event of the
//! request's span (so the trace shows the stall where it happened) and hands it to the layer's hook (the servers
//! count it in `offload_runtime_stalls_total` and `offload_runtime_stall_seconds`).
//!
//! The layer knows HTTP and gRPC paths only. What it cannot know (the mode a call ran in, the size it asked for)
//! the server writes, once it knows, into the call's [`StallTag`], which the layer puts into the request's
//! extensions (`tonic::Request::extensions()` in a handler); the watchdog reads it when it reports.
//!
//! Work a handler hands to `tokio::spawn` blocks a worker as surely as the handler itself would; wrapped in
//! [`in_current_call`] when it is spawned, its polls are timed and reported as the same call's.
//!
//! Cost when nothing stalls: per request, one small allocation and a lock-free channel send to register it; per
//! poll, two clock reads and two relaxed atomic stores. `docs/results.md` has the measurement.
//!
//! In front of any tonic service, in three lines:
//!
//! ```ignore
//! let stalls = offload_serve::stall::StallLayer::new(Duration::from_millis(10));
//! Server::builder().layer(stalls).add_service(my_service).serve(addr).await?;
//! // A handler may name its mode: StallTag::set_on(&request, "inline", Some(n));
//! ```
//!
//! `serve/examples/stall_detector.rs` does exactly that for a service of its own.

mod threads;
mod watchdog;

use std::{
    cell::RefCell,
    future::Future,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tonic::codegen::http;
use tracing::Span;

use self::watchdog::{InFlight, Watchdog};

/// The default `--stall-threshold`: a poll of a well-behaved handler takes microseconds; 10 ms is long enough to
/// ignore a slow allocation or a page fault and short enough to catch a job of a few milliseconds run inline.
pub const DEFAULT_THRESHOLD: Duration = Duration::from_millis(10);

/// A stall that has ended, as the layer's hook sees it.
#[derive(Debug, Clone, Copy)]
pub struct Stall<'a> {
    /// The gRPC method's name (`SumOfSquares`), the last part of the path.
    pub method: &'a str,
    /// The mode the server wrote into the call's [`StallTag`], or `unknown`.
    pub mode: &'a str,
    /// How long the poll held its worker thread.
    pub length: Duration,
}

/// What the server says about a call once it knows (see the module docs). Cheap to clone; the first
/// [`StallTag::set`] wins.
#[derive(Debug, Clone, Default)]
pub struct StallTag(Arc<OnceLock<Tagged>>);

/// A [`StallTag`]'s contents.
#[derive(Debug, Clone, Copy)]
struct Tagged {
    mode: &'static str,
    n: Option<u64>,
}

/// The mode label of a call whose server has not said (or not yet).
const UNKNOWN_MODE: &str = "unknown";

impl StallTag {
    /// Names the call's `mode` (a metric label: lower-case, from a small fixed set) and its size `n`, if it has one.
    pub fn set(&self, mode: &'static str, n: Option<u64>) {
        let _ = self.0.set(Tagged { mode, n });
    }

    /// [`StallTag::set`] on the tag the layer put into `request`'s extensions, if it did (the detector may be off).
    pub fn set_on<T>(request: &tonic::Request<T>, mode: &'static str, n: Option<u64>) {
        if let Some(tag) = request.extensions().get::<StallTag>() {
            tag.set(mode, n);
        }
    }

    fn mode(&self) -> &'static str {
        self.0.get().map_or(UNKNOWN_MODE, |t| t.mode)
    }

    fn n(&self) -> Option<u64> {
        self.0.get().and_then(|t| t.n)
    }
}

/// A tower layer that reports stalled polls of each request's handler (see the module docs). `Clone` shares one
/// watchdog.
#[derive(Clone)]
pub struct StallLayer {
    /// `None`: the detector is off (threshold 0), and the layer passes requests through untouched.
    watchdog: Option<Arc<Watchdog>>,
}

impl std::fmt::Debug for StallLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StallLayer").field("threshold", &self.watchdog.as_ref().map(|w| w.threshold)).finish()
    }
}

impl StallLayer {
    /// Reports polls longer than `threshold` in the log; `Duration::ZERO` turns the detector off. Starts the
    /// watchdog thread, which stops once every clone of the layer is gone.
    pub fn new(threshold: Duration) -> Self {
        Self::with_hook(threshold, None)
    }

    /// [`StallLayer::new`], also calling `on_stall` (on the worker thread, once the poll has ended) for each stall,
    /// to count it.
    pub fn with_on_stall(threshold: Duration, on_stall: impl Fn(Stall<'_>) + Send + Sync + 'static) -> Self {
        Self::with_hook(threshold, Some(Box::new(on_stall)))
    }

    fn with_hook(threshold: Duration, on_stall: Option<watchdog::Hook>) -> Self {
        let watchdog = (!threshold.is_zero()).then(|| Watchdog::start(threshold, on_stall));
        Self { watchdog }
    }
}

impl<S> tower::Layer<S> for StallLayer {
    type Service = StallDetector<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StallDetector { inner, watchdog: self.watchdog.clone() }
    }
}

/// The service [`StallLayer`] wraps around a server's routes.
#[derive(Debug, Clone)]
pub struct StallDetector<S> {
    inner: S,
    watchdog: Option<Arc<Watchdog>>,
}

impl<S, B> tower::Service<http::Request<B>> for StallDetector<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Timed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let Some(watchdog) = &self.watchdog else {
            return Timed { inner: self.inner.call(request), watched: None };
        };
        let tag = StallTag::default();
        request.extensions_mut().insert(tag.clone());
        let call = Arc::new(InFlight::new(
            request.uri().path_and_query().cloned(),
            tag,
            Span::current(),
            request.headers().get(offload_telemetry::grpc_trace::TRACEPARENT_HEADER).cloned(),
        ));
        watchdog.watch(Arc::clone(&call));
        Timed { inner: self.inner.call(request), watched: Some((Arc::clone(watchdog), call)) }
    }
}

thread_local! {
    /// The call whose future this thread is polling right now, if any: what [`in_current_call`] attaches to.
    static CURRENT: RefCell<Option<Watched>> = const { RefCell::new(None) };
}

/// The watchdog and a call's entry in it.
type Watched = (Arc<Watchdog>, Arc<InFlight>);

/// `future`, its polls timed as the call whose future is being polled on this thread now (a handler spawning work
/// for its request), or untimed outside any call or with the detector off:
///
/// ```ignore
/// tokio::spawn(offload_serve::stall::in_current_call(async move { run_the_job() }));
/// ```
pub fn in_current_call<F: Future>(future: F) -> Timed<F> {
    let watched = CURRENT.with(|current| {
        current.borrow().as_ref().map(|(watchdog, call)| {
            let spawned = Arc::new(call.spawned());
            watchdog.watch(Arc::clone(&spawned));
            (Arc::clone(watchdog), spawned)
        })
    });
    Timed { inner: future, watched }
}

/// Makes `watched` the thread's current call until dropped, then puts back the one before (polls nest when a
/// timed future polls another in place).
struct CurrentCall(Option<Watched>);

impl CurrentCall {
    fn enter(watched: &Watched) -> Self {
        Self(CURRENT.with(|current| current.replace(Some((Arc::clone(&watched.0), Arc::clone(&watched.1))))))
    }
}

impl Drop for CurrentCall {
    fn drop(&mut self) {
        let before = self.0.take();
        CURRENT.with(|current| *current.borrow_mut() = before);
    }
}

pin_project_lite::pin_project! {
    /// A handler's future, each poll timed (see the module docs). `watched` holds the watchdog and the call's
    /// entry in it; `None` when the detector is off.
    #[derive(Debug)]
    pub struct Timed<F> {
        #[pin]
        inner: F,
        watched: Option<Watched>,
    }
}

impl<F: Future> Future for Timed<F> {
    type Output = F::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let Some(watched) = this.watched else { return this.inner.poll(cx) };
        let (watchdog, call) = (&watched.0, &watched.1);
        let started = Instant::now();
        call.polling_since(watchdog.micros_at(started));
        let output = {
            let _current = CurrentCall::enter(watched);
            this.inner.poll(cx)
        };
        let length = started.elapsed();
        call.polling_ended();
        if length >= watchdog.threshold {
            watchdog.ended(call, length);
        }
        output
    }
}

#[cfg(test)]
mod tests;
