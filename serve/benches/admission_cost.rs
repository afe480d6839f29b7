//! What fair admission costs per call, measured in one run and printed as ratios
//! (`cargo bench -p offload-serve --bench admission_cost`):
//!
//! 1. **Uncontended**: one thread admitting a call and freeing its slot, again and again: the lock-free counter
//!    admission was before it knew connections (rewritten here step for step, as the baseline),
//!    [`Admission::try_admit`], and [`Admission::admit`] with the call's connection (the servers' path).
//! 2. **Contended**: the same on two threads at once, each its own connection, sharing one admission.
//!
//! Every slot is free here: this is the cost every call pays, not the cost of waiting (which only calls that would
//! otherwise be refused pay).

use std::{
    hint::black_box,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll, Waker},
    time::Instant,
};

use offload_serve::admission::Admission;

const CALLS: u32 = 2_000_000;
/// Rounds, interleaved so the machine's drift hits every side alike; the best of each is kept.
const ROUNDS: usize = 5;

/// Admission as it was before it knew connections, step for step: a compare-and-swap under the limit, the
/// admission's `Arc` cloned and the instant taken; to free, the hold time averaged in and a subtraction.
fn counter(shared: &Arc<(AtomicUsize, AtomicU64)>, limit: usize) {
    let (in_flight, average) = &**shared;
    let mut current = in_flight.load(Ordering::Acquire);
    loop {
        assert!(current < limit);
        match in_flight.compare_exchange_weak(current, current + 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => break,
            Err(actual) => current = actual,
        }
    }
    let admitted = (Arc::clone(shared), Instant::now());
    let held = black_box(&admitted).1.elapsed().as_micros() as u64;
    let _ = average.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |a| Some(a - (a >> 3) + (held >> 3)));
    admitted.0.0.fetch_sub(1, Ordering::AcqRel);
}

/// `admit` for a call from `peer`, which never waits here (a slot is always free): polled once.
fn admit(admission: &Admission, peer: SocketAddr) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut admit = std::pin::pin!(admission.admit("--max-inflight", Some(peer), None));
    match admit.as_mut().poll(&mut cx) {
        Poll::Ready(admitted) => drop(black_box(admitted.expect("a free slot"))),
        Poll::Pending => panic!("waited although a slot was free"),
    }
}

/// Nanoseconds per call of `one` run [`CALLS`] times on each of `threads` threads at once.
fn per_call(threads: usize, one: impl Fn(usize) + Sync) -> f64 {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let one = &one;
            scope.spawn(move || {
                for _ in 0..CALLS {
                    one(thread);
                }
            });
        }
    });
    started.elapsed().as_nanos() as f64 / f64::from(CALLS)
}

fn main() {
    let peers: Vec<SocketAddr> = (0..2).map(|i| SocketAddr::from(([127, 0, 0, 1], 40_000 + i))).collect();
    let old = Arc::new((AtomicUsize::new(0), AtomicU64::new(0)));
    let admission = Admission::new(256);
    for threads in [1, 2] {
        let (mut base, mut tried, mut fair) = (f64::MAX, f64::MAX, f64::MAX);
        for _ in 0..ROUNDS {
            base = base.min(per_call(threads, |_| counter(&old, 256)));
            tried = tried.min(per_call(threads, |_| drop(black_box(admission.try_admit("--max-inflight")))));
            fair = fair.min(per_call(threads, |t| admit(&admission, peers[t])));
        }
        println!(
            "{threads} thread(s), best of {ROUNDS} x {CALLS} calls: the counter before {base:.1} ns/call, try_admit \
             {tried:.1} ns/call ({:.2}x), admit with its connection {fair:.1} ns/call ({:.2}x, +{:.1} ns)",
            tried / base,
            fair / base,
            fair - base
        );
    }
}
