//! `-O influx-summary` and `-O influx-details`: InfluxDB line protocol, ghz's measurements (`ghz_run`,
//! `ghz_detail`), tags and fields. One difference: string field values (`error`, `status`) are escaped as the
//! line protocol specifies (`\"` and `\\`), where ghz escapes spaces, commas and `=` inside them, which InfluxDB
//! stores as literal backslashes.

use std::fmt::Write;

use crate::{report::Report, text::escaped};

/// `ghz_run,<tags> <fields> <date in ns>`: the whole run on one line.
pub fn summary(report: &Report) -> String {
    let mut fields = vec![
        format!("count={}", report.count),
        format!("total={}", report.total),
        format!("average={}", report.average),
        format!("fastest={}", report.fastest),
        format!("slowest={}", report.slowest),
        format!("rps={:.2}", report.rps),
    ];
    if let Some(median) = report.percentile(50) {
        fields.push(format!("median={median}"));
    }
    if let Some(p95) = report.percentile(95) {
        fields.push(format!("p95={p95}"));
    }
    fields.push(format!("errors={}", report.errors()));
    format!("ghz_run,{} {} {}\n", tags(report, true), fields.join(","), date_nanos(report))
}

/// `ghz_detail,<tags>,hasError=… latency=…,error="…",status="…" <timestamp in ns>`: one line per call.
pub fn details(report: &Report) -> String {
    let common = tags(report, false);
    let mut out = String::new();
    for d in &report.details {
        let timestamp = d.unix_nanos;
        let _ = writeln!(
            out,
            "ghz_detail,{common},hasError={} latency={},error=\"{}\",status=\"{}\" {timestamp}",
            !d.error.is_empty(),
            d.latency,
            string_field(&d.error),
            string_field(&d.status),
        );
    }
    out
}

/// ghz's tag set: the run's name, what was called and how, and (for the summary) error counts.
fn tags(report: &Report, with_errors: bool) -> String {
    let o = &report.options;
    let mut s = Vec::new();
    let quoted = |v: &str| tag_value(&format!("\"{v}\""));
    if !report.name.trim().is_empty() {
        s.push(format!("name={}", quoted(report.name.trim())));
    }
    if !o.proto.is_empty() {
        s.push(format!("proto={}", quoted(&o.proto)));
    } else if !o.protoset.is_empty() {
        s.push(format!("Protoset={}", quoted(&o.protoset)));
    }
    s.push(format!("call={}", quoted(&o.call)));
    s.push(format!("host={}", quoted(&o.host)));
    s.push(format!("n={}", o.total));
    if o.concurrency_schedule == "const" {
        s.push(format!("c={}", o.concurrency));
    } else {
        s.push(format!("concurrency-schedule={}", tag_value(&o.concurrency_schedule)));
        s.push(format!("concurrency-start={}", o.concurrency_start));
        s.push(format!("concurrency-end={}", o.concurrency_end));
        s.push(format!("concurrency-step={}", o.concurrency_step));
        s.push(format!("concurrency-step-duration={}", o.concurrency_step_duration));
        s.push(format!("concurrency-max-duration={}", o.concurrency_max_duration));
    }
    if o.load_schedule == "const" {
        s.push(format!("rps={}", o.rps));
    } else {
        s.push(format!("load-schedule={}", tag_value(&o.load_schedule)));
        s.push(format!("load-start={}", o.load_start));
        s.push(format!("load-end={}", o.load_end));
        s.push(format!("load-step={}", o.load_step));
        s.push(format!("load-step-duration={}", o.load_step_duration));
        s.push(format!("load-max-duration={}", o.load_max_duration));
    }
    let seconds = |ns: u64| ns as f64 / 1e9;
    s.push(format!("z={}", o.duration));
    s.push(format!("timeout={}", seconds(o.timeout)));
    s.push(format!("dial_timeout={}", seconds(o.dial_timeout)));
    s.push(format!("keepalive={}", seconds(o.keepalive)));
    let json_string = |v: String| tag_value(&serde_json::to_string(&v).unwrap_or_default());
    s.push(format!("data={}", json_string(o.data.to_string())));
    let metadata = o
        .metadata
        .as_ref()
        .map_or_else(|| "\"\"".to_owned(), |m| json_string(serde_json::to_string(m).unwrap_or_default()));
    s.push(format!("metadata={metadata}"));
    let call_tags = if report.tags.is_empty() {
        "\"\"".to_owned()
    } else {
        json_string(serde_json::to_string(&report.tags).unwrap_or_default())
    };
    s.push(format!("tags={call_tags}"));
    if with_errors {
        s.push(format!("errors={}", report.errors()));
        s.push(format!("has_errors={}", report.errors() > 0));
    }
    s.join(",")
}

fn date_nanos(report: &Report) -> u128 {
    report.date_unix_nanos
}

/// A tag value: control characters escaped (a line is a point), then spaces, commas and `=` (ghz's
/// `cleanInfluxString`).
fn tag_value(v: &str) -> String {
    escaped(v).replace(' ', "\\ ").replace(',', "\\,").replace('=', "\\=")
}

/// A string field's contents: control characters escaped (a line is a point), then `\` and `"`, as the line
/// protocol specifies.
fn string_field(v: &str) -> String {
    escaped(v).replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
#[path = "influx_tests.rs"]
mod tests;
