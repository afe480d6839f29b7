//! The report against ghz's struct (a fixture written from `runner/reporter.go`), a golden file, and ghz's
//! arithmetic: percentiles over successes, average over all.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::*;
use crate::recording::EndReason;

const TYPES: &str = include_str!("../testdata/ghz-report-types.json");
const GOLDEN: &str = "testdata/report.golden.json";

/// Keys offload adds, which Go's decoder skips.
const OFFLOAD_REPORT_KEYS: [&str; 10] = [
    "latencyP999",
    "latencyHistogram",
    "okLatencyHistogram",
    "latencySum",
    "startedAt",
    "intervals",
    "shard",
    "mergedFrom",
    "generator",
    "thresholds",
];
const OFFLOAD_OPTION_KEYS: [&str; 4] = ["open-loop", "latency-from", "open-loop-rps", "lb-strategy"];

/// A fixed recording: 20 calls 10 ms apart, latencies 1..=16 ms OK, then four fast `ResourceExhausted`.
pub(crate) fn synthetic() -> Recording {
    let mut r = Recording::new();
    r.started_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_689_548);
    for i in 0..20u64 {
        let sent = Duration::from_millis(10 * i) + Duration::from_nanos(1_500);
        if i < 16 {
            r.record_call(sent, Duration::from_millis(i + 1), Ok(()));
        } else {
            r.record_call(sent, Duration::from_micros(50), Err(tonic::Status::resource_exhausted("shed, try later")));
        }
    }
    r.elapsed = Duration::from_millis(250);
    r.end_reason = EndReason::Normal;
    r
}

pub(crate) fn synthetic_options() -> Options {
    let mut options = Options::new("offload.v1.Gateway.Factorial", "127.0.0.1:50050");
    options.insecure = true;
    options.concurrency = 2;
    options.connections = 1;
    options.total = 20;
    options.timeout = 20_000_000_000;
    options.dial_timeout = 10_000_000_000;
    options.cpus = 2;
    options.data = serde_json::json!({"n": 20});
    options.metadata =
        Some([("traceparent".to_owned(), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned())].into());
    options.name = "golden".into();
    options.tags = Some([("env".to_owned(), "test".to_owned())].into());
    options
}

pub(crate) fn synthetic_report() -> Report {
    Report::dated(&synthetic(), synthetic_options(), SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_689_549))
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every key of `ours` is in `spec` (or offload's extras), every required key of `spec` is in `ours`, each of the
/// JSON type ghz's Go type marshals to (a number where Go has a float64 may print as an integer).
fn check(what: &str, ours: &Value, spec: &Value, extras: &[&str]) {
    let ours = ours.as_object().unwrap_or_else(|| panic!("{what} is not an object"));
    let spec = spec.as_object().expect("spec object");
    for (key, kind) in spec {
        let kind = kind.as_str().expect("type");
        let (kind, optional) = kind.strip_suffix('?').map_or((kind, false), |k| (k, true));
        match ours.get(key) {
            None => assert!(optional, "{what}: ghz always writes {key:?}, we don't"),
            Some(value) => {
                let got = json_type(value);
                let fits = kind == "any" || got == kind || (kind == "number" && got == "integer");
                assert!(fits, "{what}.{key}: ghz's type is {kind}, ours is {got} ({value})");
            }
        }
    }
    for key in ours.keys() {
        assert!(spec.contains_key(key) || extras.contains(&key.as_str()), "{what}: {key:?} is not ghz's");
    }
}

#[test]
fn every_field_has_ghz_name_and_json_type() {
    let types: Value = serde_json::from_str(TYPES).expect("fixture");
    // And with every optional addition set: a shard's report with its generator's health and thresholds checked.
    let mut full = synthetic_report();
    full.shard = Some(crate::shard::Shard::new(2, 3).expect("valid"));
    full.merged_from = vec!["a.json".into()];
    full.generator = Some(crate::health::Health::default());
    full.thresholds = vec![ThresholdOutcome::default()];
    for report in [synthetic_report(), Report::new(&Recording::new(), Options::new("a.B/C", "h:1")), full] {
        let json = serde_json::to_value(&report).expect("serialize");
        check("report", &json, &types["report"], &OFFLOAD_REPORT_KEYS);
        check("options", &json["options"], &types["options"], &OFFLOAD_OPTION_KEYS);
        for key in ["latencyDistribution", "histogram", "details"] {
            for item in json[key].as_array().expect("array") {
                check(key, item, &types[key], &[]);
            }
        }
    }
    // And the full synthetic report has items in each list, so their fields were checked.
    let json = serde_json::to_value(synthetic_report()).expect("serialize");
    assert_eq!(json["latencyDistribution"].as_array().map(Vec::len), Some(7));
    assert_eq!(json["histogram"].as_array().map(Vec::len), Some(11));
    assert_eq!(json["details"].as_array().map(Vec::len), Some(20));
}

#[test]
fn matches_the_golden_file() {
    let ours = serde_json::to_string_pretty(&synthetic_report()).expect("serialize") + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &ours).expect("write golden");
    }
    let golden = std::fs::read_to_string(&path).expect("golden file (UPDATE_GOLDEN=1 writes it)");
    assert_eq!(ours, golden, "report differs from {GOLDEN}; if intended, rerun with UPDATE_GOLDEN=1 and review");
}

