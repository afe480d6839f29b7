//! `offload-bench load` and `stall` given what a user should not give them, and what ghz takes: every nonsense
//! number or template refused at start-up, by the flag or config key, with the range it takes, before any
//! connection is opened (a hostile server counts the connections it accepts); `-t 0` meaning no deadline in both
//! commands; Go's largest durations, `-bin` metadata keys and gzip replies taken as ghz takes them; and `stall`
//! giving no verdict on a server whose health check says it is not serving.

use std::{path::PathBuf, process::Command, time::Duration};

use offload_testkit::{
    foreign::echo_proto,
    hostile::{Answer, HostileServer},
};
use serde_json::Value;

use super::{BIN, run_within};

/// Long enough for any of these runs on a loaded 2-core machine; each should take well under a second.
const LIMIT: Duration = Duration::from_secs(30);

/// `load --quiet ARGS` (or `stall ARGS`), run to its end within [`LIMIT`].
fn run(command: &str, args: &[&str]) -> std::process::Output {
    let mut bench = Command::new(BIN);
    bench.arg(command);
    if command == "load" {
        bench.arg("--quiet");
    }
    run_within(bench.args(args).env_remove("RUST_BACKTRACE"), LIMIT)
}

fn proto() -> String {
    echo_proto().display().to_string()
}

