//! `Σ i²` for `i` in `0..n`, exactly, by really iterating.
//!
//! LLVM recognises the natural loop `(0..n).map(|i| i * i).sum()` and replaces it with the closed form, which would
//! make every benchmark of this project meaningless. So the kernel squares every element in explicit SIMD lanes
//! (AVX-512 or AVX2, chosen at run time, with a portable loop as fallback) in a shape the optimiser cannot fold:
//! each square is split into its low and high 32-bit halves before accumulating.
//!
//! Exactness without 128-bit lanes: `[0, n)` is cut into chunks of [`CHUNK`] elements that never straddle a multiple
//! of 2³². Within a chunk every `i = a·2³² + b` has the same `a`, so
//! `Σ i² = cnt·a²·2⁶⁴ + 2a·2³²·Σb + Σb²`, where the lanes compute `Σb²` (as two 64-bit sums of 32-bit halves) and
//! `Σb` per element, and the chunk combines them in `u128`. Every element is still squared; only the constant `a`
//! is factored out.

use rayon::prelude::*;

use super::{Cancel, Interrupted, Parallelism};

/// Elements per chunk, the unit of both cancellation checks and parallel splitting. 2²⁰ elements take roughly
/// 50–150 µs on one core, so a cancelled job stops within a fraction of a millisecond, while the per-chunk overhead
/// (a cancellation check, a few `u128` operations) stays far below 0.1 %. It divides 2³², so no chunk straddles
/// the boundary where the high half of `i` changes, and `Σb` over a chunk stays below 2⁵² (no lane overflow).
pub const CHUNK: u64 = 1 << 20;

/// Largest `n` whose sum fits in `u128`: `Σ_{i<n} i² ≤ 2¹²⁸ − 1` (about 1.007·10¹³, an hour of one core).
pub const MAX_N: u64 = 10_069_012_961_345;

/// Below this many elements a `Pool` job stays on one thread: splitting costs a few microseconds of rayon
/// bookkeeping, more than the work (16 chunks ≈ 1–2 ms) would gain.
const PARALLEL_MIN: u64 = 16 * CHUNK;

/// The exact sum of `i * i` for `i` in `0..n`. Returns `None` when `n > MAX_N` (the sum would not fit a `u128`).
pub fn sum_of_squares(n: u64, par: Parallelism, cancel: &Cancel) -> Result<Option<u128>, Interrupted> {
    if n > MAX_N {
        return Ok(None);
    }
    let chunks = n.div_ceil(CHUNK);
    let chunk = |k: u64| -> Result<u128, Interrupted> {
        cancel.check()?;
        let start = k * CHUNK;
        Ok(chunk_sum(start, n.min(start + CHUNK)))
    };
    let total = if par == Parallelism::Pool && n >= PARALLEL_MIN {
        (0..chunks).into_par_iter().map(chunk).try_reduce(|| 0, |a, b| Ok(a + b))?
    } else {
        let mut total = 0u128;
        for k in 0..chunks {
            total += chunk(k)?;
        }
        total
    };
    Ok(Some(total))
}

/// The closed form `(n−1)·n·(2n−1)/6`, for tests and for checking a result; `None` on overflow.
pub fn closed_form(n: u64) -> Option<u128> {
    if n == 0 {
        return Some(0);
    }
    let (mut a, mut b, mut c) = (u128::from(n - 1), u128::from(n), 2 * u128::from(n) - 1);
    // Divide exactly before multiplying: one of a, b is even and one of a, b, c is a multiple of 3.
    if a % 2 == 0 {
        a /= 2
    } else {
        b /= 2
    }
    if a % 3 == 0 {
        a /= 3
    } else if b % 3 == 0 {
        b /= 3
    } else {
        c /= 3
    }
    a.checked_mul(b)?.checked_mul(c)
}

