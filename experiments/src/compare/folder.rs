//! The report folder `compare` writes: ghz-shaped JSON per round, `summary.json`, the SVG charts, `report.md` and
//! `report.html` (its page is laid out in [`super::page`]).

use std::{fmt::Write as _, path::Path};

use anyhow::Context;

use super::{
    charts,
    output::{Comparison, error_detail, hop_table},
    scenario::RoundResult,
};
use offload_loadgen::{
    recording::Recording,
    report::{Options, Report},
};

/// What the probes call, as the reports name it.
const PROBE_CALL: &str = "offload.v1.Gateway.Factorial n=20";
/// The chart the README shows and `report.html` opens on.
pub(super) const PROBE_CHART_TITLE: &str = "Probe latency while heavy jobs run (Factorial(20), open loop)";

impl Comparison {
    /// Writes raw JSON, summary, charts, `report.md` and `report.html` into `dir`.
    pub fn write_folder(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let write = |name: &str, text: String| {
            std::fs::write(dir.join(name), text).with_context(|| format!("cannot write {}", dir.join(name).display()))
        };
        for r in &self.rounds {
            for (kind, _, report) in self.round_reports(r) {
                write(&format!("{}-{kind}.json", r.label), serde_json::to_string_pretty(&report)?)?;
            }
        }
        write("summary.json", serde_json::to_string_pretty(&self.summary_json())?)?;
        let modes: Vec<RoundResult> = self.mode_rounds().into_iter().cloned().collect();
        let probe_latency = charts::probe_latency(&modes, PROBE_CHART_TITLE);
        write("probe_latency.svg", probe_latency.clone())?;
        let ideals: Vec<f64> = modes.iter().map(|r| self.ideal_of(r)).collect();
        write("heavy_throughput.svg", charts::heavy_throughput(&modes, &ideals))?;
        let waits: Vec<RoundResult> = self.wait_rounds().into_iter().cloned().collect();
        if !waits.is_empty() {
            let title = format!("Gateway probe latency by how it waits for compute ({})", self.wait_gateway_short());
            write("upstream_wait_latency.svg", charts::probe_latency(&waits, &title))?;
        }
        write("report.md", self.markdown())?;
        write("report.html", self.html(&probe_latency))?;
        Ok(())
    }

    fn markdown_rows(&self, first: &str, rounds: &[&RoundResult]) -> String {
        let header = self.summary_header(first);
        let mut md = format!("| {} |\n", header.join(" | "));
        let align: Vec<&str> =
            header.iter().map(|h| if h.contains("stalls") || h == "errors" { "---" } else { "---:" }).collect();
        let _ = writeln!(md, "|---|{}|", align[1..].join("|"));
        for r in rounds {
            let _ = writeln!(md, "| {} |", self.summary_cells(r).join(" | "));
        }
        md
    }

