//! A run's calls second by second, as the report carries them (`intervals`): for each whole second of wall-clock
//! time (UTC, aligned to the second, so the seconds of runs made by different processes line up), the calls sent
//! in it, the failed ones, and the histogram of the successful ones' latencies ([`crate::histogram_codec`]).
//!
//! Aligned seconds make them additive: `merge` adds the slices of the same second, whichever shard sent the calls,
//! and `diff` resamples whole seconds (a block bootstrap: a stall that slows a second's calls together stays
//! together in every resample). They are built from the calls kept one by one (`details[]`, up to its bound);
//! `complete` says whether that was every call.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tonic::Code;

use crate::{histogram_codec, recording::Recording};

/// Width of a slice: one second, what load-testing dashboards plot and what the bootstrap resamples.
pub const WIDTH: Duration = Duration::from_secs(1);

/// The report's `intervals`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Intervals {
    /// Width of each slice, nanoseconds (one second).
    pub width: u64,
    /// Whether every call of the run is in a slice (false past `details[]`'s bound).
    pub complete: bool,
    /// Seconds in which calls were sent, in order; seconds without calls are left out.
    pub slices: Vec<Interval>,
}

/// One second of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Interval {
    /// The second, as Unix time.
    pub start: u64,
    /// Calls sent in it.
    pub count: u64,
    /// Of those, calls that did not end `OK`.
    pub failed: u64,
    /// The successful calls' latencies, nanoseconds (HdrHistogram V2 compressed, base64).
    pub ok_histogram: String,
}

impl Intervals {
    /// The intervals of `recording`'s calls kept one by one.
    pub fn of(recording: &Recording) -> Self {
        let mut seconds: BTreeMap<u64, (u64, u64, Histogram<u64>)> = BTreeMap::new();
        for d in &recording.details {
            let second = unix_second(recording.started_at + d.sent);
            let (count, failed, ok) =
                seconds.entry(second).or_insert_with(|| (0, 0, Histogram::new_from(&recording.ok_latency)));
            *count += 1;
            if d.code == Code::Ok {
                ok.saturating_record(Recording::histogram_value(d.latency));
            } else {
                *failed += 1;
            }
        }
        Self::of_seconds(seconds, recording.details.len() as u64 == recording.count())
    }

    /// The intervals of several runs' together: the slices of the same second added up.
    pub fn merge<'a>(all: impl IntoIterator<Item = &'a Self>) -> anyhow::Result<Self> {
        let like = Recording::new().ok_latency;
        let mut seconds: BTreeMap<u64, (u64, u64, Histogram<u64>)> = BTreeMap::new();
        let mut complete = true;
        for intervals in all {
            complete &= intervals.complete;
            for slice in &intervals.slices {
                let ok = histogram_codec::decode(&slice.ok_histogram, &like, "intervals[].okHistogram")?;
                let (count, failed, sum) =
                    seconds.entry(slice.start).or_insert_with(|| (0, 0, Histogram::new_from(&like)));
                *count += slice.count;
                *failed += slice.failed;
                sum.add(&ok).map_err(|e| anyhow::anyhow!("intervals[].okHistogram: {e:?}"))?;
            }
        }
        Ok(Self::of_seconds(seconds, complete))
    }

    /// The intervals from each second's calls, failures and ok-latency histogram.
    fn of_seconds(seconds: BTreeMap<u64, (u64, u64, Histogram<u64>)>, complete: bool) -> Self {
        let slices = seconds
            .into_iter()
            .map(|(start, (count, failed, ok))| Interval {
                start,
                count,
                failed,
                ok_histogram: histogram_codec::encode(&ok),
            })
            .collect();
        Self { width: WIDTH.as_nanos() as u64, complete, slices }
    }
}

impl Interval {
    /// Its successful calls' latencies, nanoseconds.
    pub fn ok_latencies(&self) -> anyhow::Result<Histogram<u64>> {
        histogram_codec::decode(&self.ok_histogram, &Recording::new().ok_latency, "intervals[].okHistogram")
    }
}

fn unix_second(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_of_two_runs_add_up() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_500);
        let mut a = Recording::new();
        a.started_at = start;
        a.record_call(Duration::from_millis(100), Duration::from_millis(3), Ok(()));
        a.record_call(Duration::from_millis(600), Duration::from_millis(5), Ok(()));
        a.record_call(Duration::from_millis(700), Duration::from_millis(1), Err(tonic::Status::unavailable("x")));
        let mut b = Recording::new();
        b.started_at = start + Duration::from_millis(300);
        b.record_call(Duration::from_millis(100), Duration::from_millis(7), Ok(()));
        let (ia, ib) = (Intervals::of(&a), Intervals::of(&b));
        assert_eq!(
            ia.slices.iter().map(|s| (s.start, s.count, s.failed)).collect::<Vec<_>>(),
            [(1000, 1, 0), (1001, 2, 1)]
        );
        let merged = Intervals::merge([&ia, &ib]).expect("merges");
        assert!(merged.complete);
        assert_eq!(merged.slices.len(), 2);
        assert_eq!((merged.slices[0].count, merged.slices[0].failed), (2, 0));
        let first = merged.slices[0].ok_latencies().expect("decodes");
        assert_eq!(first.len(), 2);
        assert!(first.max() >= 7_000_000 && first.min() <= 3_000_000);
    }
}
