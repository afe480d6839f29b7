//! `offload-bench overhead` end to end with a tiny load: every run row and every ratio row is printed, parsed
//! back and consistent (all calls succeeded, CPU read for each server process, each ratio the median of its rounds
//! and judged against its goal on the right side). Skipped with a message where h2load cannot be had.

use std::process::Command;

use crate::BIN;

/// One row of the ratio table: `name median goal-op goal met per-round…`.
#[derive(Debug)]
struct Ratio {
    name: String,
    median: f64,
    at_least: bool,
    goal: f64,
    met: bool,
    rounds: Vec<f64>,
}

fn parse_ratio(line: &str) -> Option<Ratio> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let [name, median, op, goal, met, rounds @ ..] = words.as_slice() else { return None };
    Some(Ratio {
        name: (*name).to_owned(),
        median: median.parse().ok()?,
        at_least: match *op {
            ">=" => true,
            "<=" => false,
            _ => return None,
        },
        goal: goal.parse().ok()?,
        met: match *met {
            "yes" => true,
            "no" => false,
            _ => return None,
        },
        rounds: rounds.iter().map(|r| r.parse().ok()).collect::<Option<_>>()?,
    })
}

/// A printed median (rounded to 0.01) lies within the two rounds' values it is the median of.
fn assert_median_of(median: f64, rounds: &[f64], what: &str) {
    let (low, high) = (rounds[0].min(rounds[1]), rounds[0].max(rounds[1]));
    assert!(median >= low - 0.01 && median <= high + 0.01, "median outside its rounds: {what}");
}

#[test]
fn a_tiny_overhead_run_prints_every_row_and_consistent_ratios() {
    let out = std::env::temp_dir().join(format!("offload-overhead-{}", std::process::id()));
    let output = Command::new(BIN)
        .args(["overhead", "--rounds", "2", "--duration", "300ms", "--serial-duration", "200ms", "--warmup", "100ms"])
        .arg("--out")
        .arg(&out)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run overhead");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "overhead failed:\n{stdout}\n{stderr}");
    if stderr.contains("SKIPPED") {
        eprintln!("{stderr}");
        return;
    }

    // Runs: calls/s, p50, p99, failed, then `process cpu` pairs for each process working for the call.
    let runs = [
        ("echo", &["echo"][..]),
        ("proxy", &["proxy", "echo"]),
        ("direct", &["compute"]),
        ("gateway", &["gateway", "compute"]),
        ("echo-serial", &["echo"]),
        ("proxy-serial", &["proxy", "echo"]),
        ("direct-serial", &["compute"]),
        ("gateway-serial", &["gateway", "compute"]),
    ];
    for (run, processes) in runs {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(run))
            .unwrap_or_else(|| panic!("no {run} row:\n{stdout}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| words[i].parse::<f64>().unwrap_or_else(|_| panic!("column {i} of {line:?}"));
        assert!(number(1) > 0.0, "no calls/s: {line}");
        assert!(number(2) > 0.0 && number(3) >= number(2), "p50 and p99 out of order: {line}");
        assert_eq!(number(4), 0.0, "calls failed: {line}");
        let cpu: Vec<&str> = words[5..].iter().step_by(2).copied().collect();
        assert_eq!(cpu, processes, "CPU columns of {line:?}");
        for value in words[6..].iter().step_by(2) {
            assert!(value.parse::<f64>().is_ok_and(|v| v >= 0.0), "CPU per call {value:?} in {line:?}");
        }
    }

    let ratios: Vec<Ratio> = stdout.lines().filter_map(parse_ratio).collect();
    let names: Vec<&str> = ratios.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["compute/echo-throughput", "gateway/direct-throughput", "gateway/direct-serial-p50"],
        "{stdout}"
    );
    for ratio in &ratios {
        assert_eq!(ratio.rounds.len(), 2, "one value per round: {ratio:?}");
        assert_median_of(ratio.median, &ratio.rounds, &format!("{ratio:?}"));
        assert!(ratio.median > 0.0 && ratio.median.is_finite(), "{ratio:?}");
        let met = if ratio.at_least { ratio.median >= ratio.goal } else { ratio.median <= ratio.goal };
        // The printed median is rounded: right at the goal, either verdict may be honest.
        if (ratio.median - ratio.goal).abs() > 0.01 {
            assert_eq!(ratio.met, met, "verdict contradicts the numbers: {ratio:?}");
        }
    }
    // The floor rows: `name median per-round…`, no goal.
    for floor in ["proxy/echo-throughput", "proxy/echo-serial-p50"] {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(floor))
            .unwrap_or_else(|| panic!("no {floor} row:\n{stdout}"));
        let values: Vec<f64> = line.split_whitespace().skip(1).map(|v| v.parse().expect("a number")).collect();
        assert_eq!(values.len(), 3, "median and one value per round: {line}");
        assert!(values.iter().all(|v| v.is_finite() && *v > 0.0), "{line}");
        assert_median_of(values[0], &values[1..], line);
    }
    let written = std::fs::read_to_string(out.join("overhead.txt")).expect("overhead.txt");
    assert!(stdout.contains(written.trim()), "overhead.txt is not the printed table:\n{written}");
    let _ = std::fs::remove_dir_all(&out);
}
