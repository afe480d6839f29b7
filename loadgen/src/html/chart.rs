//! The report's charts as inline SVG, written directly: three chart shapes (latency over time, throughput over
//! time, a histogram) need a few dozen elements each, which reads plainer than a plotting library's builder, and
//! keeps the load generator free of one.
//!
//! Every chart draws into a `viewBox` and is scaled by the page's CSS to its column, so the same markup fits a
//! laptop and a wide screen. Text inside goes through [`super::escape`] like the rest of the page.

use std::{fmt::Write as _, time::Duration};

use tonic::Code;

use super::{
    axis::{linear_ticks, log_ticks, nice_above, nice_below, number, significant},
    escape,
};
use crate::{recording::Detail, timeline::Timeline};

/// Width of every time chart's drawing (viewBox units; the page scales it to its column).
pub(super) const WIDTH: f64 = 900.0;
/// Room left of the plot for the y labels, and below it for the x labels.
pub(super) const LEFT: f64 = 58.0;
pub(super) const RIGHT: f64 = 12.0;
pub(super) const TOP: f64 = 22.0;
pub(super) const BOTTOM: f64 = 26.0;
/// Heights of the latency plot and of the throughput strip under it: latency is the story, throughput the context.
const LATENCY_HEIGHT: f64 = 280.0;
const THROUGHPUT_HEIGHT: f64 = 130.0;
/// Individual calls drawn as dots, at most: beyond this the dots are one grey band anyway, and the page stays a
/// few hundred kilobytes whatever the run's length. Calls are taken at an even stride, in order of sending.
const MAX_DOTS: usize = 6_000;

/// Colours, one meaning each across the page (CSS has the same ones for the legend text).
pub(super) const P50: &str = "#2f6fb0";
pub(super) const P99: &str = "#e07b00";
pub(super) const DOT: &str = "#9db4cc";
const OK: &str = "#3a9a5b";
pub(super) const FAILED: &str = "#c8312f";

/// The ranges a time chart is drawn on, shared by the charts that should be compared by eye (every round's probe
/// on the same axes, so a saw-tooth and a flat line are seen at their true relative size).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scales {
    /// Latency axis, in ms, log scale: from a fast probe's tens of microseconds to a blocked one's tens of
    /// milliseconds, both are read on one chart.
    pub low_ms: f64,
    pub high_ms: f64,
    /// Throughput axis top, calls per second.
    pub top_rate: f64,
    /// Time axis end.
    pub span: Duration,
    /// The close-up's latency axis top, in ms (linear).
    pub closeup_top_ms: f64,
}

impl Scales {
    /// Ranges wide enough for every call of every timeline given.
    pub fn covering<'a>(runs: impl IntoIterator<Item = (&'a Timeline, &'a [Detail])>) -> Self {
        let (mut low, mut high, mut top, mut span) = (f64::MAX, 0.0f64, 0.0f64, Duration::ZERO);
        let mut closeup_top_ms = 0.0f64;
        for (timeline, details) in runs {
            closeup_top_ms = closeup_top_ms.max(super::closeup_window::slowest_ms(details));
            for d in details {
                let ms = d.latency.as_secs_f64() * 1e3;
                low = low.min(ms);
                high = high.max(ms);
            }
            for s in &timeline.slices {
                top = top.max(timeline.ok_rate(s) + timeline.failed_rate(s));
            }
            span = span.max(timeline.span());
        }
        if high <= 0.0 {
            (low, high) = (0.1, 1.0);
        }
        let low = nice_below(low.max(0.001));
        let high = nice_above(high).max(low * 10.0);
        Self {
            low_ms: low,
            high_ms: high,
            top_rate: nice_above(top.max(1.0)),
            span: span.max(Duration::from_secs(1)),
            closeup_top_ms,
        }
    }
}

/// A time chart's frame: the x mapping shared by the latency and throughput charts of one run.
pub(super) struct Frame {
    /// Time at the left edge, in seconds from the start of the run.
    pub(super) origin: f64,
    /// Time the width spans, in seconds.
    pub(super) span: f64,
    pub(super) height: f64,
}

impl Frame {
    pub(super) fn x(&self, t: Duration) -> f64 {
        LEFT + (WIDTH - LEFT - RIGHT) * ((t.as_secs_f64() - self.origin) / self.span).clamp(0.0, 1.0)
    }

