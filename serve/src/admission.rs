//! Admission control: at most `limit` requests in flight, the rest refused immediately.
//!
//! Shedding at the door (instead of queueing without bound) keeps memory and latency bounded under overload and
//! tells the client the truth at once with `RESOURCE_EXHAUSTED`, which it can retry elsewhere or later. Only the
//! offload services' request paths ask for admission, so health checks and reflection are never shed: an overloaded
//! server is busy, not dead, and must not be restarted by its orchestrator.
//!
//! The limit is either fixed (`--max-inflight`) or adaptive ([`gradient`]): found from the latency of admitted
//! requests, under the fixed one as a ceiling. A fixed limit bounds memory; only a limit near the capacity behind
//! it also keeps admitted requests from queueing, and the adaptive one finds that capacity as replicas come, go or
//! slow down.
//!
//! Admission is a layer of the request path ([`AdmissionLayer`]), below the decoding of the message: a request is
//! admitted once its message has arrived, not when its headers do (as a tower layer in front of the routes would),
//! so a client that opens streams and never finishes them cannot hold the slots honest requests need. The
//! hostile-client tests open far more unfinished streams than the limit and check that honest calls are still
//! served.
//!
//! A slot is held until the call's reply has been handed to HTTP/2 in full (or dropped), not only until its handler
//! returns: a client that never reads its replies holds at most `--max-inflight` of them in memory, and only for
//! `--send-timeout` ([`crate::stream`]). And a call whose deadline passed while it queued (on a blocked runtime,
//! behind other calls) or whose client reset it is answered or dropped here, before it takes a slot or starts work.

pub mod gradient;
mod layer;
mod retry_delay;

pub use self::layer::{AdmissionLayer, Admit, ReplyHold};

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Instant,
};

use self::{
    gradient::{Gradient, GradientSettings},
    retry_delay::RecentHoldTime,
};

/// A shared counter of in-flight requests with a ceiling. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Admission {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    in_flight: AtomicUsize,
    /// Requests allowed in flight now: the ceiling, or the adaptive controller's latest limit.
    limit: AtomicUsize,
    /// The hard ceiling (`--max-inflight`).
    ceiling: usize,
    /// Requests refused since start, for the `offload_shed_total` metric.
    shed: AtomicU64,
    /// The adaptive limit's controller, if the limit adapts.
    gradient: Option<Mutex<Gradient>>,
    /// How long admitted calls have recently held their slot: the retry delay a refusal suggests.
    hold_time: RecentHoldTime,
}

/// Holding this means the request was admitted; dropping it frees the slot.
#[derive(Debug)]
#[must_use = "dropping it at once frees the slot"]
pub struct Admitted {
    shared: Arc<Shared>,
    at: Instant,
}

