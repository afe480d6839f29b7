//! Admission control: at most `limit` requests in flight, shared fairly across connections, the rest refused
//! immediately.
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
//! `--send-timeout` ([`crate::stream`]). Such clients ask again as soon as a slot is freed, so the slots are shared
//! fairly across connections ([`fair_share`]): once all are taken, a call from a connection holding less than its
//! share waits (up to its deadline, or [`Admission::waiting_at_most`]) for the next slot freed, and only calls from
//! connections at or over their share are refused at once. And a call whose deadline passed while it queued (on a
//! blocked runtime, behind other calls) or whose client reset it is answered or dropped here, before it takes a
//! slot or starts work.

mod fair_share;
pub mod gradient;
mod layer;
mod retry_delay;

pub use self::layer::{AdmissionLayer, Admit, ReplyHold};

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::oneshot;

use self::{
    fair_share::{Full, Peer, Slots},
    gradient::{Gradient, GradientSettings},
    retry_delay::RecentHoldTime,
};

/// How long a call without a deadline of its own may wait for a slot by default: twice the default
/// `--send-timeout` (30 s), as the servers set it from their flag ([`Admission::waiting_at_most`]).
const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(60);

/// The slots in flight under a limit, shared fairly across connections ([`fair_share`]). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Admission {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// Who holds the slots and who waits for one; each waiting call is woken with its slot.
    slots: Mutex<Slots<oneshot::Sender<Admitted>>>,
    /// Requests allowed in flight now: the ceiling, or the adaptive controller's latest limit.
    limit: AtomicUsize,
    /// The hard ceiling (`--max-inflight`), also the most calls that may wait at once.
    ceiling: usize,
    /// How long a call without a deadline may wait for a slot, in milliseconds.
    max_wait_ms: AtomicU64,
    /// Requests refused since start, for the `offload_shed_total` metric.
    shed: AtomicU64,
    /// The adaptive limit's controller, if the limit adapts.
    gradient: Option<Mutex<Gradient>>,
    /// How long admitted calls have recently held their slot: the retry delay a refusal suggests.
    hold_time: RecentHoldTime,
}

/// Holding this means the request was admitted; dropping it frees the slot (or hands it to a waiting call).
#[derive(Debug)]
#[must_use = "dropping it at once frees the slot"]
pub struct Admitted {
    shared: Arc<Shared>,
    peer: Peer,
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
                self.shared.set_limit(limit);
                tracing::debug!(limit, "adaptive concurrency limit changed");
            }
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.shared.hold_time.observe(self.at.elapsed());
        let woken = {
            let mut slots = lock(&self.shared.slots);
            slots.release(self.peer);
            slots.hand_over(self.shared.limit.load(Ordering::Relaxed))
        };
        self.shared.wake(woken);
    }
}

impl Shared {
    /// A new limit from the adaptive controller: a grown one lets waiting calls in.
    fn set_limit(self: &Arc<Self>, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
        let woken = lock(&self.slots).hand_over(limit);
        self.wake(woken);
    }

    /// Gives the waiting calls handed a slot their [`Admitted`], outside the lock: a call that gave up meanwhile
    /// drops it, which frees the slot again (for the next one waiting).
    fn wake(self: &Arc<Self>, woken: Vec<(oneshot::Sender<Admitted>, Peer, usize)>) {
        for (wake, peer, in_flight) in woken {
            if let Some(gradient) = &self.gradient {
                lock(gradient).admitted(in_flight);
            }
            let _ = wake.send(Admitted { shared: Arc::clone(self), peer, at: Instant::now() });
        }
    }
}

