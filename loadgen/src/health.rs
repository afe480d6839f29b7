//! Is the load generator the bottleneck? What a run measures of the generator itself, and the verdict every report
//! states (`generator`).
//!
//! Two measures, each with a bound past which the generator, not the target, limited the run:
//! - **Timer lateness** (open loop): how long after its scheduled time each call's sender woke, when it was not
//!   waiting for a free slot (that wait is the target's doing, and is charged to the call's latency). tokio's
//!   timer wheel ticks each millisecond, so a healthy sender wakes up to about 1 ms late; past
//!   [`MAX_LATENESS_P99`] at p99 the sender could not keep its schedule, and the rate it sent is not the rate
//!   asked for.
//! - **Core use**: the process's CPU time over the run's wall time and its worker threads (`--cpus`). At
//!   [`SATURATED_CORE_USE`] and above the threads were busy all the time: calls waited for the generator.
//!
//! CPU per call (the process's CPU time over the calls made) says what a call costs the generator, to size how
//! many generators a target needs. CPU is the whole process's: exact for `load`, one run per process; where
//! several runs share a process (`compare`'s heavy load and probes), each run's figures count all of them.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::histogram_codec;

/// Timer lateness at p99 past which the generator could not keep its schedule: ten ticks of tokio's 1 ms timer.
pub const MAX_LATENESS_P99: Duration = Duration::from_millis(10);

/// Share of the worker threads' time busy at and past which they were saturated: 90 %, as the remaining tenth is
/// what the kernel's scheduler and the runtime's own idling leave on a busy thread.
pub const SATURATED_CORE_USE: f64 = 0.9;

/// What the runner measured of the generator during a run.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Open loop: each send's lateness, nanoseconds (0 for a send on time); `None` in closed loop (no schedule).
    pub lateness: Option<Histogram<u64>>,
    /// CPU time the whole process spent during the run (user and system).
    pub cpu: Duration,
    /// Worker threads of the generator's runtime.
    pub cores: usize,
}

/// The report's `generator`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Health {
    /// Open loop: the p99 of the senders' lateness, nanoseconds (absent in closed loop).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timer_lateness_p99: Option<u64>,
    /// Open loop: every send's lateness, nanoseconds (HdrHistogram V2 compressed, base64), so merged runs take
    /// the p99 of all sends.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub lateness_histogram: String,
    /// CPU time of the generator's process during the run, nanoseconds.
    pub cpu_time: u64,
    /// `cpuTime` over the calls made, nanoseconds.
    pub cpu_per_call: u64,
    /// Worker threads (`--cpus`).
    pub cores: u64,
    /// Share of those threads' time spent on the CPU, 0 to 1 (may pass 1 a little: the process has other threads).
    pub core_use: f64,
    /// Whether the generator, not the target, limited the run.
    pub limited: bool,
    /// Why, in words, when it did.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

impl Health {
    /// The health of a run that made `calls` calls in `elapsed`.
    pub fn of(observed: &Observed, elapsed: Duration, calls: u64) -> Self {
        let cpu = nanos(observed.cpu);
        let busy = elapsed.as_secs_f64() * observed.cores.max(1) as f64;
        let mut health = Self {
            timer_lateness_p99: observed.lateness.as_ref().map(|h| h.value_at_quantile(0.99)),
            lateness_histogram: observed.lateness.as_ref().map(histogram_codec::encode).unwrap_or_default(),
            cpu_time: cpu,
            cpu_per_call: cpu.checked_div(calls).unwrap_or(0),
            cores: observed.cores as u64,
            core_use: if busy > 0.0 { observed.cpu.as_secs_f64() / busy } else { 0.0 },
            limited: false,
            reasons: Vec::new(),
        };
        health.judge();
        health
    }

