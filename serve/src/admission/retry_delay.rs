//! The retry delay a refusal suggests, in gRPC's richer error model (`google.rpc.RetryInfo`, read by grpc-go's
//! and grpcio's clients and by retry policies): when to come back so that a slot has likely been freed.
//!
//! A slot frees when a call in flight ends, and the calls in flight are like the ones that ended recently, so the
//! delay is the recent time an admitted call held its slot: a moving average of every call's hold time (errors
//! included: they free slots too), each new sample weighted 1/8 as TCP smooths its round-trip time, so the delay
//! follows a change of load within a few dozen calls.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Never suggest less: a retry sooner than a millisecond would only meet the same full house (and before any
/// call has ended there is nothing to measure, so this is also the first refusals' suggestion).
const MIN_DELAY: Duration = Duration::from_millis(1);

/// Never suggest more: the longest jobs take about a minute, and a client told to wait longer than its own
/// deadline would rather give up than retry; half a minute still spreads retries out.
const MAX_DELAY: Duration = Duration::from_secs(30);

/// The weight of a new sample in the average, as a shift: 1/8.
const SAMPLE_WEIGHT_SHIFT: u32 = 3;

/// The recent time admitted calls held their slot, in microseconds (0: no call has ended yet). Lock-free: every
/// call's end updates it.
#[derive(Debug, Default)]
pub(super) struct RecentHoldTime {
    average_us: AtomicU64,
}

impl RecentHoldTime {
    /// A call held its slot for `held`.
    pub(super) fn observe(&self, held: Duration) {
        let sample = u64::try_from(held.as_micros()).unwrap_or(u64::MAX).max(1);
        // The closure always returns Some: the update cannot fail.
        let _ = self.average_us.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |average| {
            Some(match average {
                0 => sample,
                _ => average - (average >> SAMPLE_WEIGHT_SHIFT) + (sample >> SAMPLE_WEIGHT_SHIFT),
            })
        });
    }

    /// When a refused client should try again.
    pub(super) fn retry_delay(&self) -> Duration {
        Duration::from_micros(self.average_us.load(Ordering::Relaxed)).clamp(MIN_DELAY, MAX_DELAY)
    }

    /// A `RESOURCE_EXHAUSTED` refusal saying `message`, with the retry delay as `google.rpc.RetryInfo`.
    pub(super) fn refusal(&self, message: String) -> Status {
        Status::with_error_details(
            Code::ResourceExhausted,
            message,
            ErrorDetails::with_retry_info(Some(self.retry_delay())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_follows_the_calls_and_stays_in_bounds() {
        let hold_time = RecentHoldTime::default();
        assert_eq!(hold_time.retry_delay(), MIN_DELAY, "nothing measured yet");
        hold_time.observe(Duration::from_millis(80));
        assert_eq!(hold_time.retry_delay(), Duration::from_millis(80), "the first sample is the average");
        for _ in 0..64 {
            hold_time.observe(Duration::from_millis(8));
        }
        let settled = hold_time.retry_delay();
        assert!(settled < Duration::from_millis(9) && settled >= Duration::from_millis(8), "{settled:?}");
        hold_time.observe(Duration::from_secs(600));
        assert_eq!(hold_time.retry_delay(), MAX_DELAY, "one very long call moves it, within the bound");
    }

    #[test]
    fn a_refusal_carries_its_retry_info() {
        let hold_time = RecentHoldTime::default();
        hold_time.observe(Duration::from_millis(250));
        let refusal = hold_time.refusal("server busy".to_owned());
        assert_eq!(refusal.code(), Code::ResourceExhausted);
        let retry = refusal.get_details_retry_info().expect("RetryInfo in the details");
        assert_eq!(retry.retry_delay, Some(Duration::from_millis(250)));
    }
}
