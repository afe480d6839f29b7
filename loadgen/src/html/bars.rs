//! Grouped bars: one group per run compared (a mode, a wait style), one bar per series in it, on a linear or log
//! value axis, each group with an optional mark across it (an ideal to reach). The charts that set runs side by
//! side, drawn with the same SVG and axes as the report's time charts ([`super::chart`]).
//!
//! Styled with presentation attributes rather than the page's CSS classes: the same markup is a chart inside a
//! report page and a standalone `.svg` file.

use std::fmt::Write as _;

use super::{
    axis::{linear_ticks, log_ticks, nice_above, nice_below, number},
    escape,
};

/// One bar per group, in `color`, named `name` in the legend.
#[derive(Debug, Clone)]
pub struct Series<'a> {
    pub name: &'a str,
    pub color: &'a str,
    /// One per group; a value of 0 (or below the log axis) draws no bar.
    pub values: Vec<f64>,
}

/// How values map to height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// From 0.
    Linear,
    /// Between 1-2-5 bounds around the values: for values orders of magnitude apart (a blocked runtime's latency
    /// beside an awaiting one's).
    Log,
}

/// What [`grouped`] draws.
#[derive(Debug, Clone)]
pub struct Bars<'a> {
    /// Above the plot, and the chart's accessible name.
    pub title: &'a str,
    /// The value axis's name, units included.
    pub axis: &'a str,
    /// The groups' names, under them.
    pub groups: &'a [String],
    pub series: &'a [Series<'a>],
    /// A mark across each group (one value per group), named in the legend.
    pub marks: Option<(&'a str, &'a [f64])>,
    pub scale: Scale,
}

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 56.0;
const BOTTOM: f64 = 36.0;
const INK: &str = "#1d2733";
const MUTED: &str = "#5b6878";
const LINE: &str = "#d9e0e8";
const FRAME: &str = "#aab6c3";
const MARK: &str = "#c8312f";
const FONT: &str = r#"font-family="system-ui, sans-serif""#;

/// The chart as one `<svg>` element.
pub fn grouped(chart: &Bars) -> String {
    let values = chart.series.iter().flat_map(|s| s.values.iter().copied());
    let values: Vec<f64> = values.chain(chart.marks.iter().flat_map(|(_, m)| m.iter().copied())).collect();
    let axis = Axis::around(&values, chart.scale);
    let (plot_top, plot_bottom) = (TOP, HEIGHT - BOTTOM);
    let mut out = format!(
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{title}" xmlns="http://www.w3.org/2000/svg" {FONT}><text x="{LEFT}" y="20" font-size="16" fill="{INK}">{title}</text>"#,
        title = escape(chart.title),
    );
    for tick in axis.ticks() {
        let y = axis.y(tick);
        let _ = write!(
            out,
            r#"<line x1="{LEFT}" y1="{y:.1}" x2="{x2}" y2="{y:.1}" stroke="{LINE}"/><text x="{tx}" y="{ly:.1}" text-anchor="end" font-size="11" fill="{MUTED}">{t}</text>"#,
            x2 = WIDTH - RIGHT,
            tx = LEFT - 6.0,
            ly = y + 4.0,
            t = number(tick),
        );
    }
    let _ = write!(
        out,
        r#"<text transform="translate(14 {cy:.1}) rotate(-90)" text-anchor="middle" font-size="12" fill="{MUTED}">{axis}</text>"#,
        cy = (plot_top + plot_bottom) / 2.0,
        axis = escape(chart.axis),
    );
    let groups = chart.groups.len().max(1);
    let band = (WIDTH - LEFT - RIGHT) / groups as f64;
    let bar = band * 0.8 / chart.series.len().max(1) as f64;
    for (g, name) in chart.groups.iter().enumerate() {
        let left = LEFT + band * g as f64 + band * 0.1;
        for (k, series) in chart.series.iter().enumerate() {
            let Some(&value) = series.values.get(g) else { continue };
            if value <= 0.0 {
                continue;
            }
            let top = axis.y(value).clamp(plot_top, plot_bottom);
            let _ = write!(
                out,
                r#"<rect x="{x:.1}" y="{top:.1}" width="{w:.1}" height="{h:.1}" fill="{color}"><title>{name}, {series}: {v}</title></rect>"#,
                x = left + bar * k as f64 + 1.0,
                w = (bar - 2.0).max(1.0),
                h = plot_bottom - top,
                color = series.color,
                name = escape(name),
                series = escape(series.name),
                v = number(value),
            );
        }
        if let Some(&mark) = chart.marks.and_then(|(_, marks)| marks.get(g)) {
            let y = axis.y(mark).clamp(plot_top, plot_bottom);
            let _ = write!(
                out,
                r#"<line x1="{x1:.1}" y1="{y:.1}" x2="{x2:.1}" y2="{y:.1}" stroke="{MARK}" stroke-width="2.5"/>"#,
                x1 = left - band * 0.05,
                x2 = left + band * 0.85,
            );
        }
        let _ = write!(
            out,
            r#"<text x="{cx:.1}" y="{ty:.1}" text-anchor="middle" font-size="12" fill="{INK}">{name}</text>"#,
            cx = LEFT + band * (g as f64 + 0.5),
            ty = plot_bottom + 18.0,
            name = escape(name),
        );
    }
    let _ = write!(
        out,
        r#"<rect x="{LEFT}" y="{plot_top}" width="{w}" height="{h}" fill="none" stroke="{FRAME}"/>"#,
        w = WIDTH - LEFT - RIGHT,
        h = plot_bottom - plot_top,
    );
    legend(&mut out, chart);
    out.push_str("</svg>");
    out
}

