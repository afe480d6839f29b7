//! A synchronous compute client, built the way synchronous client libraries are (reqwest's `blocking`, tonic's
//! blocking-client example, Celery's `AsyncResult.get()`): it owns an I/O thread (a one-worker tokio runtime) and
//! its own connections, and its methods block the calling thread until compute answers.
//!
//! It exists to reproduce a mistake, measured: calling it from an async handler (`UPSTREAM_WAIT_BLOCKING`) blocks
//! that runtime worker for the whole upstream call. It never deadlocks, even on a current-thread gateway whose
//! only thread it blocks: its connections are driven by its own thread, and every call carries the request's
//! deadline (sent to compute as `grpc-timeout` and enforced locally while waiting).
//!
//! Only the waiting differs from the async styles: on its I/O thread it runs the same [`crate::forward`] stack
//! over a [`Balancer`] of its own (its own channels, health watches and keepalive pings, fed by the same
//! discovery), so a replica that is killed, draining or silent is classified, avoided and retried exactly as it
//! is for the async styles.

use std::{
    collections::BTreeSet,
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use tower::ServiceExt;
use tracing::{Instrument, Span};

use crate::{
    balancer::{Balancer, ClientSettings},
    discovery::Endpoints,
    error::Error,
    forward::{self, Attempt, Forwarded},
    method::ComputeMethod,
};

/// A blocking client over all compute endpoints.
#[derive(Debug)]
pub struct BlockingComputeClient {
    /// The I/O thread. An `Option` only so that `Drop` can take it and shut it down without blocking.
    runtime: Option<tokio::runtime::Runtime>,
    /// The replicas as this client's own channels see them; its tasks live on `runtime`.
    balancer: Arc<Balancer>,
    /// The retries this client's calls may make (see [`forward`]), shared by all of them.
    budget: Arc<tower::retry::budget::TpsBudget>,
}

impl BlockingComputeClient {
    /// A client with no endpoints yet (see [`Endpoints::set_endpoints`]) whose connections are opened on first
    /// use, on its own I/O thread; a replica whose health stream broke is watched again after `health_retry`.
    pub fn new(settings: ClientSettings, health_retry: Duration) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sync-client-io")
            .enable_all()
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
            balancer: Balancer::new(settings, health_retry),
            budget: forward::retry_budget(),
        })
    }

    /// The replicas as this client sees them (the gateway's readiness waits for one to be healthy here too).
    pub fn balancer(&self) -> &Arc<Balancer> {
        &self.balancer
    }

    /// Makes `attempt` on compute (retrying a transport failure on another replica, as [`forward`] does),
    /// blocking the calling thread until the reply or the attempt's deadline. Traced under the caller's current span.
    pub fn call<M: ComputeMethod>(&self, attempt: Attempt<M>) -> Result<Forwarded<M::Reply>, Error> {
        let started = Instant::now();
        let deadline = attempt.deadline();
        let Some(runtime) = &self.runtime else {
            return Err(Error::Transport { endpoint: "sync client".into(), message: "client closed".into() });
        };
        let (tx, rx) = mpsc::sync_channel(1);
        let forwarded = forward::stack(Arc::clone(&self.balancer), Arc::clone(&self.budget))
            .oneshot(attempt)
            .instrument(Span::current());
        runtime.spawn(async move {
            let _ = tx.send(forwarded.await);
        });
        let remaining = deadline.saturating_duration_since(Instant::now());
        // A plain OS-level wait: this is what blocks the caller's thread. The stack enforces the deadline itself;
        // this bound only guards against an I/O thread that stopped answering.
        match rx.recv_timeout(remaining.max(Duration::from_millis(1))) {
            Ok(outcome) => outcome,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(Error::DeadlineExceeded { waited: started.elapsed() }),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(Error::Transport { endpoint: "sync client".into(), message: "I/O thread gone".into() })
            }
        }
    }
}

impl Endpoints for BlockingComputeClient {
    fn set_endpoints(&self, urls: &BTreeSet<String>) {
        let Some(runtime) = &self.runtime else { return };
        // The channels and health watches of new endpoints must live on the client's own runtime, not the
        // caller's.
        let _entered = runtime.enter();
        self.balancer.set_endpoints(urls);
    }
}

impl Drop for BlockingComputeClient {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its tasks end, which is not allowed inside async code: let it go.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
