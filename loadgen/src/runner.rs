//! Sends load: closed-loop (each of `concurrency` workers sends its next call when the last one returns) or
//! open-loop (calls leave on a fixed schedule at `rps`, whatever the server is doing).
//!
//! Closed-loop is what ghz does without `--rps`, and it hides stalls: while the server is stuck, the workers are
//! stuck with it and send nothing, so the stall shows up as a handful of slow calls instead of the hundreds that a
//! real population of clients would have sent meanwhile ("coordinated omission"). Open-loop latency is measured
//! from each call's *scheduled* send time, so a stalled server is charged for every call it delayed, including
//! the time a call waited for a free worker slot. One correction: tokio's timers have millisecond resolution, so
//! the sender itself wakes up to a millisecond after the scheduled time; that lateness is the generator's, not
//! the server's, and the clock starts when the sender woke if that is later.
//!
//! ghz's run controls ([`Controls`]) shape either loop: a load schedule varies the open-loop rate, a concurrency
//! schedule the number of closed-loop workers ([`crate::schedule`]); `-x` bounds the run in time as `-z` does;
//! `--skipFirst` leaves the first calls to complete out of the recording; `--duration-stop` says what happens to
//! the calls still in flight when time runs out (`close`: cancelled and counted as errors, as ghz's default;
//! `ignore`: cancelled and not counted; `wait`: awaited and counted). A shard of a split run ([`crate::shard`])
//! sends every Nth call of the run's open-loop schedule from a shared start time; `--abort-on-fail`
//! ([`crate::abort`]) cancels the run when a check of the calls so far fails.
//!
//! The runner also measures the generator itself ([`crate::health`]): each open-loop send's lateness, and the
//! process's CPU time over the run.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime},
};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::{
    sync::{Semaphore, mpsc},
    time::Instant,
};

pub use crate::cancel::Cancel;
use crate::{
    abort::Abort,
    health::{self, Observed},
    recording::{EndReason, Recording},
    schedule::Schedule,
    shard::Shard,
};

/// How much load, for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Calls in flight at most (closed-loop: the number of workers).
    pub concurrency: usize,
    /// Stop after this many calls.
    pub total: Option<u64>,
    /// Stop sending after this long.
    pub duration: Option<Duration>,
    /// Open-loop rate, calls per second; `None` for closed-loop.
    pub rps: Option<f64>,
}

/// What ghz's calls in flight at the end of `-z`/`-x` become (`--duration-stop`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DurationStop {
    /// Cancelled and counted as errors (`Unavailable: transport is closing`, what grpc-go reports): ghz's default.
    Close,
    /// Cancelled and left out of the report.
    Ignore,
    /// Awaited and counted: what offload's own experiments use.
    #[default]
    Wait,
}

impl std::str::FromStr for DurationStop {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "close" | "" => Ok(Self::Close),
            "ignore" => Ok(Self::Ignore),
            "wait" => Ok(Self::Wait),
            other => Err(format!("--duration-stop {other:?}: use close, ignore or wait")),
        }
    }
}

/// ghz's run controls beyond the [`Plan`]; the defaults change nothing.
#[derive(Debug, Clone, Default)]
pub struct Controls {
    /// Open-loop rate over time (`--load-schedule`); overrides `Plan::rps` when given.
    pub load: Option<Schedule>,
    /// Closed-loop workers over time (`--concurrency-schedule`); overrides `Plan::concurrency` when given.
    pub concurrency: Option<Schedule>,
    /// Stop after this long even if `total` is not reached (`-x`).
    pub max_duration: Option<Duration>,
    /// Leave the first this many completed calls out of the recording (`--skipFirst`).
    pub skip_first: u64,
    /// What becomes of calls in flight when time runs out.
    pub duration_stop: DurationStop,
    /// Cancelled to stop (Ctrl-C): nothing more is sent, the calls in flight are cancelled and counted as
    /// `Canceled` errors, and the run ends with [`EndReason::Cancel`].
    pub cancel: Option<Cancel>,
    /// This run is one shard of a split run: it sends every Nth call of the open-loop schedule.
    pub shard: Option<Shard>,
    /// When to start sending (wall clock); a shard without it starts at the next whole second.
    pub start_at: Option<SystemTime>,
    /// Stop when a check of the calls so far fails (`--abort-on-fail`).
    pub abort: Option<Abort>,
}

/// What a call in flight at Ctrl-C becomes: a client-side cancellation, as grpc-go reports one.
const CANCELLED_IN_FLIGHT: &str = "cancelled by Ctrl-C before the reply";
/// What a call in flight when `--abort-on-fail` stops the run becomes.
const ABORTED_IN_FLIGHT: &str = "cancelled before the reply: a threshold failed (--abort-on-fail)";

