//! What `compare` shows: the table on stdout, and the report folder (ghz-shaped JSON per round, a summary JSON,
//! SVG charts and `report.md`). The verdicts compare the measurements with what the project expects and say
//! plainly where they disagree; nothing here is tuned to the expectation.

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::Context;
use offload_proto::v1::{ExecMode, UpstreamWait};

use super::{
    charts,
    scenario::{HopResult, RoundResult, Setup},
};
use crate::{
    recording::Recording,
    report::{Options, Report, rfc3339},
};

/// A finished comparison.
#[derive(Debug)]
pub struct Comparison {
    setup: Setup,
    rounds: Vec<RoundResult>,
    hop: Option<HopResult>,
    date: String,
    machine: String,
    command: String,
}

fn ms(d: Duration) -> String {
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
    format!(
        "{model}, {} cores{memory}, {} {}",
        offload_serve::runtime::available_cores(),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

impl Comparison {
    /// Collects the rounds.
    pub fn new(setup: &Setup, rounds: Vec<RoundResult>, hop: Option<HopResult>) -> Self {
        Self {
            setup: setup.clone(),
            rounds,
            hop,
            date: rfc3339(std::time::SystemTime::now()),
            machine: machine(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
        }
    }

    fn idle(&self) -> Option<&RoundResult> {
        self.rounds.iter().find(|r| r.mode.is_none() && r.wait.is_none())
    }

    fn round(&self, mode: ExecMode) -> Option<&RoundResult> {
        self.rounds.iter().find(|r| r.mode == Some(mode))
    }

    fn wait_round(&self, wait: UpstreamWait) -> Option<&RoundResult> {
        self.rounds.iter().find(|r| r.wait == Some(wait))
    }

    /// The idle baseline and the execution-mode rounds.
    fn mode_rounds(&self) -> Vec<&RoundResult> {
        self.rounds.iter().filter(|r| r.wait.is_none()).collect()
    }

    /// The gateway upstream-wait rounds.
    fn wait_rounds(&self) -> Vec<&RoundResult> {
        self.rounds.iter().filter(|r| r.wait.is_some()).collect()
    }

    fn ideal(&self) -> f64 {
        self.setup.heavy.ideal_rps(self.setup.cores)
    }

    /// The comparison table, aligned for a terminal.
    pub fn table(&self) -> String {
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
        let waits = self.wait_rounds();
        if !waits.is_empty() {
            let _ = writeln!(
                out,
                "\nhow the gateway waits for compute (heavy jobs in RAYON; health probes to the gateway; gateway runtime {:?})",
                self.setup.args.gateway_runtime
            );
            out.push_str(&self.terminal_rows("upstream wait", &waits));
        }
        let _ = writeln!(
            out,
            "(latencies in ms; probes measured from their scheduled send time; sched p99: the stressed server's \
             scheduling delay, an upper bucket bound)"
        );
        for r in self.rounds.iter().filter(|r| errors(r) != "0") {
            let _ = writeln!(out, "errors in {}: {}", r.label, error_detail(r));
        }
        if let Some(hop) = &self.hop {
            let _ = writeln!(out, "\n{}", hop_table(hop, self.setup.args.hop_concurrency));
        }
        let _ = writeln!(out, "\n{}", self.verdicts().join("\n"));
        out
    }

    fn terminal_rows(&self, first: &str, rounds: &[&RoundResult]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<20} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>9} {:>7} {:>8} {:>8}",
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
            "cpu gw"
        );
        for r in rounds {
            let heavy = r.heavy.as_ref();
            let cell = |f: &dyn Fn(&Recording) -> String| heavy.map_or("-".to_owned(), f);
            let _ = writeln!(
                out,
                "{:<20} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>9} {:>7} {:>8} {:>8}",
                r.label,
                cell(&|h| format!("{:.1}", h.ok_rps())),
                cell(&|h| format!("{:.0}%", 100.0 * h.ok_rps() / self.ideal())),
                cell(&|h| ms(h.percentile(50.0))),
                cell(&|h| ms(h.percentile(99.0))),
                ms(r.probe.percentile(50.0)),
                ms(r.probe.percentile(99.0)),
                ms(r.probe.percentile(99.9)),
                r.health.as_ref().map_or("-".to_owned(), |h| ms(h.percentile(99.0))),
                schedule_delay(r),
                errors(r),
                r.compute_cpu.map_or("-".to_owned(), |c| format!("{:.1}s", c.as_secs_f64())),
                r.gateway_cpu.map_or("-".to_owned(), |c| format!("{:.1}s", c.as_secs_f64())),
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
            let probe_ok = extra <= Duration::from_millis(1);
            let throughput_ok = share >= 0.9;
            lines.push(format!(
                "{}: probe p99 {} ms above idle ({}), heavy throughput {:.0}% of ideal ({}) — expected ≤ 1 ms and ≥ 90%",
                mode.short_name().to_uppercase(),
                ms(extra),
                if probe_ok { "met" } else { "NOT met" },
                share * 100.0,
                if throughput_ok { "met" } else { "NOT met" },
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
            let added = hop.via_gateway_serial.percentile(50.0).saturating_sub(hop.direct_serial.percentile(50.0));
            lines.push(format!(
                "gateway hop: {:.0}% of direct throughput ({}), +{:.0} µs at p50 one call at a time ({}) — goals ≥ 50% and ≤ 100 µs",
                share * 100.0,
                if share >= 0.5 { "met" } else { "NOT met" },
                added.as_secs_f64() * 1e6,
                if added <= Duration::from_micros(100) { "met" } else { "NOT met" },
            ));
        }
        lines
    }

    /// Writes raw JSON, summary, charts and `report.md` into `dir`.
    pub fn write_folder(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let write = |name: &str, text: String| {
            std::fs::write(dir.join(name), text).with_context(|| format!("cannot write {}", dir.join(name).display()))
        };
        for r in &self.rounds {
            let heavy_call = match (r.mode, r.wait) {
                (_, Some(w)) => Some(format!("{} EXEC_MODE_RAYON {}", self.setup.heavy.describe(), w.as_str_name())),
                (Some(m), None) => Some(format!("{} {}", self.setup.heavy.describe(), m.as_str_name())),
                (None, None) => None,
            };
            if let (Some(h), Some(call)) = (&r.heavy, heavy_call) {
                write(&format!("{}-heavy.json", r.label), self.ghz(h, &call, self.setup.heavy_concurrency, None)?)?;
            }
            write(
                &format!("{}-probe.json", r.label),
                self.ghz(&r.probe, "offload.v1.Gateway.Factorial n=20", 256, Some(self.setup.args.probe_rps))?,
            )?;
            if let Some(h) = &r.health {
                write(
                    &format!("{}-health.json", r.label),
                    self.ghz(h, "grpc.health.v1.Health.Check", 256, Some(self.setup.args.probe_rps))?,
                )?;
            }
        }
        write("summary.json", serde_json::to_string_pretty(&self.summary_json())?)?;
        let modes: Vec<RoundResult> = self.mode_rounds().into_iter().cloned().collect();
        charts::probe_latency(
            &dir.join("probe_latency.svg"),
            &modes,
            "Probe latency while heavy jobs run (Factorial(20), open loop)",
        )?;
        charts::heavy_throughput(&dir.join("heavy_throughput.svg"), &modes, self.ideal())?;
        let waits: Vec<RoundResult> = self.wait_rounds().into_iter().cloned().collect();
        if !waits.is_empty() {
            charts::probe_latency(
                &dir.join("upstream_wait_latency.svg"),
                &waits,
                "Gateway probe latency by how the gateway waits for compute",
            )?;
        }
        write("report.md", self.markdown())?;
        Ok(())
    }

    fn markdown_rows(&self, first: &str, rounds: &[&RoundResult]) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "| {first} | heavy/s | % of ideal | heavy p50 ms | heavy p99 ms | probe p50 ms | probe p99 ms | probe p99.9 ms | health p99 ms | scheduling delay p99 ms | errors | compute CPU s | gateway CPU s |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|");
        for r in rounds {
            let h = r.heavy.as_ref();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.label,
                h.map_or("-".into(), |h| format!("{:.1}", h.ok_rps())),
                h.map_or("-".into(), |h| format!("{:.0}%", 100.0 * h.ok_rps() / self.ideal())),
                h.map_or("-".into(), |h| ms(h.percentile(50.0))),
                h.map_or("-".into(), |h| ms(h.percentile(99.0))),
                ms(r.probe.percentile(50.0)),
                ms(r.probe.percentile(99.0)),
                ms(r.probe.percentile(99.9)),
                r.health.as_ref().map_or("-".into(), |h| ms(h.percentile(99.0))),
                schedule_delay(r),
                error_detail(r),
                r.compute_cpu.map_or("-".into(), |c| format!("{:.1}", c.as_secs_f64())),
                r.gateway_cpu.map_or("-".into(), |c| format!("{:.1}", c.as_secs_f64())),
            );
        }
        md
    }

    fn ghz(&self, recording: &Recording, call: &str, concurrency: usize, rps: Option<f64>) -> anyhow::Result<String> {
        let options = Options {
            call: call.to_owned(),
            host: self.setup.args.gateway.clone().unwrap_or_else(|| "127.0.0.1 (started by compare)".to_owned()),
            concurrency,
            connections: 1,
            total: None,
            duration: Some(self.setup.args.duration.as_nanos() as u64),
            rps,
            timeout: None,
            data: serde_json::Value::Null,
            open_loop: rps.is_some(),
        };
        Ok(serde_json::to_string_pretty(&Report::new(recording, options))?)
    }

    fn summary_json(&self) -> serde_json::Value {
        let rec = |r: &Recording| {
            serde_json::json!({
                "count": r.count(), "ok": r.ok(), "ok_rps": r.ok_rps(),
                "p50_ms": r.percentile(50.0).as_secs_f64() * 1e3,
                "p99_ms": r.percentile(99.0).as_secs_f64() * 1e3,
                "p999_ms": r.percentile(99.9).as_secs_f64() * 1e3,
                "statuses": r.statuses,
            })
        };
        serde_json::json!({
            "date": self.date,
            "machine": self.machine,
            "command": self.command,
            "heavy_job": { "call": self.setup.heavy.describe(), "job_ms": self.setup.heavy.job_time.as_secs_f64() * 1e3,
                           "concurrency": self.setup.heavy_concurrency, "ideal_rps": self.ideal() },
            "rounds": self.rounds.iter().map(|r| serde_json::json!({
                "round": r.label,
                "mode": r.mode.map(|m| m.as_str_name()),
                "upstream_wait": r.wait.map(|w| w.as_str_name()),
                "heavy": r.heavy.as_ref().map(rec),
                "heavy_share_of_ideal": r.heavy.as_ref().map(|h| h.ok_rps() / self.ideal()),
                "probe": rec(&r.probe),
                "health": r.health.as_ref().map(rec),
                "compute_cpu_s": r.compute_cpu.map(|c| c.as_secs_f64()),
                "gateway_cpu_s": r.gateway_cpu.map(|c| c.as_secs_f64()),
                "window_s": r.window.as_secs_f64(),
                "schedule_delay": r.schedule_delay.map(|d| serde_json::json!({
                    "count": d.count, "mean_ms": d.mean * 1e3, "p99_upper_bound_ms": d.upper_bound * 1e3,
                })),
            })).collect::<Vec<_>>(),
            "hop": self.hop.as_ref().map(|h| serde_json::json!({
                "direct": rec(&h.direct), "via_gateway": rec(&h.via_gateway),
                "direct_one_at_a_time": rec(&h.direct_serial), "via_gateway_one_at_a_time": rec(&h.via_gateway_serial),
            })),
            "verdicts": self.verdicts(),
        })
    }

    fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# offload: what blocking the runtime costs\n");
        let _ = writeln!(md, "- date: {}\n- machine: {}\n- command: `{}`", self.date, self.machine, self.command);
        let _ = writeln!(
            md,
            "- heavy jobs: `{}` through the gateway, {} in flight (closed loop), {:.2} ms of one core each; ideal {:.0} jobs/s",
            self.setup.heavy.describe(),
            self.setup.heavy_concurrency,
            self.setup.heavy.job_time.as_secs_f64() * 1e3,
            self.ideal()
        );
        let _ = writeln!(
            md,
            "- probes: `Factorial(20)` ({}) through the gateway and a health check to compute, {}/s each, open loop, latency from the scheduled send time\n- compute runtime: {:?}; {} s measured per mode\n",
            self.setup.probe_mode.as_str_name(),
            self.setup.args.probe_rps,
            self.setup.args.runtime,
            self.setup.args.duration.as_secs_f64()
        );
        md.push_str(&self.markdown_rows("mode", &self.mode_rounds()));
        let _ = writeln!(
            md,
            "\n![probe latency per mode](probe_latency.svg)\n\n![heavy throughput per mode](heavy_throughput.svg)\n"
        );
        let waits = self.wait_rounds();
        if !waits.is_empty() {
            let _ = writeln!(
                md,
                "## How the gateway waits for compute\n\nThe same heavy jobs, in `RAYON` so compute is never the problem; the gateway \
                 (runtime {:?}) waits for compute in each `upstream_wait` style; probes are `Factorial(20)` through the \
                 gateway awaited the right way, and health checks go to the gateway itself.\n",
                self.setup.args.gateway_runtime
            );
            md.push_str(&self.markdown_rows("upstream wait", &waits));
            let _ = writeln!(md, "\n![gateway probe latency per upstream-wait style](upstream_wait_latency.svg)\n");
        }
        if let Some(hop) = &self.hop {
            let _ = writeln!(
                md,
                "## The price of the gateway hop\n\n```\n{}\n```\n",
                hop_table(hop, self.setup.args.hop_concurrency)
            );
        }
        let _ = writeln!(md, "## Verdicts\n");
        for line in self.verdicts() {
            let _ = writeln!(md, "- {line}");
        }
        let _ = writeln!(
            md,
            "\nRaw data: `<mode>-heavy.json`, `<mode>-probe.json`, `<mode>-health.json` (ghz's JSON report shape) and `summary.json`."
        );
        md
    }
}

/// `≤ 3.20`: the bucket bound under which 99 % of the probe's wake-ups fell.
fn schedule_delay(r: &RoundResult) -> String {
    r.schedule_delay.map_or("-".to_owned(), |d| format!("≤{:.2}", d.upper_bound * 1e3))
}

fn errors(r: &RoundResult) -> String {
    let failed = r.heavy.as_ref().map_or(0, Recording::failed)
        + r.probe.failed()
        + r.health.as_ref().map_or(0, Recording::failed);
    failed.to_string()
}

fn error_detail(r: &RoundResult) -> String {
    let mut parts = Vec::new();
    for (what, rec) in [("heavy", r.heavy.as_ref()), ("probe", Some(&r.probe)), ("health", r.health.as_ref())] {
        let Some(rec) = rec else { continue };
        for (status, count) in rec.statuses.iter().filter(|(s, _)| s.as_str() != "OK") {
            parts.push(format!("{what} {status}×{count}"));
        }
    }
    if parts.is_empty() { "0".into() } else { parts.join(", ") }
}

fn hop_table(hop: &HopResult, concurrency: usize) -> String {
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
