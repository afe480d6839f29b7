//! The HTML report: one self-contained file (inline CSS and SVG, no script, no network) that opens offline in
//! any browser, for `load -O html` ([`render`]) and for `compare`'s rounds side by side ([`render_rounds`]).
//!
//! Each run shows its numbers as cards, its latency over time ([`crate::timeline`]: per-slice p50 and p99 over
//! every call as a dot, with the throughput beneath on the same time axis, then a close-up of a hundred calls),
//! ghz's latency histogram, and its status codes and errors. Latency over time is the chart that matters: it shows *when* calls were slow, the
//! stall pattern a table of percentiles hides.
//!
//! The markup is well-formed XML (every element closed, every text escaped by [`escape`]), so tests can parse it
//! back with an XML parser, and a method name or error message can never break the page.

mod axis;
pub mod bars;
mod chart;
mod closeup;
mod closeup_window;

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use self::chart::Scales;
use crate::{recording::Recording, report::Report, timeline::Timeline};

/// The page's style sheet, inlined into every page.
const STYLE: &str = include_str!("html/style.css");

/// Percentiles shown as cards: the median, the tail ghz users watch, and ours (p99.9).
const CARD_PERCENTILES: [(f64, &str); 4] = [(50.0, "p50"), (90.0, "p90"), (99.0, "p99"), (99.9, "p99.9")];

/// `text` safe to put in HTML text or a quoted attribute: the five characters with a meaning in markup are
/// replaced by their entities. (Five `match` arms, so no crate for it.)
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The report of one load run (`load -O html`).
pub fn render(report: &Report, recording: &Recording) -> String {
    let run = Run { name: report.options.call.clone(), report, recording };
    let timeline = Timeline::of(recording);
    let scales = Scales::covering([(&timeline, recording.details.as_slice())]);
    // ghz's page is titled by the run's --name, when it has one.
    let title = if report.name.is_empty() {
        report.options.call.clone()
    } else {
        format!("{} · {}", report.name, report.options.call)
    };
    let tags: Vec<String> = report.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut body = String::new();
    // First, before any number: a run the generator limited measured the generator, not the target.
    if let Some(warning) = report.generator.as_ref().and_then(|g| g.warning()) {
        let _ = write!(body, "<p class=\"warning\">{}</p>", escape(&warning));
    }
    let _ = write!(
        body,
        "<header><h1>{}</h1><p>host <code>{}</code> · {} calls in {:.2} s · {:.1} calls/s · {} · ended: {}{}</p></header>",
        escape(&title),
        escape(&report.options.host),
        report.count,
        nanos(report.total).as_secs_f64(),
        report.rps,
        escape(&report.date),
        escape(&report.end_reason),
        if tags.is_empty() { String::new() } else { format!(" · tags <code>{}</code>", escape(&tags.join(", "))) },
    );
    body.push_str(&run_section(&run, &timeline, &scales));
    body.push_str(&additions(report));
    document(&title, &body)
}

/// offload's tables after the run: which shard or shards, the generator's health, the thresholds.
fn additions(report: &Report) -> String {
    let mut rows = Vec::new();
    if let Some(shard) = report.shard {
        rows.push(vec!["shard".into(), shard.to_string()]);
    }
    rows.extend(report.merged_from.iter().map(|m| vec!["merged from".into(), m.clone()]));
    if let Some(g) = &report.generator {
        if let Some(p99) = g.timer_lateness_p99 {
            rows.push(vec!["timer lateness p99".into(), ms(nanos(p99))]);
        }
        rows.push(vec!["CPU per call".into(), ms(nanos(g.cpu_per_call))]);
        rows.push(vec!["core use".into(), format!("{:.0} % of {} thread(s)", g.core_use * 100.0, g.cores)]);
        rows.push(vec!["limited the run".into(), if g.limited { "yes".into() } else { "no".into() }]);
    }
    let mut out = String::new();
    if !rows.is_empty() {
        out.push_str(&table_html(&Table {
            caption: "Load generator".into(),
            header: vec!["".into(), "".into()],
            rows,
        }));
    }
    if !report.thresholds.is_empty() {
        out.push_str(&table_html(&Table {
            caption: "Thresholds".into(),
            header: vec!["threshold".into(), "measured".into(), "result".into()],
            rows: report
                .thresholds
                .iter()
                .map(|o| vec![o.threshold.clone(), o.value.clone(), if o.pass { "pass".into() } else { "FAIL".into() }])
                .collect(),
        }));
    }
    out
}

