//! Where a job runs: the one module that knows about tokio, rayon and threads, and nothing about factorials.
//!
//! Every [`Placement`] runs the same closure; only the thread differs, which is exactly what the project compares:
//!
//! | placement       | thread running the kernel     | the async worker meanwhile            |
//! |-----------------|-------------------------------|---------------------------------------|
//! | `Inline`        | the tokio worker itself       | blocked: its other tasks wait          |
//! | `SpawnTask`     | a tokio worker, in a new task | the handler is free, a worker is not   |
//! | `SpawnBlocking` | tokio's blocking pool (≤ 512) | free; the extra thread competes for CPU |
//! | `BlockInPlace`  | the tokio worker itself       | its tasks are handed to a new worker    |
//! | `Rayon`         | the dedicated rayon pool      | free; the pool is sized to the cores    |
//!
//! On the rayon pool a job is split over the pool's threads only when it is the pool's only job; with other jobs
//! queued or running it runs on one thread, like every other placement. Splitting a job while others wait lets a
//! thread that waits for a stolen half start another job from the queue, and the first job then cannot finish
//! until that whole second job has: measured with `offload-bench compare`, four 15 ms jobs on two threads had a
//! p99 latency twice their p50 (docs/decisions/0024-rayon-splits-only-a-lone-job.md). With several jobs in flight the pool is busy anyway, so
//! nothing is lost by not splitting; a job alone still gets every thread.
//!
//! All placements catch a panicking job and report it as an error for that request only, time the queue and the
//! work separately, and cancel the job (through its [`Cancel`]) when the awaiting future is dropped.
//!
//! Each job is traced as two spans, children of the span current when it was submitted (the request's): `queue`,
//! from submission until a thread picks the job up, and `compute`, opened on that thread, so a trace shows the
//! rayon or blocking-pool thread that did the work under the request that asked for it. They are built only when
//! the process exports traces.

use std::{
    any::Any,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use offload_proto::v1::ExecMode;
use tokio::sync::oneshot;
use tracing::Span;

use crate::kernel::{Cancel, Interrupted, Parallelism};

/// A concrete place to run a job. A type apart from the proto's `ExecMode` because it is a different concept: a
/// mode is what a request asks for, and two of them (`UNSPECIFIED`, `ADAPTIVE`) are decisions still to take; a
/// placement is the decision taken, so the executor has no case it cannot run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placement {
    /// On the async worker, inside the handler.
    Inline,
    /// On an async worker, inside a `tokio::spawn`ed task the handler awaits.
    SpawnTask,
    /// On tokio's blocking pool.
    SpawnBlocking,
    /// On the async worker, after `block_in_place` moved its other tasks to another thread.
    BlockInPlace,
    /// On the rayon pool, awaited through a oneshot channel.
    Rayon,
}

impl Placement {
    /// The placement a mode names, if it names one (`UNSPECIFIED` and `ADAPTIVE` are decided elsewhere).
    pub fn named(mode: ExecMode) -> Option<Self> {
        match mode {
            ExecMode::Inline => Some(Self::Inline),
            ExecMode::SpawnTask => Some(Self::SpawnTask),
            ExecMode::SpawnBlocking => Some(Self::SpawnBlocking),
            ExecMode::BlockInPlace => Some(Self::BlockInPlace),
            ExecMode::Rayon => Some(Self::Rayon),
            ExecMode::Adaptive | ExecMode::Unspecified => None,
        }
    }

    /// Only the rayon pool may split a job further: every other placement runs it on the thread it names, or the
    /// comparison between placements would measure rayon each time.
    fn parallelism(self) -> Parallelism {
        match self {
            Self::Rayon => Parallelism::Pool,
            Self::Inline | Self::SpawnTask | Self::SpawnBlocking | Self::BlockInPlace => Parallelism::Serial,
        }
    }
}

/// The mode a reply reports for a job run in this placement.
impl From<Placement> for ExecMode {
    fn from(placement: Placement) -> Self {
        match placement {
            Placement::Inline => Self::Inline,
            Placement::SpawnTask => Self::SpawnTask,
            Placement::SpawnBlocking => Self::SpawnBlocking,
            Placement::BlockInPlace => Self::BlockInPlace,
            Placement::Rayon => Self::Rayon,
        }
    }
}

/// A finished job and how it went.
#[derive(Debug)]
pub struct Ran<T> {
    /// What the job returned.
    pub value: T,
    /// From submission to a thread starting the job.
    pub queued: Duration,
    /// From start to finish of the job.
    pub computed: Duration,
}

