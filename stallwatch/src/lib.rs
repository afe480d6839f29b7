//! Who blocked my tokio runtime, down to the line.
//!
//! A worker of a watched runtime that makes no progress for a threshold (10 ms by default) is a **stall**,
//! whatever task holds it: a request handler, a task spawned without any wrapper, a background task. For each
//! stall, a watchdog thread outside the runtime reports, while the stall still lasts:
//!
//! - **the stuck line**: the stuck thread's stack, copied by the thread itself in a signal handler that only copies
//!   memory ([`capture`]), then unwound and symbolized on the watchdog thread ([`stack`]);
//! - **why**: `cpu`, `syscall` (which one), `lock` or `descheduled`, read from `/proc` while it lasts ([`cause`]);
//! - **which request**, when the stuck poll belongs to a call wrapped by the tower layer (feature `tower`).
//!
//! # How a stall is seen, on stable tokio
//! Tokio's stable runtime metrics give, per worker, a park/unpark count and the time spent busy; a worker submits
//! them each time it parks and at its maintenance point, which it reaches every `event_interval` (61) scheduler
//! ticks. A worker that is not parked and whose two numbers have not moved for the threshold has not come back to
//! its scheduler for that long: one poll holds it (or, rarely, 61 consecutive polls that together took the
//! threshold, which starves its I/O all the same). The `on_thread_park`/`on_thread_unpark` hooks that
//! [`Detector::instrument`] installs tell which OS thread runs which worker. Nothing runs in the runtime's threads
//! but those two hooks (one relaxed store each); the watchdog reads a few atomics per worker per tick, and looks at
//! a thread only while it is stuck. No `--cfg tokio_unstable` is needed; with it, nothing more is used either.
//!
//! # In three lines
//! ```ignore
//! let detector = stallwatch::Detector::builder().threshold(Duration::from_millis(10)).build();
//! let mut builder = tokio::runtime::Builder::new_multi_thread();
//! detector.instrument(&mut builder.enable_all(), "server");   // then build and run as usual
//! ```
//! In a `#[tokio::main]` program, `detector.watch_current()` inside it watches the runtime without its hooks
//! (stalls and their causes are seen on a current-thread runtime; the stack also needs the thread, which a
//! multi-thread runtime only tells through the hooks). For tests, [`testing::fail_on_stall`].

mod calls;
mod capture;
pub mod cause;
#[cfg(feature = "tower")]
pub mod layer;
mod rate;
mod report;
pub mod stack;
pub mod testing;
mod threads;
mod watchdog;

use std::{
    sync::{Arc, Mutex, OnceLock, PoisonError, mpsc},
    time::{Duration, Instant},
};

#[cfg(feature = "tower")]
pub use self::layer::{StallLayer, StallTag, in_current_call};
pub use self::{
    cause::{Cause, CauseKind},
    report::{CallInfo, StackCost, StallReport, is_own_code},
    stack::Frame,
};

/// The default threshold: a well-behaved poll takes microseconds; 10 ms ignores a slow allocation or a page fault
/// and catches a job of a few milliseconds run on the runtime.
pub const DEFAULT_THRESHOLD: Duration = Duration::from_millis(10);

/// The smallest threshold accepted: the watchdog ticks at half of it, and below a millisecond its wake-ups
/// and `/proc` reads would cost more than the stalls they find.
pub const MIN_THRESHOLD: Duration = Duration::from_millis(1);

/// Stacks taken per second at most (and as a burst): each costs the stuck thread one copy of its stack and the
/// watchdog an unwind; more than a few a second tell nothing new. The rest are counted.
pub const DEFAULT_STACKS_PER_SECOND: u32 = 4;

/// Log lines per second at most (a stall's `WARN` and its end each count): a runtime that stalls thousands of
/// times a second must not flood its log. The rest are counted, and the next line says how many.
pub const DEFAULT_LINES_PER_SECOND: u32 = 20;

/// Stalls kept for [`Detector::recent`].
pub const DEFAULT_HISTORY: usize = 64;

/// A hook called for each stall when it ends (to count it).
pub type OnStall = Box<dyn Fn(&StallReport) + Send + Sync>;

/// Sets a [`Detector`] up.
pub struct Builder {
    threshold: Duration,
    stacks: bool,
    stacks_per_second: u32,
    lines_per_second: u32,
    history: usize,
    signal: Option<i32>,
    on_stall: Option<OnStall>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder").field("threshold", &self.threshold).field("stacks", &self.stacks).finish()
    }
}

