//! The report, in ghz's shape (`runner.Report` of bojand/ghz, field for field), built once from a [`Recording`]
//! and written in every format from that one value ([`crate::format`]).
//!
//! ghz's rules, kept: durations are integer nanoseconds; `date` is RFC 3339; `latencyDistribution` holds the
//! integer percentiles 10, 25, 50, 75, 90, 95 and 99; those, `fastest`, `slowest` and the histogram are over the
//! **successful** calls only (with `--count-errors`, over all), while `average` and `rps` are over all calls;
//! `details[]` lists each call. Percentiles are exact (ghz's nearest-rank rule over the sorted latencies) when
//! every call is in `details`, and from the HDR histogram (three significant digits) past [`MAX_DETAILS`] calls.
//!
//! offload's additions are extra keys, which Go's JSON decoder skips: `latencyP999` at the top, and in `options`
//! `open-loop` and `latency-from` (open loop measures from each call's scheduled send time). Beside them, what
//! makes reports exact to merge and compare: the latency histograms themselves (`latencyHistogram`,
//! `okLatencyHistogram`: HdrHistogram V2 compressed, base64), the exact `latencySum`, `startedAt`, the run second
//! by second (`intervals`), which `shard` of a split run it is, the generator's own health (`generator`), and the
//! `thresholds` checked. A report is read back ([`Report::read`]) by `merge` and `diff`.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::{
    health::Health,
    histogram_codec,
    intervals::Intervals,
    recording::{MAX_DETAILS, Recording, go_code_name},
    shard::Shard,
};

pub use crate::report_options::Options;

/// The percentiles ghz reports.
pub const PERCENTILES: [u32; 7] = [10, 25, 50, 75, 90, 95, 99];

/// Histogram marks, as ghz draws them: ten equal steps from the fastest call, and the slowest.
const HISTOGRAM_BUCKETS: u32 = 10;

/// A ghz report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Report {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub end_reason: String,
    pub options: Options,
    /// RFC 3339, seconds.
    pub date: String,
    /// The same instant, nanoseconds since the Unix epoch (for the Influx timestamp; not in the JSON).
    #[serde(skip)]
    pub date_unix_nanos: u128,
    pub count: u64,
    pub total: u64,
    pub average: u64,
    pub fastest: u64,
    pub slowest: u64,
    pub rps: f64,
    pub error_distribution: BTreeMap<String, u64>,
    pub status_code_distribution: BTreeMap<String, u64>,
    pub latency_distribution: Vec<LatencyPoint>,
    pub histogram: Vec<Bucket>,
    pub details: Vec<ResultDetail>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// offload's addition: the 99.9th percentile, over the same calls as `latencyDistribution`.
    #[serde(rename = "latencyP999")]
    pub latency_p999: u64,
    /// offload: every call's latency, nanoseconds (HdrHistogram V2 compressed, base64).
    pub latency_histogram: String,
    /// offload: the successful calls' latency, nanoseconds (the same encoding).
    pub ok_latency_histogram: String,
    /// offload: the sum of every call's latency, nanoseconds (`average` before its rounding).
    pub latency_sum: u64,
    /// offload: when the run started, RFC 3339 with nanoseconds (`total` runs from here).
    pub started_at: String,
    /// offload: the run second by second.
    pub intervals: Intervals,
    /// offload: which shard of a split run this is (`--shard`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// offload: the reports a merged report was made from, one line each (`merge`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
    /// offload: the load generator's own health, and whether it limited the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generator: Option<Health>,
    /// offload: the thresholds checked (`--threshold`), each with its measured value.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub thresholds: Vec<ThresholdOutcome>,
}

/// One threshold, checked: what was asked, what was measured, and whether it held.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ThresholdOutcome {
    /// As written (`p(99)<50ms`).
    pub threshold: String,
    /// The value measured, in the threshold's unit (`42.10ms`).
    pub value: String,
    /// Whether it held.
    pub pass: bool,
}

/// ghz's `errorDistribution` from the kept error texts, and one line more for the calls whose text was not kept
/// (past [`crate::error_texts::MAX_DISTINCT`] distinct ones), saying how many distinct texts they had.
fn error_distribution(recording: &Recording) -> BTreeMap<String, u64> {
    let mut distribution = recording.errors.clone();
    if recording.errors_beyond > 0 {
        let key = format!(
            "(not kept: {} more distinct error messages, past the first {})",
            recording.distinct_errors_beyond(),
            crate::error_texts::MAX_DISTINCT
        );
        distribution.insert(key, recording.errors_beyond);
    }
    distribution
}