/// Why a job produced no value.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The kernel saw its cancellation token fire.
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
    /// The job panicked; the message is the panic payload.
    #[error("job panicked: {0}")]
    Panicked(String),
    /// `block_in_place` was asked for on a runtime that cannot do it: `runtime` names the one the job came from.
    #[error("block_in_place needs the multi-thread runtime; this server runs {runtime}")]
    BlockInPlaceUnsupported {
        /// `--runtime current-thread`, or a thread-per-core shard (a current-thread runtime too).
        runtime: &'static str,
    },
    /// The thread running the job went away without an answer (runtime or pool shutting down).
    #[error("the job's worker went away before answering")]
    WorkerGone,
}

/// The runtime a refused `block_in_place` came from, as `--runtime` names it: a thread-per-core shard is a
/// current-thread runtime, and says so, so neither reading of the refusal is a surprise.
fn current_runtime() -> &'static str {
    match offload_serve::shards::current() {
        Some(_) => "thread-per-core, whose shards are current-thread runtimes",
        None => "current-thread",
    }
}

/// A job's spans while it travels to its thread (see the module docs).
struct JobSpans {
    /// The request's span, current at submission: the parent of both.
    parent: Span,
    /// Open from submission until the job starts.
    queue: Span,
    placement: Placement,
}

impl JobSpans {
    /// Without trace export (`offload_telemetry::exporting`) both spans are disabled ones: nothing would read
    /// them, and building two spans costs more than a trivial job.
    fn submitted(placement: Placement) -> Self {
        if !offload_telemetry::exporting() {
            return Self { parent: Span::none(), queue: Span::none(), placement };
        }
        Self { parent: Span::current(), queue: tracing::info_span!("queue", ?placement), placement }
    }

    /// Closes `queue` and opens `compute` on the calling thread, the one about to run the job.
    fn started(self) -> Span {
        drop(self.queue);
        if !offload_telemetry::exporting() {
            return Span::none();
        }
        tracing::info_span!(parent: &self.parent, "compute", placement = ?self.placement)
    }
}

/// Runs jobs in the requested placement. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Executor {
    /// The dedicated CPU pool: named threads (`offload-rayon-N`), sized by `--rayon-threads`, separate from
    /// rayon's global pool so nothing else in the process can steal its threads.
    pool: Arc<rayon::ThreadPool>,
    /// Jobs handed to the pool and not yet started, for the `offload_rayon_queue_depth` metric.
    rayon_queued: Arc<AtomicI64>,
    /// Jobs handed to the pool and not yet finished: a job starting while it is above one runs on one thread.
    rayon_in_pool: Arc<AtomicI64>,
    /// Jobs on tokio's blocking pool (queued or running), for `offload_blocking_in_flight`.
    blocking: Arc<AtomicI64>,
}

