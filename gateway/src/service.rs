//! The `offload.v1.Gateway` gRPC service: admit (`--max-inflight`), then forward to compute under the client's
//! deadline, retrying once on another replica when the first is unavailable.
//!
//! How the gateway waits for compute is selectable (`upstream_wait`), to measure the seed experiment's styles:
//! awaiting the async client (the right way), awaiting it in a spawned task (`create_task`), or calling a
//! synchronous client directly in the handler (`.get()` in an async handler) or in `spawn_blocking`
//! (`run_in_executor`). Only the async styles retry on another replica; the synchronous client is a plain one.
//!
//! Both methods are pure functions of their request, hence idempotent: a retry can never do harm, only cost
//! CPU. Only failures of the transport are retried (see `is_transport_failure`: the replica is gone or going):
//! every other status is compute's answer.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use offload_proto::service_names;
use offload_proto::v1::{
    Execution, FactorialRequest, FactorialResponse, SumOfSquaresRequest, SumOfSquaresResponse, UpstreamWait,
    compute_client::ComputeClient, gateway_server::Gateway,
};
use offload_serve::{admission::Admission, deadline};
use offload_telemetry::{grpc_trace, metrics::Metrics};
use tonic::{Code, Request, Response, Status, transport::Channel};
use tracing::{Instrument, Span};

use crate::{balancer::Balancer, blocking_client::BlockingComputeClient, error::Error};

/// Attempts per request: the first, plus one retry on another replica.
const MAX_ATTEMPTS: u32 = 2;

/// The gateway service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct GatewayService {
    parts: Arc<Parts>,
}

/// What the service is made of.
#[derive(Debug)]
pub struct Parts {
    pub balancer: Arc<Balancer>,
    pub default_timeout: Duration,
    /// The synchronous client behind `UPSTREAM_WAIT_BLOCKING` and `UPSTREAM_WAIT_SPAWN_BLOCKING`.
    pub sync_client: Arc<BlockingComputeClient>,
    /// Never `Unspecified`: what `UPSTREAM_WAIT_UNSPECIFIED` means here.
    pub default_wait: UpstreamWait,
    /// `--max-inflight`: calls admitted at once.
    pub admission: Admission,
    pub metrics: Metrics,
}

impl std::ops::Deref for GatewayService {
    type Target = Parts;
    fn deref(&self) -> &Parts {
        &self.parts
    }
}

/// What the upstream part of a request cost.
struct Upstreamed<T> {
    reply: T,
    elapsed: Duration,
    attempts: u32,
}

impl GatewayService {
    /// A gateway forwarding to `parts.balancer`'s replicas.
    pub fn new(parts: Parts) -> Self {
        Self { parts: Arc::new(parts) }
    }

    /// The style a request asked for, or the default.
    fn wait_style(&self, requested: i32) -> Result<UpstreamWait, Error> {
        match UpstreamWait::try_from(requested) {
            Ok(UpstreamWait::Unspecified) => Ok(self.default_wait),
            Ok(style) => Ok(style),
            Err(_) => Err(Error::UnknownUpstreamWait(requested)),
        }
    }

