//! What the detector costs, measured in one run and printed as ratios
//! (`cargo bench -p stallwatch --all-features --bench cost`):
//!
//! 1. **While nothing stalls**: the same task-heavy workload (tasks that yield and do a little work, on a two-worker
//!    runtime) on a plain runtime and on an instrumented, watched one, interleaved; wall time and process CPU.
//!    And the watchdog thread's own CPU over an idle second.
//! 2. **Per request**, with the tower layer (`--features tower`): a trivial service behind the layer, off and on.
//! 3. **Per stall**: stalls of 15 ms, one after another, with a stack taken for each (the rate limit raised for the
//!    measurement) and without stacks: the stuck thread's interruption (signal to copy), the bytes copied, the
//!    watchdog's unwinding and naming, and the watchdog's CPU per stall.

use std::time::{Duration, Instant};

use stallwatch::{Detector, StallReport};

/// Tasks per workload run, and yields per task: enough polls (a million) that a run takes a few hundred ms.
const TASKS: usize = 100_000;
const YIELDS: usize = 10;
/// Pairs of runs, interleaved so the machine's drift hits both sides alike.
const PAIRS: usize = 5;
const STALLS: usize = 60;
const STALL: Duration = Duration::from_millis(15);
const THRESHOLD: Duration = Duration::from_millis(5);

fn runtime(detector: Option<&Detector>) -> tokio::runtime::Runtime {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).enable_all();
    if let Some(detector) = detector {
        detector.instrument(&mut builder, "bench");
    }
    builder.build().expect("runtime")
}

/// This process's CPU time (user + system).
fn process_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The ids of this process's watchdog threads.
fn watchdogs() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|task| std::fs::read_to_string(task.path().join("comm")).is_ok_and(|c| c.trim() == "stall-watchdog"))
        .map(|task| task.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The on-CPU time of thread `tid`, from its `schedstat`.
fn thread_cpu(tid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).unwrap_or_default();
    Duration::from_nanos(stat.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0))
}

