//! What `offload-bench load` writes when the server is hostile: a `grpc-message` full of terminal escapes, CR/LF
//! and bidi overrides reaches no text output raw, and every text format still parses with its real consumer
//! (`promtool check metrics`, Python's `csv` module, the Influx line-protocol grammar); `--name` and `--tags`
//! become Prometheus labels once each; a unary reply the protocol forbids (two messages, two statuses) is counted
//! as the error it is.

use std::{
    io::Write,
    process::{Command, Stdio},
    time::Duration,
};

use offload_testkit::{
    foreign::echo_proto,
    hostile::{Answer, HostileServer},
    python::python3,
};
use serde_json::Value;

use super::{BIN, run_within};

/// A message meant to set the terminal's title, clear it, and forge a line of the error distribution.
const FORGERY: &str =
    "\x1b]0;pwned\x07\x1b[2J\r\n  [1]   rpc error: code = OK desc = all fine, \"quoted\" \u{202e}gnp.exe\u{9b}";

/// Whether CI is running the tests: a tool missing there is a failure, not a skip.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A check that needs `tool`: skipped with a message where it is missing, except in CI, where that fails.
fn missing(tool: &str) {
    assert!(!in_ci(), "{tool} is missing, and under CI=true a test whose tool is missing fails");
    eprintln!("SKIPPED the {tool} check: {tool} is not installed");
}

