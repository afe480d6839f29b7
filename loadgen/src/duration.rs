//! Durations on the command line and in config files, written as ghz (and Go) users write them: `20s`, `500ms`,
//! `1m30s`, `2h`. Parsed by `humantime`, which reads the same units (plus spaces between parts), so a ghz command
//! line or config file works here unchanged.

use std::time::Duration;

/// Parses `s` (`10s`, `250ms`, `1m30s`), for clap's `value_parser` and config files alike.
pub fn parse(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("not a duration: {s:?} ({e}; try 15s, 500ms, 1m30s)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ghz_durations() {
        assert_eq!(parse("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse("fast").expect_err("not a duration").contains("\"fast\""));
    }
}
