//! How the async wait styles reach compute, as a small stack of its own: tower's retry on top of one attempt.
//!
//! Only failures of the transport are retried (see [`crate::upstream_status`]: the replica is gone or going),
//! once, on another replica; every other status is compute's answer. Both methods are pure functions of their
//! request, hence idempotent: a retry can never do harm, only cost CPU. Retries draw on a budget, as Linkerd
//! bounds them: at most [`RETRY_RATIO`] of the requests of the last [`RETRY_BUDGET_TTL`] plus
//! [`MIN_RETRIES_PER_SECOND`], so a replica failing under load cannot double the load on the others. Every wait
//! style comes through here: the synchronous client runs this stack on its own I/O thread
//! ([`crate::blocking_client`]).

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use offload_proto::service_names;
use offload_telemetry::grpc_trace::{self, CallerTrace};
use tonic::{Code, Request};
use tower::retry::budget::{Budget, TpsBudget};
use tracing::Instrument;

use crate::{balancer::Balancer, error::Error, method::ComputeMethod, upstream_status};

/// Attempts per request: the first, plus one retry on another replica.
const MAX_ATTEMPTS: u32 = 2;

/// Retries the budget allows as a share of requests: Linkerd's default, 20 %.
pub const RETRY_RATIO: f32 = 0.2;
/// Retries allowed whatever the traffic, so a quiet gateway can still retry: Linkerd's default, 10 a second.
pub const MIN_RETRIES_PER_SECOND: u32 = 10;
/// How long a request counts toward the budget: Linkerd's default, 10 s.
pub const RETRY_BUDGET_TTL: Duration = Duration::from_secs(10);

/// A retry budget with the defaults above, to share among the stacks of one gateway's path to compute.
pub fn retry_budget() -> Arc<TpsBudget> {
    Arc::new(TpsBudget::new(RETRY_BUDGET_TTL, MIN_RETRIES_PER_SECOND, RETRY_RATIO))
}

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
    /// The failed attempt's transport error (endpoint, message): if no other replica is healthy, the client gets it
    /// rather than a vaguer one.
    failed: Option<(String, String)>,
    /// The client's trace context, passed on to compute when the gateway does not export.
    caller_trace: CallerTrace,
}

