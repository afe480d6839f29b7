//! `offload-bench compare`: the same mixed load against every execution mode, and what each one cost.
//! The defaults take about a minute on 2 cores, the modes table printed after about 35 s.
//!
//! For each mode, fresh compute and gateway processes (this binary's hidden `compute` / `gateway` subcommands,
//! which run exactly the servers' library code) take:
//! - **heavy jobs** through the gateway, closed-loop at a fixed concurrency, in the mode under test, each sized
//!   to ~15 ms of one core (measured first by a compute server running it alone: the "job time");
//! - **light probes**, open-loop at a fixed rate: `Factorial(20)` through the gateway (the seed experiment's
//!   `math.factorial(20)`) and a `grpc.health.v1` check straight to compute. Probes are sent as `INLINE`: their
//!   work is a few nanoseconds, so their latency measures one thing only, how soon the runtime gets to a new
//!   request while heavy work runs.
//!
//! A first "idle" round sends probes alone, the baseline. Then the gateway rounds: the same heavy jobs, always in
//! `RAYON` so compute is never the problem, but with the gateway waiting for compute in each `upstream_wait` style
//! (the seed experiment's `.get()`, `run_in_executor`, `create_task`); the health probe then targets the gateway.
//! Those rounds run a gateway of their own runtime (`--wait-gateway-runtime`, by default one event loop, as the
//! seed's Sanic), so a blocking wait delays every request, as the seed saw; the others run the gateway's default.
//! `--pinned` repeats chosen mode rounds with the load generator confined to one CPU ([`pin`]).
//! Then the price of the extra hop: trivial calls at high concurrency straight to compute and through the gateway.
//! Results go to stdout as tables, each with its verdicts, within 100 columns unless `--wide` ([`terminal`]), with
//! each round's share of ideal against its own job time ([`ideal`]), and to a report folder (raw ghz-shaped JSON
//! per round, SVG charts, `report.md`, and `report.html`, which opens on the probe latency chart, with latency over
//! time), with, for every round, where the probes' and the heavy jobs' time went at p50 and p99 ([`attribution`]), and which
//! calls stalled the servers' runtimes, why and in which function ([`stalls`]), each stall drawn on the round's
//! probe latency chart where it began ([`stall_report`]).

mod attribution;
mod attribution_tables;
mod charts;
#[cfg(test)]
mod fixtures;
mod folder;
mod ideal;
mod output;
mod page;
mod pin;
mod scenario;
mod stall_events;
mod stall_report;
mod stalls;
mod terminal;
mod verdicts;

use std::{path::PathBuf, time::Duration};

use clap::Args;
use offload_duration::parse as parse_duration;
use offload_proto::v1::{ExecMode, UpstreamWait};

use crate::ServerRuntime;

pub use self::{
    scenario::{HeavyJob, Round, RoundResult},
    stalls::Stalls,
};

