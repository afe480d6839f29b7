//! `offload-bench load` tried as a ghz user tries it, against real servers: every `-O` format written with `-o`
//! and parsed back, `-d @` from stdin, `-m`/`-M` metadata and `-e` gzip seen by a foreign (Python) server,
//! binary messages (`-B`, `-b`), TLS (`--cacert`/`--cname`, `--skipTLS`), schedules and `-x`, and the refusals
//! that name what they refuse.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use offload_testkit::{child::ChildServer, foreign::ForeignService};
use prost::Message;
use serde_json::Value;

use super::BIN;

/// A compute server (extra flags: TLS), as a child process of this binary.
fn compute(extra: &[&str]) -> ChildServer {
    let mut command = Command::new(BIN);
    command.args(["compute", "--listen", "127.0.0.1:0"]).args(extra);
    ChildServer::start(command).expect("compute")
}

/// Runs `offload-bench load --quiet ARGS`, feeding `stdin` if given.
fn load(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut command = Command::new(BIN);
    command.args(["load", "--quiet"]).args(args).env_remove("RUST_BACKTRACE");
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("run load");
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(bytes).expect("write stdin");
    }
    child.wait_with_output().expect("load output")
}

/// The JSON report of a run that must succeed.
fn report(args: &[&str], stdin: Option<&[u8]>) -> Value {
    let output = load(args, stdin);
    assert!(output.status.success(), "load {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&output.stdout)))
}

/// The error output of a run that must fail.
fn refusal(args: &[&str]) -> String {
    let output = load(args, None);
    assert!(!output.status.success(), "load {args:?} should have been refused");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("offload-load-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Splits a line-protocol line at spaces that are neither escaped nor inside a quoted string.
fn line_sections(line: &str) -> Vec<String> {
    let (mut parts, mut cur, mut escaped, mut quoted) = (Vec::new(), String::new(), false, false);
    for c in line.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    parts
}

#[test]
fn every_output_format_written_to_a_file_parses_back() {
    let server = compute(&[]);
    let host = server.addr.to_string();
    let dir = temp_dir("formats");
    let formats = ["summary", "pretty", "json", "csv", "html", "influx-summary", "influx-details", "prometheus"];
    for format in formats {
        let path = dir.join(format!("report.{format}"));
        let path_arg = path.display().to_string();
        let args = ["--insecure", "--call", "offload.v1.Compute/Factorial", "-d", r#"{"n": 5}"#, "-n", "20", "-c", "2"];
        let output = load(
            &[&args[..], &["--skipFirst", "2", "--name", "formats", "-O", format, "-o", &path_arg, &host]].concat(),
            None,
        );
        assert!(output.status.success(), "-O {format}: {}", String::from_utf8_lossy(&output.stderr));
        assert!(output.stdout.is_empty(), "-O {format} -o: nothing on stdout");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("-O {format}: {e}"));
        match format {
            "summary" => {
                for expected in ["Summary:", "  Name:\t\tformats", "  Count:\t18", "Latency distribution:", "[OK]"] {
                    assert!(text.contains(expected), "summary lacks {expected:?}:\n{text}");
                }
            }
            "pretty" | "json" => {
                let report: Value = serde_json::from_str(&text).expect("JSON");
                assert_eq!(text.trim_end().lines().count() > 1, format == "pretty");
                assert_eq!(report["count"], 18, "--skipFirst 2 of 20");
                assert_eq!(report["name"], "formats");
                assert_eq!(report["endReason"], "normal");
                assert_eq!(report["statusCodeDistribution"]["OK"], 18);
                assert_eq!(report["options"]["skipFirst"], 2);
                assert_eq!(report["options"]["insecure"], true);
                assert!(report["options"]["timeout"].is_u64(), "durations are integer ns");
                let percentages: Vec<_> = report["latencyDistribution"]
                    .as_array()
                    .expect("array")
                    .iter()
                    .map(|p| p["percentage"].as_u64().expect("integer"))
                    .collect();
                assert_eq!(percentages, [10, 25, 50, 75, 90, 95, 99]);
                let details = report["details"].as_array().expect("details");
                assert_eq!(details.len(), 18);
                let stamp = details[0]["timestamp"].as_str().expect("timestamp");
                assert!(stamp.len() >= 20 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T', "{stamp}");
                assert!(details.iter().all(|d| d["status"] == "OK" && d["error"] == "" && d["latency"].is_u64()));
                assert_eq!(report["histogram"].as_array().map(Vec::len), Some(11));
            }
            "csv" => {
                let rows: Vec<_> = text.trim().lines().collect();
                assert_eq!(rows[0], "duration (ms),status,error");
                assert_eq!(rows.len(), 19);
                for row in &rows[1..] {
                    let cells: Vec<_> = row.split(',').collect();
                    assert_eq!(cells.len(), 3, "{row}");
                    assert!(cells[0].parse::<f64>().is_ok() && cells[1] == "OK" && cells[2].is_empty(), "{row}");
                }
            }
            "html" => {
                assert!(text.starts_with("<!DOCTYPE html>") && text.trim_end().ends_with("</html>"));
                assert!(text.contains("<h1>formats · ") && text.contains("18 calls"), "title and count");
                // Latency over time (p50 and p99 lines, every call a dot), throughput beneath, the histogram.
                for class in ["p50", "p99", "calls"] {
                    assert!(text.contains(&format!("class=\"{class}\"")), "no {class} line");
                }
                html_in_a_browser(&path, &text);
            }
            "influx-summary" => {
                let sections = line_sections(text.trim_end());
                assert_eq!(sections.len(), 3, "{text}");
                assert!(sections[0].starts_with("ghz_run,") && sections[0].contains("name=\"formats\""), "{text}");
                let fields: Vec<_> = sections[1].split(',').collect();
                assert!(fields.contains(&"count=18") && fields.contains(&"errors=0"), "{text}");
                assert!(sections[2].parse::<u128>().expect("timestamp") > 1_600_000_000_000_000_000);
            }
            "influx-details" => {
                let lines: Vec<_> = text.lines().map(line_sections).collect();
                assert_eq!(lines.len(), 18);
                for sections in &lines {
                    assert!(sections[0].starts_with("ghz_detail,") && sections[0].ends_with("hasError=false"));
                    assert!(sections[1].contains("status=\"OK\"") && sections[1].starts_with("latency="));
                    assert!(sections[2].parse::<u128>().is_ok());
                }
            }
            "prometheus" => {
                let scrape =
                    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("exposition text");
                let count = scrape.samples.iter().find(|s| s.metric == "ghz_run_count").expect("ghz_run_count");
                assert!(matches!(count.value, prometheus_parse::Value::Gauge(v) if v == 18.0));
                assert_eq!(count.labels.get("name"), Some("formats"));
                assert!(scrape.samples.iter().any(|s| s.metric == "ghz_run_latency"));
            }
            other => unreachable!("{other}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    server.stop(Duration::from_secs(20));
}

#[test]
fn stdin_data_metadata_and_gzip_reach_a_foreign_server() {
    let Some(mut service) = ForeignService::start("stdin_data_metadata_and_gzip_reach_a_foreign_server", true) else {
        return;
    };
    let host = service.host();
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let metadata = format!(r#"{{"traceparent": "{traceparent}"}}"#);
    let args = [
        "--insecure",
        "--call",
        "echo.v1.Echo/Unary",
        "-d",
        "@",
        "-m",
        &metadata,
        "-e",
        "-n",
        "5",
        "-c",
        "1",
        "-O",
        "json",
        &host,
    ];
    let sent = report(&args, Some(br#"{"text": "from stdin"}"#));
    assert_eq!(sent["statusCodeDistribution"]["OK"], 5, "gzip-compressed requests accepted: {sent}");
    assert_eq!(sent["options"]["enable-compression"], true);
    assert_eq!(sent["options"]["metadata"]["traceparent"], traceparent);
    let dir = temp_dir("metadata-file");
    let file = dir.join("metadata.json");
    std::fs::write(&file, r#"{"x-from-file": "yes"}"#).expect("write");
    let file_arg = file.display().to_string();
    report(
        &[
            "--insecure",
            "--call",
            "echo.v1.Echo/Unary",
            "-d",
            r#"{"text": "with -M"}"#,
            "-M",
            &file_arg,
            "-n",
            "2",
            "-c",
            "1",
            "-O",
            "json",
            &host,
        ],
        None,
    );
    let seen: Vec<Value> = service.seen().iter().map(|l| serde_json::from_str(l).expect("seen JSON")).collect();
    let from_stdin: Vec<_> = seen.iter().filter(|s| s["message"]["text"] == "from stdin").collect();
    assert_eq!(from_stdin.len(), 5, "{seen:?}");
    assert!(from_stdin.iter().all(|s| s["metadata"]["traceparent"] == traceparent), "{from_stdin:?}");
    let from_file: Vec<_> = seen.iter().filter(|s| s["message"]["text"] == "with -M").collect();
    assert_eq!(from_file.len(), 2);
    assert!(from_file.iter().all(|s| s["metadata"]["x-from-file"] == "yes"), "{from_file:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn binary_messages_gzip_and_schedules_against_compute() {
    let server = compute(&[]);
    let host = server.addr.to_string();
    let call = ["--insecure", "--call", "offload.v1.Compute/Factorial"];
    let request = offload_proto::v1::FactorialRequest { n: 5, ..Default::default() };
    let dir = temp_dir("binary");
    let file = dir.join("request.bin");
    std::fs::write(&file, request.encode_to_vec()).expect("write");
    let file_arg = file.display().to_string();
    let one = report(&[&call[..], &["-B", &file_arg, "-n", "10", "-c", "2", "-O", "json", &host]].concat(), None);
    assert_eq!(one["statusCodeDistribution"]["OK"], 10, "{one}");
    assert_eq!(one["options"]["binary"], true);
    // Two length-prefixed messages on stdin, sent round-robin.
    let mut both = request.encode_length_delimited_to_vec();
    both.extend(offload_proto::v1::FactorialRequest { n: 7, ..Default::default() }.encode_length_delimited_to_vec());
    let two = report(&[&call[..], &["-b", "-n", "10", "-c", "2", "-O", "json", &host]].concat(), Some(&both));
    assert_eq!(two["statusCodeDistribution"]["OK"], 10, "{two}");

    // -e: gzip-compressed requests, which offload's servers accept (tests/…/compression.rs checks the bytes).
    let gzip =
        report(&[&call[..], &["-d", r#"{"n": 5}"#, "-e", "-n", "3", "-c", "1", "-O", "json", &host]].concat(), None);
    assert_eq!(gzip["statusCodeDistribution"]["OK"], 3, "{gzip}");
    assert_eq!(gzip["options"]["enable-compression"], true);

    // A rising open-loop rate for 600 ms, then -z stops it (ghz's end reason: timeout).
    let step = ["--load-schedule", "step", "--load-start", "20", "--load-step", "20", "--load-step-duration", "200ms"];
    let stepped =
        report(&[&call[..], &["-d", r#"{"n": 5}"#], &step[..], &["-z", "600ms", "-O", "json", &host]].concat(), None);
    assert_eq!(stepped["endReason"], "timeout");
    assert_eq!(stepped["options"]["load-schedule"], "step");
    assert_eq!(stepped["options"]["load-step-duration"], 200_000_000);
    assert_eq!(stepped["options"]["open-loop"], true);
    let sent = stepped["count"].as_u64().expect("count");
    assert!((20..=26).contains(&sent), "4 + 8 + 12 scheduled, give or take the edges: {sent}");
    let line = ["--concurrency-schedule", "line", "--concurrency-start", "1", "--concurrency-end", "3", "-z", "400ms"];
    let ramped = report(
        &[&call[..], &["-d", r#"{"n": 5}"#], &line[..], &["--duration-stop", "wait", "-O", "json", &host]].concat(),
        None,
    );
    assert_eq!(ramped["options"]["concurrency-schedule"], "line");
    assert!(ramped["count"].as_u64().expect("count") > 0);
    // round_robin over what `localhost` resolves to (127.0.0.1, and ::1 where the server is not: skipped).
    let localhost = format!("localhost:{}", server.addr.port());
    let rr = ["-d", r#"{"n": 5}"#, "--lb-strategy", "round_robin", "-n", "5", "-c", "1", "-O", "json", &localhost];
    let spread = report(&[&call[..], &rr[..]].concat(), None);
    assert_eq!(spread["statusCodeDistribution"]["OK"], 5, "{spread}");
    assert_eq!(spread["options"]["lb-strategy"], "round_robin");
    // -x bounds a count that would take far longer.
    let bounded = report(
        &[&call[..], &["-d", r#"{"n": 5}"#, "-n", "10000000", "-c", "1", "-x", "300ms", "-O", "json", &host]].concat(),
        None,
    );
    assert_eq!(bounded["endReason"], "timeout");
    assert!(bounded["count"].as_u64().expect("count") < 10_000_000);
    let _ = std::fs::remove_dir_all(&dir);
    server.stop(Duration::from_secs(20));
}

/// A CA and a server certificate for `name`, as PEM files in `dir`.
fn certificates(dir: &Path, name: &str) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::from_params(&ca, &ca_key);
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec![name.to_owned()]).expect("params").signed_by(&key, &issuer).expect("sign");
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write");
    std::fs::write(dir.join("server.pem"), cert.pem()).expect("write");
    std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("write");
}

#[test]
fn tls_with_a_ca_and_a_name_or_skipping_verification() {
    let dir = temp_dir("tls");
    let name = "compute.offload.test";
    certificates(&dir, name);
    let path = |f: &str| dir.join(f).display().to_string();
    let server = compute(&["--tls-cert", &path("server.pem"), "--tls-key", &path("server.key")]);
    let host = server.addr.to_string();
    let call = ["--call", "offload.v1.Compute/Factorial", "-d", r#"{"n": 5}"#, "-n", "5", "-c", "1", "-O", "json"];
    let trusted = report(&[&call[..], &["--cacert", &path("ca.pem"), "--cname", name, &host]].concat(), None);
    assert_eq!(trusted["statusCodeDistribution"]["OK"], 5, "{trusted}");
    assert_eq!(trusted["options"]["cname"], name);
    assert_eq!(trusted["options"]["insecure"], false);
    let skipped = report(&[&call[..], &["--skipTLS", &host]].concat(), None);
    assert_eq!(skipped["statusCodeDistribution"]["OK"], 5, "{skipped}");
    assert_eq!(skipped["options"]["skipTLS"], true);
    // Not trusted (the system's roots do not know this CA): no connection.
    let err = refusal(&[&call[..], &["--cname", name, &host]].concat());
    assert!(err.contains("cannot connect"), "{err}");
    // Plaintext to a TLS server: no call answered (the connection is refused, or every call fails).
    let output = load(&[&call[..], &["--insecure", &host]].concat(), None);
    if output.status.success() {
        let plaintext: Value = serde_json::from_slice(&output.stdout).expect("JSON");
        assert!(plaintext["statusCodeDistribution"].get("OK").is_none(), "{plaintext}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    server.stop(Duration::from_secs(20));
}

#[test]
fn only_the_services_a_server_lists_are_offered_and_called() {
    // The gateway's reflection sends offload.proto, which defines offload.v1.Compute beside offload.v1.Gateway;
    // the gateway lists (and serves) only its own. Both load paths and `stall` refuse the other at start-up.
    let (compute, gateway) = super::start_pair();
    let host = gateway.addr.to_string();
    let compute_call = "offload.v1.Compute/Factorial";
    let runs: [(&str, Vec<&str>); 3] = [
        ("load (typed path)", vec!["load", "--quiet", "--insecure", "-d", r#"{"n": 5}"#, "-n", "5", "--call"]),
        ("load -e (reflection)", vec!["load", "--quiet", "--insecure", "-e", "-d", r#"{"n": 5}"#, "-n", "5", "--call"]),
        ("stall", vec!["stall", "--insecure", "-d", r#"{"n": 5}"#, "-z", "200ms", "--target", &host, "--call"]),
    ];
    for (what, args) in &runs {
        let mut command = Command::new(BIN);
        command.args(args).arg(compute_call).env_remove("RUST_BACKTRACE");
        if args[0] == "load" {
            command.arg(&host);
        }
        let output = super::run_within(&mut command, Duration::from_secs(30));
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{what}: accepted a service the gateway does not serve");
        assert!(
            err.contains("--call offload.v1.Compute/Factorial: the server does not serve offload.v1.Compute"),
            "{what}: {err}"
        );
        // The listing, one name a line (indented further under `stall`'s "Caused by").
        let listed: Vec<&str> = err.lines().map(str::trim).collect();
        for offered in ["offload.v1.Gateway", "offload.v1.Gateway.Factorial", "grpc.health.v1.Health"] {
            assert!(listed.contains(&offered), "{what} does not offer {offered}: {err}");
        }
        assert!(!listed.contains(&"offload.v1.Compute"), "{what} offers what is not served: {err}");
    }
    // What the gateway lists is called, by both paths; gzip (`-e`) is accepted.
    for extra in [&[][..], &["-e"][..]] {
        let args =
            [&["--insecure", "--call", "offload.v1.Gateway/Factorial", "-d", r#"{"n": 5}"#, "-n", "5"][..], extra];
        let report = report(&[&args.concat()[..], &["-O", "json", &host][..]].concat(), None);
        assert_eq!(report["statusCodeDistribution"]["OK"], 5, "{extra:?}: {report}");
    }
    gateway.stop(Duration::from_secs(20));
    compute.stop(Duration::from_secs(20));
}

#[test]
fn what_cannot_be_honoured_is_refused_by_name() {
    let dir = temp_dir("refusals");
    for (file, text) in
        [("bad.json", r#"{"call": "a.B/C", "concurency": 4}"#), ("bad.yaml", "call: a.B/C\nconcurency: 4\n")]
    {
        let path = dir.join(file);
        std::fs::write(&path, text).expect("write");
        let err = refusal(&["--config", &path.display().to_string(), "127.0.0.1:1"]);
        assert!(err.contains("concurency"), "{file}: {err}");
    }
    let base = ["--insecure", "--call", "a.B/C", "127.0.0.1:1"];
    for (extra, named) in [
        (&["--lb-strategy", "grpclb"][..], "grpclb"),
        (&["-O", "xml"][..], "xml"),
        (&["--debug", "/tmp/x.log"][..], "--debug"),
        (&["--reflect-metadata", "{}"][..], "--reflect-metadata"),
        (&["--async"][..], "--async"),
        (&["--duration-stop", "later"][..], "later"),
        (&["-z", "10"][..], "10"),
        (&["--load-schedule", "step", "--load-start", "5", "--load-step", "1"][..], "--load-step-duration"),
    ] {
        let err = refusal(&[extra, &base[..]].concat());
        assert!(err.contains(named), "{extra:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_speaks_ghz_and_says_where_offload_differs() {
    let output = Command::new(BIN).args(["load", "--help"]).output().expect("run load --help");
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{help}");
    for flag in [
        "--skipTLS",
        "--cacert",
        "--cname",
        "--metadata-file",
        "--binary-file",
        "--data-file",
        "--skipFirst",
        "--count-errors",
        "--max-duration",
        "--load-schedule",
        "--load-step-duration",
        "--concurrency-schedule",
        "--enable-compression",
        "--lb-strategy",
        "--connections",
        "--tags",
        "--name",
        "--format",
        "--output",
    ] {
        assert!(help.contains(flag), "load --help lacks {flag}:\n{help}");
    }
    for difference in ["open loop", "scheduled send time", "p99.9"] {
        assert!(help.contains(difference), "load --help does not say {difference:?}:\n{help}");
    }
}

/// `load -O html`'s page as a real headless Chromium builds it: every chart and line of the file in its DOM, and a
/// screenshot that is not blank. Skipped, with a message, where no Chromium can be had.
fn html_in_a_browser(page: &std::path::Path, html: &str) {
    let Some(chromium) = offload_testkit::browser::Chromium::find_or_install() else {
        eprintln!("SKIPPED the browser check of load -O html: no headless Chromium");
        return;
    };
    let dom = chromium.dump_dom(page).expect("chromium --dump-dom");
    assert_eq!(dom.matches("<svg").count(), html.matches("<svg").count(), "charts lost in the browser");
    assert_eq!(dom.matches("<path").count(), html.matches("<path").count(), "lines lost in the browser");
    let png = page.with_extension("png");
    chromium.screenshot(page, &png, (1280, 1600)).expect("chromium --screenshot");
    let bytes = std::fs::read(&png).expect("screenshot");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000, "a blank or broken screenshot");
}
