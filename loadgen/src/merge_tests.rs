//! `merge` against the raw samples: shards' reports, written as JSON and read back, merge into exactly the report
//! of one recording that saw every call.

use std::time::{Duration, SystemTime};

use super::*;
use crate::report::Options;

/// Three "shards" with different latency mixes and errors, started 40 ms apart, and one recording of all calls.
fn shards() -> (Vec<Recording>, Recording) {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_689_548);
    let mut all = Recording::new();
    all.started_at = start;
    let mut shards = Vec::new();
    let mut rng = fastrand::Rng::with_seed(7);
    for s in 0..3u64 {
        let mut r = Recording::new();
        r.started_at = start + Duration::from_millis(40 * s);
        for i in 0..2_000u64 {
            let sent = Duration::from_micros(1_500 * i + 500 * s);
            // A long tail: mostly 1–3 ms, one in fifty 20–200 ms.
            let us = if rng.u32(0..50) == 0 { rng.u64(20_000..200_000) } else { rng.u64(1_000..3_000) * (s + 1) };
            let outcome = if rng.u32(0..100) == 0 { Err(tonic::Status::unavailable("shed")) } else { Ok(()) };
            r.record_call(sent, Duration::from_micros(us), outcome.clone());
            all.record_call(sent + Duration::from_millis(40 * s), Duration::from_micros(us), outcome);
        }
        r.elapsed = Duration::from_millis(3_000);
        shards.push(r);
    }
    all.elapsed = Duration::from_millis(3_080);
    (shards, all)
}

/// Each recording's report, written as JSON and read back as `merge` reads a file.
fn through_json(recordings: &[Recording], strip_details: bool) -> Vec<(String, Report)> {
    let dir = std::env::temp_dir().join(format!("offload-merge-test-{}-{strip_details}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    recordings
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut report = Report::new(r, Options::new("offload.v1.Compute.Factorial", "127.0.0.1:1"));
            report.shard = Some(crate::shard::Shard::new(i as u64 + 1, 3).expect("valid"));
            if strip_details {
                report.details.clear();
                report.intervals.complete = false;
            }
            let path = dir.join(format!("{i}.json"));
            std::fs::write(&path, serde_json::to_string(&report).expect("json")).expect("write");
            (path.display().to_string(), Report::read(&path).expect("reads back"))
        })
        .collect()
}

fn figures(r: &Report) -> (u64, u64, u64, u64, u64, Vec<crate::report::LatencyPoint>, u64) {
    (r.count, r.fastest, r.slowest, r.average, r.total, r.latency_distribution.clone(), r.latency_p999)
}

#[test]
fn merged_reports_equal_the_report_of_all_raw_samples() {
    let (shards, all) = shards();
    let (merged, recording) = merge(&through_json(&shards, false)).expect("merges");
    let single = Report::new(&all, Options::new("offload.v1.Compute.Factorial", "127.0.0.1:1"));
    assert_eq!(figures(&merged), figures(&single));
    assert_eq!(merged.status_code_distribution, single.status_code_distribution);
    assert_eq!(merged.error_distribution, single.error_distribution);
    assert_eq!(merged.latency_histogram, single.latency_histogram, "the same histogram, bit for bit");
    assert_eq!(merged.ok_latency_histogram, single.ok_latency_histogram);
    assert_eq!(merged.histogram, single.histogram);
    assert_eq!(merged.intervals, single.intervals);
    assert!((merged.rps - single.rps).abs() < 1e-9, "{} vs {}", merged.rps, single.rps);
    assert_eq!(recording.details.len(), 6_000, "every shard's calls, one by one");
    assert_eq!(merged.merged_from.len(), 3);
    // Three thirds of 100 calls/s are 100 calls/s.
    let mut thirds = through_json(&shards, false);
    for (_, r) in &mut thirds {
        r.options = r.options.clone().open_loop_at(Some(100.0 / 3.0));
    }
    let (merged, _) = merge(&thirds).expect("merges");
    assert_eq!((merged.options.rps, merged.options.open_loop_rps), (100, None));
    assert!(merged.merged_from[1].contains("shard 2/3"), "{:?}", merged.merged_from);
}

#[test]
fn without_details_percentiles_come_from_the_merged_histogram_exactly() {
    let (shards, mut all) = shards();
    let (merged, _) = merge(&through_json(&shards, true)).expect("merges");
    all.details.clear();
    let single = Report::new(&all, Options::new("offload.v1.Compute.Factorial", "127.0.0.1:1"));
    assert_eq!(figures(&merged), figures(&single));
    // The seconds still add up from each shard's own intervals.
    assert_eq!(merged.intervals.slices.iter().map(|s| s.count).sum::<u64>(), 6_000);
}

#[test]
fn mismatched_runs_and_repeated_shards_are_refused_naming_the_field() {
    let (shards, _) = shards();
    let mut reports = through_json(&shards, false);
    reports[1].1.options.call = "offload.v1.Compute.SumOfSquares".into();
    let e = format!("{:#}", merge(&reports).expect_err("refused"));
    assert!(e.contains("options.call"), "{e}");
    let mut reports = through_json(&shards, false);
    reports[2].1.options.host = "10.0.0.1:50051".into();
    assert!(format!("{:#}", merge(&reports).expect_err("refused")).contains("options.host"));
    let mut reports = through_json(&shards, false);
    reports[2].1.shard = reports[0].1.shard;
    assert!(format!("{:#}", merge(&reports).expect_err("refused")).contains("both shard 1/3"));
    let mut reports = through_json(&shards, false);
    reports[0].1.latency_histogram.clear();
    assert!(format!("{:#}", merge(&reports).expect_err("refused")).contains("no latencyHistogram"));
}

#[test]
fn a_report_is_read_from_a_pod_log_with_stderr_lines_mixed_in() {
    let (shards, _) = shards();
    let report = Report::new(&shards[0], Options::new("offload.v1.Compute.Factorial", "127.0.0.1:1"));
    let path = std::env::temp_dir().join(format!("offload-merge-log-{}.json", std::process::id()));
    let log = format!(
        "--start-at was 0.2 s ago: starting now\n{}\nWARNING: the load generator, not the target, limited this run\n",
        serde_json::to_string(&report).expect("json")
    );
    std::fs::write(&path, log).expect("write");
    let read = Report::read(&path).expect("the report line is found");
    assert_eq!(read.latency_histogram, report.latency_histogram);
    std::fs::write(&path, "no report here\n").expect("write");
    let e = format!("{:#}", Report::read(&path).expect_err("refused"));
    assert!(e.contains("is not a JSON report"), "{e}");
    let _ = std::fs::remove_file(&path);
}
