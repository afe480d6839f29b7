//! `offload-bench kernels`: the CPU kernels and the offload hop alone, in-process, as ratios measured in one run.
//!
//! - `factorial(100 000)` to a decimal string: ours (malachite's product, our parallel conversion on the rayon
//!   pool) against the reference library's serial path (malachite's product and `to_string`).
//! - `sum_of_squares(n)` on the pool in elements per nanosecond, at n, 2n and 4n: time must double with n, the
//!   proof that the loop was not folded into the closed form.
//! - The offload hop: a no-op job sent to rayon (and to `spawn_blocking`) and its answer awaited, p50.

use std::time::{Duration, Instant};

use clap::Args;
use offload_compute::{
    adaptive::best_of,
    executor::{Executor, Placement},
    kernel::{Cancel, Parallelism, factorial, sum_of_squares},
};

/// Options of the kernel benchmark.
#[derive(Debug, Clone, Args)]
pub struct KernelArgs {
    /// Factorial size.
    #[arg(long, default_value_t = 100_000)]
    pub factorial_n: u64,
    /// Sum-of-squares size (also run at 2× and 4×).
    #[arg(long, default_value_t = 1_000_000_000)]
    pub sum_n: u64,
    /// Repetitions of each measurement; the best is reported (the least disturbed by the rest of the machine).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Threads in the rayon pool. Default: the CPUs this process may use.
    #[arg(long, default_value_t = offload_serve::runtime::available_cores())]
    pub threads: usize,
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Runs the benchmark and prints its table.
pub fn run(args: &KernelArgs) -> anyhow::Result<()> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(args.threads).build()?;
    let never = Cancel::never();
    println!("offload kernels: {} rayon threads, sum-of-squares SIMD: {}", args.threads, sum_of_squares::simd_kind());
    println!();

    let n = args.factorial_n;
    // Interleaved, so a noisy neighbour on a shared machine hits all three alike; best of each.
    let (mut reference, mut ours, mut ours_serial) = (Duration::MAX, Duration::MAX, Duration::MAX);
    for _ in 0..args.runs.max(1) {
        reference = reference.min(best_of(1, || factorial::reference_factorial_decimal(n)));
        ours = ours.min(best_of(1, || pool.install(|| factorial::factorial_decimal(n, Parallelism::Pool, &never))));
        ours_serial = ours_serial.min(best_of(1, || factorial::factorial_decimal(n, Parallelism::Serial, &never)));
    }
    println!("factorial({n}) to decimal ({} digits)", factorial::estimated_digits(n));
    println!("  reference (malachite factorial + to_string, serial)  {:>10}", ms(reference));
    println!("  ours, serial (one thread)                            {:>10}", ms(ours_serial));
    println!(
        "  ours, on the pool                                    {:>10}   {:.2}× the reference",
        ms(ours),
        reference.as_secs_f64() / ours.as_secs_f64()
    );
    println!();

    println!("sum_of_squares on the pool");
    let mut base = None;
    for k in [1, 2, 4] {
        let n = args.sum_n * k;
        let t = best_of(args.runs, || pool.install(|| sum_of_squares::sum_of_squares(n, Parallelism::Pool, &never)));
        let rate = n as f64 / t.as_nanos() as f64;
        let ratio = base.map_or(String::new(), |b: Duration| {
            format!("   time {:.2}× n={}", t.as_secs_f64() / b.as_secs_f64(), args.sum_n)
        });
        base.get_or_insert(t);
        println!("  n = {n:>14}  {:>10}  {rate:>6.2} elements/ns{ratio}", ms(t));
    }
    let serial_n = args.sum_n / 4;
    let t = best_of(args.runs, || sum_of_squares::sum_of_squares(serial_n, Parallelism::Serial, &never));
    println!("  one thread, n = {serial_n}: {:.2} elements/ns", serial_n as f64 / t.as_nanos() as f64);
    println!();

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()?;
    let executor = Executor::new(args.threads)?;
    let (rayon_p50, blocking_p50) = runtime.block_on(async {
        let mut results = Vec::new();
        for placement in [Placement::Rayon, Placement::SpawnBlocking] {
            let mut samples = Vec::with_capacity(2000);
            for _ in 0..2000 {
                let start = Instant::now();
                let _ = executor.run(placement, Cancel::never(), |_, _| Ok(())).await;
                samples.push(start.elapsed());
            }
            samples.sort_unstable();
            results.push(samples[samples.len() / 2]);
        }
        (results[0], results[1])
    });
    println!("offload hop (no-op job, submit → answer awaited), p50 of 2000");
    println!("  rayon + oneshot  {:>8.1} µs", rayon_p50.as_secs_f64() * 1e6);
    println!("  spawn_blocking   {:>8.1} µs", blocking_p50.as_secs_f64() * 1e6);
    Ok(())
}
