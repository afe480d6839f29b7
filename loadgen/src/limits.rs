//! The bounds every number a user or a server gives the load generator is held to, in one place, each with the
//! reason for its value. A number outside its range is refused at start-up, before any connection is opened, by a
//! message naming the flag (or config key) and the range it takes ([`check_range`]): never a panic, an abort
//! or a silent fallback to another meaning. `docs/loadgen.md` ("Limits") lists them for users.

use std::ops::RangeInclusive;

use anyhow::bail;

/// The slowest open-loop rate, calls per second: one call every 1000 s. Slower is not load, and the schedule's
/// arithmetic (`i / rps` seconds) stays exact in a `Duration` far past any run's length.
pub const MIN_RPS: f64 = 0.001;
/// The fastest open-loop rate, calls per second: far above what one process sends over HTTP/2 (hundreds of
/// thousands at most), so no real plan is refused, and every schedule step stays at least a microsecond.
pub const MAX_RPS: f64 = 1_000_000.0;
/// Workers (`-c`) at most: each is a task with its own recording, and more calls in flight than this from one
/// process measure the load generator's queues, not the server.
pub const MAX_CONCURRENCY: usize = 10_000;
/// HTTP/2 connections (`--connections`) at most: each is a socket and a file descriptor.
pub const MAX_CONNECTIONS: usize = 1_000;
/// The load generator's tokio worker threads (`--cpus`) at most: more than this many runnable threads contend
/// for the same cores instead of adding any; each also reserves a stack.
pub const MAX_CPUS: usize = 1_024;
/// `{{randomString N}}`'s N at most: 1 MiB of text per action, far above any id or padding a request needs and
/// far below what would exhaust memory when rendered for every call.
pub const MAX_RANDOM_STRING: i64 = 1 << 20;

/// `value` if it lies in `range`; otherwise an error naming `what` (the flag or key) and the range.
pub fn check_range<T>(what: &str, value: T, range: RangeInclusive<T>, unit: &str) -> anyhow::Result<T>
where
    T: PartialOrd + std::fmt::Display + Copy,
{
    if range.contains(&value) {
        return Ok(value);
    }
    bail!("{what} {value}: out of range; it takes {} to {}{unit}", range.start(), range.end())
}

/// An open-loop rate as `--rps` (or a config's `rps`) takes it: `0` for none (ghz's default: closed loop), else
/// a finite number from [`MIN_RPS`] to [`MAX_RPS`]. NaN, infinities and negatives are refused, not read as 0.
pub fn check_rps(what: &str, rps: f64) -> anyhow::Result<Option<f64>> {
    if rps == 0.0 {
        return Ok(None);
    }
    if !rps.is_finite() || !(MIN_RPS..=MAX_RPS).contains(&rps) {
        // `{:?}`: a float as the user wrote it (`1e-300`, `NaN`, `inf`), not 300 zeros.
        bail!(
            "{what} {rps:?}: out of range; it takes 0 (no rate: closed loop) or {MIN_RPS} to {MAX_RPS} calls per second"
        );
    }
    Ok(Some(rps))
}

/// A rate that must be given (no closed-loop meaning for 0): a finite number from [`MIN_RPS`] to [`MAX_RPS`].
pub fn check_rate(what: &str, rps: f64) -> anyhow::Result<f64> {
    match check_rps(what, rps) {
        Ok(Some(rps)) => Ok(rps),
        _ => bail!("{what} {rps:?}: out of range; it takes {MIN_RPS} to {MAX_RPS} calls per second"),
    }
}

/// Where a setting came from, for messages: the flag when it was given, else the config file's key.
pub fn origin(flag: &str, key: &str, from_flag: bool) -> String {
    if from_flag { flag.to_owned() } else { format!("\"{key}\" in --config") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_outside_the_range_are_refused_with_it() {
        assert_eq!(check_rps("--rps", 0.0).expect("none"), None);
        assert_eq!(check_rps("--rps", 0.5).expect("fine"), Some(0.5));
        for bad in [1e-300, f64::NAN, -5.0, f64::INFINITY, f64::NEG_INFINITY, 2e6] {
            let error = check_rps("--rps", bad).expect_err("refused").to_string();
            assert!(error.starts_with("--rps ") && error.contains("0.001 to 1000000"), "{error}");
        }
    }

    #[test]
    fn ranges_name_what_and_bounds() {
        assert_eq!(check_range("--cpus", 4, 1..=MAX_CPUS, "").expect("fine"), 4);
        let error = check_range("--cpus", 100_000, 1..=MAX_CPUS, "").expect_err("refused").to_string();
        assert_eq!(error, "--cpus 100000: out of range; it takes 1 to 1024");
    }
}
