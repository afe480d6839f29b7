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

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::{
    sync::{Semaphore, mpsc},
    time::Instant,
};

use crate::recording::Recording;

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

impl Plan {
    /// How long the run is expected to take, if that can be known in advance.
    pub fn expected_duration(&self) -> Option<Duration> {
        match (self.duration, self.total, self.rps) {
            (Some(d), _, _) => Some(d),
            (None, Some(total), Some(rps)) if rps > 0.0 => Some(Duration::from_secs_f64(total as f64 / rps)),
            _ => None,
        }
    }
}

/// The scheduled send time of open-loop call `i`: evenly spaced from `start`, never drifting (computed from `i`,
/// not by adding intervals).
pub fn scheduled_at(start: Instant, rps: f64, i: u64) -> Instant {
    start + Duration::from_secs_f64(i as f64 / rps)
}

/// Runs `plan`, calling `invoke(worker)` for each call (`worker` < `concurrency`, to pick a connection).
pub async fn run<F, Fut>(plan: Plan, invoke: F, progress: Option<ProgressBar>) -> Recording
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), tonic::Status>> + Send + 'static,
{
    let invoke = Arc::new(invoke);
    let concurrency = plan.concurrency.max(1);
    let start = Instant::now();
    let mut recording = match plan.rps {
        Some(rps) if rps > 0.0 => open_loop(plan, rps, concurrency, invoke, progress.clone(), start).await,
        _ => closed_loop(plan, concurrency, invoke, progress.clone(), start).await,
    };
    recording.elapsed = start.elapsed();
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    recording
}

async fn closed_loop<F, Fut>(
    plan: Plan,
    concurrency: usize,
    invoke: Arc<F>,
    progress: Option<ProgressBar>,
    start: Instant,
) -> Recording
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), tonic::Status>> + Send + 'static,
{
    let issued = Arc::new(AtomicU64::new(0));
    let end = plan.duration.map(|d| start + d);
    // Neither a count nor a duration: ghz's default of 200 calls.
    let total = if plan.total.is_none() && end.is_none() { Some(200) } else { plan.total };
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (issued, invoke, progress) = (Arc::clone(&issued), Arc::clone(&invoke), progress.clone());
            tokio::spawn(async move {
                let mut recording = Recording::new();
                loop {
                    if total.is_some_and(|t| issued.fetch_add(1, Ordering::Relaxed) >= t)
                        || end.is_some_and(|e| Instant::now() >= e)
                    {
                        break;
                    }
                    let sent = Instant::now();
                    let outcome = invoke(worker).await;
                    recording.record_call(sent - start, sent.elapsed(), outcome);
                    if let Some(bar) = &progress {
                        bar.inc(1);
                    }
                }
                recording
            })
        })
        .collect();
    let mut recording = Recording::new();
    for worker in workers {
        if let Ok(r) = worker.await {
            recording.merge(&r);
        }
    }
    recording
}

async fn open_loop<F, Fut>(
    plan: Plan,
    rps: f64,
    concurrency: usize,
    invoke: Arc<F>,
    progress: Option<ProgressBar>,
    start: Instant,
) -> Recording
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), tonic::Status>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(concurrency));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(Duration, Duration, Result<(), tonic::Status>)>();
    let collector = tokio::spawn(async move {
        let mut recording = Recording::new();
        while let Some((sent, latency, outcome)) = done_rx.recv().await {
            recording.record_call(sent, latency, outcome);
            if let Some(bar) = &progress {
                bar.inc(1);
            }
        }
        recording
    });
    let end = plan.duration.map(|d| start + d);
    let total = if plan.total.is_none() && end.is_none() { Some(200) } else { plan.total };
    for i in 0u64.. {
        if total.is_some_and(|t| i >= t) {
            break;
        }
        let at = scheduled_at(start, rps, i);
        if end.is_some_and(|e| at >= e) {
            break;
        }
        tokio::time::sleep_until(at).await;
        // The timer's own lateness is not charged to the server; waiting here for a slot is.
        let at = Instant::now().max(at);
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { break };
        let (invoke, done_tx) = (Arc::clone(&invoke), done_tx.clone());
        let worker = (i % concurrency as u64) as usize;
        tokio::spawn(async move {
            let outcome = invoke(worker).await;
            let _ = done_tx.send((at - start, at.elapsed(), outcome));
            drop(slot);
        });
    }
    drop(done_tx);
    collector.await.unwrap_or_default()
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
mod tests {
    use tokio::sync::Mutex;

    use super::*;

    /// A fake server that handles one call at a time in 1 ms, except that it freezes for 100 ms at t = 500 ms: the
    /// shape of a runtime blocked by one long job.
    fn stalling_server(
        start: Instant,
    ) -> impl Fn(usize) -> std::pin::Pin<Box<dyn Future<Output = Result<(), tonic::Status>> + Send>> + Send + Sync + 'static
    {
        let lock = Arc::new(Mutex::new(false));
        move |_| {
            let lock = Arc::clone(&lock);
            Box::pin(async move {
                let mut stalled = lock.lock().await;
                if !*stalled && start.elapsed() >= Duration::from_millis(500) {
                    *stalled = true;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
                Ok(())
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn open_loop_charges_a_stall_to_every_call_it_delayed() {
        let start = Instant::now();
        let closed = run(
            Plan { concurrency: 1, total: None, duration: Some(Duration::from_secs(1)), rps: None },
            stalling_server(start),
            None,
        )
        .await;
        let start = Instant::now();
        let open = run(
            Plan { concurrency: 200, total: None, duration: Some(Duration::from_secs(1)), rps: Some(500.0) },
            stalling_server(start),
            None,
        )
        .await;
        // Closed loop: one slow call among ~900, so p99 looks healthy.
        assert!(closed.percentile(99.0) < Duration::from_millis(5), "closed p99 {:?}", closed.percentile(99.0));
        assert_eq!(closed.latency.max() / 1_000_000, 101, "the stall itself is seen once");
        // Open loop: every call scheduled during the stall waited for it (~50 of 500), so p99 shows the stall.
        assert_eq!(open.count(), 500);
        assert!(open.percentile(99.0) > Duration::from_millis(50), "open p99 {:?}", open.percentile(99.0));
        assert!(open.percentile(50.0) < Duration::from_millis(5));
    }

    #[tokio::test(start_paused = true)]
    async fn open_loop_sends_on_schedule_and_stops_at_total() {
        let start = Instant::now();
        let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = Arc::clone(&sent);
        let recording = run(
            Plan { concurrency: 4, total: Some(10), duration: None, rps: Some(100.0) },
            move |_| {
                log.lock().expect("lock").push(start.elapsed());
                async { Ok(()) }
            },
            None,
        )
        .await;
        assert_eq!(recording.count(), 10);
        let sent = sent.lock().expect("lock");
        for (i, at) in sent.iter().enumerate() {
            assert_eq!(at.as_millis(), i as u128 * 10, "call {i} left at {at:?}");
        }
        assert_eq!(scheduled_at(start, 3.0, 3) - start, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn closed_loop_respects_total_across_workers() {
        let recording = run(
            Plan { concurrency: 7, total: Some(100), duration: None, rps: None },
            |_| async {
                tokio::time::sleep(Duration::from_millis(3)).await;
                Err(tonic::Status::unavailable("down"))
            },
            None,
        )
        .await;
        assert_eq!(recording.count(), 100);
        assert_eq!(recording.statuses["Unavailable"], 100);
    }
}