#[test]
fn percentiles_over_successes_average_over_all() {
    let report = synthetic_report();
    assert_eq!(report.count, 20);
    // 16 successes of 1..=16 ms: ghz's nearest rank: p50 → rank ⌊8⌋-1 = 7 → 8 ms; p99 → ⌊15.84⌋ = 15 → 16 ms.
    assert_eq!(report.percentile(50), Some(8_000_000));
    assert_eq!(report.percentile(10), Some(2_000_000), "1.6 → rank 1");
    assert_eq!(report.percentile(99), Some(16_000_000));
    assert_eq!(report.fastest, 1_000_000, "the 50 µs failures are not the fastest call");
    assert_eq!(report.slowest, 16_000_000);
    // Average over all 20: (136 ms + 4 × 50 µs) / 20.
    assert_eq!(report.average, (136_000_000 + 200_000) / 20);
    assert!((report.rps - 80.0).abs() < 1e-9);
    assert_eq!(report.histogram.iter().map(|b| b.count).sum::<u64>(), 16);
    assert!((report.histogram.iter().map(|b| b.frequency).sum::<f64>() - 1.0).abs() < 1e-9);
    assert_eq!(report.histogram[0].mark, 0.001);
    assert_eq!(report.histogram[10].mark, 0.016);
    assert_eq!(report.errors(), 4);
    assert_eq!(report.details[16].error, "rpc error: code = ResourceExhausted desc = shed, try later");
    assert_eq!(report.details[16].status, "ResourceExhausted");
    assert_eq!(report.details[1].timestamp, "2026-11-26T10:39:08.0100015Z");
    assert_eq!(report.end_reason, "normal");
    assert_eq!(report.tags["env"], "test");
}

#[test]
fn count_errors_takes_failures_into_the_percentiles() {
    let mut options = synthetic_options();
    options.count_errors = true;
    let report = Report::dated(&synthetic(), options, SystemTime::UNIX_EPOCH);
    assert_eq!(report.fastest, 50_000);
    assert_eq!(report.histogram.iter().map(|b| b.count).sum::<u64>(), 20);
}

#[test]
fn past_the_details_bound_percentiles_come_from_the_histogram() {
    let mut r = synthetic();
    r.details.clear(); // As if more calls were made than details keep.
    let report = Report::dated(&r, synthetic_options(), SystemTime::UNIX_EPOCH);
    let p50 = report.percentile(50).expect("p50") as f64;
    assert!((p50 - 8e6).abs() <= 8e6 * 0.001, "{p50}");
    assert_eq!(report.histogram.iter().map(|b| b.count).sum::<u64>(), 16);
}

#[test]
fn dates_are_rfc3339() {
    assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_689_548); // 2026-11-26T10:39:08Z
    assert_eq!(rfc3339(t), "2026-11-26T10:39:08Z");
    let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
    assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339_nano(t), "2026-11-26T10:39:08Z");
    assert_eq!(rfc3339_nano(t + Duration::from_nanos(120_000_000)), "2026-11-26T10:39:08.12Z");
    assert_eq!(rfc3339_nano(t + Duration::from_nanos(1)), "2026-11-26T10:39:08.000000001Z");
}
