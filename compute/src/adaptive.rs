//! The cost model behind `EXEC_MODE_ADAPTIVE`: run a job inline when doing it costs less than handing it off.
//!
//! Offloading is not free: a rayon spawn, a oneshot and a task wake-up cost a few microseconds. For `Factorial(20)`
//! (a dozen nanoseconds of work) that hop is 100× the job; for a 10 ms job it is noise. The break-even depends on
//! the machine, so it is measured at start-up, on this machine, in this process, and logged.

use std::time::{Duration, Instant};

use crate::{
    executor::{Executor, Placement},
    job::Job,
    kernel::{Cancel, Parallelism, factorial, sum_of_squares},
};

/// Round trips timed to find the hop's median; 200 take about a millisecond and make the median stable.
const HOP_SAMPLES: usize = 200;

/// Factorial sizes tried, in order, to find the largest one cheaper than the hop. Geometric, so calibration takes
/// a few milliseconds whatever the machine.
const FACTORIAL_PROBES: [u64; 12] = [20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1_000, 2_000];

/// The calibrated break-even points.
#[derive(Debug, Clone, Copy)]
pub struct CostModel {
    /// Median time to run a no-op job on the rayon pool and get its answer back on the runtime.
    pub hop: Duration,
    /// Factorials up to this n run inline under `ADAPTIVE`.
    pub inline_max_factorial_n: u64,
    /// Sums of squares up to this n run inline under `ADAPTIVE`.
    pub inline_max_sum_of_squares_n: u64,
}

impl CostModel {
    /// Measures the hop and the kernels on this machine.
    pub async fn calibrate(executor: &Executor) -> Self {
        let mut hops = Vec::with_capacity(HOP_SAMPLES);
        for _ in 0..HOP_SAMPLES {
            let start = Instant::now();
            let _ = executor.run(Placement::Rayon, Cancel::never(), |_, _| Ok(())).await;
            hops.push(start.elapsed());
        }
        hops.sort_unstable();
        let hop = hops[hops.len() / 2];

        // Sum of squares is linear: time one chunk (best of 5, to skip interruptions) and scale.
        let per_chunk = best_of(5, || {
            let _ = sum_of_squares::sum_of_squares(sum_of_squares::CHUNK, Parallelism::Serial, &Cancel::never());
        });
        let ns_per_element = per_chunk.as_nanos() as f64 / sum_of_squares::CHUNK as f64;
        let inline_max_sum_of_squares_n = (hop.as_nanos() as f64 / ns_per_element.max(1e-3)) as u64;

        let mut inline_max_factorial_n = 0;
        for n in FACTORIAL_PROBES {
            let cost = best_of(5, || {
                let _ = factorial::factorial_decimal(n, Parallelism::Serial, &Cancel::never());
            });
            if cost >= hop {
                break;
            }
            inline_max_factorial_n = n;
        }
        Self { hop, inline_max_factorial_n, inline_max_sum_of_squares_n }
    }

    /// Where `ADAPTIVE` runs `job`.
    pub fn placement(&self, job: Job) -> Placement {
        let cheap = match job {
            Job::Factorial(n) => n <= self.inline_max_factorial_n,
            Job::SumOfSquares(n) => n <= self.inline_max_sum_of_squares_n,
        };
        if cheap { Placement::Inline } else { Placement::Rayon }
    }
}

/// The shortest of `runs` timings of `f`: the run least disturbed by the rest of the machine. Shared with
/// `offload-bench`, which times the kernels the same way.
pub fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    (0..runs.max(1))
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calibration_puts_tiny_jobs_inline_and_heavy_ones_on_rayon() {
        let model = CostModel::calibrate(&Executor::new(2).expect("pool")).await;
        assert!(model.hop > Duration::ZERO);
        // Factorial(20) is a u64 loop (nanoseconds) and a 10^9 sum is ~100 ms: no machine puts these the other way.
        assert_eq!(model.placement(Job::Factorial(20)), Placement::Inline);
        assert_eq!(model.placement(Job::SumOfSquares(1_000_000_000)), Placement::Rayon);
        assert_eq!(model.placement(Job::Factorial(100_000)), Placement::Rayon);
    }
}
