//! Big integer → decimal string, divide and conquer, on the rayon pool when allowed.
//!
//! For a 100 000! the decimal conversion costs four times the factorial itself, and every big-integer library does
//! it on one thread. Splitting `x = q·10ᵏ + r` with `k` about half the digits gives two independent halves, so on
//! the pool the two cores convert them at once. The powers `10^(B·2ⁱ)` are computed once per job (and, for
//! factorials, while the factorial itself is being computed; see [`super::factorial`]).
//!
//! The recursion checks the job's [`Cancel`] at every split, which makes the conversion interruptible even on the
//! serial path.

use malachite_base::num::arithmetic::traits::{DivRem, Pow};
use malachite_nz::natural::Natural;

use super::{Cancel, Interrupted, Parallelism};

/// Numbers with fewer digits than this are converted by the library directly: below ~16k digits its own
/// algorithm is as fast as ours, and the divisions would only add overhead.
const LEAF_DIGITS: u64 = 16 * 1024;

/// The powers of ten a conversion splits by: `pows[i] = 10^(base·2ⁱ)`, `base` chosen so that the largest power has
/// about half the digits of the number, which makes the top split (the one that decides the parallel speed-up) even.
#[derive(Debug)]
pub struct Powers {
    base: u64,
    pows: Vec<Natural>,
}

impl Powers {
    /// Powers suited to numbers of about `digits` decimal digits.
    pub fn for_digits(digits: u64) -> Self {
        if digits < 2 * LEAF_DIGITS {
            return Self { base: digits.max(1), pows: Vec::new() };
        }
        // Levels k with base = digits / 2^(k+1) in [LEAF_DIGITS/2, LEAF_DIGITS).
        let mut levels = 0u32;
        while digits >> (levels + 1) >= LEAF_DIGITS {
            levels += 1;
        }
        let base = digits.div_ceil(1 << (levels + 1));
        let mut pows = Vec::with_capacity(levels as usize + 1);
        let mut p = Natural::from(10u32).pow(base);
        for _ in 0..levels {
            let next = &p * &p;
            pows.push(p);
            p = next;
        }
        pows.push(p);
        Self { base, pows }
    }

    fn digits_of(&self, level: usize) -> usize {
        (self.base << level) as usize
    }
}

/// `x` in decimal.
pub fn to_decimal(x: &Natural, powers: &Powers, par: Parallelism, cancel: &Cancel) -> Result<String, Interrupted> {
    let mut out = String::new();
    convert(x, &powers.pows, powers, None, par, cancel, &mut out)?;
    Ok(out)
}

/// Appends `x` to `out`, left-padded with zeros to `width` digits when given (a lower half must keep its
/// leading zeros). `pows` is the slice of powers still small enough to be useful at this depth.
fn convert(
    x: &Natural,
    pows: &[Natural],
    powers: &Powers,
    width: Option<usize>,
    par: Parallelism,
    cancel: &Cancel,
    out: &mut String,
) -> Result<(), Interrupted> {
    cancel.check()?;
    // The largest power not above x: splitting by a bigger one would give an empty upper half.
    let Some(level) = pows.iter().rposition(|p| p <= x) else {
        let digits = x.to_string();
        if let Some(width) = width {
            out.extend(std::iter::repeat_n('0', width.saturating_sub(digits.len())));
        }
        out.push_str(&digits);
        return Ok(());
    };
    let low_width = powers.digits_of(level);
    let (q, r) = x.div_rem(&pows[level]);
    let high_width = width.map(|w| w.saturating_sub(low_width));
    let smaller = &pows[..level];
    let mut low = String::new();
    match par {
        Parallelism::Pool => {
            let (high, low_res) = rayon::join(
                || convert(&q, smaller, powers, high_width, par, cancel, out),
                || convert(&r, smaller, powers, Some(low_width), par, cancel, &mut low),
            );
            high?;
            low_res?;
        }
        Parallelism::Serial => {
            convert(&q, smaller, powers, high_width, par, cancel, out)?;
            convert(&r, smaller, powers, Some(low_width), par, cancel, &mut low)?;
        }
    }
    out.push_str(&low);
    Ok(())
}

#[cfg(test)]
mod tests {
    use malachite_base::num::arithmetic::traits::Factorial;
    use proptest::prelude::*;

    use super::*;

    fn check(x: &Natural) {
        let expected = x.to_string();
        let powers = Powers::for_digits(expected.len() as u64);
        for par in [Parallelism::Serial, Parallelism::Pool] {
            assert_eq!(to_decimal(x, &powers, par, &Cancel::never()).as_deref(), Ok(expected.as_str()));
        }
    }

    #[test]
    fn matches_library_on_large_numbers() {
        check(&Natural::factorial(30_000));
        // Inner zeros: 10^k ± small values cross every split boundary.
        let p = Natural::from(10u32).pow(80_000u64);
        check(&p);
        check(&(&p + Natural::from(7u32)));
        check(&(&p - Natural::from(1u32)));
    }

    #[test]
    fn powers_split_evenly() {
        let powers = Powers::for_digits(456_574);
        let top = powers.digits_of(powers.pows.len() - 1) as f64;
        assert!((top / 456_574.0 - 0.5).abs() < 0.01, "top split at {top} digits");
        assert!(powers.base >= LEAF_DIGITS / 2 && powers.base < LEAF_DIGITS);
    }

    #[test]
    fn cancelled_conversion_stops() {
        let x = Natural::factorial(20_000);
        let cancel = Cancel::never();
        cancel.cancel();
        let powers = Powers::for_digits(77_338);
        assert_eq!(to_decimal(&x, &powers, Parallelism::Serial, &cancel), Err(Interrupted::Cancelled));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn estimate_off_by_far_still_correct(n in 9_000u64..12_000, guess in 1_000u64..200_000) {
            // The powers are only a performance hint: a bad digit estimate must never change the result.
            let x = Natural::factorial(n);
            let powers = Powers::for_digits(guess);
            prop_assert_eq!(to_decimal(&x, &powers, Parallelism::Serial, &Cancel::never()), Ok(x.to_string()));
        }
    }
}
