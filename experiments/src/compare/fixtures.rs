//! Small builders of a comparison and its rounds with fixed numbers, for the tests of what `compare` prints and
//! computes (no server runs).

use std::time::Duration;

use clap::Parser;
use offload_loadgen::recording::Recording;
use offload_proto::v1::{ExecMode, Execution, UpstreamWait};
use offload_testkit::job::Kernel;

use super::{
    CompareArgs,
    attribution::Breakdown,
    output::Comparison,
    scenario::{HeavyJob, RoundResult, Setup},
    stall_events::Frame,
    stalls::{Culprit, Stalls},
};

/// Every round's measured window.
pub const WINDOW: Duration = Duration::from_secs(4);

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: CompareArgs,
}

/// `compare`'s arguments as parsed from `flags` (after the defaults).
pub fn args(flags: &[&str]) -> CompareArgs {
    Cli::parse_from(std::iter::once("compare").chain(flags.iter().copied())).args
}

/// A comparison of 15 ms-class jobs calibrated at `job_time` on `cores` cores, with default flags and no rounds.
pub fn comparison(job_time: Duration, cores: usize) -> Comparison {
    comparison_with(job_time, cores, &[])
}

/// As [`comparison`], with `flags` given to `compare`.
pub fn comparison_with(job_time: Duration, cores: usize, flags: &[&str]) -> Comparison {
    let heavy = HeavyJob { kernel: Kernel::SumOfSquares, n: 123_456_789, job_time };
    let setup = Setup { args: args(flags), heavy, probe_mode: ExecMode::Inline, heavy_concurrency: 2 * cores, cores };
    Comparison::new(&setup)
}

/// A recording of `count` successful calls over the window, each taking `latency`.
fn recording(count: u64, latency: Duration) -> Recording {
    let mut r = Recording::new();
    for _ in 0..count {
        r.record(latency, Ok(()));
    }
    r.elapsed = WINDOW;
    r
}

/// A round of heavy jobs in `mode` (idle for `None`) finishing `heavy_rps`, whose jobs reported `compute` as their
/// `compute_us`, with compute's CPU `compute_cpu` over the window; probes of 2 ms, a stall culprit with a long name.
pub fn round(
    mode: Option<ExecMode>,
    heavy_rps: f64,
    compute: &[Duration],
    compute_cpu: Option<Duration>,
) -> RoundResult {
    let label = mode.map_or("idle".to_owned(), |m| m.short_name().to_owned());
    let heavy = mode.map(|_| recording((heavy_rps * WINDOW.as_secs_f64()).round() as u64, Duration::from_millis(30)));
    let heavy_calls = compute
        .iter()
        .map(|t| {
            let execution = Execution { compute_us: t.as_micros() as u64, ..Default::default() };
            Breakdown::of_call(*t + Duration::from_millis(1), &execution)
        })
        .collect();
    let frame = Frame {
        function: "offload_compute::kernel::sum_of_squares::simd::lanes_avx512".into(),
        file: Some("compute/src/kernel/sum_of_squares/simd.rs".into()),
        line: Some(88),
    };
    let culprit =
        Culprit { call: "SumOfSquares/inline".into(), stalls: 1234.0, cause: Some("cpu".into()), frame: Some(frame) };
    RoundResult {
        label,
        mode,
        wait: None,
        pinned: None,
        heavy,
        probe: recording(800, Duration::from_micros(2_345)),
        probe_calls: Vec::new(),
        heavy_calls,
        health: Some(recording(800, Duration::from_micros(1_234))),
        compute_cpu,
        gateway_cpu: compute_cpu.map(|_| Duration::from_millis(400)),
        client_cpu: compute_cpu.map(|_| Duration::from_millis(300)),
        window: WINDOW,
        schedule_delay: None,
        stalls: Some(Stalls { total: 1234.0, culprit: Some(culprit), kept: Vec::new() }),
    }
}

/// A gateway upstream-wait round (heavy jobs in `RAYON`) whose probes took `probe`.
pub fn wait_round(wait: UpstreamWait, probe: Duration) -> RoundResult {
    let mut r = round(Some(ExecMode::Rayon), 100.0, &[], Some(Duration::from_secs(6)));
    r.label = format!("wait-{}", wait.short_name());
    r.mode = None;
    r.wait = Some(wait);
    r.probe = recording(800, probe);
    r
}
