//! `cargo bench -p offload-compute --bench kernels`: the CPU kernels and the offload hop alone, in-process.
//!
//! Two parts, one run:
//! 1. divan's table: `factorial(n)` with its decimal string (malachite's own serial path, ours on one thread, ours
//!    on the rayon pool), `sum_of_squares(n)` on the pool at n, 2n and 4n (time must double with n: the proof that
//!    the loop was not folded into the closed form), and the offload hop (a no-op job sent to rayon or to
//!    `spawn_blocking` and its answer awaited).
//! 2. The ratios the README quotes, measured interleaved in this same run (so a noisy neighbour hits both sides
//!    alike): ours on the pool over GMP (through gmpy2, see [`gmp`]) for factorial at 10⁴, 10⁵ and 10⁶, elements
//!    per nanosecond and the doubling for sum of squares. The machine's load average is printed beside them.
//!
//! `OFFLOAD_BENCH_THREADS` sets the pool's size (default: the CPUs this process may use).

mod gmp;

use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

use divan::{Bencher, black_box};
use offload_compute::{
    adaptive::best_of,
    executor::{Executor, Placement},
    kernel::{Cancel, Parallelism, factorial, sum_of_squares},
};

/// The allocator the server runs with (`compute/src/main.rs`), so the kernels allocate here as they do there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Factorial sizes in divan's table: 10⁴ (a small reply), 10⁵ (the README's figure, 456 574 digits).
const FACTORIAL_N: [u64; 2] = [10_000, 100_000];
/// Factorial sizes compared with GMP, and the interleaved runs of each (best kept). On a busy machine our two
/// threads rarely get both cores for a whole run, so 10⁵ gets enough runs to catch a few; 10⁶ (5.6 million digits)
/// takes about a second a side, so it gets fewer.
const GMP_RATIO_N: [(u64, usize); 3] = [(10_000, 20), (100_000, 15), (1_000_000, 3)];
/// Sum-of-squares sizes: ~5, 10 and 20 ms on the 2-core machine, long enough to swamp the pool's hop.
const SUM_N: [u64; 3] = [100_000_000, 200_000_000, 400_000_000];
/// Repetitions of each sum-of-squares ratio measurement; the best is kept.
const RATIO_RUNS: usize = 5;