/// One percentile.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct LatencyPoint {
    pub percentage: u32,
    /// Nanoseconds.
    pub latency: u64,
}

/// One histogram bar: calls with latency up to `mark` seconds (and above the previous mark).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Bucket {
    pub mark: f64,
    pub count: u64,
    pub frequency: f64,
}

/// One call, as ghz's `details[]` lists it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ResultDetail {
    /// RFC 3339 with nanoseconds, as Go prints a `time.Time`.
    pub timestamp: String,
    /// Nanoseconds.
    pub latency: u64,
    /// `rpc error: code = … desc = …`, or empty.
    pub error: String,
    /// grpc-go's code name (`OK`, `Unavailable`, …).
    pub status: String,
    /// `timestamp`, nanoseconds since the Unix epoch (for the Influx timestamp; not in the JSON).
    #[serde(skip)]
    pub unix_nanos: u128,
}

impl Report {
    /// The report of `recording`, run with `options`, dated now.
    pub fn new(recording: &Recording, options: Options) -> Self {
        Self::dated(recording, options, SystemTime::now())
    }

    /// The report of `recording`, run with `options`, dated `date` (tests pin it).
    pub fn dated(recording: &Recording, options: Options, date: SystemTime) -> Self {
        let count = recording.count();
        let counted = Latencies::of(recording, options.count_errors);
        let details = recording
            .details
            .iter()
            .map(|d| ResultDetail {
                timestamp: rfc3339_nano(recording.started_at + d.sent),
                unix_nanos: unix_nanos(recording.started_at + d.sent),
                latency: nanos(d.latency),
                error: d.error.as_deref().unwrap_or_default().to_owned(),
                status: go_code_name(d.code).to_owned(),
            })
            .collect();
        Self {
            name: options.name.clone(),
            end_reason: recording.end_reason.as_str().to_owned(),
            date: rfc3339(date),
            date_unix_nanos: unix_nanos(date),
            count,
            total: nanos(recording.elapsed),
            average: nanos(recording.latency_sum).checked_div(count).unwrap_or(0),
            fastest: counted.first(),
            slowest: counted.last(),
            rps: recording.rps(),
            error_distribution: error_distribution(recording),
            status_code_distribution: recording.statuses.clone(),
            latency_distribution: if counted.total == 0 {
                Vec::new()
            } else {
                PERCENTILES
                    .iter()
                    .map(|&p| LatencyPoint { percentage: p, latency: counted.percentile(f64::from(p)) })
                    .collect()
            },
            histogram: counted.histogram(),
            details,
            tags: options.tags.clone().unwrap_or_default(),
            latency_p999: counted.percentile(99.9),
            latency_histogram: histogram_codec::encode(&recording.latency),
            ok_latency_histogram: histogram_codec::encode(&recording.ok_latency),
            latency_sum: nanos(recording.latency_sum),
            started_at: rfc3339_nano(recording.started_at),
            intervals: Intervals::of(recording),
            shard: None,
            merged_from: Vec::new(),
            generator: recording.generator.as_ref().map(|g| crate::health::Health::of(g, recording.elapsed, count)),
            thresholds: Vec::new(),
            options,
        }
    }

    /// The report in JSON file `path` (`-O json` or `pretty`), as `merge` and `diff` read it; `date_unix_nanos`
    /// and each detail's `unix_nanos` filled in from their text.
    pub fn read(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        // A pod's log (`kubectl logs`) mixes stderr's lines into stdout's: the report is then the line that is one.
        let mut report: Self = serde_json::from_str(&text)
            .or_else(|e| text.lines().rev().find(|l| l.starts_with('{')).map_or(Err(e), serde_json::from_str))
            .with_context(|| format!("{} is not a JSON report (-O json): cannot read it", path.display()))?;
        report.date_unix_nanos = parse_time(&report.date).map_or(0, unix_nanos);
        for d in &mut report.details {
            d.unix_nanos = parse_time(&d.timestamp).map_or(0, unix_nanos);
        }
        Ok(report)
    }
    /// The latency at integer percentile `p`, if reported.
    pub fn percentile(&self, p: u32) -> Option<u64> {
        self.latency_distribution.iter().find(|l| l.percentage == p).map(|l| l.latency)
    }