    /// Gets compute's reply in the requested style: awaited (the right way), awaited in a spawned task, or from the
    /// synchronous client called on this thread or in `spawn_blocking`.
    async fn upstream<Req, Resp, F, Fut, S>(
        &self,
        method: &'static str,
        style: UpstreamWait,
        message: Req,
        deadline: Instant,
        call: F,
        sync_call: S,
    ) -> Result<Upstreamed<Resp>, Error>
    where
        Req: Clone + Send + 'static,
        Resp: Send + 'static,
        F: Fn(ComputeClient<Channel>, Request<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<Resp>, Status>> + Send,
        S: FnOnce(&BlockingComputeClient, Req, Instant) -> Result<Resp, Status> + Send + 'static,
    {
        let started = Instant::now();
        let synchronous = |result: Result<Resp, Status>| match result {
            Ok(reply) => Ok(Upstreamed { reply, elapsed: started.elapsed(), attempts: 1 }),
            Err(status) if status.code() == Code::DeadlineExceeded || is_client_timeout(&status) => {
                Err(Error::DeadlineExceeded { waited: started.elapsed() })
            }
            Err(status) => Err(Error::Upstream { endpoint: "sync client".to_owned(), status }),
        };
        match style {
            UpstreamWait::Async | UpstreamWait::Unspecified => self.forward(method, message, deadline, call).await,
            UpstreamWait::SpawnTask => {
                let this = self.clone();
                // A spawned task starts outside the request's span: carry it, or the trace breaks here.
                let forwarded = async move { this.forward(method, message, deadline, call).await };
                tokio::spawn(forwarded.instrument(Span::current())).await.map_err(|e| Error::Upstream {
                    endpoint: "spawned task".to_owned(),
                    status: Status::internal(e.to_string()),
                })?
            }
            // The mistake under study: this blocks the runtime thread until compute answers.
            UpstreamWait::Blocking => synchronous(sync_call(&self.sync_client, message, deadline)),
            UpstreamWait::SpawnBlocking => {
                let client = Arc::clone(&self.sync_client);
                let span = Span::current();
                let result =
                    tokio::task::spawn_blocking(move || span.in_scope(|| sync_call(&client, message, deadline)))
                        .await
                        .map_err(|e| Status::internal(e.to_string()))
                        .and_then(|r| r);
                synchronous(result)
            }
        }
    }

    /// Calls compute through `call`, picking a replica per attempt, all within `deadline`.
    async fn forward<Req, Resp, F, Fut>(
        &self,
        method: &'static str,
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
        // The replica of a failed attempt and its answer: the retry avoids it, and if no other replica is healthy
        // the client gets that answer rather than a vaguer one.
        let mut failed: Option<(String, Status)> = None;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let Some(upstream) = self.balancer.pick(failed.as_ref().map(|(url, _)| url.as_str())) else {
                return Err(match failed {
                    Some((endpoint, status)) => Error::Upstream { endpoint, status },
                    None => Error::NoHealthyUpstream { configured: self.balancer.len() },
                });
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let span = grpc_trace::client_span(service_names::COMPUTE, method, &upstream.url);
            let mut request = Request::new(message.clone());
            request.set_timeout(remaining);
            grpc_trace::inject(&span, request.metadata_mut());
            let attempt = call(upstream.client.clone(), request).instrument(span.clone());
            let outcome = tokio::time::timeout_at(deadline.into(), attempt).await;
            let code = match &outcome {
                Ok(Ok(_)) => Code::Ok,
                Ok(Err(status)) => status.code(),
                Err(_) => Code::DeadlineExceeded,
            };
            grpc_trace::record_status(&span, code, false);
            match outcome {
                Err(_) => return Err(Error::DeadlineExceeded { waited: started.elapsed() }),
                Ok(Ok(reply)) => {
                    return Ok(Upstreamed { reply: reply.into_inner(), elapsed: started.elapsed(), attempts });
                }
                Ok(Err(status)) if is_transport_failure(&status) && attempts < MAX_ATTEMPTS => {
                    // Before compute answered: the connection failed (refused, reset, replica killed). Both methods
                    // are pure, so running the call again elsewhere is safe even if it had started here.
                    let status = Status::unavailable(format!("transport failure: {}", status.message()));
                    tracing::debug!(url = upstream.url, %status, "compute unavailable; retrying on another replica");
                    failed = Some((upstream.url.clone(), status));
                }
                Ok(Err(status)) if status.code() == Code::DeadlineExceeded || is_client_timeout(&status) => {
                    return Err(Error::DeadlineExceeded { waited: started.elapsed() });
                }
                Ok(Err(status)) if is_transport_failure(&status) => {
                    let status = Status::unavailable(format!("transport failure: {}", status.message()));
                    return Err(Error::Upstream { endpoint: upstream.url.clone(), status });
                }
                Ok(Err(status)) => return Err(Error::Upstream { endpoint: upstream.url.clone(), status }),
            }
        }
    }

    fn deadline_of<T>(&self, request: &Request<T>, now: Instant) -> Instant {
        deadline::from_metadata(request.metadata(), now).unwrap_or(now + self.default_timeout)
    }
}

/// Whether the call failed in the transport rather than in compute: `UNAVAILABLE` (refused, draining), what tonic
/// reports when a connection breaks mid-call (`UNKNOWN` "transport error", from a hyper error), or an HTTP/2 error
/// on the stream (`INTERNAL`/`UNKNOWN` "h2 protocol error", as when a draining replica's GOAWAY races a new call:
/// found by the rolling-restart scenario). Compute's own answers never carry a transport error as their source.
fn is_transport_failure(status: &Status) -> bool {
    use std::error::Error as _;
    let from_transport = status.source().is_some_and(|e| {
        e.downcast_ref::<tonic::transport::Error>().is_some() || e.downcast_ref::<h2::Error>().is_some()
    });
    status.code() == Code::Unavailable
        || (matches!(status.code(), Code::Unknown | Code::Internal)
            && (from_transport || status.message() == "transport error"))
}

/// tonic's client runs its own timer for the `grpc-timeout` it sends and, when that fires first, reports
/// `CANCELLED` "Timeout expired" (tonic's `TimeoutExpired`). For the gateway's client that means the deadline passed.
fn is_client_timeout(status: &Status) -> bool {
    status.code() == Code::Cancelled && status.message() == tonic::TimeoutExpired(()).to_string()
}

/// Adds the gateway's timings to compute's execution report.
fn stamp<T>(execution: Option<Execution>, received: Instant, up: &Upstreamed<T>, style: UpstreamWait) -> Execution {
    Execution {
        gateway_total_us: received.elapsed().as_micros() as u64,
        upstream_us: up.elapsed.as_micros() as u64,
        upstream_attempts: up.attempts,
        upstream_wait: style as i32,
        ..execution.unwrap_or_default()
    }
}

/// What the gateway needs to know of a request message.
trait Forwarded: Clone + Send + 'static {
    fn upstream_wait(&mut self) -> &mut i32;
}

