//! Big integer → decimal string, divide and conquer, on the rayon pool when allowed.
//!
//! For a 100 000! the decimal conversion costs several times the factorial itself, and every big-integer library
//! does it on one thread. Splitting `x = q·10ᵏ + r` with `k` about half the digits gives two independent halves, so
//! on the pool the two cores convert them at once. The powers `10^(B·2ⁱ)` are computed once per job (and, for
//! factorials, while the factorial itself is being computed; see [`super::factorial`]).
//!
//! The library's division costs five to six times a multiplication of the same size (malachite 0.14, measured in
//! thread CPU time at 24k to 760k bits). So every split but the top one divides by a power of ten whose reciprocal
//! was computed beside the power: a Barrett division, one multiplication, one low-half product and a short
//! correction. Each level's reciprocal comes from the one below by squaring and a Newton-style correction, about
//! three multiplications, which pays off because level `i` below the top serves `2ⁱ` splits. The top power divides
//! once, so it gets no reciprocal (computing one costs about what the library's division does) and the library
//! divides by it, while the other core derives the reciprocals. On the pool, the big multiplications are themselves
//! split across both cores ([`super::multiply`]).
//!
//! The recursion checks the job's [`Cancel`] at every split, which makes the conversion interruptible even on the
//! serial path.

use malachite_base::num::{
    arithmetic::traits::{DivRem, ModPowerOf2, ModPowerOf2Mul, Pow},
    basic::traits::One,
    logic::traits::SignificantBits,
};
use malachite_nz::natural::Natural;

use super::{Cancel, Interrupted, Parallelism, multiply::mul};

/// Below this many digits the library converts directly. For 100 000! on one thread, leaves of 4k to 32k digits
/// cost the same within 1 % (thread CPU time: the library's conversion of a leaf costs about what our splits of it
/// would); 8k gives 64 leaves, plenty for two threads to share evenly.
const LEAF_DIGITS: u64 = 8 * 1024;

/// One power of ten the conversion splits by, with what makes dividing by it cheap.
#[derive(Debug)]
struct Power {
    value: Natural,
    /// `value`'s significant bits, `m`.
    bits: u64,
    /// `⌊2^(2m) / value⌋`: with it Barrett's quotient estimate is never above the true quotient and at most two
    /// below. `None` for the top power, which the library divides by.
    reciprocal: Option<Natural>,
}

impl Power {
    fn new(value: Natural) -> Self {
        Self { bits: value.significant_bits(), value, reciprocal: None }
    }

    /// The next level: this power squared, without a reciprocal yet.
    fn squared(&self, par: Parallelism) -> Self {
        Self::new(mul(&self.value, &self.value, par))
    }

    /// Our reciprocal by the library's division: for the first level, whose number is small.
    fn exact_reciprocal(&self) -> Natural {
        (Natural::ONE << (2 * self.bits)) / &self.value
    }

    /// Our reciprocal derived from `root`'s, where `self = root²`: `A = R²` rescaled is at most the true reciprocal
    /// and off by about twice `root`'s relative error; the remainder `e = 2^(2m) − A·v` then gives the missing
    /// `c ≈ e / v` by one Barrett step with `A` itself, which squares the relative error away, and `e − c·v` (a
    /// product half the size) the last few units, so every level's reciprocal is exact and errors cannot grow from
    /// level to level.
    fn reciprocal_from(&self, root: &Power, par: Parallelism) -> Natural {
        let (value, bits) = (&self.value, self.bits);
        let own = root.reciprocal.as_ref().expect("the level below has its reciprocal");
        let approx = mul(own, own, par) >> (4 * root.bits - 2 * bits);
        let excess = (Natural::ONE << (2 * bits)) - mul(&approx, value, par);
        let correction = mul(&(&excess >> (bits - 1)), &approx, par) >> (bits + 1);
        let mut remainder = excess - mul(&correction, value, par);
        let mut reciprocal = approx + correction;
        while remainder >= *value {
            remainder -= value;
            reciprocal += Natural::ONE;
        }
        reciprocal
    }

