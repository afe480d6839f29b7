//! A token bucket: at most `per_second` events a second on average, and as many at once. The watchdog's stacks
//! and log lines each have one; it is only ever used on the watchdog thread.

use std::time::Instant;

#[derive(Debug)]
pub(crate) struct Bucket {
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub(crate) fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second);
        Self { per_second, tokens: per_second, last: Instant::now() }
    }

    /// Takes a token if there is one.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.per_second);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = Bucket::new(4);
        let burst = (0..10).filter(|_| bucket.take(start)).count();
        assert_eq!(burst, 4);
        let later = (1..=44).filter(|i| bucket.take(start + Duration::from_millis(25 * i))).count();
        assert_eq!(later, 4, "1.1 s later, four more");
        assert!(!Bucket::new(0).take(start), "zero a second: never");
    }
}