/// A setting [`Builder::try_build`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Builder {
    /// How long a worker may go without progress before it is a stall; at least [`MIN_THRESHOLD`].
    pub fn threshold(mut self, threshold: Duration) -> Self {
        self.threshold = threshold;
        self
    }

    /// Whether to take the stuck thread's stack (default: yes, where the platform allows: Linux on x86_64).
    pub fn stacks(mut self, on: bool) -> Self {
        self.stacks = on;
        self
    }

    /// At most this many stacks a second (default [`DEFAULT_STACKS_PER_SECOND`]).
    pub fn stacks_per_second(mut self, n: u32) -> Self {
        self.stacks_per_second = n;
        self
    }

    /// At most this many log lines a second (default [`DEFAULT_LINES_PER_SECOND`]; 0: no log lines).
    pub fn lines_per_second(mut self, n: u32) -> Self {
        self.lines_per_second = n;
        self
    }

    /// How many of the last stalls [`Detector::recent`] keeps.
    pub fn history(mut self, n: usize) -> Self {
        self.history = n;
        self
    }

    /// The signal the stuck thread is asked to copy its stack with (default: `SIGRTMIN + 7`). It is taken only
    /// if nothing else handles it.
    pub fn signal(mut self, signal: i32) -> Self {
        self.signal = Some(signal);
        self
    }

    /// Called on the watchdog thread for each stall once it ends.
    pub fn on_stall(mut self, hook: impl Fn(&StallReport) + Send + Sync + 'static) -> Self {
        self.on_stall = Some(Box::new(hook));
        self
    }

    /// The detector, or the setting that makes no sense.
    pub fn try_build(self) -> Result<Detector, ConfigError> {
        if self.threshold < MIN_THRESHOLD {
            return Err(ConfigError(format!(
                "stall threshold {:?} is below the minimum of {:?}",
                self.threshold, MIN_THRESHOLD
            )));
        }
        let stacks = if self.stacks {
            capture::install(self.signal.unwrap_or_else(capture::default_signal)).map_err(|e| {
                tracing::warn!("stall stacks are off: {e}");
                e
            })
        } else {
            Err("capture off".to_owned())
        };
        let (register, registered) = mpsc::channel();
        let shared = Arc::new(Shared {
            threshold: self.threshold,
            epoch: Instant::now(),
            history: report::History::new(self.history),
            ongoing: Mutex::new(Vec::new()),
            stacks_skipped: std::sync::atomic::AtomicU64::new(0),
            lines_suppressed: std::sync::atomic::AtomicU64::new(0),
        });
        let settings = watchdog::Settings {
            stacks: stacks.err(),
            stacks_per_second: self.stacks_per_second,
            lines_per_second: self.lines_per_second,
            on_stall: self.on_stall,
        };
        watchdog::start(Arc::clone(&shared), registered, settings);
        Ok(Detector { inner: Arc::new(Inner { shared, register }) })
    }

    /// [`Builder::try_build`], for a threshold known to be valid; a threshold below [`MIN_THRESHOLD`] is raised
    /// to it (with a warning).
    pub fn build(mut self) -> Detector {
        if self.threshold < MIN_THRESHOLD {
            tracing::warn!(threshold = ?self.threshold, minimum = ?MIN_THRESHOLD, "stall threshold raised to the minimum");
            self.threshold = MIN_THRESHOLD;
        }
        match self.try_build() {
            Ok(detector) => detector,
            Err(e) => unreachable!("a valid threshold was refused: {e}"),
        }
    }
}

/// Watches runtimes for stalls (see the crate docs). Cheap to clone; the watchdog thread stops when the last clone
/// is dropped.
#[derive(Debug, Clone)]
pub struct Detector {
    inner: Arc<Inner>,
}

/// What the detector's handles hold: the watchdog holds only [`Shared`], so it stops when the last handle (a
/// detector, a layer, a marked future) is dropped and its channel closes.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) shared: Arc<Shared>,
    /// New runtimes and new calls, taken by the watchdog at its next tick (the request path never wakes it).
    register: mpsc::Sender<watchdog::Registration>,
}

impl Inner {
    pub(crate) fn send(&self, registration: watchdog::Registration) {
        // Fails only once the watchdog is gone (the process is exiting): nothing to watch then.
        let _ = self.register.send(registration);
    }
}

/// What the detector's handles and its watchdog share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) threshold: Duration,
    /// The zero of the wrapped polls' start times.
    pub(crate) epoch: Instant,
    pub(crate) history: report::History,
    /// The stalls going on now.
    pub(crate) ongoing: Mutex<Vec<(u64, StallReport)>>,
    pub(crate) stacks_skipped: std::sync::atomic::AtomicU64,
    pub(crate) lines_suppressed: std::sync::atomic::AtomicU64,
}

