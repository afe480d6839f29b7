//! A finished comparison and its rounds' measurements as table cells, shared by what `compare` prints
//! ([`super::terminal`]) and the report folder it writes ([`super::folder`]), so their columns cannot drift.

use std::{fmt::Write as _, time::Duration};

use offload_proto::v1::{ExecMode, UpstreamWait};

use super::{
    scenario::{HopResult, RoundResult, Setup},
    stalls::Stalls,
};
use crate::ServerRuntime;
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

    /// The calibrated ideal, `cores ÷` the start-up job time; each round's own is [`Self::ideal_of`].
    pub(super) fn ideal(&self) -> f64 {
        self.setup.heavy.ideal_rps(self.setup.cores)
    }

    /// The runtime of the gateway the upstream-wait rounds ran on; `None` for one `--gateway` points at.
    pub(super) fn wait_runtime(&self) -> Option<ServerRuntime> {
        self.setup.args.gateway.is_none().then_some(self.setup.args.wait_gateway_runtime)
    }

    /// The gateway the upstream-wait rounds ran on, for their tables' headings.
    pub(super) fn wait_gateway(&self) -> &'static str {
        match self.wait_runtime() {
            Some(ServerRuntime::CurrentThread) => {
                "gateway --runtime current-thread: one event loop for every connection, as the seed's"
            }
            Some(ServerRuntime::MultiThread) => {
                "gateway --runtime multi-thread: a worker per core, shared by every connection"
            }
            Some(ServerRuntime::ThreadPerCore) => {
                "gateway --runtime thread-per-core: each connection stays on one shard"
            }
            None => "the gateway --gateway points at, on whatever runtime it runs",
        }
    }

    /// The same, in a few words: `gateway --runtime current-thread`.
    pub(super) fn wait_gateway_short(&self) -> String {
        self.wait_runtime()
            .map_or("the --gateway given".to_owned(), |r| format!("gateway --runtime {}", r.flag_value()))
    }

    /// A round's measurements as cells, shared by the terminal tables and the reports' so their columns cannot drift.
    pub(super) fn measure_cells(&self, r: &RoundResult) -> Cells {
        let heavy = |f: &dyn Fn(&Recording) -> String| r.heavy.as_ref().map_or("-".to_owned(), f);
        let percent = |share: Option<f64>| share.map_or("-".to_owned(), |s| format!("{:.0}%", s * 100.0));
        Cells {
            heavy_rps: heavy(&|h| format!("{:.1}", h.ok_rps())),
            share_of_ideal: percent(self.share_of_ideal(r)),
            share_of_cores_left: percent(self.share_of_cores_left(r)),
            job_ms: heavy(&|_| ms(self.job_time(r))),
            heavy_p50: heavy(&|h| ms(h.percentile(50.0))),
            heavy_p99: heavy(&|h| ms(h.percentile(99.0))),
            probe_p50: ms(r.probe.percentile(50.0)),
            probe_p99: ms(r.probe.percentile(99.0)),
            probe_p999: ms(r.probe.percentile(99.9)),
            health_p99: r.health.as_ref().map_or("-".to_owned(), |h| ms(h.percentile(99.0))),
            schedule_delay: schedule_delay(r),
            stalls: r.stalls.as_ref().map_or("–".to_owned(), |s| format!("{:.0}", s.total)),
            stalls_culprit: Stalls::cell(r.stalls.as_ref()),
        }
    }
}

/// A round's measurements, formatted (latencies in ms).
#[derive(Debug, Clone)]
pub(super) struct Cells {
    pub heavy_rps: String,
    /// Heavy throughput against the round's ideal ([`super::ideal`]).
    pub share_of_ideal: String,
    /// Heavy throughput against what the load generator and the gateway left of the cores.
    pub share_of_cores_left: String,
    /// The job time the round's ideal is based on.
    pub job_ms: String,
    pub heavy_p50: String,
    pub heavy_p99: String,
    pub probe_p50: String,
    pub probe_p99: String,
    pub probe_p999: String,
    pub health_p99: String,
    /// The stressed server's scheduling delay p99 (an upper bucket bound).
    pub schedule_delay: String,
    /// The round's stalls, a count.
    pub stalls: String,
    /// The count with the top culprit, its cause and function.
    pub stalls_culprit: String,
}

/// `≤ 3.20`: the bucket bound under which 99 % of the probe's wake-ups fell.
pub(super) fn schedule_delay(r: &RoundResult) -> String {
    r.schedule_delay.map_or("-".to_owned(), |d| format!("≤{:.2}", d.upper_bound * 1e3))
}

pub(super) fn errors(r: &RoundResult) -> String {
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
