//! The `offload-bench` binary end to end: a short real `compare` writes a complete report (its `report.html` opened
//! in a real headless Chromium, skipped with a message where none can be had), the ghz config files shipped in
//! `bench/ghz/` (JSON, TOML, YAML) drive the `load` command against real servers, and `load` is tried as a ghz user
//! would ([`load`]: every output format, stdin, metadata, binary data, TLS, refusals), nonsense refused and ghz's
//! inputs taken as ghz takes them ([`bad_input`]), runs against misbehaving servers ended by their flags and by
//! Ctrl-C ([`hostile`]), text outputs a hostile server cannot forge, each parsed by its real consumer
//! ([`honest_output`]), a tiny `overhead` run's table is parsed back ([`overhead`]), sharded runs, `merge`,
//! thresholds, `diff` and the generator's own health are tried end to end ([`distributed`]), and every
//! `offload-bench` command the user pages show parses with the real command line ([`doc_commands`]).

#[path = "cli/bad_input.rs"]
mod bad_input;
#[path = "cli/distributed.rs"]
mod distributed;
#[path = "cli/doc_commands.rs"]
mod doc_commands;
#[path = "cli/honest_output.rs"]
mod honest_output;
#[path = "cli/hostile.rs"]
mod hostile;
#[path = "cli/load.rs"]
mod load;
#[path = "cli/overhead.rs"]
mod overhead;

