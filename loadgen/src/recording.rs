//! What a load run observed: every call's latency in an HDR histogram (all calls, and successful calls alone: ghz
//! computes its percentiles over the successes), the exact sum of latencies (ghz's average is over all calls), and
//! each call's outcome by status.
//!
//! HDR histograms keep three significant digits from a microsecond to ten minutes in a few tens of kilobytes,
//! whatever the number of calls, and merge exactly, so each worker records alone and the run adds them up.
//!
//! Calls recorded with their send time ([`Recording::record_call`]) are also kept one by one, up to
//! [`MAX_DETAILS`], as ghz's `details[]`: the per-call list is what latency-over-time charts and the
//! per-call output formats are drawn from.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use hdrhistogram::Histogram;
use tonic::Code;

use crate::{
    error_texts::{self, ErrorTexts},
    health,
};

/// Lowest latency distinguished: 1 µs (loopback calls take tens).
const LOWEST_NS: u64 = 1_000;
/// Highest latency recorded: 10 minutes; anything longer is clamped there (and is a failed test anyway).
const HIGHEST_NS: u64 = 600_000_000_000;

/// Calls kept one by one, at most: ghz keeps a million (`maxResult`); 32 bytes each plus any error text.
pub const MAX_DETAILS: usize = 1_000_000;

/// One call, as ghz's `details[]` keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Detail {
    /// When the call was sent (open loop: scheduled), from the start of the run.
    pub sent: Duration,
    /// How long it took.
    pub latency: Duration,
    /// Its final status.
    pub code: Code,
    /// A failed call's error as ghz prints it (`rpc error: code = … desc = …`), its message cut to
    /// [`error_texts::MAX_BYTES`], shared with every call that saw the same one ([`ErrorTexts`]).
    pub error: Option<Arc<str>>,
}

/// Latencies and outcomes of a set of calls.
#[derive(Debug, Clone)]
pub struct Recording {
    /// Latency of every call, successful or not, in nanoseconds.
    pub latency: Histogram<u64>,
    /// Latency of the calls that ended `OK`, in nanoseconds: what ghz's percentiles, fastest, slowest and histogram
    /// are over (a fast `RESOURCE_EXHAUSTED` is not a fast answer).
    pub ok_latency: Histogram<u64>,
    /// Sum of every call's latency, exact: ghz's average is over all calls.
    pub latency_sum: Duration,
    /// Wall-clock time the run started: `details[]` timestamps are this plus each call's send offset.
    pub started_at: SystemTime,
    /// Why the run ended.
    pub end_reason: EndReason,
    /// Calls by final status, in grpc-go's names (`OK`, `DeadlineExceeded`, …) as ghz reports them.
    pub statuses: BTreeMap<String, u64>,
    /// Failed calls by status and message, as ghz's `errorDistribution`: at most [`error_texts::MAX_DISTINCT`]
    /// keys per run, each cut to [`error_texts::MAX_BYTES`]; the calls past them in [`Recording::errors_beyond`].
    pub errors: BTreeMap<String, u64>,
    /// Failed calls whose error text was not kept (past [`error_texts::MAX_DISTINCT`] distinct ones).
    pub errors_beyond: u64,
    /// The run's kept error texts, shared by all its recordings.
    texts: Arc<Mutex<ErrorTexts>>,
    /// Wall time the run took.
    pub elapsed: Duration,
    /// Calls recorded with [`Recording::record_call`], in order of sending, up to [`MAX_DETAILS`].
    pub details: Vec<Detail>,
    /// What the run measured of the load generator itself (set by the runner).
    pub generator: Option<health::Observed>,
}

impl Default for Recording {
    fn default() -> Self {
        Self::new()
    }
}

