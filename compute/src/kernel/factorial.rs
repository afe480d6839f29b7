//! `n!` as an exact decimal string.
//!
//! The product: on one thread malachite's prime-swing factorial (measured fastest of the pure-Rust libraries on
//! these CPUs; see the README for the licence consequence); on the pool our prime-power product in two halves, one
//! per core ([`super::prime_factorial`]). The decimal conversion, which costs four to five times more than the
//! product, is ours: divide and conquer in [`super::decimal`], split across the pool when allowed. On the pool the
//! powers of ten (and their reciprocals) the conversion needs are computed while the factorial is, the three jobs
//! sharing the two cores.
//!
//! Cancellation: the product cannot be interrupted (≈ 4 ms of CPU for n = 100 000; the server's limit on n bounds
//! it); the conversion checks the job's [`Cancel`] at every split.

use malachite_base::num::arithmetic::traits::Factorial;
use malachite_nz::natural::Natural;

use super::{
    Cancel, Interrupted, Parallelism,
    decimal::{Powers, to_decimal},
    prime_factorial,
};

/// Up to here `n!` fits in a `u64` and is computed by a plain loop: no allocation, a few nanoseconds. This covers
/// the light probe `Factorial(20)`.
const U64_MAX_N: u64 = 20;

/// `n!` in decimal.
pub fn factorial_decimal(n: u64, par: Parallelism, cancel: &Cancel) -> Result<String, Interrupted> {
    if n <= U64_MAX_N {
        return Ok((1..=n).product::<u64>().to_string());
    }
    cancel.check()?;
    let digits = estimated_digits(n);
    let (value, powers) = match par {
        Parallelism::Pool => rayon::join(|| prime_factorial::factorial(n, par), || Powers::for_digits(digits, par)),
        Parallelism::Serial => (prime_factorial::factorial(n, par), Powers::for_digits(digits, par)),
    };
    to_decimal(&value, powers, par, cancel)
}

/// Decimal digits of `n!`, by Kamenetsky's formula `⌊log₁₀(2πn)/2 + n·log₁₀(n/e)⌋ + 1`. Exact for every `n` we
/// accept in practice; since `f64` rounding could make it off by one near an integer, callers use it for sizing
/// and limits (with margin), never as the reported digit count.
pub fn estimated_digits(n: u64) -> u64 {
    if n <= 1 {
        return 1;
    }
    let n = n as f64;
    let log10 = (2.0 * std::f64::consts::PI * n).log10() / 2.0 + n * (n / std::f64::consts::E).log10();
    log10.floor() as u64 + 1
}

/// `n!` with the library's own serial conversion: the reference path our speed is measured against.
pub fn reference_factorial_decimal(n: u64) -> String {
    Natural::factorial(n).to_string()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn naive(n: u64) -> String {
        (1..=n).fold(Natural::from(1u32), |acc, i| acc * Natural::from(i)).to_string()
    }

    #[test]
    fn known_values() {
        let run = |n| factorial_decimal(n, Parallelism::Serial, &Cancel::never()).expect("not cancelled");
        assert_eq!(run(0), "1");
        assert_eq!(run(1), "1");
        assert_eq!(run(5), "120");
        assert_eq!(run(20), "2432902008176640000");
        assert_eq!(run(21), "51090942171709440000");
        assert_eq!(run(25), "15511210043330985984000000");
    }

    #[test]
    fn digits_of_100_000_factorial() {
        assert_eq!(estimated_digits(100_000), 456_574);
        let s = factorial_decimal(100_000, Parallelism::Pool, &Cancel::never()).expect("not cancelled");
        assert_eq!(s.len(), 456_574);
        assert_eq!(s, reference_factorial_decimal(100_000));
    }

    #[test]
    fn estimate_matches_exact_digits() {
        for n in (0..3_000).chain([10_000, 54_321]) {
            assert_eq!(estimated_digits(n), reference_factorial_decimal(n).len() as u64, "n = {n}");
        }
    }

    proptest! {
        #[test]
        fn matches_naive_product(n in 0u64..600) {
            prop_assert_eq!(factorial_decimal(n, Parallelism::Serial, &Cancel::never()), Ok(naive(n)));
        }

        #[test]
        fn pool_and_serial_agree(n in 30_000u64..60_000) {
            let serial = factorial_decimal(n, Parallelism::Serial, &Cancel::never());
            prop_assert_eq!(factorial_decimal(n, Parallelism::Pool, &Cancel::never()), serial);
        }
    }
}
