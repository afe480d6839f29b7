//! The detector on real runtimes: a task that blocks its worker, spawned with no wrapper at all, is caught with its
//! stack and the right cause, for each kind of blocking; work moved off the runtime is not.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use stallwatch::{CauseKind, Detector, StallReport};

const THRESHOLD: Duration = Duration::from_millis(10);
/// Ten thresholds here, four of the test helper's: long enough that a loaded machine cannot make it look short.
const BLOCK: Duration = Duration::from_millis(100);
/// How long a test waits for a report before it fails.
const DEADLINE: Duration = Duration::from_secs(10);

/// A two-worker runtime watched by a fresh detector.
fn runtime() -> (Detector, tokio::runtime::Runtime) {
    let detector = Detector::builder().threshold(THRESHOLD).build();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    detector.instrument(&mut builder, "test");
    (detector, builder.build().expect("runtime"))
}

/// Waits for the first ended stall whose stack names `function`.
fn stall_in(detector: &Detector, function: &str) -> StallReport {
    let started = Instant::now();
    loop {
        let recent = detector.recent();
        if let Some(found) =
            recent.iter().find(|r| r.stack.iter().any(|f| f.function.as_deref().is_some_and(|n| n.contains(function))))
        {
            return found.clone();
        }
        assert!(started.elapsed() < DEADLINE, "no stall naming {function} within {DEADLINE:?}: {recent:#?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

// Each blocking function does something after its blocking call, so that call is not a tail call (which would
// leave no frame of the function itself on the stack).
#[inline(never)]
fn sleeps_on_the_runtime() {
    std::thread::sleep(BLOCK);
    std::hint::black_box(());
}

#[inline(never)]
fn spins_on_the_runtime() -> u64 {
    let until = Instant::now() + BLOCK;
    let mut x = 1u64;
    while Instant::now() < until {
        for _ in 0..1000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    x
}

#[inline(never)]
fn waits_for_a_lock(lock: &Mutex<()>) {
    let guard = lock.lock().expect("lock");
    std::hint::black_box(&guard);
}

#[test]
fn an_unwrapped_task_that_sleeps_is_a_syscall_stall_naming_the_sleep() {
    let (detector, runtime) = runtime();
    runtime.block_on(async {
        // Wake both workers once so the watchdog can tell their threads apart.
        tokio::spawn(async { sleeps_on_the_runtime() }).await.expect("task");
    });
    let stall = stall_in(&detector, "sleeps_on_the_runtime");
    assert_eq!(stall.cause.kind, CauseKind::Syscall, "{stall:#?}");
    assert_eq!(stall.cause.syscall.as_deref(), Some("clock_nanosleep"));
    assert!(stall.length_ms >= THRESHOLD, "{stall:#?}");
    assert!(stall.call.is_none(), "no layer, no request");
    let culprit = stall.culprit(3).expect("own frames");
    assert!(culprit.starts_with("std::thread::") && culprit.contains("sleep ← "), "{culprit}");
    assert!(culprit.contains("sleeps_on_the_runtime"), "{culprit}");
    assert!(stall.thread.as_deref().is_some_and(|t| t.starts_with("tokio-rt-worker")), "{stall:#?}");
}

#[test]
fn a_task_that_computes_is_a_cpu_stall_naming_its_loop() {
    let (detector, runtime) = runtime();
    runtime.block_on(async {
        tokio::spawn(async { spins_on_the_runtime() }).await.expect("task");
    });
    let stall = stall_in(&detector, "spins_on_the_runtime");
    assert!(matches!(stall.cause.kind, CauseKind::Cpu | CauseKind::Descheduled), "{stall:#?}");
}

#[test]
fn a_task_waiting_on_a_std_mutex_is_a_lock_stall() {
    let (detector, runtime) = runtime();
    let lock = Arc::new(Mutex::new(()));
    let held = lock.lock().expect("lock");
    let waiter = Arc::clone(&lock);
    let task = runtime.spawn(async move { waits_for_a_lock(&waiter) });
    let stall = {
        let started = Instant::now();
        loop {
            if let Some(s) = detector.ongoing().into_iter().find(|s| s.length_ms >= BLOCK) {
                break s;
            }
            assert!(started.elapsed() < DEADLINE, "no ongoing stall");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    drop(held);
    runtime.block_on(task).expect("task");
    assert_eq!(stall.cause.kind, CauseKind::Lock, "{stall:#?}");
    assert!(
        stall.stack.iter().any(|f| f.function.as_deref().is_some_and(|n| n.contains("waits_for_a_lock"))),
        "{stall:#?}"
    );
}

#[test]
fn the_same_sleep_in_spawn_blocking_is_no_stall() {
    let (detector, runtime) = runtime();
    runtime.block_on(async {
        for _ in 0..3 {
            tokio::task::spawn_blocking(sleeps_on_the_runtime).await.expect("task");
        }
        // A stall that was would be reported within 1.5 thresholds of its start; this waits for more than that.
        tokio::time::sleep(THRESHOLD * 3).await;
    });
    assert!(detector.recent().is_empty(), "{:#?}", detector.recent());
    assert!(detector.ongoing().is_empty());
}

/// The test helper, both ways: a test that sleeps on its runtime fails naming the sleep; the same work moved to
/// `spawn_blocking` passes.
mod helper {
    use super::*;

    #[tokio::test]
    #[should_panic(expected = "clock_nanosleep")]
    async fn a_test_that_blocks_its_runtime_fails_naming_the_sleep() {
        let _stalls = stallwatch::testing::fail_on_stall();
        sleeps_on_the_runtime();
    }

    #[tokio::test]
    async fn the_failure_names_the_blocking_function() {
        let stalls = stallwatch::testing::fail_on_stall();
        sleeps_on_the_runtime();
        let found = stalls.finish();
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].culprit(3).is_some_and(|c| c.contains("sleeps_on_the_runtime")), "{found:#?}");
    }

    #[tokio::test]
    async fn the_same_work_in_spawn_blocking_passes() {
        let _stalls = stallwatch::testing::fail_on_stall();
        tokio::task::spawn_blocking(sleeps_on_the_runtime).await.expect("task");
    }
}
