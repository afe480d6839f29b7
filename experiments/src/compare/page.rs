//! `report.html`: the comparison as one page to look at (drawn by `offload_loadgen::html`). It opens on the picture,
//! the probes' latency per mode (the chart the README shows: what blocking costs, at a glance), then the summary
//! tables and verdicts of `report.md`, then one section per round with its probe's and heavy load's latency over
//! time, the probe's chart banded where the round's stalls were ([`super::stall_report`]).
//!
//! Every round's probe is drawn on the same axes, so `INLINE`'s stalls (probes waiting out a heavy job, again and
//! again) and `RAYON`'s flat line are seen at their true relative size.

use offload_loadgen::html::{self, Page, Round, Run, Table};

use super::{
    output::{Comparison, ms},
    scenario::RoundResult,
    stall_report,
};

/// Loads drawn for each round, in this order: the probe is the story (how soon a new request is served while heavy
/// work runs), the heavy load the price. Health checks tell the probe's story again; they stay in the tables.
const DRAWN: [&str; 2] = ["probe", "heavy"];

impl Comparison {
    /// The page of `report.html`, opening on `lead`, the probe latency chart (an SVG document).
    pub(super) fn html(&self, lead: &str) -> String {
        let reports: Vec<_> = self.rounds.iter().map(|r| (r, self.round_reports(r))).collect();
        let rounds = reports
            .iter()
            .map(|(r, loads)| Round {
                name: r.label.clone(),
                note: self.round_note(r),
                runs: DRAWN
                    .iter()
                    .filter_map(|kind| loads.iter().find(|(k, _, _)| k == kind))
                    .map(|(kind, recording, report)| Run { name: (*kind).to_owned(), report, recording })
                    .collect(),
            })
            .collect();
        let mut tables = vec![self.summary_table("mode", &self.mode_rounds())];
        let waits = self.wait_rounds();
        if !waits.is_empty() {
            let mut table = self.summary_table("upstream wait", &waits);
            table.caption = format!(
                "How the gateway waits for compute, on a gateway of its own ({}; heavy jobs in RAYON; health probes to the gateway)",
                self.wait_gateway()
            );
            tables.push(table);
        }
        tables.extend(self.attribution_html());
        tables.extend(self.stalls_table());
        if let Some(hop) = &self.hop {
            let concurrency = self.setup.args.hop_concurrency;
            tables.push(Table {
                caption: "The price of the gateway hop: Factorial(1) INLINE, one connection per path".into(),
                header: [
                    "path",
                    &format!("calls/s at {concurrency}"),
                    "p50 ms",
                    "p99 ms",
                    "p50 ms at 1",
                    "p99 ms at 1",
                ]
                .map(str::to_owned)
                .to_vec(),
                rows: [
                    ("direct", &hop.direct, &hop.direct_serial),
                    ("via gateway", &hop.via_gateway, &hop.via_gateway_serial),
                ]
                .iter()
                .map(|(name, r, s)| {
                    vec![
                        (*name).to_owned(),
                        format!("{:.0}", r.ok_rps()),
                        ms(r.percentile(50.0)),
                        ms(r.percentile(99.0)),
                        format!("{:.3}", s.percentile(50.0).as_secs_f64() * 1e3),
                        format!("{:.3}", s.percentile(99.0).as_secs_f64() * 1e3),
                    ]
                })
                .collect(),
            });
        }
        let page = html::render_rounds(&Page {
            title: "offload: what blocking the runtime costs".into(),
            facts: self.facts(),
            tables,
            notes: self.verdicts(),
            rounds,
        });
        let stalls: Vec<_> = self.rounds.iter().map(|r| r.stalls.as_ref()).collect();
        lead_with(stall_report::mark_charts(page, &stalls), lead)
    }

