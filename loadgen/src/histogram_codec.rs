//! Histograms as text in a report: HdrHistogram's V2 compressed encoding (deflate) in standard base64, the form
//! HdrHistogram's Java, Go and Python ports read (`HISTFAAA…`). Lossless: a histogram read back holds the same
//! counts at the same values, so reports written by several processes add up to exactly what one process would
//! have recorded (`merge`), and `diff` resamples the very counts that were seen.

use anyhow::{Context, anyhow};
use base64::{Engine, engine::general_purpose::STANDARD};
use hdrhistogram::{
    Histogram,
    serialization::{Deserializer, Serializer, V2DeflateSerializer},
};

/// `histogram`, V2-compressed and base64-encoded; empty text for an empty histogram (nothing to carry).
pub fn encode(histogram: &Histogram<u64>) -> String {
    if histogram.is_empty() {
        return String::new();
    }
    let mut bytes = Vec::new();
    // Writing to a Vec cannot fail for I/O; the encoder only fails on a histogram it cannot represent, which
    // one with valid bounds is not.
    match V2DeflateSerializer::new().serialize(histogram, &mut bytes) {
        Ok(_) => STANDARD.encode(bytes),
        Err(_) => String::new(),
    }
}

/// The histogram `text` encodes (empty text: an empty histogram with `like`'s bounds); `what` names the field in
/// errors.
pub fn decode(text: &str, like: &Histogram<u64>, what: &str) -> anyhow::Result<Histogram<u64>> {
    let mut histogram = Histogram::new_from(like);
    if text.is_empty() {
        return Ok(histogram);
    }
    let bytes = STANDARD.decode(text.trim()).with_context(|| format!("{what}: not base64"))?;
    let read: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| anyhow!("{what}: not an HdrHistogram V2 encoding ({e:?})"))?;
    histogram.add(&read).map_err(|e| anyhow!("{what}: values outside the report's bounds ({e:?})"))?;
    Ok(histogram)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_exactly() {
        let mut h = Histogram::<u64>::new_with_bounds(1_000, 600_000_000_000, 3).expect("bounds");
        for v in [1_000u64, 1_234_567, 9_999_999, 42_000_000_000] {
            h.record_n(v, v % 7 + 1).expect("in range");
        }
        let text = encode(&h);
        assert!(text.starts_with("HISTF"), "{text}");
        let back = decode(&text, &h, "h").expect("decodes");
        assert_eq!(back, h);
        assert!(decode("", &h, "h").expect("empty").is_empty());
        let e = decode("not base64!", &h, "latencyHistogram").expect_err("refused").to_string();
        assert!(e.contains("latencyHistogram"), "{e}");
        let e = decode("AAAA", &h, "latencyHistogram").expect_err("refused").to_string();
        assert!(e.contains("HdrHistogram"), "{e}");
    }
}
