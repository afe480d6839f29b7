//! `-O csv`: one line per call, ghz's columns (`duration (ms),status,error`). Unlike ghz, an error holding a comma
//! or a quote is quoted (RFC 4180), and control characters are escaped ([`crate::text`]), so a CSV reader gets
//! three columns on every line, one line per call.

use std::fmt::Write;

use crate::{report::Report, text::escaped};

/// The CSV text.
pub fn render(report: &Report) -> String {
    let mut out = String::from("\nduration (ms),status,error");
    for d in &report.details {
        let _ = write!(out, "\n{:.2},{},{}", d.latency as f64 / 1e6, field(&d.status), field(&d.error));
    }
    out.push('\n');
    out
}

/// One cell: control characters escaped (a server's text never breaks a row), quoted if it holds `,` or `"`.
fn field(text: &str) -> String {
    let text = escaped(text);
    if text.contains([',', '"']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.into_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::synthetic_report;

    #[test]
    fn one_row_per_call_with_ghz_columns() {
        let mut report = synthetic_report();
        report.details[19].error = "rpc error: code = Unknown desc = a, \"b\"".into();
        let text = render(&report);
        let mut lines = text.trim_start_matches('\n').lines();
        assert_eq!(lines.next(), Some("duration (ms),status,error"));
        let rows: Vec<_> = lines.collect();
        assert_eq!(rows.len(), 20);
        assert_eq!(rows[0], "1.00,OK,");
        assert_eq!(rows[16], "0.05,ResourceExhausted,\"rpc error: code = ResourceExhausted desc = shed, try later\"");
        assert_eq!(rows[19], "0.05,ResourceExhausted,\"rpc error: code = Unknown desc = a, \"\"b\"\"\"");
    }
}