impl Recording {
    /// An empty recording.
    pub fn new() -> Self {
        #[allow(clippy::expect_used)] // Constant, valid bounds.
        let latency = Histogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, 3).expect("valid histogram bounds");
        Self {
            ok_latency: latency.clone(),
            latency,
            latency_sum: Duration::ZERO,
            started_at: SystemTime::now(),
            end_reason: EndReason::Normal,
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            errors_beyond: 0,
            texts: Arc::default(),
            elapsed: Duration::ZERO,
            details: Vec::new(),
            generator: None,
        }
    }

    /// An empty recording that keeps its error texts with `other`'s: the recordings of one run's workers, so the
    /// bound on error texts is the run's.
    pub fn sharing(other: &Self) -> Self {
        Self { texts: Arc::clone(&other.texts), ..Self::new() }
    }

    /// Distinct error texts not kept (past [`error_texts::MAX_DISTINCT`]), for the report's "N more distinct".
    pub fn distinct_errors_beyond(&self) -> usize {
        self.texts().distinct_beyond()
    }

    fn texts(&self) -> std::sync::MutexGuard<'_, ErrorTexts> {
        self.texts.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts `n` failed calls under `key` (kept if there is room), or past the bound; the kept text.
    fn count_error(&mut self, key: &str, n: u64) -> Option<Arc<str>> {
        let kept = self.texts().intern(key);
        match (&kept, self.errors.get_mut(key)) {
            (Some(_), Some(count)) => *count += n,
            (Some(_), None) => {
                self.errors.insert(key.to_owned(), n);
            }
            (None, _) => self.errors_beyond += n,
        }
        kept
    }

    /// A latency as the histograms hold it: nanoseconds, clamped to their bounds.
    pub fn histogram_value(latency: Duration) -> u64 {
        u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).clamp(LOWEST_NS, HIGHEST_NS)
    }

    /// Records one call; a failure's error text (as kept), for `details[]`.
    fn record_outcome(&mut self, latency: Duration, outcome: Result<(), tonic::Status>) -> Option<Arc<str>> {
        let ns = Self::histogram_value(latency);
        self.latency.saturating_record(ns);
        self.latency_sum += latency;
        let code = match &outcome {
            Ok(()) => Code::Ok,
            Err(status) => status.code(),
        };
        if code == Code::Ok {
            self.ok_latency.saturating_record(ns);
        }
        *self.statuses.entry(go_code_name(code).to_owned()).or_default() += 1;
        let status = outcome.err()?;
        let key = format!("rpc error: code = {} desc = {}", go_code_name(code), error_texts::cut(status.message()));
        Some(self.count_error(&key, 1).unwrap_or_else(|| self.texts().not_kept()))
    }

    /// Records one call.
    pub fn record(&mut self, latency: Duration, outcome: Result<(), tonic::Status>) {
        self.record_outcome(latency, outcome);
    }

    /// Records one call sent `sent` after the start of the run, keeping it in [`Recording::details`] too.
    pub fn record_call(&mut self, sent: Duration, latency: Duration, outcome: Result<(), tonic::Status>) {
        let code = outcome.as_ref().err().map_or(Code::Ok, tonic::Status::code);
        let error = self.record_outcome(latency, outcome);
        if self.details.len() < MAX_DETAILS {
            self.details.push(Detail { sent, latency, code, error });
        }
    }

    /// Adds another recording's calls (elapsed time is the longer of the two: they ran side by side).
    pub fn merge(&mut self, other: &Self) {
        #[allow(clippy::expect_used)] // Same bounds on both sides: adding cannot fail.
        self.latency.add(&other.latency).expect("histograms with equal bounds");
        #[allow(clippy::expect_used)] // Same bounds on both sides: adding cannot fail.
        self.ok_latency.add(&other.ok_latency).expect("histograms with equal bounds");
        self.latency_sum += other.latency_sum;
        self.started_at = self.started_at.min(other.started_at);
        for (k, v) in &other.statuses {
            *self.statuses.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.errors {
            self.count_error(k, *v);
        }
        self.errors_beyond += other.errors_beyond;
        self.elapsed = self.elapsed.max(other.elapsed);
        let room = MAX_DETAILS.saturating_sub(self.details.len());
        self.details.extend(other.details.iter().take(room).cloned());
        self.details.sort_by_key(|d| d.sent);
    }

    /// Counts `n` failed calls with error text `key`, as a report read back gives them (`merge`).
    pub fn add_errors(&mut self, key: &str, n: u64) {
        self.count_error(key, n);
    }

    /// Calls recorded.
    pub fn count(&self) -> u64 {
        self.latency.len()
    }

    /// Calls that ended `OK`.
    pub fn ok(&self) -> u64 {
        self.statuses.get("OK").copied().unwrap_or(0)
    }

    /// Calls that did not end `OK`.
    pub fn failed(&self) -> u64 {
        self.count() - self.ok()
    }

    /// Calls per second over the run's wall time.
    pub fn rps(&self) -> f64 {
        per_second(self.count(), self.elapsed)
    }

    /// Successful calls per second.
    pub fn ok_rps(&self) -> f64 {
        per_second(self.ok(), self.elapsed)
    }

    /// The latency at `percentile` (0–100).
    pub fn percentile(&self, percentile: f64) -> Duration {
        if self.latency.is_empty() {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.latency.value_at_quantile(percentile / 100.0))
    }
}

