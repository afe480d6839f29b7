//! The requests in flight, for naming the call behind a stall: each wrapped call's entry holds one atomic word
//! saying whether it is being polled, since when, and on which thread. The watchdog, having found a stuck thread,
//! looks for the call polling on it. Nothing here knows HTTP or gRPC: the tower layer ([`crate::layer`], feature
//! `tower`) fills in what a call is.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use crate::{report::CallInfo, threads};

/// Bits of a poll word that hold the poll's start (microseconds since the detector's epoch, plus one so that 0
/// means "not polling"): 2^48 µs is almost nine years of uptime. The bits above hold the thread's slot.
const TIME_BITS: u32 = 48;

/// What a call is, asked only when it is named in a report.
pub(crate) trait Describe: Send + Sync + std::fmt::Debug {
    fn describe(&self) -> CallInfo;
    /// The request's span, for the event with the whole stack.
    fn span(&self) -> tracing::Span;
}

/// One wrapped call (or work it spawned with [`crate::in_current_call`]).
#[derive(Debug)]
pub(crate) struct InFlight {
    /// 0 between polls; else `thread slot << TIME_BITS | (poll start in µs + 1)`.
    polling: AtomicU64,
    pub(crate) call: Arc<dyn Describe>,
}

// Calls are made only by the tower layer; without it the list stays empty.
#[cfg_attr(not(feature = "tower"), allow(dead_code))]
impl InFlight {
    pub(crate) fn new(call: Arc<dyn Describe>) -> Self {
        Self { polling: AtomicU64::new(0), call }
    }

    /// Marks a poll begun at `micros` on this thread. Two relaxed stores per poll are the whole cost.
    pub(crate) fn polling_since(&self, micros: u64) {
        let slot = threads::with_current(|t| t.slot).unwrap_or(u16::MAX);
        let word = (u64::from(slot) << TIME_BITS) | ((micros + 1) & ((1 << TIME_BITS) - 1));
        self.polling.store(word, Ordering::Relaxed);
    }

    pub(crate) fn polling_ended(&self) {
        self.polling.store(0, Ordering::Relaxed);
    }

    /// The poll in progress: its word, its thread's slot and its start in µs since the epoch.
    pub(crate) fn poll(&self) -> Option<(u64, u16, u64)> {
        let word = self.polling.load(Ordering::Relaxed);
        (word != 0).then(|| (word, (word >> TIME_BITS) as u16, (word & ((1 << TIME_BITS) - 1)) - 1))
    }
}

/// The watchdog's list of calls in flight.
#[derive(Debug, Default)]
pub(crate) struct Calls {
    live: Vec<Arc<InFlight>>,
}

impl Calls {
    pub(crate) fn add(&mut self, call: Arc<InFlight>) {
        self.live.push(call);
    }

    /// Forgets the calls that ended (the watchdog holds the last reference).
    pub(crate) fn prune(&mut self) {
        self.live.retain(|c| Arc::strong_count(c) > 1);
    }

    /// The call polling on the thread in `slot` now (the innermost, if polls nest), with its poll word.
    pub(crate) fn polling_on(&self, slot: u16) -> Option<(Arc<InFlight>, u64, u64)> {
        self.live
            .iter()
            .filter_map(|c| {
                c.poll().filter(|&(_, s, _)| s == slot).map(|(word, _, start)| (Arc::clone(c), word, start))
            })
            .max_by_key(|&(_, _, start)| start)
    }
}

/// Microseconds from `epoch` to `at`.
pub(crate) fn micros_since(epoch: Instant, at: Instant) -> u64 {
    at.saturating_duration_since(epoch).as_micros() as u64
}