    /// `(x / value, x % value)`.
    fn div_rem(&self, x: &Natural, par: Parallelism) -> (Natural, Natural) {
        // Above 2m bits (a digit estimate far too small) Barrett's estimate would be poor: the library divides.
        let Some(reciprocal) = self.reciprocal.as_ref().filter(|_| x.significant_bits() <= 2 * self.bits) else {
            return x.div_rem(&self.value);
        };
        // Never above the true quotient (every step rounds down), and below it by two at most.
        let mut q = mul(&(x >> (self.bits - 1)), reciprocal, par) >> (self.bits + 1);
        // x − q·v < 3·v < 2^(m+2), so its low m + 2 bits are all of it: a product of the low halves suffices.
        let low_bits = self.bits + 2;
        let (x_low, qv_low) = (x.mod_power_of_2(low_bits), (&q).mod_power_of_2_mul(&self.value, low_bits));
        let mut r = if x_low >= qv_low { x_low - qv_low } else { (x_low + (Natural::ONE << low_bits)) - qv_low };
        while r >= self.value {
            r -= &self.value;
            q += Natural::ONE;
        }
        (q, r)
    }
}

/// The powers of ten a conversion splits by: `pows[i] = 10^(base·2ⁱ)`, `base` chosen so that the largest power has
/// about half the digits of the number, which makes the top split (the one that decides the parallel speed-up) even.
/// The values are computed up front (squarings, cheap); the reciprocals of the levels below the top by
/// [`to_decimal`], while the library divides by the top one.
#[derive(Debug)]
pub struct Powers {
    base: u64,
    pows: Vec<Power>,
}

impl Powers {
    /// Powers suited to numbers of about `digits` decimal digits, converted with `par`.
    pub fn for_digits(digits: u64, par: Parallelism) -> Self {
        if digits < 2 * LEAF_DIGITS {
            return Self { base: digits.max(1), pows: Vec::new() };
        }
        // Levels k with base = digits / 2^(k+1) in [leaf/2, leaf).
        let mut levels = 0u32;
        while digits >> (levels + 1) >= LEAF_DIGITS {
            levels += 1;
        }
        let base = digits.div_ceil(1 << (levels + 1));
        let mut pows = Vec::with_capacity(levels as usize + 1);
        pows.push(Power::new(Natural::from(10u32).pow(base)));
        for _ in 0..levels {
            let next = pows.last().expect("first level pushed").squared(par);
            pows.push(next);
        }
        Self { base, pows }
    }

    /// Gives every level but the top its reciprocal, each derived from the one below.
    fn derive_reciprocals(lower: &mut [Power], par: Parallelism) {
        for level in 0..lower.len() {
            let reciprocal = match level.checked_sub(1) {
                None => lower[0].exact_reciprocal(),
                Some(below) => lower[level].reciprocal_from(&lower[below], par),
            };
            lower[level].reciprocal = Some(reciprocal);
        }
    }

    fn digits_of(&self, level: usize) -> usize {
        (self.base << level) as usize
    }
}

/// `x` in decimal. The top split (by the library's division, the one step that cannot be shared) runs while the
/// reciprocals every later split needs are derived, on the other core when on the pool.
pub fn to_decimal(x: &Natural, mut powers: Powers, par: Parallelism, cancel: &Cancel) -> Result<String, Interrupted> {
    cancel.check()?;
    let mut out = String::new();
    let Some(top_level) = powers.pows.len().checked_sub(1) else {
        convert(x, &[], &powers, None, par, cancel, &mut out)?;
        return Ok(out);
    };
    let (lower, top) = powers.pows.split_at_mut(top_level);
    let top = &top[0];
    let divide_by_top = || (top.value <= *x).then(|| top.div_rem(x, par));
    let top_split = match par {
        Parallelism::Pool => rayon::join(divide_by_top, || Powers::derive_reciprocals(lower, par)).0,
        Parallelism::Serial => {
            Powers::derive_reciprocals(lower, par);
            divide_by_top()
        }
    };
    let lower = &powers.pows[..top_level];
    match top_split {
        Some((q, r)) => convert_halves(&q, &r, top_level, lower, &powers, None, par, cancel, &mut out)?,
        None => convert(x, lower, &powers, None, par, cancel, &mut out)?,
    }
    Ok(out)
}

