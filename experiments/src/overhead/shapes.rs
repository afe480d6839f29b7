//! The gateway on the shapes clients have: one busy HTTP/2 connection (a grpc-go or tonic channel, an Envoy
//! upstream, a sidecar: `1 × 64` streams) beside the benchmark's sixteen (`16 × 4`), for each runtime the gateway can
//! run. A runtime that pins a connection to one thread serves one connection with one core whatever the machine
//! has; the table shows it as calls/s, and as how many of the gateway's threads did the work (from each thread's
//! on-CPU time in `/proc/PID/task/*/schedstat`, read before and after the measured run).

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::Context;
use offload_testkit::{child::ChildServer, cluster::Launcher};

use super::{
    h2load::{H2load, Load},
    servers::{self, Servers, Target},
};

/// The gateway's runtimes compared (`--runtime`).
const RUNTIMES: [&str; 2] = ["thread-per-core", "multi-thread"];

/// A thread counts as doing the work when it spent at least this share of the gateway's CPU in the run: below it
/// are the admin port's, the watchdog's and the runtimes' idle threads.
const WORKING_SHARE: f64 = 0.10;

/// One gateway runtime under one shape.
#[derive(Debug, Clone)]
pub struct ShapeRun {
    pub runtime: &'static str,
    pub load: Load,
    pub throughput: f64,
    /// µs of the gateway's CPU per succeeded call.
    pub gateway_us_per_call: f64,
    /// The gateway's threads that spent at least [`WORKING_SHARE`] of its CPU, and the busiest one's share.
    pub working_threads: usize,
    pub busiest_share: f64,
    /// The share of calls run on another shard than their connection's (`offload_shard_calls_moved_total`).
    pub moved_share: f64,
}

/// Runs each runtime's gateway, in front of `servers`' compute, under `shapes` (each warmed up first).
pub async fn measure(
    h2load: &H2load,
    servers: &Servers,
    shapes: &[Load],
    warmup: Duration,
    extra_gateway: &[String],
    scratch: &Path,
) -> anyhow::Result<Vec<ShapeRun>> {
    let body = scratch.join("request.bin");
    let mut runs = Vec::new();
    for runtime in RUNTIMES {
        let launcher = Launcher::this_executable()?;
        let local = ["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--runtime", runtime];
        let mut command = launcher.gateway(&local);
        // Every other flag the run passes its gateway, but its own --runtime.
        let extra = extra_gateway.iter().filter(|a| !a.starts_with("--runtime"));
        command.args(["--compute", &servers.compute.url()]).args(extra);
        let gateway = ChildServer::start(command).with_context(|| format!("cannot start a {runtime} gateway"))?;
        let url = format!("{}/offload.v1.Gateway/Factorial", gateway.url());
        servers::wait_answering(&gateway.url(), Target::Gateway).await?;
        for load in shapes {
            h2load.run(&url, &body, Load { duration: warmup, ..*load }, scratch)?;
            let (before, moved_before) = (threads_cpu(gateway.pid()), moved(&gateway));
            let outcome = h2load.run(&url, &body, *load, scratch)?;
            let (after, moved_after) = (threads_cpu(gateway.pid()), moved(&gateway));
            let spent: Vec<f64> = after
                .iter()
                .map(|(tid, ns)| ns.saturating_sub(before.iter().find(|(t, _)| t == tid).map_or(0, |(_, b)| *b)) as f64)
                .collect();
            let total: f64 = spent.iter().sum();
            runs.push(ShapeRun {
                runtime,
                load: *load,
                throughput: outcome.throughput,
                gateway_us_per_call: total / 1e3 / outcome.succeeded.max(1) as f64,
                working_threads: spent.iter().filter(|&&s| total > 0.0 && s / total >= WORKING_SHARE).count(),
                busiest_share: spent.iter().copied().fold(0.0, f64::max) / total.max(1.0),
                moved_share: (moved_after - moved_before) / outcome.succeeded.max(1) as f64,
            });
        }
        if gateway.stop(Duration::from_secs(20)) != Some(0) {
            eprintln!("warning: the {runtime} gateway did not exit cleanly");
        }
    }
    Ok(runs)
}

