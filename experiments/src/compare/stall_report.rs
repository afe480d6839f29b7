//! How the report shows each round's stalls ([`super::stalls`]): a table of the stalls the servers kept, by call,
//! cause and innermost own frame (the whole function, with its file and line), in `report.md` and `report.html`;
//! and, in `report.html`, a band on the round's probe latency-over-time chart for each kept stall, from its start
//! and as wide as it lasted, titled with its call, cause and frame, so the probe's spikes line up with the stalls
//! that caused them.
//!
//! The chart is drawn by `offload_loadgen::html`, which knows nothing of stalls; the bands are put into its SVG
//! here, placed on the axis the chart labels itself (its plot frame and its second ticks), so they cannot drift
//! from it. A chart not found as expected gets no bands; the page is otherwise unchanged.

use std::{fmt::Write as _, time::Duration};

use offload_loadgen::html::{Table, escape};

use super::{output::Comparison, stall_events::StallEvent, stalls::Stalls};

/// What the stalls table is, above it.
const CAPTION: &str = "The stalls each round's servers kept (GET /debug/stalls at the round's end: the last 64 per \
     server, those that began in the round), by call, cause and the innermost frame of the program's own code; \
     the summary's stall counts are the counters', all of them";

/// The stalls table's column of frames.
const FRAME: &str = "innermost own frame";

/// The probe's latency chart in a round's section, by its label (`<run>: latency over time`).
const PROBE_CHART: &str = r#"aria-label="probe: latency over time""#;

/// The bands' colour: none of the chart's own (blue p50, orange p99, grey-blue calls, red failures).
const STALL: &str = "#7b3fa0";

impl Comparison {
    /// The kept stalls of every round, grouped; `None` when no round kept any.
    pub(super) fn stalls_table(&self) -> Option<Table> {
        let mut rows = Vec::new();
        for r in &self.rounds {
            rows.extend(r.stalls.as_ref().map_or_else(Vec::new, |s| groups(&r.label, &s.kept)));
        }
        (!rows.is_empty()).then(|| Table {
            caption: CAPTION.to_owned(),
            header: ["round", "call", "cause", FRAME, "stalls kept", "longest ms", "first at s"]
                .map(str::to_owned)
                .to_vec(),
            rows,
        })
    }

    /// `report.md`'s stalls section (empty when no round kept a stall).
    pub(super) fn stalls_markdown(&self) -> String {
        self.stalls_table().map_or_else(String::new, |table| markdown(&table))
    }
}

/// The stalls table as a markdown section: its caption, then the table, frames as code (a Rust path's `<T as U>`
/// would otherwise be read as an HTML tag) and `|` escaped.
fn markdown(table: &Table) -> String {
    let mut md = format!("## Where the runtime stalled\n\n{}.\n\n| {} |\n|", table.caption, table.header.join(" | "));
    let _ = writeln!(md, "{}", "---|".repeat(table.header.len()));
    let frame = table.header.iter().position(|h| h == FRAME);
    for row in &table.rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| if Some(i) == frame && !c.starts_with('–') { format!("`{c}`") } else { c.clone() })
            .map(|c| c.replace('|', "\\|"))
            .collect();
        let _ = writeln!(md, "| {} |", cells.join(" | "));
    }
    md.push('\n');
    md
}

/// A round's kept stalls of one call, cause and frame.
struct Group<'a> {
    call: &'a str,
    cause: &'a str,
    frame: String,
    count: usize,
    longest: Duration,
    first: Duration,
}