/// Cancels the job when the request's future is dropped (client gone, deadline hit in the transport, shutdown),
/// so a job queued or running elsewhere stops at its next check instead of burning CPU for nobody.
struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl Executor {
    /// An executor with a rayon pool of `threads` threads at the OS's default priority.
    pub fn new(threads: usize) -> Result<Self, rayon::ThreadPoolBuildError> {
        Self::with_priority(threads, PoolPriority::Normal)
    }

    /// An executor whose rayon threads run at `priority` (see [`PoolPriority`] for why it matters).
    pub fn with_priority(threads: usize, priority: PoolPriority) -> Result<Self, rayon::ThreadPoolBuildError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("offload-rayon-{i}"))
            .start_handler(move |_| priority.apply_to_current_thread())
            .build()?;
        Ok(Self {
            pool: Arc::new(pool),
            rayon_queued: Arc::default(),
            rayon_in_pool: Arc::default(),
            blocking: Arc::default(),
        })
    }

    /// Jobs waiting for a rayon thread right now.
    pub fn rayon_queue_depth(&self) -> i64 {
        self.rayon_queued.load(Ordering::Relaxed)
    }

    /// Jobs on tokio's blocking pool right now.
    pub fn blocking_in_flight(&self) -> i64 {
        self.blocking.load(Ordering::Relaxed)
    }

    /// Threads in the rayon pool.
    pub fn rayon_threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Runs `job` in `placement`. The job receives the parallelism it may use and the token it must check.
    pub async fn run<T, F>(&self, placement: Placement, cancel: Cancel, job: F) -> Result<Ran<T>, ExecError>
    where
        T: Send + 'static,
        F: FnOnce(Parallelism, &Cancel) -> Result<T, Interrupted> + Send + 'static,
    {
        let _cancel_on_drop = CancelOnDrop(cancel.clone());
        let submitted = Instant::now();
        let spans = JobSpans::submitted(placement);
        let par = placement.parallelism();
        match placement {
            Placement::Inline => timed(submitted, spans, par, &cancel, job),
            Placement::SpawnTask => {
                // The spawned task runs the kernel without ever yielding: whichever worker picks it up is blocked
                // for the job's duration, exactly as INLINE's is. Only the handler's own task is freed. The stall
                // detector times it as the request's own work, so the stall is named after the call.
                let token = cancel.clone();
                let job = async move { timed(submitted, spans, par, &token, job) };
                tokio::spawn(offload_serve::stall::in_current_call(job)).await.map_err(|_| ExecError::WorkerGone)?
            }
            Placement::BlockInPlace => {
                let multi_thread = tokio::runtime::Handle::try_current()
                    .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
                if !multi_thread {
                    return Err(ExecError::BlockInPlaceUnsupported { runtime: current_runtime() });
                }
                tokio::task::block_in_place(|| timed(submitted, spans, par, &cancel, job))
            }
            Placement::SpawnBlocking => {
                let token = cancel.clone();
                let blocking = Arc::clone(&self.blocking);
                blocking.fetch_add(1, Ordering::Relaxed);
                tokio::task::spawn_blocking(move || {
                    let ran = timed(submitted, spans, par, &token, job);
                    blocking.fetch_sub(1, Ordering::Relaxed);
                    ran
                })
                .await
                .map_err(|_| ExecError::WorkerGone)?
            }
            Placement::Rayon => {
                let (tx, rx) = oneshot::channel();
                let token = cancel.clone();
                let (queued, in_pool) = (Arc::clone(&self.rayon_queued), Arc::clone(&self.rayon_in_pool));
                queued.fetch_add(1, Ordering::Relaxed);
                in_pool.fetch_add(1, Ordering::AcqRel);
                self.pool.spawn(move || {
                    queued.fetch_sub(1, Ordering::Relaxed);
                    // Split only when alone in the pool (see the module docs).
                    let par = if in_pool.load(Ordering::Acquire) > 1 { Parallelism::Serial } else { par };
                    let ran = timed(submitted, spans, par, &token, job);
                    in_pool.fetch_sub(1, Ordering::AcqRel);
                    // The receiver may be gone (request cancelled): then nobody needs the answer.
                    let _ = tx.send(ran);
                });
                rx.await.map_err(|_| ExecError::WorkerGone)?
            }
        }
    }
}

/// Runs the job on the current thread, timing queue and work, and turning a panic into an error.
fn timed<T>(
    submitted: Instant,
    spans: JobSpans,
    par: Parallelism,
    cancel: &Cancel,
    job: impl FnOnce(Parallelism, &Cancel) -> Result<T, Interrupted>,
) -> Result<Ran<T>, ExecError> {
    let started = Instant::now();
    let span = spans.started();
    let outcome = span.in_scope(|| catch_unwind(AssertUnwindSafe(|| job(par, cancel))));
    let computed = started.elapsed();
    let value = outcome.map_err(|payload| ExecError::Panicked(panic_message(payload.as_ref())))??;
    Ok(Ran { value, queued: started - submitted, computed })
}

/// The OS scheduling priority of the rayon threads.
///
/// Why it matters: when the pool has as many threads as cores and all are busy, a tokio worker woken by a new
/// request must wait for the OS to give it a core. Linux's scheduler (EEVDF) lets the running thread finish its
/// slice first (up to a few milliseconds) unless that thread is `SCHED_IDLE`, which any normal thread preempts at
/// once. A lower nice value only shortens the wait. Measured with `offload-bench compare` (docs/log/results-2026.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PoolPriority {
    /// The default priority: pool and runtime compete as equals.
    Normal,
    /// nice 10: the pool gets less CPU when the runtime wants it, but a woken worker may still wait a slice.
    Low,
    /// `SCHED_IDLE`: the pool runs only when no normal thread wants the core, and is preempted at once when one
    /// does. Offloaded work then never delays the runtime; it still gets every cycle the runtime leaves.
    Idle,
}