impl<M> Attempt<M> {
    /// The first attempt at `message`, to be answered by `deadline`, for a client whose trace is `caller_trace`.
    pub fn first(message: M, deadline: Instant, caller_trace: CallerTrace) -> Self {
        Self { message, deadline, started: Instant::now(), number: 1, avoid: None, failed: None, caller_trace }
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
pub type Stack = tower::retry::Retry<RetryTransport, CallReplica>;

/// The async path to compute, for either method: a transport failure once more, on another replica, within
/// `budget` (the first failure's answer if there is none); each attempt on the less busy of two healthy replicas,
/// with a client span and the deadline's remainder forwarded.
pub fn stack(balancer: Arc<Balancer>, budget: Arc<TpsBudget>) -> Stack {
    tower::retry::Retry::new(RetryTransport { budget }, CallReplica { balancer })
}

/// The retry policy (see the module docs).
#[derive(Debug, Clone)]
pub struct RetryTransport {
    budget: Arc<TpsBudget>,
}

impl<M: Clone, R> tower::retry::Policy<Attempt<M>, Forwarded<R>, Error> for RetryTransport {
    type Future = std::future::Ready<()>;

    fn retry(&mut self, attempt: &mut Attempt<M>, result: &mut Result<Forwarded<R>, Error>) -> Option<Self::Future> {
        match result {
            Err(Error::NoHealthyReplica { .. }) => {
                if let Some((endpoint, message)) = attempt.failed.take() {
                    *result = Err(Error::Transport { endpoint, message });
                }
                None
            }
            Err(error) if upstream_status::retryable(error) && attempt.number < MAX_ATTEMPTS => {
                if !self.budget.withdraw() {
                    tracing::debug!(%error, "compute unavailable; not retried: the retry budget is spent");
                    return None;
                }
                tracing::debug!(%error, "compute unavailable; retrying on another replica");
                if let Error::Transport { endpoint, message } = &*error {
                    attempt.avoid = Some(endpoint.clone());
                    attempt.failed = Some((endpoint.clone(), message.clone()));
                }
                attempt.number += 1;
                Some(std::future::ready(()))
            }
            Ok(_) | Err(_) => None,
        }
    }

    fn clone_request(&mut self, attempt: &Attempt<M>) -> Option<Attempt<M>> {
        // Each request (its first attempt) adds to the budget; retries draw on it.
        if attempt.number == 1 {
            self.budget.deposit();
        }
        Some(attempt.clone())
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tower::ServiceExt;

    use super::*;

    fn attempt() -> Attempt<u32> {
        Attempt::first(7, Instant::now() + Duration::from_secs(5), CallerTrace::default())
    }

    /// Replicas that answer each attempt with `answer(attempt number)`, counting the attempts.
    fn replicas(
        calls: &Arc<AtomicUsize>,
        answer: fn(u32) -> Result<Forwarded<u32>, Error>,
    ) -> impl tower::Service<
        Attempt<u32>,
        Response = Forwarded<u32>,
        Error = Error,
        Future = std::future::Ready<Result<Forwarded<u32>, Error>>,
    > + Clone {
        let calls = Arc::clone(calls);
        tower::service_fn(move |a: Attempt<u32>| {
            calls.fetch_add(1, Ordering::Relaxed);
            std::future::ready(answer(a.number))
        })
    }

    fn refused(number: u32) -> Result<Forwarded<u32>, Error> {
        Err(Error::Transport { endpoint: format!("replica-{number}"), message: "connection refused".into() })
    }

    #[tokio::test]
    async fn a_transport_failure_is_retried_once_elsewhere_and_answered_by_the_retry() {
        let calls = Arc::new(AtomicUsize::new(0));
        let answer = |n| if n == 1 { refused(n) } else { Ok(Forwarded { reply: 49, attempts: n }) };
        let retry = tower::retry::Retry::new(RetryTransport { budget: retry_budget() }, replicas(&calls, answer));
        let forwarded = retry.oneshot(attempt()).await.expect("the retry answers");
        assert_eq!((forwarded.reply, forwarded.attempts), (49, 2));
        assert_eq!(calls.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn with_no_other_replica_the_first_failure_is_the_answer() {
        let calls = Arc::new(AtomicUsize::new(0));
        let answer = |n| if n == 1 { refused(n) } else { Err(Error::NoHealthyReplica { configured: 1 }) };
        let retry = tower::retry::Retry::new(RetryTransport { budget: retry_budget() }, replicas(&calls, answer));
        let error = retry.oneshot(attempt()).await.expect_err("no replica answers");
        assert!(matches!(&error, Error::Transport { endpoint, .. } if endpoint == "replica-1"), "{error:?}");
    }

    #[tokio::test]
    async fn when_every_replica_fails_the_budget_caps_retries_at_its_share_of_requests() {
        const REQUESTS: usize = 1000;
        let calls = Arc::new(AtomicUsize::new(0));
        // No floor of retries a second, so the share alone is measured.
        let budget = Arc::new(TpsBudget::new(RETRY_BUDGET_TTL, 0, RETRY_RATIO));
        let retry = tower::retry::Retry::new(RetryTransport { budget }, replicas(&calls, refused));
        for _ in 0..REQUESTS {
            let error = retry.clone().oneshot(attempt()).await.expect_err("every replica refuses");
            assert!(matches!(error, Error::Transport { .. }), "{error:?}");
        }
        let retries = calls.load(Ordering::Relaxed) - REQUESTS;
        let allowed = (REQUESTS as f32 * RETRY_RATIO) as usize;
        assert!(retries > 0, "the budget allowed no retry at all");
        assert!(retries <= allowed + 1, "{retries} retries for {REQUESTS} requests: more than {RETRY_RATIO} of them");
    }
}
