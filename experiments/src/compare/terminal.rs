//! What `compare` prints, table by table as its rounds come in, each with its verdicts under it.
//!
//! By default a table has the columns that carry the lesson (heavy throughput and its share of ideal, the probes'
//! latency, the health checks', the stalls) and every line fits [`WIDTH`] columns, so an ordinary terminal shows it
//! without wrapping; `--wide` prints every column and where the time went, as `report.md` and `report.html` always do.

use std::fmt::Write as _;

use super::{output::Comparison, scenario::RoundResult};

/// The widest line printed without `--wide`: an ordinary terminal's 100 columns.
pub const WIDTH: usize = 100;

/// Under the default table: what its columns are.
const LEGEND: &str = "(latencies in ms; probes timed from their scheduled send time; %ideal: heavy/s against the \
     round's ideal, cores ÷ its job time, the least of the start-up calibration, its fastest one-thread job and \
     compute's CPU per job; %left: against what the cores left after the load generator and the gateway; stalls: \
     times a worker made no progress for --stall-threshold, both servers; report.md has every column)";

/// The columns `--wide` adds, on a line of their own under [`LEGEND`].
const WIDE_ADDS: &str = "--wide adds heavy p50/p99, probe p99.9, sched p99, errors, CPU, job ms, stalls (top culprit)";

/// Under the `--wide` table: what the columns the default one leaves out are.
const WIDE_LEGEND: &str = "(job ms: the job time of the round's ideal; sched p99: the stressed server's \
     scheduling delay, an upper bucket bound; stalls: with the top method/mode, its commonest cause and the \
     innermost function of its own code; report.md has the whole frames)";

impl Comparison {
    /// The load, the idle baseline and the execution-mode rounds, then their verdicts. Then [`Self::waits_table`]
    /// and [`Self::closing`], each printed by `compare` as soon as its rounds are in.
    pub fn modes_table(&self) -> String {
        let setup = &self.setup;
        let mut out = "\n".to_owned();
        out.push_str(&self.lines(&[
            format!(
                "heavy: {} ×{} in flight, {:.2} ms of one core at start-up (ideal {:.0}/s on {} cores)",
                setup.heavy.describe(),
                setup.heavy_concurrency,
                setup.heavy.job_time.as_secs_f64() * 1e3,
                self.ideal(),
                setup.cores,
            ),
            format!(
                "probes: Factorial(20) {} through the gateway + health checks, {}/s open-loop",
                setup.probe_mode.short_name(),
                setup.args.probe_rps,
            ),
        ]));
        out.push_str(&self.rows("mode", &self.mode_rounds()));
        out.push_str(&self.legend());
        out.push_str(&self.lines(&self.mode_verdicts()));
        out
    }

    /// The gateway's upstream-wait rounds, on the gateway they ran on, and their verdicts (empty without them).
    pub fn waits_table(&self) -> String {
        let mut out = String::new();
        let waits = self.wait_rounds();
        if !waits.is_empty() {
            out.push_str(&self.lines(&[
                "\nhow the gateway waits for compute (heavy jobs in RAYON; health checks to the gateway)".to_owned(),
                format!("on {}", self.wait_gateway()),
            ]));
            out.push_str(&self.rows("upstream wait", &waits));
            out.push_str(&self.lines(&self.wait_verdicts()));
        }
        out
    }

    /// Errors and the hop with its verdict; with `--wide`, where the time went first.
    pub fn closing(&self) -> String {
        let mut out = if self.setup.args.wide { self.attribution_text() } else { String::new() };
        for r in self.rounds.iter().filter(|r| super::output::errors(r) != "0") {
            out.push_str(&self.lines(&[format!("errors in {}: {}", r.label, super::output::error_detail(r))]));
        }
        if let Some(hop) = &self.hop {
            let _ = writeln!(out, "\n{}", super::output::hop_table(hop, self.setup.args.hop_concurrency));
            out.push_str(&self.lines(&self.hop_verdicts()));
        }
        out
    }

    fn legend(&self) -> String {
        if self.setup.args.wide {
            self.lines(&[WIDE_LEGEND.to_owned()])
        } else {
            self.lines(&[LEGEND.to_owned(), WIDE_ADDS.to_owned()])
        }
    }

    /// `lines`, each wrapped to [`WIDTH`] unless `--wide`.
    fn lines(&self, lines: &[String]) -> String {
        let mut out = String::new();
        for line in lines {
            if self.setup.args.wide {
                let _ = writeln!(out, "{line}");
            } else {
                out.push_str(&wrap(line, WIDTH));
            }
        }
        out
    }

