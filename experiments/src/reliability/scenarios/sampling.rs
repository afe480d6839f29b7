//! The load the scenarios share: open-loop calls through the gateway, every one recorded with its status, latency,
//! the replica that served it and how many replicas the gateway tried.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use offload_proto::v1::{ExecMode, SumOfSquaresRequest};
use tokio::time::Instant;
use tonic::Code;

use offload_loadgen::{
    call::{Call, Caller},
    recording::Recording,
    runner::{self, Plan},
};
use offload_testkit::{cluster::Cluster, job::JobSizer};

pub(super) const CONNECTIONS: usize = 4;
/// The deadline of a steady-load call: far above any job, so only a lost call fails it.
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// One call as a scenario saw it.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When it was sent, from the start of the load.
    pub sent: Duration,
    pub latency: Duration,
    /// Its status, and the status message when it failed.
    pub code: Code,
    pub message: String,
    /// The replica that served it (empty unless OK).
    pub served_by: String,
    /// Replicas the gateway tried (1, or 2 after a retry).
    pub attempts: u32,
}

/// The samples as a recording (latency and statuses).
pub fn recording_of<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Recording {
    let mut recording = Recording::new();
    for s in samples {
        let outcome = if s.code == Code::Ok { Ok(()) } else { Err(tonic::Status::new(s.code, s.message.clone())) };
        recording.record(s.latency, outcome);
    }
    recording
}

/// A sum of squares through the gateway, in `RAYON`, sized to about `job_ms` of one core by the cluster's first
/// replica.
pub async fn job_of(cluster: &Cluster, job_ms: f64) -> anyhow::Result<Call> {
    let replica = cluster.replicas.first().context("a cluster without replicas")?;
    let n = JobSizer::connect(&format!("http://{}", replica.addr)).await?.sum_of_squares_n(job_ms).await?;
    Ok(Call::GatewaySumOfSquares(SumOfSquaresRequest { n, mode: ExecMode::Rayon as i32, ..Default::default() }))
}

/// Open-loop load of `call` at `rps` for `duration` against `url`, every call recorded. Spawned: the scenario
/// injects its fault meanwhile.
pub(super) async fn load(
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
            let (code, message, served_by, attempts) = match &reply {
                Ok(execution) => {
                    let execution = execution.clone().unwrap_or_default();
                    (Code::Ok, String::new(), execution.served_by, execution.upstream_attempts)
                }
                Err(status) => (status.code(), status.message().to_owned(), String::new(), 0),
            };
            let sample = Sample { sent: sent - start, latency, code, message, served_by, attempts };
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
pub(super) async fn at(start: Instant, offset: Duration) {
    tokio::time::sleep_until(start + offset).await;
}

/// Calls served per replica.
pub(super) fn served_by(samples: &[Sample]) -> BTreeMap<String, u64> {
    let mut served = BTreeMap::new();
    for s in samples.iter().filter(|s| s.code == Code::Ok) {
        *served.entry(s.served_by.clone()).or_default() += 1;
    }
    served
}
