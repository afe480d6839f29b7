//! The rule that turns two probe measurements into a verdict, kept apart from the measuring so it can be read,
//! tested and tuned on its own.
//!
//! A server stalls when its loaded probe p99 is both **K times** its idle p99 and **X ms** above it. Either half
//! alone misfires on a shared 2-core machine: a ratio alone calls a 0.5 → 3.5 ms drift (CPU contention between the
//! load generator, the server and its pool) a stall, since ×8 of a tiny number is still tiny; an absolute margin
//! alone calls a slow but healthy server (idle p99 40 ms over a WAN, loaded 52 ms) a stall. A blocked event loop
//! passes both by far: every probe that lands during a blocking call waits out the rest of it, so the loaded p99
//! climbs to about the length of one blocking call (tens of milliseconds) from an idle p99 well under one.
//! `docs/stall.md` gives the measurements K and X were chosen from.

use std::{fmt, time::Duration};

/// Default K: the loaded p99 must be at least this many times the idle p99. Measured on 2 shared cores
/// (`docs/stall.md`), servers that keep the work off their loop reached ×8 (compute `RAYON`: an idle p99 of 0.5 ms
/// grows to 3–4 ms as the OS time-slices probes with the load) and blocking ones ×95 and more. The ratio is the
/// noisier half (a tiny idle p99 divides it); it is there for slow servers, X separates the rest.
pub const DEFAULT_MIN_RATIO: f64 = 10.0;
/// Default X: the loaded p99 must also be at least this far above the idle p99. Non-blocking servers added at most
/// 3.4 ms on 2 shared cores, blocking ones about a blocking call and more (72 ms to seconds with 25 ms calls); 10 ms
/// is also the shortest block worth reporting, the usual threshold for "this poll blocked".
pub const DEFAULT_MIN_EXTRA: Duration = Duration::from_millis(10);

/// The largest K `--min-ratio` takes: a million times the idle p99 is past any stall ever measured (docs/stall.md:
/// ×1 720 at most), so a larger K could only ever say `ok`.
pub const MAX_MIN_RATIO: f64 = 1_000_000.0;

/// The two thresholds of the rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    /// K: loaded p99 / idle p99 at least this.
    pub min_ratio: f64,
    /// X: loaded p99 − idle p99 at least this.
    pub min_extra: Duration,
}

impl Default for Rule {
    fn default() -> Self {
        Self { min_ratio: DEFAULT_MIN_RATIO, min_extra: DEFAULT_MIN_EXTRA }
    }
}

/// What the probes say about the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The load made the probes wait as behind a blocked event loop.
    Stalls,
    /// The probes kept their idle latency, within the rule's margins.
    Ok,
}

impl Verdict {
    /// `stalls` or `ok`, as `--json` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stalls => "stalls",
            Self::Ok => "ok",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict and the numbers it was reached from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judgement {
    pub verdict: Verdict,
    /// loaded p99 / idle p99.
    pub ratio: f64,
    /// loaded p99 − idle p99 (zero if the loaded p99 was lower).
    pub extra: Duration,
}

impl Rule {
    /// Judges a server from its probe p99 idle and loaded.
    pub fn judge(&self, idle_p99: Duration, loaded_p99: Duration) -> Judgement {
        // A microsecond floor: an idle p99 of zero (no probe recorded) must not divide by zero.
        let ratio = loaded_p99.as_secs_f64() / idle_p99.as_secs_f64().max(1e-6);
        let extra = loaded_p99.saturating_sub(idle_p99);
        let stalls = ratio >= self.min_ratio && extra >= self.min_extra;
        Judgement { verdict: if stalls { Verdict::Stalls } else { Verdict::Ok }, ratio, extra }
    }

    /// The rule in one line, printed beside every verdict.
    pub fn describe(&self) -> String {
        format!(
            "stalls when loaded p99 ≥ {}× idle p99 AND loaded p99 ≥ idle p99 + {} ms",
            self.min_ratio,
            self.min_extra.as_secs_f64() * 1e3
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: f64) -> Duration {
        Duration::from_secs_f64(v / 1e3)
    }

    #[test]
    fn a_blocked_loop_passes_both_halves() {
        let j = Rule::default().judge(ms(0.4), ms(21.0));
        assert_eq!(j.verdict, Verdict::Stalls);
        assert!((j.ratio - 52.5).abs() < 1e-9);
        assert_eq!(j.extra, ms(20.6));
    }

    #[test]
    fn a_large_ratio_of_a_tiny_latency_is_not_a_stall() {
        assert_eq!(Rule::default().judge(ms(0.3), ms(3.0)).verdict, Verdict::Ok);
    }

    #[test]
    fn a_large_margin_on_a_slow_server_is_not_a_stall() {
        assert_eq!(Rule::default().judge(ms(40.0), ms(60.0)).verdict, Verdict::Ok);
    }

    #[test]
    fn thresholds_are_inclusive_and_an_empty_idle_does_not_divide_by_zero() {
        let rule = Rule { min_ratio: 2.0, min_extra: ms(10.0) };
        assert_eq!(Rule::default().judge(ms(0.5), ms(3.5)).verdict, Verdict::Ok, "RAYON's measured worst");
        assert_eq!(rule.judge(ms(10.0), ms(20.0)).verdict, Verdict::Stalls);
        assert_eq!(rule.judge(Duration::ZERO, ms(20.0)).verdict, Verdict::Stalls);
        assert_eq!(rule.judge(ms(10.0), ms(5.0)).extra, Duration::ZERO);
    }
}