/// The series' and the mark's names with their colours, on one line under the title.
fn legend(out: &mut String, chart: &Bars) {
    let mut x = LEFT;
    let y = 42.0;
    for series in chart.series {
        let _ = write!(
            out,
            r#"<rect x="{x:.1}" y="{sy:.1}" width="10" height="10" fill="{color}"/><text x="{tx:.1}" y="{y}" font-size="12" fill="{INK}">{name}</text>"#,
            sy = y - 9.0,
            color = series.color,
            tx = x + 14.0,
            name = escape(series.name),
        );
        x += 24.0 + 7.0 * series.name.chars().count() as f64;
    }
    if let Some((name, _)) = chart.marks {
        let _ = write!(
            out,
            r#"<line x1="{x:.1}" y1="{ly:.1}" x2="{x2:.1}" y2="{ly:.1}" stroke="{MARK}" stroke-width="2.5"/><text x="{tx:.1}" y="{y}" font-size="12" fill="{INK}">{name}</text>"#,
            ly = y - 4.0,
            x2 = x + 14.0,
            tx = x + 18.0,
            name = escape(name),
        );
    }
}

/// The value axis: its bounds and how a value maps to a height.
struct Axis {
    low: f64,
    high: f64,
    scale: Scale,
}

impl Axis {
    /// Bounds round to 1-2-5 values around `values` (0 to the top on a linear axis), with room above the tallest.
    fn around(values: &[f64], scale: Scale) -> Self {
        let highest = values.iter().copied().fold(0.0, f64::max);
        match scale {
            Scale::Linear => {
                // The next whole step of a 1-2-5 step that gives about five ticks.
                let wanted = (highest * 1.05).max(1e-9);
                let step = nice_above(wanted / 5.0);
                Self { low: 0.0, high: (wanted / step).ceil() * step, scale }
            }
            Scale::Log => {
                let lowest = values.iter().copied().filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
                let (lowest, highest) = if lowest.is_finite() { (lowest, highest) } else { (1.0, 10.0) };
                let low = nice_below(lowest / 2.0);
                Self { low, high: nice_above(highest * 2.0).max(low * 10.0), scale }
            }
        }
    }

    fn ticks(&self) -> Vec<f64> {
        match self.scale {
            Scale::Linear => linear_ticks(self.high, 6.0),
            Scale::Log => log_ticks(self.low, self.high),
        }
    }

    /// The height of `value`: the plot's bottom at `low`, its top at `high`.
    fn y(&self, value: f64) -> f64 {
        let share = match self.scale {
            Scale::Linear => value / self.high,
            Scale::Log => (value.max(self.low).ln() - self.low.ln()) / (self.high.ln() - self.low.ln()),
        };
        let (top, bottom) = (TOP, HEIGHT - BOTTOM);
        bottom - (bottom - top) * share.clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(scale: Scale, values: Vec<f64>, marks: Option<(&'static str, &'static [f64])>) -> String {
        let groups = ["INLINE".to_owned(), "RAYON <fast>".to_owned()];
        let series = [Series { name: "p99", color: "#e07b00", values }];
        grouped(&Bars { title: "probe latency", axis: "ms", groups: &groups, series: &series, marks, scale })
    }

    #[test]
    fn each_value_is_a_bar_named_in_its_tooltip_and_names_are_escaped() {
        let svg = chart(Scale::Log, vec![120.0, 0.4], None);
        assert_eq!(svg.matches("<title>").count(), 2, "{svg}");
        assert!(svg.contains("INLINE, p99: 120"), "{svg}");
        assert!(svg.contains("RAYON &lt;fast&gt;"), "{svg}");
        assert!(!svg.contains("<fast>"), "{svg}");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }

    #[test]
    fn a_log_axis_spans_orders_of_magnitude_and_taller_values_draw_taller_bars() {
        let axis = Axis::around(&[120.0, 0.4], Scale::Log);
        assert!(axis.low <= 0.2 && axis.high >= 240.0, "{} .. {}", axis.low, axis.high);
        assert!(axis.y(120.0) < axis.y(0.4), "higher values sit higher (smaller y)");
        let linear = Axis::around(&[30.0, 10.0], Scale::Linear);
        assert_eq!(linear.low, 0.0);
        assert!(linear.high >= 31.5 && linear.high <= 40.0, "{}", linear.high);
        assert!((linear.y(0.0) - (HEIGHT - BOTTOM)).abs() < 1e-9);
    }

    #[test]
    fn marks_are_drawn_across_their_groups_and_named() {
        let svg = chart(Scale::Linear, vec![30.0, 10.0], Some(("ideal", &[40.0, 40.0])));
        assert_eq!(svg.matches(&format!("stroke=\"{MARK}\"")).count(), 3, "two marks and the legend's: {svg}");
        assert!(svg.contains(">ideal</text>"));
    }

    #[test]
    fn no_values_still_draw_an_axis() {
        let svg = chart(Scale::Log, vec![0.0, 0.0], None);
        assert!(!svg.contains("<title>"));
        assert!(svg.contains("<line"));
    }
}
