//! Faults under steady load: a replica killed (SIGKILL) and brought back, and a rolling restart (SIGTERM each).

use std::{collections::BTreeMap, time::Duration};

use tokio::time::Instant;

use super::sampling::{CALL_TIMEOUT, Sample, at, job_of, load, served_by};
use offload_testkit::{
    cluster::{Cluster, Launcher},
    scrape,
};

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
    let running =
        load(&cluster.url(), job_of(&cluster, plan.job_ms).await?, plan.rps, plan.duration, CALL_TIMEOUT).await?;
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
    let running =
        load(&cluster.url(), job_of(&cluster, plan.job_ms).await?, plan.rps, plan.duration, CALL_TIMEOUT).await?;
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
