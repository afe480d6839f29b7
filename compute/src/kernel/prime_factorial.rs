//! `n!` as a big integer, from its prime factorisation, in two halves computed at once on the pool.
//!
//! `n! = 2^e₂ · ∏ pᵉᵖ` over the odd primes `p ≤ n`, with Legendre's `eₚ = Σ ⌊n/pⁱ⌋`. The odd primes are dealt
//! alternately into two groups of about the same total size; each group's product `∏ pᵉᵖ` is built by reading the
//! exponents bit by bit from the top (square what is built so far, multiply in the primes whose exponent has this
//! bit), the primes of each bit multiplied in a balanced product tree. On the pool the two groups are built at
//! once, one per core, and their product (the one big multiplication left) is itself split across both cores
//! ([`super::multiply`]); then one shift applies `2^e₂`.
//!
//! On one thread the library's prime-swing factorial is used instead: the same steps one after the other measured
//! 5–15 % slower than it (thread CPU time, n = 10⁵ and 10⁶); splitting by primes is what lets the product use a
//! second core.

use malachite_base::num::{
    arithmetic::traits::{Factorial, Square},
    basic::traits::One,
};
use malachite_nz::natural::Natural;

use super::{Parallelism, multiply::mul};

/// Below this `n` the library's factorial is used as it is: the product is under ~1 ms, and a sieve, two threads
/// and a final multiplication would cost more than they save.
const LIBRARY_BELOW_N: u64 = 20_000;

/// Product trees below this many primes run on the calling thread: a few microseconds of work, less than a
/// `rayon::join` is worth.
const TREE_JOIN_MIN_PRIMES: usize = 512;

/// `n!`.
pub fn factorial(n: u64, par: Parallelism) -> Natural {
    if n < LIBRARY_BELOW_N || par == Parallelism::Serial {
        return Natural::factorial(n);
    }
    let prime_powers: Vec<(u64, u64)> = odd_primes_up_to(n).into_iter().map(|p| (p, legendre(n, p))).collect();
    // Legendre for 2 in closed form: n minus the number of one bits of n.
    let twos = n - u64::from(n.count_ones());
    // Neighbouring primes have about the same pᵉᵖ, so dealing them alternately balances the two groups.
    let first: Vec<_> = prime_powers.iter().copied().step_by(2).collect();
    let second: Vec<_> = prime_powers.iter().copied().skip(1).step_by(2).collect();
    let (a, b) = rayon::join(|| power_product(&first, par), || power_product(&second, par));
    mul(&a, &b, par) << twos
}

/// The exponent of `p` in `n!` (Legendre's formula).
fn legendre(n: u64, p: u64) -> u64 {
    let (mut m, mut e) = (n, 0);
    while m >= p {
        m /= p;
        e += m;
    }
    e
}

/// The odd primes `≤ n`, by a sieve over the odd numbers only.
fn odd_primes_up_to(n: u64) -> Vec<u64> {
    // composite[i] is about 2i + 1.
    let len = (n as usize).div_ceil(2);
    let mut composite = vec![false; len];
    let mut i = 1;
    while (2 * i + 1) * (2 * i + 1) <= n as usize {
        if !composite[i] {
            let p = 2 * i + 1;
            (p * p / 2..len).step_by(p).for_each(|j| composite[j] = true);
        }
        i += 1;
    }
    (1..len).filter(|&i| !composite[i]).map(|i| 2 * i as u64 + 1).filter(|&p| p <= n).collect()
}

/// `∏ pᵉ` over `prime_powers`, exponents read from the top bit down.
fn power_product(prime_powers: &[(u64, u64)], par: Parallelism) -> Natural {
    let top_exponent = prime_powers.iter().map(|&(_, e)| e).max().unwrap_or(0);
    let mut acc = Natural::ONE;
    for bit in (0..u64::BITS - top_exponent.leading_zeros()).rev() {
        acc = acc.square();
        let primes: Vec<u64> = prime_powers.iter().filter(|&&(_, e)| e >> bit & 1 == 1).map(|&(p, _)| p).collect();
        acc = mul(&acc, &product(&primes, par), par);
    }
    acc
}

/// `∏ ps` by a balanced tree, so that every multiplication is between numbers of about the same size.
fn product(ps: &[u64], par: Parallelism) -> Natural {
    if ps.len() <= 16 {
        // Pack primes into 64-bit words first: one big-integer step per word, not per prime.
        let mut acc = Natural::ONE;
        let mut word = 1u64;
        for &p in ps {
            match word.checked_mul(p) {
                Some(w) => word = w,
                None => {
                    acc *= Natural::from(word);
                    word = p;
                }
            }
        }
        return acc * Natural::from(word);
    }
    let (low, high) = ps.split_at(ps.len() / 2);
    let (a, b) = if par == Parallelism::Pool && ps.len() >= TREE_JOIN_MIN_PRIMES {
        rayon::join(|| product(low, par), || product(high, par))
    } else {
        (product(low, par), product(high, par))
    };
    a * b
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn primes_and_exponents() {
        assert_eq!(odd_primes_up_to(30), [3, 5, 7, 11, 13, 17, 19, 23, 29]);
        assert_eq!(odd_primes_up_to(3), [3]);
        assert_eq!(odd_primes_up_to(2), Vec::<u64>::new());
        assert_eq!(odd_primes_up_to(1_000_000).len(), 78_497); // π(10⁶) = 78 498, less the prime 2
        assert_eq!(legendre(100, 3), 48);
        assert_eq!(legendre(100, 97), 1);
    }

    #[test]
    fn matches_library_at_the_sizes_benchmarked() {
        for n in [LIBRARY_BELOW_N, 100_000] {
            assert_eq!(factorial(n, Parallelism::Pool), Natural::factorial(n), "n = {n}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn matches_library(n in LIBRARY_BELOW_N..60_000) {
            prop_assert_eq!(factorial(n, Parallelism::Pool), Natural::factorial(n));
        }
    }
}
