//! The verdicts: what the numbers say against what the project expects, one line each, said plainly where they
//! disagree; nothing here is tuned to the expectation. In three groups, each printed under the table it reads (the
//! execution modes, the gateway's upstream waits, the hop), and all together in the reports.

use std::time::Duration;

use offload_proto::v1::{ExecMode, UpstreamWait};

use super::{
    output::{Comparison, ms},
    scenario::RoundResult,
};
use crate::{ServerRuntime, goals};
use offload_loadgen::recording::Recording;

/// How much slower the probes must be when the gateway blocks its runtime than when it awaits, for the stall the
/// upstream-wait rounds show: far below a blocked event loop's (the probe waits out a whole upstream call, ×5 and
/// more at the default job) and far above a busy machine's drift between two rounds.
const BLOCKING_STALL_RATIO: u32 = 2;

impl Comparison {
    /// Every verdict, in the order of the tables.
    pub fn verdicts(&self) -> Vec<String> {
        [self.mode_verdicts(), self.wait_verdicts(), self.hop_verdicts()].concat()
    }

    /// The execution-mode rounds against the idle baseline.
    pub fn mode_verdicts(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let Some(idle) = self.idle() else { return lines };
        let idle_p99 = idle.probe.percentile(99.0);
        let job = self.setup.heavy.job_time;
        lines.push(format!("idle probe p99: {} ms; one heavy job: {} ms of one core", ms(idle_p99), ms(job)));
        if let Some(inline) = self.round(ExecMode::Inline) {
            let p99 = inline.probe.percentile(99.0);
            let met = p99 >= job / 2;
            lines.push(format!(
                "INLINE: probe p99 {} ms — {} (expected: climbs to about the job time, {} ms)",
                ms(p99),
                if met {
                    "climbed to the job time: a blocked worker delays everything behind it"
                } else {
                    "did NOT climb as expected"
                },
                ms(job)
            ));
        }
        let share = |r: &RoundResult| self.share_of_ideal(r).unwrap_or(0.0);
        for mode in [ExecMode::Rayon, ExecMode::Adaptive] {
            let Some(round) = self.round(mode) else { continue };
            let extra = round.probe.percentile(99.0).saturating_sub(idle_p99);
            let probe_ok = extra <= goals::OFFLOADED_PROBE_P99_OVER_IDLE;
            let throughput_ok = share(round) >= goals::OFFLOADED_SHARE_OF_IDEAL;
            lines.push(format!(
                "{}: probe p99 {} ms above idle ({}), heavy throughput {:.0}% of ideal ({}) — expected ≤ {} ms and ≥ {:.0}%{}",
                mode.short_name().to_uppercase(),
                ms(extra),
                if probe_ok { "met" } else { "NOT met" },
                share(round) * 100.0,
                if throughput_ok { "met" } else { "NOT met" },
                ms(goals::OFFLOADED_PROBE_P99_OVER_IDLE),
                goals::OFFLOADED_SHARE_OF_IDEAL * 100.0,
                self.share_of_cores_left(round).map_or(String::new(), |left| format!(
                    "; {:.0}% of what the cores left after the load generator and the gateway", left * 100.0
                )),
            ));
        }
        for pinned in self.rounds.iter().filter(|r| r.pinned.is_some()) {
            let (Some(mode), Some(cpu)) = (pinned.mode, pinned.pinned) else { continue };
            let Some(default) = self.round(mode) else { continue };
            lines.push(format!(
                "{} with the load generator on CPU {cpu} alone: probe p99 {} ms above idle (default round: {} ms), heavy throughput {:.0}% of ideal (default round: {:.0}%)",
                mode.short_name().to_uppercase(),
                ms(pinned.probe.percentile(99.0).saturating_sub(idle_p99)),
                ms(default.probe.percentile(99.0).saturating_sub(idle_p99)),
                share(pinned) * 100.0,
                share(default) * 100.0,
            ));
        }
        for mode in [ExecMode::SpawnBlocking, ExecMode::BlockInPlace] {
            let (Some(round), Some(inline), Some(rayon)) =
                (self.round(mode), self.round(ExecMode::Inline), self.round(ExecMode::Rayon))
            else {
                continue;
            };
            let p = round.probe.percentile(99.0);
            let between = p >= rayon.probe.percentile(99.0) && p <= inline.probe.percentile(99.0);
            lines.push(format!(
                "{}: probe p99 {} ms — {} (expected between RAYON {} ms and INLINE {} ms: more threads than cores, so the OS time-slices them)",
                mode.short_name().to_uppercase(),
                ms(p),
                if between { "in between, as expected" } else { "NOT in between" },
                ms(rayon.probe.percentile(99.0)),
                ms(inline.probe.percentile(99.0)),
            ));
        }
        lines
    }

