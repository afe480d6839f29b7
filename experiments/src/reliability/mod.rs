//! `offload-bench reliability`: faults, overload and abuse against a gateway and several compute replicas on
//! loopback, with the figures `docs/reliability.md` publishes. The same scenario functions ([`scenarios`]) run
//! small in this crate's tests (`scenarios::tests`), which assert the invariants; here they run full size and
//! report.

mod report;
pub mod scenarios;

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::Args;
use offload_duration::parse as parse_duration;

use offload_testkit::{cluster::Launcher, fault_proxy::Fault};

use self::{
    report::Report,
    scenarios::{AdmissionPlan, DeadlinePlan, Keepalive, OverloadPlan, SoakPlan, Steady},
};

/// The scenarios `--scenarios` names, known at parse time so a misspelt one is refused before any runs.
const SCENARIOS: [&str; 9] = [
    "replica-loss",
    "rolling-restart",
    "blackhole",
    "slow-link",
    "link-reset",
    "overload",
    "overload-per-replica",
    "deadlines",
    "soak",
];

/// Options of the reliability run. The defaults take about three minutes on 2 cores.
#[derive(Debug, Clone, Args)]
pub struct ReliabilityArgs {
    /// Scenarios to run, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = clap::builder::PossibleValuesParser::new(SCENARIOS),
        default_value = "replica-loss,rolling-restart,blackhole,slow-link,link-reset,overload,overload-per-replica,deadlines,soak"
    )]
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
    /// One-way latency the slow-link scenario adds to one replica's link.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub slow_link_latency: Duration,
    /// Length of the replica-loss, rolling-restart and network-fault scenarios (blackhole, slow-link, link-reset).
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
pub fn run(args: ReliabilityArgs) -> anyhow::Result<()> {
    crate::block_on(reliability(args))
}

async fn reliability(args: ReliabilityArgs) -> anyhow::Result<()> {
    let launcher = Launcher::this_executable()?;
    let mut report = Report::default();
    let steady = Steady { replicas: args.replicas, rps: args.rps, duration: args.duration, job_ms: args.job_ms };
    for scenario in &args.scenarios {
        eprintln!("running {scenario} …");
        match scenario.as_str() {
            "replica-loss" => report.replica_loss(&scenarios::replica_loss(launcher.clone(), steady).await?),
            "rolling-restart" => report.rolling_restart(&scenarios::rolling_restart(launcher.clone(), steady).await?),
            "blackhole" | "slow-link" | "link-reset" => {
                // One replica behind a fault proxy, the gateway at its default keepalive (1 s + 3 s).
                let fault = match scenario.as_str() {
                    "blackhole" => Fault::Blackhole,
                    "slow-link" => Fault::Latency(args.slow_link_latency),
                    _ => Fault::Reset,
                };
                let keepalive = Keepalive { interval: Duration::from_secs(1), timeout: Duration::from_secs(3) };
                let observed = scenarios::network_fault(launcher.clone(), steady, fault, keepalive).await?;
                report.network_fault(scenario, &observed);
            }
            "overload" | "overload-per-replica" => {
                // `overload`: the gateway's adaptive limit (what the README recommends). `overload-per-replica`:
                // two jobs admitted per replica, the gateway relaying refusals: admitted latency is about
                // replicas × 2 × job time / cores, whatever the load before.
                let admission = match scenario.as_str() {
                    "overload" => AdmissionPlan::AdaptiveGateway,
                    _ => AdmissionPlan::PerReplica(2),
                };
                let plan = OverloadPlan {
                    replicas: args.replicas,
                    factor: args.overload_factor,
                    duration: args.overload_duration,
                    job_ms: 10.0,
                    admission,
                };
                report.overload(&scenarios::overload(launcher.clone(), plan).await?, &plan);
            }
            "deadlines" => {
                let plan = DeadlinePlan {
                    replicas: args.replicas,
                    requests: args.deadline_requests,
                    wave: 10,
                    deadline: Duration::from_millis(100),
                    job_ms: 2000.0,
                };
                report.deadlines(&scenarios::deadlines(launcher.clone(), plan).await?);
            }
            "soak" => {
                let plan = SoakPlan {
                    replicas: args.replicas,
                    requests: args.soak_requests,
                    concurrency: 32,
                    checkpoints: 10,
                };
                report.soak(&scenarios::soak(launcher.clone(), plan).await?);
            }
            other => anyhow::bail!("unknown scenario {other:?}"),
        }
    }
    let text = report.render();
    println!("{text}");
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let path = args.out.join("report.md");
    std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("report written to {}", path.display());
    Ok(())
}
