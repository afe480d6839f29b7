//! `offload-bench diff BASE.json CANDIDATE.json`: did the candidate run get slower? For each percentile, the
//! change from base to candidate with a confidence interval, and a verdict per row and overall: `regression`,
//! `improvement` or `no change`. Exit code 1 on a regression, so a CI job can gate on it.
//!
//! The interval is a bootstrap over each run's seconds (the report's `intervals`): each resample draws as many
//! seconds as the run had, with replacement, adds their histograms of successful calls' latencies, and takes the
//! percentile; the change's interval is the central `confidence` share of the resampled changes. Resampling whole
//! seconds rather than single calls keeps together what happened together (a stall slows a second's calls at
//! once), so a run whose slow calls came in one burst gets the wide interval it deserves, and two runs of the same
//! server are not called different because of one bad second.
//!
//! A row is a `regression` when the whole interval lies above zero and the change is at least `--min-effect`
//! (significant and large enough to matter); an `improvement` the other way round; otherwise `no change`. The
//! overall verdict is `regression` if any row is one, else `improvement` if any row is one. Why seconds, and what
//! it was measured to do: `docs/decisions/0034-diff-bootstrap-over-seconds.md`.

use std::{fmt::Write as _, path::PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;

use crate::report::Report;

/// `diff`'s flags.
#[derive(Debug, Clone, Args)]
pub struct DiffArgs {
    /// The reference run's JSON report (`load -O json`, or `merge -O json`).
    pub base: PathBuf,
    /// The run under test's JSON report.
    pub candidate: PathBuf,
    /// Percentiles to compare, comma-separated, each above 0 and below 100.
    #[arg(long, default_value = "50,90,99", value_delimiter = ',')]
    pub percentiles: Vec<f64>,
    /// Smallest change that counts as a regression or an improvement, as a percentage of the base (`5%`).
    #[arg(long, default_value = "5%")]
    pub min_effect: String,
    /// Confidence of each interval, above 0.5 and below 1.
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,
    /// Bootstrap resamples: more give steadier interval ends, at a cost linear in them. 100 to 100000.
    #[arg(long, default_value_t = 2000)]
    pub resamples: usize,
    /// Seed of the resampling, so the same two reports always give the same verdict.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output format: summary, json or markdown (a table for a pull-request comment).
    #[arg(short = 'O', long, default_value = "summary")]
    pub format: String,
}

/// How the comparison is made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub confidence: f64,
    /// A fraction of the base (0.05 for 5 %).
    pub min_effect: f64,
    pub resamples: usize,
    pub seed: u64,
}

/// A row's or the run's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Regression,
    Improvement,
    NoChange,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Regression => "regression",
            Self::Improvement => "improvement",
            Self::NoChange => "no change",
        }
    }
}

/// One percentile compared.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub percentile: f64,
    /// Nanoseconds.
    pub base: u64,
    /// Nanoseconds.
    pub candidate: u64,
    /// Relative change, candidate over base minus one (0.1: 10 % slower).
    pub change: f64,
    /// The interval of `change` at the chosen confidence.
    pub low: f64,
    pub high: f64,
    pub verdict: Verdict,
}

/// The comparison, as `-O json` writes it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    pub base: String,
    pub candidate: String,
    pub confidence: f64,
    pub min_effect: f64,
    pub resamples: usize,
    /// Seconds resampled on each side.
    pub base_seconds: usize,
    pub candidate_seconds: usize,
    pub rows: Vec<Row>,
    pub verdict: Verdict,
}