/// The watchdog thread a detector just built started: the one not running before.
fn new_watchdog(before: &[String]) -> String {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(tid) = watchdogs().into_iter().find(|t| !before.contains(t)) {
            return tid;
        }
        assert!(Instant::now() < until, "no new watchdog thread");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// One workload run: wall time and process CPU.
fn workload(runtime: &tokio::runtime::Runtime) -> (Duration, Duration) {
    let (started, cpu) = (Instant::now(), process_cpu());
    runtime.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|i| {
                tokio::spawn(async move {
                    let mut x = i as u64;
                    for _ in 0..YIELDS {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                        tokio::task::yield_now().await;
                    }
                    x
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
    });
    (started.elapsed(), process_cpu() - cpu)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[inline(never)]
fn stalls_the_worker() {
    std::thread::sleep(STALL);
    std::hint::black_box(());
}

/// `STALLS` stalls one after another on a watched runtime; their reports and the watchdog's CPU over them.
fn stalls(stacks: bool) -> (Vec<StallReport>, Duration) {
    let running = watchdogs();
    let detector = Detector::builder()
        .threshold(THRESHOLD)
        .stacks(stacks)
        .stacks_per_second(1000)
        .lines_per_second(0)
        .history(STALLS)
        .build();
    let runtime = runtime(Some(&detector));
    runtime.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
    let watchdog = new_watchdog(&running);
    let before = thread_cpu(&watchdog);
    for _ in 0..STALLS {
        runtime.block_on(async { tokio::spawn(async { stalls_the_worker() }).await.expect("task") });
        // Let the watchdog see each stall end before the next begins.
        runtime.block_on(async { tokio::time::sleep(THRESHOLD * 2).await });
    }
    let reports = detector.recent();
    let spent = thread_cpu(&watchdog).saturating_sub(before);
    (reports, spent)
}

/// The layer's cost per request: a ready trivial service behind it, a million requests, on a current-thread
/// runtime, off and on in turns.
#[cfg(feature = "tower")]
fn per_request() {
    use tower::{Layer, Service};
    const REQUESTS: u32 = 1_000_000;
    let detector = Detector::builder().threshold(Duration::from_millis(10)).build();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let measure = |layer: stallwatch::StallLayer| {
        let mut service =
            layer.layer(tower::service_fn(|_: http::Request<()>| async { Ok::<_, std::convert::Infallible>(()) }));
        runtime.block_on(async {
            let started = Instant::now();
            for _ in 0..REQUESTS {
                let request = http::Request::builder().uri("/pkg.Svc/Trivial").body(()).expect("request");
                service.call(request).await.expect("ok");
            }
            started.elapsed().as_secs_f64() * 1e9 / f64::from(REQUESTS)
        })
    };
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for _ in 0..PAIRS {
        off.push(measure(stallwatch::StallLayer::off()));
        on.push(measure(detector.layer()));
    }
    let (off, on) = (median(off), median(on));
    println!("  the tower layer: off {off:.0} ns, on {on:.0} ns per request (cost {:.0} ns)", on - off);
}

fn main() {
    println!("stallwatch cost, {PAIRS} interleaved pairs of {TASKS} tasks × {YIELDS} yields on 2 workers");
    let running = watchdogs();
    let detector = Detector::builder().threshold(Duration::from_millis(10)).build();
    let watchdog = new_watchdog(&running);
    let (plain, watched) = (runtime(None), runtime(Some(&detector)));
    let (mut off, mut on) = (Vec::new(), Vec::new());
    workload(&plain);
    workload(&watched);
    for _ in 0..PAIRS {
        off.push(workload(&plain));
        on.push(workload(&watched));
    }
    let wall = |runs: &[(Duration, Duration)]| median(runs.iter().map(|r| r.0.as_secs_f64() * 1e3).collect());
    let cpu = |runs: &[(Duration, Duration)]| median(runs.iter().map(|r| r.1.as_secs_f64() * 1e3).collect());
    println!(
        "  nothing stalls   wall ms: off {:.1}, on {:.1} (on/off {:.3})",
        wall(&off),
        wall(&on),
        wall(&on) / wall(&off)
    );
    println!(
        "                   CPU ms:  off {:.1}, on {:.1} (on/off {:.3})",
        cpu(&off),
        cpu(&on),
        cpu(&on) / cpu(&off)
    );
    let before = thread_cpu(&watchdog);
    std::thread::sleep(Duration::from_secs(1));
    let idle = thread_cpu(&watchdog).saturating_sub(before);
    println!(
        "  watchdog, idle:  {:.3} % of a core (2 watched runtimes, a tick every 5 ms)",
        idle.as_secs_f64() * 100.0
    );
    drop((plain, watched, detector));
    #[cfg(feature = "tower")]
    per_request();

    let (with, with_cpu) = stalls(true);
    let (without, without_cpu) = stalls(false);
    let field = |reports: &[StallReport], f: fn(&stallwatch::StackCost) -> f64| {
        median(reports.iter().filter_map(|r| r.stack_cost.as_ref().map(f)).collect::<Vec<_>>())
    };
    let taken = with.iter().filter(|r| r.stack_cost.is_some()).count();
    println!("per stall ({taken} of {} stalls of {STALL:?} with a stack):", with.len());
    println!(
        "  the stuck thread: signal to copy ready, median {:.1} µs, copying {:.0} bytes",
        field(&with, |c| c.signal_to_copy_us),
        field(&with, |c| c.copied_bytes as f64)
    );
    println!("  the watchdog: unwinding and naming, median {:.1} µs", field(&with, |c| c.unwind_and_names_us));
    println!(
        "  the watchdog's CPU per stall, its ticks included: with stacks {:.1} µs, without {:.1} µs ({} stalls without)",
        with_cpu.as_secs_f64() * 1e6 / with.len().max(1) as f64,
        without_cpu.as_secs_f64() * 1e6 / without.len().max(1) as f64,
        without.len()
    );
}
