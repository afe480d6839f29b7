//! Durations on the command line and in config files, read exactly as ghz reads them: Go's `time.ParseDuration`
//! syntax (`20s`, `500ms`, `1m30s`, `1.5s`, `2h45m`, `500us`/`500µs`, `0`), parsed by `go-parse-duration`, a port
//! of Go's own function, so a ghz command line or config file means the same here. Negative durations (which Go
//! accepts) are refused: none of ghz's settings means anything with one.
//!
//! One guard sits in front of the crate: it walks the text by `char` while bounding the walk by byte length, so
//! non-ASCII input would panic it. Go's only non-ASCII units, `µs` and `μs`, are rewritten to `us` first, and any
//! other non-ASCII text is refused before the crate sees it.

use std::time::Duration;

/// Parses `s` (`10s`, `250ms`, `1m30s`), for clap's `value_parser` and config files alike.
pub fn parse(s: &str) -> Result<Duration, String> {
    let hint = "Go syntax: 15s, 500ms, 1m30s, 1.5s, 2h";
    let ascii = s.trim().replace(['µ', 'μ'], "u");
    if !ascii.is_ascii() {
        return Err(format!("not a duration: {s:?} ({hint})"));
    }
    let nanos =
        go_parse_duration::parse_duration(&ascii).map_err(|e| format!("not a duration: {s:?} ({e:?}; {hint})"))?;
    let nanos = u64::try_from(nanos).map_err(|_| format!("negative duration: {s:?} ({hint})"))?;
    Ok(Duration::from_nanos(nanos))
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
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("2h45m0.5s"), Ok(Duration::from_millis((2 * 3600 + 45 * 60) * 1000 + 500)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("3ns"), Ok(Duration::from_nanos(3)));
    }

    #[test]
    fn refuses_what_go_refuses_and_negatives() {
        assert!(parse("fast").expect_err("not a duration").contains("\"fast\""));
        assert!(parse("10").is_err(), "Go wants a unit on anything but 0");
        assert!(parse("1 m").is_err(), "no spaces in Go's syntax");
        assert!(parse("5é").is_err());
        assert!(parse("-1s").expect_err("negative").contains("negative"));
    }
}
