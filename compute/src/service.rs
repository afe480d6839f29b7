//! The `offload.v1.Compute` gRPC service: validate, admit, place, run, report.
//!
//! Admission first (at most `--max-inflight` jobs, the rest shed at once with `RESOURCE_EXHAUSTED`), then cheap
//! validation, placement, and the job itself under the client's deadline.
//!
//! Tracing: the server span (opened by [`offload_telemetry::grpc_trace::ServerTraceLayer`]) gets a `job` child
//! naming the method, `n`, the requested and actual mode and the queue and compute times; the executor adds
//! `queue` and `compute` (on the thread that ran the kernel) under it.

use std::{sync::Arc, time::Instant};

use offload_proto::v1::{
    ExecMode, Execution, FactorialRequest, FactorialResponse, SumOfSquaresRequest, SumOfSquaresResponse,
    compute_server::Compute,
};
use offload_serve::{admission::Admission, deadline};
use offload_telemetry::metrics::Metrics;
use tonic::{Request, Response, Status};
use tracing::{Instrument, field};

use crate::{
    adaptive::CostModel,
    error::Error,
    executor::{Executor, Placement},
    job::{Decimal, Job},
    kernel::{Cancel, Interrupted},
    limits::Limits,
};

/// The compute service. Cheap to clone: tonic clones it per connection.
#[derive(Debug, Clone)]
pub struct ComputeService {
    shared: Arc<Parts>,
}

/// What the service is made of.
#[derive(Debug)]
pub struct Parts {
    pub executor: Executor,
    pub cost_model: CostModel,
    pub limits: Limits,
    /// Never `Unspecified`: what `EXEC_MODE_UNSPECIFIED` means on this server.
    pub default_mode: ExecMode,
    pub instance_id: String,
    /// `--panic-on-n`: fault injection for tests.
    pub panic_on_n: Option<u64>,
    /// `--max-inflight`: jobs admitted at once.
    pub admission: Admission,
    pub metrics: Metrics,
}

impl ComputeService {
    /// A service running jobs on `parts.executor`.
    pub fn new(parts: Parts) -> Self {
        debug_assert_ne!(parts.default_mode, ExecMode::Unspecified);
        Self { shared: Arc::new(parts) }
    }

    /// Runs one request's job end to end.
    async fn execute(&self, job: Job, mode: i32, deadline: Option<Instant>) -> Result<(Decimal, Execution), Status> {
        let shared = &*self.shared;
        let requested = ExecMode::try_from(mode).map_err(|_| Error::UnknownMode(mode))?;
        shared.limits.check(job)?;
        let requested = if requested == ExecMode::Unspecified { shared.default_mode } else { requested };
        let placement = match requested {
            ExecMode::Inline => Placement::Inline,
            ExecMode::SpawnTask => Placement::SpawnTask,
            ExecMode::SpawnBlocking => Placement::SpawnBlocking,
            ExecMode::BlockInPlace => Placement::BlockInPlace,
            ExecMode::Rayon => Placement::Rayon,
            ExecMode::Adaptive | ExecMode::Unspecified => shared.cost_model.placement(job),
        };
        let span = tracing::info_span!(
            "job",
            method = job.method(),
            n = job.n(),
            mode.requested = requested.short_name(),
            mode = mode_of(placement).short_name(),
            queue_us = field::Empty,
            compute_us = field::Empty,
        );
        let panic_on_n = shared.panic_on_n;
        let run = shared
            .executor
            .run(placement, Cancel::new(deadline), move |par, cancel| {
                if panic_on_n == Some(job.n()) {
                    panic!("injected panic: n = {} matches --panic-on-n", job.n());
                }
                job.run(par, cancel)
            })
            .instrument(span.clone());
        // INLINE and BLOCK_IN_PLACE never yield, so this timer cannot fire for them: their kernel checks the same
        // deadline itself. For the other modes the timer answers on time even if the job is between checks.
        let ran = match deadline {
            Some(at) => {
                tokio::time::timeout_at(at.into(), run).await.unwrap_or(Err(Interrupted::DeadlineExceeded.into()))
            }
            None => run.await,
        }
        .map_err(Error::from)?;
        let (queue_us, compute_us) = (ran.queued.as_micros() as u64, ran.computed.as_micros() as u64);
        span.record("queue_us", queue_us);
        span.record("compute_us", compute_us);
        span.in_scope(|| tracing::debug!("job done"));
        let execution = Execution {
            mode: mode_of(placement) as i32,
            queue_us,
            compute_us,
            served_by: shared.instance_id.clone(),
            ..Execution::default()
        };
        Ok((ran.value, execution))
    }
}

impl ComputeService {
    /// Runs `job` and counts it in the request metrics, labelled with the mode it ran in (or, if it failed before
    /// running, the mode it asked for).
    async fn handle(&self, job: Job, mode: i32, deadline: Option<Instant>) -> Result<(Decimal, Execution), Status> {
        let started = Instant::now();
        let result = match self.shared.admission.try_admit("--max-inflight") {
            Ok(_admitted) => self.execute(job, mode, deadline).await,
            Err(refused) => Err(refused),
        };
        let (label, code) = match &result {
            Ok((_, execution)) => (execution.mode().short_name(), tonic::Code::Ok),
            Err(status) => (ExecMode::try_from(mode).map_or("unknown", ExecMode::short_name), status.code()),
        };
        self.shared.metrics.observe_request(job.method(), label, code, started.elapsed());
        result
    }
}

fn mode_of(placement: Placement) -> ExecMode {
    match placement {
        Placement::Inline => ExecMode::Inline,
        Placement::SpawnTask => ExecMode::SpawnTask,
        Placement::SpawnBlocking => ExecMode::SpawnBlocking,
        Placement::BlockInPlace => ExecMode::BlockInPlace,
        Placement::Rayon => ExecMode::Rayon,
    }
}

#[tonic::async_trait]
impl Compute for ComputeService {
    async fn factorial(&self, request: Request<FactorialRequest>) -> Result<Response<FactorialResponse>, Status> {
        let deadline = deadline::from_metadata(request.metadata(), Instant::now());
        let FactorialRequest { n, mode, .. } = request.into_inner();
        let (Decimal(value), execution) = self.handle(Job::Factorial(n), mode, deadline).await?;
        Ok(Response::new(FactorialResponse { digits: value.len() as u64, value, execution: Some(execution) }))
    }

    async fn sum_of_squares(
        &self,
        request: Request<SumOfSquaresRequest>,
    ) -> Result<Response<SumOfSquaresResponse>, Status> {
        let deadline = deadline::from_metadata(request.metadata(), Instant::now());
        let SumOfSquaresRequest { n, mode, .. } = request.into_inner();
        let (Decimal(value), execution) = self.handle(Job::SumOfSquares(n), mode, deadline).await?;
        Ok(Response::new(SumOfSquaresResponse { value, execution: Some(execution) }))
    }
}