/// One row per call, cause and frame of a round's kept stalls, the most frequent first.
fn groups(round: &str, kept: &[StallEvent]) -> Vec<Vec<String>> {
    let mut groups: Vec<Group<'_>> = Vec::new();
    for e in kept {
        let frame = e.frame.as_ref().map_or_else(|| "– (no stack taken)".to_owned(), |f| f.full());
        match groups.iter_mut().find(|g| g.call == e.call && g.cause == e.cause && g.frame == frame) {
            Some(g) => {
                g.count += 1;
                g.longest = g.longest.max(e.length);
            }
            None => {
                groups.push(Group { call: &e.call, cause: &e.cause, frame, count: 1, longest: e.length, first: e.at })
            }
        }
    }
    groups.sort_by(|a, b| b.count.cmp(&a.count).then(a.first.cmp(&b.first)));
    groups
        .into_iter()
        .map(|g| {
            vec![
                round.to_owned(),
                g.call.to_owned(),
                g.cause.to_owned(),
                g.frame,
                g.count.to_string(),
                format!("{:.1}", g.longest.as_secs_f64() * 1e3),
                format!("{:.3}", g.first.as_secs_f64()),
            ]
        })
        .collect()
}

/// The time axis of a drawn chart, as its own markup states it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Axis {
    /// The plot frame, in the SVG's units.
    left: f64,
    right: f64,
    top: f64,
    height: f64,
    /// A labelled tick: its x and its time in seconds, and the units per second.
    x0: f64,
    t0: f64,
    per_second: f64,
}

