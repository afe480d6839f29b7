//! `diff` on synthetic runs: seconds drawn from one distribution are called different at most 1 − confidence of
//! the time; a real shift is found, both ways.

use super::*;

/// One run: `seconds` seconds of `calls` latencies each, log-normal around `median_ms` (each second's own level
/// wandering a little, as a real server's does).
fn run(rng: &mut fastrand::Rng, seconds: usize, calls: usize, median_ms: f64) -> Vec<Histogram<u64>> {
    let normal = |rng: &mut fastrand::Rng| {
        // Box–Muller.
        let (u, v) = (rng.f64().max(1e-12), rng.f64());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    };
    (0..seconds)
        .map(|_| {
            let level = median_ms * (0.05 * normal(rng)).exp();
            let mut h = Histogram::<u64>::new_with_bounds(1_000, 600_000_000_000, 3).expect("bounds");
            for _ in 0..calls {
                let ms = level * (0.4 * normal(rng)).exp();
                h.saturating_record((ms * 1e6) as u64);
            }
            h
        })
        .collect()
}

fn settings(seed: u64) -> Settings {
    Settings { confidence: 0.95, min_effect: 0.0, resamples: 300, seed }
}

#[test]
fn same_distribution_is_called_a_regression_at_most_one_minus_confidence_of_the_time() {
    let mut rng = fastrand::Rng::with_seed(29);
    let (trials, percentiles) = (120, [50.0, 90.0, 99.0]);
    let (mut regressions, mut improvements) = (0, 0);
    for trial in 0..trials {
        let (a, b) = (run(&mut rng, 20, 100, 5.0), run(&mut rng, 20, 100, 5.0));
        for row in compare(&a, &b, &percentiles, &settings(trial)) {
            regressions += usize::from(row.verdict == Verdict::Regression);
            improvements += usize::from(row.verdict == Verdict::Improvement);
        }
    }
    let rows = (trials as usize * percentiles.len()) as f64;
    let (false_regressions, false_improvements) = (regressions as f64 / rows, improvements as f64 / rows);
    println!(
        "same distribution, {rows} rows: {:.1} % called regressions, {:.1} % improvements",
        false_regressions * 100.0,
        false_improvements * 100.0
    );
    assert!(false_regressions <= 0.05, "false regressions in {:.1} % of rows", false_regressions * 100.0);
    assert!(false_improvements <= 0.05, "false improvements in {:.1} % of rows", false_improvements * 100.0);
}

#[test]
fn a_real_shift_is_found_both_ways() {
    let mut rng = fastrand::Rng::with_seed(3);
    let (fast, slow) = (run(&mut rng, 10, 200, 5.0), run(&mut rng, 10, 200, 6.0));
    let s = Settings { min_effect: 0.05, ..settings(1) };
    let rows = compare(&fast, &slow, &[50.0, 99.0], &s);
    assert!(rows.iter().all(|r| r.verdict == Verdict::Regression), "{rows:?}");
    assert!(rows[0].low > 0.05 && rows[0].change > 0.1 && rows[0].change < 0.3, "{:?}", rows[0]);
    assert_eq!(overall(&rows), Verdict::Regression);
    let rows = compare(&slow, &fast, &[50.0, 99.0], &s);
    assert!(rows.iter().all(|r| r.verdict == Verdict::Improvement), "{rows:?}");
    assert_eq!(overall(&rows), Verdict::Improvement);
    // Smaller than the minimum effect: not worth a verdict, however sure.
    let big = Settings { min_effect: 0.5, ..settings(1) };
    assert_eq!(overall(&compare(&fast, &slow, &[50.0], &big)), Verdict::NoChange);
}

#[test]
fn markdown_is_a_table_with_a_row_per_percentile() {
    let mut rng = fastrand::Rng::with_seed(5);
    let (a, b) = (run(&mut rng, 5, 100, 5.0), run(&mut rng, 5, 100, 10.0));
    let rows = compare(&a, &b, &[50.0, 90.0], &settings(1));
    let c = Comparison {
        base: "a.json".into(),
        candidate: "b.json".into(),
        confidence: 0.95,
        min_effect: 0.05,
        resamples: 300,
        base_seconds: 5,
        candidate_seconds: 5,
        verdict: overall(&rows),
        rows,
    };
    let md = markdown(&c);
    assert!(md.starts_with("**regression**"), "{md}");
    assert_eq!(md.lines().filter(|l| l.starts_with("| p") && !l.starts_with("| percentile")).count(), 2, "{md}");
    assert!(summary(&c).starts_with("REGRESSION: b.json vs a.json"), "{}", summary(&c));
}
