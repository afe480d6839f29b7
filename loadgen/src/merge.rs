//! `offload-bench merge A.json B.json …`: one report from the JSON reports of several runs of one method on one
//! target (the shards of a split run, or runs made side by side), exactly as one process that had recorded all
//! their calls would have written it.
//!
//! Exact because nothing is averaged: each report is read back into what its run recorded ([`recording_of`]) —
//! the latency histograms (lossless), the exact latency sum, the counts by status and error, the calls one by one
//! — and the recordings are added ([`Recording::merge`]), their calls placed on one clock from the earliest start.
//! Every figure of the merged report (percentiles, fastest, slowest, rps over the span from the first start to the
//! last end) is then computed as for a single run, and any `--threshold` is checked on it, not per shard.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use clap::Args;

use crate::{
    format::Format,
    health::Health,
    histogram_codec,
    intervals::Intervals,
    recording::{Detail, EndReason, Recording, code_from_go_name},
    report::{Report, parse_time},
    threshold::{self, Threshold},
};

/// `merge`'s flags.
#[derive(Debug, Clone, Args)]
pub struct MergeArgs {
    /// JSON reports (`load -O json`) of runs of one method on one target: the shards of a split run.
    #[arg(required = true, num_args = 1..)]
    pub reports: Vec<PathBuf>,
    /// Output format of the merged report: summary, json, pretty, csv, html, influx-summary, influx-details or
    /// prometheus. Default is summary.
    #[arg(short = 'O', long)]
    pub format: Option<String>,
    /// Output path. If none provided stdout is used.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// A pass/fail criterion checked on the merged run, as k6 writes them: `p(99)<50ms`, `errors<1%`, `rps>1000`
    /// (repeatable). Exit code 99 when any fails.
    #[arg(long = "threshold")]
    pub thresholds: Vec<String>,
}