/// Why a run ended, as ghz's `endReason` names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EndReason {
    /// Every call of `-n` was made.
    #[default]
    Normal,
    /// `-z` or `-x` ran out first.
    Timeout,
    /// Interrupted (Ctrl-C).
    Cancel,
}

impl EndReason {
    /// ghz's name (`normal`, `timeout`, `cancel`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Timeout => "timeout",
            Self::Cancel => "cancel",
        }
    }
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    if elapsed.is_zero() { 0.0 } else { count as f64 / elapsed.as_secs_f64() }
}

/// grpc-go's name for a status code, which ghz reports and its users grep for.
pub fn go_code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The status code grpc-go names `name` (the inverse of [`go_code_name`]), as a report read back gives it.
pub fn code_from_go_name(name: &str) -> Option<Code> {
    (0..=16).map(Code::from_i32).find(|&code| go_code_name(code) == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn percentiles_and_rates_on_known_data() {
        let mut r = Recording::new();
        // 1..=1000 ms, one call each: the p-th percentile is p·10 ms (within HDR's 0.1 %).
        for v in 1..=1000 {
            r.record(ms(v), Ok(()));
        }
        r.elapsed = Duration::from_secs(4);
        for (p, expected) in [(50.0, 500u64), (90.0, 900), (99.0, 990), (99.9, 999)] {
            let got = r.percentile(p).as_secs_f64() * 1000.0;
            assert!((got - expected as f64).abs() <= expected as f64 * 0.001 + 0.5, "p{p}: {got} ms");
        }
        assert_eq!(r.count(), 1000);
        assert!((r.rps() - 250.0).abs() < 1e-9);
        assert_eq!(r.failed(), 0);
    }

    #[test]
    fn statuses_and_errors_are_counted_by_go_name() {
        let mut a = Recording::new();
        a.record(ms(1), Ok(()));
        a.record(ms(2), Err(tonic::Status::resource_exhausted("busy")));
        let mut b = Recording::new();
        b.record(ms(3), Err(tonic::Status::resource_exhausted("busy")));
        b.record(ms(4), Err(tonic::Status::cancelled("gone")));
        a.merge(&b);
        assert_eq!(a.count(), 4);
        assert_eq!(a.ok(), 1);
        assert_eq!(a.ok_latency.len(), 1, "only the success is in the success histogram");
        assert_eq!(a.latency_sum, ms(10));
        assert_eq!(a.statuses["ResourceExhausted"], 2);
        assert_eq!(a.statuses["Canceled"], 1);
        assert_eq!(a.errors["rpc error: code = ResourceExhausted desc = busy"], 2);
    }

    #[test]
    fn error_texts_are_bounded_by_the_run_not_by_the_server() {
        let run = Recording::new();
        let (mut a, mut b) = (Recording::sharing(&run), Recording::sharing(&run));
        let long = "x".repeat(15_000);
        for i in 0..error_texts::MAX_DISTINCT + 50 {
            let worker = if i % 2 == 0 { &mut a } else { &mut b };
            worker.record_call(ms(1), ms(1), Err(tonic::Status::internal(format!("{i} {long}"))));
        }
        a.merge(&b);
        // One text per distinct error, shared by the workers, the distribution and details[].
        assert_eq!(a.errors.len(), error_texts::MAX_DISTINCT);
        assert_eq!(a.errors_beyond + a.errors.values().sum::<u64>(), (error_texts::MAX_DISTINCT + 50) as u64);
        assert!(a.errors.keys().all(|k| k.len() < error_texts::MAX_BYTES + 100), "cut");
        assert!(a.distinct_errors_beyond() > 0);
        assert_eq!(a.details.len(), error_texts::MAX_DISTINCT + 50);
    }

    #[test]
    fn extreme_latencies_are_clamped_not_lost() {
        let mut r = Recording::new();
        r.record(Duration::from_nanos(1), Ok(()));
        r.record(Duration::from_secs(3600), Ok(()));
        assert_eq!(r.count(), 2);
    }
}
