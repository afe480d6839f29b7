//! Admission control: at most `limit` requests in flight, the rest refused immediately.
//!
//! Shedding at the door (instead of queueing without bound) keeps memory and latency bounded under overload and
//! tells the client the truth at once with `RESOURCE_EXHAUSTED`, which it can retry elsewhere or later. It is a
//! tower layer (a concurrency limit and a load shedder in one, like tower's `ConcurrencyLimit` + `LoadShed`) that
//! applies only to the paths of one gRPC service, so health checks and reflection are never shed: an overloaded
//! server is busy, not dead, and must not be restarted by its orchestrator.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tonic::codegen::http;

/// A shared counter of in-flight requests with a hard ceiling.
#[derive(Debug, Clone)]
pub struct Admission {
    /// One permit per request allowed in flight; a request holds its permit until its reply is produced.
    permits: Arc<Semaphore>,
    limit: usize,
    /// Requests refused since start, for the `offload_shed` metric.
    shed: Arc<std::sync::atomic::AtomicU64>,
}

/// Holding this means the request was admitted; dropping it frees the slot.
#[derive(Debug)]
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
}

impl Admission {
    /// At most `limit` requests in flight.
    pub fn new(limit: usize) -> Self {
        Self { permits: Arc::new(Semaphore::new(limit)), limit, shed: Arc::default() }
    }

    /// Admits a request, or refuses it with a `RESOURCE_EXHAUSTED` status naming the limit.
    #[allow(clippy::result_large_err)] // tonic::Status is what handlers return; boxing it would only move the cost.
    pub fn try_admit(&self, flag: &str) -> Result<Admitted, tonic::Status> {
        match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => Ok(Admitted { _permit: permit }),
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => Err({
                self.shed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tonic::Status::resource_exhausted(format!(
                    "server busy: {} requests already in flight ({flag}={})",
                    self.limit, self.limit
                ))
            }),
        }
    }

    /// Requests in flight right now.
    pub fn in_flight(&self) -> usize {
        self.limit - self.permits.available_permits()
    }

    /// Requests refused since start.
    pub fn shed(&self) -> u64 {
        self.shed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The ceiling.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// A tower layer admitting requests whose path starts with `prefix` (e.g. `/offload.v1.Compute/`) through an
/// [`Admission`]; other paths pass untouched.
#[derive(Debug, Clone)]
pub struct AdmissionLayer {
    admission: Admission,
    prefix: &'static str,
    flag: &'static str,
}

impl AdmissionLayer {
    /// Limits the service under `prefix`; refusals name `flag`, the setting an operator would raise.
    pub fn new(admission: Admission, prefix: &'static str, flag: &'static str) -> Self {
        Self { admission, prefix, flag }
    }
}

impl<S> tower::Layer<S> for AdmissionLayer {
    type Service = AdmissionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AdmissionService { inner, layer: self.clone() }
    }
}

/// The service [`AdmissionLayer`] wraps around the server's routes.
#[derive(Debug, Clone)]
pub struct AdmissionService<S> {
    inner: S,
    layer: AdmissionLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for AdmissionService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if !request.uri().path().starts_with(self.layer.prefix) {
            return Box::pin(self.inner.call(request));
        }
        match self.layer.admission.try_admit(self.layer.flag) {
            Ok(admitted) => {
                let response = self.inner.call(request);
                Box::pin(async move {
                    let response = response.await;
                    drop(admitted);
                    response
                })
            }
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_limit_and_frees_on_drop() {
        let admission = Admission::new(2);
        let a = admission.try_admit("--max-inflight").expect("first");
        let _b = admission.try_admit("--max-inflight").expect("second");
        let refused = admission.try_admit("--max-inflight").expect_err("third is over the limit");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().contains("--max-inflight=2"), "{}", refused.message());
        assert_eq!(admission.in_flight(), 2);
        drop(a);
        assert_eq!(admission.in_flight(), 1);
        admission.try_admit("--max-inflight").expect("a slot was freed");
    }

    #[tokio::test]
    async fn the_layer_sheds_only_its_own_service() {
        use tower::{Layer, Service, ServiceExt};

        let release = Arc::new(tokio::sync::Notify::new());
        let gate = Arc::clone(&release);
        let inner = tower::service_fn(move |_: http::Request<()>| {
            let gate = Arc::clone(&gate);
            async move {
                gate.notified().await;
                Ok::<_, std::convert::Infallible>(http::Response::new(String::from("done")))
            }
        });
        let mut service = AdmissionLayer::new(Admission::new(1), "/a/", "--max-inflight").layer(inner);
        let request = |path: &str| http::Request::builder().uri(path).body(()).expect("request");

        // The first call to the limited service holds the only slot.
        let first = service.ready().await.expect("ready").call(request("/a/One"));
        let first = tokio::spawn(first);
        tokio::task::yield_now().await;
        // A second one is refused at once, as a gRPC status.
        let refused = service.ready().await.expect("ready").call(request("/a/Two")).await.expect("response");
        assert_eq!(refused.headers().get("grpc-status").map(|v| v.to_str().expect("ascii")), Some("8"));
        // Another service's paths are not limited.
        let other = service.ready().await.expect("ready").call(request("/grpc.health.v1.Health/Check"));
        let other = tokio::spawn(other);
        tokio::task::yield_now().await;
        release.notify_waiters();
        assert_eq!(first.await.expect("join").expect("ok").into_body(), "done");
        assert_eq!(other.await.expect("join").expect("ok").into_body(), "done");
        // The slot is free again.
        let again = service.ready().await.expect("ready").call(request("/a/Three"));
        let again = tokio::spawn(again);
        tokio::task::yield_now().await;
        release.notify_waiters();
        assert_eq!(again.await.expect("join").expect("ok").into_body(), "done");
    }
}