/// Runs `diff`: prints the comparison; whether it found a regression.
pub fn run(args: DiffArgs) -> anyhow::Result<bool> {
    if !(args.confidence > 0.5 && args.confidence < 1.0) {
        bail!("--confidence {}: takes a number above 0.5 and below 1 (0.95 for 95 %)", args.confidence);
    }
    if !(100..=100_000).contains(&args.resamples) {
        bail!("--resamples {}: takes 100 to 100000", args.resamples);
    }
    if let Some(p) = args.percentiles.iter().find(|p| !(**p > 0.0 && **p < 100.0)) {
        bail!("--percentiles {p}: each takes a number above 0 and below 100");
    }
    let min_effect = args
        .min_effect
        .trim()
        .strip_suffix('%')
        .unwrap_or(&args.min_effect)
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .with_context(|| format!("--min-effect {:?}: takes a percentage, 0% or more (5%)", args.min_effect))?;
    let format = args.format.as_str();
    if !matches!(format, "summary" | "json" | "markdown") {
        bail!("-O {format:?}: diff writes summary, json or markdown");
    }
    let (base, candidate) = (Report::read(&args.base)?, Report::read(&args.candidate)?);
    if base.options.call != candidate.options.call {
        bail!(
            "{} and {} differ in options.call ({:?} and {:?}): diff compares runs of one method",
            args.base.display(),
            args.candidate.display(),
            base.options.call,
            candidate.options.call
        );
    }
    let seconds = |report: &Report, path: &PathBuf| -> anyhow::Result<Vec<Histogram<u64>>> {
        let blocks: Vec<Histogram<u64>> = report
            .intervals
            .slices
            .iter()
            .map(|s| s.ok_latencies())
            .collect::<anyhow::Result<Vec<_>>>()
            .with_context(|| path.display().to_string())?
            .into_iter()
            .filter(|h| !h.is_empty())
            .collect();
        if blocks.len() < 2 {
            bail!(
                "{}: {} second(s) with successful calls in its intervals; diff resamples seconds and needs at least 2 \
                 (runs of 10 s or more give useful intervals)",
                path.display(),
                blocks.len()
            );
        }
        Ok(blocks)
    };
    let (base_blocks, candidate_blocks) = (seconds(&base, &args.base)?, seconds(&candidate, &args.candidate)?);
    let settings = Settings {
        confidence: args.confidence,
        min_effect: min_effect / 100.0,
        resamples: args.resamples,
        seed: args.seed,
    };
    let rows = compare(&base_blocks, &candidate_blocks, &args.percentiles, &settings);
    let comparison = Comparison {
        base: args.base.display().to_string(),
        candidate: args.candidate.display().to_string(),
        confidence: settings.confidence,
        min_effect: settings.min_effect,
        resamples: settings.resamples,
        base_seconds: base_blocks.len(),
        candidate_seconds: candidate_blocks.len(),
        verdict: overall(&rows),
        rows,
    };
    let text = match format {
        "json" => serde_json::to_string_pretty(&comparison)? + "\n",
        "markdown" => markdown(&comparison),
        _ => summary(&comparison),
    };
    print!("{text}");
    Ok(comparison.verdict == Verdict::Regression)
}

/// The overall verdict of `rows`.
pub fn overall(rows: &[Row]) -> Verdict {
    [Verdict::Regression, Verdict::Improvement]
        .into_iter()
        .find(|v| rows.iter().any(|r| r.verdict == *v))
        .unwrap_or(Verdict::NoChange)
}

/// Each percentile of `candidate` against `base` (each run as its seconds' histograms), with its interval.
pub fn compare(base: &[Histogram<u64>], candidate: &[Histogram<u64>], percentiles: &[f64], s: &Settings) -> Vec<Row> {
    let values = Values::of(base.iter().chain(candidate));
    let (base, candidate) = (values.blocks(base), values.blocks(candidate));
    let point = |blocks: &[Vec<(usize, u64)>]| values.percentiles(&values.sum(blocks.iter()), percentiles);
    let (base_point, candidate_point) = (point(&base), point(&candidate));
    let mut rng = StdRng::seed_from_u64(s.seed);
    let mut changes: Vec<Vec<f64>> = vec![Vec::with_capacity(s.resamples); percentiles.len()];
    for _ in 0..s.resamples {
        let b = values.percentiles(&values.resample(&base, &mut rng), percentiles);
        let c = values.percentiles(&values.resample(&candidate, &mut rng), percentiles);
        for (i, (b, c)) in b.into_iter().zip(c).enumerate() {
            changes[i].push(relative(b, c));
        }
    }
    percentiles
        .iter()
        .enumerate()
        .map(|(i, &percentile)| {
            let change = relative(base_point[i], candidate_point[i]);
            let sorted = &mut changes[i];
            sorted.sort_by(f64::total_cmp);
            let tail = (1.0 - s.confidence) / 2.0;
            let (low, high) = (quantile(sorted, tail), quantile(sorted, 1.0 - tail));
            let verdict = if low > 0.0 && change >= s.min_effect {
                Verdict::Regression
            } else if high < 0.0 && change <= -s.min_effect {
                Verdict::Improvement
            } else {
                Verdict::NoChange
            };
            Row { percentile, base: base_point[i], candidate: candidate_point[i], change, low, high, verdict }
        })
        .collect()
}

