//! The attribution tables of a comparison ([`super::attribution`]): for every round, where its probes' and its
//! heavy jobs' time went at p50 and p99, on stdout, in `report.md` and in `report.html`, from one set of cells.

use std::fmt::Write as _;

use offload_loadgen::html::Table;

use super::{
    attribution::{self, Breakdown, PERCENTILES, Segment},
    output::Comparison,
    scenario::RoundResult,
};

/// The two loads attributed, with the caption of each table.
const LOADS: [(Load, &str); 2] = [
    (Load::Probe, "Where the probe's time went: Factorial(20) through the gateway, from its send time to the reply"),
    (Load::Heavy, "Where the heavy jobs' time went (closed loop: no timer, no spawn)"),
];

#[derive(Debug, Clone, Copy)]
enum Load {
    Probe,
    Heavy,
}

impl Load {
    fn calls(self, r: &RoundResult) -> &[Breakdown] {
        match self {
            Self::Probe => &r.probe_calls,
            Self::Heavy => &r.heavy_calls,
        }
    }
}

/// What the tables' numbers are, under each one.
pub const LEGEND: &str = "ms, the mean of the calls ranked within ±0.5 percentile of p50 and p99 by total \
     (the recorded latency, the sum of the segments); timer late: the load generator's timer firing after the \
     scheduled time (outside the recorded latency, as in ghz); spawn: the send task waiting for the load \
     generator's runtime; client↔gw: the client's call less the gateway's handling; gw before / \
     gw after: the gateway's handler before and after its upstream call; gw↔compute: the upstream call less \
     compute's handling; compute path: compute's handling less queue and compute";

fn header() -> Vec<String> {
    let mut header = ["round", "at", "total ms", "timer late ms"].map(str::to_owned).to_vec();
    header.extend(Segment::ALL.map(|s| format!("{} ms", s.name())));
    header
}

fn ms3(d: std::time::Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

impl Comparison {
    /// One row per round with calls and per percentile: round, `p50`, total, then each segment (ms).
    fn attribution_rows(&self, load: Load) -> Vec<Vec<String>> {
        let mut rows = Vec::new();
        for r in &self.rounds {
            for p in PERCENTILES {
                let Some(at) = attribution::at_percentile(load.calls(r), p) else { continue };
                let mut row = vec![r.label.clone(), format!("p{p:.0}"), ms3(at.mean.total()), ms3(at.mean.timer_late)];
                row.extend(Segment::ALL.map(|s| ms3(at.mean.get(s))));
                rows.push(row);
            }
        }
        rows
    }

    /// The attribution tables for a terminal.
    pub(super) fn attribution_text(&self) -> String {
        let mut out = String::new();
        for (load, caption) in LOADS {
            let rows = self.attribution_rows(load);
            if rows.is_empty() {
                continue;
            }
            let _ = writeln!(out, "\n{caption}");
            let header = header();
            let widths: Vec<usize> = (0..header.len())
                .map(|c| {
                    rows.iter().map(|r| r[c].chars().count()).chain([header[c].chars().count()]).max().unwrap_or(0)
                })
                .collect();
            for row in std::iter::once(&header).chain(&rows) {
                let cells: Vec<String> = row
                    .iter()
                    .zip(&widths)
                    .enumerate()
                    .map(|(c, (cell, &w))| if c == 0 { format!("{cell:<w$}") } else { format!("{cell:>w$}") })
                    .collect();
                let _ = writeln!(out, "{}", cells.join("  "));
            }
        }
        if !out.is_empty() {
            let _ = writeln!(out, "({LEGEND})");
        }
        out
    }

    /// The attribution tables in markdown, each under a `###` heading.
    pub(super) fn attribution_markdown(&self) -> String {
        let mut md = String::new();
        for (load, caption) in LOADS {
            let rows = self.attribution_rows(load);
            if rows.is_empty() {
                continue;
            }
            let header = header();
            let _ = writeln!(md, "### {caption}\n\n| {} |", header.join(" | "));
            let _ = writeln!(md, "|---|---|{}|", vec!["---:"; header.len() - 2].join("|"));
            for row in rows {
                let _ = writeln!(md, "| {} |", row.join(" | "));
            }
            md.push('\n');
        }
        if !md.is_empty() {
            let _ = writeln!(md, "({LEGEND})\n");
        }
        md
    }

    /// The attribution tables for `report.html`.
    pub(super) fn attribution_html(&self) -> Vec<Table> {
        LOADS
            .iter()
            .map(|&(load, caption)| Table {
                caption: format!("{caption} ({LEGEND})"),
                header: header(),
                rows: self.attribution_rows(load),
            })
            .filter(|t| !t.rows.is_empty())
            .collect()
    }
}
