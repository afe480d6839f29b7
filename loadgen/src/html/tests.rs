//! The pages parsed back as XML: well-formed, every text escaped, the charts drawn from the calls.

use std::time::Duration;

use super::*;
use crate::report::Options;

const HOSTILE: &str = "</td><script>alert('x')</script> & \"quoted\"";

fn options(call: &str) -> Options {
    let mut options = Options::new(call, "127.0.0.1:50051").open_loop_at(Some(200.0));
    options.concurrency = 4;
    options.connections = 1;
    options.duration = 3_000_000_000;
    options
}

/// Three seconds at 200 calls/s; latency falls from 15 to 1 ms over every 75 ms (a saw-tooth) when `sawtooth`, and
/// every 50th call fails with `HOSTILE` as its message.
fn recording(sawtooth: bool) -> Recording {
    let mut r = Recording::new();
    for i in 0..600u64 {
        let sent = Duration::from_millis(i * 5);
        let latency = if sawtooth { Duration::from_millis(1 + (14 - i % 15)) } else { Duration::from_micros(80) };
        let outcome = if i % 50 == 49 { Err(tonic::Status::unavailable(HOSTILE)) } else { Ok(()) };
        r.record_call(sent, latency, outcome);
    }
    r.elapsed = Duration::from_secs(3);
    r
}

fn parse(html: &str) -> roxmltree::Document<'_> {
    let options = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
    roxmltree::Document::parse_with_options(html, options).unwrap_or_else(|e| panic!("not well-formed: {e}\n{html}"))
}

fn elements<'a>(doc: &'a roxmltree::Document<'a>, name: &str) -> Vec<roxmltree::Node<'a, 'a>> {
    doc.descendants().filter(|n| n.tag_name().name() == name).collect()
}

fn text(node: roxmltree::Node<'_, '_>) -> String {
    node.descendants().filter(|n| n.is_text()).filter_map(|n| n.text()).collect()
}

