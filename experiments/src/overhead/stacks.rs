//! The gateway's client code priced against the alternatives in one run (`--client-stacks`): its own unary client
//! on its own HTTP/2 connection, tonic's generated client on that connection, and tonic's generated client on
//! hyper's HTTP/2 client connection (the gateway's hidden `--compute-client-stack`). A gateway of each kind runs in
//! front of the same compute; each round loads every one in turn under each shape (one busy connection, sixteen),
//! the order rotated from round to round, and reads the CPU each gateway and compute spent per call from `/proc`.
//! The ratios are the rules the client code is kept by (docs/decisions): the gateway's own client must cost at
//! least 10 % less CPU per call than tonic's to stay, and of two connections the one that is less of our code
//! stays if it is within 5 % of the other's speed.

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::Context;
use offload_testkit::{
    child::{ChildServer, cpu_time_of},
    cluster::Launcher,
};

use super::{
    h2load::{H2load, Load},
    servers::{self, Servers, Target},
};

/// The stacks compared (`--compute-client-stack` values): the first is the gateway's own, the reference.
pub const STACKS: [&str; 3] = ["unary-own", "tonic-own", "tonic-hyper"];

/// One stack under one shape in one round.
#[derive(Debug, Clone)]
pub struct StackRun {
    pub stack: &'static str,
    pub load: Load,
    pub round: usize,
    pub throughput: f64,
    /// µs of CPU per succeeded call: the gateway's, and compute's behind it.
    pub gateway_us: f64,
    pub compute_us: f64,
}