/// Why a call got no slot, before it is worded as a status.
#[derive(Debug)]
enum NoSlot {
    /// Refused at once: every slot taken, and its connection held `held` of them, its `share` or more.
    Refused { limit: usize, held: usize, share: usize },
    /// It waited, and its place in the queue went to a call from a connection holding fewer slots.
    Displaced { limit: usize },
    /// It waited as long as a call without a deadline may.
    WaitedOut { limit: usize, waited: Duration },
    /// Its deadline passed while it waited.
    Deadline { waited: Duration },
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
                slots: Mutex::new(Slots::default()),
                limit: AtomicUsize::new(limit),
                ceiling,
                max_wait_ms: AtomicU64::new(DEFAULT_MAX_WAIT.as_millis() as u64),
                shed: AtomicU64::new(0),
                gradient: gradient.map(Mutex::new),
                hold_time: RecentHoldTime::default(),
            }),
        }
    }

    /// How long a call without a deadline of its own may wait for a slot ([`fair_share`]). The servers give
    /// twice `--send-timeout`: an unread reply gives its slot back within one, and the job that built it had run
    /// before that.
    pub fn waiting_at_most(self, max_wait: Duration) -> Self {
        let ms = u64::try_from(max_wait.as_millis()).unwrap_or(u64::MAX);
        self.shared.max_wait_ms.store(ms, Ordering::Relaxed);
        self
    }

    /// Admits a request from an unknown connection at once, or refuses it (see [`Admission::admit`]); it never
    /// waits.
    #[allow(clippy::result_large_err)] // tonic::Status is what handlers return; boxing it would only move the cost.
    pub fn try_admit(&self, flag: &str) -> Result<Admitted, tonic::Status> {
        match self.enter(None, false) {
            Ok(admitted) => Ok(admitted),
            Err(Entered::Refused(no_slot)) => Err(self.refusal(no_slot, flag)),
            // Not with `may_wait` false; were it queued, leaving is all it takes.
            Err(Entered::Waiting(ticket, _)) => {
                lock(&self.shared.slots).leave(ticket);
                Err(self.refusal(NoSlot::WaitedOut { limit: self.limit(), waited: Duration::ZERO }, flag))
            }
        }
    }

    /// Admits a request that came from `peer`, or refuses it with a `RESOURCE_EXHAUSTED` status naming the limit
    /// (and `flag`, the setting that bounds it), whose `google.rpc.RetryInfo` suggests retrying once the calls in
    /// flight have had time to finish (see [`retry_delay`]). When every slot is taken and `peer`'s connection
    /// holds fewer than its share, the call waits for the next slot freed instead ([`fair_share`]), until
    /// `deadline` (then `DEADLINE_EXCEEDED`) or for [`Admission::waiting_at_most`] (then `RESOURCE_EXHAUSTED`).
    pub async fn admit(
        &self,
        flag: &str,
        peer: Option<SocketAddr>,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Admitted, tonic::Status> {
        let (ticket, woken) = match self.enter(peer, true) {
            Ok(admitted) => return Ok(admitted),
            Err(Entered::Refused(no_slot)) => return Err(self.refusal(no_slot, flag)),
            Err(Entered::Waiting(ticket, woken)) => (ticket, woken),
        };
        let since = tokio::time::Instant::now();
        let max_wait = Duration::from_millis(self.shared.max_wait_ms.load(Ordering::Relaxed));
        let until = deadline.map_or(since + max_wait, |d| d.min(since + max_wait));
        // Leaves the queue if this future is dropped (the client reset the stream) or gives up.
        let queued = Queued { shared: &self.shared, ticket };
        let outcome = tokio::time::timeout_at(until, woken).await;
        drop(queued);
        match outcome {
            Ok(Ok(admitted)) => Ok(admitted),
            // Its place in a full queue went to a call from a connection that holds fewer slots.
            Ok(Err(_)) => Err(self.refusal(NoSlot::Displaced { limit: self.limit() }, flag)),
            Err(_) if deadline.is_some_and(|d| d <= until) => {
                Err(self.refusal(NoSlot::Deadline { waited: since.elapsed() }, flag))
            }
            Err(_) => Err(self.refusal(NoSlot::WaitedOut { limit: self.limit(), waited: since.elapsed() }, flag)),
        }
    }

    /// A slot now, a place in the queue (if `may_wait` and the connection is under its share), or a refusal.
    fn enter(&self, peer: Peer, may_wait: bool) -> Result<Admitted, Entered> {
        let shared = &self.shared;
        let mut asked = false;
        loop {
            let limit = shared.limit.load(Ordering::Relaxed);
            let mut slots = lock(&shared.slots);
            if slots.take(peer, limit) {
                let in_flight = slots.in_flight();
                drop(slots);
                if let Some(gradient) = &shared.gradient {
                    lock(gradient).admitted(in_flight);
                }
                return Ok(Admitted { shared: Arc::clone(shared), peer, at: Instant::now() });
            }
            // An adaptive limit may grow on this refusal (demand only just above it): then try again, once.
            if let (Some(gradient), false) = (&shared.gradient, asked) {
                drop(slots);
                asked = true;
                let grown = lock(gradient).refused(Instant::now());
                if let Some(grown) = grown {
                    shared.set_limit(grown);
                }
                continue;
            }
            let (sender, woken) = oneshot::channel();
            let max_waiting = if may_wait { shared.ceiling } else { 0 };
            return Err(match slots.wait(peer, limit, max_waiting, sender) {
                Full::Wait(ticket) => Entered::Waiting(ticket, woken),
                Full::Refuse { held, share } => Entered::Refused(NoSlot::Refused { limit, held, share }),
            });
        }
    }

    /// The status a call that got no slot is answered with; counted as shed unless its deadline passed.
    fn refusal(&self, no_slot: NoSlot, flag: &str) -> tonic::Status {
        let shared = &self.shared;
        let busy = |limit: usize| match shared.gradient {
            None => format!("server busy: {limit} requests already in flight ({flag}={limit})"),
            Some(_) => format!(
                "server busy: {limit} requests already in flight (adaptive concurrency limit; {flag}={})",
                shared.ceiling
            ),
        };
        let message = match no_slot {
            NoSlot::Deadline { waited } => {
                return tonic::Status::deadline_exceeded(format!(
                    "deadline exceeded after waiting {waited:?} for one of the {} admission slots ({flag})",
                    self.limit()
                ));
            }
            NoSlot::Refused { limit, held, share } => {
                format!("{}; this connection holds {held}, its fair share is {share}", busy(limit))
            }
            NoSlot::Displaced { limit } => {
                format!("{}; this call waited, and its place went to a connection holding fewer slots", busy(limit))
            }
            NoSlot::WaitedOut { limit, waited } => {
                format!("{} for all of the {waited:?} this call waited", busy(limit))
            }
        };
        shared.shed.fetch_add(1, Ordering::Relaxed);
        shared.hold_time.refusal(message)
    }

    /// Requests in flight right now.
    pub fn in_flight(&self) -> usize {
        lock(&self.shared.slots).in_flight()
    }

    /// Requests waiting for a slot right now.
    pub fn waiting(&self) -> usize {
        lock(&self.shared.slots).waiting()
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

/// Where [`Admission::enter`] left a call without a slot.
enum Entered {
    Refused(NoSlot),
    Waiting(u64, oneshot::Receiver<Admitted>),
}

/// A call's place in the queue; leaves it when dropped (a no-op once the call was handed its slot).
struct Queued<'a> {
    shared: &'a Arc<Shared>,
    ticket: u64,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        lock(&self.shared.slots).leave(self.ticket);
    }
}