/// The calls `gateway` has moved between its shards so far (0 if it cannot say).
fn moved(gateway: &ChildServer) -> f64 {
    let scraped = gateway.metrics_addr.and_then(|addr| offload_testkit::scrape::scrape(addr).ok());
    scraped.and_then(|s| offload_testkit::scrape::value(&s, "offload_shard_calls_moved_total", &[])).unwrap_or(0.0)
}

/// Each thread of `pid` and its on-CPU nanoseconds so far.
fn threads_cpu(pid: u32) -> Vec<(String, u64)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten();
    tasks
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            let ns = stat.split_whitespace().next()?.parse().ok()?;
            Some((task.file_name().to_string_lossy().into_owned(), ns))
        })
        .collect()
}

/// The table: one row per runtime and shape, then each runtime's one-connection throughput over its
/// sixteen-connection one.
pub fn table(runs: &[ShapeRun]) -> String {
    let mut text = String::from(
        "\ngateway on the clients' shapes (connections × streams): calls/s, its CPU per call, the threads doing the work\n",
    );
    let _ = writeln!(
        text,
        "{:<16} {:>7} {:>10} {:>10} {:>16} {:>15} {:>12}",
        "runtime", "shape", "calls/s", "µs/call", "threads ≥10% CPU", "busiest thread", "calls moved"
    );
    for run in runs {
        let _ = writeln!(
            text,
            "{:<16} {:>7} {:>10.0} {:>10.1} {:>16} {:>14.0}% {:>11.0}%",
            run.runtime,
            format!("{}×{}", run.load.connections, run.load.streams),
            run.throughput,
            run.gateway_us_per_call,
            run.working_threads,
            run.busiest_share * 100.0,
            run.moved_share * 100.0
        );
    }
    for runtime in RUNTIMES {
        let of = |connections: usize| {
            runs.iter().find(|r| r.runtime == runtime && r.load.connections == connections).map(|r| r.throughput)
        };
        let narrowest = runs.iter().filter(|r| r.runtime == runtime).map(|r| r.load.connections).min();
        let widest = runs.iter().filter(|r| r.runtime == runtime).map(|r| r.load.connections).max();
        if let (Some(n), Some(w)) = (narrowest, widest)
            && n != w
            && let (Some(one), Some(many)) = (of(n), of(w))
        {
            let _ = writeln!(text, "{runtime}: {n} connection(s) ÷ {w}: {:.2}", one / many);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(runtime: &'static str, connections: usize, throughput: f64, working: usize) -> ShapeRun {
        ShapeRun {
            runtime,
            load: Load { connections, streams: 64 / connections.max(1), duration: Duration::from_secs(1) },
            throughput,
            gateway_us_per_call: 20.0,
            working_threads: working,
            busiest_share: 0.5,
            moved_share: 0.0,
        }
    }

    #[test]
    fn the_table_gives_each_runtimes_one_connection_ratio() {
        let table = table(&[
            run("thread-per-core", 16, 30_000.0, 2),
            run("thread-per-core", 1, 15_000.0, 1),
            run("multi-thread", 16, 26_000.0, 2),
            run("multi-thread", 1, 25_000.0, 2),
        ]);
        assert!(table.contains("thread-per-core: 1 connection(s) ÷ 16: 0.50"), "{table}");
        assert!(table.contains("multi-thread: 1 connection(s) ÷ 16: 0.96"), "{table}");
        assert_eq!(table.lines().filter(|l| l.contains("×")).count(), 5, "{table}");
    }

    #[test]
    fn this_process_has_threads_with_cpu_time() {
        let threads = threads_cpu(std::process::id());
        assert!(!threads.is_empty());
        assert!(threads.iter().any(|(_, ns)| *ns > 0));
    }
}
