//! `-O html`: the report as one self-contained page (no script or style from elsewhere, so it opens offline):
//! the summary, the latency distribution, a histogram of bars drawn in CSS, and the status and error counts.

use std::fmt::Write;

use crate::{format::nano_unit, recording::Recording, report::Report};

/// The page.
pub fn render(report: &Report, _recording: &Recording) -> String {
    let mut body = String::new();
    let title = if report.name.is_empty() { "ghz-style load report".to_owned() } else { escape(&report.name) };
    let _ = write!(
        body,
        "<h1>{title}</h1><p>{} on {} · {}</p>",
        escape(&report.options.call),
        escape(&report.options.host),
        escape(&report.date)
    );
    let _ = write!(body, "<h2 id=\"summary\">Summary</h2><table>");
    for (label, value) in [
        ("Count", report.count.to_string()),
        ("Total", nano_unit(report.total)),
        ("Slowest", nano_unit(report.slowest)),
        ("Fastest", nano_unit(report.fastest)),
        ("Average", nano_unit(report.average)),
        ("Requests / sec", format!("{:.2}", report.rps)),
        ("End reason", report.end_reason.clone()),
    ] {
        let _ = write!(body, "<tr><th>{label}</th><td>{}</td></tr>", escape(&value));
    }
    body.push_str("</table><h2 id=\"latency\">Latency distribution (successful calls)</h2><table><tr>");
    for p in &report.latency_distribution {
        let _ = write!(body, "<th>{} %</th>", p.percentage);
    }
    body.push_str("<th>99.9 %</th></tr><tr>");
    for p in &report.latency_distribution {
        let _ = write!(body, "<td>{}</td>", nano_unit(p.latency));
    }
    let _ = write!(
        body,
        "<td>{}</td></tr></table><h2 id=\"histogram\">Histogram</h2><table>",
        nano_unit(report.latency_p999)
    );
    let most = report.histogram.iter().map(|b| b.count).max().unwrap_or(0).max(1);
    for b in &report.histogram {
        let width = b.count * 100 / most;
        let _ = write!(
            body,
            "<tr><td>{:.3} ms</td><td class=\"bar\"><div style=\"width:{width}%\"></div></td><td>{}</td></tr>",
            b.mark * 1000.0,
            b.count
        );
    }
    body.push_str("</table><h2 id=\"status\">Status distribution</h2><table>");
    for (code, n) in &report.status_code_distribution {
        let _ = write!(body, "<tr><td>{}</td><td>{n}</td></tr>", escape(code));
    }
    body.push_str("</table>");
    if !report.error_distribution.is_empty() {
        body.push_str("<h2 id=\"errors\">Errors</h2><table>");
        for (error, n) in &report.error_distribution {
            let _ = write!(body, "<tr><td>{}</td><td>{n}</td></tr>", escape(error));
        }
        body.push_str("</table>");
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title><style>\
         body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{padding:2px 8px;text-align:left}}\
         td.bar{{width:400px}}td.bar div{{background:#2a7;height:12px}}</style></head><body>{body}</body></html>\n"
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{synthetic, synthetic_report};

    #[test]
    fn a_self_contained_page_with_the_numbers() {
        let html = render(&synthetic_report(), &synthetic());
        assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
        assert!(!html.contains("<script src") && !html.contains("<link"), "nothing fetched from elsewhere");
        for expected in ["golden", "Requests / sec", "80.00", "ResourceExhausted", "8.00 ms"] {
            assert!(html.contains(expected), "lacks {expected}");
        }
    }
}