    fn summary_table(&self, first: &str, rounds: &[&RoundResult]) -> Table {
        Table {
            caption: format!("By {first} (latencies in ms; probes measured from their scheduled send time)"),
            header: self.summary_header(first),
            rows: rounds.iter().map(|r| self.summary_cells(r)).collect(),
        }
    }

    /// What was run, where and when: the lines under the title.
    fn facts(&self) -> Vec<String> {
        let setup = &self.setup;
        vec![
            format!("date: {}", self.date),
            format!("machine: {}", self.machine),
            format!("command: {}", self.command),
            format!(
                "heavy jobs: {} through the gateway, {} in flight (closed loop), {:.2} ms of one core each at start-up (ideal {:.0} jobs/s); each round's ideal: cores ÷ the least of that, its fastest one-thread job and compute's CPU per job",
                setup.heavy.describe(),
                setup.heavy_concurrency,
                setup.heavy.job_time.as_secs_f64() * 1e3,
                self.ideal()
            ),
            format!(
                "probes: Factorial(20) ({}) through the gateway and a health check, {}/s each, open loop, latency from the scheduled send time; {} s measured per round",
                setup.probe_mode.as_str_name(),
                setup.args.probe_rps,
                setup.args.duration.as_secs_f64()
            ),
        ]
    }

    /// One line on what a round put under load.
    fn round_note(&self, r: &RoundResult) -> String {
        let probes = format!("probes at {}/s", self.setup.args.probe_rps);
        match (r.mode, r.wait) {
            (_, Some(wait)) => {
                format!("Heavy jobs in RAYON, the gateway waiting for compute with {}; {probes}.", wait.as_str_name())
            }
            (Some(mode), None) => format!(
                "Heavy jobs in {} ({} in flight) on compute; {probes}{}.",
                mode.as_str_name(),
                self.setup.heavy_concurrency,
                r.pinned.map_or(String::new(), |cpu| format!("; the load generator confined to CPU {cpu}")),
            ),
            (None, None) => format!("No heavy load: the {probes} alone, the baseline."),
        }
    }
}

/// `page` with `chart` (an SVG document) as its first figure, right under the title and facts, before the tables.
fn lead_with(mut page: String, chart: &str) -> String {
    // Inline, not an `<img>`: the page is one self-contained file that fetches nothing.
    let svg = chart.find("<svg").map_or(chart, |start| &chart[start..]);
    // The chart carries its own title, so the figure needs no caption.
    let figure = format!("<figure class=\"lead\">{svg}</figure>");
    match page.find("</header>") {
        Some(at) => page.insert_str(at + "</header>".len(), &figure),
        None => page.insert_str(page.find("<table").unwrap_or(0), &figure),
    }
    page
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use offload_proto::v1::ExecMode;

    use super::*;
    use crate::compare::{
        charts,
        fixtures::{comparison, round},
        folder::PROBE_CHART_TITLE,
    };

    #[test]
    fn the_page_opens_on_the_probe_latency_chart_before_any_table() {
        let mut c = comparison(Duration::from_millis(15), 2);
        c.rounds.push(round(None, 0.0, &[], Some(Duration::from_millis(100))));
        c.rounds.push(round(Some(ExecMode::Inline), 100.0, &[Duration::from_millis(15)], Some(Duration::from_secs(6))));
        let modes: Vec<RoundResult> = c.mode_rounds().into_iter().cloned().collect();
        let chart = charts::probe_latency(&modes, PROBE_CHART_TITLE);
        let page = c.html(&chart);

        let table = page.find("<table").expect("the summary tables");
        let figure = page.find("<figure class=\"lead\">").expect("the lead figure");
        let svg = page[figure..].find("<svg").map(|at| figure + at).expect("its chart");
        assert!(figure < table && svg < table, "the chart comes after the first table");
        assert!(page[svg..table].contains(PROBE_CHART_TITLE), "the probe latency chart leads");
        assert!(page[..figure].contains("</header>"), "under the title and facts");
        assert_eq!(page.matches("<figure").count(), 1);
    }
}