/// Appends `x` to `out`, left-padded with zeros to `width` digits when given (a lower half must keep its
/// leading zeros). `pows` is the slice of powers still small enough to be useful at this depth.
fn convert(
    x: &Natural,
    pows: &[Power],
    powers: &Powers,
    width: Option<usize>,
    par: Parallelism,
    cancel: &Cancel,
    out: &mut String,
) -> Result<(), Interrupted> {
    cancel.check()?;
    // The largest power not above x: splitting by a bigger one would give an empty upper half.
    let Some(level) = pows.iter().rposition(|p| p.value <= *x) else {
        let digits = x.to_string();
        if let Some(width) = width {
            out.extend(std::iter::repeat_n('0', width.saturating_sub(digits.len())));
        }
        out.push_str(&digits);
        return Ok(());
    };
    let (q, r) = pows[level].div_rem(x, par);
    convert_halves(&q, &r, level, &pows[..level], powers, width, par, cancel, out)
}

/// Appends `q·10^k + r` (`r < 10^k`, `10^k` the power at `level`) to `out`, as [`convert`] does `x`, converting
/// the halves at once on the pool.
#[allow(clippy::too_many_arguments)]
fn convert_halves(
    q: &Natural,
    r: &Natural,
    level: usize,
    smaller: &[Power],
    powers: &Powers,
    width: Option<usize>,
    par: Parallelism,
    cancel: &Cancel,
    out: &mut String,
) -> Result<(), Interrupted> {
    let low_width = powers.digits_of(level);
    let high_width = width.map(|w| w.saturating_sub(low_width));
    let mut low = String::new();
    match par {
        Parallelism::Pool => {
            let (high, low_res) = rayon::join(
                || convert(q, smaller, powers, high_width, par, cancel, out),
                || convert(r, smaller, powers, Some(low_width), par, cancel, &mut low),
            );
            high?;
            low_res?;
        }
        Parallelism::Serial => {
            convert(q, smaller, powers, high_width, par, cancel, out)?;
            convert(r, smaller, powers, Some(low_width), par, cancel, &mut low)?;
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
            assert_eq!(to_decimal(x, powers, par, &Cancel::never()).as_deref(), Ok(expected.as_str()));
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
            assert!(powers.base >= LEAF_DIGITS / 2 && powers.base < LEAF_DIGITS, "{par:?}: base {}", powers.base);
        }
    }

    #[test]
    fn reciprocals_are_exact_below_the_top() {
        for par in [Parallelism::Pool, Parallelism::Serial] {
            let mut powers = Powers::for_digits(1_456_574, par);
            let top_level = powers.pows.len() - 1;
            Powers::derive_reciprocals(&mut powers.pows[..top_level], par);
            for (level, p) in powers.pows.iter().enumerate() {
                assert_eq!(p.value, Natural::from(10u32).pow(powers.base << level));
                let exact = (Natural::ONE << (2 * p.bits)) / &p.value;
                assert_eq!(p.reciprocal, (level < top_level).then_some(exact), "level {level}");
            }
        }
    }

    #[test]
    fn cancelled_conversion_stops() {
        let x = Natural::factorial(20_000);
        let cancel = Cancel::never();
        cancel.cancel();
        let powers = Powers::for_digits(77_338, Parallelism::Pool);
        assert_eq!(to_decimal(&x, powers, Parallelism::Serial, &cancel), Err(Interrupted::Cancelled));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn estimate_off_by_far_still_correct(n in 9_000u64..12_000, guess in 1_000u64..200_000) {
            // The powers are only a performance hint: a bad digit estimate must never change the result.
            let x = Natural::factorial(n);
            let powers = Powers::for_digits(guess, Parallelism::Pool);
            prop_assert_eq!(to_decimal(&x, powers, Parallelism::Serial, &Cancel::never()), Ok(x.to_string()));
        }
    }
}
