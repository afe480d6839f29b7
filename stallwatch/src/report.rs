//! What a stall report says, and the last few kept for `/debug/stalls`-style endpoints and test failures.

use std::{
    collections::VecDeque,
    sync::{Mutex, PoisonError},
    time::{Duration, SystemTime},
};

use serde::Serialize;

use crate::{cause::Cause, stack::Frame};

/// One stall: a worker of a watched runtime that made no progress for at least the threshold.
#[derive(Debug, Clone, Serialize)]
pub struct StallReport {
    /// When the stall began (the last progress the watchdog saw), as RFC 3339 UTC.
    pub time: String,
    /// The runtime's name (as given to [`crate::Detector::instrument`]) and the worker's index in it.
    pub runtime: String,
    pub worker: usize,
    /// The stuck thread (`tokio-runtime-worker (tid 4242)`), when the watchdog could tell which it was.
    pub thread: Option<String>,
    /// How long the worker made no progress: so far while `ongoing`, else in all (within one watchdog tick).
    #[serde(serialize_with = "millis")]
    pub length_ms: Duration,
    pub ongoing: bool,
    /// Why the thread was stuck, from the kernel's view of it.
    pub cause: Cause,
    /// The request whose poll held the worker, when a wrapped call was polling on the stuck thread.
    pub call: Option<CallInfo>,
    /// The stuck thread's stack, innermost first, sampled while it was stuck; empty when not taken.
    pub stack: Vec<Frame>,
    /// Why `stack` is empty, when it is (`rate-limited`, `capture off`, …).
    pub stack_note: Option<String>,
    /// What taking the stack cost, when it was taken.
    pub stack_cost: Option<StackCost>,
}

/// What one stack cost: the stuck thread is interrupted only to copy `copied_bytes` of its stack (part of
/// `signal_to_copy_us`, which also counts the signal's delivery); the watchdog thread then spends
/// `unwind_and_names_us` on it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StackCost {
    pub signal_to_copy_us: f64,
    pub copied_bytes: usize,
    pub unwind_and_names_us: f64,
}

/// The request a stall belongs to, as the tower layer names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallInfo {
    /// The gRPC method or HTTP path without its leading `/` (`offload.v1.Compute/SumOfSquares`).
    pub method: String,
    /// What the handler said of its call ([`crate::StallTag`]): a mode, and a size.
    pub mode: Option<String>,
    pub n: Option<u64>,
    /// The W3C trace id of the request, when it carried one or the tracing layer made one.
    pub trace_id: Option<String>,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e4).round() / 10.0)
}

impl StallReport {
    /// The frames of the program's own code, innermost first: the stack without the C library, the kernel's
    /// vDSO, and the standard library's and runtime's plumbing, but keeping blocking calls of `std` (`sleep`,
    /// `Mutex::lock`, a file's `read`) since those are the answer.
    pub fn own_frames(&self) -> impl Iterator<Item = &Frame> {
        self.stack.iter().filter(|f| is_own(f))
    }

    /// Up to `count` of [`StallReport::own_frames`], joined by ` ← ` (innermost first), for a log line.
    pub fn culprit(&self, count: usize) -> Option<String> {
        let names: Vec<&str> = self.own_frames().filter_map(|f| f.function.as_deref()).take(count).collect();
        (!names.is_empty()).then(|| names.join(" ← "))
    }

    /// The whole stack, one frame a line, as an event or a test failure prints it.
    pub fn stack_text(&self) -> String {
        let mut text = String::new();
        for (i, frame) in self.stack.iter().enumerate() {
            let name = frame.function.as_deref().unwrap_or("??");
            text.push_str(&format!("{i:3}: {name}"));
            if let (Some(file), Some(line)) = (&frame.file, frame.line) {
                text.push_str(&format!(" at {file}:{line}"));
            } else if let Some(module) = &frame.module {
                text.push_str(&format!(" in {module}"));
            }
            text.push('\n');
        }
        text
    }
}

/// Prefixes of frames that are plumbing, not the program's own code (see [`StallReport::own_frames`]).
const PLUMBING: &[&str] = &[
    "core::",
    "alloc::",
    "<core::",
    "<alloc::",
    "std::sys::",
    "std::panicking",
    "std::panic::",
    "std::rt::",
    "std::thread::local",
    "__rust",
    "tokio::runtime::",
    "<tokio::runtime::",
    "tokio::task::",
    // The layer's poll wrapper, the only frame of this crate on a stuck thread's stack (by path, so a program's
    // own crate named `stallwatch` is not taken for it).
    "stallwatch::layer::",
    "<stallwatch::layer::",
];

fn is_own(frame: &Frame) -> bool {
    frame.function.as_deref().is_some_and(|name| is_own_code(name, frame.module.as_deref()))
}

/// Whether a frame of function `name` in `module` is the program's own code (see [`StallReport::own_frames`]):
/// for readers of the JSON reports, who name culprits the same way.
pub fn is_own_code(name: &str, module: Option<&str>) -> bool {
    let in_c_library = module.is_some_and(|m| m.starts_with("libc.") || m.starts_with("ld-linux"));
    !in_c_library && !name.starts_with("[vdso]") && !PLUMBING.iter().any(|p| name.starts_with(p))
}

/// RFC 3339 in UTC with milliseconds, from the system clock (no date crate for one format).
pub(crate) fn rfc3339(at: SystemTime) -> String {
    let since = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let (secs, millis) = (since.as_secs(), since.subsec_millis());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The last stalls, newest last, at most `capacity` of them.
#[derive(Debug)]
pub(crate) struct History {
    capacity: usize,
    reports: Mutex<VecDeque<StallReport>>,
}

impl History {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { capacity, reports: Mutex::new(VecDeque::with_capacity(capacity)) }
    }

    pub(crate) fn push(&self, report: StallReport) {
        if self.capacity == 0 {
            return;
        }
        let mut reports = self.reports.lock().unwrap_or_else(PoisonError::into_inner);
        if reports.len() == self.capacity {
            reports.pop_front();
        }
        reports.push_back(report);
    }

    pub(crate) fn snapshot(&self) -> Vec<StallReport> {
        self.reports.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, module: &str) -> Frame {
        Frame {
            address: 1,
            function: Some(function.to_owned()),
            file: None,
            line: None,
            module: Some(module.to_owned()),
        }
    }

    #[test]
    fn the_culprit_skips_the_c_library_and_plumbing_but_keeps_std_blocking_calls() {
        let report = StallReport {
            time: String::new(),
            runtime: "rt".to_owned(),
            worker: 0,
            thread: None,
            length_ms: Duration::from_millis(50),
            ongoing: false,
            cause: Cause::UNKNOWN,
            call: None,
            stack: vec![
                frame("clock_nanosleep", "libc.so.6"),
                frame("std::sys::pal::unix::thread::Thread::sleep", "app"),
                frame("std::thread::sleep", "app"),
                frame("app::handler::{{closure}}", "app"),
                frame("tokio::runtime::task::raw::poll", "app"),
            ],
            stack_note: None,
            stack_cost: None,
        };
        assert_eq!(report.culprit(2).as_deref(), Some("std::thread::sleep ← app::handler::{{closure}}"));
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_601_845_123);
        assert_eq!(rfc3339(at), "2026-12-07T00:04:05.123Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }
}