/// `Σ i²` over `[start, end)`, a range inside one 2³²-aligned block and at most [`CHUNK`] long.
fn chunk_sum(start: u64, end: u64) -> u128 {
    debug_assert!(start <= end && end - start <= CHUNK);
    if start == end {
        return 0;
    }
    debug_assert_eq!(start >> 32, (end - 1) >> 32, "chunk straddles a 2^32 boundary");
    let high = u128::from(start >> 32);
    let first_low = start & 0xFFFF_FFFF;
    let count = end - start;
    // Below 2³² the cross term is zero, so the lanes skip `Σb` (one add in seven).
    let Lanes { sq_lo, sq_hi, sum } =
        if high == 0 { lanes::<false>(first_low, count) } else { lanes::<true>(first_low, count) };
    let sum_sq_low = (u128::from(sq_hi) << 32) + u128::from(sq_lo);
    ((u128::from(count) * high * high) << 64) + ((2 * high * u128::from(sum)) << 32) + sum_sq_low
}

/// Per-chunk sums over `b` in `first..first + count` (all below 2³²): the low and high 32-bit halves of `b²`, and
/// `b`. With `count ≤ 2²⁰` none of them can overflow a `u64`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Lanes {
    sq_lo: u64,
    sq_hi: u64,
    sum: u64,
}

impl Lanes {
    /// From lanes that summed whole squares with wrap-around (`Σb² mod 2⁶⁴`) and, exactly, their high halves:
    /// the low halves' sum is below 2⁵² and so is recovered exactly as `wrapped − (Σhigh << 32)` mod 2⁶⁴. This
    /// saves the SIMD loop one `and` per vector (the explicit lanes are not something LLVM folds; the portable
    /// loop keeps the explicit split, since a wrapping scalar sum of squares is exactly what it folds).
    #[cfg(target_arch = "x86_64")]
    fn from_wrapping(wrapped: u64, sq_hi: u64, sum: u64) -> Self {
        Self { sq_lo: wrapped.wrapping_sub(sq_hi.wrapping_shl(32)), sq_hi, sum }
    }

    fn add(self, other: Self) -> Self {
        Self { sq_lo: self.sq_lo + other.sq_lo, sq_hi: self.sq_hi + other.sq_hi, sum: self.sum + other.sum }
    }
}

/// Picks the widest SIMD the CPU has, once per chunk (the detection results are cached, so this is a load).
/// `SUM`: whether `Σb` is needed (only above 2³²).
fn lanes<const SUM: bool>(first: u64, count: u64) -> Lanes {
    #[cfg(target_arch = "x86_64")]
    {
        if simd::avx512_available() {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            return unsafe { simd::lanes_avx512::<SUM>(first, count) };
        }
        if simd::avx2_available() {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { simd::lanes_avx2::<SUM>(first, count) };
        }
    }
    lanes_portable(first, count)
}

/// The portable fallback, also the tail handler of the SIMD paths. The `>> 32` split keeps LLVM from replacing
/// the loop with a closed form; it still auto-vectorises it with the target's baseline SIMD (SSE2 on x86-64).
fn lanes_portable(first: u64, count: u64) -> Lanes {
    let mut acc = Lanes::default();
    for b in first..first + count {
        let sq = b * b;
        acc.sq_lo += sq & 0xFFFF_FFFF;
        acc.sq_hi += sq >> 32;
        acc.sum += b;
    }
    acc
}

/// Which kernel [`sum_of_squares`] uses on this CPU, for start-up logs and benchmark reports.
pub fn simd_kind() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if simd::avx512_available() {
            return "avx512";
        }
        if simd::avx2_available() {
            return "avx2";
        }
    }
    "portable"
}

#[cfg(target_arch = "x86_64")]
mod simd {
    //! Explicit x86-64 lanes: 64-bit lanes holding `b < 2³²`, squared with the 32×32→64 unsigned multiply.

    use std::arch::x86_64::*;

    use super::{Lanes, lanes_portable};

    /// `OFFLOAD_SIMD=avx2|portable` caps the kernel below what the CPU offers, to measure the difference.
    fn cap() -> Option<String> {
        std::env::var("OFFLOAD_SIMD").ok()
    }

