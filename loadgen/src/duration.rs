//! Durations on the command line and in config files, read exactly as ghz reads them: Go's `time.ParseDuration`,
//! ported here line for line (`20s`, `500ms`, `1m30s`, `1.5s`, `2h45m`, `500us`/`500µs`/`500μs`, `0`), up to Go's
//! own maximum, `9223372036854775807ns` (`2562047h47m16.854775807s`), so a ghz command line or config file means
//! the same here. Negative durations (which Go accepts) are refused: none of ghz's settings means anything with
//! one.
//!
//! A port rather than a crate: the one on crates.io overflows at 2⁶² ns instead of 2⁶³ (so it refused Go's
//! largest durations) and indexes `char`s by byte position (so non-ASCII input could panic it).

use std::time::Duration;

/// Go's bound: a `time.Duration` is an `int64` of nanoseconds.
const GO_MAX: u64 = 1 << 63;

/// Parses `s` (`10s`, `250ms`, `1m30s`), for clap's `value_parser` and config files alike.
pub fn parse(s: &str) -> Result<Duration, String> {
    let hint = "Go syntax: 15s, 500ms, 1m30s, 1.5s, 2h";
    match go_parse(s.trim()) {
        Ok((false, nanos)) | Ok((true, nanos @ 0)) => Ok(Duration::from_nanos(nanos)),
        Ok((true, _)) => Err(format!("negative duration: {s:?} ({hint})")),
        Err(why) => Err(format!("not a duration: {s:?} ({why}; {hint})")),
    }
}

/// Go's `time.ParseDuration` (`[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`): whether it is negative, and its nanoseconds.
fn go_parse(text: &str) -> Result<(bool, u64), &'static str> {
    let mut s = text.as_bytes();
    let mut negative = false;
    if let Some((&sign @ (b'-' | b'+'), rest)) = s.split_first() {
        negative = sign == b'-';
        s = rest;
    }
    if s == b"0" {
        return Ok((negative, 0));
    }
    if s.is_empty() {
        return Err("invalid duration");
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return Err("invalid duration");
        }
        let before = s.len();
        let (mut value, rest) = leading_int(s).ok_or("invalid duration")?;
        s = rest;
        let pre = before != s.len();
        let (mut fraction, mut scale, mut post) = (0, 1.0, false);
        if s.first() == Some(&b'.') {
            s = &s[1..];
            let before = s.len();
            (fraction, scale, s) = leading_fraction(s);
            post = before != s.len();
        }
        if !pre && !post {
            return Err("invalid duration");
        }
        let unit_len = s.iter().position(|&c| c == b'.' || c.is_ascii_digit()).unwrap_or(s.len());
        if unit_len == 0 {
            return Err("missing unit in duration");
        }
        let unit: u64 = match &s[..unit_len] {
            b"ns" => 1,
            // `us`, `µs` (U+00B5, micro sign) and `μs` (U+03BC, Greek mu), in UTF-8.
            b"us" | [0xC2, 0xB5, b's'] | [0xCE, 0xBC, b's'] => 1_000,
            b"ms" => 1_000_000,
            b"s" => 1_000_000_000,
            b"m" => 60_000_000_000,
            b"h" => 3_600_000_000_000,
            _ => return Err("unknown unit in duration"),
        };
        s = &s[unit_len..];
        if value > GO_MAX / unit {
            return Err("invalid duration (overflow)");
        }
        value *= unit;
        if fraction > 0 {
            // Go's own float arithmetic, so fractions round as they do in ghz.
            value += (fraction as f64 * (unit as f64 / scale)) as u64;
            if value > GO_MAX {
                return Err("invalid duration (overflow)");
            }
        }
        total += value;
        if total > GO_MAX {
            return Err("invalid duration (overflow)");
        }
    }
    if !negative && total > GO_MAX - 1 {
        return Err("invalid duration (overflow)");
    }
    Ok((negative, total))
}

/// Go's `leadingInt`: the digits at the start of `s` and what follows, `None` past 2⁶³.
fn leading_int(s: &[u8]) -> Option<(u64, &[u8])> {
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    let mut x: u64 = 0;
    for &c in &s[..digits] {
        if x > GO_MAX / 10 {
            return None;
        }
        x = x * 10 + u64::from(c - b'0');
        if x > GO_MAX {
            return None;
        }
    }
    Some((x, &s[digits..]))
}

/// Go's `leadingFraction`: the digits after a `.`, as a number and its scale (digits past 2⁶³ are dropped).
fn leading_fraction(s: &[u8]) -> (u64, f64, &[u8]) {
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    let (mut x, mut scale, mut overflow) = (0u64, 1.0, false);
    for &c in &s[..digits] {
        if overflow {
            continue;
        }
        if x > (GO_MAX - 1) / 10 {
            overflow = true;
            continue;
        }
        let y = x * 10 + u64::from(c - b'0');
        if y > GO_MAX {
            overflow = true;
            continue;
        }
        x = y;
        scale *= 10.0;
    }
    (x, scale, &s[digits..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse("500µs"), Ok(Duration::from_micros(500)));
        assert_eq!(parse("500μs"), Ok(Duration::from_micros(500)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("2h45m0.5s"), Ok(Duration::from_millis((2 * 3600 + 45 * 60) * 1000 + 500)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("+0"), Ok(Duration::ZERO));
        assert_eq!(parse("-0s"), Ok(Duration::ZERO));
        assert_eq!(parse("3ns"), Ok(Duration::from_nanos(3)));
        assert_eq!(parse(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1.s"), Ok(Duration::from_secs(1)));
    }

    #[test]
    fn go_s_largest_durations_are_taken() {
        let max = Duration::from_nanos(i64::MAX as u64);
        assert_eq!(parse("9223372036854775807ns"), Ok(max));
        assert_eq!(parse("2562047h47m16.854775807s"), Ok(max));
        assert!(parse("9223372036854775808ns").expect_err("2^63").contains("overflow"));
        assert!(parse("2562048h").expect_err("past Go's int64").contains("overflow"));
    }

    #[test]
    fn refuses_what_go_refuses_and_negatives() {
        assert!(parse("fast").expect_err("not a duration").contains("\"fast\""));
        assert!(parse("10").is_err(), "Go wants a unit on anything but 0");
        assert!(parse("1 m").is_err(), "no spaces in Go's syntax");
        assert!(parse("5é").is_err());
        assert!(parse("é5s").is_err());
        assert!(parse(".s").is_err());
        assert!(parse("").is_err());
        assert!(parse("1d").expect_err("no days in Go").contains("unknown unit"));
        assert!(parse("-1s").expect_err("negative").contains("negative"));
    }
}
