//! Ten times the capacity: refused fast, memory bounded, probes fast, recovered at once.

use std::time::Duration;

use offload_proto::service_names;

use super::sampling::{CALL_TIMEOUT, Sample, job_of, load};
use crate::{
    call::{Call, Caller},
    child::Memory,
    recording::Recording,
    reliability::cluster::{Cluster, Launcher},
    runner::{self, Plan},
};

/// Settings of [`overload`].
#[derive(Debug, Clone, Copy)]
pub struct OverloadPlan {
    pub replicas: usize,
    /// Offered load, as a multiple of the measured capacity.
    pub factor: f64,
    pub duration: Duration,
    pub job_ms: f64,
    /// Each replica's `--max-inflight`.
    pub max_inflight: usize,
}

/// What [`overload`] saw.
#[derive(Debug)]
pub struct Overload {
    /// Calls per second served closed-loop at saturation, before the overload.
    pub capacity_rps: f64,
    pub offered_rps: f64,
    /// Light load (half the capacity) before, during-overload samples, and light load after.
    pub before: Vec<Sample>,
    pub during: Vec<Sample>,
    pub after: Vec<Sample>,
    /// Health checks straight to a replica, at a fixed rate, before and during the overload.
    pub probes_before: Recording,
    pub probes_during: Recording,
    /// Peak resident memory of every process over the whole scenario.
    pub peak_memory: Vec<(String, Memory)>,
    /// Whether every process was still running at the end.
    pub all_running: bool,
}

/// Offers `factor` × capacity for `duration`: the excess must be refused fast with `RESOURCE_EXHAUSTED`, admitted
/// calls keep their latency, probes stay fast, memory stays bounded, and light load afterwards is served at once.
pub async fn overload(launcher: Launcher, plan: OverloadPlan) -> anyhow::Result<Overload> {
    let max_inflight = plan.max_inflight.to_string();
    let mut cluster = Cluster::start(launcher, plan.replicas, &["--max-inflight", &max_inflight], &[]).await?;
    let job = job_of(plan.job_ms);
    // Capacity: closed loop with half as many calls in flight as the replicas admit together: enough to keep
    // the pools busy, few enough that balancing never pushes one replica over its limit (a refused call in a
    // closed loop comes straight back and burns the CPU being measured).
    let caller = Caller::connect(&cluster.url()).await?;
    let saturate = Plan {
        concurrency: (plan.replicas * plan.max_inflight / 2).max(1),
        total: None,
        duration: Some(Duration::from_secs(2)),
        rps: None,
    };
    let probe_call = job.clone();
    let capacity = runner::run(
        saturate,
        move |_| {
            let (mut caller, call) = (caller.clone(), probe_call.clone());
            async move { caller.call(&call, Some(CALL_TIMEOUT)).await }
        },
        None,
    )
    .await;
    let capacity_rps = capacity.ok_rps().max(1.0);
    let light = Duration::from_secs(2);
    let probe_url = format!("http://{}", cluster.replicas[0].addr);

    let probes = probe(&probe_url, light).await?;
    let before = load(&cluster.url(), job.clone(), capacity_rps / 2.0, light, CALL_TIMEOUT).await?.await?;
    let probes_before = probes.await?;

    let offered_rps = capacity_rps * plan.factor;
    let probes = probe(&probe_url, plan.duration).await?;
    let during = load(&cluster.url(), job.clone(), offered_rps, plan.duration, CALL_TIMEOUT).await?.await?;
    let probes_during = probes.await?;

    let after = load(&cluster.url(), job, capacity_rps / 2.0, light, CALL_TIMEOUT).await?.await?;
    let peak_memory = cluster.memory();
    let all_running = cluster.all_running();
    tokio::task::block_in_place(|| cluster.stop());
    Ok(Overload {
        capacity_rps,
        offered_rps,
        before,
        during,
        after,
        probes_before,
        probes_during,
        peak_memory,
        all_running,
    })
}

/// Health checks straight to `url` at 50 per second for `duration`.
async fn probe(url: &str, duration: Duration) -> anyhow::Result<tokio::task::JoinHandle<Recording>> {
    let caller = Caller::connect(url).await?;
    let check = Call::HealthCheck(service_names::COMPUTE.to_owned());
    let plan = Plan { concurrency: 256, total: None, duration: Some(duration), rps: Some(50.0) };
    Ok(tokio::spawn(runner::run(
        plan,
        move |_| {
            let (mut caller, check) = (caller.clone(), check.clone());
            async move { caller.call(&check, Some(Duration::from_secs(5))).await }
        },
        None,
    )))
}
