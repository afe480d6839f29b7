//! Pass/fail criteria on a run, as k6 users write them: `--threshold 'p(99)<50ms'`, `errors<1%`, `rps>1000`
//! (repeatable, or `thresholds` in a config file). Each is printed with its measured value and whether it held;
//! any failure makes the command exit with [`FAILED_EXIT_CODE`], k6's code, so a CI job fails on it.
//!
//! Metrics: `p(N)` (the N-th percentile, over the calls ghz's percentiles are over: the successful ones, or all
//! with `--count-errors`), `avg`, `med`, `min`, `max` (durations: `ns`, `us`, `ms`, `s`, `m`, `h` as Go writes
//! them), `errors` (failed calls over all calls: `1%` or `0.01`), `rps` (calls per second) and `count` (calls).
//! Operators: `<`, `<=`, `>`, `>=`.

use std::{fmt, time::Duration};

use anyhow::{Context, bail};

use crate::{
    histogram_codec,
    recording::Recording,
    report::{Report, ThresholdOutcome},
};

/// The exit code of a run whose thresholds failed: k6's, which CI jobs written for k6 already test for.
pub const FAILED_EXIT_CODE: u8 = 99;

/// What a threshold measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// A latency percentile, 0 to 100.
    Percentile(f64),
    Average,
    Min,
    Max,
    /// Failed calls over all calls, 0 to 1.
    Errors,
    Rps,
    Count,
}

/// One criterion: `metric op limit`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// As the user wrote it.
    pub text: String,
    pub metric: Metric,
    op: Op,
    /// Nanoseconds for latencies, a fraction for `errors`, calls per second, or calls.
    limit: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Threshold {
    /// Every threshold of `texts`, each refused with its text when it cannot be read.
    pub fn parse_all(texts: &[String]) -> anyhow::Result<Vec<Self>> {
        texts.iter().map(|t| t.parse().with_context(|| format!("--threshold {t:?}"))).collect()
    }

    /// Whether the metric is about the latencies or the errors of calls made so far, which a run can check while
    /// it runs (`--abort-on-fail`); a rate or a count is only known at the end.
    pub fn checkable_early(&self) -> bool {
        !matches!(self.metric, Metric::Rps | Metric::Count)
    }

    /// The value of this metric in `report`, in the threshold's unit.
    fn measure(&self, report: &Report) -> f64 {
        let ns = |v: u64| v as f64;
        match self.metric {
            Metric::Percentile(p) => ns(percentile(report, p)),
            Metric::Average => ns(report.average),
            Metric::Min => ns(report.fastest),
            Metric::Max => ns(report.slowest),
            Metric::Errors => {
                if report.count == 0 {
                    0.0
                } else {
                    report.errors() as f64 / report.count as f64
                }
            }
            Metric::Rps => report.rps,
            Metric::Count => report.count as f64,
        }
    }

    /// Checks it on `report`.
    pub fn check(&self, report: &Report) -> ThresholdOutcome {
        let value = self.measure(report);
        let pass = match self.op {
            Op::Lt => value < self.limit,
            Op::Le => value <= self.limit,
            Op::Gt => value > self.limit,
            Op::Ge => value >= self.limit,
        };
        let shown = match self.metric {
            Metric::Errors => format!("{:.3}%", value * 100.0),
            Metric::Rps => format!("{value:.2}"),
            Metric::Count => format!("{value}"),
            _ => format!("{:.3}ms", value / 1e6),
        };
        ThresholdOutcome { threshold: self.text.clone(), value: shown, pass }
    }
}

/// The latency at percentile `p` as the report states it: its own figures for ghz's percentiles and p99.9
/// (exact over the calls kept one by one), the histogram's for any other.
fn percentile(report: &Report, p: f64) -> u64 {
    if p.fract() == 0.0
        && let Some(v) = report.percentile(p as u32)
    {
        return v;
    }
    if p == 99.9 {
        return report.latency_p999;
    }
    let text = if report.options.count_errors { &report.latency_histogram } else { &report.ok_latency_histogram };
    histogram_codec::decode(text, &Recording::new().latency, "latencyHistogram")
        .map_or(0, |h| if h.is_empty() { 0 } else { h.value_at_quantile(p / 100.0) })
}

/// Checks every threshold on `report`.
pub fn check(thresholds: &[Threshold], report: &Report) -> Vec<ThresholdOutcome> {
    thresholds.iter().map(|t| t.check(report)).collect()
}

