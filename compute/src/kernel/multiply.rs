//! One big multiplication on two cores.
//!
//! The library multiplies on one thread. Where a kernel's critical path is one large product (the top of the
//! factorial, the top splits of the decimal conversion, their reciprocals), the product `a·b` is cut into
//! `(a_high·b)·2ᵏ + a_low·b`: two half products computed at once by `rayon::join`, then one shift and one addition,
//! both linear. For the FFT-sized operands involved, two half products cost about what the whole one does, so the
//! wall time nearly halves.

use malachite_base::num::{
    arithmetic::traits::{ModPowerOf2, Square},
    logic::traits::SignificantBits,
};
use malachite_nz::natural::Natural;

use super::Parallelism;

/// Products whose shorter factor has fewer bits than this are done whole: below it `rayon::join` and the extra
/// addition cost more than they save, and the kernels' own recursion already keeps both cores busy below the top.
pub const PAR_MUL_MIN_BITS: u64 = 1 << 18;

/// `a·b`, split in two half products run at once on the pool when both factors are large.
pub fn mul(a: &Natural, b: &Natural, par: Parallelism) -> Natural {
    let (long, short) = if a.significant_bits() >= b.significant_bits() { (a, b) } else { (b, a) };
    if par == Parallelism::Serial || short.significant_bits() < PAR_MUL_MIN_BITS {
        // The library squares faster than it multiplies; split halves are never the same number.
        return if std::ptr::eq(a, b) { a.square() } else { a * b };
    }
    let half = long.significant_bits() / 2;
    let (high, low) = (long >> half, long.mod_power_of_2(half));
    let (high, low) = rayon::join(|| &high * short, || &low * short);
    (high << half) + low
}

#[cfg(test)]
mod tests {
    use malachite_base::num::arithmetic::traits::Factorial;

    use super::*;

    #[test]
    fn split_multiplication_matches_plain() {
        let a = Natural::factorial(40_000);
        let b = Natural::factorial(30_000) + Natural::from(12_345u32);
        assert!(b.significant_bits() >= PAR_MUL_MIN_BITS, "the test must take the split path");
        let expected = &a * &b;
        assert_eq!(mul(&a, &b, Parallelism::Pool), expected);
        assert_eq!(mul(&b, &a, Parallelism::Pool), expected);
        assert_eq!(mul(&a, &a, Parallelism::Pool), &a * &a);
    }
}
