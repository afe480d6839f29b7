//! `-O prometheus`: the Prometheus text exposition format, ghz's metric families (`ghz_run_count`, `_total`,
//! `_average`, `_fastest`, `_slowest`, `_rps`, `_errors` gauges; `ghz_run_histogram`; `ghz_run_latency` summary,
//! plus offload's 0.999 quantile), each labelled with the run's name, end reason, options and `--tags` (one label
//! each). Fixes over ghz so that a Prometheus parser (and `promtool check metrics`) takes the text: label names
//! have `-` as `_` (`load_schedule`), each label once, and histogram buckets are cumulative with a `+Inf` bucket. Values keep ghz's units (nanoseconds; bucket bounds in seconds;
//! `_sum` is the run's total time, as ghz writes it).

use std::fmt::Write;

use serde_json::Value;

use crate::{report::Report, text::escaped};

/// Options not written as labels: the request itself (ghz blanks them too), long free text, the name (already the
/// first label) and the tags (each its own label).
const UNLABELLED: [&str; 5] = ["data", "metadata", "latency-from", "name", "tags"];

/// The exposition text.
pub fn render(report: &Report) -> String {
    let labels = labels(report);
    let mut out = String::new();
    let mut gauge = |name: &str, value: f64| {
        let _ = writeln!(out, "# TYPE {name} gauge\n{name}{{{labels}}} {value}");
    };
    gauge("ghz_run_count", report.count as f64);
    gauge("ghz_run_total", report.total as f64);
    gauge("ghz_run_average", report.average as f64);
    gauge("ghz_run_fastest", report.fastest as f64);
    gauge("ghz_run_slowest", report.slowest as f64);
    gauge("ghz_run_rps", report.rps);

    let _ = writeln!(out, "# TYPE ghz_run_histogram histogram");
    let mut cumulative = 0;
    for b in &report.histogram {
        cumulative += b.count;
        let _ = writeln!(out, "ghz_run_histogram_bucket{{{labels},le=\"{}\"}} {cumulative}", b.mark);
    }
    let _ = writeln!(out, "ghz_run_histogram_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "ghz_run_histogram_sum{{{labels}}} {}", report.total);
    let _ = writeln!(out, "ghz_run_histogram_count{{{labels}}} {cumulative}");

    let _ = writeln!(out, "# TYPE ghz_run_latency summary");
    for p in &report.latency_distribution {
        let q = f64::from(p.percentage) / 100.0;
        let _ = writeln!(out, "ghz_run_latency{{{labels},quantile=\"{q}\"}} {}", p.latency);
    }
    if !report.latency_distribution.is_empty() {
        let _ = writeln!(out, "ghz_run_latency{{{labels},quantile=\"0.999\"}} {}", report.latency_p999);
    }
    let _ = writeln!(out, "ghz_run_latency_sum{{{labels}}} {}", report.total);
    let _ = writeln!(out, "ghz_run_latency_count{{{labels}}} {}", report.count);

    let _ = writeln!(out, "# TYPE ghz_run_errors gauge\nghz_run_errors{{{labels}}} {}", report.errors());
    out
}

/// `name="…",end_reason="…"` and every option ghz labels with (schedule settings only for a non-const schedule).
fn labels(report: &Report) -> String {
    let mut pairs =
        vec![("name".to_owned(), report.name.clone()), ("end_reason".to_owned(), report.end_reason.clone())];
    let options = serde_json::to_value(&report.options).unwrap_or(Value::Null);
    let const_load = report.options.load_schedule == "const";
    let const_concurrency = report.options.concurrency_schedule == "const";
    for (key, value) in options.as_object().into_iter().flatten() {
        if UNLABELLED.contains(&key.as_str())
            || (const_load && key.starts_with("load-"))
            || (const_concurrency && key.starts_with("concurrency-"))
        {
            continue;
        }
        let value = match value {
            Value::String(s) => s.clone(),
            Value::Array(items) => items.iter().map(|i| i.as_str().unwrap_or_default()).collect::<Vec<_>>().join(","),
            other => other.to_string(),
        };
        pairs.push((key.replace('-', "_"), value));
    }
    // --tags: one label each, named as a label name may be (other characters as `_`), `tag_` before a name
    // that is already a label.
    for (key, value) in &report.tags {
        let mut name: String =
            key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) || name.starts_with("__") {
            name = format!("tag_{name}");
        }
        if pairs.iter().any(|(k, _)| *k == name) {
            name = format!("tag_{name}");
        }
        if !pairs.iter().any(|(k, _)| *k == name) {
            pairs.push((name, value.clone()));
        }
    }
    pairs.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect::<Vec<_>>().join(",")
}

/// A label value: control characters escaped ([`crate::text`]), then the exposition format's `\` and `"`.
fn escape(v: &str) -> String {
    escaped(v).replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use prometheus_parse::{Scrape, Value};

    use super::*;
    use crate::report::tests::synthetic_report;

    #[test]
    fn parses_back_with_a_prometheus_parser() {
        let report = synthetic_report();
        let text = render(&report);
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid exposition text");
        let sample = |name: &str| {
            scrape.samples.iter().find(|s| s.metric == name).unwrap_or_else(|| panic!("no {name} in\n{text}"))
        };
        assert!(matches!(sample("ghz_run_count").value, Value::Gauge(v) if v == 20.0));
        assert!(matches!(sample("ghz_run_errors").value, Value::Gauge(v) if v == 4.0));
        assert!(matches!(sample("ghz_run_slowest").value, Value::Gauge(v) if v == 16e6));
        let count = sample("ghz_run_count");
        assert_eq!(count.labels.get("call"), Some("offload.v1.Gateway.Factorial"));
        assert_eq!(count.labels.get("end_reason"), Some("normal"));
        assert_eq!(count.labels.get("name"), Some("golden"));
        assert_eq!(count.labels.get("insecure"), Some("true"));
        assert_eq!(count.labels.get("load_schedule"), None, "const schedules are not labelled");
        match &sample("ghz_run_histogram").value {
            Value::Histogram(buckets) => {
                assert_eq!(buckets.len(), 12, "eleven marks and +Inf");
                assert_eq!(buckets.last().map(|b| b.count), Some(16.0));
                assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count), "cumulative");
            }
            other => panic!("histogram expected, got {other:?}"),
        }
        match &sample("ghz_run_latency").value {
            Value::Summary(quantiles) => {
                assert_eq!(quantiles.len(), 8, "ghz's seven and 0.999");
                let median = quantiles.iter().find(|q| q.quantile == 0.5).expect("median");
                assert_eq!(median.count, 8e6);
            }
            other => panic!("summary expected, got {other:?}"),
        }
    }
}