    /// Calls that did not end `OK`.
    pub fn errors(&self) -> u64 {
        self.error_distribution.values().sum()
    }
}

/// The latencies percentiles are taken over, ascending, as (nanoseconds, how many calls).
struct Latencies {
    values: Vec<(u64, u64)>,
    total: u64,
}

impl Latencies {
    /// Successful calls (all calls with `count_errors`): exactly from `details` when it holds every call, from the
    /// HDR histogram otherwise.
    fn of(recording: &Recording, count_errors: bool) -> Self {
        let exact = recording.details.len() as u64 == recording.count() && recording.details.len() < MAX_DETAILS;
        let mut values: Vec<(u64, u64)> = if exact {
            let mut v: Vec<u64> = recording
                .details
                .iter()
                .filter(|d| count_errors || d.error.is_none())
                .map(|d| nanos(d.latency))
                .collect();
            v.sort_unstable();
            v.into_iter().map(|ns| (ns, 1)).collect()
        } else {
            let h = if count_errors { &recording.latency } else { &recording.ok_latency };
            h.iter_recorded().map(|v| (h.highest_equivalent(v.value_iterated_to()), v.count_at_value())).collect()
        };
        values.retain(|&(_, n)| n > 0);
        let total = values.iter().map(|&(_, n)| n).sum();
        Self { values, total }
    }

    fn first(&self) -> u64 {
        self.values.first().map_or(0, |&(v, _)| v)
    }

    fn last(&self) -> u64 {
        self.values.last().map_or(0, |&(v, _)| v)
    }

    /// ghz's rule: the value at 0-based rank ⌊p·n/100⌋, one lower when p·n/100 is a whole number.
    fn percentile(&self, p: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let ip = p / 100.0 * self.total as f64;
        let mut rank = ip as u64;
        if ip == rank as f64 {
            rank = rank.saturating_sub(1);
        }
        let mut seen = 0;
        for &(value, n) in &self.values {
            seen += n;
            if seen > rank {
                return value;
            }
        }
        self.last()
    }

    /// ghz's histogram: eleven marks (the fastest plus ten equal steps, the last being the slowest); each call
    /// counts in the first mark at or above its latency.
    fn histogram(&self) -> Vec<Bucket> {
        if self.total == 0 {
            return Vec::new();
        }
        let (fastest, slowest) = (self.first() as f64 / 1e9, self.last() as f64 / 1e9);
        let step = (slowest - fastest) / f64::from(HISTOGRAM_BUCKETS);
        let mut marks: Vec<f64> = (0..HISTOGRAM_BUCKETS).map(|i| fastest + step * f64::from(i)).collect();
        marks.push(slowest);
        let mut counts = vec![0u64; marks.len()];
        let mut bucket = 0;
        for &(value, n) in &self.values {
            let seconds = value as f64 / 1e9;
            while seconds > marks[bucket] && bucket < marks.len() - 1 {
                bucket += 1;
            }
            counts[bucket] += n;
        }
        marks
            .into_iter()
            .zip(counts)
            .map(|(mark, count)| Bucket { mark, count, frequency: count as f64 / self.total as f64 })
            .collect()
    }
}

/// An RFC 3339 time as the report writes them (`date`, `startedAt`, `details[].timestamp`).
pub fn parse_time(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text).ok()
}

fn unix_nanos(time: SystemTime) -> u128 {
    time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `SystemTime` as UTC calendar fields: (year, month, day, hour, minute, second).
fn civil(secs: u64) -> (i64, i64, i64, u64, u64, u64) {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `SystemTime` as RFC 3339 UTC (`2026-11-26T10:39:08Z`), as ghz writes the report's `date`.
pub fn rfc3339(time: SystemTime) -> String {
    let secs = time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `SystemTime` as Go marshals a `time.Time` (RFC 3339 with nanoseconds, trailing zeros dropped:
/// `2026-11-26T10:39:08.1234Z`), as ghz writes each call's `timestamp`.
pub fn rfc3339_nano(time: SystemTime) -> String {
    let since = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let (y, mo, d, h, mi, s) = civil(since.as_secs());
    let fraction = format!("{:09}", since.subsec_nanos());
    let fraction = fraction.trim_end_matches('0');
    let dot = if fraction.is_empty() { "" } else { "." };
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{dot}{fraction}Z")
}

#[cfg(test)]
#[path = "report_tests.rs"]
pub(crate) mod tests;