    /// The summary tables' columns, shared by `report.md` and `report.html`.
    pub(super) fn summary_header(&self, first: &str) -> Vec<String> {
        [
            first,
            "heavy/s",
            "% of ideal",
            "% of cores left",
            "job ms",
            "heavy p50 ms",
            "heavy p99 ms",
            "probe p50 ms",
            "probe p99 ms",
            "probe p99.9 ms",
            "health p99 ms",
            "scheduling delay p99 ms",
            "stalls (top culprit)",
            "errors",
            "compute CPU s",
            "gateway CPU s",
            "load generator CPU s",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// A round's row of the summary tables.
    pub(super) fn summary_cells(&self, r: &RoundResult) -> Vec<String> {
        let cpu = |c: Option<std::time::Duration>| c.map_or("-".to_owned(), |c| format!("{:.1}", c.as_secs_f64()));
        let c = self.measure_cells(r);
        vec![
            r.label.clone(),
            c.heavy_rps,
            c.share_of_ideal,
            c.share_of_cores_left,
            c.job_ms,
            c.heavy_p50,
            c.heavy_p99,
            c.probe_p50,
            c.probe_p99,
            c.probe_p999,
            c.health_p99,
            c.schedule_delay,
            c.stalls_culprit,
            error_detail(r),
            cpu(r.compute_cpu),
            cpu(r.gateway_cpu),
            cpu(r.client_cpu),
        ]
    }

    /// The ghz-shaped report of each of a round's loads, by kind (`probe`, `heavy`, `health`), probe first.
    pub(super) fn round_reports<'a>(&self, r: &'a RoundResult) -> Vec<(&'static str, &'a Recording, Report)> {
        let probe_rps = Some(self.setup.args.probe_rps);
        let mut out = vec![("probe", &r.probe, self.ghz(&r.probe, PROBE_CALL, 256, probe_rps))];
        let heavy_call = match (r.mode, r.wait) {
            (_, Some(w)) => Some(format!("{} EXEC_MODE_RAYON {}", self.setup.heavy.describe(), w.as_str_name())),
            (Some(m), None) => Some(format!("{} {}", self.setup.heavy.describe(), m.as_str_name())),
            (None, None) => None,
        };
        if let (Some(h), Some(call)) = (&r.heavy, heavy_call) {
            out.push(("heavy", h, self.ghz(h, &call, self.setup.heavy_concurrency, None)));
        }
        if let Some(h) = &r.health {
            out.push(("health", h, self.ghz(h, "grpc.health.v1.Health.Check", 256, probe_rps)));
        }
        out
    }

    fn ghz(&self, recording: &Recording, call: &str, concurrency: usize, rps: Option<f64>) -> Report {
        let host = self.setup.args.gateway.clone().unwrap_or_else(|| "127.0.0.1 (started by compare)".to_owned());
        let mut options = Options::new(call, host).open_loop_at(rps);
        options.insecure = true;
        options.concurrency = concurrency as u64;
        options.connections = 1;
        options.duration = self.setup.args.duration.as_nanos() as u64;
        Report::new(recording, options)
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
            "wait_gateway_runtime": self.wait_runtime().map(|r| r.flag_value()),
            "rounds": self.rounds.iter().map(|r| serde_json::json!({
                "round": r.label,
                "mode": r.mode.map(|m| m.as_str_name()),
                "upstream_wait": r.wait.map(|w| w.as_str_name()),
                "heavy": r.heavy.as_ref().map(rec),
                "job_ms": self.job_time(r).as_secs_f64() * 1e3,
                "ideal_rps": self.ideal_of(r),
                "heavy_share_of_ideal": self.share_of_ideal(r),
                "heavy_share_of_cores_left": self.share_of_cores_left(r),
                "probe": rec(&r.probe),
                "health": r.health.as_ref().map(rec),
                "compute_cpu_s": r.compute_cpu.map(|c| c.as_secs_f64()),
                "gateway_cpu_s": r.gateway_cpu.map(|c| c.as_secs_f64()),
                "load_generator_cpu_s": r.client_cpu.map(|c| c.as_secs_f64()),
                "window_s": r.window.as_secs_f64(),
                "schedule_delay": r.schedule_delay.map(|d| serde_json::json!({
                    "count": d.count, "mean_ms": d.mean * 1e3, "p99_upper_bound_ms": d.upper_bound * 1e3,
                })),
                "stalls": r.stalls.as_ref().map(|s| serde_json::json!({
                    "total": s.total,
                    "culprit": s.culprit.as_ref().map(|c| serde_json::json!({
                        "call": c.call, "stalls": c.stalls, "cause": c.cause,
                        "frame": c.frame.as_ref().map(|f| serde_json::json!({
                            "function": f.function, "file": f.file, "line": f.line,
                        })),
                    })),
                    "kept": s.kept.iter().map(|e| serde_json::json!({
                        "at_s": e.at.as_secs_f64(), "length_ms": e.length.as_secs_f64() * 1e3, "ongoing": e.ongoing,
                        "call": e.call, "cause": e.cause, "runtime": e.runtime,
                        "frame": e.frame.as_ref().map(|f| f.full()),
                    })).collect::<Vec<_>>(),
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
            "- heavy jobs: `{}` through the gateway, {} in flight (closed loop), {:.2} ms of one core each at start-up \
             (ideal {:.0} jobs/s); each round's ideal is cores ÷ its job time, the least of that, the round's fastest \
             one-thread job and compute's CPU per job",
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
                "## How the gateway waits for compute\n\nOn a gateway of its own: {}. The same heavy jobs, in `RAYON` so \
                 compute is never the problem; the gateway waits for compute in each `upstream_wait` style; probes are \
                 `Factorial(20)` through the gateway awaited the right way, and health checks go to the gateway itself.\n",
                self.wait_gateway()
            );
            md.push_str(&self.markdown_rows("upstream wait", &waits));
            let _ = writeln!(md, "\n![gateway probe latency per upstream-wait style](upstream_wait_latency.svg)\n");
        }
        let _ = writeln!(md, "## Where the time went\n\n{}", self.attribution_markdown());
        md.push_str(&self.stalls_markdown());
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
