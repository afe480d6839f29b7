//! The reliability scenarios, each a function that runs a fault or an abuse against a real [`Cluster`] and
//! returns what it observed. They assert nothing: the integration tests run them small and assert the invariants
//! (nothing lost, statuses right, memory bounded), `offload-bench reliability` runs them full size and reports.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use offload_compute::{
    adaptive::best_of,
    kernel::{Cancel, Parallelism, sum_of_squares},
};
use offload_proto::{
    service_names,
    v1::{ExecMode, FactorialRequest, SumOfSquaresRequest},
};
use tokio::time::Instant;
use tonic::Code;

use super::cluster::{Cluster, Launcher};
use crate::{
    call::{Call, Caller},
    child::Memory,
    recording::Recording,
    runner::{self, Plan},
    scrape,
};

/// Connections the load is spread over (as several clients would).
const CONNECTIONS: usize = 4;
/// The deadline of a steady-load call: far above any job, so only a lost call fails it.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// One call as a scenario saw it.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When it was sent, from the start of the load.
    pub sent: Duration,
    pub latency: Duration,
    /// Its status.
    pub code: Code,
    /// The replica that served it (empty unless OK).
    pub served_by: String,
    /// Replicas the gateway tried (1, or 2 after a retry).
    pub attempts: u32,
}

/// The samples as a recording (latency and statuses).
pub fn recording_of<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Recording {
    let mut recording = Recording::new();
    for s in samples {
        let outcome = if s.code == Code::Ok { Ok(()) } else { Err(tonic::Status::new(s.code, "")) };
        recording.record(s.latency, outcome);
    }
    recording
}

/// A sum of squares through the gateway, in `RAYON`, sized to about `job_ms` of one core on this machine.
pub fn job_of(job_ms: f64) -> Call {
    let probe = 1u64 << 22;
    let never = Cancel::never();
    let t = best_of(3, || sum_of_squares::sum_of_squares(probe, Parallelism::Serial, &never));
    let n = (job_ms * 1e6 / (t.as_nanos() as f64 / probe as f64)).max(1.0) as u64;
    Call::GatewaySumOfSquares(SumOfSquaresRequest { n, mode: ExecMode::Rayon as i32, ..Default::default() })
}