/// The state behind each lock stays consistent even if a holder panicked (every update is a few assignments).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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

    fn peer(port: u16) -> Option<SocketAddr> {
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// A call from `peer` admitted at once (it must not wait).
    fn admit_now(admission: &Admission, peer: Option<SocketAddr>) -> Result<Admitted, tonic::Status> {
        let admit = admission.admit("--max-inflight", peer, None);
        futures_now(admit).expect("decided without waiting")
    }

    /// The output of `future` if it is ready at its first poll.
    fn futures_now<F: std::future::Future>(future: F) -> Option<F::Output> {
        let mut future = std::pin::pin!(future);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(output) => Some(output),
            std::task::Poll::Pending => None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_under_its_share_waits_for_the_next_slot_and_one_at_its_share_is_refused() {
        let admission = Admission::new(2);
        let held = [admit_now(&admission, peer(1)).expect("first"), admit_now(&admission, peer(1)).expect("second")];
        let waiting = tokio::spawn({
            let admission = admission.clone();
            async move { admission.admit("--max-inflight", peer(2), None).await }
        });
        while admission.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        let refused = admit_now(&admission, peer(1)).expect_err("connection 1 holds its share and more");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(
            refused.message().contains("(--max-inflight=2); this connection holds 2, its fair share is 1"),
            "{}",
            refused.message()
        );
        let [first, _second] = held;
        drop(first);
        let admitted = waiting.await.expect("join").expect("the freed slot went to the waiting call");
        assert_eq!((admission.in_flight(), admission.waiting(), admission.shed()), (2, 0, 1));
        drop(admitted);
        assert_eq!(admission.in_flight(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_call_gives_up_at_its_deadline_or_after_the_longest_wait_and_leaves_the_queue() {
        let admission = Admission::new(1).waiting_at_most(Duration::from_secs(4));
        let _held = admit_now(&admission, peer(1)).expect("first");
        let start = tokio::time::Instant::now();
        let deadline = start + Duration::from_secs(1);
        let late = admission.admit("--max-inflight", peer(2), Some(deadline)).await.expect_err("deadline");
        assert_eq!(late.code(), tonic::Code::DeadlineExceeded);
        assert_eq!(start.elapsed(), Duration::from_secs(1), "{}", late.message());
        let waited_out = admission.admit("--max-inflight", peer(3), None).await.expect_err("no slot for 4 s");
        assert_eq!(waited_out.code(), tonic::Code::ResourceExhausted);
        assert_eq!(start.elapsed(), Duration::from_secs(5), "{}", waited_out.message());
        assert_eq!((admission.waiting(), admission.shed()), (0, 1), "a call past its deadline is not shed");
        // A call dropped while it waits (its client reset the stream) leaves the queue.
        let dropped = tokio::time::timeout(Duration::from_secs(1), admission.admit("--max-inflight", peer(4), None));
        assert!(dropped.await.is_err());
        assert_eq!(admission.waiting(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_grown_adaptive_limit_lets_a_waiting_call_in() {
        let admission = Admission::adaptive(GradientSettings::with_ceiling(100));
        assert_eq!(admission.limit(), 1, "measuring the ideal latency first");
        let _held = admit_now(&admission, peer(1)).expect("first");
        let waiting = tokio::spawn({
            let admission = admission.clone();
            async move { admission.admit("--max-inflight", peer(2), None).await }
        });
        while admission.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        // What `completed` does when the controller grows the limit.
        admission.shared.set_limit(2);
        let _admitted = waiting.await.expect("join").expect("let in by the grown limit, the first slot still held");
        assert_eq!((admission.in_flight(), admission.waiting()), (2, 0));
    }

    /// The attack the fair share is for, on the simulated clock: four connections whose replies are never read
    /// (each slot is held for the send timeout, 2 s, after a 200 ms job) ask for three slots each every 500 ms,
    /// while an honest connection makes one call after another, each held 10 ms. Every honest call is served
    /// within one send timeout and a job.
    #[tokio::test(start_paused = true)]
    async fn an_honest_connection_is_served_within_a_send_timeout_while_four_never_read() {
        const SEND_TIMEOUT: Duration = Duration::from_secs(2);
        const JOB: Duration = Duration::from_millis(200);
        let admission = Admission::new(4).waiting_at_most(SEND_TIMEOUT * 2);
        let start = tokio::time::Instant::now();
        let attack_ends = start + Duration::from_secs(30);
        for attacker in 1..=4 {
            let admission = admission.clone();
            tokio::spawn(async move {
                while tokio::time::Instant::now() < attack_ends {
                    for _ in 0..3 {
                        let admission = admission.clone();
                        tokio::spawn(async move {
                            if let Ok(admitted) = admission.admit("--max-inflight", peer(attacker), None).await {
                                tokio::time::sleep(JOB + SEND_TIMEOUT).await;
                                drop(admitted);
                            }
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(admission.in_flight(), 4, "the attackers hold every slot");
        let (mut served, mut slowest) = (0, Duration::ZERO);
        while tokio::time::Instant::now() < attack_ends {
            let asked = tokio::time::Instant::now();
            let admitted = admission.admit("--max-inflight", peer(99), Some(asked + Duration::from_secs(60))).await;
            let waited = asked.elapsed();
            drop(admitted.expect("the honest call is served"));
            slowest = slowest.max(waited);
            served += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(slowest <= JOB + SEND_TIMEOUT, "an honest call waited {slowest:?}");
        assert!(served >= 10, "only {served} honest calls in 30 s");
    }
}
