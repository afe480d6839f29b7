//! `-O summary`: ghz's human-readable text (its `defaultTmpl`), plus p99.9 and, for open loop, a line saying
//! where latency is measured from; offload's additions after ghz's sections (which shard, the merged reports, the
//! generator's health, the thresholds), and first of all, when the load generator limited the run, that warning. What the server said (error messages) is shown with its control characters
//! escaped ([`crate::text`]): it reaches a terminal.

use std::fmt::Write;

use super::nano_unit;
use crate::{report::Report, text::escaped};

/// ghz's histogram bar character.
const BAR: &str = "∎";

/// The summary text.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    if let Some(warning) = report.generator.as_ref().and_then(|g| g.warning()) {
        let _ = writeln!(out, "\n{warning}");
    }
    let _ = writeln!(out, "\nSummary:");
    if !report.name.is_empty() {
        let _ = writeln!(out, "  Name:\t\t{}", escaped(&report.name));
    }
    if let Some(shard) = report.shard {
        let _ = writeln!(out, "  Shard:\t{shard}");
    }
    let _ = writeln!(out, "  Count:\t{}", report.count);
    let _ = writeln!(out, "  Total:\t{}", nano_unit(report.total));
    let _ = writeln!(out, "  Slowest:\t{}", nano_unit(report.slowest));
    let _ = writeln!(out, "  Fastest:\t{}", nano_unit(report.fastest));
    let _ = writeln!(out, "  Average:\t{}", nano_unit(report.average));
    let _ = writeln!(out, "  Requests/sec:\t{:.2}", report.rps);
    if report.options.open_loop {
        let _ = writeln!(out, "  (open loop: latency measured from each call's scheduled send time)");
    }
    let _ = writeln!(out, "\nResponse time histogram:");
    out.push_str(&histogram(report));
    let _ = write!(out, "\nLatency distribution:");
    for p in &report.latency_distribution {
        let _ = write!(out, "\n  {} % in {} ", p.percentage, nano_unit(p.latency));
    }
    if !report.latency_distribution.is_empty() {
        let _ = write!(out, "\n  99.9 % in {} ", nano_unit(report.latency_p999));
    }
    let _ = writeln!(out, "\n");
    if !report.status_code_distribution.is_empty() {
        let _ = writeln!(out, "Status code distribution:");
        let rows: Vec<_> = report
            .status_code_distribution
            .iter()
            .map(|(code, n)| (format!("  [{code}]"), format!("{n} responses")))
            .collect();
        out.push_str(&table(&rows));
    }
    if !report.error_distribution.is_empty() {
        let _ = writeln!(out, "\nError distribution:");
        let rows: Vec<_> = report
            .error_distribution
            .iter()
            .map(|(error, n)| (format!("  [{n}]"), escaped(error).into_owned()))
            .collect();
        out.push_str(&table(&rows));
    }
    out.push_str(&additions(report));
    out
}

/// offload's sections: the reports merged, the generator's health, the thresholds.
fn additions(report: &Report) -> String {
    let mut out = String::new();
    if !report.merged_from.is_empty() {
        let _ = writeln!(out, "\nMerged from:");
        for line in &report.merged_from {
            let _ = writeln!(out, "  {}", escaped(line));
        }
    }
    if let Some(g) = &report.generator {
        let _ = writeln!(out, "\nLoad generator:");
        if let Some(p99) = g.timer_lateness_p99 {
            let _ = writeln!(out, "  Timer lateness p99:\t{}", nano_unit(p99));
        }
        let _ = writeln!(out, "  CPU per call:\t{}", nano_unit(g.cpu_per_call));
        let _ = writeln!(out, "  Core use:\t{:.0} % of {} thread(s)", g.core_use * 100.0, g.cores);
        let _ = writeln!(out, "  Limited the run:\t{}", if g.limited { "yes" } else { "no" });
    }
    if !report.thresholds.is_empty() {
        let _ = writeln!(out, "\nThresholds:");
        for o in &report.thresholds {
            let _ = writeln!(out, "  {}", escaped(&crate::threshold::line(o)));
        }
    }
    out
}

/// ghz's bars: marks in ms, counts, bars scaled to 40 characters at the most common bucket.
fn histogram(report: &Report) -> String {
    let mark = |m: f64| format!("{:.3}", m * 1000.0);
    let max_count = report.histogram.iter().map(|b| b.count).max().unwrap_or(0);
    let max_mark = report.histogram.iter().map(|b| b.mark).fold(0.0, f64::max);
    let (mark_width, count_width) = (mark(max_mark).len(), max_count.to_string().len());
    let mut out = String::new();
    for b in &report.histogram {
        let bar = (b.count * 40 + max_count / 2).checked_div(max_count).unwrap_or(0);
        let _ =
            writeln!(out, "  {:<mark_width$} [{:<count_width$}] |{}", mark(b.mark), b.count, BAR.repeat(bar as usize));
    }
    out
}

/// Two columns padded as Go's tabwriter pads them (three spaces after the widest cell).
fn table(rows: &[(String, String)]) -> String {
    let width = rows.iter().map(|(a, _)| a.chars().count()).max().unwrap_or(0) + 3;
    rows.iter().map(|(a, b)| format!("{a:<width$}{b}   \n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::synthetic_report;

    #[test]
    fn ghz_sections_and_numbers() {
        let text = render(&synthetic_report());
        for expected in [
            "Summary:",
            "  Name:\t\tgolden",
            "  Count:\t20",
            "  Total:\t250.00 ms",
            "  Slowest:\t16.00 ms",
            "  Fastest:\t1.00 ms",
            "  Requests/sec:\t80.00",
            "Response time histogram:",
            "Latency distribution:",
            "  50 % in 8.00 ms",
            "  99.9 % in 16.00 ms",
            "Status code distribution:",
            "  [OK]                  16 responses",
            "  [ResourceExhausted]   4 responses",
            "Error distribution:",
            "  [4]   rpc error: code = ResourceExhausted desc = shed, try later",
        ] {
            assert!(text.contains(expected), "summary lacks {expected:?}:\n{text}");
        }
        assert!(!text.contains("WARNING") && !text.contains("Thresholds:"), "nothing to warn of:\n{text}");
        let bars: Vec<_> = text.lines().filter(|l| l.contains('|')).collect();
        assert_eq!(bars.len(), 11, "{text}");
        assert!(bars.iter().any(|l| l.ends_with(&BAR.repeat(40))), "the fullest bucket is 40 wide:\n{text}");
    }

    #[test]
    fn a_limited_generator_is_said_first_and_thresholds_last() {
        let mut report = synthetic_report();
        let observed = crate::health::Observed { lateness: None, cpu: std::time::Duration::from_millis(490), cores: 2 };
        report.generator = Some(crate::health::Health::of(&observed, std::time::Duration::from_millis(250), 20));
        report.shard = crate::shard::Shard::new(2, 3).ok();
        report.thresholds = vec![crate::report::ThresholdOutcome {
            threshold: "p(99)<10ms".into(),
            value: "16.000ms".into(),
            pass: false,
        }];
        let text = render(&report);
        assert!(
            text.trim_start().starts_with("WARNING: the load generator, not the target, limited this run"),
            "{text}"
        );
        assert!(text.contains("  Shard:\t2/3"), "{text}");
        assert!(text.contains("  Limited the run:\tyes"), "{text}");
        assert!(text.trim_end().ends_with("✗ FAIL p(99)<10ms  (16.000ms)"), "{text}");
    }
}