/// Runs a gateway of each stack in front of `servers`' compute and loads each under each of `shapes`, `rounds`
/// times.
pub async fn measure(
    h2load: &H2load,
    servers: &Servers,
    shapes: &[Load],
    rounds: usize,
    warmup: Duration,
    extra_gateway: &[String],
    scratch: &Path,
) -> anyhow::Result<Vec<StackRun>> {
    let body = scratch.join("request.bin");
    let launcher = Launcher::this_executable()?;
    let mut gateways = Vec::new();
    for stack in STACKS {
        let mut command = launcher.gateway(&["--listen", "127.0.0.1:0", "--compute-client-stack", stack]);
        let extra = extra_gateway.iter().filter(|a| !a.starts_with("--compute-client-stack"));
        command.args(["--compute", &servers.compute.url()]).args(extra);
        let gateway = ChildServer::start(command).with_context(|| format!("cannot start a {stack} gateway"))?;
        servers::wait_answering(&gateway.url(), Target::Gateway).await?;
        gateways.push((stack, gateway));
    }
    let mut runs = Vec::new();
    let outcome = (|| -> anyhow::Result<()> {
        for round in 0..rounds.max(1) {
            eprintln!("client stacks: round {} of {}", round + 1, rounds.max(1));
            for load in shapes {
                for turn in 0..gateways.len() {
                    // Each round starts with the next stack, so none is always measured first or last.
                    let (stack, gateway) = &gateways[(round + turn) % gateways.len()];
                    let url = format!("{}/offload.v1.Gateway/Factorial", gateway.url());
                    h2load.run(&url, &body, Load { duration: warmup, ..*load }, scratch)?;
                    let pids = [gateway.pid(), servers.compute.pid()];
                    let before = pids.map(|pid| cpu_time_of(pid).unwrap_or_default());
                    let outcome = h2load.run(&url, &body, *load, scratch)?;
                    let after = pids.map(|pid| cpu_time_of(pid).unwrap_or_default());
                    if outcome.failed > 0 {
                        eprintln!("warning: {} calls through the {stack} gateway failed", outcome.failed);
                    }
                    let per_call = |i: usize| {
                        after[i].saturating_sub(before[i]).as_secs_f64() * 1e6 / outcome.succeeded.max(1) as f64
                    };
                    runs.push(StackRun {
                        stack,
                        load: *load,
                        round,
                        throughput: outcome.throughput,
                        gateway_us: per_call(0),
                        compute_us: per_call(1),
                    });
                }
            }
        }
        Ok(())
    })();
    for (stack, gateway) in gateways {
        if gateway.stop(Duration::from_secs(20)) != Some(0) {
            eprintln!("warning: the {stack} gateway did not exit cleanly");
        }
    }
    outcome.map(|()| runs)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The table: each stack and shape's medians over the rounds, then the ratios the rules are stated on, per round
/// and as the median.
pub fn table(runs: &[StackRun]) -> String {
    let mut text =
        String::from("\nthe gateway's client stacks, in front of the same compute (medians over the rounds)\n");
    let _ =
        writeln!(text, "{:<12} {:>7} {:>10} {:>14} {:>14}", "stack", "shape", "calls/s", "gateway µs", "compute µs");
    let mut shapes: Vec<Load> = Vec::new();
    for run in runs {
        if !shapes.iter().any(|s| s.connections == run.load.connections && s.streams == run.load.streams) {
            shapes.push(run.load);
        }
    }
    let of = |stack: &'static str, shape: Load| {
        runs.iter().filter(move |r| {
            r.stack == stack && r.load.connections == shape.connections && r.load.streams == shape.streams
        })
    };
    for shape in &shapes {
        for stack in STACKS {
            let _ = writeln!(
                text,
                "{:<12} {:>7} {:>10.0} {:>14.1} {:>14.1}",
                stack,
                format!("{}×{}", shape.connections, shape.streams),
                median(of(stack, *shape).map(|r| r.throughput).collect()),
                median(of(stack, *shape).map(|r| r.gateway_us).collect()),
                median(of(stack, *shape).map(|r| r.compute_us).collect()),
            );
        }
    }
    let _ = writeln!(text, "\n{:<44} {:>7} {:>7}  per round", "ratio", "shape", "median");
    let ratios: [(&str, &'static str, &'static str, fn(&StackRun) -> f64); 3] = [
        ("gateway CPU/call, unary-own ÷ tonic-own", "unary-own", "tonic-own", |r| r.gateway_us),
        ("gateway CPU/call, tonic-hyper ÷ tonic-own", "tonic-hyper", "tonic-own", |r| r.gateway_us),
        ("calls/s, tonic-hyper ÷ tonic-own", "tonic-hyper", "tonic-own", |r| r.throughput),
    ];
    for (name, over, under, value) in ratios {
        for shape in &shapes {
            let per_round: Vec<f64> = of(over, *shape)
                .filter_map(|o| of(under, *shape).find(|u| u.round == o.round).map(|u| value(o) / value(u)))
                .collect();
            let listed: Vec<String> = per_round.iter().map(|r| format!("{r:.3}")).collect();
            let _ = writeln!(
                text,
                "{:<44} {:>7} {:>7.3}  {}",
                name,
                format!("{}×{}", shape.connections, shape.streams),
                median(per_round.clone()),
                listed.join(" ")
            );
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stack: &'static str, connections: usize, round: usize, gateway_us: f64) -> StackRun {
        StackRun {
            stack,
            load: Load { connections, streams: 64 / connections, duration: Duration::from_secs(1) },
            round,
            throughput: 10_000.0,
            gateway_us,
            compute_us: 15.0,
        }
    }

    #[test]
    fn the_ratios_pair_each_round_with_itself() {
        let runs = [
            run("unary-own", 16, 0, 20.0),
            run("tonic-own", 16, 0, 25.0),
            run("tonic-hyper", 16, 0, 30.0),
            run("unary-own", 16, 1, 30.0),
            run("tonic-own", 16, 1, 30.0),
            run("tonic-hyper", 16, 1, 30.0),
        ];
        let table = table(&runs);
        let line = |name: &str| table.lines().find(|l| l.starts_with(name)).unwrap_or_default().to_owned();
        assert!(line("gateway CPU/call, unary-own").ends_with("16×4   0.900  0.800 1.000"), "{table}");
        assert!(line("gateway CPU/call, tonic-hyper").ends_with("16×4   1.100  1.200 1.000"), "{table}");
    }
}
