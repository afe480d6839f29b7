//! `offload-bench`: the command line of offload's tools.
//!
//! - `load`: one ghz-compatible load test against any endpoint (`offload-loadgen`).
//! - `merge`: one exact report from the reports of several runs (the shards of a split `load`).
//! - `diff`: did the candidate run get slower than the base? Per percentile, with a confidence interval.
//! - `compare`: the main job: every execution mode under the same mixed load (`offload-experiments`).
//! - `reliability`: faults, overload and a soak against a gateway and several replicas (`offload-experiments`).
//! - `overhead`: where each microsecond of a trivial call goes: a bare tonic echo, compute and the gateway under
//!   the same h2load load (`offload-experiments`).
//! - `stall`: does any gRPC server block its event loop under a given call? (`offload-experiments`).
//!
//! The servers are linked in as the hidden `compute` and `gateway` subcommands, so the experiments can start them
//! as child processes of this one executable: `cargo run -p offload-bench -- compare` builds everything it needs.
//!
//! The command line is this library, the executable only its `main`: the documentation check
//! (`tests/cli/doc_commands.rs`) parses every `offload-bench` command the pages show with this very [`Cli`].

use std::process::ExitCode;

use clap::Subcommand;
use offload_experiments::{compare, overhead, reliability, stall};
use offload_loadgen::{diff, load, merge, threshold};

/// Load generator, execution-mode comparison and reliability experiments for offload.
#[derive(Debug, clap::Parser)]
#[command(name = "offload-bench", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the same mixed load against every execution mode and report what blocking costs (the main job).
    Compare(compare::CompareArgs),
    /// One load test against any gRPC endpoint: ghz's flags, config files (JSON, TOML, YAML) and every ghz
    /// output format (-O summary|pretty|json|csv|html|influx-summary|influx-details|prometheus).
    ///
    /// Where it differs from ghz on purpose: --rps and --load-schedule send open-loop, latency measured from each
    /// call's scheduled send time; reports add p99.9.
    Load(Box<load::LoadArgs>),
    /// One report from the JSON reports of several runs of one method on one target (the shards of a split
    /// run): counts, rps, statuses, errors and every percentile from the merged histograms, exactly as one process
    /// that had recorded every call would report them. --threshold is checked on the merged run (exit code 99).
    Merge(merge::MergeArgs),
    /// Did the candidate run get slower than the base? Per percentile, the change with a bootstrap confidence
    /// interval over the runs' seconds, and a verdict: regression, improvement or no change.
    ///
    /// Exit code 1 on a regression (so a CI job can gate on it), 2 when the reports cannot be compared.
    Diff(diff::DiffArgs),
    /// Replica loss, rolling restart, overload, deadlines and a soak against a gateway and several replicas.
    Reliability(reliability::ReliabilityArgs),
    /// Does this gRPC server block its event loop? Probe latency idle, then under a call, and a verdict.
    ///
    /// The verdict: the server stalls when the loaded probe p99 is at least K times the idle p99 AND at least X
    /// above it (K: --min-ratio, default 10; X: --min-extra, default 10 ms); otherwise it is ok. Either half alone
    /// misfires on a busy machine, a blocked event loop passes both by far; docs/stall.md has the measurements
    /// behind K and X.
    Stall(stall::StallArgs),
    /// Where each microsecond of a trivial call goes: a bare tonic echo server, compute and compute behind the
    /// gateway under the same h2load load; CPU per call per process, same-run ratios beside the project's overhead goals, and
    /// with --profile perf flame graphs and a per-layer table.
    Overhead(overhead::OverheadArgs),
    /// Run the bare tonic echo server (what `overhead` starts as a child process).
    #[command(hide = true)]
    Echo(overhead::EchoArgs),
    /// Run the compute server (what the experiments start as a child process).
    #[command(hide = true)]
    Compute(offload_compute::Config),
    /// Run the gateway (what the experiments start as a child process).
    #[command(hide = true)]
    Gateway(offload_gateway::Config),
}

/// A run whose thresholds failed exits with k6's code, so a CI job fails on it.
fn thresholds_held(held: bool) -> ExitCode {
    if held { ExitCode::SUCCESS } else { ExitCode::from(threshold::FAILED_EXIT_CODE) }
}

/// Runs what the command line asks for; the exit code says whether its thresholds held.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let done = |result: anyhow::Result<()>| result.map(|()| ExitCode::SUCCESS);
    match cli.command {
        Command::Compute(config) => {
            let _telemetry = offload_telemetry::init("offload-compute", config.log_format)?;
            done(offload_compute::serve_blocking(config))
        }
        Command::Gateway(config) => {
            let _telemetry = offload_telemetry::init("offload-gateway", config.log_format)?;
            done(offload_gateway::serve_blocking(config))
        }
        Command::Echo(args) => done(overhead::serve_echo(args)),
        Command::Load(args) => load::run(*args).map(thresholds_held),
        Command::Merge(args) => merge::run(args).map(thresholds_held),
        Command::Diff(args) => match diff::run(args) {
            Ok(regression) => Ok(if regression { ExitCode::FAILURE } else { ExitCode::SUCCESS }),
            // 2, as diff(1): the reports could not be compared (1 means a regression).
            Err(e) => {
                eprintln!("Error: {e:#}");
                Ok(ExitCode::from(2))
            }
        },
        Command::Compare(args) => done(compare::run(args)),
        Command::Reliability(args) => done(reliability::run(args)),
        Command::Stall(args) => done(stall::run(args)),
        Command::Overhead(args) => done(overhead::run(args)),
    }
}
