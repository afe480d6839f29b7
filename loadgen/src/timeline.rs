//! Latency over time: a run's calls ([`Recording::details`]) cut into equal slices of send time, each with the
//! p50 and p99 of its successful calls and its ok and failed throughput.
//!
//! Percentiles of a whole run say how slow the slow calls were; a timeline says *when*. A runtime blocked by
//! `INLINE` jobs stalls in bursts (latency climbs, then drops when a worker frees, again and again: a saw-tooth),
//! while a well-placed job leaves a flat line; both can share a p99.
//!
//! Calls are placed by when they were *sent* (the scheduled time, in open loop), so a stall shows at the moment
//! it hit the calls, not when they finally came back. Percentiles are exact (nearest rank over the slice's sorted
//! latencies), not estimated: a slice holds at most a second's calls.

use std::time::Duration;

use tonic::Code;

use crate::recording::{Detail, Recording};

/// Slice widths a timeline may use, finest first: "nice" values, so axis labels read as round times.
const WIDTHS_MS: [u64; 11] = [100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 300_000, 600_000];

/// Most slices a timeline is cut into: enough points for a line to show a shape on a 1200-pixel chart, few enough
/// that each slice of a 200 calls/s probe still holds 20 calls (so its p99 means something).
const MAX_SLICES: u64 = 100;

/// One slice of send time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slice {
    /// Start of the slice, from the start of the run.
    pub start: Duration,
    /// Successful calls sent in the slice.
    pub ok: u64,
    /// Failed calls sent in the slice.
    pub failed: u64,
    /// Median latency of the slice's successful calls (`None` when it has none).
    pub p50: Option<Duration>,
    /// 99th percentile latency of the slice's successful calls.
    pub p99: Option<Duration>,
}

/// A run's calls, slice by slice.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// Width of each slice: one second for runs of a minute or more, finer for shorter ones.
    pub width: Duration,
    /// Every slice from the start of the run to the last call sent, empty ones included (a gap is a finding).
    pub slices: Vec<Slice>,
}

impl Timeline {
    /// The timeline of `recording`'s calls, in slices of a width fit for its length ([`Timeline::width_for`]).
    pub fn of(recording: &Recording) -> Self {
        let span = recording.details.iter().map(|d| d.sent).max().unwrap_or_default();
        Self::with_width(&recording.details, Self::width_for(span.max(recording.elapsed)))
    }

    /// The finest "nice" width that cuts `span` into at most [`MAX_SLICES`], and never below 1 s for a span of a
    /// minute or more (per-second figures are what load-testing dashboards show).
    pub fn width_for(span: Duration) -> Duration {
        let span_ms = span.as_millis() as u64;
        let floor = if span_ms >= 60_000 { 1_000 } else { 0 };
        let ms = WIDTHS_MS
            .iter()
            .copied()
            .find(|&w| w >= floor && span_ms.div_ceil(w) <= MAX_SLICES)
            .unwrap_or(WIDTHS_MS[WIDTHS_MS.len() - 1]);
        Duration::from_millis(ms)
    }

    /// The timeline of `details` in slices of `width` (which must not be zero; a zero width is taken as 1 s).
    pub fn with_width(details: &[Detail], width: Duration) -> Self {
        let width = if width.is_zero() { Duration::from_secs(1) } else { width };
        let index = |sent: Duration| (sent.as_nanos() / width.as_nanos()) as usize;
        let count = details.iter().map(|d| index(d.sent) + 1).max().unwrap_or(0);
        let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); count];
        let mut failed = vec![0u64; count];
        for d in details {
            if d.code == Code::Ok {
                latencies[index(d.sent)].push(d.latency);
            } else {
                failed[index(d.sent)] += 1;
            }
        }
        let slices = latencies
            .into_iter()
            .zip(failed)
            .enumerate()
            .map(|(i, (mut ok, failed))| {
                ok.sort_unstable();
                Slice {
                    start: width * i as u32,
                    ok: ok.len() as u64,
                    failed,
                    p50: nearest_rank(&ok, 50.0),
                    p99: nearest_rank(&ok, 99.0),
                }
            })
            .collect();
        Self { width, slices }
    }

    /// Successful calls per second in `slice`.
    pub fn ok_rate(&self, slice: &Slice) -> f64 {
        slice.ok as f64 / self.width.as_secs_f64()
    }

    /// Failed calls per second in `slice`.
    pub fn failed_rate(&self, slice: &Slice) -> f64 {
        slice.failed as f64 / self.width.as_secs_f64()
    }

    /// How far the timeline reaches: the end of its last slice.
    pub fn span(&self) -> Duration {
        self.width * self.slices.len() as u32
    }
}

