//! `offload-bench overhead`: where each microsecond of a trivial call goes. A bare tonic echo server (the floor),
//! compute called directly and compute behind the gateway take the same trivial `Factorial(1)` from the same load
//! generator (h2load, C, so the client's own cost is small and equal for all) at the same offered load, in
//! interleaved rounds. Per run: throughput, latency and the CPU each server process spent per call (from
//! `/proc`); per round: the ratios the project's overhead goals ([`crate::goals`]) are set on. Then the gateway on the clients' shapes: one busy
//! connection against sixteen, for each of its runtimes ([`shapes`]). `--profile` then records each server with `perf`
//! during the same load and renders flame graphs and a per-layer table into the report folder.

mod echo;
mod h2load;
mod layers;
mod measure;
mod output;
mod profile;
mod servers;
mod shapes;

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::Args;
use offload_loadgen::duration::parse as parse_duration;
use prost::Message;

pub use self::echo::{EchoArgs, serve_blocking as serve_echo};
use self::{
    h2load::{H2load, Load},
    measure::Plan,
    servers::{Servers, Target},
};

/// Options of the overhead benchmark. The defaults take about a minute and a half on 2 cores.
#[derive(Debug, Clone, Args)]
pub struct OverheadArgs {
    /// Connections h2load opens to each server (the offered load: 16 × 4).
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Streams in flight per connection.
    #[arg(long, default_value_t = 4)]
    pub streams: usize,
    /// Measured time of each throughput run.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Streams in flight on the one connection of the clients'-shapes runs (a channel's usual concurrency), measured
    /// against `--connections` × `--streams` for each gateway runtime.
    #[arg(long, default_value_t = 64)]
    pub one_connection_streams: usize,
    /// Measured time of each one-call-at-a-time run.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub serial_duration: Duration,
    /// Load before each measured run, so connections, pools and caches are warm (not counted).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Rounds: each runs echo, direct and gateway in turn, so the ratios come from neighbouring runs and the
    /// machine's drift shows as their spread. The table gives each row's median.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// After the rounds, record each server with `perf` under the same load and write flame graphs (SVG, via
    /// inferno) and the per-layer table to --out.
    #[arg(long)]
    pub profile: bool,
    /// Where the report folder goes (raw numbers; flame graphs with --profile).
    #[arg(long, default_value = "target/offload-overhead")]
    pub out: PathBuf,
    /// A flag passed on to compute, e.g. `--compute-arg=--workers=1` (repeatable): the cost of a setting,
    /// measured beside the same echo.
    #[arg(long = "compute-arg", value_name = "FLAG", allow_hyphen_values = true)]
    pub compute_args: Vec<String>,
    /// A flag passed on to the gateway, e.g. `--gateway-arg=--stall-threshold=0` (repeatable).
    #[arg(long = "gateway-arg", value_name = "FLAG", allow_hyphen_values = true)]
    pub gateway_args: Vec<String>,
}

/// Runs the benchmark, prints its table and writes the report folder. Skips (with a message, successfully) when
/// h2load cannot be had.
pub fn run(args: OverheadArgs) -> anyhow::Result<()> {
    crate::block_on(overhead(args))
}

async fn overhead(args: OverheadArgs) -> anyhow::Result<()> {
    let h2load = match H2load::find_or_install() {
        Ok(h2load) => h2load,
        Err(e) => {
            eprintln!("SKIPPED: no h2load on this machine ({e:#})");
            return Ok(());
        }
    };
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let scratch = args.out.canonicalize()?;
    let body = grpc_frame(&servers::trivial_request().encode_to_vec());
    std::fs::write(scratch.join("request.bin"), body)?;

    let servers = Servers::start(&args.compute_args, &args.gateway_args).await?;
    let result = measure_all(&args, &h2load, &servers, &scratch);
    let shaped = match &result {
        Ok(_) => {
            let shapes = [
                Load { connections: args.connections, streams: args.streams, duration: args.duration },
                Load { connections: 1, streams: args.one_connection_streams, duration: args.duration },
            ];
            Some(shapes::measure(&h2load, &servers, &shapes, args.warmup, &args.gateway_args, &scratch).await)
        }
        Err(_) => None,
    };
    servers.stop();
    let (report, profiles) = result?;
    print!("{}", report.table());
    if let Some(shaped) = shaped {
        print!("{}", shapes::table(&shaped?));
    }
    let mut written = report.write(&scratch)?;
    if let Some(profiles) = profiles {
        print!("{}", profiles.table());
        written.extend(profiles.written());
    }
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// The rounds, then the profiles if asked for.
fn measure_all(
    args: &OverheadArgs,
    h2load: &H2load,
    servers: &Servers,
    scratch: &std::path::Path,
) -> anyhow::Result<(output::Report, Option<profile::Profiles>)> {
    let parallel = Plan {
        load: Load { connections: args.connections, streams: args.streams, duration: args.duration },
        warmup: args.warmup,
    };
    let serial =
        Plan { load: Load { connections: 1, streams: 1, duration: args.serial_duration }, warmup: args.warmup / 2 };
    let mut rounds = Vec::new();
    for round in 1..=args.rounds.max(1) {
        eprintln!("round {round} of {}", args.rounds.max(1));
        let mut runs = output::Round::default();
        for target in [Target::Echo, Target::Proxy, Target::Direct, Target::Gateway] {
            runs.parallel.push(measure::run(h2load, servers, target, parallel, scratch, |_| ())?.0);
        }
        for target in [Target::Echo, Target::Proxy, Target::Direct, Target::Gateway] {
            runs.serial.push(measure::run(h2load, servers, target, serial, scratch, |_| ())?.0);
        }
        rounds.push(runs);
    }
    let report = output::Report { offered: parallel.load, serial: serial.load, rounds };
    let profiles = if args.profile { profile::record(h2load, servers, parallel, scratch)? } else { None };
    Ok((report, profiles))
}

/// A gRPC length-prefixed message: uncompressed flag, 4-byte big-endian length, the message.
fn grpc_frame(message: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(5 + message.len());
    frame.push(0);
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    frame
}