/// A page of several rounds (`compare`): a summary first, then one section per round with the same charts as
/// [`render`]. Runs of the same name (every round's `probe`, say) are drawn on the same axes, so they can be
/// compared by eye.
#[derive(Debug, Clone)]
pub struct Page<'a> {
    pub title: String,
    /// Lines under the title: what was run, where, when.
    pub facts: Vec<String>,
    /// The summary tables, in order.
    pub tables: Vec<Table>,
    /// Conclusions, one line each, after the tables.
    pub notes: Vec<String>,
    pub rounds: Vec<Round<'a>>,
}

/// A table of text cells (escaped when drawn); the first column is left-aligned, the others right-aligned.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub caption: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// One round: a name, a line saying what it was, and its runs.
#[derive(Debug, Clone)]
pub struct Round<'a> {
    pub name: String,
    pub note: String,
    pub runs: Vec<Run<'a>>,
}

/// One run: what [`render`] shows for a whole page.
#[derive(Debug, Clone)]
pub struct Run<'a> {
    pub name: String,
    pub report: &'a Report,
    pub recording: &'a Recording,
}

/// The page of several rounds.
pub fn render_rounds(page: &Page<'_>) -> String {
    let mut timelines: Vec<Vec<Timeline>> = Vec::new();
    let mut by_name: BTreeMap<&str, Vec<(usize, usize)>> = BTreeMap::new();
    for (i, round) in page.rounds.iter().enumerate() {
        timelines.push(round.runs.iter().map(|run| Timeline::of(run.recording)).collect());
        for (j, run) in round.runs.iter().enumerate() {
            by_name.entry(run.name.as_str()).or_default().push((i, j));
        }
    }
    let scales: BTreeMap<&str, Scales> = by_name
        .iter()
        .map(|(name, at)| {
            let runs = at.iter().map(|&(i, j)| (&timelines[i][j], page.rounds[i].runs[j].recording.details.as_slice()));
            (*name, Scales::covering(runs))
        })
        .collect();

    let mut body = format!("<header><h1>{}</h1><ul>", escape(&page.title));
    for fact in &page.facts {
        let _ = write!(body, "<li>{}</li>", escape(fact));
    }
    body.push_str("</ul></header><nav>");
    for (i, round) in page.rounds.iter().enumerate() {
        let _ = write!(body, "<a href=\"#round-{i}\">{}</a>", escape(&round.name));
    }
    body.push_str("</nav>");
    for table in &page.tables {
        body.push_str(&table_html(table));
    }
    if !page.notes.is_empty() {
        body.push_str("<ul class=\"notes\">");
        for note in &page.notes {
            let _ = write!(body, "<li>{}</li>", escape(note));
        }
        body.push_str("</ul>");
    }
    for (i, round) in page.rounds.iter().enumerate() {
        let _ =
            write!(body, "<section id=\"round-{i}\"><h2>{}</h2><p>{}</p>", escape(&round.name), escape(&round.note));
        for (j, run) in round.runs.iter().enumerate() {
            let _ = write!(body, "<h3>{}</h3>", escape(&format!("{} — {}", round.name, run.name)));
            body.push_str(&run_section(run, &timelines[i][j], &scales[run.name.as_str()]));
        }
        body.push_str("</section>");
    }
    document(&page.title, &body)
}