    pub(super) fn avx512_available() -> bool {
        static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx512f") && !matches!(cap().as_deref(), Some("avx2" | "portable"))
        })
    }

    pub(super) fn avx2_available() -> bool {
        static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVAILABLE.get_or_init(|| std::arch::is_x86_feature_detected!("avx2") && cap().as_deref() != Some("portable"))
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn lanes_avx2<const SUM: bool>(first: u64, count: u64) -> Lanes {
        // Two independent vectors of four lanes each, so the adds of one overlap the multiply of the other.
        const WIDTH: u64 = 8;
        let blocks = count / WIDTH;
        let f = first as i64;
        let mut b0 = _mm256_set_epi64x(f + 3, f + 2, f + 1, f);
        let mut b1 = _mm256_add_epi64(b0, _mm256_set1_epi64x(4));
        let step = _mm256_set1_epi64x(WIDTH as i64);
        let zero = _mm256_setzero_si256();
        let (mut lo0, mut hi0, mut s0) = (zero, zero, zero);
        let (mut lo1, mut hi1, mut s1) = (zero, zero, zero);
        for _ in 0..blocks {
            let q0 = _mm256_mul_epu32(b0, b0);
            let q1 = _mm256_mul_epu32(b1, b1);
            lo0 = _mm256_add_epi64(lo0, q0);
            lo1 = _mm256_add_epi64(lo1, q1);
            hi0 = _mm256_add_epi64(hi0, _mm256_srli_epi64::<32>(q0));
            hi1 = _mm256_add_epi64(hi1, _mm256_srli_epi64::<32>(q1));
            if SUM {
                s0 = _mm256_add_epi64(s0, b0);
                s1 = _mm256_add_epi64(s1, b1);
            }
            b0 = _mm256_add_epi64(b0, step);
            b1 = _mm256_add_epi64(b1, step);
        }
        let sum4 = |v: __m256i| -> u64 {
            let mut out = [0u64; 4];
            // SAFETY: `out` is 32 bytes, and the unaligned store has no alignment requirement.
            unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), v) };
            out.iter().fold(0u64, |a, &b| a.wrapping_add(b))
        };
        let body = Lanes::from_wrapping(
            sum4(_mm256_add_epi64(lo0, lo1)),
            sum4(_mm256_add_epi64(hi0, hi1)),
            sum4(_mm256_add_epi64(s0, s1)),
        );
        body.add(lanes_portable(first + blocks * WIDTH, count % WIDTH))
    }

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn lanes_avx512<const SUM: bool>(first: u64, count: u64) -> Lanes {
        const WIDTH: u64 = 16;
        let blocks = count / WIDTH;
        let f = first as i64;
        let mut b0 = _mm512_set_epi64(f + 7, f + 6, f + 5, f + 4, f + 3, f + 2, f + 1, f);
        let mut b1 = _mm512_add_epi64(b0, _mm512_set1_epi64(8));
        let step = _mm512_set1_epi64(WIDTH as i64);
        let zero = _mm512_setzero_si512();
        let (mut lo0, mut hi0, mut s0) = (zero, zero, zero);
        let (mut lo1, mut hi1, mut s1) = (zero, zero, zero);
        for _ in 0..blocks {
            let q0 = _mm512_mul_epu32(b0, b0);
            let q1 = _mm512_mul_epu32(b1, b1);
            lo0 = _mm512_add_epi64(lo0, q0);
            lo1 = _mm512_add_epi64(lo1, q1);
            hi0 = _mm512_add_epi64(hi0, _mm512_srli_epi64::<32>(q0));
            hi1 = _mm512_add_epi64(hi1, _mm512_srli_epi64::<32>(q1));
            if SUM {
                s0 = _mm512_add_epi64(s0, b0);
                s1 = _mm512_add_epi64(s1, b1);
            }
            b0 = _mm512_add_epi64(b0, step);
            b1 = _mm512_add_epi64(b1, step);
        }
        let sum8 = |v: __m512i| _mm512_reduce_add_epi64(v) as u64;
        let body = Lanes::from_wrapping(
            sum8(_mm512_add_epi64(lo0, lo1)),
            sum8(_mm512_add_epi64(hi0, hi1)),
            sum8(_mm512_add_epi64(s0, s1)),
        );
        body.add(lanes_portable(first + blocks * WIDTH, count % WIDTH))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn run(n: u64, par: Parallelism) -> u128 {
        sum_of_squares(n, par, &Cancel::never()).expect("never cancelled").expect("in range")
    }

    fn naive(range: std::ops::Range<u64>) -> u128 {
        range.map(|i| u128::from(i) * u128::from(i)).sum()
    }

    #[test]
    fn small_values() {
        assert_eq!(run(0, Parallelism::Serial), 0);
        assert_eq!(run(1, Parallelism::Serial), 0);
        assert_eq!(run(2, Parallelism::Serial), 1);
        assert_eq!(run(3, Parallelism::Serial), 5);
        assert_eq!(run(10, Parallelism::Serial), 285);
        assert_eq!(run(1_000_000, Parallelism::Serial), 333_332_833_333_500_000);
    }

    #[test]
    fn python_reference_value() {
        // sum(i*i for i in range(10**8)) in CPython.
        assert_eq!(run(100_000_000, Parallelism::Pool), 333_333_328_333_333_350_000_000);
    }

    #[test]
    fn max_n_is_the_u128_limit() {
        assert!(closed_form(MAX_N).is_some());
        assert!(closed_form(MAX_N + 1).is_none());
        assert_eq!(sum_of_squares(MAX_N + 1, Parallelism::Serial, &Cancel::never()), Ok(None));
    }

    #[test]
    fn chunks_across_the_2_pow_32_boundary_are_exact() {
        // Chunks just below, at and above 2^32, and a partial chunk straddling nothing: each against naive u128.
        for start in [(1u64 << 32) - CHUNK, 1 << 32, (1 << 32) + 12_345, (1 << 33) - 17] {
            let end = (start + CHUNK).min(((start >> 32) + 1) << 32);
            assert_eq!(chunk_sum(start, end), naive(start..end), "chunk at {start}");
        }
        // The top chunk before MAX_N: the largest squares the kernel ever meets.
        let top = (MAX_N / CHUNK) * CHUNK;
        assert_eq!(chunk_sum(top, MAX_N), naive(top..MAX_N));
    }

    #[test]
    fn every_lane_width_agrees_with_portable() {
        for (first, count) in [(0, 0), (0, 1), (5, 7), (0xFFFF_FFFF - 100, 101), (123_456, CHUNK)] {
            let portable = lanes_portable(first, count);
            assert_eq!(lanes::<true>(first, count), portable, "{first}+{count}");
            let without_sum = lanes::<false>(first, count);
            assert_eq!((without_sum.sq_lo, without_sum.sq_hi), (portable.sq_lo, portable.sq_hi), "{first}+{count}");
        }
    }

    #[test]
    fn cancelled_job_stops() {
        let cancel = Cancel::never();
        cancel.cancel();
        assert_eq!(sum_of_squares(10 * CHUNK, Parallelism::Serial, &cancel), Err(Interrupted::Cancelled));
    }

    proptest! {
        #[test]
        fn matches_closed_form(n in 0u64..40_000_000) {
            prop_assert_eq!(Some(run(n, Parallelism::Serial)), closed_form(n));
        }

        #[test]
        fn closed_form_matches_naive(n in 0u64..3_000) {
            prop_assert_eq!(closed_form(n), Some(naive(0..n)));
        }

        #[test]
        fn chunks_above_2_pow_32_match_naive(block in 1u64..2_000, offset in 0u64..(1 << 32) - 4096, len in 0u64..4096) {
            let start = (block << 32) + offset;
            prop_assert_eq!(chunk_sum(start, start + len), naive(start..start + len));
        }
    }
}