impl Axis {
    /// The axis of an `<svg>…</svg>` drawn by `offload_loadgen::html`, and where its plot frame's element ends
    /// (bands go right after it: over the background, under the calls and lines).
    fn read(svg: &str) -> Option<(Self, usize)> {
        let frame_at = svg.find(r#"<rect class="frame""#)?;
        let frame_end = frame_at + svg[frame_at..].find("/>")? + 2;
        let frame = &svg[frame_at..frame_end];
        let (left, top, width, height) =
            (attr(frame, "x")?, attr(frame, "y")?, attr(frame, "width")?, attr(frame, "height")?);
        // The second ticks: `<text class="tick" x="58.0" …>0.5 s</text>` (the value ticks end in `ms`).
        let ticks: Vec<(f64, f64)> = svg
            .match_indices(r#"<text class="tick""#)
            .filter_map(|(at, _)| {
                let element = &svg[at..at + svg[at..].find("</text>")?];
                let (tag, label) = element.split_once('>')?;
                Some((attr(tag, "x")?, label.strip_suffix(" s")?.parse::<f64>().ok()?))
            })
            .collect();
        let (&(x0, t0), &(x1, t1)) = (ticks.first()?, ticks.last()?);
        if t1 <= t0 || width <= 0.0 {
            return None;
        }
        let axis = Self { left, right: left + width, top, height, x0, t0, per_second: (x1 - x0) / (t1 - t0) };
        Some((axis, frame_end))
    }

    /// Where time `t` (from the run's start) is drawn, kept inside the plot like the chart's own calls.
    fn x(&self, t: Duration) -> f64 {
        (self.x0 + (t.as_secs_f64() - self.t0) * self.per_second).clamp(self.left, self.right)
    }
}

/// The number in attribute `name="…"` of a tag.
fn attr(tag: &str, name: &str) -> Option<f64> {
    let key = format!(" {name}=\"");
    let from = tag.find(&key)? + key.len();
    tag[from..from + tag[from..].find('"')?].parse().ok()
}

/// `page` (as `offload_loadgen::html::render_rounds` drew it, one section per round in the order of `rounds`) with
/// each round's kept stalls banded on its probe's latency-over-time chart.
pub(super) fn mark_charts(mut page: String, rounds: &[Option<&Stalls>]) -> String {
    for (i, stalls) in rounds.iter().enumerate() {
        let Some(stalls) = stalls.filter(|s| !s.kept.is_empty()) else { continue };
        let Some(section) = page.find(&format!("<section id=\"round-{i}\">")) else { continue };
        let Some(end) = page[section..].find("</section>").map(|p| section + p) else { continue };
        let Some(label) = page[section..end].find(PROBE_CHART).map(|p| section + p) else { continue };
        let (Some(start), Some(close)) = (page[..label].rfind("<svg"), page[label..end].find("</svg>")) else {
            continue;
        };
        let Some((axis, after_frame)) = Axis::read(&page[start..label + close]) else { continue };
        page.insert_str(start + after_frame, &bands(&axis, stalls));
    }
    page
}

/// A band per kept stall, with a title naming it, and a legend at the chart's top right.
fn bands(axis: &Axis, stalls: &Stalls) -> String {
    let mut out = String::from(r#"<g class="stalls">"#);
    for e in &stalls.kept {
        let x = axis.x(e.at);
        // At least a pixel or so: a 10 ms stall on a minute's axis would not show.
        let width = (axis.x(e.at + e.length) - x).max(1.5);
        let title = format!(
            "stall of {:.1} ms{} at {:.3} s · {} · {} · {} · {}",
            e.length.as_secs_f64() * 1e3,
            if e.ongoing { " (still going on at the end)" } else { "" },
            e.at.as_secs_f64(),
            e.call,
            e.cause,
            e.frame.as_ref().map_or_else(|| "no stack taken".to_owned(), |f| f.full()),
            e.runtime,
        );
        let _ = write!(
            out,
            r#"<rect class="stall" x="{x:.1}" y="{y:.1}" width="{width:.1}" height="{h:.1}" fill="{STALL}" fill-opacity="0.22"><title>{}</title></rect>"#,
            escape(&title),
            y = axis.top,
            h = axis.height,
        );
    }
    let _ = write!(
        out,
        r#"<text class="legend" x="{x:.1}" y="15" text-anchor="end"><tspan fill="{STALL}">▮</tspan> stall: {} kept of {:.0} in the round</text></g>"#,
        stalls.kept.len(),
        stalls.total,
        x = axis.right,
    );
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use offload_loadgen::{
        html::{self, Page, Round, Run},
        recording::Recording,
        report::{Options, Report},
    };

    use super::{
        super::stall_events::{
            in_window,
            tests::{SAMPLE, round_start},
        },
        *,
    };

    /// Four seconds of probes every 10 ms at 1 ms, and one failed call sent at `failed_at` (drawn as a dot of its
    /// own colour: where the chart puts that moment).
    fn probes(failed_at: Duration) -> Recording {
        let mut r = Recording::new();
        for i in 0..400u64 {
            r.record_call(Duration::from_millis(i * 10 + 3), Duration::from_millis(1), Ok(()));
        }
        r.record_call(failed_at, Duration::from_millis(15), Err(tonic::Status::unavailable("stalled")));
        r.elapsed = Duration::from_secs(4);
        r
    }

    fn report(recording: &Recording) -> Report {
        Report::new(recording, Options::new("offload.v1.Gateway.Factorial n=20", "127.0.0.1").open_loop_at(Some(100.0)))
    }

    /// The `<svg>…</svg>` of round `i`'s chart labelled `label`.
    fn chart<'a>(page: &'a str, i: usize, label: &str) -> &'a str {
        let section = &page[page.find(&format!("<section id=\"round-{i}\">")).expect("the round's section")..];
        let section = &section[..section.find("</section>").expect("closed")];
        let at = section.find(&format!("aria-label=\"{label}: latency over time\"")).expect("the chart");
        let start = section[..at].rfind("<svg").expect("its svg");
        &section[start..at + section[at..].find("</svg>").expect("closed") + "</svg>".len()]
    }

    /// The `x` and `<title>` of every `<rect class="stall">` in `svg`.
    fn marks(svg: &str) -> Vec<(f64, String)> {
        svg.match_indices(r#"<rect class="stall""#)
            .map(|(at, _)| {
                let element = &svg[at..at + svg[at..].find("</rect>").expect("closed")];
                let title = element.split_once("<title>").expect("a title").1.trim_end_matches("</title>");
                (attr(element, "x").expect("x"), title.to_owned())
            })
            .collect()
    }

    #[test]
    fn each_kept_stall_of_a_round_is_one_band_on_its_probe_chart_where_the_chart_puts_its_start() {
        let kept = in_window(SAMPLE, round_start(), Duration::from_secs(4)).expect("parsed");
        let first = kept[0].at;
        let stalls = Stalls { total: 45.0, culprit: None, kept };
        let (stalled, quiet) = (probes(first), probes(Duration::from_millis(1_234)));
        let (stalled_report, quiet_report) = (report(&stalled), report(&quiet));
        let run = |recording, report| Run { name: "probe".to_owned(), report, recording };
        let page = html::render_rounds(&Page {
            title: "t".into(),
            facts: Vec::new(),
            tables: Vec::new(),
            notes: Vec::new(),
            rounds: vec![
                Round { name: "inline".into(), note: String::new(), runs: vec![run(&stalled, &stalled_report)] },
                Round { name: "rayon".into(), note: String::new(), runs: vec![run(&quiet, &quiet_report)] },
            ],
        });
        let marked = mark_charts(page.clone(), &[Some(&stalls), None]);

        let svg = chart(&marked, 0, "probe");
        let bands = marks(svg);
        assert_eq!(bands.len(), 4, "one band per stall kept in the round: {bands:?}");
        assert!(bands.windows(2).all(|w| w[0].0 < w[1].0), "in time order: {bands:?}");
        // The failed call sent when the first stall began is a dot `M<x> <y>h0.1` in the failed calls' path.
        let failed = svg.split(r#"class="failed-calls" d="M"#).nth(1).expect("the failed call's dot");
        let dot_x: f64 = failed.split(' ').next().and_then(|x| x.parse().ok()).expect("its x");
        assert!((bands[0].0 - dot_x).abs() < 0.3, "band at {} but the chart draws {first:?} at {dot_x}", bands[0].0);
        assert_eq!(
            bands[0].1,
            "stall of 15.4 ms at 0.551 s · SumOfSquares/inline · cpu · \
             offload_compute::kernel::sum_of_squares::simd::lanes_avx512 (compute/src/kernel/sum_of_squares/simd.rs:88) \
             · offload-compute"
        );
        assert!(bands[3].1.contains("(still going on at the end)") && bands[3].1.contains("syscall clock_nanosleep"));
        assert!(svg.contains("stall: 4 kept of 45 in the round"), "the legend says how many were kept");

        assert!(marks(chart(&marked, 1, "probe")).is_empty(), "a round without stalls gets no band");
        assert_eq!(marked.len() - page.len(), svg.len() - chart(&page, 0, "probe").len(), "nothing else changed");
        assert_eq!(marked.matches("<svg").count(), page.matches("<svg").count());
    }

    #[test]
    fn the_table_groups_a_rounds_stalls_by_call_cause_and_frame() {
        let kept = in_window(SAMPLE, round_start(), Duration::from_secs(4)).expect("parsed");
        let rows = groups("inline", &kept);
        let row = |i: usize| rows[i].iter().map(String::as_str).collect::<Vec<_>>();
        assert_eq!(rows.len(), 4, "{rows:?}");
        assert_eq!(
            row(0),
            [
                "inline",
                "SumOfSquares/inline",
                "cpu",
                "offload_compute::kernel::sum_of_squares::simd::lanes_avx512 (compute/src/kernel/sum_of_squares/simd.rs:88)",
                "1",
                "15.4",
                "0.551"
            ]
        );
        assert_eq!(row(1)[1..4], ["SumOfSquares/inline", "descheduled", "– (no stack taken)"]);
        assert_eq!(
            row(2)[1..4],
            [
                "none/unknown",
                "lock",
                "<offload_serve::health::Reporter as core::future::Future>::poll (serve/src/health.rs:120)"
            ]
        );
    }

    #[test]
    fn the_markdown_section_is_its_caption_then_the_table_with_pipes_escaped() {
        let table = Table {
            caption: CAPTION.to_owned(),
            header: vec!["round".into(), FRAME.into()],
            rows: vec![
                vec!["inline".into(), "<a as b::C>::f (x|y.rs:1)".into()],
                vec!["inline".into(), "– (no stack taken)".into()],
            ],
        };
        let md = markdown(&table);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[0], "## Where the runtime stalled");
        assert_eq!(lines[2], format!("{CAPTION}."));
        assert_eq!(
            lines[4..8],
            [
                "| round | innermost own frame |",
                "|---|---|",
                "| inline | `<a as b::C>::f (x\\|y.rs:1)` |",
                "| inline | – (no stack taken) |"
            ]
        );
    }
}
