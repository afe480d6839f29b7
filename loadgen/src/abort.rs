//! `--abort-on-fail`: the run's calls so far, kept in one live recording beside the workers' own, checked once a
//! second; the first check that fails cancels the run (as Ctrl-C does) and says why.
//!
//! Only kept when asked for: it costs a lock per call, which the workers' own recordings avoid.

use std::{
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use tokio::time::Instant;

use crate::{cancel::Cancel, recording::Recording};

/// How often the live recording is checked: k6 checks its thresholds every two seconds; once a second stops a
/// failing run sooner, and one check (a report over the calls so far) costs far less than a second of calls.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A check of the calls so far: `Some(why)` when the run must stop.
pub type Check = Arc<dyn Fn(&Recording) -> Option<String> + Send + Sync>;

/// What `--abort-on-fail` shares with the run.
#[derive(Clone)]
pub struct Abort {
    check: Check,
    live: Arc<Mutex<Recording>>,
    why: Arc<OnceLock<String>>,
}

impl std::fmt::Debug for Abort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Abort").field("why", &self.why.get()).finish_non_exhaustive()
    }
}

impl Abort {
    /// Stops the run when `check` says so.
    pub fn new(check: Check) -> Self {
        Self { check, live: Arc::default(), why: Arc::default() }
    }

    /// Adds one finished call to the live recording.
    pub fn record(&self, latency: Duration, outcome: Result<(), tonic::Status>) {
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner).record(latency, outcome);
    }

    /// Checks the calls so far; the first failure is kept, and returned.
    pub fn check(&self) -> Option<String> {
        let live = self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let why = (self.check)(&live)?;
        Some(self.why.get_or_init(|| why).clone())
    }

    /// Why the run was stopped, if it was.
    pub fn why(&self) -> Option<&str> {
        self.why.get().map(String::as_str)
    }

    /// Checks the calls so far every [`CHECK_EVERY`] from `start`, and cancels the run at the first failure.
    pub async fn watch(self, start: Instant, cancel: Cancel) {
        let mut tick = tokio::time::interval_at(start + CHECK_EVERY, CHECK_EVERY);
        loop {
            tick.tick().await;
            if let Some(why) = self.check() {
                eprintln!("aborting: {why} (--abort-on-fail)");
                cancel.cancel();
                return;
            }
        }
    }
}