/// Runs `merge`: writes the merged report, and says whether every threshold held.
pub fn run(args: MergeArgs) -> anyhow::Result<bool> {
    let format: Format = args.format.unwrap_or_default().parse().map_err(anyhow::Error::msg)?;
    let thresholds = Threshold::parse_all(&args.thresholds)?;
    let mut reports = Vec::new();
    for path in &args.reports {
        reports.push((path.display().to_string(), Report::read(path)?));
    }
    let (mut report, recording) = merge(&reports)?;
    report.thresholds = threshold::check(&thresholds, &report);
    let text = format.render(&report, &recording)?;
    match &args.output {
        Some(path) => std::fs::write(path, text).with_context(|| format!("-o: cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    threshold::print(&report.thresholds);
    Ok(report.thresholds.iter().all(|t| t.pass))
}

/// The report of `reports` (each with the name errors give it) together, and the recording it was computed from.
pub fn merge(reports: &[(String, Report)]) -> anyhow::Result<(Report, Recording)> {
    let Some((first_name, first)) = reports.first() else { bail!("nothing to merge: give one or more reports") };
    for (name, report) in &reports[1..] {
        let differs = |field: &str, a: String, b: String| -> anyhow::Result<()> {
            if a != b {
                bail!(
                    "{name} and {first_name} differ in {field} ({b:?} and {a:?}): merge takes runs of one method on \
                     one target, counted the same way"
                );
            }
            Ok(())
        };
        differs("options.call", first.options.call.clone(), report.options.call.clone())?;
        differs("options.host", first.options.host.clone(), report.options.host.clone())?;
        differs(
            "options.count-errors",
            first.options.count_errors.to_string(),
            report.options.count_errors.to_string(),
        )?;
    }
    let mut seen_shards: Vec<(&str, crate::shard::Shard)> = Vec::new();
    for (name, report) in reports {
        let Some(shard) = report.shard else { continue };
        if let Some((other, _)) = seen_shards.iter().find(|(_, s)| *s == shard) {
            bail!("{name} and {other} are both shard {shard}: merging a shard twice would count its calls twice");
        }
        if let Some((other, s)) = seen_shards.iter().find(|(_, s)| s.count != shard.count) {
            bail!("{name} and {other} differ in shard: {shard} and {s} are shards of differently split runs");
        }
        seen_shards.push((name, shard));
    }

    let recordings: Vec<Recording> = reports
        .iter()
        .map(|(name, report)| recording_of(report).with_context(|| name.clone()))
        .collect::<Result<_, _>>()?;
    let start = recordings.iter().map(|r| r.started_at).min().unwrap_or_else(std::time::SystemTime::now);
    let end = recordings.iter().map(|r| r.started_at + r.elapsed).max().unwrap_or(start);
    let mut merged = Recording::new();
    merged.started_at = start;
    for mut recording in recordings {
        // One clock for every call: each run's send offsets moved to count from the earliest start.
        let shift = recording.started_at.duration_since(start).unwrap_or_default();
        for d in &mut recording.details {
            d.sent += shift;
        }
        recording.started_at = start;
        merged.merge(&recording);
    }
    merged.elapsed = end.duration_since(start).unwrap_or_default();
    merged.end_reason = [EndReason::Cancel, EndReason::Timeout]
        .into_iter()
        .find(|reason| reports.iter().any(|(_, r)| r.end_reason == reason.as_str()))
        .unwrap_or(EndReason::Normal);

    let mut options = first.options.clone();
    for (_, report) in &reports[1..] {
        let o = &report.options;
        options.total += o.total;
        options.concurrency += o.concurrency;
        options.connections += o.connections;
        options.cpus += o.cpus;
    }
    // The run's rate: the shards' exact rates added (each may be a fraction: 100/s over three shards), to the
    // microcall per second so that thirds add up to a whole.
    let rate: f64 = reports.iter().map(|(_, r)| r.options.open_loop_rps.unwrap_or(r.options.rps as f64)).sum();
    let rate = (rate * 1e6).round() / 1e6;
    options.rps = rate.round() as u64;
    options.open_loop_rps = (rate.fract() != 0.0).then_some(rate);
    let mut report = Report::new(&merged, options);
    report.name = first.name.clone();
    if !report.intervals.complete || reports.iter().any(|(_, r)| !r.intervals.complete) {
        // Some calls are not kept one by one (in a run, or past the bound once merged): the runs' own seconds,
        // built from more of their calls, are added instead.
        report.intervals = Intervals::merge(reports.iter().map(|(_, r)| &r.intervals))?;
    }
    report.merged_from = reports
        .iter()
        .map(|(name, r)| match r.shard {
            Some(shard) => format!("{name} (shard {shard}, {} calls)", r.count),
            None => format!("{name} ({} calls)", r.count),
        })
        .collect();
    let generators: Vec<(String, Health, Duration)> = reports
        .iter()
        .filter_map(|(name, r)| r.generator.clone().map(|g| (name.clone(), g, Duration::from_nanos(r.total))))
        .collect();
    if !generators.is_empty() {
        let mut health = Health::merge(&generators)?;
        health.cpu_per_call = health.cpu_time.checked_div(report.count).unwrap_or(0);
        report.generator = Some(health);
    }
    Ok((report, merged))
}

/// What the run behind `report` recorded, read back from the report.
pub fn recording_of(report: &Report) -> anyhow::Result<Recording> {
    let mut recording = Recording::new();
    if report.count > 0 && report.latency_histogram.is_empty() {
        bail!(
            "no latencyHistogram: written by a load generator that does not carry its histograms (ghz, or an older \
             offload-bench), so its percentiles cannot be merged exactly"
        );
    }
    recording.latency = histogram_codec::decode(&report.latency_histogram, &recording.latency, "latencyHistogram")?;
    recording.ok_latency =
        histogram_codec::decode(&report.ok_latency_histogram, &recording.ok_latency, "okLatencyHistogram")?;
    if recording.latency.len() != report.count {
        bail!("latencyHistogram holds {} calls, count says {}", recording.latency.len(), report.count);
    }
    recording.latency_sum = Duration::from_nanos(report.latency_sum);
    recording.started_at = parse_time(&report.started_at)
        .with_context(|| format!("startedAt {:?} is not an RFC 3339 time", report.started_at))?;
    recording.elapsed = Duration::from_nanos(report.total);
    recording.statuses = report.status_code_distribution.clone();
    for (error, n) in &report.error_distribution {
        recording.add_errors(error, *n);
    }
    recording.details = report
        .details
        .iter()
        .map(|d| {
            let sent = parse_time(&d.timestamp)
                .with_context(|| format!("details[].timestamp {:?} is not an RFC 3339 time", d.timestamp))?
                .duration_since(recording.started_at)
                .unwrap_or_default();
            let code = code_from_go_name(&d.status)
                .with_context(|| format!("details[].status {:?} is not a gRPC status name", d.status))?;
            let error = (!d.error.is_empty()).then(|| d.error.as_str().into());
            Ok(Detail { sent, latency: Duration::from_nanos(d.latency), code, error })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(recording)
}

#[cfg(test)]
#[path = "merge_tests.rs"]
mod tests;