fn run_load(args: &[&str]) -> String {
    let output = run_within(Command::new(BIN).args(["load", "--quiet"]).args(args), Duration::from_secs(30));
    assert!(output.status.success(), "load {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

#[test]
fn a_server_cannot_forge_text_outputs_and_every_format_parses() {
    let server = HostileServer::start(|_, n| if n % 2 == 0 { Answer::ok() } else { Answer::status(13, FORGERY) });
    let (host, proto) = (server.host(), echo_proto().display().to_string());
    let tags = r#"{"env": "ci", "team-x": "a b", "name": "clash"}"#;
    let call = ["--insecure", "--proto", &proto, "--call", "echo.v1.Echo/Unary", "-n", "6", "-c", "1"];
    let json: Value = serde_json::from_str(&run_load(&[&call[..], &["-O", "json", &host]].concat())).expect("JSON");
    // JSON keeps the server's text exactly (JSON escapes it): the other formats must not.
    let errors = json["errorDistribution"].as_object().expect("errors");
    assert_eq!(errors.len(), 1, "{json}");
    assert!(errors.keys().all(|e| e.ends_with(FORGERY)), "{json}");
    for format in ["summary", "csv", "influx-summary", "influx-details", "prometheus"] {
        let text = run_load(&[&call[..], &["--name", "smoke", "--tags", tags, "-O", format, &host]].concat());
        let raw: Vec<char> =
            text.chars().filter(|&c| (c.is_control() && c != '\n' && c != '\t') || c == '\u{202e}').collect();
        assert!(raw.is_empty(), "-O {format}: raw control characters {raw:?} in\n{text}");
        assert!(
            !text.lines().any(|l| l.trim_start().starts_with("[1]   rpc error: code = OK")),
            "-O {format}: a forged line:\n{text}"
        );
        match format {
            "summary" => assert!(text.contains("\\u{1b}]0;pwned\\u{7}"), "the message shown, escaped:\n{text}"),
            "csv" => csv_rows(&text),
            "influx-summary" | "influx-details" => {
                let points = text.lines().count();
                assert_eq!(points, if format == "influx-summary" { 1 } else { 6 }, "{text}");
                for line in text.lines() {
                    if let Err(why) = line_protocol(line) {
                        panic!("-O {format}: not line protocol ({why}): {line}");
                    }
                }
            }
            "prometheus" => prometheus(&text),
            other => unreachable!("{other}"),
        }
    }
}

/// Python's `csv` module reads one header and six rows of three cells, the errors escaped on one line each.
fn csv_rows(text: &str) {
    let Some(python) = python3() else { return missing("python3") };
    let script = "import csv, json, sys; print(json.dumps(list(csv.reader(sys.stdin.read().strip().splitlines()))))";
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write");
    let output = child.wait_with_output().expect("python3 output");
    assert!(output.status.success(), "Python's csv module refused:\n{text}");
    let rows: Vec<Vec<String>> = serde_json::from_slice(&output.stdout).expect("rows");
    assert_eq!(rows.len(), 7, "{rows:?}");
    assert_eq!(rows[0], ["duration (ms)", "status", "error"]);
    assert!(rows.iter().all(|r| r.len() == 3), "{rows:?}");
    assert_eq!(rows.iter().filter(|r| r[1] == "Internal" && r[2].contains("\\u{1b}[2J\\r\\n")).count(), 3, "{rows:?}");
}

/// `promtool check metrics` has nothing to say, and the labels are each there once: name, end reason, the tags.
fn prometheus(text: &str) {
    match offload_testkit::prometheus::tool("promtool") {
        Some(promtool) => {
            // promtool parses, then lints. A parse error (duplicate labels, bad escapes) fails; the lints on
            // ghz's own names and its missing HELP lines are ghz's format, kept for its users' dashboards.
            let ghz_style = ["no help text", "should not have \"_count\" suffix", "should not have \"_total\" suffix"];
            let ghz_style = [&ghz_style[..], &["metric name should not include type 'histogram'"]].concat();
            if let Err(said) = offload_testkit::prometheus::check_metrics(&promtool, text) {
                let other: Vec<&str> =
                    said.lines().filter(|l| !l.trim().is_empty() && !ghz_style.iter().any(|s| l.contains(s))).collect();
                assert!(other.is_empty(), "promtool check metrics:\n{said}\n{text}");
            }
        }
        None => missing("promtool"),
    }
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("exposition text");
    let count = scrape.samples.iter().find(|s| s.metric == "ghz_run_count").expect("ghz_run_count");
    for (label, value) in [("name", "smoke"), ("env", "ci"), ("team_x", "a b"), ("tag_name", "clash")] {
        assert_eq!(count.labels.get(label), Some(value), "{label} in\n{text}");
    }
    let first = text.lines().find(|l| l.starts_with("ghz_run_count{")).expect("a sample");
    assert_eq!(first.matches("name=\"").count(), 2, "name and tag_name, each once: {first}");
}

/// Checks one line against InfluxDB's line protocol: `measurement[,tag=value…] field=value[,…] timestamp`, with
/// its escapes (`\,`, `\ `, `\=` in keys and tag values; `\"`, `\\` in string fields), fields typed (float,
/// integer with `i`, boolean, quoted string).
fn line_protocol(line: &str) -> Result<(), String> {
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    // An unquoted token (measurement, key or tag value) up to one of `ends`, backslash escapes allowed.
    let token = |i: &mut usize, ends: &[char]| -> Result<String, String> {
        let mut out = String::new();
        while *i < chars.len() && !ends.contains(&chars[*i]) {
            if chars[*i] == '\\' && *i + 1 < chars.len() {
                *i += 1;
            } else if chars[*i] == '"' && out.is_empty() && ends.contains(&'=') {
                return Err(format!("a key starts with a quote at {}", *i));
            }
            out.push(chars[*i]);
            *i += 1;
        }
        if out.is_empty() { Err(format!("an empty token at {}", *i)) } else { Ok(out) }
    };
    let expect = |i: &mut usize, c: char| -> Result<(), String> {
        if chars.get(*i) == Some(&c) {
            *i += 1;
            Ok(())
        } else {
            Err(format!("expected {c:?} at {}, found {:?}", *i, chars.get(*i)))
        }
    };
    token(&mut i, &[',', ' '])?;
    while chars.get(i) == Some(&',') {
        i += 1;
        token(&mut i, &['=', ',', ' '])?;
        expect(&mut i, '=')?;
        token(&mut i, &[',', ' '])?;
    }
    expect(&mut i, ' ')?;
    loop {
        token(&mut i, &['=', ',', ' '])?;
        expect(&mut i, '=')?;
        if chars.get(i) == Some(&'"') {
            i += 1;
            while chars.get(i).is_some_and(|&c| c != '"') {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            expect(&mut i, '"')?;
        } else {
            let value: String = chars[i..].iter().take_while(|&&c| c != ',' && c != ' ').collect();
            i += value.chars().count();
            let typed = value.strip_suffix('i').is_some_and(|v| v.parse::<i64>().is_ok())
                || value.parse::<f64>().is_ok()
                || ["t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"].contains(&value.as_str());
            if !typed {
                return Err(format!("field value {value:?} is no type"));
            }
        }
        if chars.get(i) != Some(&',') {
            break;
        }
        i += 1;
    }
    expect(&mut i, ' ')?;
    let timestamp: String = chars[i..].iter().collect();
    timestamp.parse::<i64>().map(drop).map_err(|_| format!("timestamp {timestamp:?}"))
}

#[test]
fn a_unary_reply_the_protocol_forbids_is_an_error() {
    let server = HostileServer::start(|_, n| match n % 3 {
        0 => Answer::Reply {
            messages: vec![Vec::new(), Vec::new()],
            gzip: false,
            trailers: vec![("grpc-status", "0".into())],
        },
        1 => Answer::Reply {
            messages: vec![Vec::new()],
            gzip: false,
            trailers: vec![("grpc-status", "0".into()), ("grpc-status", "13".into())],
        },
        _ => Answer::ok(),
    });
    let proto = echo_proto().display().to_string();
    let report: Value = serde_json::from_str(&run_load(&[
        "--insecure",
        "--proto",
        &proto,
        "--call",
        "echo.v1.Echo/Unary",
        "-n",
        "6",
        "-c",
        "1",
        "-O",
        "json",
        &server.host(),
    ]))
    .expect("JSON");
    assert_eq!(report["statusCodeDistribution"]["OK"], 2, "{report}");
    assert_eq!(report["statusCodeDistribution"]["Internal"], 4, "{report}");
    let errors: Vec<&String> = report["errorDistribution"].as_object().expect("errors").keys().collect();
    assert!(errors.iter().any(|e| e.contains("more than one reply message")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("2 grpc-status trailers")), "{errors:?}");
}
