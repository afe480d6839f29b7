//! The `offload.v1.Gateway` gRPC service: forward to compute under the client's deadline, retrying once on
//! another replica when the first is unavailable. (Admission, `--max-inflight`, is a layer in front: see
//! [`crate::run`].)
//!
//! Both methods are pure functions of their request, hence idempotent: a retry can never do harm, only cost
//! CPU. Only `UNAVAILABLE` is retried (the replica is gone or going): every other status is compute's answer.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use offload_proto::v1::{
    Execution, FactorialRequest, FactorialResponse, SumOfSquaresRequest, SumOfSquaresResponse,
    compute_client::ComputeClient, gateway_server::Gateway,
};
use offload_serve::deadline;
use tonic::{Code, Request, Response, Status, transport::Channel};

use crate::{balancer::Balancer, error::Error};

/// Attempts per request: the first, plus one retry on another replica.
const MAX_ATTEMPTS: u32 = 2;

/// The gateway service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct GatewayService {
    balancer: Arc<Balancer>,
    default_timeout: Duration,
}

/// What the upstream part of a request cost.
struct Upstreamed<T> {
    reply: T,
    elapsed: Duration,
    attempts: u32,
}

impl GatewayService {
    /// A gateway forwarding to `balancer`'s replicas.
    pub fn new(balancer: Arc<Balancer>, default_timeout: Duration) -> Self {
        Self { balancer, default_timeout }
    }

    /// Calls compute through `call`, picking a replica per attempt, all within `deadline`.
    async fn forward<Req, Resp, F, Fut>(
        &self,
        message: Req,
        deadline: Instant,
        call: F,
    ) -> Result<Upstreamed<Resp>, Error>
    where
        Req: Clone,
        F: Fn(ComputeClient<Channel>, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let started = Instant::now();
        let mut failed: Option<String> = None;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let Some(upstream) = self.balancer.pick(failed.as_deref()) else {
                return Err(Error::NoHealthyUpstream { configured: self.balancer.len() });
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let mut request = Request::new(message.clone());
            request.set_timeout(remaining);
            let outcome = tokio::time::timeout_at(deadline.into(), call(upstream.client.clone(), request)).await;
            match outcome {
                Err(_) => return Err(Error::DeadlineExceeded { waited: started.elapsed() }),
                Ok(Ok(reply)) => {
                    return Ok(Upstreamed { reply: reply.into_inner(), elapsed: started.elapsed(), attempts });
                }
                Ok(Err(status)) if status.code() == Code::Unavailable && attempts < MAX_ATTEMPTS => {
                    tracing::debug!(url = upstream.url, %status, "compute unavailable; retrying on another replica");
                    failed = Some(upstream.url.clone());
                }
                Ok(Err(status)) if status.code() == Code::DeadlineExceeded || is_client_timeout(&status) => {
                    return Err(Error::DeadlineExceeded { waited: started.elapsed() });
                }
                Ok(Err(status)) => return Err(Error::Upstream { endpoint: upstream.url.clone(), status }),
            }
        }
    }

    fn deadline_of<T>(&self, request: &Request<T>, now: Instant) -> Instant {
        deadline::from_metadata(request.metadata(), now).unwrap_or(now + self.default_timeout)
    }
}

/// tonic's client runs its own timer for the `grpc-timeout` it sends and, when that fires first, reports
/// `CANCELLED` "Timeout expired" (tonic's `TimeoutExpired`). For the gateway's client that means the deadline passed.
fn is_client_timeout(status: &Status) -> bool {
    status.code() == Code::Cancelled && status.message() == tonic::TimeoutExpired(()).to_string()
}

/// Adds the gateway's timings to compute's execution report.
fn stamp(execution: Option<Execution>, received: Instant, upstream_elapsed: Duration, attempts: u32) -> Execution {
    Execution {
        gateway_total_us: received.elapsed().as_micros() as u64,
        upstream_us: upstream_elapsed.as_micros() as u64,
        upstream_attempts: attempts,
        ..execution.unwrap_or_default()
    }
}

#[tonic::async_trait]
impl Gateway for GatewayService {
    async fn factorial(&self, request: Request<FactorialRequest>) -> Result<Response<FactorialResponse>, Status> {
        let received = Instant::now();
        let deadline = self.deadline_of(&request, received);
        let up = self
            .forward(request.into_inner(), deadline, |mut client, req| async move { client.factorial(req).await })
            .await?;
        let mut reply = up.reply;
        reply.execution = Some(stamp(reply.execution, received, up.elapsed, up.attempts));
        Ok(Response::new(reply))
    }

    async fn sum_of_squares(
        &self,
        request: Request<SumOfSquaresRequest>,
    ) -> Result<Response<SumOfSquaresResponse>, Status> {
        let received = Instant::now();
        let deadline = self.deadline_of(&request, received);
        let up = self
            .forward(request.into_inner(), deadline, |mut client, req| async move { client.sum_of_squares(req).await })
            .await?;
        let mut reply = up.reply;
        reply.execution = Some(stamp(reply.execution, received, up.elapsed, up.attempts));
        Ok(Response::new(reply))
    }
}