/// A whole document around `body`.
fn document(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/><title>{}</title>\
         <style>{STYLE}</style></head><body>{body}<footer>offload-bench {} · one self-contained file: \
         no script, nothing fetched</footer></body></html>\n",
        escape(title),
        env!("CARGO_PKG_VERSION"),
    )
}

/// One run: cards, latency and throughput over time, histogram, statuses and errors.
fn run_section(run: &Run<'_>, timeline: &Timeline, scales: &Scales) -> String {
    let (report, recording) = (run.report, run.recording);
    let mut out = String::from("<div class=\"cards\">");
    let failed = recording.failed();
    let mut cards = vec![
        ("count", report.count.to_string()),
        ("total", format!("{:.2} s", nanos(report.total).as_secs_f64())),
        ("requests/s", format!("{:.1}", report.rps)),
        ("average", ms(nanos(report.average))),
    ];
    cards.extend(CARD_PERCENTILES.iter().map(|&(p, name)| (name, ms(recording.percentile(p)))));
    cards.push(("ok", recording.ok().to_string()));
    for (name, value) in cards {
        let _ = write!(
            out,
            "<div class=\"card\"><div class=\"value\">{}</div><div class=\"name\">{name}</div></div>",
            escape(&value)
        );
    }
    let _ = write!(
        out,
        "<div class=\"card{}\"><div class=\"value\">{failed}</div><div class=\"name\">failed</div></div></div>",
        if failed > 0 { " bad" } else { "" }
    );
    out.push_str("<div class=\"run\"><div>");
    if timeline.slices.is_empty() {
        out.push_str("<p>No call was recorded one by one, so there is no timeline to draw.</p>");
    } else {
        out.push_str(&chart::latency_over_time(timeline, &recording.details, scales, &run.name));
        out.push_str(&chart::throughput_over_time(timeline, scales, &run.name));
        out.push_str(&closeup::chart(&recording.details, scales.closeup_top_ms, &run.name));
    }
    out.push_str("</div><div>");
    let buckets: Vec<(f64, u64)> = report.histogram.iter().map(|b| (b.mark, b.count)).collect();
    if !buckets.is_empty() {
        out.push_str(&chart::histogram(&buckets, &run.name));
    }
    let statuses = Table {
        caption: "Status codes".into(),
        header: vec!["status".into(), "calls".into(), "share".into()],
        rows: report
            .status_code_distribution
            .iter()
            .map(|(code, n)| vec![code.clone(), n.to_string(), share(*n, report.count)])
            .collect(),
    };
    out.push_str(&table_html(&statuses));
    out.push_str("</div></div>");
    if !report.error_distribution.is_empty() {
        let _ = write!(out, "<table><caption>Errors</caption><tr><th>calls</th><th>error</th></tr>");
        for (error, n) in &report.error_distribution {
            let _ = write!(out, "<tr><td>{n}</td><td class=\"error\">{}</td></tr>", escape(error));
        }
        out.push_str("</table>");
    }
    out
}

fn table_html(table: &Table) -> String {
    let mut out = String::from("<table>");
    if !table.caption.is_empty() {
        let _ = write!(out, "<caption>{}</caption>", escape(&table.caption));
    }
    out.push_str("<tr>");
    for cell in &table.header {
        let _ = write!(out, "<th>{}</th>", escape(cell));
    }
    out.push_str("</tr>");
    for row in &table.rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{}</td>", escape(cell));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    out
}

fn nanos(ns: u64) -> Duration {
    Duration::from_nanos(ns)
}

/// `12.34 ms`, `0.052 ms`: three significant digits or two decimals, whichever says more.
fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1e3;
    if v < 1.0 { format!("{v:.3} ms") } else { format!("{v:.2} ms") }
}

fn share(n: u64, total: u64) -> String {
    if total == 0 { "-".into() } else { format!("{:.1} %", 100.0 * n as f64 / total as f64) }
}

#[cfg(test)]
mod tests;
