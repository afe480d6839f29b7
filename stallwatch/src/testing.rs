//! BlockHound for tokio: one line in a `#[tokio::test]` makes any stall of its runtime fail the test, with the
//! stuck code's stack and the cause in the failure message, so a blocking call is caught in CI before production.
//!
//! ```ignore
//! #[tokio::test]
//! async fn handler_does_not_block() {
//!     let _stalls = stallwatch::testing::fail_on_stall();
//!     my_handler().await; // a std::thread::sleep in here fails the test, naming the sleep
//! }
//! ```
//!
//! On the default current-thread test runtime the test's own thread drives every task, so the guard knows the
//! thread and takes its stack. On `flavor = "multi_thread"` a stall still fails the test, with its cause and
//! length; for the stack, build the runtime with [`crate::Detector::instrument`].
//!
//! The watchdog looks every half threshold, so a poll of at least 1.5 thresholds is always caught, and one
//! just past the threshold may not be.

use std::time::Duration;

use crate::{Detector, StallReport};

/// The threshold of [`fail_on_stall`]: longer than the servers' default, since a test machine is shared and a
/// poll of a few milliseconds there is noise; far shorter than any blocking call worth catching.
pub const TEST_THRESHOLD: Duration = Duration::from_millis(25);

/// Fails the test (when dropped) if its runtime stalled for [`TEST_THRESHOLD`] while the guard lived.
///
/// # Panics
/// Outside a tokio runtime.
#[must_use = "the guard checks for stalls when it is dropped, at the end of the test"]
pub fn fail_on_stall() -> StallGuard {
    fail_on_stall_over(TEST_THRESHOLD)
}

/// [`fail_on_stall`] with a threshold of the test's own.
///
/// # Panics
/// Outside a tokio runtime, or with a threshold below [`crate::MIN_THRESHOLD`].
#[must_use = "the guard checks for stalls when it is dropped, at the end of the test"]
pub fn fail_on_stall_over(threshold: Duration) -> StallGuard {
    let detector = match Detector::builder().threshold(threshold).lines_per_second(0).try_build() {
        Ok(detector) => detector,
        Err(e) => panic!("stallwatch::testing: {e}"),
    };
    detector.watch_current("test");
    StallGuard { detector, armed: true }
}

/// See [`fail_on_stall`].
#[derive(Debug)]
pub struct StallGuard {
    detector: Detector,
    /// Cleared by [`StallGuard::finish`], which hands the stalls to its caller instead.
    armed: bool,
}

impl StallGuard {
    /// The stalls seen so far, ended or still going on.
    pub fn stalls(&self) -> Vec<StallReport> {
        let mut all = self.detector.recent();
        all.extend(self.detector.ongoing());
        all
    }

    /// Ends the watch and returns the stalls instead of failing the test (for tests of the guard itself).
    pub fn finish(mut self) -> Vec<StallReport> {
        self.armed = false;
        self.settled()
    }

    /// The stalls, once those found are symbolized (a stack being taken as the test ends is waited for, up to a
    /// second: the first symbolization of a test binary with debug info takes tens of milliseconds).
    fn settled(&self) -> Vec<StallReport> {
        let until = std::time::Instant::now() + Duration::from_secs(1);
        loop {
            let stalls = self.stalls();
            let pending = stalls.iter().any(|s| s.stack_note.as_deref() == Some(crate::watchdog::BEING_TAKEN));
            if !pending || std::time::Instant::now() >= until {
                return stalls;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for StallGuard {
    fn drop(&mut self) {
        if !self.armed || std::thread::panicking() {
            return;
        }
        let stalls = self.settled();
        if stalls.is_empty() {
            return;
        }
        panic!("{}", failure(&stalls, self.detector.threshold()));
    }
}

/// The failure message: each stall with its cause, the call if any, and the stuck thread's stack.
fn failure(stalls: &[StallReport], threshold: Duration) -> String {
    let mut text = format!("the runtime stalled {} time(s) past {threshold:?}:\n", stalls.len());
    for stall in stalls {
        text.push_str(&format!(
            "\n- {:.1?} on worker {} ({}), cause: {}{}\n",
            stall.length_ms,
            stall.worker,
            stall.thread.as_deref().unwrap_or("thread unknown"),
            stall.cause,
            stall.culprit(1).map(|c| format!(", in {c}")).unwrap_or_default(),
        ));
        if let Some(call) = &stall.call {
            text.push_str(&format!("  call: {}\n", call.method));
        }
        match &stall.stack_note {
            Some(note) if stall.stack.is_empty() => text.push_str(&format!("  no stack: {note}\n")),
            _ => text.push_str(&stall.stack_text()),
        }
    }
    text
}
