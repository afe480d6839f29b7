//! The close-up: every call of a short window in the middle of the run, in order of sending and joined by a line,
//! on a linear latency axis.
//!
//! Slices of 100 ms or more average a stall pattern away: under `INLINE`, probes sent every 5 ms while a 15 ms job
//! holds the runtime each wait out the rest of it, so latency falls call after call and jumps back up at the next
//! job — a saw-tooth whose teeth are a few pixels wide on a whole-run chart. A window of about a hundred calls
//! draws each tooth, and a runtime that is never blocked as the flat line it is.

use std::{fmt::Write as _, time::Duration};

use tonic::Code;

use super::chart::{DOT, FAILED, Frame, LEFT, P50, linear_ticks, nice_above, number};
use crate::recording::Detail;

/// Calls a close-up holds, about: enough to see a pattern repeat, few enough to tell each call apart.
const CALLS: f64 = 100.0;
/// Narrowest and widest window, in seconds: a fast run's hundred calls still get a readable time axis, and a slow
/// run's close-up stays a close-up.
const NARROWEST: f64 = 0.05;
const WIDEST: f64 = 5.0;
const HEIGHT: f64 = 220.0;

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
fn calls_in(details: &[Detail], (start, width): (Duration, Duration)) -> Vec<&Detail> {
    let mut calls: Vec<&Detail> = details.iter().filter(|d| d.sent >= start && d.sent < start + width).collect();
    calls.sort_by_key(|d| d.sent);
    calls
}

/// The slowest call of the run's close-up, in ms (0 when it has none).
pub(super) fn slowest_ms(details: &[Detail]) -> f64 {
    window(details)
        .map_or(0.0, |w| calls_in(details, w).iter().map(|d| d.latency.as_secs_f64() * 1e3).fold(0.0, f64::max))
}

/// The close-up chart, its latency axis from 0 to `top_ms` (shared by runs compared by eye); empty when the run
/// has too few calls for one.
pub(super) fn chart(details: &[Detail], top_ms: f64, label: &str) -> String {
    let Some(window) = window(details) else { return String::new() };
    let top_ms = nice_above(top_ms.max(0.01));
    let frame = Frame { origin: window.0.as_secs_f64(), span: window.1.as_secs_f64(), height: HEIGHT };
    let bottom = frame.plot_bottom();
    let y = |ms: f64| bottom - (bottom - super::chart::TOP) * (ms / top_ms).min(1.0);
    let mut out = String::new();
    frame.open(&mut out, &format!("{label}: close-up, every call"));
    for tick in linear_ticks(top_ms, 4.0) {
        frame.value_tick(&mut out, y(tick), &format!("{} ms", number(tick)));
    }
    let calls = calls_in(details, window);
    let point = |d: &Detail| (frame.x(d.sent), y(d.latency.as_secs_f64() * 1e3));
    let (mut line, mut dots, mut failed) = (String::new(), String::new(), String::new());
    for d in &calls {
        let (x, y) = point(d);
        if d.code == Code::Ok {
            let _ = write!(line, "{}{x:.1} {y:.1}", if line.is_empty() { 'M' } else { 'L' });
            let _ = write!(dots, "M{x:.1} {y:.1}h0.1");
        } else {
            let _ = write!(failed, "M{x:.1} {y:.1}h0.1");
        }
    }
    for (class, d, colour, width) in [
        ("closeup-line", &line, DOT, 1.2),
        ("closeup-calls", &dots, P50, 4.0),
        ("closeup-failed", &failed, FAILED, 4.0),
    ] {
        if !d.is_empty() {
            let _ = write!(
                out,
                r#"<path class="{class}" d="{d}" stroke="{colour}" stroke-width="{width}" stroke-linecap="round" stroke-linejoin="round" fill="none"/>"#
            );
        }
    }
    let _ = write!(
        out,
        r#"<text class="legend" x="{LEFT}" y="15">Close-up: the {n} calls sent from {from} s to {to} s, in order of sending (linear axis)</text></svg>"#,
        n = calls.len(),
        from = number(window.0.as_secs_f64()),
        to = number((window.0 + window.1).as_secs_f64()),
    );
    out
}

#[cfg(test)]
mod tests {
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
