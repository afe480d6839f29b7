//! `offload-duration`: the one duration syntax of every offload binary — each duration flag and environment
//! variable of `offload-compute`, `offload-gateway` and `offload-bench` (its commands and experiments), and the load
//! generator's config files. It is the syntax ghz users write, Go's (`20s`, `500ms`, `1m30s`, `1.5s`, `250us`,
//! `250µs`, `2h`, `0`), read by the `humantime` crate (why this crate: `docs/decisions/0030-one-duration-parser.md`).
//!
//! Around the crate, Go's rules where they differ: a leading `+` or `-` (a negative value is refused: no setting
//! here means anything with one), the Greek `μ` beside the micro sign, and Go's largest duration
//! (`2562047h47m16.854775807s`, `i64::MAX` nanoseconds) as the bound, so no setting can overflow a deadline.
//! humantime also takes longer unit names (`2min`, `1 hour`, `3days`), which Go refuses.
//!
//! A crate of its own, below both the services and the tools: the servers and the load generator read the same
//! syntax without either depending on the other (docs/architecture.md).

use std::time::Duration;

/// What every error says is accepted, so a user can fix the value without opening the docs.
pub const SYNTAX: &str = "write it as Go does, e.g. 15s, 500ms, 1m30s, 1.5s, 250us, 2h, or 0";

/// Go's largest duration: a `time.Duration` is an `i64` of nanoseconds.
pub const MAX: Duration = Duration::from_nanos(i64::MAX as u64);

/// Why a value is not a duration; each says what was given and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not in the syntax: `reason` is humantime's (where, and what it expected).
    #[error("not a duration: {input:?} ({reason}; {SYNTAX})")]
    Syntax { input: String, reason: String },
    /// Below zero, which Go's syntax can say but no setting here means.
    #[error("negative duration: {input:?} (a duration here is a length of time; {SYNTAX})")]
    Negative { input: String },
    /// Past [`MAX`].
    #[error("duration too long: {input:?} (at most 2562047h47m16.854775807s, Go's largest)")]
    TooLong { input: String },
}

/// Parses `s` (`15s`, `250ms`, `1m30s`): clap's `value_parser` for every duration flag and environment variable
/// (clap's message names the flag) and the reader of config-file durations alike.
pub fn parse(s: &str) -> Result<Duration, Error> {
    let text = s.trim();
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    // Go takes U+03BC (Greek small mu) as well as U+00B5 (micro sign), which humantime reads.
    let unsigned = unsigned.replace('\u{3bc}', "\u{b5}");
    let duration = humantime::parse_duration(&unsigned)
        .map_err(|e| Error::Syntax { input: text.to_owned(), reason: e.to_string() })?;
    if negative && !duration.is_zero() {
        return Err(Error::Negative { input: text.to_owned() });
    }
    if duration > MAX {
        return Err(Error::TooLong { input: text.to_owned() });
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn what_ghz_users_write() {
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1.5s"), Ok(ms(1500)));
        assert_eq!(parse("300ms"), Ok(ms(300)));
        assert_eq!(parse("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse("250µs"), Ok(Duration::from_micros(250)), "micro sign");
        assert_eq!(parse("250μs"), Ok(Duration::from_micros(250)), "Greek mu");
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("2h45m0.5s"), Ok(ms((2 * 3600 + 45 * 60) * 1000 + 500)));
        assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("3ns"), Ok(Duration::from_nanos(3)));
        assert_eq!(parse("+5s"), Ok(Duration::from_secs(5)));
    }

    #[test]
    fn every_default_the_binaries_declare() {
        for (text, expected) in [
            ("10ms", ms(10)),
            ("100ms", ms(100)),
            ("250ms", ms(250)),
            ("750ms", ms(750)),
            ("1s", ms(1000)),
            ("15s", ms(15_000)),
            ("120s", ms(120_000)),
            ("0s", Duration::ZERO),
        ] {
            assert_eq!(parse(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn zero_needs_no_unit_as_in_go() {
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("-0"), Ok(Duration::ZERO));
        assert_eq!(parse("-0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn surrounding_spaces_are_ignored() {
        assert_eq!(parse(" 15s\n"), Ok(ms(15_000)));
    }

    #[test]
    fn a_number_without_a_unit_is_refused() {
        let error = parse("10").expect_err("no unit").to_string();
        assert!(error.contains("\"10\"") && error.contains("1m30s"), "{error}");
    }

    #[test]
    fn garbage_is_refused_saying_what_is_accepted() {
        for garbage in ["", "fast", "1 parsec", "s", "1e3s", "--1s", "+-1s", "é5s", "5é", "PT1M30S", "1m30"] {
            let error = parse(garbage).expect_err(garbage);
            assert!(matches!(error, Error::Syntax { .. }), "{garbage}: {error:?}");
            assert!(error.to_string().contains(SYNTAX), "{garbage}: {error}");
        }
    }

    #[test]
    fn negatives_are_refused() {
        for negative in ["-1s", "-1m30s", "-0.5ms"] {
            assert_eq!(parse(negative), Err(Error::Negative { input: negative.to_owned() }));
        }
    }

    #[test]
    fn go_s_largest_duration_is_the_bound() {
        assert_eq!(parse("9223372036854775807ns"), Ok(MAX));
        assert_eq!(parse("2562047h47m16.854775807s"), Ok(MAX));
        for over in ["9223372036854775808ns", "2562048h"] {
            assert_eq!(parse(over), Err(Error::TooLong { input: over.to_owned() }));
        }
        // Past what a u64 holds: refused by the crate's own overflow check, never wrapped.
        assert!(matches!(parse("99999999999999999999h"), Err(Error::Syntax { .. })));
        assert!(matches!(parse("18446744073709551616s"), Err(Error::Syntax { .. })));
    }
}
