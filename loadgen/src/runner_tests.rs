//! The runner on a paused clock: open loop against a stalling fake server, schedules, -x, --skipFirst and
//! --duration-stop.

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

fn counting(total: Option<u64>, duration: Option<Duration>, rps: Option<f64>, concurrency: usize) -> Plan {
    Plan { concurrency, total, duration, rps }
}

/// A server answering every call in `ms` milliseconds.
fn answers_in(
    ms: u64,
) -> impl Fn(usize) -> std::pin::Pin<Box<dyn Future<Output = Result<(), tonic::Status>> + Send>> + Send + Sync {
    move |_| {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(())
        })
    }
}

#[tokio::test(start_paused = true)]
async fn load_schedule_step_raises_the_open_loop_rate() {
    use crate::schedule::{Schedule, ScheduleArgs};
    let args = ScheduleArgs {
        kind: "step".into(),
        start: 10,
        end: 30,
        step: 10,
        step_duration: Some(Duration::from_secs(1)),
        max_duration: None,
    };
    let controls = Controls { load: Some(Schedule::new("load", &args, 0.0).expect("valid")), ..Controls::default() };
    let recording =
        run_with(counting(None, Some(Duration::from_secs(3)), None, 100), controls, answers_in(1), None).await;
    // 10 calls in the first second, 20 in the second, 30 in the third.
    let per_second = |s: u64| recording.details.iter().filter(|d| d.sent.as_secs() == s).count();
    assert_eq!((per_second(0), per_second(1), per_second(2)), (10, 20, 30));
    assert_eq!(recording.end_reason, EndReason::Timeout);
}

#[tokio::test(start_paused = true)]
async fn concurrency_schedule_adds_workers_over_time() {
    use crate::schedule::{Schedule, ScheduleArgs};
    let args = ScheduleArgs { kind: "line".into(), start: 1, end: 4, step: 1, ..ScheduleArgs::default() };
    let controls =
        Controls { concurrency: Some(Schedule::new("concurrency", &args, 0.0).expect("valid")), ..Controls::default() };
    let recording =
        run_with(counting(None, Some(Duration::from_millis(4500)), None, 1), controls, answers_in(10), None).await;
    // One worker the first second (~100 calls of 10 ms), two the next, then three, then four (the end).
    let per_second = |s: u64| recording.details.iter().filter(|d| d.sent.as_secs() == s).count();
    let counts = [per_second(0), per_second(1), per_second(2), per_second(3), per_second(4)];
    for (i, expected) in [100, 200, 300, 400].iter().enumerate() {
        assert!((counts[i] as i64 - expected).abs() <= 4, "second {i}: {counts:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn max_duration_stops_a_count_that_would_take_longer() {
    let controls = Controls { max_duration: Some(Duration::from_millis(100)), ..Controls::default() };
    let recording = run_with(counting(Some(1000), None, None, 1), controls, answers_in(10), None).await;
    assert_eq!(recording.count(), 10);
    assert_eq!(recording.end_reason, EndReason::Timeout);
    let normal = run_with(counting(Some(5), None, None, 1), Controls::default(), answers_in(10), None).await;
    assert_eq!(normal.end_reason, EndReason::Normal);
}

#[tokio::test(start_paused = true)]
async fn skip_first_leaves_the_first_calls_out() {
    let controls = Controls { skip_first: 3, ..Controls::default() };
    let recording = run_with(counting(Some(10), None, None, 1), controls, answers_in(1), None).await;
    assert_eq!(recording.count(), 7);
}

#[tokio::test(start_paused = true)]
async fn duration_stop_decides_the_calls_in_flight() {
    let plan = counting(None, Some(Duration::from_millis(95)), None, 1);
    let with = |duration_stop| Controls { duration_stop, ..Controls::default() };
    // Calls of 10 ms: nine end inside 95 ms, the tenth is in flight at the end.
    let close = run_with(plan, with(DurationStop::Close), answers_in(10), None).await;
    assert_eq!((close.count(), close.statuses.get("Unavailable").copied()), (10, Some(1)));
    let ignore = run_with(plan, with(DurationStop::Ignore), answers_in(10), None).await;
    assert_eq!((ignore.count(), ignore.failed()), (9, 0));
    let wait = run_with(plan, with(DurationStop::Wait), answers_in(10), None).await;
    assert_eq!((wait.count(), wait.failed()), (10, 0));
}

#[tokio::test(start_paused = true)]
async fn cancel_ends_the_run_with_cancel() {
    let cancel = Cancel::new();
    let flag = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        flag.cancel();
    });
    let controls = Controls { cancel: Some(cancel), ..Controls::default() };
    let recording =
        run_with(counting(None, Some(Duration::from_secs(10)), None, 2), controls, answers_in(10), None).await;
    assert_eq!(recording.end_reason, EndReason::Cancel);
    assert!(recording.count() <= 12, "{}", recording.count());
}

#[tokio::test(start_paused = true)]
async fn cancel_ends_calls_in_flight_at_once_whatever_their_deadline() {
    for rps in [None, Some(0.001)] {
        let cancel = Cancel::new();
        let flag = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            flag.cancel();
        });
        let controls = Controls { cancel: Some(cancel), ..Controls::default() };
        let plan = Plan { concurrency: 2, total: Some(10), duration: None, rps };
        let started = Instant::now();
        // Calls that never end: only the cancellation can end the run.
        let recording = run_with(plan, controls, |_| std::future::pending::<Result<(), tonic::Status>>(), None).await;
        assert_eq!(recording.end_reason, EndReason::Cancel);
        assert!(started.elapsed() < Duration::from_secs(1), "{rps:?}: ended {:?} after the start", started.elapsed());
        assert_eq!(recording.statuses.get("Canceled").copied(), Some(if rps.is_some() { 1 } else { 2 }), "{rps:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_shard_sends_every_nth_call_of_the_schedule_from_the_shared_start() {
    // Shard 2 of 3 of 300 calls/s: calls 1, 4, 7, … of the run's schedule, 10 ms apart, from --start-at.
    let start_at = SystemTime::now() + Duration::from_millis(250);
    let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = Arc::clone(&sent);
    let shard = Shard::new(2, 3).expect("valid");
    let controls = Controls { shard: Some(shard), start_at: Some(start_at), ..Controls::default() };
    let called = Instant::now();
    let recording = run_with(
        Plan { concurrency: 4, total: Some(5), duration: None, rps: Some(300.0) },
        controls,
        move |_| {
            log.lock().expect("lock").push(Instant::now() - called);
            async { Ok(()) }
        },
        None,
    )
    .await;
    assert_eq!(recording.count(), 5);
    let sent = sent.lock().expect("lock");
    let start = Duration::from_millis(250);
    for (i, at) in sent.iter().enumerate() {
        let due = start + Duration::from_secs_f64((1 + 3 * i) as f64 / 300.0);
        assert!(at.abs_diff(due) < Duration::from_millis(2), "call {i} left at {at:?}, due at {due:?}");
    }
    let health = recording.generator.as_ref().expect("the generator measured");
    assert!(health.lateness.as_ref().is_some_and(|h| h.len() == 5), "each send's lateness");
}