    /// The health of several generators' runs together (`merge`): lateness over every send, CPU added up, core
    /// use over every generator's threads; limited when any was, each reason prefixed by `names[i]`.
    pub fn merge(all: &[(String, Self, Duration)]) -> anyhow::Result<Self> {
        let mut lateness: Option<Histogram<u64>> = None;
        let (mut cpu, mut busy, mut cores) = (0u64, 0.0, 0u64);
        let mut reasons = Vec::new();
        for (name, health, elapsed) in all {
            if !health.lateness_histogram.is_empty() {
                let like = lateness_histogram();
                let h = histogram_codec::decode(&health.lateness_histogram, &like, "generator.latenessHistogram")?;
                let sum = lateness.get_or_insert_with(|| Histogram::new_from(&like));
                sum.add(&h).map_err(|e| anyhow::anyhow!("generator.latenessHistogram: {e:?}"))?;
            }
            cpu += health.cpu_time;
            cores += health.cores;
            busy += elapsed.as_secs_f64() * health.cores.max(1) as f64;
            reasons.extend(health.reasons.iter().map(|r| format!("{name}: {r}")));
        }
        Ok(Self {
            timer_lateness_p99: lateness.as_ref().map(|h| h.value_at_quantile(0.99)),
            lateness_histogram: lateness.as_ref().map(histogram_codec::encode).unwrap_or_default(),
            cpu_time: cpu,
            cpu_per_call: 0,
            cores,
            core_use: if busy > 0.0 { cpu as f64 / 1e9 / busy } else { 0.0 },
            limited: !reasons.is_empty(),
            reasons,
        })
    }

    /// Sets `limited` and `reasons` from the measures and their bounds.
    fn judge(&mut self) {
        if let Some(p99) = self.timer_lateness_p99.filter(|&p| p > nanos(MAX_LATENESS_P99)) {
            self.reasons.push(format!(
                "its sends were late: p99 {:.1} ms after their scheduled time (bound {} ms), so it sent less than \
                 the requested rate",
                p99 as f64 / 1e6,
                MAX_LATENESS_P99.as_millis()
            ));
        }
        if self.core_use >= SATURATED_CORE_USE {
            self.reasons.push(format!(
                "its {} worker thread(s) were {:.0} % busy (bound {:.0} %): calls waited for the generator",
                self.cores,
                self.core_use * 100.0,
                SATURATED_CORE_USE * 100.0
            ));
        }
        self.limited = !self.reasons.is_empty();
    }

    /// The verdict in words: the first line a summary or page shows when the generator limited the run.
    pub fn warning(&self) -> Option<String> {
        self.limited.then(|| {
            format!(
                "WARNING: the load generator, not the target, limited this run: {}. Give it more cores (--cpus), \
                 or split the load over more generators (--shard).",
                self.reasons.join("; ")
            )
        })
    }
}

/// An empty lateness histogram: 1 µs to 10 minutes, three digits (lateness below a microsecond is on time).
pub fn lateness_histogram() -> Histogram<u64> {
    #[allow(clippy::expect_used)] // Constant, valid bounds.
    Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid histogram bounds")
}

/// CPU time this process has used so far (user and system, all threads), from `getrusage`.
pub fn process_cpu() -> Duration {
    // SAFETY: getrusage writes only into the zeroed struct it is given, which lives for the call.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return Duration::ZERO;
        }
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec.max(0) as u64, (t.tv_usec.max(0) as u32) * 1_000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_or_busy_generator_is_flagged_in_words() {
        let mut late = lateness_histogram();
        late.record_n(200_000, 95).expect("in range");
        late.record_n(50_000_000, 5).expect("in range");
        let observed = Observed { lateness: Some(late), cpu: Duration::from_millis(500), cores: 2 };
        let health = Health::of(&observed, Duration::from_secs(1), 1000);
        assert!(health.limited);
        assert_eq!(health.cpu_per_call, 500_000);
        assert!((health.core_use - 0.25).abs() < 1e-9);
        assert!(health.warning().expect("flagged").contains("p99 50.0 ms"), "{:?}", health.reasons);

        let busy = Observed { lateness: None, cpu: Duration::from_millis(1900), cores: 2 };
        let health = Health::of(&busy, Duration::from_secs(1), 10);
        assert!(health.limited && health.reasons[0].contains("95 % busy"), "{:?}", health.reasons);

        let fine = Observed { lateness: Some(lateness_histogram()), cpu: Duration::from_millis(100), cores: 2 };
        assert!(!Health::of(&fine, Duration::from_secs(1), 10).limited);
        assert!(process_cpu() > Duration::ZERO);
    }
}