/// The outcomes on stderr, one line each (stdout may be carrying the report).
pub fn print(outcomes: &[ThresholdOutcome]) {
    for o in outcomes {
        eprintln!("{}", line(o));
    }
}

/// One outcome as a line: `✓ p(99)<50ms  (42.100ms)`.
pub fn line(o: &ThresholdOutcome) -> String {
    format!("{} {}  ({})", if o.pass { "✓ pass" } else { "✗ FAIL" }, o.threshold, o.value)
}

impl std::str::FromStr for Threshold {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        let Some(at) = text.find(['<', '>']) else { bail!("no comparison: write METRIC<VALUE, as p(99)<50ms") };
        let (name, rest) = text.split_at(at);
        let (op, value) = match rest.as_bytes() {
            [b'<', b'=', ..] => (Op::Le, &rest[2..]),
            [b'>', b'=', ..] => (Op::Ge, &rest[2..]),
            [b'<', ..] => (Op::Lt, &rest[1..]),
            _ => (Op::Gt, &rest[1..]),
        };
        let metric = match name {
            "avg" => Metric::Average,
            "med" => Metric::Percentile(50.0),
            "min" => Metric::Min,
            "max" => Metric::Max,
            "errors" => Metric::Errors,
            "rps" => Metric::Rps,
            "count" => Metric::Count,
            p if p.starts_with("p(") && p.ends_with(')') => {
                let n: f64 = p[2..p.len() - 1].parse().with_context(|| format!("{p}: not a percentile"))?;
                if !(n > 0.0 && n <= 100.0) {
                    bail!("{p}: a percentile takes more than 0 and up to 100");
                }
                Metric::Percentile(n)
            }
            other => bail!("unknown metric {other:?}: use p(N), avg, med, min, max, errors, rps or count"),
        };
        let limit = match metric {
            Metric::Errors => match value.strip_suffix('%') {
                Some(pct) => pct.parse::<f64>().map(|v| v / 100.0),
                None => value.parse::<f64>(),
            }
            .ok()
            .filter(|v| v.is_finite() && (0.0..=1.0).contains(v))
            .with_context(|| format!("{value:?}: errors take a share, 0% to 100% (or 0 to 1)"))?,
            Metric::Rps | Metric::Count => value
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .with_context(|| format!("{value:?}: {name} takes a number, 0 or more"))?,
            _ => offload_duration::parse(value)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("{value:?}: a latency takes a duration with its unit, as 50ms"))
                .map(|d: Duration| d.as_nanos() as f64)?,
        };
        Ok(Self { text: s.trim().to_owned(), metric, op, limit })
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::synthetic_report;

    fn outcome(text: &str) -> ThresholdOutcome {
        text.parse::<Threshold>().expect("parses").check(&synthetic_report())
    }

    #[test]
    fn measured_on_the_report_as_it_states_it() {
        // The synthetic run: 16 successes of 1..=16 ms (p99 16 ms, p50 8 ms), 4 failures of 20, 80 calls/s.
        assert!(outcome("p(99)<=16ms").pass);
        assert!(!outcome("p(99)<16ms").pass);
        assert_eq!(outcome("p(99) < 16ms").value, "16.000ms");
        assert!(outcome("med<9ms").pass);
        // Not one of the report's own percentiles: from the histogram, within its 0.1 %.
        assert!(outcome("p(97.5)<=16.1ms").pass && !outcome("p(97.5)<15.9ms").pass);
        assert!(!outcome("errors<1%").pass);
        assert_eq!(outcome("errors<1%").value, "20.000%");
        assert!(outcome("errors<=0.2").pass);
        assert!(outcome("rps>79").pass && !outcome("rps>80").pass);
        assert!(outcome("count>=20").pass);
        assert!(outcome("max<1s").pass);
    }

    #[test]
    fn nonsense_is_refused_naming_what_is_wrong() {
        let e = |t: &str| format!("{:#}", Threshold::parse_all(&[t.to_owned()]).expect_err("refused"));
        assert!(e("p(99)").contains("no comparison"));
        assert!(e("p(99)<50").contains("duration with its unit"));
        assert!(e("p(0)<5ms").contains("more than 0"));
        assert!(e("latency<5ms").contains("unknown metric \"latency\""));
        assert!(e("errors<150%").contains("0% to 100%"));
        assert!(e("rps>fast").contains("rps takes a number"));
    }
}
