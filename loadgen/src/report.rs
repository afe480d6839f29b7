//! The JSON report, in ghz's shape (`ghz -O json`), so dashboards and scripts written for ghz read ours, plus
//! what ghz lacks: p99.9 in `latencyDistribution` and, in `options`, whether the run was open-loop.
//!
//! Durations are integer nanoseconds and histogram marks are seconds, as in ghz (Go's `time.Duration` and
//! `float64` seconds).

use std::{collections::BTreeMap, time::SystemTime};

use serde::Serialize;

use crate::recording::Recording;

/// The percentiles ghz reports, plus 99.9.
pub const PERCENTILES: [f64; 8] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];

/// Buckets in the latency histogram, as ghz draws it.
const HISTOGRAM_BUCKETS: u64 = 10;

/// How the run was configured, echoed in the report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Options {
    pub call: String,
    pub host: String,
    pub concurrency: usize,
    pub connections: usize,
    pub total: Option<u64>,
    /// Nanoseconds, or absent.
    pub duration: Option<u64>,
    pub rps: Option<f64>,
    /// Nanoseconds, or absent.
    pub timeout: Option<u64>,
    pub data: serde_json::Value,
    /// Requests were sent on a fixed schedule and latency measured from the scheduled send time.
    pub open_loop: bool,
}

/// A ghz-shaped report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub date: String,
    pub options: Options,
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
}

/// One percentile.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq)]
pub struct LatencyPoint {
    pub percentage: f64,
    /// Nanoseconds.
    pub latency: u64,
}

/// One histogram bar: calls with latency up to `mark` seconds (and above the previous mark).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Bucket {
    pub mark: f64,
    pub count: u64,
    pub frequency: f64,
}

impl Report {
    /// The report of `recording`, run with `options`.
    pub fn new(recording: &Recording, options: Options) -> Self {
        let h = &recording.latency;
        let empty = h.is_empty();
        Self {
            date: rfc3339(SystemTime::now()),
            options,
            count: recording.count(),
            total: recording.elapsed.as_nanos() as u64,
            average: if empty { 0 } else { h.mean() as u64 },
            fastest: if empty { 0 } else { h.min() },
            slowest: if empty { 0 } else { h.max() },
            rps: recording.rps(),
            error_distribution: recording.errors.clone(),
            status_code_distribution: recording.statuses.clone(),
            latency_distribution: PERCENTILES
                .iter()
                .map(|&percentage| LatencyPoint {
                    percentage,
                    latency: recording.percentile(percentage).as_nanos() as u64,
                })
                .collect(),
            histogram: histogram(recording),
        }
    }
}

/// Ten equal-width buckets from the fastest to the slowest call, as ghz draws them.
fn histogram(recording: &Recording) -> Vec<Bucket> {
    let h = &recording.latency;
    if h.is_empty() {
        return Vec::new();
    }
    let (min, max) = (h.min(), h.max());
    let width = ((max - min) / HISTOGRAM_BUCKETS).max(1);
    let total = h.len() as f64;
    let mut buckets: Vec<Bucket> = (1..=HISTOGRAM_BUCKETS)
        .map(|i| Bucket { mark: (min + width * i) as f64 / 1e9, count: 0, frequency: 0.0 })
        .collect();
    for value in h.iter_recorded() {
        let index = (((value.value_iterated_to() - min) / width) as usize).min(buckets.len() - 1);
        buckets[index].count += value.count_at_value();
    }
    for bucket in &mut buckets {
        bucket.frequency = bucket.count as f64 / total;
    }
    buckets
}

/// `SystemTime` as RFC 3339 UTC (`2026-11-26T10:39:08Z`), without a date-time dependency.
pub fn rfc3339(time: SystemTime) -> String {
    let secs = time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
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
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// ghz's human-readable summary (`-O summary`), with p99.9 added.
pub fn summary(report: &Report) -> String {
    use std::fmt::Write;
    let ms = |ns: u64| format!("{:.2} ms", ns as f64 / 1e6);
    let mut out = String::new();
    let _ = writeln!(out, "\nSummary:");
    let _ = writeln!(out, "  Count:\t{}", report.count);
    let _ = writeln!(out, "  Total:\t{}", ms(report.total));
    let _ = writeln!(out, "  Slowest:\t{}", ms(report.slowest));
    let _ = writeln!(out, "  Fastest:\t{}", ms(report.fastest));
    let _ = writeln!(out, "  Average:\t{}", ms(report.average));
    let _ = writeln!(out, "  Requests/sec:\t{:.2}", report.rps);
    if report.options.open_loop {
        let _ = writeln!(out, "  (open loop: latency measured from each request's scheduled send time)");
    }
    let _ = writeln!(out, "\nResponse time histogram:");
    let most = report.histogram.iter().map(|b| b.count).max().unwrap_or(1).max(1);
    for b in &report.histogram {
        let bar = "∎".repeat((b.count * 40 / most) as usize);
        let _ = writeln!(out, "  {:.3} [{}]\t|{bar}", b.mark * 1000.0, b.count);
    }
    let _ = writeln!(out, "\nLatency distribution:");
    for p in &report.latency_distribution {
        let _ = writeln!(out, "  {} % in {}", p.percentage, ms(p.latency));
    }
    let _ = writeln!(out, "\nStatus code distribution:");
    for (code, count) in &report.status_code_distribution {
        let _ = writeln!(out, "  [{code}]\t{count} responses");
    }
    if !report.error_distribution.is_empty() {
        let _ = writeln!(out, "\nError distribution:");
        for (error, count) in &report.error_distribution {
            let _ = writeln!(out, "  [{count}]\t{error}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn options() -> Options {
        Options {
            call: "offload.v1.Gateway.Factorial".into(),
            host: "127.0.0.1:50050".into(),
            concurrency: 1,
            connections: 1,
            total: Some(100),
            duration: None,
            rps: None,
            timeout: None,
            data: serde_json::json!({"n": 20}),
            open_loop: false,
        }
    }

    #[test]
    fn ghz_fields_and_arithmetic() {
        let mut r = Recording::new();
        for v in 1..=100u64 {
            r.record(Duration::from_millis(v), Ok(()));
        }
        r.elapsed = Duration::from_secs(2);
        let report = Report::new(&r, options());
        let json = serde_json::to_value(&report).expect("serialize");
        for key in [
            "date",
            "options",
            "count",
            "total",
            "average",
            "fastest",
            "slowest",
            "rps",
            "errorDistribution",
            "statusCodeDistribution",
            "latencyDistribution",
            "histogram",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert_eq!(report.count, 100);
        assert_eq!(report.total, 2_000_000_000);
        assert!((report.rps - 50.0).abs() < 1e-9);
        assert!((report.average as f64 - 50.5e6).abs() < 0.1e6, "{}", report.average);
        assert!(report.latency_distribution.iter().any(|p| p.percentage == 99.9));
        // Histogram: ten buckets whose counts add up to every call.
        assert_eq!(report.histogram.len(), 10);
        assert_eq!(report.histogram.iter().map(|b| b.count).sum::<u64>(), 100);
        let freq: f64 = report.histogram.iter().map(|b| b.frequency).sum();
        assert!((freq - 1.0).abs() < 1e-9);
    }

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_689_548); // 2026-11-26T10:39:08Z
        assert_eq!(rfc3339(t), "2026-11-26T10:39:08Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }
}