/// Options of the comparison. The defaults finish in about a minute on 2 cores.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// Measure against an already running gateway instead of starting servers (one round per mode, no restarts,
    /// no CPU accounting).
    #[arg(long)]
    pub gateway: Option<String>,
    /// With --gateway: the compute endpoint for the health probes and the hop comparison.
    #[arg(long)]
    pub compute: Option<String>,
    /// Compute's tokio runtime: `current-thread` reproduces the seed experiment's single event loop.
    #[arg(long, value_enum, default_value_t = ServerRuntime::MultiThread)]
    pub runtime: ServerRuntime,
    /// Modes to compare, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "inline,spawn-task,spawn-blocking,block-in-place,rayon,adaptive"
    )]
    pub modes: Vec<ExecMode>,
    /// Gateway upstream-wait styles to compare (heavy jobs in RAYON, so compute is never the problem),
    /// comma-separated; `none` to skip.
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = wait_or_none,
        default_value = "async,blocking,spawn-blocking,spawn-task"
    )]
    pub waits: Vec<String>,
    /// The gateway's tokio runtime in the mode rounds and the hop comparison (its own default).
    #[arg(long, value_enum, default_value_t = ServerRuntime::ThreadPerCore)]
    pub gateway_runtime: ServerRuntime,
    /// The gateway's tokio runtime in the upstream-wait rounds. `current-thread` (the default) is the seed
    /// experiment's single event loop: a call that blocks it delays every request, the probes' too, which is the
    /// mistake those rounds show. On a thread-per-core gateway the probes' connection may sit on a shard the blocked
    /// calls do not hold, and only the calls sharing a shard with them wait.
    #[arg(long, value_enum, default_value_t = ServerRuntime::CurrentThread)]
    pub wait_gateway_runtime: ServerRuntime,
    /// Measured time per round: eleven rounds by default, so the whole comparison takes about a minute, the modes
    /// table printed after 35 s (800 probes a round at the default rate: a p99 from its 8 slowest). Longer rounds
    /// for a steadier tail.
    #[arg(long, default_value = "4s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Heavy load before each measured round, so pools and connections are warm.
    #[arg(long, default_value = "750ms", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Heavy job kernel: `sum-of-squares` or `factorial`.
    #[arg(long, default_value = "sum-of-squares")]
    pub heavy_method: String,
    /// Heavy job size. Default: sized so that one job takes --job-ms of one core on this machine.
    #[arg(long)]
    pub heavy_n: Option<u64>,
    /// Target single-core time of one heavy job, in milliseconds (used when --heavy-n is not given).
    #[arg(long, default_value_t = 15.0)]
    pub job_ms: f64,
    /// Heavy jobs in flight. Default: twice the cores, enough to occupy every worker.
    #[arg(long)]
    pub heavy_concurrency: Option<usize>,
    /// Probe rate per second (Factorial(20) through the gateway; health checks to compute at the same rate).
    #[arg(long, default_value_t = 200.0)]
    pub probe_rps: f64,
    /// Mode the probes ask for.
    #[arg(long, default_value = "inline")]
    pub probe_mode: ExecMode,
    /// Modes to measure a second time with the load generator's threads confined to one CPU (rounds named
    /// `<mode>+pinned`, beside the default ones), comma-separated; none by default. Shows how much of a round's
    /// tail is the load generator sharing the cores with the servers. Linux only.
    #[arg(long, value_delimiter = ',')]
    pub pinned: Vec<ExecMode>,
    /// Measured time of each side of the hop comparison (0 to skip it).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub hop_duration: Duration,
    /// Concurrency of the hop comparison.
    #[arg(long, default_value_t = 64)]
    pub hop_concurrency: usize,
    /// Where the report folder goes.
    #[arg(long, default_value = "target/offload-report")]
    pub out: PathBuf,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Print every column of the tables (heavy p50/p99, probe p99.9, scheduling delay, errors, CPU per process,
    /// each round's job time, the stalls' top culprit) and where the probes' and heavy jobs' time went. By default
    /// the terminal gets the columns that carry the lesson, within 100 columns; report.md and report.html always
    /// have them all.
    #[arg(long)]
    pub wide: bool,
}

/// One `--waits` value, checked at parse time (a misspelt style is refused before the mode rounds run): a wait
/// style, or `none`.
fn wait_or_none(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() || value == "none" {
        return Ok(value.to_string());
    }
    value.parse::<UpstreamWait>().map(|_| value.to_string()).map_err(|e| e.to_string())
}

/// Runs the comparison and writes its report.
pub fn run(args: CompareArgs) -> anyhow::Result<()> {
    crate::block_on(compare(args))
}

async fn compare(args: CompareArgs) -> anyhow::Result<()> {
    let modes = args.modes.clone();
    let waits = args
        .waits
        .iter()
        .filter(|w| !w.trim().is_empty() && w.trim() != "none")
        .map(|w| w.parse::<UpstreamWait>().map_err(|e| anyhow::anyhow!("--waits: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let probe_mode = args.probe_mode;
    let cores = crate::available_cores();
    let heavy = scenario::HeavyJob::calibrate(&args).await?;
    eprintln!(
        "heavy job: {} — {:.2} ms of one core (measured by compute); ideal throughput on {cores} cores: {:.0} jobs/s \
         (each round's own: cores ÷ the least of this and the job's cost measured in the round)",
        heavy.describe(),
        heavy.job_time.as_secs_f64() * 1e3,
        heavy.ideal_rps(cores)
    );
    let setup = scenario::Setup {
        args: args.clone(),
        heavy,
        probe_mode,
        heavy_concurrency: args.heavy_concurrency.unwrap_or(2 * cores).max(1),
        cores,
    };
    // Each table is printed as soon as its rounds are in: the modes table, the main result, comes first.
    let mut report = output::Comparison::new(&setup);
    report.rounds.push(scenario::run_round(&setup, Round::Idle).await?);
    for mode in modes {
        report.rounds.push(scenario::run_round(&setup, Round::Mode(mode)).await?);
    }
    for &mode in &args.pinned {
        report.rounds.push(scenario::run_round(&setup, Round::Pinned(mode)).await?);
    }
    print!("{}", report.modes_table());
    for wait in waits {
        report.rounds.push(scenario::run_round(&setup, Round::Wait(wait)).await?);
    }
    print!("{}", report.waits_table());
    report.hop = if args.hop_duration.is_zero() { None } else { scenario::hop_price(&setup).await? };
    print!("{}", report.closing());
    report.write_folder(&args.out)?;
    println!("\nreport: {}", args.out.join("report.md").display());
    Ok(())
}