    /// The upstream-wait rounds against the one that awaits, naming the gateway they ran on.
    pub fn wait_verdicts(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let Some(awaited) = self.wait_round(UpstreamWait::Async) else { return lines };
        let base = awaited.probe.percentile(99.0);
        for wait in [UpstreamWait::Blocking, UpstreamWait::SpawnBlocking, UpstreamWait::SpawnTask] {
            let Some(round) = self.wait_round(wait) else { continue };
            let p99 = round.probe.percentile(99.0);
            let health = round.health.as_ref().map_or(Duration::ZERO, |h| h.percentile(99.0));
            let failed = round.probe.failed() + round.heavy.as_ref().map_or(0, Recording::failed);
            let expectation = if wait != UpstreamWait::Blocking {
                String::new()
            } else if p99 >= base * BLOCKING_STALL_RATIO {
                format!(" — the stall expected (≥ ×{BLOCKING_STALL_RATIO}): {}", self.blocking_expectation())
            } else {
                format!(" — NOT the stall expected (≥ ×{BLOCKING_STALL_RATIO}: {})", self.blocking_expectation())
            };
            lines.push(format!(
                "gateway {} on {}: probe p99 {} ms vs {} ms when awaiting (×{:.1}), gateway health p99 {} ms, {} failed calls{expectation}",
                wait.short_name().to_uppercase(),
                self.wait_gateway_short(),
                ms(p99),
                ms(base),
                p99.as_secs_f64() / base.as_secs_f64().max(1e-9),
                ms(health),
                failed,
            ));
        }
        lines
    }

    /// What a blocking wait should do to the probes on the upstream-wait rounds' gateway.
    fn blocking_expectation(&self) -> &'static str {
        match self.wait_runtime() {
            Some(ServerRuntime::CurrentThread) => "one event loop, blocked by each call, delays every request",
            _ => {
                "blocked workers delay the requests behind them (with --wait-gateway-runtime current-thread, every request)"
            }
        }
    }

    /// The price of the gateway hop against its goals.
    pub fn hop_verdicts(&self) -> Vec<String> {
        let Some(hop) = &self.hop else { return Vec::new() };
        let share = hop.via_gateway.ok_rps() / hop.direct.ok_rps().max(f64::MIN_POSITIVE);
        let (direct, via) = (hop.direct_serial.percentile(50.0), hop.via_gateway_serial.percentile(50.0));
        let slower = via.as_secs_f64() / direct.as_secs_f64().max(1e-9);
        vec![format!(
            "gateway hop: {:.0}% of direct throughput ({}), p50 one call at a time ×{slower:.2} of direct, +{:.0} µs ({}) — goals ≥ {:.0}% and ≤ ×{:.1}; a bare tonic hop's own: `offload-bench overhead`",
            share * 100.0,
            if share >= goals::HOP_THROUGHPUT { "met" } else { "NOT met" },
            via.saturating_sub(direct).as_secs_f64() * 1e6,
            if slower <= goals::HOP_SERIAL_P50 { "met" } else { "NOT met" },
            goals::HOP_THROUGHPUT * 100.0,
            goals::HOP_SERIAL_P50,
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::fixtures::{comparison, wait_round};

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn blocking_line(c: &super::Comparison) -> String {
        c.wait_verdicts().into_iter().find(|l| l.starts_with("gateway BLOCKING")).expect("a BLOCKING line")
    }

    #[test]
    fn the_blocking_line_names_the_gateway_and_says_whether_the_probes_stalled() {
        let mut c = comparison(MS(15), 2);
        c.rounds = vec![wait_round(UpstreamWait::Async, MS(2)), wait_round(UpstreamWait::Blocking, MS(16))];
        let line = blocking_line(&c);
        assert!(line.contains("on gateway --runtime current-thread:"), "{line}");
        assert!(line.contains("the stall expected") && !line.contains("NOT"), "{line}");

        c.rounds[1] = wait_round(UpstreamWait::Blocking, MS(3));
        assert!(blocking_line(&c).contains("NOT the stall expected"), "{}", blocking_line(&c));
    }
}
