//! The bottom of compute's request path: one admitted job, validated, placed, run under its deadline, reported.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use offload_proto::v1::{ExecMode, Execution};
use offload_serve::{admission::Admission, deadline::Deadline, stall::StallTag};
use offload_telemetry::metrics::Metrics;
use tonic::{Request, Response, Status};
use tracing::{Instrument, field};

use crate::{
    adaptive::CostModel,
    error::Error,
    executor::{Executor, Placement},
    job::{Job, JobReply, JobRequest},
    kernel::{Cancel, Interrupted},
    limits::Limits,
};

/// What a job runs with: the executor, the placement and limits it obeys, and what its reply reports. The service
/// builds its layers above [`RunJob`] from the same parts (admission, metrics), so they live here, with their user.
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

/// Runs each request's job (the service at the bottom of [`crate::service`]'s stack).
#[derive(Debug, Clone)]
pub struct RunJob {
    parts: Arc<Parts>,
}

impl RunJob {
    /// Jobs run with `parts`.
    pub fn new(parts: Arc<Parts>) -> Self {
        Self { parts }
    }
}

impl tower::Service<Request<JobRequest>> for RunJob {
    type Response = Response<JobReply>;
    type Error = Status;
    type Future = Pin<Box<dyn Future<Output = Result<Response<JobReply>, Status>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<JobRequest>) -> Self::Future {
        let parts = Arc::clone(&self.parts);
        let deadline = Deadline::of(&request);
        let stall_tag = request.extensions().get::<StallTag>().cloned();
        let JobRequest { job, mode } = request.into_inner();
        Box::pin(async move { Ok(Response::new(run(&parts, job, mode, deadline, stall_tag).await?)) })
    }
}

/// Runs one request's job end to end. `stall_tag` (the stall detector's, if on) learns the mode and n before the
/// job runs, so a stall it causes is reported with them.
async fn run(
    parts: &Parts,
    job: Job,
    mode: i32,
    deadline: Option<Instant>,
    stall_tag: Option<StallTag>,
) -> Result<JobReply, Error> {
    let requested = ExecMode::try_from(mode).map_err(|_| Error::UnknownMode(mode))?;
    parts.limits.check(job)?;
    let requested = if requested == ExecMode::Unspecified { parts.default_mode } else { requested };
    let placement = Placement::named(requested).unwrap_or_else(|| parts.cost_model.placement(job));
    if let Some(tag) = stall_tag {
        tag.set(ExecMode::from(placement).short_name(), Some(job.n()));
    }
    // The job's span is for traces (its fields are the reply's `Execution` again): built only when they are exported.
    let span = if !offload_telemetry::exporting() {
        tracing::Span::none()
    } else {
        tracing::info_span!(
            "job",
            method = job.method(),
            n = job.n(),
            mode.requested = requested.short_name(),
            mode = ExecMode::from(placement).short_name(),
            queue_us = field::Empty,
            compute_us = field::Empty,
        )
    };
    let panic_on_n = parts.panic_on_n;
    let ran = parts
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
        Some(at) => tokio::time::timeout_at(at.into(), ran).await.unwrap_or(Err(Interrupted::DeadlineExceeded.into())),
        None => ran.await,
    }?;
    let (queue_us, compute_us) = (ran.queued.as_micros() as u64, ran.computed.as_micros() as u64);
    span.record("queue_us", queue_us);
    span.record("compute_us", compute_us);
    span.in_scope(|| tracing::debug!("job done"));
    let execution = Execution {
        mode: ExecMode::from(placement) as i32,
        queue_us,
        compute_us,
        served_by: parts.instance_id.clone(),
        ..Execution::default()
    };
    Ok(JobReply { value: ran.value, execution })
}
