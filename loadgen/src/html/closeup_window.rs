//! The close-up's window: which calls of a run the close-up shows (about a hundred, from the middle of the run).
//!
//! Its own module because two places need it: the close-up draws those calls ([`super::closeup`]), and the scales
//! shared by runs compared by eye size the close-up's axis to the slowest of them ([`super::chart::Scales`]).

use std::time::Duration;

use super::axis::nice_above;
use crate::recording::Detail;

/// Calls a close-up holds, about: enough to see a pattern repeat, few enough to tell each call apart.
const CALLS: f64 = 100.0;
/// Narrowest and widest window, in seconds: a fast run's hundred calls still get a readable time axis, and a slow
/// run's close-up stays a close-up.
const NARROWEST: f64 = 0.05;
const WIDEST: f64 = 5.0;

/// The close-up window of a run, `(start, width)`: about [`CALLS`] calls' worth of time, in the middle of the run
/// (away from the warm-up at its start and the drain at its end), starting on a multiple of its width; none when
/// that would be a quarter of the run or more (no close-up then).
pub(super) fn window(details: &[Detail]) -> Option<(Duration, Duration)> {
    let span = details.iter().map(|d| d.sent).max()?.as_secs_f64();
    if span <= 0.0 || details.len() < 2 {
        return None;
    }
    let rate = details.len() as f64 / span;
    let width = nice_above((CALLS / rate).clamp(NARROWEST, WIDEST));
    if width > span / 4.0 {
        // A slow run (a few heavy jobs a second): the whole-run chart already shows each call.
        return None;
    }
    let start = (((span - width) / 2.0).max(0.0) / width).floor() * width;
    Some((Duration::from_secs_f64(start), Duration::from_secs_f64(width)))
}

/// The calls sent within `window`, in order of sending.
pub(super) fn calls_in(details: &[Detail], (start, width): (Duration, Duration)) -> Vec<&Detail> {
    let mut calls: Vec<&Detail> = details.iter().filter(|d| d.sent >= start && d.sent < start + width).collect();
    calls.sort_by_key(|d| d.sent);
    calls
}

/// The slowest call of the run's close-up, in ms (0 when it has none).
pub(super) fn slowest_ms(details: &[Detail]) -> f64 {
    window(details)
        .map_or(0.0, |w| calls_in(details, w).iter().map(|d| d.latency.as_secs_f64() * 1e3).fold(0.0, f64::max))
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    fn every(step_ms: u64, until_ms: u64) -> Vec<Detail> {
        (0..until_ms / step_ms)
            .map(|i| Detail {
                sent: Duration::from_millis(i * step_ms),
                latency: Duration::from_millis(1),
                code: Code::Ok,
                error: None,
            })
            .collect()
    }

    #[test]
    fn the_window_holds_about_a_hundred_calls_from_the_middle() {
        // 200 calls/s for 5 s: 100 calls take 0.5 s, from 2 s (the middle, on a multiple of the width).
        let (start, width) = window(&every(5, 5_000)).expect("a window");
        assert_eq!((start, width), (Duration::from_secs(2), Duration::from_millis(500)));
        assert_eq!(calls_in(&every(5, 5_000), (start, width)).len(), 100);
        // 10 000 calls/s: the narrowest window, 50 ms.
        let fast: Vec<Detail> =
            (0..20_000u64).map(|i| Detail { sent: Duration::from_micros(i * 100), ..every(1, 1)[0].clone() }).collect();
        assert_eq!(window(&fast).expect("a window").1, Duration::from_millis(50));
        assert_eq!(window(&every(5, 5)), None, "one call has no close-up");
        assert_eq!(window(&every(20, 5_000)), None, "50 calls/s for 5 s: 2 s would be no close-up");
    }
}