/// Open-loop load of `call` at `rps` for `duration` against `url`, every call recorded. Spawned: the scenario
/// injects its fault meanwhile.
async fn load(
    url: &str,
    call: Call,
    rps: f64,
    duration: Duration,
    timeout: Duration,
) -> anyhow::Result<tokio::task::JoinHandle<Vec<Sample>>> {
    let mut callers = Vec::new();
    for _ in 0..CONNECTIONS {
        callers.push(Caller::connect(url).await?);
    }
    let samples = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let sink = Arc::clone(&samples);
    let call = Arc::new(call);
    let invoke = move |worker: usize| {
        let mut caller = callers[worker % CONNECTIONS].clone();
        let (sink, call) = (Arc::clone(&sink), Arc::clone(&call));
        async move {
            let sent = Instant::now();
            let reply = caller.call_reporting(&call, Some(timeout)).await;
            let latency = sent.elapsed();
            let (code, served_by, attempts) = match &reply {
                Ok(execution) => {
                    let execution = execution.clone().unwrap_or_default();
                    (Code::Ok, execution.served_by, execution.upstream_attempts)
                }
                Err(status) => (status.code(), String::new(), 0),
            };
            let sample = Sample { sent: sent - start, latency, code, served_by, attempts };
            sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(sample);
            reply.map(drop)
        }
    };
    let plan = Plan { concurrency: 4096, total: None, duration: Some(duration), rps: Some(rps) };
    Ok(tokio::spawn(async move {
        runner::run(plan, invoke, None).await;
        std::mem::take(&mut *samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }))
}

/// Sleeps until `at` after `start`.
async fn at(start: Instant, offset: Duration) {
    tokio::time::sleep_until(start + offset).await;
}

/// Calls served per replica.
fn served_by(samples: &[Sample]) -> BTreeMap<String, u64> {
    let mut served = BTreeMap::new();
    for s in samples.iter().filter(|s| s.code == Code::Ok) {
        *served.entry(s.served_by.clone()).or_default() += 1;
    }
    served
}

/// Settings shared by the load-under-fault scenarios.
#[derive(Debug, Clone, Copy)]
pub struct Steady {
    pub replicas: usize,
    pub rps: f64,
    pub duration: Duration,
    /// One job's cost, in ms of one core.
    pub job_ms: f64,
}

/// What [`replica_loss`] saw.
#[derive(Debug)]
pub struct ReplicaLoss {
    pub samples: Vec<Sample>,
    pub killed: String,
    pub killed_at: Duration,
    pub restarted_at: Duration,
    /// Calls the gateway had to retry on another replica.
    pub retried: u64,
    /// From the kill to the send time of the last call the gateway still tried on the dead replica.
    pub routed_to_dead_for: Duration,
    /// From the restart to the first call the restarted replica served.
    pub back_in_rotation_after: Option<Duration>,
    pub served_by: BTreeMap<String, u64>,
}

/// Steady open-loop load through the gateway; one replica is SIGKILLed a third of the way in and started again
/// (same address) at two thirds.
pub async fn replica_loss(launcher: Launcher, plan: Steady) -> anyhow::Result<ReplicaLoss> {
    let mut cluster = Cluster::start(launcher, plan.replicas, &[], &[]).await?;
    let victim = plan.replicas / 2;
    let running = load(&cluster.url(), job_of(plan.job_ms), plan.rps, plan.duration, CALL_TIMEOUT).await?;
    let start = Instant::now();
    at(start, plan.duration / 3).await;
    // Kill it while it is serving (its in-flight gauge above zero, polled for at most a second): the calls it
    // had must be the gateway's to save.
    let metrics = cluster.replicas[victim].process.as_ref().and_then(|p| p.metrics_addr);
    let busy = Instant::now();
    while let Some(addr) = metrics
        && busy.elapsed() < Duration::from_secs(1)
    {
        let in_flight = tokio::task::block_in_place(|| scrape::scrape(addr))
            .ok()
            .and_then(|s| scrape::value(&s, "offload_in_flight", &[]));
        if in_flight.is_some_and(|n| n >= 1.0) {
            break;
        }
    }
    let killed_at = start.elapsed();
    tokio::task::block_in_place(|| cluster.kill(victim));
    at(start, plan.duration * 2 / 3).await;
    let restarted_at = start.elapsed();
    tokio::task::block_in_place(|| cluster.restart(victim))?;
    let samples = running.await?;
    let killed = cluster.replicas[victim].id.clone();
    let retried = samples.iter().filter(|s| s.attempts > 1).count() as u64;
    let routed_to_dead_for = samples
        .iter()
        .filter(|s| s.attempts > 1 && s.sent >= killed_at)
        .map(|s| s.sent - killed_at)
        .max()
        .unwrap_or_default();
    let back_in_rotation_after = samples
        .iter()
        .filter(|s| s.served_by == killed && s.sent >= restarted_at)
        .map(|s| s.sent + s.latency - restarted_at)
        .min();
    let served_by = served_by(&samples);
    tokio::task::block_in_place(|| cluster.stop());
    Ok(ReplicaLoss {
        samples,
        killed,
        killed_at,
        restarted_at,
        retried,
        routed_to_dead_for,
        back_in_rotation_after,
        served_by,
    })
}

/// One replica's turn in [`rolling_restart`].
#[derive(Debug, Clone)]
pub struct Restart {
    pub id: String,
    /// Its exit code after SIGTERM (`None`: it had to be killed after the grace period).
    pub exit_code: Option<i32>,
    /// From SIGTERM to exit.
    pub exited_after: Duration,
    /// From its restart to serving a call through the gateway.
    pub back_in_rotation_after: Duration,
}

/// What [`rolling_restart`] saw.
#[derive(Debug)]
pub struct RollingRestart {
    pub samples: Vec<Sample>,
    pub restarts: Vec<Restart>,
    pub retried: u64,
    pub grace: Duration,
}

/// Steady load while each replica in turn gets SIGTERM (drain), exits, and is started again.
pub async fn rolling_restart(launcher: Launcher, plan: Steady) -> anyhow::Result<RollingRestart> {
    let grace = Duration::from_secs(5);
    let drain = format!("{}ms", grace.as_millis() * 4 / 5);
    let mut cluster = Cluster::start(launcher, plan.replicas, &["--drain-timeout", &drain], &[]).await?;
    let running = load(&cluster.url(), job_of(plan.job_ms), plan.rps, plan.duration, CALL_TIMEOUT).await?;
    let start = Instant::now();
    let step = plan.duration / (plan.replicas as u32 + 1);
    let mut restarts = Vec::new();
    for i in 0..plan.replicas {
        at(start, step * (i as u32 + 1) - step / 2).await;
        let (exit_code, exited_after) = tokio::task::block_in_place(|| cluster.terminate(i, grace));
        tokio::task::block_in_place(|| cluster.restart(i))?;
        let back_in_rotation_after = cluster.wait_in_rotation(i, Duration::from_secs(30)).await?;
        restarts.push(Restart { id: cluster.replicas[i].id.clone(), exit_code, exited_after, back_in_rotation_after });
    }
    let samples = running.await?;
    let retried = samples.iter().filter(|s| s.attempts > 1).count() as u64;
    tokio::task::block_in_place(|| cluster.stop());
    Ok(RollingRestart { samples, restarts, retried, grace })
}

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

/// Settings of [`deadlines`].
#[derive(Debug, Clone, Copy)]
pub struct DeadlinePlan {
    pub replicas: usize,
    pub requests: usize,
    /// Sent together, then the next wave once the CPU is free again.
    pub wave: usize,
    pub deadline: Duration,
    /// Each job's cost, in ms of one core: many times the deadline.
    pub job_ms: f64,
}

/// What [`deadlines`] saw.
#[derive(Debug)]
pub struct Deadlines {
    pub samples: Vec<Sample>,
    pub deadline: Duration,
    /// Per wave: from the deadline to the replicas' CPU time no longer growing (10 ms ticks, sampled every 20 ms).
    pub cpu_freed_after: Vec<Duration>,
    /// CPU the replicas used during the waves, and what the jobs would have cost had they run to the end.
    pub cpu_used: Duration,
    pub cpu_if_uncancelled: Duration,
}

/// Long jobs with short deadlines, in waves: each call must end at its deadline and its job must stop.
pub async fn deadlines(launcher: Launcher, plan: DeadlinePlan) -> anyhow::Result<Deadlines> {
    let cluster = Cluster::start(launcher, plan.replicas, &[], &[]).await?;
    let job = job_of(plan.job_ms);
    let mut callers = Vec::new();
    for _ in 0..plan.wave {
        callers.push(Caller::connect(&cluster.url()).await?);
    }
    let mut samples = Vec::new();
    let mut cpu_freed_after = Vec::new();
    let start = Instant::now();
    let cpu_before = cluster.compute_cpu();
    for wave in 0..plan.requests.div_ceil(plan.wave) {
        let count = plan.wave.min(plan.requests - wave * plan.wave);
        let sent = Instant::now();
        let calls: Vec<_> = callers[..count]
            .iter()
            .map(|caller| {
                let (mut caller, job) = (caller.clone(), job.clone());
                tokio::spawn(async move {
                    let sent = Instant::now();
                    let code = caller.call(&job, Some(plan.deadline)).await.map_or_else(|s| s.code(), |()| Code::Ok);
                    (sent, sent.elapsed(), code)
                })
            })
            .collect();
        for call in calls {
            let (at, latency, code) = call.await?;
            samples.push(Sample { sent: at - start, latency, code, served_by: String::new(), attempts: 0 });
        }
        // From the deadline, watch the CPU until it stops growing.
        let expired = sent + plan.deadline;
        let mut last = cluster.compute_cpu();
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = cluster.compute_cpu();
            // One 10 ms tick in 20 ms is background (the scheduling probe, health streams), not a job.
            if now.saturating_sub(last) <= Duration::from_millis(10) {
                cpu_freed_after.push(Instant::now().saturating_duration_since(expired));
                break;
            }
            last = now;
            if expired.elapsed() > Duration::from_secs(60) {
                anyhow::bail!("the replicas' CPU never stopped growing after a deadline");
            }
        }
    }
    let cpu_used = cluster.compute_cpu().saturating_sub(cpu_before);
    let cpu_if_uncancelled = Duration::from_secs_f64(plan.job_ms / 1e3) * plan.requests as u32;
    tokio::task::block_in_place(|| cluster.stop());
    Ok(Deadlines { samples, deadline: plan.deadline, cpu_freed_after, cpu_used, cpu_if_uncancelled })
}

