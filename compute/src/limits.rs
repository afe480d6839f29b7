//! The bounds on what one request may ask for, checked before any work starts.
//!
//! Each limit exists for a reason a client can act on, and the error names it: `n` bounds the time a job may take,
//! the message size bounds the memory a reply may hold and what a client can decode.

use crate::{
    error::Error,
    job::Job,
    kernel::{factorial, sum_of_squares},
};

/// Bytes a reply carries beside the decimal digits (field tags, lengths, the execution report), rounded up
/// generously so that the estimate errs on the side of refusing.
const REPLY_OVERHEAD_BYTES: u64 = 512;

/// Per-request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest `n` for `Factorial` (`--max-factorial-n`).
    pub max_factorial_n: u64,
    /// Largest `n` for `SumOfSquares` (`--max-sum-of-squares-n`).
    pub max_sum_of_squares_n: u64,
    /// Largest reply, in bytes (`--max-message-bytes`).
    pub max_message_bytes: u64,
}

impl Limits {
    /// Refuses a job that exceeds a limit, with an `INVALID_ARGUMENT`-mapped error naming it.
    pub fn check(&self, job: Job) -> Result<(), Error> {
        match job {
            Job::Factorial(n) => {
                if n > self.max_factorial_n {
                    return Err(Error::AboveLimit {
                        method: "Factorial",
                        n,
                        flag: "--max-factorial-n",
                        limit: self.max_factorial_n,
                    });
                }
                let reply = factorial::estimated_digits(n) + REPLY_OVERHEAD_BYTES;
                if reply > self.max_message_bytes {
                    return Err(Error::ReplyTooLarge { n, reply_bytes: reply, limit: self.max_message_bytes });
                }
            }
            Job::SumOfSquares(n) => {
                let limit = self.max_sum_of_squares_n.min(sum_of_squares::MAX_N);
                if n > limit {
                    return Err(Error::AboveLimit { method: "SumOfSquares", n, flag: "--max-sum-of-squares-n", limit });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits =
        Limits { max_factorial_n: 100_000, max_sum_of_squares_n: 1_000_000_000_000, max_message_bytes: 300_000 };

    #[test]
    fn boundaries() {
        assert!(LIMITS.check(Job::SumOfSquares(1_000_000_000_000)).is_ok());
        assert!(matches!(LIMITS.check(Job::SumOfSquares(1_000_000_000_001)), Err(Error::AboveLimit { .. })));
        assert!(matches!(LIMITS.check(Job::SumOfSquares(u64::MAX)), Err(Error::AboveLimit { .. })));
        assert!(LIMITS.check(Job::Factorial(0)).is_ok());
        // 100 000! has 456 574 digits: within --max-factorial-n but over a 300 kB reply limit.
        assert!(matches!(LIMITS.check(Job::Factorial(100_000)), Err(Error::ReplyTooLarge { .. })));
        assert!(matches!(LIMITS.check(Job::Factorial(100_001)), Err(Error::AboveLimit { .. })));
    }
}
