//! The line protocol written, read back by a small parser of the protocol's escaping rules.

use std::collections::BTreeMap;

use super::*;
use crate::report::tests::synthetic_report;

/// One parsed line: measurement, tags, fields (strings unescaped, numbers as text), timestamp.
#[derive(Debug)]
struct Line {
    measurement: String,
    tags: BTreeMap<String, String>,
    fields: BTreeMap<String, String>,
    timestamp: u128,
}

/// Splits `s` at unescaped `sep` outside double quotes (when `quotes`), keeping escapes in the pieces.
fn split(s: &str, sep: char, quotes: bool) -> Vec<String> {
    let (mut parts, mut cur, mut escaped, mut quoted) = (Vec::new(), String::new(), false, false);
    for c in s.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            cur.push(c);
            escaped = true;
        } else if quotes && c == '"' {
            cur.push(c);
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
}

/// Undoes the protocol's escapes of `special` characters; any other backslash is literal.
fn unescape_of(s: &str, special: &[char]) -> String {
    let (mut out, mut chars) = (String::new(), s.chars().peekable());
    while let Some(c) = chars.next() {
        match chars.peek() {
            Some(&next) if c == '\\' && special.contains(&next) => {
                out.push(next);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// Tag keys and values, field keys: `\,`, `\=` and `\ `.
fn unescape(s: &str) -> String {
    unescape_of(s, &[',', '=', ' '])
}

fn parse(line: &str) -> Line {
    let sections = split(line, ' ', true);
    assert_eq!(sections.len(), 3, "measurement+tags, fields, timestamp: {line}");
    let mut head = split(&sections[0], ',', false).into_iter();
    let measurement = head.next().expect("measurement");
    let pair = |kv: String| {
        let parts = split(&kv, '=', true);
        assert_eq!(parts.len(), 2, "key=value: {kv}");
        (unescape(&parts[0]), parts[1].clone())
    };
    let tags = head.map(pair).map(|(k, v)| (k, unescape(&v))).collect();
    let fields = split(&sections[1], ',', true)
        .into_iter()
        .map(pair)
        .map(|(k, v)| {
            let v = match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                Some(s) => unescape_of(s, &['"', '\\']),
                None => {
                    assert!(v.trim_end_matches('i').parse::<f64>().is_ok() || v == "true" || v == "false", "{k}={v}");
                    v
                }
            };
            (k, v)
        })
        .collect();
    Line { measurement, tags, fields, timestamp: sections[2].parse().expect("timestamp") }
}

#[test]
fn summary_line_parses_back() {
    let report = synthetic_report();
    let text = summary(&report);
    assert_eq!(text.lines().count(), 1);
    let line = parse(text.trim_end());
    assert_eq!(line.measurement, "ghz_run");
    assert_eq!(line.tags["call"], "\"offload.v1.Gateway.Factorial\"");
    assert_eq!(line.tags["name"], "\"golden\"");
    assert_eq!(line.tags["n"], "20");
    assert_eq!(line.tags["c"], "2");
    assert_eq!(line.tags["errors"], "4");
    assert_eq!(line.tags["has_errors"], "true");
    assert_eq!(line.tags["data"], r#""{\"n\":20}""#);
    assert_eq!(line.tags["tags"], r#""{\"env\":\"test\"}""#);
    assert_eq!(line.fields["count"], "20");
    assert_eq!(line.fields["median"], "8000000");
    assert_eq!(line.fields["p95"], "16000000");
    assert_eq!(line.fields["rps"], "80.00");
    assert_eq!(line.fields["errors"], "4");
    assert_eq!(line.timestamp, 1_795_689_549_000_000_000);
}

#[test]
fn details_lines_parse_back_one_per_call() {
    let report = synthetic_report();
    let text = details(&report);
    let lines: Vec<_> = text.lines().map(parse).collect();
    assert_eq!(lines.len(), 20);
    assert!(lines.iter().all(|l| l.measurement == "ghz_detail"));
    assert_eq!(lines[0].fields["status"], "OK");
    assert_eq!(lines[0].tags["hasError"], "false");
    assert_eq!(lines[0].fields["latency"], "1000000");
    assert_eq!(lines[16].tags["hasError"], "true");
    assert_eq!(lines[16].fields["error"], "rpc error: code = ResourceExhausted desc = shed, try later");
    assert_eq!(lines[1].timestamp, 1_795_689_548_010_001_500);
}
