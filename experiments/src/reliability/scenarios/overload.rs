//! Ten times the capacity: refused fast, memory bounded, probes fast, recovered at once.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use offload_proto::service_names;

use super::sampling::{CALL_TIMEOUT, Sample, job_of, load};
use offload_loadgen::{
    call::{Call, Caller},
    recording::Recording,
    runner::{self, Plan},
};
use offload_testkit::{
    child::Memory,
    cluster::{Cluster, Launcher},
    scrape,
};

/// Settings of [`overload`].
#[derive(Debug, Clone, Copy)]
pub struct OverloadPlan {
    pub replicas: usize,
    /// Offered load, as a multiple of the measured capacity.
    pub factor: f64,
    pub duration: Duration,
    pub job_ms: f64,
    /// Where the excess is refused.
    pub admission: AdmissionPlan,
}

/// Where and how the cluster limits the calls in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmissionPlan {
    /// Each replica admits this many jobs (its `--max-inflight`); the gateway forwards everything and relays
    /// the replicas' refusals. Admitted calls wait behind `replicas × n` jobs sharing the cores.
    PerReplica(usize),
    /// The gateway finds its limit from the latency it sees (`--adaptive-concurrency`) and refuses the excess
    /// itself; replicas keep their default `--max-inflight`.
    AdaptiveGateway,
}

impl AdmissionPlan {
    /// The flags given to every replica and to the gateway.
    fn flags(self) -> (Vec<String>, Vec<String>) {
        match self {
            Self::PerReplica(n) => (vec!["--max-inflight".into(), n.to_string()], Vec::new()),
            Self::AdaptiveGateway => (Vec::new(), vec!["--adaptive-concurrency".into()]),
        }
    }
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
    /// The gateway's `offload_concurrency_limit`, read every 200 ms during the overload.
    pub gateway_limits: Vec<f64>,
    /// The gateway's `offload_concurrency_ideal_latency_seconds` at the same reads (0: not measured, or fixed).
    pub gateway_ideal_latencies: Vec<f64>,
    /// Peak resident memory of every process over the whole scenario.
    pub peak_memory: Vec<(String, Memory)>,
    /// Whether every process was still running at the end.
    pub all_running: bool,
}

/// Offers `factor` × capacity for `duration`: the excess must be refused fast with `RESOURCE_EXHAUSTED`, admitted
/// calls keep their latency, probes stay fast, memory stays bounded, and light load afterwards is served at once.
pub async fn overload(launcher: Launcher, plan: OverloadPlan) -> anyhow::Result<Overload> {
    let (compute_args, gateway_args) = plan.admission.flags();
    let compute_args: Vec<&str> = compute_args.iter().map(String::as_str).collect();
    let gateway_args: Vec<&str> = gateway_args.iter().map(String::as_str).collect();
    let mut cluster = Cluster::start(launcher, plan.replicas, &compute_args, &gateway_args).await?;
    let job = job_of(&cluster, plan.job_ms).await?;
    // Capacity: the replicas' own, the same whoever admits: a closed loop with one call in flight on each replica,
    // straight to it (enough to keep the cores busy, as each job also splits over the pool; within every
    // per-replica limit; and past the gateway, whose adaptive limit would otherwise set the capacity it is
    // measured against).
    let mut callers = Vec::new();
    for replica in &cluster.replicas {
        callers.push(Caller::connect(&format!("http://{}", replica.addr)).await?);
    }
    let saturate = Plan { concurrency: callers.len(), total: None, duration: Some(Duration::from_secs(2)), rps: None };
    let direct = match &job {
        Call::GatewaySumOfSquares(request) => Call::ComputeSumOfSquares(*request),
        other => other.clone(),
    };
    let capacity = runner::run(
        saturate,
        move |worker| {
            let (mut caller, call) = (callers[worker % callers.len()].clone(), direct.clone());
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
    let limits = watch_limit(cluster.gateway.metrics_addr, plan.duration);
    let during = load(&cluster.url(), job.clone(), offered_rps, plan.duration, CALL_TIMEOUT).await?.await?;
    let probes_during = probes.await?;
    let (gateway_limits, gateway_ideal_latencies) = limits.await?.into_iter().unzip();

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
        gateway_limits,
        gateway_ideal_latencies,
        peak_memory,
        all_running,
    })
}

/// The gateway's concurrency limit and ideal latency, scraped from `metrics` every 200 ms for `duration` (nothing
/// without a metrics port, or where a scrape fails).
fn watch_limit(metrics: Option<SocketAddr>, duration: Duration) -> tokio::task::JoinHandle<Vec<(f64, f64)>> {
    tokio::task::spawn_blocking(move || {
        let Some(addr) = metrics else { return Vec::new() };
        let end = Instant::now() + duration;
        let mut reads = Vec::new();
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(200));
            let Ok(metrics) = scrape::scrape(addr) else { continue };
            let value = |name| scrape::value(&metrics, name, &[]);
            if let (Some(limit), Some(ideal)) =
                (value("offload_concurrency_limit"), value("offload_concurrency_ideal_latency_seconds"))
            {
                reads.push((limit, ideal));
            }
        }
        reads
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
