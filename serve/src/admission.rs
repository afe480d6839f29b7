//! Admission control: at most `limit` requests in flight, the rest refused immediately.
//!
//! Shedding at the door (instead of queueing without bound) keeps memory and latency bounded under overload and
//! tells the client the truth at once with `RESOURCE_EXHAUSTED`, which it can retry elsewhere or later. The check
//! lives in the handler rather than in a tower layer so that health checks and reflection are never shed:
//! an overloaded server is busy, not dead, and must not be restarted by its orchestrator.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// A shared counter of in-flight requests with a hard ceiling.
#[derive(Debug, Clone)]
pub struct Admission {
    /// One permit per request allowed in flight; a request holds its permit until its reply is produced.
    permits: Arc<Semaphore>,
    limit: usize,
}

/// Holding this means the request was admitted; dropping it frees the slot.
#[derive(Debug)]
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
}

impl Admission {
    /// At most `limit` requests in flight.
    pub fn new(limit: usize) -> Self {
        Self { permits: Arc::new(Semaphore::new(limit)), limit }
    }

    /// Admits a request, or refuses it with a `RESOURCE_EXHAUSTED` status naming the limit.
    #[allow(clippy::result_large_err)] // tonic::Status is what handlers return; boxing it would only move the cost.
    pub fn try_admit(&self, flag: &str) -> Result<Admitted, tonic::Status> {
        match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => Ok(Admitted { _permit: permit }),
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => Err(tonic::Status::resource_exhausted(
                format!("server busy: {} requests already in flight ({flag}={})", self.limit, self.limit),
            )),
        }
    }

    /// Requests in flight right now.
    pub fn in_flight(&self) -> usize {
        self.limit - self.permits.available_permits()
    }

    /// The ceiling.
    pub fn limit(&self) -> usize {
        self.limit
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
}