/// Settings of [`soak`].
#[derive(Debug, Clone, Copy)]
pub struct SoakPlan {
    pub replicas: usize,
    pub requests: u64,
    pub concurrency: usize,
    /// Memory and descriptors are read this many times, evenly.
    pub checkpoints: u64,
}

/// Memory and descriptors after some calls.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub calls: u64,
    pub memory: Vec<(String, Memory)>,
    pub fds: Vec<(String, usize)>,
}

/// What [`soak`] saw.
#[derive(Debug)]
pub struct Soak {
    pub recording: Recording,
    /// Before the first call, then after each slice.
    pub checkpoints: Vec<Checkpoint>,
}

/// Many small calls (`Factorial(20)` through the gateway), closed loop; memory and descriptors read as they go.
pub async fn soak(launcher: Launcher, plan: SoakPlan) -> anyhow::Result<Soak> {
    let cluster = Cluster::start(launcher, plan.replicas, &[], &[]).await?;
    let mut callers = Vec::new();
    for _ in 0..CONNECTIONS {
        callers.push(Caller::connect(&cluster.url()).await?);
    }
    let callers = Arc::new(callers);
    let call = Call::GatewayFactorial(FactorialRequest { n: 20, mode: ExecMode::Inline as i32, ..Default::default() });
    let checkpoint = |calls| Checkpoint { calls, memory: cluster.memory(), fds: cluster.open_fds() };
    let mut checkpoints = vec![checkpoint(0)];
    let mut recording = Recording::new();
    let slice = plan.requests.div_ceil(plan.checkpoints.max(1));
    let mut done = 0;
    while done < plan.requests {
        let count = slice.min(plan.requests - done);
        let slice_plan = Plan { concurrency: plan.concurrency, total: Some(count), duration: None, rps: None };
        let (callers, call) = (Arc::clone(&callers), call.clone());
        let part = runner::run(
            slice_plan,
            move |worker| {
                let (mut caller, call) = (callers[worker % CONNECTIONS].clone(), call.clone());
                async move { caller.call(&call, Some(CALL_TIMEOUT)).await }
            },
            None,
        )
        .await;
        done += count;
        recording.elapsed += part.elapsed;
        let elapsed = recording.elapsed;
        recording.merge(&part);
        recording.elapsed = elapsed;
        checkpoints.push(checkpoint(done));
    }
    tokio::task::block_in_place(|| cluster.stop());
    Ok(Soak { recording, checkpoints })
}