impl PoolPriority {
    /// Applies the priority to the calling thread (Linux: priorities are per thread). Best effort: a failure (an
    /// OS without these policies, a sandbox forbidding them) keeps the default and is logged.
    fn apply_to_current_thread(self) {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: gettid, setpriority and sched_setscheduler take plain integers and a pointer to a local,
            // fully initialised sched_param; none of them retains it.
            let result = unsafe {
                match self {
                    Self::Normal => 0,
                    Self::Low => libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10),
                    Self::Idle => {
                        let param = libc::sched_param { sched_priority: 0 };
                        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param)
                    }
                }
            };
            if result != 0 {
                let error = std::io::Error::last_os_error();
                tracing::warn!(priority = ?self, %error, "cannot set the rayon threads' priority");
            }
        }
        #[cfg(not(target_os = "linux"))]
        if self != Self::Normal {
            tracing::warn!(priority = ?self, "rayon thread priorities are only set on Linux");
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Placement; 4] =
        [Placement::Inline, Placement::SpawnBlocking, Placement::BlockInPlace, Placement::Rayon];

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_placement_runs_and_reports_parallelism() {
        let exec = Executor::new(2).expect("pool");
        for placement in ALL {
            let ran = exec
                .run(placement, Cancel::never(), |par, _| Ok((par, std::thread::current().name().map(str::to_owned))))
                .await
                .expect("runs");
            let (par, thread) = ran.value;
            assert_eq!(par, placement.parallelism());
            assert_eq!(Placement::named(ExecMode::from(placement)), Some(placement));
            if placement == Placement::Rayon {
                assert!(thread.is_some_and(|t| t.starts_with("offload-rayon-")), "{placement:?}");
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rayon_job_is_split_only_when_alone_in_the_pool() {
        let exec = Executor::new(2).expect("pool");
        let alone = exec.run(Placement::Rayon, Cancel::never(), |par, _| Ok(par)).await.expect("runs");
        assert_eq!(alone.value, Parallelism::Pool);
        // A first job holds a pool thread until told to finish; a second one, submitted meanwhile, runs serially.
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let holder = {
            let exec = exec.clone();
            tokio::spawn(async move {
                exec.run(Placement::Rayon, Cancel::never(), move |par, _| {
                    let _ = started_tx.send(());
                    let _ = release_rx.recv();
                    Ok(par)
                })
                .await
            })
        };
        tokio::task::spawn_blocking(move || started_rx.recv()).await.expect("join").expect("started");
        let beside = exec.run(Placement::Rayon, Cancel::never(), |par, _| Ok(par)).await.expect("runs");
        assert_eq!(beside.value, Parallelism::Serial);
        release_tx.send(()).expect("holder waits");
        assert_eq!(holder.await.expect("join").expect("runs").value, Parallelism::Pool);
        assert_eq!(exec.rayon_in_pool.load(Ordering::Relaxed), 0, "every job left the pool");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn panics_become_errors_in_every_placement() {
        let exec = Executor::new(1).expect("pool");
        for placement in ALL {
            let err = exec
                .run(placement, Cancel::never(), |_, _| -> Result<(), Interrupted> { panic!("boom") })
                .await
                .expect_err("panicked");
            assert!(matches!(err, ExecError::Panicked(ref m) if m == "boom"), "{placement:?}: {err:?}");
        }
        // The pool survived its panicking job.
        exec.run(Placement::Rayon, Cancel::never(), |_, _| Ok(())).await.expect("pool still works");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn block_in_place_is_refused_on_current_thread() {
        let exec = Executor::new(1).expect("pool");
        let err = exec.run(Placement::BlockInPlace, Cancel::never(), |_, _| Ok(())).await.expect_err("refused");
        assert!(matches!(err, ExecError::BlockInPlaceUnsupported { .. }));
        assert!(err.to_string().ends_with("this server runs current-thread"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_the_request_cancels_the_job() {
        let exec = Executor::new(1).expect("pool");
        let cancel = Cancel::never();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (stopped_tx, stopped_rx) = std::sync::mpsc::channel();
        let job = async move {
            exec.run(Placement::Rayon, cancel, move |_, token| {
                let _ = started_tx.send(());
                let result = loop {
                    if let Err(e) = token.check() {
                        break e;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                };
                let _ = stopped_tx.send(result);
                Err::<(), _>(result)
            })
            .await
        };
        let handle = tokio::spawn(job);
        tokio::task::spawn_blocking(move || started_rx.recv()).await.expect("join").expect("started");
        handle.abort();
        let stopped =
            tokio::task::spawn_blocking(move || stopped_rx.recv_timeout(Duration::from_secs(10))).await.expect("join");
        assert_eq!(stopped, Ok(Interrupted::Cancelled));
    }
}
