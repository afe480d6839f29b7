//! The client's deadline, read from the `grpc-timeout` header.
//!
//! tonic's transport also enforces `grpc-timeout`, but it does so by dropping the handler and answering `CANCELLED`
//! ("Timeout expired"), which tells the client the wrong thing, and it cannot reach a kernel that blocks its thread
//! (`INLINE`, `BLOCK_IN_PLACE`). So handlers take the deadline themselves, pass it down to the job, and answer
//! `DEADLINE_EXCEEDED`. They aim [`EARLY`] before the transport's timer so that their answer is the one sent.

use std::time::{Duration, Instant};

use tonic::metadata::MetadataMap;

/// How much earlier than the transport's own timer a handler gives up. tokio's timers have millisecond
/// granularity, so a deadline computed a few microseconds after the transport's can land one tick later and lose
/// the race; one millisecond ahead always wins it.
pub const EARLY: Duration = Duration::from_millis(1);

/// The `grpc-timeout` header's name.
pub const HEADER: &str = "grpc-timeout";

/// The instant by which the handler should answer, if the client set a timeout. Malformed headers are ignored,
/// as the transport ignores them.
pub fn from_metadata(metadata: &MetadataMap, now: Instant) -> Option<Instant> {
    let timeout = parse_timeout(metadata.get(HEADER)?.to_str().ok()?)?;
    Some(now + timeout.saturating_sub(EARLY))
}

/// Parses a `grpc-timeout` value: at most eight ASCII digits and a unit (`H M S m u n`), per the gRPC HTTP/2 spec.
pub fn parse_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Formats a duration as a `grpc-timeout` value in the finest unit that fits eight digits. It truncates, so the
/// receiver's timeout is never longer than the time the sender has left.
pub fn format_timeout(timeout: Duration) -> String {
    let nanos = timeout.as_nanos();
    for (unit, per) in [("n", 1u128), ("u", 1_000), ("m", 1_000_000), ("S", 1_000_000_000)] {
        let amount = nanos / per;
        if amount < 100_000_000 {
            return format!("{amount}{unit}");
        }
    }
    format!("{}M", (nanos / 60_000_000_000).min(99_999_999))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_rejects_garbage() {
        assert_eq!(parse_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_timeout("9n"), Some(Duration::from_nanos(9)));
        assert_eq!(parse_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_timeout("1H"), Some(Duration::from_secs(3600)));
        for bad in ["", "S", "5", "5s", "-5S", "123456789S", "1.5S", "5 S"] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for d in [Duration::from_millis(1500), Duration::from_micros(3), Duration::from_secs(86_400)] {
            let back = parse_timeout(&format_timeout(d)).expect("valid");
            assert!(back <= d && d - back < Duration::from_secs(1), "{d:?} -> {back:?}");
        }
    }

    #[test]
    fn deadline_is_slightly_early() {
        let mut md = MetadataMap::new();
        md.insert(HEADER, "100m".parse().expect("ascii"));
        let now = Instant::now();
        assert_eq!(from_metadata(&md, now), Some(now + Duration::from_millis(99)));
        assert_eq!(from_metadata(&MetadataMap::new(), now), None);
    }
}