#[test]
fn escape_replaces_the_five_markup_characters() {
    assert_eq!(escape(r#"<a href="x">&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
    assert_eq!(escape("plain ünïcode"), "plain ünïcode");
}

#[test]
fn a_load_page_is_well_formed_and_escapes_every_text() {
    let rec = recording(true);
    let report = Report::new(&rec, options(&format!("pkg.Svc/{HOSTILE}")));
    let html = render(&report, &rec);
    let doc = parse(&html);
    assert!(elements(&doc, "script").is_empty(), "a name became markup");
    let h1 = elements(&doc, "h1");
    assert_eq!(text(h1[0]), format!("pkg.Svc/{HOSTILE}"));
    let errors: Vec<String> = elements(&doc, "td").into_iter().map(text).filter(|t| t.contains("alert")).collect();
    assert_eq!(errors, vec![format!("rpc error: code = Unavailable desc = {HOSTILE}")]);
    // Latency over time, throughput over time, close-up, histogram.
    let svgs = elements(&doc, "svg");
    assert_eq!(svgs.len(), 4);
    let paths = elements(&doc, "path");
    for class in ["calls", "failed-calls", "p50", "p99", "closeup-line", "closeup-calls", "closeup-failed"] {
        let path = paths.iter().find(|p| p.attribute("class") == Some(class)).unwrap_or_else(|| panic!("{class}"));
        assert!(path.attribute("d").is_some_and(|d| d.len() > 20), "{class} is empty");
    }
    // 3 s in 100 ms slices: 30 throughput bars of successful calls.
    let ok_bars = elements(&doc, "rect").into_iter().filter(|r| r.attribute("class") == Some("ok")).count();
    assert_eq!(ok_bars, 30);
    let cards: Vec<String> = elements(&doc, "div")
        .into_iter()
        .filter(|d| d.attribute("class").is_some_and(|c| c.starts_with("card")))
        .map(text)
        .collect();
    assert!(cards.contains(&"600count".to_owned()), "{cards:?}");
    assert!(cards.contains(&"12failed".to_owned()), "{cards:?}");
}

#[test]
fn the_latency_axis_is_labelled_in_ms() {
    let rec = recording(true);
    let html = render(&Report::new(&rec, options("a.B/C")), &rec);
    let doc = parse(&html);
    let latency_chart = elements(&doc, "svg")[0];
    let ticks: Vec<String> = latency_chart
        .descendants()
        .filter(|t| t.tag_name().name() == "text" && t.attribute("class") == Some("tick"))
        .map(text)
        .filter(|t| t.ends_with(" ms"))
        .collect();
    // Latencies run from 1 to 15 ms: the log axis spans 1 to 20 ms in 1-2-5 steps.
    assert_eq!(ticks, ["1 ms", "2 ms", "5 ms", "10 ms", "20 ms"]);
}

#[test]
fn the_closeup_draws_each_call_of_its_window_in_order() {
    let rec = recording(true);
    let html = render(&Report::new(&rec, options("a.B/C")), &rec);
    let doc = parse(&html);
    let path = |class: &str| {
        let node = elements(&doc, "path").into_iter().find(|p| p.attribute("class") == Some(class)).expect(class);
        node.attribute("d").expect("d").to_owned()
    };
    // 200 calls/s: a 0.5 s window from 1 s, so 100 calls, of which every 50th failed.
    let line = path("closeup-line");
    let ys: Vec<f64> = line
        .split(['M', 'L'])
        .filter(|p| !p.is_empty())
        .map(|p| p.split(' ').nth(1).expect("y").parse().expect("number"))
        .collect();
    assert_eq!(ys.len(), 98);
    assert_eq!(path("closeup-failed").matches('M').count(), 2);
    // The saw-tooth: latency falls call after call (y grows downwards) and jumps back up every 15 calls.
    let jumps_up = ys.windows(2).filter(|w| w[1] < w[0] - 50.0).count();
    let falls = ys.windows(2).filter(|w| w[1] > w[0]).count();
    assert!((6..=8).contains(&jumps_up), "{jumps_up} jumps in {ys:?}");
    assert!(falls > 80, "{falls} falls");
}

#[test]
fn runs_of_the_same_name_share_their_axes_across_rounds() {
    let (saw, flat) = (recording(true), recording(false));
    let (saw_report, flat_report) = (Report::new(&saw, options("a.B/C")), Report::new(&flat, options("a.B/C")));
    let page = Page {
        title: "compare <modes>".into(),
        facts: vec!["machine: 2 cores & more".into()],
        tables: vec![Table {
            caption: "modes".into(),
            header: vec!["mode".into(), "p99".into()],
            rows: vec![vec!["inline".into(), "15.00".into()], vec!["rayon".into(), "0.08".into()]],
        }],
        notes: vec!["INLINE: climbed".into()],
        rounds: vec![
            Round {
                name: "inline".into(),
                note: "heavy jobs inline".into(),
                runs: vec![Run { name: "probe".into(), report: &saw_report, recording: &saw }],
            },
            Round {
                name: "rayon".into(),
                note: "heavy jobs on rayon".into(),
                runs: vec![Run { name: "probe".into(), report: &flat_report, recording: &flat }],
            },
        ],
    };
    let html = render_rounds(&page);
    let doc = parse(&html);
    assert_eq!(text(elements(&doc, "h1")[0]), "compare <modes>");
    assert_eq!(elements(&doc, "nav")[0].children().filter(|n| n.is_element()).count(), 2);
    assert!(elements(&doc, "td").iter().any(|td| text(*td) == "rayon"));
    let sections = elements(&doc, "section");
    assert_eq!(sections.len(), 2);
    let axis = |section: roxmltree::Node<'_, '_>| -> Vec<String> {
        section
            .descendants()
            .filter(|t| t.tag_name().name() == "text" && t.attribute("class") == Some("tick"))
            .map(text)
            .filter(|t| t.ends_with(" ms"))
            .collect()
    };
    // The flat 80 µs line is drawn on the saw-tooth's axis (down to 0.05 ms, up to 20 ms), not on one of its own.
    assert_eq!(axis(sections[0]), axis(sections[1]));
    assert!(axis(sections[1]).contains(&"20 ms".to_owned()));
}

#[test]
fn an_empty_run_still_makes_a_page() {
    let rec = Recording::new();
    let html = render(&Report::new(&rec, options("a.B/C")), &rec);
    let doc = parse(&html);
    assert!(text(doc.root_element()).contains("no timeline to draw"));
}

#[test]
fn a_limited_generator_is_said_before_any_number() {
    let rec = recording(false);
    let mut report = Report::new(&rec, options("a.B/C"));
    let observed = crate::health::Observed { lateness: None, cpu: Duration::from_secs(100), cores: 1 };
    report.generator = Some(crate::health::Health::of(&observed, Duration::from_secs(1), 10));
    let html = render(&report, &rec);
    let doc = parse(&html);
    let body = elements(&doc, "body")[0];
    let first = body.children().find(|n| n.is_element()).expect("body has elements");
    assert_eq!(first.attribute("class"), Some("warning"));
    assert!(text(first).starts_with("WARNING: the load generator, not the target, limited this run"));
    assert!(elements(&doc, "caption").iter().any(|c| text(*c) == "Load generator"));
}
