//! The bottom of the gateway's request path: get compute's reply in the wait style the call asked for, and add the
//! gateway's part to the reply's execution report.
//!
//! The styles are the seed experiment's, to be measured against each other: awaiting the async client (the right
//! way), awaiting it in a spawned task (`create_task`), or calling a synchronous client directly in the handler
//! (`.get()` in an async handler) or in `spawn_blocking` (`run_in_executor`). All four reach compute through the
//! same [`crate::forward`] stack (one classification of failures, the same retry on another replica); the
//! synchronous styles run it on the synchronous client's own I/O thread and block until it answers.

use std::{
    future::Future,
    marker::PhantomData,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use offload_proto::v1::{Execution, UpstreamWait};
use offload_serve::{admission::Admission, deadline::Deadline, stall::StallTag};
use offload_telemetry::{grpc_trace::CallerTrace, metrics::Metrics};
use tonic::{Request, Response, Status};
use tower::ServiceExt;
use tracing::{Instrument, Span};

use crate::{
    balancer::Balancer,
    blocking_client::BlockingComputeClient,
    error::Error,
    forward::{self, Attempt, Forwarded},
    method::ComputeMethod,
};

/// What a call waits with: the replicas and the synchronous client, the default deadline and style. The service
/// builds its layers above [`WaitForCompute`] from the same parts (admission, metrics), so they live here, with
/// their user.
#[derive(Debug)]
pub struct Parts {
    pub balancer: Arc<Balancer>,
    pub default_timeout: Duration,
    /// The synchronous client behind `UPSTREAM_WAIT_BLOCKING` and `UPSTREAM_WAIT_SPAWN_BLOCKING`.
    pub sync_client: Arc<BlockingComputeClient>,
    /// Never `Unspecified`: what `UPSTREAM_WAIT_UNSPECIFIED` means here.
    pub default_wait: UpstreamWait,
    /// `--max-inflight` (or the adaptive limit): calls admitted at once.
    pub admission: Admission,
    pub metrics: Metrics,
}

/// A call as the gateway's request path sees it: the message to forward and how to wait for compute.
#[derive(Debug, Clone)]
pub struct Call<M> {
    /// The request, its gateway-only `upstream_wait` cleared: compute never sees it.
    pub message: M,
    /// The wait style: the request's, or the gateway's default for `UNSPECIFIED`; the value sent if unknown.
    pub wait: Result<UpstreamWait, i32>,
    /// When the gateway's handler received it: the reply's `gateway_before_upstream_us` runs from here.
    pub received: Instant,
}

impl<M: ComputeMethod> Call<M> {
    /// The call `message` asks for, on a gateway whose default style is `default`.
    pub fn new(mut message: M, default: UpstreamWait) -> Self {
        let asked = std::mem::take(message.upstream_wait());
        let wait = match UpstreamWait::try_from(asked) {
            Ok(UpstreamWait::Unspecified) => Ok(default),
            Ok(wait) => Ok(wait),
            Err(_) => Err(asked),
        };
        Self { message, wait, received: Instant::now() }
    }
}

/// Waits for compute in the call's style (the service at the bottom of [`crate::service`]'s stack).
#[derive(Debug)]
pub struct WaitForCompute<M: ComputeMethod> {
    parts: Arc<Parts>,
    /// The async styles' path: [`forward::stack`].
    forward: forward::Stack,
    method: PhantomData<fn() -> M>,
}

impl<M: ComputeMethod> Clone for WaitForCompute<M> {
    fn clone(&self) -> Self {
        Self { parts: Arc::clone(&self.parts), forward: self.forward.clone(), method: PhantomData }
    }
}

impl<M: ComputeMethod> WaitForCompute<M> {
    /// Waiting with `parts`' clients.
    pub fn new(parts: Arc<Parts>) -> Self {
        let forward = forward::stack(Arc::clone(&parts.balancer), forward::retry_budget());
        Self { parts, forward, method: PhantomData }
    }
}

impl<M: ComputeMethod> tower::Service<Request<Call<M>>> for WaitForCompute<M> {
    type Response = Response<M::Reply>;
    type Error = Status;
    type Future = Pin<Box<dyn Future<Output = Result<Response<M::Reply>, Status>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Call<M>>) -> Self::Future {
        let this = self.clone();
        let deadline = Deadline::of(&request).unwrap_or_else(|| Instant::now() + self.parts.default_timeout);
        if let Ok(style) = request.get_ref().wait {
            // The stall detector names a stall with the wait style: `blocking` is the one that stalls.
            StallTag::set_in(request.extensions(), style.short_name(), Some(request.get_ref().message.n()));
        }
        let caller_trace = CallerTrace::of(request.metadata());
        let Call { message, wait, received } = request.into_inner();
        Box::pin(async move {
            let wait = wait.map_err(Error::UnknownUpstreamWait)?;
            let started = Instant::now();
            let attempt = Attempt::first(message, deadline, caller_trace);
            let Forwarded { mut reply, attempts } = this.wait(wait, attempt).await?;
            let execution = M::execution_mut(&mut reply).take().unwrap_or_default();
            *M::execution_mut(&mut reply) = Some(Execution {
                upstream_us: started.elapsed().as_micros() as u64,
                gateway_before_upstream_us: started.saturating_duration_since(received).as_micros() as u64,
                upstream_attempts: attempts,
                upstream_wait: wait as i32,
                ..execution
            });
            Ok(Response::new(reply))
        })
    }
}

impl<M: ComputeMethod> WaitForCompute<M> {
    /// Compute's reply to `attempt`, waited for in style `wait`.
    async fn wait(self, wait: UpstreamWait, attempt: Attempt<M>) -> Result<Forwarded<M::Reply>, Error> {
        match wait {
            UpstreamWait::Async | UpstreamWait::Unspecified => self.forward.oneshot(attempt).await,
            UpstreamWait::SpawnTask => {
                // A spawned task starts outside the request's span: carry it, or the trace breaks here.
                let forwarded = self.forward.oneshot(attempt).instrument(Span::current());
                tokio::spawn(forwarded).await.map_err(|e| Error::Compute {
                    endpoint: "spawned task".to_owned(),
                    status: Status::internal(e.to_string()),
                })?
            }
            // The mistake under study: this blocks the runtime thread until compute answers.
            UpstreamWait::Blocking => self.parts.sync_client.call(attempt),
            UpstreamWait::SpawnBlocking => {
                let client = Arc::clone(&self.parts.sync_client);
                let span = Span::current();
                tokio::task::spawn_blocking(move || span.in_scope(|| client.call(attempt))).await.map_err(|e| {
                    Error::Compute { endpoint: "blocking pool".to_owned(), status: Status::internal(e.to_string()) }
                })?
            }
        }
    }
}