fn relative(base: u64, candidate: u64) -> f64 {
    if base == 0 { 0.0 } else { candidate as f64 / base as f64 - 1.0 }
}

/// The value at quantile `q` of sorted `values` (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Every distinct latency either run recorded, ascending: a resample is then a dense count per value, and a
/// percentile one pass over it.
struct Values(Vec<u64>);

impl Values {
    fn of<'a>(histograms: impl Iterator<Item = &'a Histogram<u64>>) -> Self {
        let mut v: Vec<u64> =
            histograms.flat_map(|h| h.iter_recorded().map(|r| h.highest_equivalent(r.value_iterated_to()))).collect();
        v.sort_unstable();
        v.dedup();
        Self(v)
    }

    /// Each histogram as (value index, count) pairs.
    fn blocks(&self, histograms: &[Histogram<u64>]) -> Vec<Vec<(usize, u64)>> {
        histograms
            .iter()
            .map(|h| {
                h.iter_recorded()
                    .map(|r| {
                        let value = h.highest_equivalent(r.value_iterated_to());
                        (self.0.partition_point(|&v| v < value), r.count_at_value())
                    })
                    .collect()
            })
            .collect()
    }

    fn sum<'a>(&self, blocks: impl Iterator<Item = &'a Vec<(usize, u64)>>) -> Vec<u64> {
        let mut counts = vec![0; self.0.len()];
        for block in blocks {
            for &(i, n) in block {
                counts[i] += n;
            }
        }
        counts
    }

    /// As many blocks as there are, drawn with replacement, added up.
    fn resample(&self, blocks: &[Vec<(usize, u64)>], rng: &mut StdRng) -> Vec<u64> {
        self.sum((0..blocks.len()).map(|_| &blocks[rng.random_range(0..blocks.len())]))
    }

    /// The nearest-rank percentiles of dense `counts`.
    fn percentiles(&self, counts: &[u64], percentiles: &[f64]) -> Vec<u64> {
        let total: u64 = counts.iter().sum();
        percentiles
            .iter()
            .map(|p| {
                let rank = ((p / 100.0 * total as f64).ceil() as u64).clamp(1, total.max(1));
                let mut seen = 0;
                counts
                    .iter()
                    .zip(&self.0)
                    .find(|(n, _)| {
                        seen += **n;
                        seen >= rank
                    })
                    .map_or(0, |(_, v)| *v)
            })
            .collect()
    }
}

fn pct(v: f64) -> String {
    format!("{:+.1} %", v * 100.0)
}

fn ms(ns: u64) -> String {
    format!("{:.3} ms", ns as f64 / 1e6)
}

/// The comparison as text.
pub fn summary(c: &Comparison) -> String {
    let mut out = format!(
        "{}: {} vs {} ({} s vs {} s resampled, {:.0} % confidence, min effect {:.1} %)\n\n",
        c.verdict.as_str().to_uppercase(),
        c.candidate,
        c.base,
        c.candidate_seconds,
        c.base_seconds,
        c.confidence * 100.0,
        c.min_effect * 100.0
    );
    let _ =
        writeln!(out, "  {:<8} {:>12} {:>12} {:>9}   {:<22} verdict", "", "base", "candidate", "change", "interval");
    for r in &c.rows {
        let _ = writeln!(
            out,
            "  {:<8} {:>12} {:>12} {:>11}   {:<28} {}",
            format!("p{}", r.percentile),
            ms(r.base),
            ms(r.candidate),
            pct(r.change),
            format!("[{}, {}]", pct(r.low), pct(r.high)),
            r.verdict.as_str()
        );
    }
    out
}

/// The comparison as a Markdown table, for a pull-request comment.
pub fn markdown(c: &Comparison) -> String {
    let mut out = format!(
        "**{}**: `{}` against `{}` ({:.0} % confidence, min effect {:.1} %)\n\n| percentile | base | candidate | change | interval | verdict |\n|---|---:|---:|---:|---:|---|\n",
        c.verdict.as_str(),
        c.candidate,
        c.base,
        c.confidence * 100.0,
        c.min_effect * 100.0
    );
    for r in &c.rows {
        let _ = writeln!(
            out,
            "| p{} | {} | {} | {} | [{}, {}] | {} |",
            r.percentile,
            ms(r.base),
            ms(r.candidate),
            pct(r.change),
            pct(r.low),
            pct(r.high),
            r.verdict.as_str()
        );
    }
    out
}

#[cfg(test)]
#[path = "diff_tests.rs"]
mod tests;