impl Plan {
    /// How long the run is expected to take, if that can be known in advance.
    pub fn expected_duration(&self) -> Option<Duration> {
        match (self.duration, self.total, self.rps) {
            (Some(d), _, _) => Some(d),
            // Saturating: `-n` at u64::MAX over a slow rate is past what a Duration holds, not a panic.
            (None, Some(total), Some(rps)) if rps > 0.0 => {
                Some(Duration::try_from_secs_f64(total as f64 / rps).unwrap_or(Duration::MAX))
            }
            _ => None,
        }
    }
}

/// The scheduled send time of open-loop call `i`: evenly spaced from `start`, never drifting (computed from `i`,
/// not by adding intervals).
pub fn scheduled_at(start: Instant, rps: f64, i: u64) -> Instant {
    let offset = Duration::try_from_secs_f64(i as f64 / rps).unwrap_or(Duration::MAX);
    start.checked_add(offset).unwrap_or_else(far_future)
}

/// An instant no run reaches (tokio's own "never" for a timer: about 30 years ahead).
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}

/// One call of a run, as `invoke(worker)` returns it, boxed: the loops below are then compiled once, here, rather than
/// once per closure that calls [`run`] (`offload-experiments` has ten: 8 s of a cold release build's CPU), for one
/// allocation per call against the dozens of a gRPC call.
type CallFuture = Pin<Box<dyn Future<Output = Result<(), tonic::Status>> + Send>>;

/// What the loops call for each call.
type Invoke = Box<dyn Fn(usize) -> CallFuture + Send + Sync>;

/// Runs `plan`, calling `invoke(worker)` for each call (`worker` < `concurrency`, to pick a connection).
pub fn run<F, Fut>(
    plan: Plan,
    invoke: F,
    progress: Option<ProgressBar>,
) -> impl Future<Output = Recording> + Send + 'static
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), tonic::Status>> + Send + 'static,
{
    run_with(plan, Controls::default(), invoke, progress)
}

/// What every worker or sender of one run shares.
struct Run {
    invoke: Invoke,
    start: Instant,
    /// When sending stops (`-z`, `-x`), if it does.
    end: Option<Instant>,
    /// Stop after this many calls (`-n`; ghz's 200 when neither `-n` nor `-z` is given).
    total: Option<u64>,
    issued: AtomicU64,
    completed: AtomicU64,
    /// An empty recording whose error texts every recording of the run shares (one bound for the run).
    texts: Recording,
    controls: Controls,
    progress: Option<ProgressBar>,
}

impl Run {
    fn cancelled(&self) -> bool {
        self.controls.cancel.as_ref().is_some_and(Cancel::is_cancelled)
    }

    /// Resolves when the run is cancelled; never, if it cannot be.
    async fn until_cancelled(&self) {
        match &self.controls.cancel {
            Some(cancel) => cancel.cancelled().await,
            None => std::future::pending().await,
        }
    }

    fn out_of_time(&self) -> bool {
        self.end.is_some_and(|e| Instant::now() >= e)
    }

    /// Claims the next call, or says the run is over.
    fn claim(&self) -> bool {
        !self.cancelled()
            && !self.out_of_time()
            && self.total.is_none_or(|t| self.issued.fetch_add(1, Ordering::Relaxed) < t)
    }

    /// Sends one call, honouring `--duration-stop` if time runs out while it is in flight: its outcome, or `None`
    /// when it is left out.
    async fn call(&self, call: CallFuture) -> Option<Result<(), tonic::Status>> {
        let end = self.end.filter(|_| self.controls.duration_stop != DurationStop::Wait);
        let time_up = async {
            match end {
                Some(end) => tokio::time::sleep_until(end).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            outcome = call => Some(outcome),
            () = time_up => match self.controls.duration_stop {
                DurationStop::Close => Some(Err(tonic::Status::unavailable("transport is closing"))),
                _ => None,
            },
            () = self.until_cancelled() => Some(Err(tonic::Status::cancelled(
                if self.controls.abort.as_ref().and_then(Abort::why).is_some() { ABORTED_IN_FLIGHT } else { CANCELLED_IN_FLIGHT },
            ))),
        }
    }

    /// Records a finished call unless it is among the first `--skipFirst`.
    fn record(&self, recording: &mut Recording, sent: Duration, latency: Duration, outcome: Result<(), tonic::Status>) {
        if self.completed.fetch_add(1, Ordering::Relaxed) >= self.controls.skip_first {
            if let Some(abort) = &self.controls.abort {
                abort.record(latency, outcome.clone());
            }
            recording.record_call(sent, latency, outcome);
        }
        if let Some(bar) = &self.progress {
            bar.inc(1);
        }
    }
}

/// Runs `plan` shaped by `controls`, calling `invoke(worker)` for each call.
pub fn run_with<F, Fut>(
    plan: Plan,
    controls: Controls,
    invoke: F,
    progress: Option<ProgressBar>,
) -> impl Future<Output = Recording> + Send + 'static
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), tonic::Status>> + Send + 'static,
{
    run_boxed(plan, controls, Box::new(move |worker| Box::pin(invoke(worker)) as CallFuture), progress)
}

