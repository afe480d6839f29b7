//! Admission control: at most `limit` requests in flight, the rest refused immediately.
//!
//! Shedding at the door (instead of queueing without bound) keeps memory and latency bounded under overload and
//! tells the client the truth at once with `RESOURCE_EXHAUSTED`, which it can retry elsewhere or later. Only the
//! offload services' handlers ask for admission, so health checks and reflection are never shed: an overloaded
//! server is busy, not dead, and must not be restarted by its orchestrator.
//!
//! Admission is asked for in the handler, once the request message has arrived and decoded, not when its headers
//! do (as a tower layer in front of the routes would): a client that opens streams and never finishes them must
//! not hold the slots honest requests need. The hostile-client tests open far more unfinished streams than the
//! limit and check that honest calls are still served.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

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
