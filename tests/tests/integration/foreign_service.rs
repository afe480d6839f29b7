//! `offload-bench load` against a service that is not offload's: Python's `grpc.aio` echo service from the test
//! kit, reached by server reflection, by `--proto` files and by a `--protoset`, with unary and streaming calls,
//! ghz's templates in data and metadata, and the errors a user meets (an unknown method, data that does not fit).
//! The service reports what it received, so the tests check the load generator's requests from the server's side.
//! The "no reflection" cases run the same service with reflection turned off. Skipped, with a message, only where
//! no Python 3 is installed.

use std::{collections::BTreeSet, process::Command};

use offload_testkit::{binaries, foreign::ForeignService};
use serde_json::Value;

/// Runs `offload-bench load --insecure -O json` with `args`: its JSON report, or its error output.
fn load(args: &[&str]) -> Result<Value, String> {
    let output = Command::new(binaries::path("offload-bench"))
        .args(["load", "--insecure", "--quiet", "-O", "json"])
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run offload-bench load");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&output.stdout).expect("a JSON report"))
}

/// The report's calls by status.
fn statuses(report: &Value) -> Value {
    report["statusCodeDistribution"].clone()
}

/// What the service received for `call`, one JSON object per message.
fn seen(service: &mut ForeignService, call: &str) -> Vec<Value> {
    let lines = service.seen();
    let all = lines.iter().map(|l| serde_json::from_str::<Value>(l).expect("seen JSON"));
    all.filter(|s| s["call"] == call).collect()
}

#[test]
fn unary_by_reflection_with_ghz_templates_in_data_and_metadata() {
    let test = "unary_by_reflection_with_ghz_templates_in_data_and_metadata";
    let Some(mut service) = ForeignService::start(test, true) else { return };
    let data = r#"{"text": "call {{.RequestNumber}} from {{.WorkerID}} at {{.TimestampUnixMilli}}",
        "id": "{{.RequestNumber}}", "big": "18446744073709551615", "kind": "KIND_LOUD", "payload": "aGVsbG8=",
        "tags": ["a", "b"], "counts": {"x": 1}, "inner": {"label": "{{.InputName}}", "values": [1, 2]},
        "number": 7, "at": "2024-05-01T12:00:00Z"}"#;
    let metadata = r#"{"x-request": "{{.RequestNumber}}", "x-call": "{{.FullyQualifiedName}}", "x-id": "{{.UUID}}"}"#;
    let host = service.host();
    let report = load(&["--call", "echo.v1.Echo/Unary", "-d", data, "-m", metadata, "-n", "20", "-c", "4", &host])
        .expect("the load ran");
    assert_eq!(report["count"], 20);
    assert_eq!(statuses(&report), serde_json::json!({"OK": 20}));
    assert_eq!(report["options"]["call"], "echo.v1.Echo.Unary");
    let seen = seen(&mut service, "Unary");
    assert_eq!(seen.len(), 20);
    let mut numbers = BTreeSet::new();
    let mut uuids = BTreeSet::new();
    for call in &seen {
        let (message, metadata) = (&call["message"], &call["metadata"]);
        let number = metadata["x-request"].as_str().expect("x-request").to_owned();
        // proto3 JSON leaves out a field at its default: id 0 is absent.
        let id = message["id"].as_str().unwrap_or("0");
        assert_eq!(id, number, "data and metadata rendered for the same call: {call}");
        let text = message["text"].as_str().expect("text");
        assert!(text.starts_with(&format!("call {number} from g")), "{text}");
        assert_eq!(metadata["x-call"], "echo.v1.Echo.Unary");
        assert_eq!(message["inner"], serde_json::json!({"label": "EchoRequest", "values": [1, 2]}));
        // The proto3 JSON mapping, as Python's json_format reads it back.
        assert_eq!(message["big"], "18446744073709551615");
        assert_eq!(message["kind"], "KIND_LOUD");
        assert_eq!(message["payload"], "aGVsbG8=");
        assert_eq!(message["counts"], serde_json::json!({"x": 1}));
        assert_eq!(message["number"], 7);
        assert_eq!(message["at"], "2024-05-01T12:00:00Z");
        numbers.insert(number.parse::<u64>().expect("a number"));
        uuids.insert(metadata["x-id"].as_str().expect("x-id").to_owned());
    }
    assert_eq!(numbers, (0..20).collect(), "every request number once");
    assert_eq!(uuids.len(), 20, "a new UUID per call");
}