    fn rows(&self, first: &str, rounds: &[&RoundResult]) -> String {
        let w = rounds.iter().map(|r| r.label.chars().count()).chain([first.len(), 14]).max().unwrap_or(14);
        let mut out = String::new();
        if !self.setup.args.wide {
            let _ = writeln!(
                out,
                "{first:<w$} {:>8} {:>6} {:>6} {:>9} {:>9} {:>10} {:>8}",
                "heavy/s", "%ideal", "%left", "probe p50", "probe p99", "health p99", "stalls",
            );
            for r in rounds {
                let c = self.measure_cells(r);
                let _ = writeln!(
                    out,
                    "{:<w$} {:>8} {:>6} {:>6} {:>9} {:>9} {:>10} {:>8}",
                    r.label,
                    c.heavy_rps,
                    c.share_of_ideal,
                    c.share_of_cores_left,
                    c.probe_p50,
                    c.probe_p99,
                    c.health_p99,
                    c.stalls,
                );
            }
            return out;
        }
        let _ = writeln!(
            out,
            "{first:<w$} {:>8} {:>6} {:>6} {:>7} {:>9} {:>9} {:>9} {:>9} {:>11} {:>10} {:>9} {:>6} {:>7} {:>6} {:>8}  \
             stalls (top culprit)",
            "heavy/s",
            "%ideal",
            "%left",
            "job ms",
            "heavy p50",
            "heavy p99",
            "probe p50",
            "probe p99",
            "probe p99.9",
            "health p99",
            "sched p99",
            "errors",
            "cpu cmp",
            "cpu gw",
            "cpu load",
        );
        let cpu = |c: Option<std::time::Duration>| c.map_or("-".to_owned(), |c| format!("{:.1}s", c.as_secs_f64()));
        for r in rounds {
            let c = self.measure_cells(r);
            let _ = writeln!(
                out,
                "{:<w$} {:>8} {:>6} {:>6} {:>7} {:>9} {:>9} {:>9} {:>9} {:>11} {:>10} {:>9} {:>6} {:>7} {:>6} {:>8}  {}",
                r.label,
                c.heavy_rps,
                c.share_of_ideal,
                c.share_of_cores_left,
                c.job_ms,
                c.heavy_p50,
                c.heavy_p99,
                c.probe_p50,
                c.probe_p99,
                c.probe_p999,
                c.health_p99,
                c.schedule_delay,
                super::output::errors(r),
                cpu(r.compute_cpu),
                cpu(r.gateway_cpu),
                cpu(r.client_cpu),
                c.stalls_culprit,
            );
        }
        out
    }
}

/// `text` broken at spaces into lines of at most `width` characters (a longer word stays whole), the lines after
/// the first indented by two spaces so a wrapped verdict still reads as one.
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let len = line.chars().count();
        if len > 0 && len + 1 + word.chars().count() > width {
            let _ = writeln!(out, "{line}");
            line = "  ".to_owned();
        } else if len > 0 {
            line.push(' ');
        }
        line.push_str(word);
    }
    let _ = writeln!(out, "{line}");
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use offload_proto::v1::{ExecMode, UpstreamWait};

    use super::*;
    use crate::compare::fixtures::{comparison_with, round, wait_round};

    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// A comparison of every mode and wait, a pinned round among them (the longest label), printed with `flags`.
    fn printed(flags: &[&str]) -> String {
        let mut c = comparison_with(MS(15), 2, flags);
        c.rounds.push(round(None, 0.0, &[], Some(MS(100))));
        for mode in [ExecMode::Inline, ExecMode::SpawnBlocking, ExecMode::BlockInPlace, ExecMode::Rayon] {
            c.rounds.push(round(Some(mode), 1234.5, &[MS(15)], Some(MS(7_000))));
        }
        let mut pinned = round(Some(ExecMode::BlockInPlace), 120.0, &[MS(15)], Some(MS(7_000)));
        pinned.label = "block-in-place+pinned".into();
        pinned.pinned = Some(1);
        c.rounds.push(pinned);
        for wait in [UpstreamWait::Async, UpstreamWait::Blocking, UpstreamWait::SpawnBlocking] {
            c.rounds.push(wait_round(wait, MS(if wait == UpstreamWait::Blocking { 123_456 } else { 2 })));
        }
        [c.modes_table(), c.waits_table(), c.closing()].concat()
    }

    #[test]
    fn the_default_tables_and_verdicts_fit_100_columns() {
        let out = printed(&[]);
        for line in out.lines() {
            assert!(line.chars().count() <= WIDTH, "{} columns: {line:?}\n{out}", line.chars().count());
        }
        let header = out.lines().find(|l| l.starts_with("mode ")).expect("the modes table's header");
        assert_eq!(
            header.split_whitespace().collect::<Vec<_>>().join(" "),
            "mode heavy/s %ideal %left probe p50 probe p99 health p99 stalls",
            "{header}"
        );
        assert!(out.contains("block-in-place+pinned") && out.contains("gateway BLOCKING"), "{out}");
        assert!(out.contains("gateway --runtime current-thread"), "the waits' heading names their gateway:\n{out}");
        assert!(!out.contains("lanes_avx512"), "the culprit is for --wide:\n{out}");
        assert!(out.contains(WIDE_ADDS), "what --wide adds, on one line:\n{out}");
    }

    #[test]
    fn wide_prints_every_column() {
        let out = printed(&["--wide"]);
        let header = out.lines().find(|l| l.starts_with("mode ")).expect("the modes table's header");
        for column in [
            "heavy/s",
            "%ideal",
            "%left",
            "job ms",
            "heavy p50",
            "heavy p99",
            "probe p50",
            "probe p99",
            "probe p99.9",
            "health p99",
            "sched p99",
            "errors",
            "cpu cmp",
            "cpu gw",
            "cpu load",
            "stalls (top culprit)",
        ] {
            assert!(header.contains(column), "--wide lacks {column:?}: {header}");
        }
        let inline = out.lines().find(|l| l.starts_with("inline ")).expect("the inline row");
        assert!(inline.contains("1234 SumOfSquares/inline cpu lanes_avx512"), "{inline}");
        // 7.0 s of compute's CPU for 4938 jobs: 1.42 ms each, the job time of the round's ideal.
        assert!(inline.contains("7.0s") && inline.contains(" 1.42 "), "CPU and job time: {inline}");
    }

    #[test]
    fn wrap_breaks_at_spaces_and_indents_what_follows() {
        assert_eq!(wrap("a bb ccc dddd", 6), "a bb\n  ccc\n  dddd\n");
        assert_eq!(wrap("short", 100), "short\n");
        assert_eq!(wrap("averyveryverylongword x", 5), "averyveryverylongword\n  x\n");
    }
}