/// A health reply: `HealthCheckResponse { status }` encoded (field 1, varint).
fn health(status: u8) -> Answer {
    Answer::Reply { messages: vec![vec![0x08, status]], gzip: false, trailers: vec![("grpc-status", "0".into())] }
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("offload-bad-input-{}-{name}", std::process::id()));
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn nonsense_numbers_and_templates_are_refused_by_name_before_connecting() {
    let server = HostileServer::start(|_, _| Answer::ok());
    let (host, proto) = (server.host(), proto());
    let load = ["--insecure", "--proto", &proto, "--call", "echo.v1.Echo/Unary", "-n", "1", &host];
    let rates = "0.001 to 1000000 calls per second";
    let step = ["--load-schedule", "step", "--load-step", "1", "--load-step-duration", "1s"];
    for (extra, named, range) in [
        (&["--rps", "1e-300"][..], "--rps 1e-300", rates),
        (&["--rps", "NaN"][..], "--rps NaN", rates),
        (&["--rps=-5"][..], "--rps -5.0", rates),
        (&["--rps", "inf"][..], "--rps inf", rates),
        (&["--cpus", "100000"][..], "--cpus 100000", "1 to 1024"),
        (&["-c", "0"][..], "-c 0", "1 to 10000 workers"),
        (&["-c", "20000000"][..], "-c 20000000", "1 to 10000 workers"),
        (&["--connections", "5000"][..], "--connections 5000", "1 to 1000"),
        (&[&step[..], &["--load-start", "99999999999"]].concat()[..], "--load-start 99999999999", "0 to 1000000"),
        (&["--concurrency-end", "99999999"][..], "--concurrency-end 99999999", "0 to 10000 workers"),
        (&["-d", r#"{"text": "{{randomString 9999999999}}"}"#][..], "{{randomString 9999999999}}", "1048576"),
        (&["-m", r#"{"x": "{{randomString 9999999999}}"}"#][..], "-m: {{randomString", "1048576"),
        (&["-d", "[]"][..], "-d: an empty array", "echo.v1.Echo.Unary takes one request message"),
    ] {
        let output = run("load", &[extra, &load[..]].concat());
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{extra:?} was accepted");
        assert!(
            err.contains(named) && err.contains(range),
            "{extra:?}: the refusal should say {named:?} and {range:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{extra:?}: {err}");
    }
    // The same keys in a config file are named as keys.
    for (text, named) in
        [(r#"{"rps": 1e-300}"#, r#""rps" in --config 1e-300"#), (r#"{"cpus": 100000}"#, r#""cpus" in --config 100000"#)]
    {
        let config = temp_file("config.json", text);
        let output = run("load", &[&["--config", &config.display().to_string()][..], &load[..]].concat());
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && err.contains(named), "{text}: {err}");
        let _ = std::fs::remove_file(&config);
    }
    let stall = ["--insecure", "--target", &host, "--proto", &proto, "--call", "echo.v1.Echo/Unary"];
    for (extra, named, range) in [
        (&["--rps", "NaN"][..], "--rps NaN", rates),
        (&["--rps", "1e-300"][..], "--rps 1e-300", rates),
        (&["--rps", "0"][..], "--rps 0.0", rates),
        (&["--min-ratio", "NaN"][..], "--min-ratio NaN", "1 to 1000000"),
        (&["--min-ratio", "0.5"][..], "--min-ratio 0.5", "1 to 1000000"),
        (&["-c", "0"][..], "-c 0", "1 to 10000 clients"),
        (&["-z", "0s"][..], "-z 0s", "above 0"),
    ] {
        let output = run("stall", &[&stall[..], extra].concat());
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "stall {extra:?} was accepted");
        assert!(
            err.contains(named) && err.contains(range),
            "stall {extra:?}: should say {named:?} and {range:?}: {err}"
        );
    }
    assert_eq!(server.connections(), 0, "a refusal came after connecting");
}

#[test]
fn go_s_largest_durations_bin_metadata_and_gzip_replies_are_taken_as_ghz_takes_them() {
    let server = HostileServer::start(|path, _| match path {
        "/echo.v1.Echo/Expand" => Answer::Reply {
            messages: vec![b"\x0a\x02hi".to_vec()],
            gzip: true,
            trailers: vec![("grpc-status", "0".into())],
        },
        _ => Answer::ok(),
    });
    let (host, proto) = (server.host(), proto());
    let call = ["--insecure", "--proto", &proto, "-O", "json", "-c", "1"];
    let report = |extra: &[&str]| -> Value {
        let output = run("load", &[&call[..], extra, &[&host]].concat());
        assert!(output.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).expect("JSON report")
    };
    let longest = report(&[
        "--call",
        "echo.v1.Echo/Unary",
        "-n",
        "3",
        "-t",
        "9223372036854775807ns",
        "-x",
        "2562047h47m16.854775807s",
        "-m",
        r#"{"x-trace-bin": "AAEC/w==", "x-id-bin": "AAEC_w", "x-plain": "text"}"#,
    ]);
    assert_eq!(longest["statusCodeDistribution"]["OK"], 3, "{longest}");
    assert_eq!(longest["options"]["timeout"], i64::MAX, "{longest}");
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    for call in &seen {
        // gRPC sends binary metadata base64-encoded (with or without padding): the bytes 0, 1, 2, 255.
        for key in ["x-trace-bin", "x-id-bin"] {
            let value = call.headers.get(key).and_then(|v| v.to_str().ok()).unwrap_or_default();
            assert_eq!(value.trim_end_matches('='), "AAEC/w", "{key} in {:?}", call.headers);
        }
        assert_eq!(call.headers.get("x-plain").and_then(|v| v.to_str().ok()), Some("text"));
    }
    // A server-streaming reply in gzip, with -e: taken (ghz's gzip is both ways).
    let gzip = report(&["--call", "echo.v1.Echo/Expand", "-n", "2", "-e", "-d", r#"{"text": "x"}"#]);
    assert_eq!(gzip["statusCodeDistribution"]["OK"], 2, "{gzip}");
}

#[test]
fn zero_timeout_means_no_deadline_in_load_and_stall() {
    let server = HostileServer::start(|path, _| match path {
        "/grpc.health.v1.Health/Check" => health(1),
        _ => Answer::ok(),
    });
    let (host, proto) = (server.host(), proto());
    let output = run(
        "load",
        &["--insecure", "--proto", &proto, "--call", "echo.v1.Echo/Unary", "-t", "0", "-n", "3", "-O", "json", &host],
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["statusCodeDistribution"]["OK"], 3, "{report}");
    // A zero deadline would fail every call (and stall would then refuse to judge); no deadline passes them.
    let stall = ["--insecure", "--target", &host, "--proto", &proto, "--call", "echo.v1.Echo/Unary", "-t", "0"];
    let output = run("stall", &[&stall[..], &["-z", "300ms", "-c", "1", "--rps", "50"]].concat());
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{printed}{}", String::from_utf8_lossy(&output.stderr));
    assert!(printed.contains("verdict: "), "{printed}");
    let calls: Vec<_> = server.seen().into_iter().filter(|call| call.path == "/echo.v1.Echo/Unary").collect();
    assert!(calls.len() > 3, "stall's load went through: {} calls", calls.len());
    assert!(calls.iter().all(|call| call.headers.get("grpc-timeout").is_none()), "a deadline was sent");
}

#[test]
fn stall_gives_no_verdict_on_a_server_that_says_it_is_not_serving() {
    let server = HostileServer::start(|path, _| match path {
        "/grpc.health.v1.Health/Check" => health(2),
        _ => Answer::ok(),
    });
    let (host, proto) = (server.host(), proto());
    let args = ["--insecure", "--target", &host, "--proto", &proto, "--call", "echo.v1.Echo/Unary", "-z", "300ms"];
    let output = run("stall", &[&args[..], &["-c", "1", "--rps", "50"]].concat());
    let (printed, err) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!output.status.success(), "a verdict on a NOT_SERVING server:\n{printed}");
    assert!(!printed.contains("verdict"), "{printed}");
    assert!(err.contains("not serving") && err.contains("NOT_SERVING") && err.contains("no verdict"), "{err}");
}
