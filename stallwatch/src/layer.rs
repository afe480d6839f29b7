//! The request behind a stall: a tower layer that registers each request with the detector and marks each poll
//! of its future (which thread, since when), so that when a worker is stuck the watchdog can name the call whose
//! poll holds it: its path (for gRPC, `package.Service/Method`), what the handler said of it ([`StallTag`]: a mode
//! and a size), and its trace id. Work a handler hands to `tokio::spawn` is named too when wrapped in
//! [`in_current_call`]; unwrapped, it is still caught as a stall, with its stack but without a request.
//!
//! Cost per request: three small allocations (the call's description, its entry, its tag) and a channel send;
//! per poll, one clock read and two relaxed stores. About 1 µs per request in all (`benches/cost.rs`).
//!
//! ```ignore
//! Server::builder().layer(detector.layer()).add_service(my_service).serve(addr).await?;
//! // in a handler: if let Some(tag) = request.extensions().get::<StallTag>() { tag.set("inline", Some(n)) }
//! ```

use std::{
    cell::RefCell,
    future::Future,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
    time::Instant,
};

use tracing::Span;

use crate::{
    Detector, Inner,
    calls::{Describe, InFlight, micros_since},
    report::CallInfo,
    watchdog::Registration,
};

/// Computes a request's trace id from its span and its `traceparent` header (e.g. from the OpenTelemetry context
/// a tracing layer attached to the span).
pub type TraceId = fn(&Span, Option<&http::HeaderValue>) -> Option<String>;

/// What the server says about a call once it knows (cheap to clone; the first [`StallTag::set`] wins).
#[derive(Debug, Clone, Default)]
pub struct StallTag(Arc<OnceLock<(&'static str, Option<u64>)>>);

impl StallTag {
    /// Names the call's `mode` (a metric label: lower-case, from a small fixed set) and its size `n`, if it has one.
    pub fn set(&self, mode: &'static str, n: Option<u64>) {
        let _ = self.0.set((mode, n));
    }

    /// [`StallTag::set`] on the tag the layer put into `extensions`, if it did (the detector may be off).
    pub fn set_in(extensions: &http::Extensions, mode: &'static str, n: Option<u64>) {
        if let Some(tag) = extensions.get::<StallTag>() {
            tag.set(mode, n);
        }
    }

    pub fn mode(&self) -> Option<&'static str> {
        self.0.get().map(|t| t.0)
    }

    pub fn n(&self) -> Option<u64> {
        self.0.get().and_then(|t| t.1)
    }
}

/// A request as the watchdog names it.
#[derive(Debug)]
struct Request {
    path: Option<http::uri::PathAndQuery>,
    tag: StallTag,
    span: Span,
    traceparent: Option<http::HeaderValue>,
    trace_id: TraceId,
}

impl Describe for Request {
    fn describe(&self) -> CallInfo {
        CallInfo {
            method: self.path.as_ref().map_or("", |p| p.path().trim_start_matches('/')).to_owned(),
            mode: self.tag.mode().map(str::to_owned),
            n: self.tag.n(),
            trace_id: (self.trace_id)(&self.span, self.traceparent.as_ref()),
        }
    }

    fn span(&self) -> Span {
        self.span.clone()
    }
}

/// The trace id of a W3C `traceparent` header (`00-<trace id>-<span id>-<flags>`).
pub fn traceparent_trace_id(_span: &Span, traceparent: Option<&http::HeaderValue>) -> Option<String> {
    let value = traceparent?.to_str().ok()?;
    let id = value.split('-').nth(1)?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && id.bytes().any(|b| b != b'0'))
        .then(|| id.to_owned())
}

/// A tower layer that names the requests behind stalls (see the module docs). `Clone` shares one detector.
#[derive(Debug, Clone)]
pub struct StallLayer {
    /// `None`: off, requests pass untouched.
    shared: Option<Arc<Inner>>,
    trace_id: TraceId,
}

impl StallLayer {
    /// A layer that does nothing (the detector is off).
    pub fn off() -> Self {
        Self { shared: None, trace_id: traceparent_trace_id }
    }

    /// Takes trace ids with `trace_id` instead of from the `traceparent` header alone.
    pub fn trace_id_with(mut self, trace_id: TraceId) -> Self {
        self.trace_id = trace_id;
        self
    }
}

impl Detector {
    /// The tower layer that names requests in this detector's reports.
    pub fn layer(&self) -> StallLayer {
        StallLayer { shared: Some(Arc::clone(&self.inner)), trace_id: traceparent_trace_id }
    }
}

impl<S> tower::Layer<S> for StallLayer {
    type Service = StallNamed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StallNamed { inner, layer: self.clone() }
    }
}

/// The service [`StallLayer`] wraps around a server's routes.
#[derive(Debug, Clone)]
pub struct StallNamed<S> {
    inner: S,
    layer: StallLayer,
}

impl<S, B> tower::Service<http::Request<B>> for StallNamed<S>
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
        let Some(shared) = &self.layer.shared else {
            return Timed { inner: self.inner.call(request), watched: None };
        };
        let tag = StallTag::default();
        request.extensions_mut().insert(tag.clone());
        let described: Arc<dyn Describe> = Arc::new(Request {
            path: request.uri().path_and_query().cloned(),
            tag,
            span: Span::current(),
            traceparent: request.headers().get("traceparent").cloned(),
            trace_id: self.layer.trace_id,
        });
        let call = Arc::new(InFlight::new(described));
        shared.send(Registration::Call(Arc::clone(&call)));
        Timed { inner: self.inner.call(request), watched: Some((Arc::clone(shared), call)) }
    }
}

/// The detector and a call's entry in it.
type Watched = (Arc<Inner>, Arc<InFlight>);

thread_local! {
    /// The call whose future this thread is polling right now, if any: what [`in_current_call`] attaches to.
    static CURRENT: RefCell<Option<Watched>> = const { RefCell::new(None) };
}

/// `future`, its polls marked as the call whose future is being polled on this thread now (a handler spawning work
/// for its request), or unmarked outside any call or with the detector off:
///
/// ```ignore
/// tokio::spawn(stallwatch::in_current_call(async move { run_the_job() }));
/// ```
pub fn in_current_call<F: Future>(future: F) -> Timed<F> {
    let watched = CURRENT.with(|current| {
        current.borrow().as_ref().map(|(shared, call)| {
            let spawned = Arc::new(InFlight::new(Arc::clone(&call.call)));
            shared.send(Registration::Call(Arc::clone(&spawned)));
            (Arc::clone(shared), spawned)
        })
    });
    Timed { inner: future, watched }
}

/// Makes `watched` the thread's current call until dropped, then puts back the one before (polls nest when a
/// marked future polls another in place).
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
    /// A future whose polls are marked for the watchdog (see the module docs); `watched` is `None` when off.
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
        let (shared, call) = (&watched.0, &watched.1);
        call.polling_since(micros_since(shared.shared.epoch, Instant::now()));
        let output = {
            let _current = CurrentCall::enter(watched);
            this.inner.poll(cx)
        };
        call.polling_ended();
        output
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_gives_its_trace_id_and_nothing_else_does() {
        let span = Span::none();
        let good = http::HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(traceparent_trace_id(&span, Some(&good)).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        let zero = http::HeaderValue::from_static("00-00000000000000000000000000000000-00f067aa0ba902b7-01");
        assert_eq!(traceparent_trace_id(&span, Some(&zero)), None);
        assert_eq!(traceparent_trace_id(&span, Some(&http::HeaderValue::from_static("garbage"))), None);
        assert_eq!(traceparent_trace_id(&span, None), None);
    }
}
