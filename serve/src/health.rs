//! The gRPC health service (tonic-health's), with one addition for graceful shutdown: `Watch` streams end once
//! the drain has begun and their last update (`NOT_SERVING`) has been sent.
//!
//! A `Watch` stream never ends by itself, and an HTTP/2 connection with a stream open is not idle, so a graceful
//! shutdown would wait for every watcher (the gateway watches each replica) until the grace period ran out: every
//! rolling restart would take the full `--drain-timeout`. Found by the rolling-restart scenario.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tonic_health::{
    pb::{
        HealthCheckRequest, HealthCheckResponse,
        health_server::{Health, HealthServer},
    },
    server::{HealthReporter, HealthService, WatchStream},
};

use crate::transport;

/// Ends the `Watch` streams (call after setting every status to `NOT_SERVING`).
#[derive(Debug, Clone)]
pub struct EndWatches(watch::Sender<bool>);

impl EndWatches {
    /// From now on, `Watch` streams end as soon as they have nothing more to send.
    pub fn now(&self) {
        self.0.send_replace(true);
    }
}

/// The health service with `Watch` streams that end at the drain.
#[derive(Debug)]
pub struct DrainingHealth {
    inner: HealthService,
    draining: watch::Receiver<bool>,
}

/// The reporter (set statuses), the service (add to the server) and the switch that ends `Watch` streams.
pub fn reporter() -> (HealthReporter, HealthServer<DrainingHealth>, EndWatches) {
    let reporter = HealthReporter::new();
    let (end, draining) = watch::channel(false);
    let service = DrainingHealth { inner: HealthService::from_health_reporter(reporter.clone()), draining };
    // gzip as on every service of the server (see `transport::COMPRESSION`): a client whose channel compresses
    // every call (grpcio's `compression=`) must still get its health checks through.
    let server =
        HealthServer::new(service).accept_compressed(transport::COMPRESSION).send_compressed(transport::COMPRESSION);
    (reporter, server, EndWatches(end))
}

#[tonic::async_trait]
impl Health for DrainingHealth {
    async fn check(&self, request: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream = DrainingWatch;

    async fn watch(&self, request: Request<HealthCheckRequest>) -> Result<Response<DrainingWatch>, Status> {
        let inner = self.inner.watch(request).await?.into_inner();
        let mut draining = self.draining.clone();
        let drain = Box::pin(async move {
            let _ = draining.wait_for(|d| *d).await;
        });
        Ok(Response::new(DrainingWatch { inner, drain, ended: false }))
    }
}

/// A `Watch` stream that ends once the drain has begun and it has no update left to send.
pub struct DrainingWatch {
    inner: WatchStream,
    drain: Pin<Box<dyn Future<Output = ()> + Send>>,
    ended: bool,
}

impl std::fmt::Debug for DrainingWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrainingWatch").field("ended", &self.ended).finish()
    }
}

impl Stream for DrainingWatch {
    type Item = Result<HealthCheckResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        // Updates first: the NOT_SERVING set just before the drain is delivered before the stream ends.
        if let Poll::Ready(item) = Pin::new(&mut self.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        if self.drain.as_mut().poll(cx).is_ready() {
            self.ended = true;
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;
    use tonic_health::{ServingStatus, pb::health_check_response::ServingStatus as Wire};

    use super::*;

    #[tokio::test]
    async fn watch_streams_deliver_not_serving_then_end_at_the_drain() {
        let (reporter, _server, end) = reporter();
        // The same service the server gets, called directly.
        let service = DrainingHealth {
            inner: HealthService::from_health_reporter(reporter.clone()),
            draining: end.0.subscribe(),
        };
        reporter.set_service_status("svc", ServingStatus::Serving).await;
        let request = Request::new(HealthCheckRequest { service: "svc".into() });
        let mut stream = service.watch(request).await.expect("watch").into_inner();
        let first = stream.next().await.expect("an update").expect("ok");
        assert_eq!(first.status(), Wire::Serving);
        reporter.set_service_status("svc", ServingStatus::NotServing).await;
        end.now();
        let last = stream.next().await.expect("the last update").expect("ok");
        assert_eq!(last.status(), Wire::NotServing);
        assert!(stream.next().await.is_none(), "the stream ends after the drain began");
    }
}