    pub(super) fn plot_bottom(&self) -> f64 {
        self.height - BOTTOM
    }

    /// A horizontal grid line at height `y`, labelled `text` on the value axis.
    pub(super) fn value_tick(&self, out: &mut String, y: f64, text: &str) {
        let _ = write!(
            out,
            r#"<line class="grid" x1="{LEFT}" y1="{y:.1}" x2="{x2}" y2="{y:.1}"/><text class="tick" x="{tx}" y="{ly:.1}" text-anchor="end">{text}</text>"#,
            x2 = WIDTH - RIGHT,
            tx = LEFT - 6.0,
            ly = y + 4.0,
        );
    }

    /// Opens the `<svg>`, with the vertical time grid and its second labels.
    pub(super) fn open(&self, out: &mut String, label: &str) {
        let _ = write!(
            out,
            r#"<svg class="chart" viewBox="0 0 {WIDTH} {h}" role="img" aria-label="{label}" xmlns="http://www.w3.org/2000/svg">"#,
            h = self.height,
            label = escape(label),
        );
        let (top, bottom) = (TOP, self.plot_bottom());
        for t in linear_ticks(self.span, 10.0) {
            let t = self.origin + t;
            let x = self.x(Duration::from_secs_f64(t));
            let _ = write!(
                out,
                r#"<line class="grid" x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{bottom}"/><text class="tick" x="{x:.1}" y="{ty}" text-anchor="middle">{t} s</text>"#,
                ty = bottom + 16.0,
                t = number(t),
            );
        }
        let _ = write!(
            out,
            r#"<rect class="frame" x="{LEFT}" y="{top}" width="{w}" height="{h}"/>"#,
            w = WIDTH - LEFT - RIGHT,
            h = bottom - top,
        );
    }
}

