//! One HTTP/2 stream's bounds, as the outermost layer of every server: when it arrived, how long its request may
//! take to arrive, and what its reply may hold for how long.
//!
//! - [`Arrival`]: the instant hyper handed the stream to the server, stamped before any handler runs. On a runtime
//!   blocked by a job, streams queue as tasks; their deadlines ([`crate::deadline`]) count from here, so a call
//!   that waited past its deadline is answered at once instead of being given its whole budget again.
//! - [`request_body`]: a stream must send its first request message within `--request-read-timeout`, or it is
//!   answered `DEADLINE_EXCEEDED` instead of holding a stream slot and a task forever.
//! - [`reply_body`]: the reply holds the call's admission slot ([`ReplyHold`]) until it has been handed to HTTP/2
//!   in full, and is dropped (slot and all) when its client leaves it unread for `--send-timeout`, by one
//!   [`send_watch`] per server. So `--max-inflight` bounds the replies in memory, not only the handlers running.

mod reply_body;
mod request_body;
mod send_watch;

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tonic::{body::Body, codegen::http};

use self::request_body::RequestBody;
pub use self::{reply_body::ReplyBody, send_watch::SendWatch};
use crate::{admission::ReplyHold, arrival::Arrival};

/// Stamps [`Arrival`], bounds the request's arrival and the reply's sending (see the module docs).
#[derive(Debug, Clone)]
pub struct StreamBoundsLayer {
    /// `--request-read-timeout`.
    request_read_timeout: Duration,
    /// Drops replies unread for `--send-timeout`.
    send_watch: Arc<SendWatch>,
}

impl StreamBoundsLayer {
    /// The bounds of `--request-read-timeout` and `--send-timeout`; starts the send timeout's sweeper on the current
    /// runtime.
    pub fn new(request_read_timeout: Duration, send_timeout: Duration) -> Self {
        Self { request_read_timeout, send_watch: SendWatch::new(send_timeout) }
    }
}

impl<S> tower::Layer<S> for StreamBoundsLayer {
    type Service = StreamBounds<S>;

    fn layer(&self, inner: S) -> StreamBounds<S> {
        StreamBounds { inner, bounds: self.clone() }
    }
}

/// The service [`StreamBoundsLayer`] wraps.
#[derive(Debug, Clone)]
pub struct StreamBounds<S> {
    inner: S,
    bounds: StreamBoundsLayer,
}

impl<S> tower::Service<http::Request<Body>> for StreamBounds<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Bounded<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // hyper calls this as it accepts the stream, on the connection's task: before any handler task runs.
        let arrival = Instant::now();
        let hold = ReplyHold::default();
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(Arrival(arrival));
        parts.extensions.insert(hold.clone());
        let body = Body::new(RequestBody::new(body, arrival, self.bounds.request_read_timeout));
        let call = self.inner.call(http::Request::from_parts(parts, body));
        Bounded { call, reply: Some((hold, Arc::clone(&self.bounds.send_watch))) }
    }
}

pin_project_lite::pin_project! {
    /// A call whose reply, once there, is bounded by its hold and the send watch. A named future, not a boxed one:
    /// one allocation less per call.
    pub struct Bounded<F> {
        #[pin]
        call: F,
        // Taken when the reply comes.
        reply: Option<(ReplyHold, Arc<SendWatch>)>,
    }
}

impl<F, E> std::future::Future for Bounded<F>
where
    F: std::future::Future<Output = Result<http::Response<Body>, E>>,
{
    type Output = F::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let response = std::task::ready!(this.call.poll(cx))?;
        #[allow(clippy::expect_used)] // Taken once, as the future completes; a future is not polled after that.
        let (hold, send_watch) = this.reply.take().expect("polled after completion");
        Poll::Ready(Ok(response.map(|body| Body::new(ReplyBody::new(body, hold, &send_watch)))))
    }
}
