//! One shard of a run split over several generators (`--shard I/N`, or `--shards N` with Kubernetes'
//! `JOB_COMPLETION_INDEX`): shard I sends its share so that the N shards together send the run as one generator
//! would have.
//!
//! - Open loop: the run's schedule is one series of send times; shard I (1-based) takes every Nth, starting at
//!   the Ith (calls I−1, I−1+N, I−1+2N, …). The shards' sends interleave into the requested rate, phase-offset by
//!   one call each, instead of N bursts at the same instants. For the sends to interleave, the shards share a
//!   start time: `--start-at`, or the next whole second of the wall clock.
//! - Closed loop: the workers (`-c`) are divided, the lower shards taking one more when it does not divide.
//! - `-n` is divided the same way, so the shards' counts add up to it.

use std::{fmt, str::FromStr};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// Kubernetes' index of an Indexed Job's pod (0-based), read with `--shards`.
pub const JOB_INDEX_VAR: &str = "JOB_COMPLETION_INDEX";

/// Shards at most: far more generators than any target needs, few enough that `-c` still divides sensibly.
pub const MAX_SHARDS: u64 = 1_000;

/// Which shard of how many; `index` is 1-based (shard 1/3 is the first of three).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// The shard `--shard` and `--shards` give (with `job_index`, `JOB_COMPLETION_INDEX`'s value, for
    /// `--shards`); `None` for an unsharded run.
    pub fn from_flags(
        shard: Option<&str>,
        shards: Option<u64>,
        job_index: Option<&str>,
    ) -> anyhow::Result<Option<Self>> {
        match (shard, shards) {
            (Some(_), Some(_)) => {
                bail!("--shard and --shards both given: use --shard I/N, or --shards N with {JOB_INDEX_VAR}")
            }
            (Some(text), None) => Ok(Some(text.parse().context("--shard")?)),
            (None, Some(count)) => {
                let text = job_index.with_context(|| {
                    format!("--shards {count}: {JOB_INDEX_VAR} is not set (an Indexed Job sets it; by hand, use --shard I/N)")
                })?;
                let index: u64 =
                    text.trim().parse().with_context(|| format!("{JOB_INDEX_VAR}={text:?}: not a whole number"))?;
                Self::new(index + 1, count)
                    .with_context(|| format!("--shards {count} with {JOB_INDEX_VAR}={index}"))
                    .map(Some)
            }
            (None, None) => Ok(None),
        }
    }

    /// Shard `index` (1-based) of `count`, checked.
    pub fn new(index: u64, count: u64) -> anyhow::Result<Self> {
        if !(1..=MAX_SHARDS).contains(&count) {
            bail!("{count} shards: out of range; it takes 1 to {MAX_SHARDS}");
        }
        if !(1..=count).contains(&index) {
            bail!("shard {index} of {count}: the index takes 1 to {count}");
        }
        Ok(Self { index, count })
    }

    /// This shard's part of `whole` (workers or calls): `whole / N`, one more for the first `whole % N` shards.
    pub fn part(self, whole: u64) -> u64 {
        whole / self.count + u64::from(self.index - 1 < whole % self.count)
    }

    /// The run-wide number of this shard's `i`th open-loop call.
    pub fn global_call(self, i: u64) -> u64 {
        i.saturating_mul(self.count).saturating_add(self.index - 1)
    }
}

impl FromStr for Shard {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((index, count)) = s.split_once('/') else { bail!("{s:?}: write I/N, as 2/3 (the second of three)") };
        let number = |t: &str| t.trim().parse::<u64>().with_context(|| format!("{s:?}: {t:?} is not a whole number"));
        Self::new(number(index)?, number(count)?)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_add_up_and_calls_interleave() {
        let shards: Vec<Shard> = (1..=3).map(|i| Shard::new(i, 3).expect("valid")).collect();
        for whole in [0, 1, 2, 50, 200, 1001] {
            assert_eq!(shards.iter().map(|s| s.part(whole)).sum::<u64>(), whole);
        }
        assert_eq!(shards.iter().map(|s| s.part(50)).collect::<Vec<_>>(), [17, 17, 16]);
        let mut calls: Vec<u64> = shards.iter().flat_map(|s| (0..4).map(|i| s.global_call(i))).collect();
        calls.sort_unstable();
        assert_eq!(calls, (0..12).collect::<Vec<_>>());
    }

    #[test]
    fn flags_and_the_job_index() {
        assert_eq!(Shard::from_flags(Some("2/3"), None, None).expect("ok"), Some(Shard { index: 2, count: 3 }));
        assert_eq!(Shard::from_flags(None, Some(4), Some("0")).expect("ok"), Some(Shard { index: 1, count: 4 }));
        assert_eq!(Shard::from_flags(None, None, Some("3")).expect("ok"), None);
        let e = |r: anyhow::Result<Option<Shard>>| format!("{:#}", r.expect_err("refused"));
        assert!(e(Shard::from_flags(None, Some(4), None)).contains("JOB_COMPLETION_INDEX is not set"));
        assert!(e(Shard::from_flags(None, Some(4), Some("4"))).contains("index takes 1 to 4"));
        assert!(e(Shard::from_flags(Some("0/3"), None, None)).contains("--shard"));
        assert!(e(Shard::from_flags(Some("3"), None, None)).contains("I/N"));
        assert!(e(Shard::from_flags(Some("1/2"), Some(2), None)).contains("both given"));
    }
}
