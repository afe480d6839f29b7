//! Many small calls: memory and descriptors must stay flat.

use std::sync::Arc;

use offload_proto::v1::{ExecMode, FactorialRequest};

use super::sampling::{CALL_TIMEOUT, CONNECTIONS};
use offload_loadgen::{
    call::{Call, Caller},
    recording::Recording,
    runner::{self, Plan},
};
use offload_testkit::{
    child::Memory,
    cluster::{Cluster, Launcher},
};

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
