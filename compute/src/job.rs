//! A unit of work as the server sees it: which kernel, on what input, producing what; and a call as the request
//! path sees it, whichever method it came in by.

use offload_proto::v1::Execution;

use crate::kernel::{Cancel, Interrupted, Parallelism, factorial, sum_of_squares};

/// One request's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// `n!`
    Factorial(u64),
    /// `Σ i²` for `i` in `0..n`
    SumOfSquares(u64),
}

/// A job's result, as the decimal string the reply carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal(pub String);

/// A call's request, whichever method it came in by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobRequest {
    pub job: Job,
    /// The requested `ExecMode`, as sent (it may be a value this server does not know).
    pub mode: i32,
}

impl JobRequest {
    /// A `Factorial` call.
    pub fn factorial(n: u64, mode: i32) -> Self {
        Self { job: Job::Factorial(n), mode }
    }

    /// A `SumOfSquares` call.
    pub fn sum_of_squares(n: u64, mode: i32) -> Self {
        Self { job: Job::SumOfSquares(n), mode }
    }
}

/// A call's reply, before it becomes its method's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobReply {
    pub value: Decimal,
    pub execution: Execution,
}

impl Job {
    /// The RPC method name, for logs and metrics.
    pub fn method(self) -> &'static str {
        match self {
            Self::Factorial(_) => "Factorial",
            Self::SumOfSquares(_) => "SumOfSquares",
        }
    }

    /// The job's input.
    pub fn n(self) -> u64 {
        match self {
            Self::Factorial(n) | Self::SumOfSquares(n) => n,
        }
    }

    /// Does the work. Limits were checked before: an out-of-range sum is a bug, reported as a panic (and so as
    /// `INTERNAL` for this request only).
    pub fn run(self, par: Parallelism, cancel: &Cancel) -> Result<Decimal, Interrupted> {
        match self {
            Self::Factorial(n) => factorial::factorial_decimal(n, par, cancel).map(Decimal),
            Self::SumOfSquares(n) => {
                let sum = sum_of_squares::sum_of_squares(n, par, cancel)?;
                #[allow(clippy::expect_used)]
                // Limits::check rejects n > MAX_N before a job is built.
                Ok(Decimal(sum.expect("n was checked against sum_of_squares::MAX_N").to_string()))
            }
        }
    }
}
