//! `compare`'s `report.html`, from a short real run, opened in a real headless Chromium: the page parses, draws
//! every chart, fetches nothing, and renders to a screenshot. Skipped, with a message, where no Chromium can be had.

use std::{path::Path, process::Command};

use offload_testkit::browser::Chromium;

const BIN: &str = env!("CARGO_BIN_EXE_offload-bench");

/// How many times `needle` occurs in `haystack`.
fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// The values of every `name="…"` attribute in `html`.
fn attributes<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let key = format!(" {name}=\"");
    html.split(key.as_str()).skip(1).filter_map(|rest| rest.split('"').next()).collect()
}

#[test]
fn a_short_compare_writes_an_html_report_that_a_browser_draws() {
    let out = std::env::temp_dir().join(format!("offload-compare-html-{}", std::process::id()));
    let output = Command::new(BIN)
        .args(["compare", "--quiet", "--modes", "inline,rayon", "--waits", "none", "--hop-duration", "0s"])
        .args(["--duration", "1s", "--warmup", "200ms", "--job-ms", "3", "--probe-rps", "100", "--out"])
        .arg(&out)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run compare");
    assert!(output.status.success(), "compare failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let page = out.join("report.html");
    let html = std::fs::read_to_string(&page).expect("report.html beside report.md");
    assert!(out.join("report.md").exists());

    // Self-contained: nothing to fetch (the only URL is SVG's namespace name), no script.
    for attribute in ["src", "href"] {
        let outside: Vec<&str> = attributes(&html, attribute).into_iter().filter(|v| !v.starts_with('#')).collect();
        assert!(outside.is_empty(), "{attribute} leads outside the page: {outside:?}");
    }
    assert_eq!(count(&html, "<script"), 0);
    // Three rounds (idle, inline, rayon); idle draws its probe, the others probe and heavy: 5 runs, each with a
    // latency chart, a throughput chart and a histogram.
    for round in ["idle", "inline", "rayon"] {
        assert!(html.contains(&format!("<h2>{round}</h2>")), "no section for {round}");
    }
    assert_eq!(count(&html, "<svg"), 15);
    for class in ["p50", "p99", "calls"] {
        let drawn = attributes(&html, "class").iter().filter(|c| **c == class).count();
        assert_eq!(drawn, 5, "{class} lines");
    }
    assert!(html.contains("<td>rayon</td>") && html.contains("INLINE: probe p99"), "summary table and verdicts");

    let Some(chromium) = Chromium::find_or_install() else {
        eprintln!("SKIPPED the browser half of this test: no headless Chromium");
        let _ = std::fs::remove_dir_all(&out);
        return;
    };
    // The DOM the browser built holds every chart and line the file has: nothing was swallowed by bad markup.
    let dom = chromium.dump_dom(&page).expect("chromium --dump-dom");
    assert_eq!(count(&dom, "<svg"), count(&html, "<svg"), "charts lost in the browser");
    assert_eq!(count(&dom, "<path"), count(&html, "<path"), "lines lost in the browser");
    assert_eq!(count(&dom, "<section"), 3);
    assert!(dom.contains("offload: what blocking the runtime costs"));
    let png = out.join("report.png");
    chromium.screenshot(&page, &png, (1280, 2000)).expect("chromium --screenshot");
    let bytes = std::fs::read(&png).expect("screenshot");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(bytes.len() > 20_000, "a {} byte screenshot is a blank page", bytes.len());
    eprintln!("screenshot: {}", Path::new(&png).display());
    let _ = std::fs::remove_dir_all(&out);
}