/// The runtime hooks of one watched runtime (see [`Detector::hooks`]): call each from the builder's hook of the
/// same name.
pub struct Hooks {
    pub start: Box<dyn Fn() + Send + Sync>,
    pub park: Box<dyn Fn() + Send + Sync>,
    pub unpark: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hooks")
    }
}

/// A runtime being watched, as its hooks and the watchdog share it.
#[derive(Debug)]
pub(crate) struct RuntimeSlot {
    pub(crate) id: u64,
    pub(crate) name: String,
    /// Filled by the first hook that runs on one of the runtime's threads.
    pub(crate) handle: OnceLock<tokio::runtime::Handle>,
    /// For a runtime watched without hooks: the one thread that drives it, when known.
    pub(crate) driver: Option<Arc<threads::ThreadEntry>>,
    /// When watching began: a worker seen for the first time has made no progress since then, at the latest.
    pub(crate) since: Instant,
}

fn next_runtime_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Detector {
    pub fn builder() -> Builder {
        Builder {
            threshold: DEFAULT_THRESHOLD,
            stacks: true,
            stacks_per_second: DEFAULT_STACKS_PER_SECOND,
            lines_per_second: DEFAULT_LINES_PER_SECOND,
            history: DEFAULT_HISTORY,
            signal: None,
            on_stall: None,
        }
    }

    pub fn threshold(&self) -> Duration {
        self.inner.shared.threshold
    }

    /// Watches every runtime `builder` builds from now on, named `name` in reports. Installs the builder's
    /// `on_thread_start`, `on_thread_park` and `on_thread_unpark` hooks (replacing any set before: call
    /// [`Detector::instrument`] last, or call the detector's hooks from yours with [`Detector::hooks`]).
    pub fn instrument(&self, builder: &mut tokio::runtime::Builder, name: &str) {
        let hooks = self.hooks(name);
        builder.on_thread_start(hooks.start).on_thread_park(hooks.park).on_thread_unpark(hooks.unpark);
    }

    /// The hooks [`Detector::instrument`] installs, for a builder whose hooks do more.
    pub fn hooks(&self, name: &str) -> Hooks {
        let slot = Arc::new(RuntimeSlot {
            id: next_runtime_id(),
            name: name.to_owned(),
            handle: OnceLock::new(),
            driver: None,
            since: Instant::now(),
        });
        self.inner.send(watchdog::Registration::Runtime(Arc::clone(&slot)));
        let id = slot.id;
        let start = move || {
            threads::with_current(|t| t.runtime.store(id, std::sync::atomic::Ordering::Relaxed));
        };
        let park = move || {
            if slot.handle.get().is_none()
                && let Ok(handle) = tokio::runtime::Handle::try_current()
            {
                let _ = slot.handle.set(handle);
            }
            threads::with_current(|t| {
                t.runtime.store(id, std::sync::atomic::Ordering::Relaxed);
                t.worker.store(true, std::sync::atomic::Ordering::Relaxed);
                t.parked.store(true, std::sync::atomic::Ordering::Release);
            });
        };
        let unpark = || {
            threads::with_current(|t| t.parked.store(false, std::sync::atomic::Ordering::Release));
        };
        Hooks { start: Box::new(start), park: Box::new(park), unpark: Box::new(unpark) }
    }

    /// Watches the runtime this is called in, without its hooks (see the crate docs for what that sees). On a
    /// current-thread runtime the calling thread is taken as the one that drives it.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn watch_current(&self, name: &str) {
        let handle = tokio::runtime::Handle::current();
        let current_thread = handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread;
        let slot = RuntimeSlot {
            id: next_runtime_id(),
            name: name.to_owned(),
            handle: OnceLock::from(handle),
            driver: current_thread.then(threads::current).flatten(),
            since: Instant::now(),
        };
        self.inner.send(watchdog::Registration::Runtime(Arc::new(slot)));
    }

    /// The last stalls that ended (at most [`Builder::history`]), oldest first.
    pub fn recent(&self) -> Vec<StallReport> {
        self.inner.shared.history.snapshot()
    }

    /// The stalls going on now.
    pub fn ongoing(&self) -> Vec<StallReport> {
        self.inner
            .shared
            .ongoing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Stacks not taken because of the rate limit, and log lines not written because of theirs, so far.
    pub fn skipped(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.inner.shared.stacks_skipped.load(Relaxed), self.inner.shared.lines_suppressed.load(Relaxed))
    }
}