#[test]
fn streaming_calls_by_reflection_with_ghz_stream_semantics() {
    let test = "streaming_calls_by_reflection_with_ghz_stream_semantics";
    let Some(mut service) = ForeignService::start(test, true) else { return };
    let host = service.host();
    // Client streaming: -d's array is the stream's messages; one stream is one call.
    let report = load(&[
        "--call",
        "echo.v1.Echo/Collect",
        "-d",
        r#"[{"id": 1}, {"id": 2}, {"id": 3}]"#,
        "-n",
        "4",
        "-c",
        "2",
        &host,
    ])
    .expect("client streaming ran");
    assert_eq!(statuses(&report), serde_json::json!({"OK": 4}));
    assert_eq!(seen(&mut service, "Collect").len(), 12);
    // Server streaming: one call per stream, however many replies; --stream-call-count ends it early, as a success.
    let report = load(&["--call", "echo.v1.Echo.Expand", "-d", r#"{"repeat": 5}"#, "-n", "3", &host]).expect("ran");
    assert_eq!(statuses(&report), serde_json::json!({"OK": 3}));
    let args = ["--call", "echo.v1.Echo/Expand", "-d", r#"{"repeat": 1000, "interval_ms": 5}"#, "-n", "2"];
    let report = load(&[&args[..], &["--stream-call-count", "3", &host]].concat()).expect("ran");
    assert_eq!(statuses(&report), serde_json::json!({"OK": 2}));
    assert!(report["slowest"].as_u64().expect("ns") < 1_000_000_000, "ended after 3 of 1000 replies");
    let report = load(&[&args[..], &["--stream-call-duration", "100ms", &host]].concat()).expect("ran");
    assert_eq!(statuses(&report), serde_json::json!({"OK": 2}));
    assert!(report["fastest"].as_u64().expect("ns") >= 100_000_000, "each stream ran its 100 ms");
    // Bidi, with a message count above the array's length (cycled) and templates rendered per message.
    let data = r#"[{"text": "{{.UUID}}"}, {"id": "{{.RequestNumber}}"}]"#;
    let report = load(&[
        "--call",
        "echo.v1.Echo/Chat",
        "-d",
        data,
        "--stream-call-count",
        "5",
        "--stream-dynamic-messages",
        "-n",
        "2",
        "-c",
        "1",
        &host,
    ])
    .expect("bidi ran");
    assert_eq!(statuses(&report), serde_json::json!({"OK": 2}));
    let chat = seen(&mut service, "Chat");
    assert_eq!(chat.len(), 10, "5 messages per stream");
    let texts: BTreeSet<_> = chat.iter().filter_map(|c| c["message"]["text"].as_str()).collect();
    assert_eq!(texts.len(), 6, "a fresh UUID in every message that has one: {chat:?}");
}

#[test]
fn proto_files_and_protosets_reach_a_service_without_reflection() {
    let test = "proto_files_and_protosets_reach_a_service_without_reflection";
    let Some(mut service) = ForeignService::start(test, false) else { return };
    let host = service.host();
    let refused = load(&["--call", "echo.v1.Echo/Unary", &host]).expect_err("no reflection, no descriptors");
    assert!(refused.contains("server reflection failed") && refused.contains("--proto"), "{refused}");
    let (proto, root) = (service.proto_file(), service.proto_root());
    let (proto, root) = (proto.to_str().expect("path"), root.to_str().expect("path"));
    let report = load(&[
        "--proto",
        proto,
        "-i",
        root,
        "--call",
        "echo.v1.Echo/Unary",
        "-d",
        r#"{"text": "by proto"}"#,
        "-n",
        "3",
        &host,
    ])
    .expect("--proto ran");
    assert_eq!(statuses(&report), serde_json::json!({"OK": 3}));
    let report =
        load(&["--proto", proto, "--call", "echo.v1.Echo/Chat", "-d", r#"[{"id": 1}, {"id": 2}]"#, "-n", "2", &host])
            .expect("--proto without -i ran (the file's folder is searched)");
    assert_eq!(statuses(&report), serde_json::json!({"OK": 2}));
    let protoset = std::env::temp_dir().join(format!("offload-echo-{}.protoset", std::process::id()));
    service.write_protoset(&protoset);
    let protoset_arg = protoset.to_str().expect("path");
    let report = load(&[
        "--protoset",
        protoset_arg,
        "--call",
        "echo.v1.Echo/Collect",
        "-d",
        r#"[{"text": "by protoset"}]"#,
        "-m",
        r#"{"x-n": "{{.RequestNumber}}"}"#,
        "-n",
        "3",
        &host,
    ])
    .expect("--protoset ran");
    assert_eq!(statuses(&report), serde_json::json!({"OK": 3}));
    let report = load(&[
        "--protoset",
        protoset_arg,
        "--call",
        "echo.v1.Echo/Expand",
        "-d",
        r#"{"repeat": 4}"#,
        "-n",
        "2",
        &host,
    ])
    .expect("server streaming by protoset ran");
    assert_eq!(statuses(&report), serde_json::json!({"OK": 2}));
    let unknown = load(&["--protoset", protoset_arg, "--call", "echo.v1.Echo/Shout", &host]).expect_err("unknown");
    assert!(unknown.contains("echo.v1.Echo.Collect"), "{unknown}");
    let _ = std::fs::remove_file(&protoset);
    let unary = seen(&mut service, "Unary");
    assert_eq!(unary.len(), 3);
    assert!(unary.iter().all(|s| s["message"]["text"] == "by proto"));
    let collect = seen(&mut service, "Collect");
    let numbers: BTreeSet<_> = collect.iter().filter_map(|s| s["metadata"]["x-n"].as_str()).collect();
    assert_eq!(numbers, ["0", "1", "2"].into_iter().collect());
}

#[test]
fn unknown_methods_and_misfit_data_are_refused_with_what_exists() {
    let test = "unknown_methods_and_misfit_data_are_refused_with_what_exists";
    let Some(service) = ForeignService::start(test, true) else { return };
    let host = service.host();
    let unknown = load(&["--call", "echo.v1.Echo/Shout", &host]).expect_err("no such method");
    for listed in ["no such method", "echo.v1.Echo.Unary", "echo.v1.Echo.Chat", "grpc.health.v1.Health.Check"] {
        assert!(unknown.contains(listed), "{listed:?} not in: {unknown}");
    }
    let unknown = load(&["--call", "shop.v1.Cart/Add", &host]).expect_err("no such service");
    assert!(unknown.contains("no such service") && unknown.contains("echo.v1.Echo"), "{unknown}");
    let misfit = load(&["--call", "echo.v1.Echo/Unary", "-d", r#"{"kind": "LOUD"}"#, &host]).expect_err("bad enum");
    assert!(misfit.contains(r#"field "kind""#) && misfit.contains("KIND_LOUD"), "{misfit}");
    let misfit =
        load(&["--call", "echo.v1.Echo/Unary", "-d", r#"{"inner": {"values": ["x"]}}"#, &host]).expect_err("bad");
    assert!(misfit.contains(r#"field "inner.values""#) && misfit.contains("32-bit integer"), "{misfit}");
    let misfit = load(&["--call", "echo.v1.Echo/Unary", "-d", r#"{"colour": 1}"#, &host]).expect_err("unknown field");
    assert!(misfit.contains(r#"unknown field "colour""#), "{misfit}");
    let misfit = load(&["--call", "echo.v1.Echo/Unary", "-m", r#"{"x": "{{.Nope}}"}"#, &host]).expect_err("template");
    assert!(misfit.contains("-m: unknown template action {{.Nope}}"), "{misfit}");
}
