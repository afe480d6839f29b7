//! How the async wait styles reach compute, as a small stack of its own: a retry on top of one attempt.
//!
//! Only failures of the transport are retried (see [`crate::upstream_status`]: the replica is gone or going),
//! once, on another replica; every other status is compute's answer. Both methods are pure functions of their
//! request, hence idempotent: a retry can never do harm, only cost CPU. Every wait style comes through here: the
//! synchronous client runs this stack on its own I/O thread ([`crate::blocking_client`]).

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use offload_proto::service_names;
use offload_telemetry::grpc_trace::{self, CallerTrace};
use tonic::{Code, Request};
use tower::{ServiceBuilder, ServiceExt};
use tracing::Instrument;

use crate::{balancer::Balancer, error::Error, method::ComputeMethod, upstream_status};

/// Attempts per request: the first, plus one retry on another replica.
const MAX_ATTEMPTS: u32 = 2;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// One attempt to get compute's reply.
#[derive(Debug, Clone)]
pub struct Attempt<M> {
    message: M,
    deadline: Instant,
    /// When the first attempt began: the time waited, if the deadline passes.
    started: Instant,
    /// 1 for the first attempt.
    number: u32,
    /// The replica a failed attempt used: the retry goes elsewhere.
    avoid: Option<String>,
    /// The client's trace context, passed on to compute when the gateway does not export.
    caller_trace: CallerTrace,
}

impl<M> Attempt<M> {
    /// The first attempt at `message`, to be answered by `deadline`, for a client whose trace is `caller_trace`.
    pub fn first(message: M, deadline: Instant, caller_trace: CallerTrace) -> Self {
        Self { message, deadline, started: Instant::now(), number: 1, avoid: None, caller_trace }
    }

    /// When the call must be answered by.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

/// Compute's reply, and the attempts it took.
#[derive(Debug)]
pub struct Forwarded<R> {
    pub reply: R,
    pub attempts: u32,
}

/// The async path to compute (see [`stack`]). Named, not boxed: a boxed service is cloned into a new allocation
/// per call.
pub type Stack = Retry<CallReplica>;

/// The async path to compute, for either method.
pub fn stack(balancer: Arc<Balancer>) -> Stack {
    ServiceBuilder::new()
        // Retry: a transport failure once more, on another replica; the first failure's answer if there is none.
        .layer(tower::layer::layer_fn(|inner| Retry { inner }))
        // One attempt: the less busy of two healthy replicas, a client span, the deadline's remainder forwarded.
        .service(CallReplica { balancer })
}

/// Retries attempts that failed in the transport (see the module docs).
#[derive(Debug, Clone)]
pub struct Retry<S> {
    inner: S,
}

impl<S, M> tower::Service<Attempt<M>> for Retry<S>
where
    M: ComputeMethod,
    S: tower::Service<Attempt<M>, Response = Forwarded<M::Reply>, Error = Error> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Forwarded<M::Reply>;
    type Error = Error;
    type Future = BoxFuture<Result<Forwarded<M::Reply>, Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // Each attempt readies its own clone of the inner service.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut attempt: Attempt<M>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move {
            // The failed attempt's error: if no other replica is healthy, the client gets it rather than a
            // vaguer one.
            let mut failed: Option<Error> = None;
            loop {
                match inner.clone().oneshot(attempt.clone()).await {
                    Err(error) if upstream_status::retryable(&error) && attempt.number < MAX_ATTEMPTS => {
                        if let Error::Transport { endpoint, .. } = &error {
                            tracing::debug!(url = endpoint, %error, "compute unavailable; retrying on another replica");
                            attempt.avoid = Some(endpoint.clone());
                        }
                        attempt.number += 1;
                        failed = Some(error);
                    }
                    Err(Error::NoHealthyReplica { configured }) => {
                        return Err(failed.unwrap_or(Error::NoHealthyReplica { configured }));
                    }
                    outcome => return outcome,
                }
            }
        })
    }
}

/// Makes one attempt on one replica.
#[derive(Debug, Clone)]
pub struct CallReplica {
    balancer: Arc<Balancer>,
}

impl<M: ComputeMethod> tower::Service<Attempt<M>> for CallReplica {
    type Response = Forwarded<M::Reply>;
    type Error = Error;
    type Future = BoxFuture<Result<Forwarded<M::Reply>, Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, attempt: Attempt<M>) -> Self::Future {
        let Some(replica) = self.balancer.pick(attempt.avoid.as_deref()) else {
            let configured = self.balancer.len();
            return Box::pin(std::future::ready(Err(Error::NoHealthyReplica { configured })));
        };
        Box::pin(async move {
            let remaining = attempt.deadline.saturating_duration_since(Instant::now());
            let span = grpc_trace::client_span(service_names::COMPUTE, M::NAME, Some(&replica.url));
            let mut request = Request::new(attempt.message);
            request.set_timeout(remaining);
            // New on every call: not for the HPACK tables.
            if let Some(timeout) = request.metadata_mut().get_mut(offload_serve::deadline::HEADER) {
                grpc_trace::never_index(timeout);
            }
            grpc_trace::inject(&span, &attempt.caller_trace, request.metadata_mut());
            let reply = M::call(replica.client().clone(), request).instrument(span.clone());
            let outcome = tokio::time::timeout_at(attempt.deadline.into(), reply).await;
            let code = match &outcome {
                Ok(Ok(_)) => Code::Ok,
                Ok(Err(status)) => status.code(),
                Err(_) => Code::DeadlineExceeded,
            };
            grpc_trace::record_status(&span, code, false);
            match outcome {
                Ok(Ok(reply)) => Ok(Forwarded { reply: reply.into_inner(), attempts: attempt.number }),
                Ok(Err(status)) => Err(upstream_status::classify(status, &replica.url, attempt.started.elapsed())),
                Err(_) => Err(Error::DeadlineExceeded { waited: attempt.started.elapsed() }),
            }
        })
    }
}
