//! `offload-bench reliability`: faults, overload and abuse against a gateway and several compute replicas on
//! loopback, with the figures `docs/reliability.md` publishes. The same scenario functions ([`scenarios`]) run
//! small in the integration tests (`tests/tests/reliability.rs`), which assert the invariants; here they run full
//! size and report.

pub mod cluster;
pub mod scenarios;

use std::{fmt::Write as _, path::PathBuf, time::Duration};

use anyhow::Context;
use clap::Args;
use offload_serve::flags::parse_duration;
use tonic::Code;

use self::{
    cluster::Launcher,
    scenarios::{DeadlinePlan, OverloadPlan, Sample, SoakPlan, Steady, recording_of},
};
use crate::recording::Recording;

/// Options of the reliability run. The defaults take about two minutes on 2 cores.
#[derive(Debug, Clone, Args)]
pub struct ReliabilityArgs {
    /// Scenarios to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "replica-loss,rolling-restart,overload,deadlines,soak")]
    pub scenarios: Vec<String>,
    /// Compute replicas behind the gateway.
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,
    /// Steady load during the replica-loss and rolling-restart scenarios, calls per second.
    #[arg(long, default_value_t = 200.0)]
    pub rps: f64,
    /// One steady-load call's work in the replica-loss and rolling-restart scenarios, ms of one core (a
    /// `SumOfSquares` in `RAYON`): long enough that calls are in flight on the replica that dies.
    #[arg(long, default_value_t = 3.0)]
    pub job_ms: f64,
    /// Length of the replica-loss and rolling-restart scenarios.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Length of the overload.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub overload_duration: Duration,
    /// Offered load in the overload scenario, as a multiple of the measured capacity.
    #[arg(long, default_value_t = 10.0)]
    pub overload_factor: f64,
    /// Calls with short deadlines against long jobs.
    #[arg(long, default_value_t = 100)]
    pub deadline_requests: usize,
    /// Small calls in the soak.
    #[arg(long, default_value_t = 300_000)]
    pub soak_requests: u64,
    /// Where the report goes (`report.md`).
    #[arg(long, default_value = "target/offload-reliability")]
    pub out: PathBuf,
}