use std::{
    path::Path,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use offload_testkit::{browser::Chromium, child::ChildServer};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_offload-bench");

pub(crate) fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Runs `command` to its end, which must come within `limit`: past it the process is killed and the test fails
/// (a run that does not end on its own flags is the bug these tests look for). Its output is read as it comes, so
/// a full pipe never holds it.
pub(crate) fn run_within(command: &mut Command, limit: Duration) -> Output {
    let child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    let mut child = child.expect("start offload-bench");
    let pipe = |mut from: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = from.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = pipe(Box::new(child.stdout.take().expect("stdout")));
    let stderr = pipe(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = stderr.join().unwrap_or_default();
            panic!("still running after {limit:?}, killed: {command:?}\n{}", String::from_utf8_lossy(&stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: stdout.join().unwrap_or_default(), stderr: stderr.join().unwrap_or_default() }
}

/// A compute server and a gateway in front of it, as child processes of this binary.
pub(crate) fn start_pair() -> (ChildServer, ChildServer) {
    let mut compute = Command::new(BIN);
    compute.args(["compute", "--listen", "127.0.0.1:0"]);
    let compute = ChildServer::start(compute).expect("compute");
    let mut gateway = Command::new(BIN);
    gateway.args(["gateway", "--listen", "127.0.0.1:0", "--compute", &compute.url()]);
    let gateway = ChildServer::start(gateway).expect("gateway");
    (compute, gateway)
}

#[test]
fn a_short_compare_writes_table_json_charts_and_markdown() {
    let out = std::env::temp_dir().join(format!("offload-compare-{}", std::process::id()));
    let output = Command::new(BIN)
        .args(["compare", "--quiet", "--duration", "1s", "--warmup", "200ms", "--hop-duration", "300ms"])
        .args(["--job-ms", "2", "--probe-rps", "50", "--hop-concurrency", "8", "--pinned", "rayon", "--out"])
        .arg(&out)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run compare");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "compare failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let modes = ["inline", "spawn-task", "spawn-blocking", "block-in-place", "rayon", "adaptive", "rayon+pinned"];
    let waits = ["wait-async", "wait-blocking", "wait-spawn-blocking", "wait-spawn-task"];
    for row in modes.iter().chain(&waits).chain(&["idle", "via gateway", "INLINE: probe p99", "gateway BLOCKING"]) {
        assert!(stdout.contains(row), "table lacks {row:?}:\n{stdout}");
    }
    assert!(stdout.contains("stalls (top culprit)"), "table lacks the stalls column:\n{stdout}");

    let summary = json(&out.join("summary.json"));
    let rounds = summary["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 12, "idle + six modes + one pinned + four upstream-wait styles");
    for round in rounds.iter().skip(1) {
        assert!(round["heavy"]["ok"].as_u64().expect("heavy ok") > 0, "{round}");
        assert!(round["compute_cpu_s"].as_f64().expect("cpu") > 0.0, "{round}");
    }
    for round in rounds {
        // The servers' stall detector is read in every round (2 ms jobs stay under its threshold: a count, maybe 0).
        assert!(round["stalls"]["total"].as_f64().is_some(), "no stall count: {round}");
    }
    for mode in modes.iter().chain(&waits) {
        for kind in ["heavy", "probe", "health"] {
            let report = json(&out.join(format!("{mode}-{kind}.json")));
            assert!(report["count"].as_u64().expect("count") > 0, "{mode}-{kind}");
            assert_eq!(report["latencyDistribution"].as_array().expect("latencies").len(), 7, "ghz's seven");
            assert!(report["statusCodeDistribution"]["OK"].as_u64().is_some(), "{mode}-{kind}");
        }
    }
    for (chart, label) in [
        ("probe_latency.svg", "rayon"),
        ("heavy_throughput.svg", "rayon"),
        ("upstream_wait_latency.svg", "wait-blocking"),
    ] {
        let svg = std::fs::read_to_string(out.join(chart)).expect("chart written");
        assert!(svg.contains("<svg") && svg.contains("</svg>"), "{chart} is not an SVG");
        assert!(svg.contains(label), "{chart} lacks its labels");
    }
    let md = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(md.contains("![probe latency per mode](probe_latency.svg)"));
    assert!(md.contains("| rayon |"));
    assert!(md.contains("| wait-blocking |"));
    let rounds_with_heavy: Vec<&str> = modes.iter().chain(&waits).copied().collect();
    let probe_rows = attribution_rows(&md, "Where the probe's time went");
    let heavy_rows = attribution_rows(&md, "Where the heavy jobs' time went");
    for (rows, expected) in
        [(&probe_rows, [&["idle"][..], &rounds_with_heavy].concat()), (&heavy_rows, rounds_with_heavy)]
    {
        let labels: Vec<&str> = rows.iter().step_by(2).map(|r| r.round.as_str()).collect();
        assert_eq!(labels, expected, "a p50 and a p99 row per round, in order");
        for pair in rows.chunks(2) {
            assert_eq!((pair[0].at.as_str(), pair[1].at.as_str()), ("p50", "p99"), "{pair:?}");
            assert!(pair[0].total <= pair[1].total, "the calls at p99 take longer than those at p50: {pair:?}");
        }
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// One row of a `report.md` attribution table.
#[derive(Debug)]
struct AttributionRow {
    round: String,
    at: String,
    total: f64,
}

/// The rows of the attribution table under the heading starting with `heading`, each checked as it is read: every
/// segment non-negative and the segments adding up to the total (to the display's rounding); the timer's lateness
/// is beside the total, not in it.
fn attribution_rows(md: &str, heading: &str) -> Vec<AttributionRow> {
    let start = md.find(&format!("### {heading}")).unwrap_or_else(|| panic!("no {heading:?} table:\n{md}"));
    let mut lines = md[start..].lines().skip_while(|l| !l.starts_with('|'));
    let header: Vec<&str> = lines.next().expect("header").trim_matches('|').split('|').map(str::trim).collect();
    assert_eq!(header[..4], ["round", "at", "total ms", "timer late ms"], "{header:?}");
    assert_eq!(header.len(), 12, "eight segments after the total and the timer: {header:?}");
    lines
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let number = |c: &str| c.parse::<f64>().unwrap_or_else(|_| panic!("{c:?} in {line}"));
            let (total, segments): (f64, Vec<f64>) = (number(cells[2]), cells[4..].iter().map(|c| number(c)).collect());
            assert!(number(cells[3]) >= 0.0 && segments.iter().all(|&s| s >= 0.0), "a negative segment: {line}");
            let sum: f64 = segments.iter().sum();
            assert!((sum - total).abs() <= 0.01, "segments add up to {sum}, not the total {total}: {line}");
            AttributionRow { round: cells[0].to_owned(), at: cells[1].to_owned(), total }
        })
        .collect()
}

#[test]
fn the_shipped_ghz_configs_drive_the_load_command() {
    let (compute, gateway) = start_pair();

    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("ghz");
    let (mut seen, mut formats) = (0, std::collections::BTreeSet::new());
    for entry in std::fs::read_dir(&configs).expect("bench/ghz") {
        let path = entry.expect("entry").path();
        // Every file there is a config `--config` reads (JSON, TOML or YAML, ghz's keys only).
        let config =
            offload_loadgen::config::Config::read(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        formats.insert(path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_owned());
        // Point each at the right server (the files name the default ports) and keep it short; calls still in
        // flight at the end are awaited (`wait`) so that every call counted is a real answer.
        let host = if config.host.as_deref().expect("host").ends_with(":50051") { compute.addr } else { gateway.addr };
        let output = Command::new(BIN)
            .args(["load", "--quiet", "-O", "json", "-z", "300ms", "--duration-stop", "wait", "--config"])
            .arg(&path)
            .arg(host.to_string())
            .output()
            .expect("run load");
        assert!(output.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&output.stderr));
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("ghz JSON report");
        let ok = report["statusCodeDistribution"]["OK"].as_u64().unwrap_or(0);
        assert!(ok > 0 && ok == report["count"].as_u64().expect("count"), "{}: {report}", path.display());
        let expected_call = config.call.as_deref().expect("call").replace('/', ".");
        assert_eq!(report["options"]["call"].as_str(), Some(expected_call.as_str()), "{}", path.display());
        seen += 1;
    }
    assert!(seen >= 16, "expected the shipped configs, found {seen}");
    assert!(["json", "toml", "yaml"].iter().all(|f| formats.contains(*f)), "{formats:?}");
    gateway.stop(Duration::from_secs(20));
    compute.stop(Duration::from_secs(20));
}

#[test]
fn compare_measures_servers_that_are_already_running() {
    let (compute, gateway) = start_pair();
    let out = std::env::temp_dir().join(format!("offload-compare-running-{}", std::process::id()));
    let output = Command::new(BIN)
        .args(["compare", "--quiet", "--gateway", &gateway.url(), "--compute", &compute.url()])
        .args(["--modes", "inline,rayon", "--waits", "none", "--duration", "500ms", "--warmup", "100ms"])
        .args(["--job-ms", "2", "--probe-rps", "50", "--hop-duration", "200ms", "--hop-concurrency", "4", "--out"])
        .arg(&out)
        .output()
        .expect("run compare");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let summary = json(&out.join("summary.json"));
    let rounds = summary["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 3, "idle + two modes");
    // Servers it did not start: no CPU accounting, but real load went through them.
    assert!(rounds[1]["compute_cpu_s"].is_null());
    assert!(rounds[2]["heavy"]["ok"].as_u64().expect("ok") > 0);
    assert!(stdout.contains("via gateway"), "{stdout}");
    let _ = std::fs::remove_dir_all(&out);
    gateway.stop(Duration::from_secs(20));
    compute.stop(Duration::from_secs(20));
}

#[test]
fn stall_help_states_the_rule_behind_its_verdict() {
    let output = Command::new(BIN).args(["stall", "--help"]).output().expect("run stall --help");
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{help}");
    for expected in ["--target", "--call", "--probe", "--json", "--min-ratio", "--min-extra", "stalls", "ok"] {
        assert!(help.contains(expected), "stall --help lacks {expected:?}:\n{help}");
    }
}

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
        .args(["--duration", "3s", "--warmup", "200ms", "--job-ms", "3", "--probe-rps", "200", "--out"])
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
    // latency chart, a throughput chart and a histogram, and a close-up where the run has a hundred calls in a
    // quarter of its time (every probe: 200/s for 3 s; heavy jobs, depending on how fast they ran).
    for round in ["idle", "inline", "rayon"] {
        assert!(html.contains(&format!("<h2>{round}</h2>")), "no section for {round}");
    }
    let drawn = |class: &str| attributes(&html, "class").iter().filter(|c| **c == class).count();
    for class in ["p50", "p99", "calls"] {
        assert_eq!(drawn(class), 5, "{class} lines");
    }
    let closeups = drawn("closeup-line");
    assert!((3..=5).contains(&closeups), "{closeups} close-ups");
    // The lead chart (probe latency per mode) before the tables, then the runs' charts.
    assert_eq!(count(&html, "<svg"), 1 + 15 + closeups);
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
