//! A round's ideal heavy throughput: `cores ÷ job time`, the jobs per second the machine would finish if every core
//! did nothing else, with the job time measured in the round itself.
//!
//! The start-up calibration alone is not enough: it is a few calls at one moment on a shared machine whose speed
//! drifts, and a round that runs while the machine is faster than it was then would show more than 100 % of ideal.
//! So each round's job time is the least of three figures, the last two measured in that round:
//! - the calibration (the kernel alone, `INLINE`, on an idle compute);
//! - the fastest heavy job's own `compute_us`, in modes that run a job on one thread (a job cannot have cost more CPU
//!   than the wall time it ran for; `RAYON` may split a job over the pool, so its wall time says nothing of its CPU);
//! - compute's CPU time per finished job (the jobs cannot have cost more than the whole process used).
//!
//! The last one makes the bound hard wherever compute's CPU is read (every round but `--gateway`'s): the share is
//! then at most compute's share of the machine, never above 100 %. A round on a slower machine than the
//! calibration's is measured against the calibration, so its share reads low rather than high.

use std::time::Duration;

use offload_proto::v1::ExecMode;

use super::{
    attribution::{Breakdown, Segment},
    output::Comparison,
    scenario::RoundResult,
};

/// What a round measured that bounds its job's cost.
#[derive(Debug, Clone, Copy)]
struct RoundCost<'a> {
    /// The heavy jobs' mode, when it runs each job on one thread (their `compute_us` is then a bound).
    serial: bool,
    heavy_calls: &'a [Breakdown],
    /// Compute's CPU time over the window and the heavy jobs finished in it, when both are known.
    cpu_per_job: Option<(Duration, f64)>,
}

/// The job time of a round: the least of the calibration and what the round measured (see the module doc).
fn job_time(calibrated: Duration, round: RoundCost<'_>) -> Duration {
    let fastest_serial =
        round.heavy_calls.iter().map(|c| c.get(Segment::Compute)).filter(|t| round.serial && !t.is_zero()).min();
    let cpu_per_job = round
        .cpu_per_job
        .filter(|(_, jobs)| *jobs >= 1.0)
        .map(|(cpu, jobs)| cpu.div_f64(jobs))
        .filter(|t| !t.is_zero());
    [Some(calibrated), fastest_serial, cpu_per_job].into_iter().flatten().min().unwrap_or(calibrated)
}

/// Whether `mode` runs each job on one thread (the placements whose kernel runs `Serial` in compute's executor).
fn runs_serial(mode: Option<ExecMode>) -> bool {
    matches!(mode, Some(ExecMode::Inline | ExecMode::SpawnTask | ExecMode::SpawnBlocking | ExecMode::BlockInPlace))
}

impl Comparison {
    /// The job time `r`'s ideal is based on (the calibration's for a round without heavy jobs).
    pub(super) fn job_time(&self, r: &RoundResult) -> Duration {
        // Jobs finished over the window at the recorded rate, so the bound holds over the window the CPU was read in.
        let jobs = r.heavy.as_ref().map(|h| h.ok_rps() * r.window.as_secs_f64());
        let round = RoundCost {
            serial: r.wait.is_none() && runs_serial(r.mode),
            heavy_calls: &r.heavy_calls,
            cpu_per_job: r.compute_cpu.zip(jobs),
        };
        job_time(self.setup.heavy.job_time, round)
    }

    /// `r`'s ideal throughput, jobs per second.
    pub(super) fn ideal_of(&self, r: &RoundResult) -> f64 {
        self.setup.cores as f64 / self.job_time(r).as_secs_f64()
    }

    /// `r`'s heavy throughput as a share of its ideal (`None` without heavy jobs).
    pub(super) fn share_of_ideal(&self, r: &RoundResult) -> Option<f64> {
        r.heavy.as_ref().map(|h| h.ok_rps() / self.ideal_of(r))
    }

    /// Heavy throughput as a share of what compute could do with the CPU the load generator and the gateway left
    /// it in the round (`cores × window` less their CPU time): the ideal if compute owned the machine's rest.
    pub(super) fn share_of_cores_left(&self, r: &RoundResult) -> Option<f64> {
        let (heavy, gateway, client) = (r.heavy.as_ref()?, r.gateway_cpu?, r.client_cpu?);
        let left = self.setup.cores as f64 * r.window.as_secs_f64() - gateway.as_secs_f64() - client.as_secs_f64();
        let jobs_left = left / self.job_time(r).as_secs_f64();
        (jobs_left > 0.0).then(|| heavy.ok_rps() * r.window.as_secs_f64() / jobs_left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::fixtures::{comparison, round};

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn a_round_on_a_faster_machine_than_the_calibrations_stays_under_100_percent() {
        // Calibrated at 15 ms while the machine was slow; in the round a job costs 12 ms. INLINE on 2 cores with
        // compute getting 90 % of them finishes 2 × 0.9 / 12 ms = 150 jobs/s: 112 % of the calibrated ideal.
        let c = comparison(MS(15), 2);
        let r = round(Some(ExecMode::Inline), 150.0, &[MS(12), MS(13), MS(16)], Some(Duration::from_secs_f64(7.2)));
        let share = c.share_of_ideal(&r).expect("heavy jobs");
        assert!(share <= 1.0, "{share}");
        assert!((share - 0.9).abs() < 0.01, "cores ÷ 12 ms is the ideal: {share}");
        assert_eq!(c.job_time(&r), MS(12));
    }

    #[test]
    fn a_round_whose_jobs_ran_slower_than_calibrated_never_shows_more_than_100_percent() {
        // Every job took 20 ms (the machine slowed down, or the jobs were time-sliced), compute used the whole
        // machine: the calibration stays the ideal and the share reads low, never high.
        let c = comparison(MS(15), 2);
        for mode in [ExecMode::Inline, ExecMode::SpawnBlocking, ExecMode::Rayon] {
            let r = round(Some(mode), 100.0, &[MS(20), MS(21)], Some(MS(8_000)));
            let share = c.share_of_ideal(&r).expect("heavy jobs");
            assert!(share <= 1.0, "{mode:?}: {share}");
            assert_eq!(c.job_time(&r), MS(15), "{mode:?}");
        }
    }

    #[test]
    fn compute_cpu_bounds_the_share_where_compute_us_cannot() {
        // RAYON splits a job over the pool: 7 ms of wall time for 14 ms of CPU. The wall time is no bound; compute's
        // 7.0 s of CPU for 500 jobs (14 ms each) is, and the share is compute's share of the machine.
        let c = comparison(MS(15), 2);
        let r = round(Some(ExecMode::Rayon), 125.0, &[MS(7), MS(8)], Some(MS(7_000)));
        assert_eq!(c.job_time(&r), MS(14));
        let share = c.share_of_ideal(&r).expect("heavy jobs");
        assert!((share - 7.0 / 8.0).abs() < 0.01, "{share}");
        // Without CPU accounting (`--gateway`) and without a one-thread mode, only the calibration is left.
        let r = round(Some(ExecMode::Rayon), 125.0, &[MS(7)], None);
        assert_eq!(c.job_time(&r), MS(15));
    }

    #[test]
    fn a_server_that_reports_no_compute_time_leaves_the_calibration() {
        let c = comparison(MS(15), 2);
        let r = round(Some(ExecMode::Inline), 100.0, &[Duration::ZERO], None);
        assert_eq!(c.job_time(&r), MS(15));
        assert_eq!(c.job_time(&round(None, 0.0, &[], None)), MS(15), "the idle round");
    }
}
