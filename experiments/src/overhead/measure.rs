//! One measured run: h2load warms a target up, then loads it for the measured time while the CPU time of every
//! process working for the call is read from `/proc` before and after, so each one's cost per call comes out of
//! the same run as the throughput.

use std::{path::Path, time::Duration};

use offload_testkit::child::cpu_time_of;

use super::{
    h2load::{H2load, Load, Outcome},
    servers::{Servers, Target},
};

/// What one run of one target measured.
#[derive(Debug, Clone)]
pub struct Run {
    pub target: Target,
    pub outcome: Outcome,
    /// µs of CPU per succeeded call, per process that works for the call (`echo`, `compute`, `gateway`).
    pub cpu_us_per_call: Vec<(&'static str, f64)>,
}

/// Where the measured part of a run goes and how it is loaded.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub load: Load,
    pub warmup: Duration,
}

/// Warms `target` up, then measures it under `plan.load`. `during` runs just before the measured load starts,
/// after the warm-up (the profiler attaches there), and what it returns is handed back.
pub fn run<T>(
    h2load: &H2load,
    servers: &Servers,
    target: Target,
    plan: Plan,
    scratch: &Path,
    during: impl FnOnce(&Servers) -> T,
) -> anyhow::Result<(Run, T)> {
    let url = servers.url(target);
    let body = scratch.join("request.bin");
    if !plan.warmup.is_zero() {
        h2load.run(&url, &body, Load { duration: plan.warmup, ..plan.load }, scratch)?;
    }
    let processes = servers.processes(target);
    let before: Vec<_> = processes.iter().map(|(_, p)| cpu_time_of(p.pid()).unwrap_or_default()).collect();
    let attached = during(servers);
    let outcome = h2load.run(&url, &body, plan.load, scratch)?;
    let after: Vec<_> = processes.iter().map(|(_, p)| cpu_time_of(p.pid()).unwrap_or_default()).collect();
    let calls = outcome.succeeded.max(1) as f64;
    let cpu_us_per_call = processes
        .iter()
        .zip(before.iter().zip(&after))
        .map(|((name, _), (before, after))| (*name, after.saturating_sub(*before).as_secs_f64() * 1e6 / calls))
        .collect();
    if outcome.failed > 0 {
        eprintln!("warning: {} of the calls to {} failed", outcome.failed, target.label());
    }
    Ok((Run { target, outcome, cpu_us_per_call }, attached))
}
