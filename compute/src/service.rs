//! The `offload.v1.Compute` gRPC service: its request path, read top-down, and the handlers that turn each method's
//! messages into a [`JobRequest`] and back.
//!
//! Tracing: the server span (opened for every route by the skeleton's
//! [`offload_telemetry::grpc_trace::ServerTraceLayer`]) gets a `job` child naming the method, `n`, the requested
//! and actual mode and the queue and compute times; the executor adds `queue` and `compute` (on the thread that
//! ran the kernel) under it.

use std::{sync::Arc, time::Instant};

use offload_proto::v1::{
    ExecMode, FactorialRequest, FactorialResponse, SumOfSquaresRequest, SumOfSquaresResponse, compute_server::Compute,
};
use offload_serve::{
    admission::{AdmissionLayer, Admit},
    deadline::{DeadlineLayer, WithDeadline},
};
use offload_telemetry::metrics::{Labels, RequestMetrics, RequestMetricsLayer};
use tonic::{Request, Response, Status};
use tower::{ServiceBuilder, ServiceExt};

// `Parts` is the job's, re-exported here where the service is built from it.
pub use crate::run_job::Parts;
use crate::{
    job::{Decimal, JobReply, JobRequest},
    run_job::RunJob,
};

/// What a call goes through, whichever method it came in by (see [`ComputeService::new`]). Named, not boxed: a
/// boxed service is cloned into a new allocation per call.
type RequestPath = WithDeadline<RequestMetrics<Admit<RunJob>, ByMode>>;

/// The compute service. Cheap to clone: tonic clones it per connection.
#[derive(Debug, Clone)]
pub struct ComputeService {
    request_path: RequestPath,
}

impl ComputeService {
    /// A service running jobs on `parts.executor`.
    pub fn new(parts: Parts) -> Self {
        debug_assert_ne!(parts.default_mode, ExecMode::Unspecified);
        let request_path = ServiceBuilder::new()
            // Deadline first: the job's own checks and the timer around it answer DEADLINE_EXCEEDED by the
            // client's `grpc-timeout`, before the transport's timer cancels the call with a vaguer CANCELLED.
            .layer(DeadlineLayer::from_client())
            // Metrics above admission, so refused calls are counted too, labelled with the mode they asked for.
            .layer(RequestMetricsLayer::new(parts.metrics.clone(), ByMode))
            // Admission: at most --max-inflight jobs, the rest refused at once; here, once the message arrived,
            // so streams that never finish their request hold no slot.
            .layer(AdmissionLayer::new(parts.admission.clone(), "--max-inflight"))
            // The job: validate, place, run under the deadline, report.
            .service(RunJob::new(Arc::new(parts)));
        Self { request_path }
    }

    /// Runs `request` down the request path and stamps `compute_total_us`: the whole path's time, of which the
    /// reply's `queue_us` and `compute_us` are parts.
    async fn call(&self, request: Request<JobRequest>) -> Result<JobReply, Status> {
        let received = Instant::now();
        let mut reply = self.request_path.clone().oneshot(request).await?.into_inner();
        reply.execution.compute_total_us = received.elapsed().as_micros() as u64;
        Ok(reply)
    }
}

/// Labels a call with the mode it ran in or, if it failed, the mode it asked for.
#[derive(Debug, Clone, Copy)]
struct ByMode;

impl Labels<JobRequest, JobReply> for ByMode {
    fn method(&self, request: &JobRequest) -> &'static str {
        request.job.method()
    }

    fn asked(&self, request: &JobRequest) -> &'static str {
        ExecMode::try_from(request.mode).map_or("unknown", ExecMode::short_name)
    }

    fn served(&self, reply: &JobReply) -> &'static str {
        reply.execution.mode().short_name()
    }
}

#[tonic::async_trait]
impl Compute for ComputeService {
    async fn factorial(&self, request: Request<FactorialRequest>) -> Result<Response<FactorialResponse>, Status> {
        let request = request.map(|FactorialRequest { n, mode, .. }| JobRequest::factorial(n, mode));
        let JobReply { value: Decimal(value), execution } = self.call(request).await?;
        Ok(Response::new(FactorialResponse { digits: value.len() as u64, value, execution: Some(execution) }))
    }

    async fn sum_of_squares(
        &self,
        request: Request<SumOfSquaresRequest>,
    ) -> Result<Response<SumOfSquaresResponse>, Status> {
        let request = request.map(|SumOfSquaresRequest { n, mode, .. }| JobRequest::sum_of_squares(n, mode));
        let JobReply { value: Decimal(value), execution } = self.call(request).await?;
        Ok(Response::new(SumOfSquaresResponse { value, execution: Some(execution) }))
    }
}