/// Runs the chosen scenarios, prints the report and writes it to `--out`.
pub async fn run(args: ReliabilityArgs) -> anyhow::Result<()> {
    let launcher = Launcher::this_executable()?;
    let mut report = String::new();
    let mut summary = vec![["scenario", "offered", "OK", "failed", "statuses"].map(str::to_owned)];
    let steady = Steady { replicas: args.replicas, rps: args.rps, duration: args.duration, job_ms: args.job_ms };
    for scenario in &args.scenarios {
        eprintln!("running {scenario} …");
        match scenario.as_str() {
            "replica-loss" => {
                let r = scenarios::replica_loss(launcher.clone(), steady).await?;
                summary.push(row("replica loss (SIGKILL 1 of N)", &recording_of(&r.samples)));
                section(&mut report, "Replica loss", &r.samples);
                let _ = writeln!(
                    report,
                    "- {} SIGKILLed at {:.1} s and restarted at {:.1} s; calls retried on another replica: {}\n\
                     - gateway still tried the dead replica for {} after the kill\n\
                     - restarted replica served again {} after its restart\n- calls per replica: {:?}\n",
                    r.killed,
                    r.killed_at.as_secs_f64(),
                    r.restarted_at.as_secs_f64(),
                    r.retried,
                    ms(r.routed_to_dead_for),
                    r.back_in_rotation_after.map_or("never".to_owned(), ms),
                    r.served_by
                );
            }
            "rolling-restart" => {
                let r = scenarios::rolling_restart(launcher.clone(), steady).await?;
                summary.push(row("rolling restart (SIGTERM each)", &recording_of(&r.samples)));
                section(&mut report, "Rolling restart", &r.samples);
                let _ =
                    writeln!(report, "- calls retried on another replica: {}; grace period {}", r.retried, ms(r.grace));
                for restart in &r.restarts {
                    let _ = writeln!(
                        report,
                        "- {}: exit code {:?} {} after SIGTERM; serving again {} after restart",
                        restart.id,
                        restart.exit_code,
                        ms(restart.exited_after),
                        ms(restart.back_in_rotation_after)
                    );
                }
                report.push('\n');
            }
            "overload" => {
                let plan = OverloadPlan {
                    replicas: args.replicas,
                    factor: args.overload_factor,
                    duration: args.overload_duration,
                    job_ms: 10.0,
                    max_inflight: 2,
                };
                let r = scenarios::overload(launcher.clone(), plan).await?;
                let during = recording_of(&r.during);
                summary.push(row(&format!("overload ({:.0}× capacity)", args.overload_factor), &during));
                section(&mut report, "Overload", &r.during);
                let ok: Vec<&Sample> = r.during.iter().filter(|s| s.code == Code::Ok).collect();
                let refused: Vec<&Sample> = r.during.iter().filter(|s| s.code == Code::ResourceExhausted).collect();
                let (before, admitted, after) = (recording_of(&r.before), recording_of(ok), recording_of(&r.after));
                let refused = recording_of(refused);
                let _ = writeln!(
                    report,
                    "- capacity {:.0} calls/s (closed loop at saturation); offered {:.0} calls/s for {}\n\
                     - refused with RESOURCE_EXHAUSTED: {} calls, p50 {} p99 {}\n\
                     - admitted calls p50/p99: {} / {} (at half capacity before: {} / {}; after: {} / {}, {} of {} OK)\n\
                     - health probes straight to a replica p50/p99: {} / {} before, {} / {} during ({} of {} OK)\n\
                     - every process still running: {}; peak RSS: {}\n",
                    r.capacity_rps,
                    r.offered_rps,
                    ms(args.overload_duration),
                    refused.count(),
                    ms(refused.percentile(50.0)),
                    ms(refused.percentile(99.0)),
                    ms(admitted.percentile(50.0)),
                    ms(admitted.percentile(99.0)),
                    ms(before.percentile(50.0)),
                    ms(before.percentile(99.0)),
                    ms(after.percentile(50.0)),
                    ms(after.percentile(99.0)),
                    after.ok(),
                    after.count(),
                    ms(r.probes_before.percentile(50.0)),
                    ms(r.probes_before.percentile(99.0)),
                    ms(r.probes_during.percentile(50.0)),
                    ms(r.probes_during.percentile(99.0)),
                    r.probes_during.ok(),
                    r.probes_during.count(),
                    r.all_running,
                    r.peak_memory
                        .iter()
                        .map(|(who, m)| format!("{who} {}", mib(m.peak)))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            "deadlines" => {
                let plan = DeadlinePlan {
                    replicas: args.replicas,
                    requests: args.deadline_requests,
                    wave: 10,
                    deadline: Duration::from_millis(100),
                    job_ms: 2000.0,
                };
                let r = scenarios::deadlines(launcher.clone(), plan).await?;
                let recording = recording_of(&r.samples);
                summary.push(row("deadlines (100 ms vs 2 s jobs)", &recording));
                section(&mut report, "Deadlines", &r.samples);
                let mut freed = Recording::new();
                r.cpu_freed_after.iter().for_each(|d| freed.record(*d, Ok(())));
                let _ = writeln!(
                    report,
                    "- deadline {}; call latency p50 {} max {}\n\
                     - from deadline to the replicas' CPU no longer growing (per wave of 10): p50 {} max {} \
                     (10 ms CPU ticks, sampled every 20 ms)\n\
                     - CPU used {:.2} s for jobs that would have cost {:.0} s uncancelled ({:.2} %)\n",
                    ms(r.deadline),
                    ms(recording.percentile(50.0)),
                    ms(recording.percentile(100.0)),
                    ms(freed.percentile(50.0)),
                    ms(freed.percentile(100.0)),
                    r.cpu_used.as_secs_f64(),
                    r.cpu_if_uncancelled.as_secs_f64(),
                    100.0 * r.cpu_used.as_secs_f64() / r.cpu_if_uncancelled.as_secs_f64()
                );
            }
            "soak" => {
                let plan = SoakPlan {
                    replicas: args.replicas,
                    requests: args.soak_requests,
                    concurrency: 32,
                    checkpoints: 10,
                };
                let r = scenarios::soak(launcher.clone(), plan).await?;
                summary.push(row("soak (Factorial(20))", &r.recording));
                let _ =
                    writeln!(report, "### Soak\n\n{} calls at {:.0} calls/s", r.recording.count(), r.recording.rps());
                let _ = writeln!(report, "\n| after calls | {} |", processes(&r.checkpoints[0].memory));
                let _ = writeln!(report, "|---|{}", "---|".repeat(r.checkpoints[0].memory.len()));
                for c in &r.checkpoints {
                    let cells: Vec<String> = c
                        .memory
                        .iter()
                        .zip(&c.fds)
                        .map(|((_, m), (_, fds))| format!("{} RSS, {fds} fds", mib(m.rss)))
                        .collect();
                    let _ = writeln!(report, "| {} | {} |", c.calls, cells.join(" | "));
                }
                report.push('\n');
            }
            other => anyhow::bail!("unknown scenario {other:?}"),
        }
    }
    let mut table = String::new();
    for (i, row) in summary.iter().enumerate() {
        let _ = writeln!(table, "| {} |", row.join(" | "));
        if i == 0 {
            let _ = writeln!(table, "|{}", "---|".repeat(row.len()));
        }
    }
    let text = format!("{table}\n{report}");
    println!("{text}");
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let path = args.out.join("report.md");
    std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("report written to {}", path.display());
    Ok(())
}

fn row(name: &str, recording: &Recording) -> [String; 5] {
    let statuses = recording.statuses.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
    [
        name.to_owned(),
        recording.count().to_string(),
        recording.ok().to_string(),
        recording.failed().to_string(),
        statuses,
    ]
}

fn section(report: &mut String, title: &str, samples: &[Sample]) {
    let r = recording_of(samples);
    let _ = writeln!(
        report,
        "### {title}\n\n{} calls, {} OK, {} failed; latency p50 {} p99 {} max {}\n",
        r.count(),
        r.ok(),
        r.failed(),
        ms(r.percentile(50.0)),
        ms(r.percentile(99.0)),
        ms(r.percentile(100.0))
    );
}

fn processes(memory: &[(String, crate::child::Memory)]) -> String {
    memory.iter().map(|(who, _)| who.as_str()).collect::<Vec<_>>().join(" | ")
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
