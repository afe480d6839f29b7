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

/// Below this many digits the library converts directly. Every split costs a big division, so there should be
/// just enough pieces to keep the pool busy: for 100 000! (456 574 digits) on two threads, 128k-digit leaves
/// (a top split and one more level, four leaves) measured fastest; 16k leaves spent more on divisions than the
/// parallelism gained. On one thread every split is pure overhead, so the serial leaf is larger still and exists
/// only to keep a cancellation check every few tens of milliseconds on huge numbers.
const fn leaf_digits(par: Parallelism) -> u64 {
    match par {
        Parallelism::Pool => 128 * 1024,
        Parallelism::Serial => 256 * 1024,
    }
}

/// The powers of ten a conversion splits by: `pows[i] = 10^(base·2ⁱ)`, `base` chosen so that the largest power has
/// about half the digits of the number, which makes the top split (the one that decides the parallel speed-up) even.
#[derive(Debug)]
pub struct Powers {
    base: u64,
    pows: Vec<Natural>,
}

impl Powers {
    /// Powers suited to numbers of about `digits` decimal digits, converted with `par`.
    pub fn for_digits(digits: u64, par: Parallelism) -> Self {
        let leaf = leaf_digits(par);
        if digits < 2 * leaf {
            return Self { base: digits.max(1), pows: Vec::new() };
        }
        // Levels k with base = digits / 2^(k+1) in [leaf/2, leaf).
        let mut levels = 0u32;
        while digits >> (levels + 1) >= leaf {
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
        for par in [Parallelism::Serial, Parallelism::Pool] {
            let powers = Powers::for_digits(expected.len() as u64, par);
            assert_eq!(to_decimal(x, &powers, par, &Cancel::never()).as_deref(), Ok(expected.as_str()));
        }
    }

    #[test]
    fn matches_library_on_large_numbers() {
        check(&Natural::factorial(30_000));
        check(&Natural::factorial(120_000)); // over 2 × the serial leaf: the serial path splits too
        // Inner zeros: 10^k ± small values cross every split boundary.
        let p = Natural::from(10u32).pow(80_000u64);
        check(&p);
        check(&(&p + Natural::from(7u32)));
        check(&(&p - Natural::from(1u32)));
    }

    #[test]
    fn powers_split_evenly() {
        for par in [Parallelism::Pool, Parallelism::Serial] {
            let powers = Powers::for_digits(1_456_574, par);
            let top = powers.digits_of(powers.pows.len() - 1) as f64;
            assert!((top / 1_456_574.0 - 0.5).abs() < 0.01, "top split at {top} digits");
            let leaf = leaf_digits(par);
            assert!(powers.base >= leaf / 2 && powers.base < leaf, "{par:?}: base {}", powers.base);
        }
    }

    #[test]
    fn cancelled_conversion_stops() {
        let x = Natural::factorial(20_000);
        let cancel = Cancel::never();
        cancel.cancel();
        let powers = Powers::for_digits(77_338, Parallelism::Pool);
        assert_eq!(to_decimal(&x, &powers, Parallelism::Serial, &cancel), Err(Interrupted::Cancelled));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn estimate_off_by_far_still_correct(n in 9_000u64..12_000, guess in 1_000u64..200_000) {
            // The powers are only a performance hint: a bad digit estimate must never change the result.
            let x = Natural::factorial(n);
            let powers = Powers::for_digits(guess, Parallelism::Pool);
            prop_assert_eq!(to_decimal(&x, &powers, Parallelism::Serial, &Cancel::never()), Ok(x.to_string()));
        }
    }
}
