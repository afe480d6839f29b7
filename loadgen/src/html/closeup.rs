//! The close-up: every call of a short window in the middle of the run, in order of sending and joined by a line,
//! on a linear latency axis.
//!
//! Slices of 100 ms or more average a stall pattern away: under `INLINE`, probes sent every 5 ms while a 15 ms job
//! holds the runtime each wait out the rest of it, so latency falls call after call and jumps back up at the next
//! job — a saw-tooth whose teeth are a few pixels wide on a whole-run chart. A window of about a hundred calls
//! draws each tooth, and a runtime that is never blocked as the flat line it is. Which calls those are is
//! [`super::closeup_window`]'s to say.

use std::fmt::Write as _;

use tonic::Code;

use super::{
    axis::{linear_ticks, nice_above, number},
    chart::{DOT, FAILED, Frame, LEFT, P50},
    closeup_window::{calls_in, window},
};
use crate::recording::Detail;

const HEIGHT: f64 = 220.0;

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
