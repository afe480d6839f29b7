//! The `offload.v1.Gateway` gRPC service: its request path, read top-down, and the handlers that feed it.
//!
//! One generic request path serves both methods ([`ComputeMethod`]); each handler only builds its [`Call`].

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use offload_proto::v1::{
    FactorialRequest, FactorialResponse, SumOfSquaresRequest, SumOfSquaresResponse, UpstreamWait,
    gateway_server::Gateway,
};
use offload_serve::{
    admission::{AdmissionLayer, Admit},
    deadline::{DeadlineLayer, WithDeadline},
};
use offload_telemetry::metrics::{Labels, RequestMetrics, RequestMetricsLayer};
use tonic::{Request, Response, Status};
use tower::{ServiceBuilder, ServiceExt};

// `Parts` is the wait's, re-exported here where the service is built from it.
pub use crate::wait::Parts;
use crate::{
    method::ComputeMethod,
    wait::{Call, WaitForCompute},
};

/// What a call of method `M` goes through (see [`request_path`]). Named, not boxed: a boxed service is cloned into
/// a new allocation per call.
type RequestPath<M> = TotalTime<WithDeadline<RequestMetrics<Admit<WaitForCompute<M>>, ByWaitStyle>>>;

/// The gateway service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct GatewayService {
    /// Never `Unspecified`: what `UPSTREAM_WAIT_UNSPECIFIED` means here.
    default_wait: UpstreamWait,
    factorial: RequestPath<FactorialRequest>,
    sum_of_squares: RequestPath<SumOfSquaresRequest>,
}

impl GatewayService {
    /// A gateway forwarding to `parts.balancer`'s replicas.
    pub fn new(parts: Parts) -> Self {
        debug_assert_ne!(parts.default_wait, UpstreamWait::Unspecified);
        let parts = Arc::new(parts);
        Self { default_wait: parts.default_wait, factorial: request_path(&parts), sum_of_squares: request_path(&parts) }
    }
}

/// The request path of method `M`, outermost first.
fn request_path<M: ComputeMethod>(parts: &Arc<Parts>) -> RequestPath<M> {
    ServiceBuilder::new()
        // Total time outermost, so the `gateway_total_us` a reply reports covers every layer below.
        .layer(tower::layer::layer_fn(|inner| TotalTime { inner }))
        // Deadline: the client's `grpc-timeout`, or --default-timeout so that no call waits forever; every attempt
        // below is bounded by it and forwards what is left of it to compute.
        .layer(DeadlineLayer::or_after(parts.default_timeout))
        // Metrics above admission, so refused calls are counted too, labelled with the wait style.
        .layer(RequestMetricsLayer::new(parts.metrics.clone(), ByWaitStyle))
        // Admission: --max-inflight or the adaptive limit, the rest refused at once; here, once the message
        // arrived, so streams that never finish their request hold no slot. A success's latency is a sample for
        // the adaptive limit.
        .layer(AdmissionLayer::new(parts.admission.clone(), "--max-inflight"))
        // Compute's reply, waited for in the call's style (the async styles retry on another replica).
        .service(WaitForCompute::<M>::new(Arc::clone(parts)))
}

/// Stamps `gateway_total_us` on a reply's execution report.
#[derive(Debug, Clone)]
struct TotalTime<S> {
    inner: S,
}

impl<S, M> tower::Service<Request<Call<M>>> for TotalTime<S>
where
    M: ComputeMethod,
    S: tower::Service<Request<Call<M>>, Response = Response<M::Reply>, Error = Status>,
    S::Future: Send + 'static,
{
    type Response = Response<M::Reply>;
    type Error = Status;
    type Future = Pin<Box<dyn Future<Output = Result<Response<M::Reply>, Status>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Call<M>>) -> Self::Future {
        // The same instant `gateway_before_upstream_us` counts from, so the parts add up to the total.
        let received = request.get_ref().received;
        let call = self.inner.call(request);
        Box::pin(async move {
            let mut reply = call.await?;
            let execution = M::execution_mut(reply.get_mut()).get_or_insert_with(Default::default);
            execution.gateway_total_us = received.elapsed().as_micros() as u64;
            Ok(reply)
        })
    }
}

/// Labels a call with its wait style (`unknown` when the request named none this gateway knows).
#[derive(Debug, Clone, Copy)]
struct ByWaitStyle;

impl<M: ComputeMethod> Labels<Call<M>, M::Reply> for ByWaitStyle {
    fn method(&self, _: &Call<M>) -> &'static str {
        M::NAME
    }

    fn asked(&self, call: &Call<M>) -> &'static str {
        call.wait.map_or("unknown", UpstreamWait::short_name)
    }

    fn served(&self, reply: &M::Reply) -> &'static str {
        M::execution(reply).map_or("unknown", |e| e.upstream_wait().short_name())
    }
}

impl GatewayService {
    async fn forward<M: ComputeMethod>(
        &self,
        path: &RequestPath<M>,
        request: Request<M>,
    ) -> Result<Response<M::Reply>, Status> {
        let call = request.map(|message| Call::new(message, self.default_wait));
        path.clone().oneshot(call).await
    }
}

#[tonic::async_trait]
impl Gateway for GatewayService {
    async fn factorial(&self, request: Request<FactorialRequest>) -> Result<Response<FactorialResponse>, Status> {
        self.forward(&self.factorial, request).await
    }

    async fn sum_of_squares(
        &self,
        request: Request<SumOfSquaresRequest>,
    ) -> Result<Response<SumOfSquaresResponse>, Status> {
        self.forward(&self.sum_of_squares, request).await
    }
}
