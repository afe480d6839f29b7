//! `offload-bench`: `load` (ghz-like load test), `compare` (the main job), `kernels` (kernel speed), `reliability`
//! (faults, overload, soak), and the
//! hidden `compute` / `gateway` subcommands `compare` uses to run the servers as child processes.

use clap::{Parser, Subcommand};
use offload_bench::{compare, kernels, load};

/// Load generator and execution-mode comparison for offload.
#[derive(Debug, Parser)]
#[command(name = "offload-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the same mixed load against every execution mode and report what blocking costs (the main job).
    Compare(compare::CompareArgs),
    /// One load test against any offload endpoint, with ghz's flags and JSON report.
    Load(load::LoadArgs),
    /// Kernel and offload-hop speed, in-process, as ratios measured in one run.
    Kernels(kernels::KernelArgs),
    /// Replica loss, rolling restart, overload, deadlines and a soak against a gateway and several replicas.
    Reliability(offload_bench::reliability::ReliabilityArgs),
    /// Run the compute server (what `compare` starts as a child process).
    #[command(hide = true)]
    Compute(offload_compute::Config),
    /// Run the gateway (what `compare` starts as a child process).
    #[command(hide = true)]
    Gateway(offload_gateway::Config),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Compute(config) => {
            let _telemetry = offload_telemetry::init("offload-compute", config.log_format)?;
            offload_compute::serve_blocking(config)
        }
        Command::Gateway(config) => {
            let _telemetry = offload_telemetry::init("offload-gateway", config.log_format)?;
            offload_gateway::serve_blocking(config)
        }
        Command::Kernels(args) => kernels::run(&args),
        Command::Load(args) => client_runtime()?.block_on(load::run(args)),
        Command::Compare(args) => client_runtime()?.block_on(compare::run(args)),
        Command::Reliability(args) => client_runtime()?.block_on(offload_bench::reliability::run(args)),
    }
}

/// The load generator's own runtime: multi-thread, as many workers as cores, like any production client.
fn client_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("bench-client").build()
}