/// The nearest-rank percentile of sorted values: the smallest value with at least `percentile` % of the values at
/// or below it.
fn nearest_rank(sorted: &[Duration], percentile: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((percentile / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(sent_ms: u64, latency_ms: u64, code: Code) -> Detail {
        Detail {
            sent: Duration::from_millis(sent_ms),
            latency: Duration::from_millis(latency_ms),
            code,
            error: (code != Code::Ok).then(|| "busy".into()),
        }
    }

    #[test]
    fn calls_fall_in_the_slice_they_were_sent_in() {
        // Second 0: latencies 1..=100 ms and 5 failures; second 1: nothing; second 2: one 7 ms call.
        let mut details: Vec<Detail> = (1..=100).map(|v| call(v * 9, v, Code::Ok)).collect();
        details.extend((0..5).map(|i| call(500 + i, 1, Code::ResourceExhausted)));
        details.push(call(2_000, 7, Code::Ok));
        let t = Timeline::with_width(&details, Duration::from_secs(1));
        assert_eq!(t.slices.len(), 3);
        let [first, gap, last] = [t.slices[0], t.slices[1], t.slices[2]];
        assert_eq!((first.ok, first.failed), (100, 5));
        assert_eq!(first.p50, Some(Duration::from_millis(50)));
        assert_eq!(first.p99, Some(Duration::from_millis(99)));
        assert_eq!((gap.ok, gap.failed, gap.p50, gap.p99), (0, 0, None, None));
        assert_eq!(gap.start, Duration::from_secs(1));
        assert_eq!((last.ok, last.p50, last.p99), (1, Some(Duration::from_millis(7)), Some(Duration::from_millis(7))));
        assert_eq!(t.span(), Duration::from_secs(3));
    }

    #[test]
    fn rates_are_per_second_whatever_the_width() {
        let details: Vec<Detail> = (0..50).map(|i| call(i * 2, 1, Code::Ok)).collect();
        let t = Timeline::with_width(&details, Duration::from_millis(100));
        assert_eq!(t.slices.len(), 1);
        assert!((t.ok_rate(&t.slices[0]) - 500.0).abs() < 1e-9);
        assert_eq!(t.failed_rate(&t.slices[0]), 0.0);
    }

    #[test]
    fn failed_calls_do_not_count_in_the_percentiles() {
        // Fast failures would make a shedding server look fast: only successful calls are timed.
        let mut details = vec![call(0, 40, Code::Ok)];
        details.extend((0..99).map(|i| call(i, 1, Code::Unavailable)));
        let t = Timeline::with_width(&details, Duration::from_secs(1));
        assert_eq!(t.slices[0].p50, Some(Duration::from_millis(40)));
        assert_eq!(t.slices[0].failed, 99);
    }

    #[test]
    fn widths_are_nice_and_per_second_for_long_runs() {
        let secs = Duration::from_secs;
        assert_eq!(Timeline::width_for(secs(5)), Duration::from_millis(100));
        assert_eq!(Timeline::width_for(secs(30)), Duration::from_millis(500));
        assert_eq!(Timeline::width_for(secs(60)), secs(1));
        assert_eq!(Timeline::width_for(secs(90)), secs(1));
        assert_eq!(Timeline::width_for(secs(600)), secs(10));
        assert_eq!(Timeline::width_for(Duration::ZERO), Duration::from_millis(100));
        for span in [1, 7, 59, 61, 3_599, 86_400] {
            let w = Timeline::width_for(secs(span));
            assert!(secs(span).as_millis().div_ceil(w.as_millis()) <= 100 || w == secs(600), "{span}s → {w:?}");
        }
    }

    #[test]
    fn an_empty_recording_has_an_empty_timeline() {
        let t = Timeline::of(&Recording::new());
        assert!(t.slices.is_empty());
        assert_eq!(t.span(), Duration::ZERO);
    }
}