async fn run_boxed(plan: Plan, mut controls: Controls, invoke: Invoke, progress: Option<ProgressBar>) -> Recording {
    if controls.abort.is_some() && controls.cancel.is_none() {
        controls.cancel = Some(Cancel::new());
    }
    let (start, wall_start) = start_time(&controls).await;
    let cpu_at_start = health::process_cpu();
    let limit = match (plan.duration, controls.max_duration) {
        (Some(z), Some(x)) => Some(z.min(x)),
        (z, x) => z.or(x),
    };
    // Neither a count nor a duration: ghz's default of 200 calls.
    let total = if plan.total.is_none() && plan.duration.is_none() { Some(200) } else { plan.total };
    let open = controls.load.or(plan.rps.filter(|r| *r > 0.0).map(Schedule::Const));
    let run = Arc::new(Run {
        invoke,
        start,
        end: limit.map(|d| start.checked_add(d).unwrap_or_else(far_future)),
        total,
        issued: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        texts: Recording::new(),
        controls,
        progress: progress.clone(),
    });
    let watch = match (&run.controls.abort, &run.controls.cancel) {
        (Some(abort), Some(cancel)) => Some(tokio::spawn(abort.clone().watch(run.start, cancel.clone()))),
        _ => None,
    };
    let (mut recording, lateness) = match open {
        Some(rate) => {
            let (recording, lateness) = open_loop(Arc::clone(&run), rate, plan.concurrency.max(1)).await;
            (recording, Some(lateness))
        }
        None => (closed_loop(Arc::clone(&run), plan.concurrency.max(1)).await, None),
    };
    if let Some(watch) = watch {
        watch.abort();
    }
    recording.elapsed = start.elapsed();
    recording.generator = Some(Observed {
        lateness,
        cpu: health::process_cpu().saturating_sub(cpu_at_start),
        cores: tokio::runtime::Handle::current().metrics().num_workers(),
    });
    recording.started_at = wall_start;
    recording.end_reason = if run.cancelled() {
        EndReason::Cancel
    } else if run.total.is_none_or(|t| run.issued.load(Ordering::Relaxed) < t) {
        EndReason::Timeout
    } else {
        EndReason::Normal
    };
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    recording
}

/// When the run starts, as an instant and on the wall clock: `--start-at` (if still ahead), the next whole second
/// for a shard (so shards started together share it), or now.
async fn start_time(controls: &Controls) -> (Instant, SystemTime) {
    let now = SystemTime::now();
    let at = controls.start_at.or_else(|| {
        controls.shard.map(|_| {
            let since = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
            SystemTime::UNIX_EPOCH + Duration::from_secs(since.as_secs() + 1)
        })
    });
    match at.and_then(|at| at.duration_since(now).ok()) {
        Some(wait) => {
            let start = Instant::now() + wait;
            tokio::select! {
                () = tokio::time::sleep_until(start) => {}
                () = async { match &controls.cancel { Some(c) => c.cancelled().await, None => std::future::pending().await } } => {}
            }
            (start, now + wait)
        }
        None => {
            if let Some(late) = controls.start_at.and_then(|at| now.duration_since(at).ok()) {
                eprintln!("--start-at was {:.1} s ago: starting now", late.as_secs_f64());
            }
            (Instant::now(), now)
        }
    }
}