/// Per-slice p50 and p99 as lines over every call as a dot, on a log latency axis.
pub fn latency_over_time(timeline: &Timeline, details: &[Detail], scales: &Scales, label: &str) -> String {
    let frame = Frame { origin: 0.0, span: scales.span.as_secs_f64(), height: LATENCY_HEIGHT };
    let (low, high) = (scales.low_ms.log10(), scales.high_ms.log10());
    let bottom = frame.plot_bottom();
    let y = |ms: f64| bottom - (bottom - TOP) * ((ms.max(scales.low_ms).log10() - low) / (high - low)).min(1.0);
    let mut out = String::new();
    frame.open(&mut out, &format!("{label}: latency over time"));
    for tick in log_ticks(scales.low_ms, scales.high_ms) {
        frame.value_tick(&mut out, y(tick), &format!("{} ms", number(tick)));
    }
    let stride = details.len().div_ceil(MAX_DOTS).max(1);
    for (class, colour, ok) in [("calls", DOT, true), ("failed-calls", FAILED, false)] {
        let mut path = String::new();
        for d in details.iter().step_by(stride).filter(|d| (d.code == Code::Ok) == ok) {
            let _ = write!(path, "M{:.1} {:.1}h0.1", frame.x(d.sent), y(d.latency.as_secs_f64() * 1e3));
        }
        if !path.is_empty() {
            let _ = write!(
                out,
                r#"<path class="{class}" d="{path}" stroke="{colour}" stroke-width="3" stroke-linecap="round" fill="none"/>"#
            );
        }
    }
    let half = timeline.width / 2;
    for (class, colour, pick) in
        [("p50", P50, (|s| s.p50) as fn(&crate::timeline::Slice) -> Option<Duration>), ("p99", P99, |s| s.p99)]
    {
        let mut path = String::new();
        let mut pen_down = false;
        for s in &timeline.slices {
            match pick(s) {
                Some(v) => {
                    let command = if pen_down { 'L' } else { 'M' };
                    let _ = write!(path, "{command}{:.1} {:.1}", frame.x(s.start + half), y(v.as_secs_f64() * 1e3));
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        if !path.is_empty() {
            let _ = write!(
                out,
                r#"<path class="{class}" d="{path}" stroke="{colour}" stroke-width="2.5" stroke-linejoin="round" fill="none"/>"#
            );
        }
    }
    let _ = write!(
        out,
        r#"<text class="legend" x="{LEFT}" y="15"><tspan fill="{P50}">━ p50</tspan> <tspan fill="{P99}">━ p99</tspan> per {w} (successful calls, by send time) · <tspan fill="{DOT}">●</tspan> each call{failed}</text></svg>"#,
        w = width_name(timeline.width),
        failed = if details.iter().any(|d| d.code != Code::Ok) {
            format!(r#" · <tspan fill="{FAILED}">●</tspan> failed call"#)
        } else {
            String::new()
        },
    );
    out
}

/// `1 s`, `100 ms`.
fn width_name(width: Duration) -> String {
    if width >= Duration::from_secs(1) {
        format!("{} s", number(width.as_secs_f64()))
    } else {
        format!("{} ms", width.as_millis())
    }
}

/// Successful and failed calls per second, stacked bars per slice, on the latency chart's time axis.
pub fn throughput_over_time(timeline: &Timeline, scales: &Scales, label: &str) -> String {
    let frame = Frame { origin: 0.0, span: scales.span.as_secs_f64(), height: THROUGHPUT_HEIGHT };
    let bottom = frame.plot_bottom();
    let y = |rate: f64| bottom - (bottom - TOP) * (rate / scales.top_rate).min(1.0);
    let mut out = String::new();
    frame.open(&mut out, &format!("{label}: throughput over time"));
    for tick in linear_ticks(scales.top_rate, 3.0) {
        frame.value_tick(&mut out, y(tick), &format!("{}/s", number(tick)));
    }
    for s in &timeline.slices {
        let (x0, x1) = (frame.x(s.start), frame.x(s.start + timeline.width));
        let w = (x1 - x0 - 1.0).max(0.5);
        let (ok, failed) = (timeline.ok_rate(s), timeline.failed_rate(s));
        for (class, colour, from, to) in [("ok", OK, 0.0, ok), ("failed", FAILED, ok, ok + failed)] {
            if to > from {
                let _ = write!(
                    out,
                    r#"<rect class="{class}" x="{x0:.1}" y="{top:.1}" width="{w:.1}" height="{h:.1}" fill="{colour}"/>"#,
                    top = y(to),
                    h = y(from) - y(to),
                );
            }
        }
    }
    let _ = write!(
        out,
        r#"<text class="legend" x="{LEFT}" y="15"><tspan fill="{OK}">■ ok/s</tspan> <tspan fill="{FAILED}">■ failed/s</tspan> per {w} of send time</text></svg>"#,
        w = width_name(timeline.width),
    );
    out
}

/// ghz's latency histogram: one bar per bucket (`mark` in seconds, the bucket's upper bound), its count above.
pub fn histogram(buckets: &[(f64, u64)], label: &str) -> String {
    const W: f64 = 420.0;
    const H: f64 = 240.0;
    let most = buckets.iter().map(|b| b.1).max().unwrap_or(0).max(1) as f64;
    let bottom = H - 40.0;
    let band = (W - 20.0) / buckets.len().max(1) as f64;
    let mut out = format!(
        r#"<svg class="chart histogram" viewBox="0 0 {W} {H}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg"><line class="axis" x1="10" y1="{bottom}" x2="{x2}" y2="{bottom}"/>"#,
        escape(&format!("{label}: latency histogram")),
        x2 = W - 10.0,
    );
    for (i, (mark, count)) in buckets.iter().enumerate() {
        let x = 10.0 + band * i as f64;
        let h = (bottom - 40.0) * *count as f64 / most;
        let centre = x + band / 2.0;
        let _ = write!(
            out,
            r#"<rect class="bar" x="{bx:.1}" y="{by:.1}" width="{bw:.1}" height="{h:.1}" fill="{P50}"/><text class="tick" x="{centre:.1}" y="{cy:.1}" text-anchor="middle">{count}</text><text class="tick" x="{centre:.1}" y="{ly}" text-anchor="end" transform="rotate(-35 {centre:.1} {ly})">{m}</text>"#,
            bx = x + 2.0,
            by = bottom - h,
            bw = (band - 4.0).max(1.0),
            cy = bottom - h - 4.0,
            ly = bottom + 14.0,
            m = significant(mark * 1e3),
        );
    }
    let _ = write!(
        out,
        r#"<text class="legend" x="{x}" y="14" text-anchor="end">calls by latency (ms, bucket upper bound)</text></svg>"#,
        x = W - 10.0,
    );
    out
}