/// What the gateway needs to know of a reply message.
trait Answered: Send + 'static {
    fn execution(&mut self) -> &mut Option<Execution>;
}

impl Forwarded for FactorialRequest {
    fn upstream_wait(&mut self) -> &mut i32 {
        &mut self.upstream_wait
    }
}

impl Forwarded for SumOfSquaresRequest {
    fn upstream_wait(&mut self) -> &mut i32 {
        &mut self.upstream_wait
    }
}

impl Answered for FactorialResponse {
    fn execution(&mut self) -> &mut Option<Execution> {
        &mut self.execution
    }
}

impl Answered for SumOfSquaresResponse {
    fn execution(&mut self) -> &mut Option<Execution> {
        &mut self.execution
    }
}

impl GatewayService {
    /// One gateway call end to end: deadline, style, upstream, timings, metrics.
    async fn handle<Req, Resp, F, Fut, S>(
        &self,
        method: &'static str,
        request: Request<Req>,
        call: F,
        sync_call: S,
    ) -> Result<Response<Resp>, Status>
    where
        Req: Forwarded,
        Resp: Answered,
        F: Fn(ComputeClient<Channel>, Request<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<Resp>, Status>> + Send,
        S: FnOnce(&BlockingComputeClient, Req, Instant) -> Result<Resp, Status> + Send + 'static,
    {
        let received = Instant::now();
        let admitted = match self.admission.try_admit("--max-inflight") {
            Ok(admitted) => admitted,
            Err(refused) => {
                self.metrics.observe_request(method, "unknown", refused.code(), received.elapsed());
                return Err(refused);
            }
        };
        let deadline = self.deadline_of(&request, received);
        let mut message = request.into_inner();
        let requested = *message.upstream_wait();
        *message.upstream_wait() = UpstreamWait::Unspecified as i32;
        let style = self.wait_style(requested);
        let label = style.as_ref().map_or("unknown", |s| s.short_name());
        let result = async {
            let style = style?;
            let mut up = self.upstream(method, style, message, deadline, call, sync_call).await?;
            let execution = stamp(up.reply_execution(), received, &up, style);
            let mut reply = up.reply;
            *reply.execution() = Some(execution);
            Ok::<_, Error>(reply)
        }
        .await
        .map_err(Status::from);
        let code = result.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok);
        if result.is_ok() {
            admitted.completed();
        }
        self.metrics.observe_request(method, label, code, received.elapsed());
        result.map(Response::new)
    }
}

impl<T: Answered> Upstreamed<T> {
    fn reply_execution(&mut self) -> Option<Execution> {
        self.reply.execution().take()
    }
}

#[tonic::async_trait]
impl Gateway for GatewayService {
    async fn factorial(&self, request: Request<FactorialRequest>) -> Result<Response<FactorialResponse>, Status> {
        self.handle(
            "Factorial",
            request,
            |mut client, req| async move { client.factorial(req).await },
            |sync, req, deadline| sync.factorial(req, deadline),
        )
        .await
    }

    async fn sum_of_squares(
        &self,
        request: Request<SumOfSquaresRequest>,
    ) -> Result<Response<SumOfSquaresResponse>, Status> {
        self.handle(
            "SumOfSquares",
            request,
            |mut client, req| async move { client.sum_of_squares(req).await },
            |sync, req, deadline| sync.sum_of_squares(req, deadline),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_and_http2_failures_are_retried_compute_answers_are_not() {
        for reason in [h2::Reason::REFUSED_STREAM, h2::Reason::NO_ERROR, h2::Reason::PROTOCOL_ERROR] {
            let status = Status::from_error(Box::new(h2::Error::from(reason)));
            assert!(is_transport_failure(&status), "{reason:?}: {status:?}");
        }
        assert!(is_transport_failure(&Status::unavailable("connection refused")));
        assert!(!is_transport_failure(&Status::internal("job panicked: boom")));
        assert!(!is_transport_failure(&Status::invalid_argument("n = 7 is above --max-factorial-n=5")));
        let timeout = Status::cancelled(tonic::TimeoutExpired(()).to_string());
        assert!(!is_transport_failure(&timeout) && is_client_timeout(&timeout));
    }
}
