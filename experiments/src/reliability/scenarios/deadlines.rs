//! Short deadlines against long jobs: the calls end at their deadline and the jobs stop.

use std::time::Duration;

use tokio::time::Instant;
use tonic::Code;

use super::sampling::{Sample, job_of};
use offload_loadgen::call::Caller;
use offload_testkit::cluster::{Cluster, Launcher};

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
    let job = job_of(&cluster, plan.job_ms).await?;
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
                    let outcome = caller.call(&job, Some(plan.deadline)).await;
                    let (code, message) =
                        outcome.map_or_else(|s| (s.code(), s.message().to_owned()), |()| (Code::Ok, String::new()));
                    (sent, sent.elapsed(), code, message)
                })
            })
            .collect();
        for call in calls {
            let (at, latency, code, message) = call.await?;
            samples.push(Sample { sent: at - start, latency, code, message, served_by: String::new(), attempts: 0 });
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