async fn closed_loop(run: Arc<Run>, concurrency: usize) -> Recording {
    let schedule = run.controls.concurrency.unwrap_or(Schedule::Const(concurrency as f64));
    // Workers at or above `limit` wait (a falling schedule); a rising one starts new workers.
    let limit = Arc::new(AtomicUsize::new(0));
    let worker = |index: usize| {
        let (run, limit) = (Arc::clone(&run), Arc::clone(&limit));
        tokio::spawn(async move {
            let mut recording = Recording::sharing(&run.texts);
            loop {
                if index >= limit.load(Ordering::Relaxed) {
                    if run.cancelled()
                        || run.out_of_time()
                        || run.total.is_some_and(|t| run.issued.load(Ordering::Relaxed) >= t)
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                if !run.claim() {
                    break;
                }
                let sent = Instant::now();
                if let Some(outcome) = run.call((run.invoke)(index)).await {
                    run.record(&mut recording, sent - run.start, sent.elapsed(), outcome);
                }
            }
            recording
        })
    };
    let mut workers = Vec::new();
    loop {
        let level = schedule.at(run.start.elapsed()) as usize;
        limit.store(level, Ordering::Relaxed);
        while workers.len() < level {
            workers.push(worker(workers.len()));
        }
        let finished = run.cancelled()
            || run.out_of_time()
            || run.total.is_some_and(|t| run.issued.load(Ordering::Relaxed) >= t)
            || (schedule.is_const() && !workers.is_empty());
        let Some(next) = schedule.next_change(run.start.elapsed()).filter(|_| !finished) else { break };
        // Wake at the next step, or sooner to notice the run ending.
        tokio::select! {
            () = tokio::time::sleep_until((run.start + next).min(Instant::now() + Duration::from_millis(100))) => {}
            () = run.until_cancelled() => {}
        }
    }
    let mut recording = Recording::sharing(&run.texts);
    for worker in workers {
        if let Ok(r) = worker.await {
            recording.merge(&r);
        }
    }
    recording
}

/// Sends on `rate`'s schedule (this shard's calls of it); the recording, and each send's lateness.
async fn open_loop(run: Arc<Run>, rate: Schedule, concurrency: usize) -> (Recording, hdrhistogram::Histogram<u64>) {
    let shard = run.controls.shard.unwrap_or(Shard { index: 1, count: 1 });
    let mut lateness = health::lateness_histogram();
    // The end of the last wait for a free slot: a send due before it was held by the target, not by the timer.
    let mut held_until = run.start;
    let slots = Arc::new(Semaphore::new(concurrency));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(Duration, Duration, Result<(), tonic::Status>)>();
    let collector = {
        let run = Arc::clone(&run);
        tokio::spawn(async move {
            let mut recording = Recording::sharing(&run.texts);
            while let Some((sent, latency, outcome)) = done_rx.recv().await {
                run.record(&mut recording, sent, latency, outcome);
            }
            recording
        })
    };
    let first_rate = rate.at(Duration::ZERO);
    let mut at = match rate {
        Schedule::Const(r) => scheduled_at(run.start, r, shard.global_call(0)),
        Schedule::Step { .. } if first_rate > 0.0 => {
            run.start + Duration::from_secs_f64((shard.index - 1) as f64 / first_rate)
        }
        Schedule::Step { .. } => run.start,
    };
    for i in 0u64.. {
        if run.end.is_some_and(|e| at >= e) {
            break;
        }
        let per_second = rate.at(at - run.start);
        if per_second <= 0.0 {
            // A schedule at zero: nothing to send until it changes (or the run ends).
            match rate.next_change(at - run.start) {
                Some(next) if run.end.is_some() || run.total.is_some() => at = run.start + next,
                _ => break,
            }
            if run.end.is_none() && rate.at(at - run.start) <= 0.0 && rate.next_change(at - run.start).is_none() {
                break;
            }
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep_until(at) => {}
            () = run.until_cancelled() => break,
        }
        if !run.claim() {
            break;
        }
        // The timer's own lateness is not charged to the server; waiting here for a slot is.
        let woke = Instant::now();
        let sent = woke.max(at);
        lateness.saturating_record(u64::try_from((woke - at.max(held_until)).as_nanos()).unwrap_or(u64::MAX));
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                let slot = tokio::select! {
                    slot = Arc::clone(&slots).acquire_owned() => slot,
                    () = run.until_cancelled() => break,
                };
                held_until = Instant::now();
                let Ok(slot) = slot else { break };
                slot
            }
        };
        let (task_run, done_tx) = (Arc::clone(&run), done_tx.clone());
        let worker = (i % concurrency as u64) as usize;
        tokio::spawn(async move {
            if let Some(outcome) = task_run.call((task_run.invoke)(worker)).await {
                let _ = done_tx.send((sent - task_run.start, sent.elapsed(), outcome));
            }
            drop(slot);
        });
        at = match rate {
            Schedule::Const(r) => scheduled_at(run.start, r, shard.global_call(i + 1)),
            Schedule::Step { .. } => at + Duration::from_secs_f64(shard.count as f64 / per_second),
        };
    }
    drop(done_tx);
    (collector.await.unwrap_or_default(), lateness)
}

/// A progress bar on stderr for runs longer than a couple of seconds, when a person is watching.
pub fn progress_bar(plan: &Plan, label: &str, quiet: bool) -> Option<ProgressBar> {
    use std::io::IsTerminal;
    let long =
        plan.expected_duration().is_none_or(|d| d > Duration::from_secs(2)) || plan.total.is_some_and(|t| t > 2000);
    if quiet || !long || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match plan.total {
        Some(total) => ProgressBar::new(total),
        None => ProgressBar::new_spinner(),
    };
    let template = "{prefix:>12} {spinner} [{elapsed_precise}] {wide_bar} {pos} calls ({per_sec})";
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_prefix(label.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    Some(bar)
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
