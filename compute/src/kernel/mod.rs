//! The CPU work itself: pure, synchronous functions with no knowledge of tokio, gRPC or execution modes.
//!
//! Every kernel takes a [`Cancel`] and checks it between chunks of work, so a job whose client gave up (deadline or
//! disconnect) stops burning CPU within one chunk, whichever thread it runs on. Kernels take a [`Parallelism`] that
//! says whether they may split across the rayon pool they are running in.

pub mod decimal;
pub mod factorial;
pub mod multiply;
pub mod prime_factorial;
pub mod sum_of_squares;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

/// Whether a kernel may fan out over the current rayon pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parallelism {
    /// Run on the calling thread only. Used by every mode that is not running inside the rayon pool: a kernel called
    /// from a tokio worker or blocking thread must not silently move its work elsewhere, or the comparison between
    /// modes would measure something other than what the mode says.
    Serial,
    /// Split across the rayon pool the caller is running in (`rayon::join` / parallel iterators).
    Pool,
}

/// Why a kernel stopped before finishing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Interrupted {
    /// The request's deadline passed.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// The request was abandoned (client disconnected, or the handler was dropped).
    #[error("cancelled")]
    Cancelled,
}

/// A cancellation flag plus an optional deadline, shared between a request and the thread running its job.
///
/// The deadline lives here, not only in the handler, because in `INLINE` and `BLOCK_IN_PLACE` modes the handler is
/// blocked inside the kernel and cannot notice a timer: the kernel itself must see that time is up.
#[derive(Debug, Clone)]
pub struct Cancel {
    inner: Arc<CancelInner>,
}

#[derive(Debug)]
struct CancelInner {
    /// Set by [`Cancel::cancel`], typically from a drop guard when the request future is dropped.
    cancelled: AtomicBool,
    /// When the client stops waiting (from `grpc-timeout`), if it said.
    deadline: Option<Instant>,
}

impl Cancel {
    /// A token that is cancelled explicitly or when `deadline` passes.
    pub fn new(deadline: Option<Instant>) -> Self {
        Self { inner: Arc::new(CancelInner { cancelled: AtomicBool::new(false), deadline }) }
    }

    /// A token that never fires on its own: for benchmarks and tests.
    pub fn never() -> Self {
        Self::new(None)
    }

    /// Asks the job to stop at its next check.
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::Relaxed);
    }

    /// The deadline this token carries.
    pub fn deadline(&self) -> Option<Instant> {
        self.inner.deadline
    }

    /// `Err` once the job should stop. Cheap enough to call every chunk (an atomic load and, with a deadline, a
    /// vDSO clock read of a few tens of nanoseconds).
    pub fn check(&self) -> Result<(), Interrupted> {
        if self.inner.cancelled.load(Ordering::Relaxed) {
            return Err(Interrupted::Cancelled);
        }
        match self.inner.deadline {
            Some(deadline) if Instant::now() >= deadline => Err(Interrupted::DeadlineExceeded),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn cancel_and_deadline_are_seen() {
        let token = Cancel::never();
        assert_eq!(token.check(), Ok(()));
        token.clone().cancel();
        assert_eq!(token.check(), Err(Interrupted::Cancelled));

        let past = Cancel::new(Some(Instant::now() - Duration::from_millis(1)));
        assert_eq!(past.check(), Err(Interrupted::DeadlineExceeded));
        let future = Cancel::new(Some(Instant::now() + Duration::from_secs(60)));
        assert_eq!(future.check(), Ok(()));
    }
}