impl Admitted {
    /// The request completed successfully: its latency since admission is a sample for an adaptive limit.
    /// (Failed requests are not: an error's latency says nothing about queueing.) The slot stays taken until this
    /// is dropped, with the reply ([`ReplyHold`]).
    pub fn completed(&self) {
        if let Some(gradient) = &self.shared.gradient {
            let now = Instant::now();
            let changed = lock(gradient).completed(now, now.duration_since(self.at));
            if let Some(limit) = changed {
                self.shared.limit.store(limit, Ordering::Relaxed);
                tracing::debug!(limit, "adaptive concurrency limit changed");
            }
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.shared.hold_time.observe(self.at.elapsed());
        self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    /// At most `limit` requests in flight.
    pub fn new(limit: usize) -> Self {
        Self::build(limit, None)
    }

    /// A limit that adapts to the latency of admitted requests, never above `settings.max_limit`.
    pub fn adaptive(settings: GradientSettings) -> Self {
        let gradient = Gradient::new(settings, Instant::now());
        Self::build(settings.max_limit.max(1), Some(gradient))
    }

    fn build(ceiling: usize, gradient: Option<Gradient>) -> Self {
        let limit = gradient.as_ref().map_or(ceiling, Gradient::limit);
        Self {
            shared: Arc::new(Shared {
                in_flight: AtomicUsize::new(0),
                limit: AtomicUsize::new(limit),
                ceiling,
                shed: AtomicU64::new(0),
                gradient: gradient.map(Mutex::new),
                hold_time: RecentHoldTime::default(),
            }),
        }
    }

    /// Admits a request, or refuses it with a `RESOURCE_EXHAUSTED` status naming the limit (and `flag`, the
    /// setting that bounds it), whose `google.rpc.RetryInfo` suggests retrying once the calls in flight have had
    /// time to finish (see [`retry_delay`]).
    #[allow(clippy::result_large_err)] // tonic::Status is what handlers return; boxing it would only move the cost.
    pub fn try_admit(&self, flag: &str) -> Result<Admitted, tonic::Status> {
        let shared = &self.shared;
        let mut limit = shared.limit.load(Ordering::Relaxed);
        let mut current = shared.in_flight.load(Ordering::Acquire);
        let mut asked = false;
        loop {
            if current >= limit {
                // An adaptive limit may grow on this refusal (demand only just above it): then try again, once.
                let grown = match &shared.gradient {
                    Some(gradient) if !asked => lock(gradient).refused(Instant::now()),
                    _ => None,
                };
                asked = true;
                if let Some(grown) = grown {
                    shared.limit.store(grown, Ordering::Relaxed);
                    limit = grown;
                    continue;
                }
                shared.shed.fetch_add(1, Ordering::Relaxed);
                return Err(shared.hold_time.refusal(match shared.gradient {
                    None => format!("server busy: {limit} requests already in flight ({flag}={limit})"),
                    Some(_) => format!(
                        "server busy: {limit} requests already in flight (adaptive concurrency limit; {flag}={})",
                        shared.ceiling
                    ),
                }));
            }
            match shared.in_flight.compare_exchange_weak(current, current + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        if let Some(gradient) = &shared.gradient {
            lock(gradient).admitted(current + 1);
        }
        Ok(Admitted { shared: Arc::clone(shared), at: Instant::now() })
    }

    /// Requests in flight right now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    /// Requests refused since start.
    pub fn shed(&self) -> u64 {
        self.shared.shed.load(Ordering::Relaxed)
    }

    /// The ideal latency an adaptive limit compares with, once measured.
    pub fn ideal_latency(&self) -> Option<std::time::Duration> {
        self.shared.gradient.as_ref().and_then(|gradient| lock(gradient).min_rtt())
    }

    /// Requests allowed in flight now (the ceiling, unless the limit adapts).
    pub fn limit(&self) -> usize {
        self.shared.limit.load(Ordering::Relaxed)
    }
}

/// The controller's state stays consistent even if a holder panicked (every update is a few assignments).
fn lock(gradient: &Mutex<Gradient>) -> std::sync::MutexGuard<'_, Gradient> {
    gradient.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
        let _freed = admission.try_admit("--max-inflight").expect("a slot was freed");
        assert_eq!(admission.shed(), 1);
    }

    #[test]
    fn an_adaptive_limit_starts_pinned_and_follows_its_controller() {
        let settings = GradientSettings { min_rtt_samples: 3, ..GradientSettings::with_ceiling(100) };
        let admission = Admission::adaptive(settings);
        assert_eq!(admission.limit(), 1, "measuring the ideal latency first");
        let first = admission.try_admit("--max-inflight").expect("one request");
        let refused = admission.try_admit("--max-inflight").expect_err("the pinned limit is 1");
        assert!(refused.message().contains("adaptive concurrency limit; --max-inflight=100"), "{}", refused.message());
        first.completed();
        drop(first);
        for _ in 0..2 {
            std::thread::sleep(Duration::from_millis(1));
            admission.try_admit("--max-inflight").expect("free again").completed();
        }
        assert_eq!(admission.limit(), 8, "ideal latency measured: the initial limit applies");
        assert_eq!(admission.in_flight(), 0);
    }

    #[test]
    fn concurrent_admissions_never_pass_the_limit() {
        let admission = Admission::new(3);
        let peak = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|scope| {
            for _ in 0..8 {
                let (admission, peak) = (admission.clone(), Arc::clone(&peak));
                scope.spawn(move || {
                    for _ in 0..2_000 {
                        if let Ok(admitted) = admission.try_admit("--max-inflight") {
                            peak.fetch_max(admission.in_flight(), Ordering::Relaxed);
                            drop(admitted);
                        }
                    }
                });
            }
        });
        assert!(peak.load(Ordering::Relaxed) <= 3, "peak {}", peak.load(Ordering::Relaxed));
        assert_eq!(admission.in_flight(), 0);
    }
}
