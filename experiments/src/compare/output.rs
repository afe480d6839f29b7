//! What `compare` shows on stdout: the tables and the verdicts, which compare the measurements with what the
//! project expects and say plainly where they disagree; nothing here is tuned to the expectation. The report folder
//! is written by [`super::folder`].

use std::{fmt::Write as _, time::Duration};

use offload_proto::v1::{ExecMode, UpstreamWait};

use super::{
    scenario::{HopResult, RoundResult, Setup},
    stalls::Stalls,
};
use crate::goals;
use offload_loadgen::{recording::Recording, report::rfc3339};

/// A finished comparison.
#[derive(Debug)]
pub struct Comparison {
    pub(super) setup: Setup,
    pub(super) rounds: Vec<RoundResult>,
    pub(super) hop: Option<HopResult>,
    pub(super) date: String,
    pub(super) machine: String,
    pub(super) command: String,
}

pub(super) fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|kb| kb.parse::<u64>().ok()))
        .map_or(String::new(), |kb| format!(", {:.0} GiB", kb as f64 / 1024.0 / 1024.0));
    format!("{model}, {} cores{memory}, {} {}", crate::available_cores(), std::env::consts::OS, std::env::consts::ARCH)
}

impl Comparison {
    /// A comparison under `setup`, its rounds added as they finish.
    pub fn new(setup: &Setup) -> Self {
        Self {
            setup: setup.clone(),
            rounds: Vec::new(),
            hop: None,
            date: rfc3339(std::time::SystemTime::now()),
            machine: machine(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
        }
    }

    pub(super) fn idle(&self) -> Option<&RoundResult> {
        self.rounds.iter().find(|r| r.mode.is_none() && r.wait.is_none())
    }

    pub(super) fn round(&self, mode: ExecMode) -> Option<&RoundResult> {
        self.rounds.iter().find(|r| r.mode == Some(mode) && r.pinned.is_none())
    }

    pub(super) fn wait_round(&self, wait: UpstreamWait) -> Option<&RoundResult> {
        self.rounds.iter().find(|r| r.wait == Some(wait))
    }

    /// The idle baseline and the execution-mode rounds.
    pub(super) fn mode_rounds(&self) -> Vec<&RoundResult> {
        self.rounds.iter().filter(|r| r.wait.is_none()).collect()
    }

    /// The gateway upstream-wait rounds.
    pub(super) fn wait_rounds(&self) -> Vec<&RoundResult> {
        self.rounds.iter().filter(|r| r.wait.is_some()).collect()
    }

    pub(super) fn ideal(&self) -> f64 {
        self.setup.heavy.ideal_rps(self.setup.cores)
    }

    /// The comparison's first table, aligned for a terminal: the load, the idle baseline and the execution-mode
    /// rounds, and what the columns mean. Then [`Self::waits_table`] and [`Self::closing`], each printed by `compare`
    /// as soon as its rounds are in.
    pub fn modes_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nheavy: {} ×{} in flight ({:.2} ms of one core; ideal {:.0}/s on {} cores) · probes: Factorial(20) {} + health, {}/s open-loop",
            self.setup.heavy.describe(),
            self.setup.heavy_concurrency,
            self.setup.heavy.job_time.as_secs_f64() * 1e3,
            self.ideal(),
            self.setup.cores,
            self.setup.probe_mode.short_name(),
            self.setup.args.probe_rps,
        );
        out.push_str(&self.terminal_rows("mode", &self.mode_rounds()));
        let _ = writeln!(
            out,
            "(latencies in ms; probes measured from their scheduled send time; sched p99: the stressed server's \
             scheduling delay, an upper bucket bound; \
             stalls: times a worker made no progress for --stall-threshold, both servers, with the top method/mode, \
             its commonest cause and the innermost function of its own code; report.md has the whole frames)"
        );
        out
    }

    /// The gateway's upstream-wait rounds (empty without them).
    pub fn waits_table(&self) -> String {
        let mut out = String::new();
        let waits = self.wait_rounds();
        if !waits.is_empty() {
            let _ = writeln!(
                out,
                "\nhow the gateway waits for compute (heavy jobs in RAYON; health probes to the gateway; gateway runtime {:?})",
                self.setup.args.gateway_runtime
            );
            out.push_str(&self.terminal_rows("upstream wait", &waits));
        }
        out
    }

    /// Where the probes' time went, errors, the hop and the verdicts: what needs every round.
    pub fn closing(&self) -> String {
        let mut out = self.attribution_text();
        for r in self.rounds.iter().filter(|r| errors(r) != "0") {
            let _ = writeln!(out, "errors in {}: {}", r.label, error_detail(r));
        }
        if let Some(hop) = &self.hop {
            let _ = writeln!(out, "\n{}", hop_table(hop, self.setup.args.hop_concurrency));
        }
        let _ = writeln!(out, "\n{}", self.verdicts().join("\n"));
        out
    }

    /// A round's measurement cells, shared by the terminal table and the markdown table so their columns cannot
    /// drift: heavy/s, % of ideal, heavy p50/p99, probe p50/p99/p99.9, health p99 (ms), scheduling delay p99,
    /// stalled polls with the top culprit.
    pub(super) fn measure_cells(&self, r: &RoundResult) -> [String; 10] {
        let heavy = |f: &dyn Fn(&Recording) -> String| r.heavy.as_ref().map_or("-".to_owned(), f);
        [
            heavy(&|h| format!("{:.1}", h.ok_rps())),
            heavy(&|h| format!("{:.0}%", 100.0 * h.ok_rps() / self.ideal())),
            heavy(&|h| ms(h.percentile(50.0))),
            heavy(&|h| ms(h.percentile(99.0))),
            ms(r.probe.percentile(50.0)),
            ms(r.probe.percentile(99.0)),
            ms(r.probe.percentile(99.9)),
            r.health.as_ref().map_or("-".to_owned(), |h| ms(h.percentile(99.0))),
            schedule_delay(r),
            Stalls::cell(r.stalls.as_ref()),
        ]
    }

    fn terminal_rows(&self, first: &str, rounds: &[&RoundResult]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<20} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>9} {:>7} {:>8} {:>8} {:>8}  stalls (top culprit)",
            first,
            "heavy/s",
            "%ideal",
            "heavy p50",
            "heavy p99",
            "probe p50",
            "probe p99",
            "probe p99.9",
            "health p99",
            "sched p99",
            "errors",
            "cpu cmp",
            "cpu gw",
            "cpu load",
        );
        for r in rounds {
            let [heavy_rps, share, heavy_p50, heavy_p99, probe_p50, probe_p99, probe_p999, health_p99, sched, stalls] =
                self.measure_cells(r);
            let cpu = |c: Option<Duration>| c.map_or("-".to_owned(), |c| format!("{:.1}s", c.as_secs_f64()));
            let _ = writeln!(
                out,
                "{:<20} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>9} {:>7} {:>8} {:>8} {:>8}  {}",
                r.label,
                heavy_rps,
                share,
                heavy_p50,
                heavy_p99,
                probe_p50,
                probe_p99,
                probe_p999,
                health_p99,
                sched,
                errors(r),
                cpu(r.compute_cpu),
                cpu(r.gateway_cpu),
                cpu(r.client_cpu),
                stalls,
            );
        }
        out
    }

    /// What the numbers say against what the project expects, one line each.
    pub fn verdicts(&self) -> Vec<String> {
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
        for mode in [ExecMode::Rayon, ExecMode::Adaptive] {
            let Some(round) = self.round(mode) else { continue };
            let extra = round.probe.percentile(99.0).saturating_sub(idle_p99);
            let share = round.heavy.as_ref().map_or(0.0, |h| h.ok_rps() / self.ideal());
            let probe_ok = extra <= goals::OFFLOADED_PROBE_P99_OVER_IDLE;
            let throughput_ok = share >= goals::OFFLOADED_SHARE_OF_IDEAL;
            lines.push(format!(
                "{}: probe p99 {} ms above idle ({}), heavy throughput {:.0}% of ideal ({}) — expected ≤ {} ms and ≥ {:.0}%{}",
                mode.short_name().to_uppercase(),
                ms(extra),
                if probe_ok { "met" } else { "NOT met" },
                share * 100.0,
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
            let share = |r: &RoundResult| r.heavy.as_ref().map_or(0.0, |h| 100.0 * h.ok_rps() / self.ideal());
            lines.push(format!(
                "{} with the load generator on CPU {cpu} alone: probe p99 {} ms above idle (default round: {} ms), heavy throughput {:.0}% of ideal (default round: {:.0}%)",
                mode.short_name().to_uppercase(),
                ms(pinned.probe.percentile(99.0).saturating_sub(idle_p99)),
                ms(default.probe.percentile(99.0).saturating_sub(idle_p99)),
                share(pinned),
                share(default),
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
        if let Some(awaited) = self.wait_round(UpstreamWait::Async) {
            let base = awaited.probe.percentile(99.0);
            for wait in [UpstreamWait::Blocking, UpstreamWait::SpawnBlocking, UpstreamWait::SpawnTask] {
                let Some(round) = self.wait_round(wait) else { continue };
                let p99 = round.probe.percentile(99.0);
                let health = round.health.as_ref().map_or(Duration::ZERO, |h| h.percentile(99.0));
                let failed = round.probe.failed() + round.heavy.as_ref().map_or(0, Recording::failed);
                lines.push(format!(
                    "gateway {}: probe p99 {} ms vs {} ms when awaiting (×{:.1}), gateway health p99 {} ms, {} failed calls{}",
                    wait.short_name().to_uppercase(),
                    ms(p99),
                    ms(base),
                    p99.as_secs_f64() / base.as_secs_f64().max(1e-9),
                    ms(health),
                    failed,
                    if wait == UpstreamWait::Blocking && p99 < base * 2 { " — NOT the stall expected" } else { "" },
                ));
            }
        }
        if let Some(hop) = &self.hop {
            let share = hop.via_gateway.ok_rps() / hop.direct.ok_rps().max(f64::MIN_POSITIVE);
            let (direct, via) = (hop.direct_serial.percentile(50.0), hop.via_gateway_serial.percentile(50.0));
            let slower = via.as_secs_f64() / direct.as_secs_f64().max(1e-9);
            lines.push(format!(
                "gateway hop: {:.0}% of direct throughput ({}), p50 one call at a time ×{slower:.2} of direct, +{:.0} µs ({}) — goals ≥ {:.0}% and ≤ ×{:.1}; a bare tonic hop's own: `offload-bench overhead`",
                share * 100.0,
                if share >= goals::HOP_THROUGHPUT { "met" } else { "NOT met" },
                via.saturating_sub(direct).as_secs_f64() * 1e6,
                if slower <= goals::HOP_SERIAL_P50 { "met" } else { "NOT met" },
                goals::HOP_THROUGHPUT * 100.0,
                goals::HOP_SERIAL_P50,
            ));
        }
        lines
    }
}

impl Comparison {
    /// Heavy throughput as a share of what compute could do with the CPU the load generator and the gateway left
    /// it in the round (`cores × window` less their CPU time): the ideal if compute owned the machine's rest.
    fn share_of_cores_left(&self, r: &RoundResult) -> Option<f64> {
        let (heavy, gateway, client) = (r.heavy.as_ref()?, r.gateway_cpu?, r.client_cpu?);
        let left = self.setup.cores as f64 * r.window.as_secs_f64() - gateway.as_secs_f64() - client.as_secs_f64();
        let jobs_left = left / self.setup.heavy.job_time.as_secs_f64();
        (jobs_left > 0.0).then(|| heavy.ok_rps() * r.window.as_secs_f64() / jobs_left)
    }
}

/// `≤ 3.20`: the bucket bound under which 99 % of the probe's wake-ups fell.
pub(super) fn schedule_delay(r: &RoundResult) -> String {
    r.schedule_delay.map_or("-".to_owned(), |d| format!("≤{:.2}", d.upper_bound * 1e3))
}

fn errors(r: &RoundResult) -> String {
    let failed = r.heavy.as_ref().map_or(0, Recording::failed)
        + r.probe.failed()
        + r.health.as_ref().map_or(0, Recording::failed);
    failed.to_string()
}

pub(super) fn error_detail(r: &RoundResult) -> String {
    let mut parts = Vec::new();
    for (what, rec) in [("heavy", r.heavy.as_ref()), ("probe", Some(&r.probe)), ("health", r.health.as_ref())] {
        let Some(rec) = rec else { continue };
        for (status, count) in rec.statuses.iter().filter(|(s, _)| s.as_str() != "OK") {
            parts.push(format!("{what} {status}×{count}"));
        }
    }
    if parts.is_empty() { "0".into() } else { parts.join(", ") }
}

pub(super) fn hop_table(hop: &HopResult, concurrency: usize) -> String {
    let mut out = "Factorial(1) INLINE, one connection per path\n".to_owned();
    let _ = writeln!(
        out,
        "{:<14} {:>22} {:>9} {:>9} {:>16} {:>16}",
        "path",
        format!("calls/s at {concurrency}"),
        "p50 ms",
        "p99 ms",
        "p50 ms at 1",
        "p99 ms at 1"
    );
    for (name, r, s) in
        [("direct", &hop.direct, &hop.direct_serial), ("via gateway", &hop.via_gateway, &hop.via_gateway_serial)]
    {
        let _ = writeln!(
            out,
            "{:<14} {:>22.0} {:>9} {:>9} {:>16} {:>16}",
            name,
            r.ok_rps(),
            ms(r.percentile(50.0)),
            ms(r.percentile(99.0)),
            format!("{:.3}", s.percentile(50.0).as_secs_f64() * 1e3),
            format!("{:.3}", s.percentile(99.0).as_secs_f64() * 1e3),
        );
    }
    out
}
