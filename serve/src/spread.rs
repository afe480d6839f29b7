//! One connection's calls spread over the shards of `--runtime thread-per-core`.
//!
//! A shard serves each connection it is handed for the connection's whole life ([`crate::shards`]), so the most
//! common gRPC client, one channel on one HTTP/2 connection, would get one core of the server however many it has.
//! This layer keeps a call on the shard that read it while that shard is about as busy as the least busy one, so
//! with many connections nothing crosses threads (the point of the shards); when the connection's own shard runs
//! clearly more calls than another, the call runs on that other shard's runtime instead. The connection's HTTP/2
//! framing stays on its shard; the call's layers, its handler and (in the gateway) its call to compute over that
//! shard's own connection move.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use offload_telemetry::metrics::Counter;
use tokio::task::JoinHandle;
use tonic::codegen::http;

use crate::shards::{self, Placement, Running};

/// How much busier (in calls running) a call's own shard must be than the least busy one before the call moves
/// there: more than twice as busy, plus a few, so connections spread evenly over the shards keep their calls home
/// through the bursts of their calls (two shards' counts wander by half of their mean) while one busy
/// connection's calls spill over.
fn should_move(here: usize, least: usize) -> bool {
    here > 2 * least + 4
}

/// Spreads calls over `placement`'s shards; passes them through outside a shard (other runtimes).
#[derive(Debug, Clone)]
pub struct SpreadLayer {
    placement: Option<Placement>,
    /// `offload_shard_calls_moved_total`.
    moved: Counter,
}

impl SpreadLayer {
    /// Over `placement`'s shards, counting the calls moved in `moved`; `None` (not sharded) passes every call
    /// through.
    pub fn new(placement: Option<Placement>, moved: Counter) -> Self {
        Self { placement, moved }
    }
}

impl<S> tower::Layer<S> for SpreadLayer {
    type Service = Spread<S>;

    fn layer(&self, inner: S) -> Spread<S> {
        Spread { inner, placement: self.placement.clone(), moved: self.moved.clone() }
    }
}

/// The service [`SpreadLayer`] wraps.
#[derive(Debug, Clone)]
pub struct Spread<S> {
    inner: S,
    placement: Option<Placement>,
    moved: Counter,
}

impl<S, B, R> tower::Service<http::Request<B>> for Spread<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>, Error = Infallible>,
    S::Future: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = Infallible;
    type Future = Placed<S::Future, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let call = self.inner.call(request);
        let (Some(placement), Some(here)) = (&self.placement, shards::current()) else {
            return Placed::Here { call, _running: None };
        };
        let (least, least_running) = (0..placement.shards())
            .map(|shard| (shard, placement.running(shard)))
            .min_by_key(|&(_, running)| running)
            .unwrap_or((here, 0));
        if least != here
            && should_move(placement.running(here), least_running)
            && let Some(runtime) = placement.runtime(least)
        {
            self.moved.inc();
            let running = placement.enter(least);
            let moved = runtime.spawn(async move {
                let _running = running;
                call.await
            });
            return Placed::Moved { moved: Moved(moved) };
        }
        Placed::Here { call, _running: Some(placement.enter(here)) }
    }
}

pin_project_lite::pin_project! {
    /// A call running on its connection's shard, or on another.
    #[project = PlacedProjection]
    #[derive(Debug)]
    pub enum Placed<F, R> {
        Here {
            #[pin]
            call: F,
            _running: Option<Running>,
        },
        Moved {
            moved: Moved<R>,
        },
    }
}

/// A call moved to another shard's runtime; dropped (the caller went away), it stops the call there too.
#[derive(Debug)]
pub struct Moved<R>(JoinHandle<Result<http::Response<R>, Infallible>>);

impl<R> Drop for Moved<R> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<F, R> Future for Placed<F, R>
where
    F: Future<Output = Result<http::Response<R>, Infallible>>,
    R: Default,
{
    type Output = Result<http::Response<R>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            PlacedProjection::Here { call, .. } => call.poll(cx),
            PlacedProjection::Moved { moved } => {
                Poll::Ready(match std::task::ready!(Pin::new(&mut moved.0).poll(cx)) {
                    Ok(reply) => reply,
                    // The other shard's runtime stopped (the drain's grace expired) or the handler panicked there; on
                    // its own shard the stream would have been reset, here the caller gets a status saying so.
                    Err(error) if error.is_panic() => {
                        Ok(tonic::Status::internal("the call's handler panicked").into_http())
                    }
                    Err(_) => Ok(tonic::Status::unavailable("the server is shutting down").into_http()),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::should_move;

    #[test]
    fn evenly_spread_connections_keep_their_calls_home() {
        // 16 connections over two shards: the counts wander around the same mean.
        assert!(!should_move(34, 30));
        assert!(!should_move(40, 24));
        assert!(!should_move(30, 34));
        assert!(!should_move(5, 1));
        // One call at a time never moves.
        assert!(!should_move(1, 0));
    }

    #[test]
    fn one_busy_connection_spills_over() {
        assert!(should_move(64, 0));
        assert!(should_move(50, 20));
        assert!(!should_move(44, 20));
    }
}