fn threads() -> usize {
    std::env::var("OFFLOAD_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// The rayon pool the kernels run on, as compute's `--rayon-threads` builds it.
fn pool() -> &'static rayon::ThreadPool {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| rayon::ThreadPoolBuilder::new().num_threads(threads()).build().expect("rayon pool"))
}

fn main() {
    println!("offload kernels: {} rayon threads, sum-of-squares SIMD: {}", threads(), sum_of_squares::simd_kind());
    divan::main();
    ratios();
}

#[divan::bench_group(sample_count = 20)]
mod factorial_decimal {
    use super::*;

    /// malachite's factorial and `to_string`, serial: the library's own path.
    #[divan::bench(args = FACTORIAL_N)]
    fn malachite(n: u64) -> String {
        factorial::reference_factorial_decimal(black_box(n))
    }

    /// Ours on one thread.
    #[divan::bench(args = FACTORIAL_N)]
    fn ours_serial(n: u64) -> String {
        factorial::factorial_decimal(black_box(n), Parallelism::Serial, &Cancel::never()).expect("never cancelled")
    }

    /// Ours on the pool (the product tree and the decimal conversion split across it).
    #[divan::bench(args = FACTORIAL_N)]
    fn ours_pool(n: u64) -> String {
        pool()
            .install(|| factorial::factorial_decimal(black_box(n), Parallelism::Pool, &Cancel::never()))
            .expect("never cancelled")
    }
}

#[divan::bench_group(sample_count = 20)]
mod sum_of_squares_pool {
    use super::*;

    /// The pool's loop at n, 2n, 4n.
    #[divan::bench(args = SUM_N)]
    fn ours_pool(bencher: Bencher, n: u64) {
        bencher.counter(divan::counter::ItemsCount::new(n)).bench(|| {
            pool().install(|| sum_of_squares::sum_of_squares(black_box(n), Parallelism::Pool, &Cancel::never()))
        });
    }
}

#[divan::bench_group(sample_count = 50)]
mod offload_hop {
    use super::*;

    fn hop(bencher: Bencher, placement: Placement) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads())
            .enable_all()
            .build()
            .expect("runtime");
        let executor = Executor::new(threads()).expect("pool");
        bencher.bench_local(|| runtime.block_on(executor.run(placement, Cancel::never(), |_, _| Ok(()))));
    }

    /// A no-op job sent to the rayon pool, its answer awaited through a oneshot.
    #[divan::bench]
    fn rayon(bencher: Bencher) {
        hop(bencher, Placement::Rayon);
    }

    /// A no-op job sent to tokio's blocking pool.
    #[divan::bench]
    fn spawn_blocking(bencher: Bencher) {
        hop(bencher, Placement::SpawnBlocking);
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// The best wall time of a side's runs, and the least CPU time (all its threads) it spent in one run. On a busy
/// machine the wall ratio is what a client sees; the CPU times show the work each side does apart from waiting for
/// a core.
#[derive(Debug, Clone, Copy)]
struct Times {
    wall: Duration,
    cpu: Duration,
}

impl Default for Times {
    fn default() -> Self {
        Self { wall: Duration::MAX, cpu: Duration::MAX }
    }
}

impl Times {
    fn keep_best(&mut self, wall: Duration, cpu: Duration) {
        self.wall = self.wall.min(wall);
        self.cpu = self.cpu.min(cpu);
    }
}

/// CPU time of this process so far, every thread (the pool's workers included), user and system.
fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

/// The machine's load average (1, 5, 15 min), printed beside the figures: the 2-core VM is shared.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map_or_else(|_| "unknown".into(), |l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// The README's ratios, both sides measured interleaved in this run.
fn ratios() {
    let never = Cancel::never();
    println!("\nratios, interleaved in this run, best of each side; load average {}", load_average());
    let ours =
        |n| pool().install(|| factorial::factorial_decimal(n, Parallelism::Pool, &never)).expect("never cancelled");
    match gmp::Gmp::start() {
        Ok(mut gmp) => {
            println!("  reference: {} (in-process, one thread)", gmp.version);
            for (n, runs) in GMP_RATIO_N {
                let (mut reference, mut ours_best) = (Times::default(), Times::default());
                for _ in 0..runs {
                    let (wall, cpu) = (Instant::now(), process_cpu());
                    let decimal = ours(n);
                    ours_best.keep_best(wall.elapsed(), process_cpu() - cpu);
                    let (wall, cpu, fingerprint) = gmp.factorial_decimal(n);
                    reference.keep_best(wall, cpu);
                    assert_eq!(gmp::Fingerprint::of(&decimal), fingerprint, "ours and GMP disagree on {n}!");
                }
                println!(
                    "  factorial({n}) with its decimal string: ours on the pool {} vs GMP {}: ours ÷ GMP = {:.2} \
                     (CPU: ours {}, GMP {})",
                    ms(ours_best.wall),
                    ms(reference.wall),
                    ours_best.wall.as_secs_f64() / reference.wall.as_secs_f64(),
                    ms(ours_best.cpu),
                    ms(reference.cpu),
                );
            }
        }
        Err(why) => {
            println!("  GMP reference skipped: {why}");
            for (n, runs) in GMP_RATIO_N {
                let t = best_of(runs, || ours(n));
                println!("  factorial({n}) with its decimal string: ours on the pool {} (no GMP to compare)", ms(t));
            }
        }
    }
    let mut base = None;
    for n in SUM_N {
        let t = best_of(RATIO_RUNS, || pool().install(|| sum_of_squares::sum_of_squares(n, Parallelism::Pool, &never)));
        let doubling = base.map_or(String::new(), |b: Duration| {
            format!(", time {:.2}× n={}", t.as_secs_f64() / b.as_secs_f64(), SUM_N[0])
        });
        base.get_or_insert(t);
        println!(
            "  sum_of_squares({n}) on the pool: {} = {:.2} elements/ns{doubling}",
            ms(t),
            n as f64 / t.as_nanos() as f64
        );
    }
}
