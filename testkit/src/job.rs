//! Jobs sized in time rather than in `n`: "a `SumOfSquares` that takes 15 ms of one core", measured by the compute
//! server that will run it, so a job means the same on a fast and a slow machine, in a debug and a release build.
//!
//! The server measures: each probe is sent `INLINE` (the kernel on one thread, nothing else in the way) straight
//! to a compute replica, and the reply's `execution.compute_us` is the kernel's own time. The best of a few calls is
//! kept, the one least disturbed by the rest of the machine.

use std::time::Duration;

use anyhow::Context;
use offload_proto::v1::{ExecMode, FactorialRequest, SumOfSquaresRequest, compute_client::ComputeClient};
use tonic::transport::Channel;

/// Sum-of-squares elements in a sizing probe: 4 Mi elements take a few ms of one core, long enough for the
/// server's microsecond clock to resolve and short enough to repeat.
const PROBE_ELEMENTS: u64 = 1 << 22;
/// Calls per measurement; the best is kept.
const BEST_OF: usize = 3;
/// Replies are up to a factorial's decimal string: allow as much as the servers send.
const MAX_REPLY_BYTES: usize = offload_proto::MAX_MESSAGE_BYTES;

/// The kernel a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// `SumOfSquares(n)`: linear in `n`.
    SumOfSquares,
    /// `Factorial(n)` with its decimal string.
    Factorial,
}

impl Kernel {
    /// The method's name, as the proto spells it.
    pub fn method(self) -> &'static str {
        match self {
            Self::SumOfSquares => "SumOfSquares",
            Self::Factorial => "Factorial",
        }
    }
}

/// A compute server's own measurement of its kernels.
#[derive(Debug, Clone)]
pub struct JobSizer {
    client: ComputeClient<Channel>,
}

impl JobSizer {
    /// Measures on the compute server at `compute_url` (`http://host:port`; a compute replica, not a gateway).
    pub async fn connect(compute_url: &str) -> anyhow::Result<Self> {
        let client = ComputeClient::new(crate::channel(compute_url).await?).max_decoding_message_size(MAX_REPLY_BYTES);
        Ok(Self { client })
    }

    /// The `n` of a `SumOfSquares` taking `job_ms` milliseconds of one core on this server (at least 1).
    pub async fn sum_of_squares_n(&mut self, job_ms: f64) -> anyhow::Result<u64> {
        let probe = self.job_time(Kernel::SumOfSquares, PROBE_ELEMENTS).await?;
        let ns_per_element = (probe.as_nanos() as f64 / PROBE_ELEMENTS as f64).max(f64::MIN_POSITIVE);
        Ok((job_ms * 1e6 / ns_per_element).max(1.0) as u64)
    }

    /// The best single-core time of `kernel(n)` on this server, over a few calls.
    pub async fn job_time(&mut self, kernel: Kernel, n: u64) -> anyhow::Result<Duration> {
        let mut best = Duration::MAX;
        for _ in 0..BEST_OF {
            let mode = ExecMode::Inline as i32;
            let execution = match kernel {
                Kernel::SumOfSquares => self
                    .client
                    .sum_of_squares(SumOfSquaresRequest { n, mode, ..Default::default() })
                    .await
                    .map(|r| r.into_inner().execution),
                Kernel::Factorial => self
                    .client
                    .factorial(FactorialRequest { n, mode, ..Default::default() })
                    .await
                    .map(|r| r.into_inner().execution),
            }
            .with_context(|| format!("sizing {}({n}) on the server", kernel.method()))?;
            let compute_us = execution.context("the reply carries no execution report")?.compute_us;
            best = best.min(Duration::from_micros(compute_us.max(1)));
        }
        Ok(best)
    }
}
