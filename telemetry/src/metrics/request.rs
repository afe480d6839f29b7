//! The request metrics (`offload_requests_total`, `offload_request_duration_seconds`) as a layer of a server's request
//! path, so no handler counts its own calls.
//!
//! Each call is counted once, when it ends, however it ends (refused at admission, invalid, failed upstream),
//! with its method, its gRPC status and its mode: what the reply says it ran in, or for a failed call what it
//! asked for. The server says how to read those from its messages ([`Labels`]).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use tonic::{Request, Response, Status};

use super::Metrics;

/// How a server's calls are labelled: read from the request before the call, and from the reply after it.
pub trait Labels<Req, Resp>: Clone + Send + Sync + 'static {
    /// The method called (`Factorial`).
    fn method(&self, request: &Req) -> &'static str;
    /// The mode label of a call that fails: what the request asked for (`unknown` if nothing valid).
    fn asked(&self, request: &Req) -> &'static str;
    /// The mode label of a call that succeeds: what the reply says it ran in.
    fn served(&self, reply: &Resp) -> &'static str;
}

/// Counts and times every call through it in [`Metrics::observe_request`].
#[derive(Debug, Clone)]
pub struct RequestMetricsLayer<L> {
    metrics: Metrics,
    labels: L,
}

impl<L> RequestMetricsLayer<L> {
    /// Calls counted in `metrics`, labelled by `labels`.
    pub fn new(metrics: Metrics, labels: L) -> Self {
        Self { metrics, labels }
    }
}

impl<S, L: Clone> tower::Layer<S> for RequestMetricsLayer<L> {
    type Service = RequestMetrics<S, L>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics { inner, metrics: self.metrics.clone(), labels: self.labels.clone() }
    }
}

/// The service [`RequestMetricsLayer`] wraps.
#[derive(Debug, Clone)]
pub struct RequestMetrics<S, L> {
    inner: S,
    metrics: Metrics,
    labels: L,
}

impl<S, L, Req, Resp> tower::Service<Request<Req>> for RequestMetrics<S, L>
where
    S: tower::Service<Request<Req>, Response = Response<Resp>, Error = Status>,
    S::Future: Send + 'static,
    L: Labels<Req, Resp>,
{
    type Response = Response<Resp>;
    type Error = Status;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Resp>, Status>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Req>) -> Self::Future {
        let started = Instant::now();
        let (method, asked) = (self.labels.method(request.get_ref()), self.labels.asked(request.get_ref()));
        let call = self.inner.call(request);
        let (metrics, labels) = (self.metrics.clone(), self.labels.clone());
        Box::pin(async move {
            let result = call.await;
            let (mode, code) = match &result {
                Ok(reply) => (labels.served(reply.get_ref()), tonic::Code::Ok),
                Err(status) => (asked, status.code()),
            };
            metrics.observe_request(method, mode, code, started.elapsed());
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use tower::{Layer, ServiceExt, service_fn};

    use super::*;

    /// Requests ask for a mode by name; replies name the mode they ran in.
    #[derive(Debug, Clone)]
    struct ByName;

    impl Labels<&'static str, &'static str> for ByName {
        fn method(&self, _: &&'static str) -> &'static str {
            "Factorial"
        }
        fn asked(&self, request: &&'static str) -> &'static str {
            request
        }
        fn served(&self, reply: &&'static str) -> &'static str {
            reply
        }
    }

    #[tokio::test]
    async fn successes_are_labelled_by_the_reply_failures_by_the_request() {
        let metrics = Metrics::new("test");
        let inner = service_fn(|request: Request<&'static str>| async move {
            match *request.get_ref() {
                "adaptive" => Ok(Response::new("inline")),
                _ => Err(Status::invalid_argument("no")),
            }
        });
        let service = RequestMetricsLayer::new(metrics.clone(), ByName).layer(inner);
        service.clone().oneshot(Request::new("adaptive")).await.expect("ok");
        service.oneshot(Request::new("rayon")).await.expect_err("refused");
        let text = metrics.encode();
        for line in [r#"mode="inline",code="OK""#, r#"mode="rayon",code="INVALID_ARGUMENT""#] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
