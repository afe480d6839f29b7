//! The stalls a server's detector kept, read from its admin port's `GET /debug/stalls` at a round's end: for each,
//! when it began, how long it held its worker, the call, the cause and the innermost frame of the program's own
//! code, which the stall counter's labels cannot carry. Only the stalls that began inside the round are kept, placed
//! on the round's own clock (its wall-clock start), so the report can draw them on the round's latency chart.
//!
//! A server keeps its last 64 ended stalls (and those going on): a round with more shows its last ones only; the
//! counter in [`super::stalls`] still counts all of them.
//!
//! compare reads the servers' public contract, this JSON; the frames it calls the program's own are those the
//! detector's own rule (`stallwatch::is_own_code`) calls so.

use std::time::{Duration, SystemTime};

use anyhow::Context;
use offload_serve::stall::{NO_CALL, UNKNOWN_MODE, is_own_code};
use serde_json::Value;

/// A frame of the program's own code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The demangled function (`offload_compute::kernel::sum_of_squares::lanes`).
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u64>,
}

impl Frame {
    /// The function's last path segment (`lanes`), a closure named by its function: short enough for the
    /// terminal's table.
    pub fn short(&self) -> &str {
        segments(&self.function)
            .into_iter()
            .rev()
            .find(|s| *s != "{{closure}}" && !s.starts_with('<'))
            .map_or(self.function.as_str(), |s| s.split('<').next().unwrap_or(s))
    }

    /// The whole function, with its file and line where the binary has line tables.
    pub fn full(&self) -> String {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => format!("{} ({file}:{line})", self.function),
            _ => self.function.clone(),
        }
    }
}

/// `name`'s path segments, split at the `::` outside angle brackets (`<a::B as c::D>::poll`: two segments).
fn segments(name: &str) -> Vec<&str> {
    let (mut out, mut depth, mut from) = (Vec::new(), 0i32, 0);
    let bytes = name.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'<' => depth += 1,
            b'>' => depth -= 1,
            b':' if depth == 0 && bytes.get(i + 1) == Some(&b':') => {
                out.push(&name[from..i]);
                from = i + 2;
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&name[from..]);
    out
}

/// One stall, on the round's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct StallEvent {
    /// When it began, from the round's start.
    pub at: Duration,
    /// How long it held its worker (so far, if still going on at the round's end).
    pub length: Duration,
    pub ongoing: bool,
    /// The call, as the stall counter's labels name it: `SumOfSquares/inline`; `none/unknown` for no call.
    pub call: String,
    /// `cpu`, `lock`, `syscall clock_nanosleep`, …
    pub cause: String,
    /// The runtime of the stalled worker (`offload-compute`).
    pub runtime: String,
    /// The innermost frame of the program's own code; `None` when no stack was taken (the detector takes a few a
    /// second) or it held only plumbing.
    pub frame: Option<Frame>,
}

/// The stalls of a `/debug/stalls` body, ended and ongoing, that began within `window` after `start`, by start.
pub fn in_window(body: &str, start: SystemTime, window: Duration) -> anyhow::Result<Vec<StallEvent>> {
    let json: Value = serde_json::from_str(body).context("/debug/stalls is not JSON")?;
    let mut events = Vec::new();
    for stall in ["stalls", "ongoing"].iter().filter_map(|list| json[list].as_array()).flatten() {
        let time = stall["time"].as_str().context("a stall without its time")?;
        let began = parse_time(time).with_context(|| format!("a stall's time {time:?} is not RFC 3339 UTC"))?;
        // Before the round (its warm-up, an earlier round on the same server): not this round's.
        let Ok(at) = began.duration_since(start) else { continue };
        if at > window {
            continue;
        }
        events.push(event(stall, at));
    }
    events.sort_by_key(|e| e.at);
    Ok(events)
}

fn event(stall: &Value, at: Duration) -> StallEvent {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let call = match stall["call"]["method"].as_str() {
        // The counter's labels: the method without its service, the mode the handler named.
        Some(method) => format!(
            "{}/{}",
            method.rsplit('/').next().unwrap_or(method),
            stall["call"]["mode"].as_str().unwrap_or(UNKNOWN_MODE)
        ),
        None => format!("{NO_CALL}/{UNKNOWN_MODE}"),
    };
    let kind = stall["cause"]["kind"].as_str().unwrap_or("unknown");
    let cause = match stall["cause"]["syscall"].as_str() {
        Some(syscall) if kind == "syscall" => format!("syscall {syscall}"),
        _ => kind.to_owned(),
    };
    let frame = stall["stack"].as_array().into_iter().flatten().find(|f| is_own(f)).map(|f| Frame {
        function: text(&f["function"]).unwrap_or_default(),
        file: text(&f["file"]),
        line: f["line"].as_u64(),
    });
    StallEvent {
        at,
        length: Duration::from_secs_f64(stall["length_ms"].as_f64().unwrap_or(0.0).max(0.0) / 1e3),
        ongoing: stall["ongoing"].as_bool().unwrap_or(false),
        call,
        cause,
        runtime: text(&stall["runtime"]).unwrap_or_default(),
        frame,
    }
}

/// A frame of the program's own code, by the detector's own rule.
fn is_own(frame: &Value) -> bool {
    frame["function"].as_str().is_some_and(|name| is_own_code(name, frame["module"].as_str()))
}

/// `2026-12-07T00:36:35.551Z` (any number of decimals, or none) as a time; `None` for anything else. The
/// detector writes UTC only, so no offset is read.
pub fn parse_time(text: &str) -> Option<SystemTime> {
    let (date, time) = text.strip_suffix('Z')?.split_once('T')?;
    let number = |s: &str| s.parse::<i64>().ok().filter(|_| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
    let mut date = date.split('-').map(number);
    let (year, month, day) = (date.next()??, date.next()??, date.next()??);
    let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut clock = clock.split(':').map(number);
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    if date.next().is_some() || clock.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let nanos = match fraction {
        "" => 0,
        digits if digits.bytes().all(|b| b.is_ascii_digit()) => {
            number(&format!("{:0<9}", &digits[..digits.len().min(9)]))?
        }
        _ => return None,
    };
    // Days from 1970-01-01 to a civil date (Howard Hinnant's algorithm, as the detector's own formatting uses).
    let y = year - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = u64::try_from(days * 86_400 + hour * 3_600 + minute * 60 + second).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::new(secs, u32::try_from(nanos).ok()?))
}

#[cfg(test)]
pub(super) mod tests {
    use offload_loadgen::report::rfc3339_nano;

    use super::*;

    /// The round of [`SAMPLE`]: it began at 00:36:35.000 and lasted 4 s.
    pub(in super::super) fn round_start() -> SystemTime {
        parse_time("2026-12-07T00:36:35.000Z").expect("a time")
    }

    /// A `/debug/stalls` body of compute's, shaped as the servers write it: a stall before the round (in its
    /// warm-up), two `INLINE` jobs in it (one with its stack, one rate-limited), a gateway-less health task's
    /// `lock`, one still going on at the end, and one after the round.
    pub(in super::super) const SAMPLE: &str = r#"{
      "enabled": true, "threshold_ms": 10.0, "stacks_skipped": 3, "lines_suppressed": 0,
      "stalls": [
        {"time": "2026-12-07T00:36:34.700Z", "runtime": "offload-compute", "worker": 0, "thread": null,
         "length_ms": 15.2, "ongoing": false, "cause": {"kind": "cpu", "syscall": null},
         "call": {"method": "offload.v1.Compute/SumOfSquares", "mode": "inline", "n": 1, "trace_id": null},
         "stack": [], "stack_note": "rate-limited"},
        {"time": "2026-12-07T00:36:35.551Z", "runtime": "offload-compute", "worker": 1,
         "thread": "offload-compute (tid 4242)", "length_ms": 15.4, "ongoing": false,
         "cause": {"kind": "cpu", "syscall": null},
         "call": {"method": "offload.v1.Compute/SumOfSquares", "mode": "inline", "n": 145635555, "trace_id": "4bf9"},
         "stack": [
           {"address": 1, "function": "offload_compute::kernel::sum_of_squares::simd::lanes_avx512",
            "file": "compute/src/kernel/sum_of_squares/simd.rs", "line": 88, "module": "offload-bench"},
           {"address": 2, "function": "offload_compute::kernel::sum_of_squares::chunk_sum::{{closure}}",
            "file": null, "line": null, "module": "offload-bench"},
           {"address": 3, "function": "tokio::runtime::task::raw::poll", "file": null, "line": null,
            "module": "offload-bench"}
         ], "stack_note": null},
        {"time": "2026-12-07T00:36:36.020Z", "runtime": "offload-compute", "worker": 0, "thread": null,
         "length_ms": 14.9, "ongoing": false, "cause": {"kind": "descheduled", "syscall": null},
         "call": {"method": "offload.v1.Compute/SumOfSquares", "mode": "inline", "n": 145635555, "trace_id": null},
         "stack": [], "stack_note": "rate-limited"},
        {"time": "2026-12-07T00:36:37.250Z", "runtime": "offload-compute", "worker": 1, "thread": null,
         "length_ms": 22.0, "ongoing": false, "cause": {"kind": "lock", "syscall": "futex"}, "call": null,
         "stack": [
           {"address": 4, "function": "syscall", "file": null, "line": null, "module": "libc.so.6"},
           {"address": 5, "function": "std::sys::sync::mutex::futex::Mutex::lock_contended", "file": null,
            "line": null, "module": "offload-bench"},
           {"address": 6, "function": "<offload_serve::health::Reporter as core::future::Future>::poll",
            "file": "serve/src/health.rs", "line": 120, "module": "offload-bench"}
         ], "stack_note": null},
        {"time": "2026-12-07T00:36:39.100Z", "runtime": "offload-compute", "worker": 0, "thread": null,
         "length_ms": 12.0, "ongoing": false, "cause": {"kind": "cpu", "syscall": null},
         "call": {"method": "offload.v1.Compute/SumOfSquares", "mode": "inline", "n": 1, "trace_id": null},
         "stack": [], "stack_note": "rate-limited"}
      ],
      "ongoing": [
        {"time": "2026-12-07T00:36:38.990Z", "runtime": "offload-compute", "worker": 0, "thread": null,
         "length_ms": 11.5, "ongoing": true, "cause": {"kind": "syscall", "syscall": "clock_nanosleep"},
         "call": {"method": "offload.v1.Compute/SumOfSquares", "mode": "spawn-task", "n": 1, "trace_id": null},
         "stack": [
           {"address": 7, "function": "clock_nanosleep", "file": null, "line": null, "module": "libc.so.6"},
           {"address": 8, "function": "std::thread::sleep", "file": null, "line": null, "module": "offload-bench"}
         ], "stack_note": null}
      ]
    }"#;

    #[test]
    fn only_the_rounds_stalls_are_kept_each_with_its_call_cause_and_own_frame() {
        let events = in_window(SAMPLE, round_start(), Duration::from_secs(4)).expect("parsed");
        let seen: Vec<(u128, &str, &str, Option<&str>)> = events
            .iter()
            .map(|e| (e.at.as_millis(), e.call.as_str(), e.cause.as_str(), e.frame.as_ref().map(Frame::short)))
            .collect();
        assert_eq!(
            seen,
            [
                (551, "SumOfSquares/inline", "cpu", Some("lanes_avx512")),
                (1020, "SumOfSquares/inline", "descheduled", None),
                (2250, "none/unknown", "lock", Some("poll")),
                (3990, "SumOfSquares/spawn-task", "syscall clock_nanosleep", Some("sleep")),
            ],
            "the warm-up's stall (before) and the one at 4.1 s (after) are not the round's"
        );
        assert_eq!(events[0].length, Duration::from_micros(15_400));
        assert!(events[3].ongoing && !events[0].ongoing);
        let frame = events[0].frame.as_ref().expect("a stack");
        assert_eq!(
            frame.full(),
            "offload_compute::kernel::sum_of_squares::simd::lanes_avx512 (compute/src/kernel/sum_of_squares/simd.rs:88)"
        );
    }

    #[test]
    fn short_names_skip_closures_generics_and_impl_paths() {
        let short = |function: &str| Frame { function: function.to_owned(), file: None, line: None }.short().to_owned();
        assert_eq!(short("offload_compute::kernel::sum_of_squares"), "sum_of_squares");
        assert_eq!(short("app::handler::{{closure}}::{{closure}}"), "handler");
        assert_eq!(short("<app::Job as core::future::Future>::poll"), "poll");
        assert_eq!(short("app::run::<u64>"), "run");
        assert_eq!(short("app::Queue<T>::push"), "push");
        assert_eq!(short("main"), "main");
    }

    #[test]
    fn times_read_back_what_the_detector_writes() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_601_845_123);
        assert_eq!(parse_time("2026-12-07T00:04:05.123Z"), Some(at));
        for t in [
            SystemTime::UNIX_EPOCH,
            at,
            at + Duration::from_nanos(1),
            SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400),
        ] {
            assert_eq!(parse_time(&rfc3339_nano(t)), Some(t), "{}", rfc3339_nano(t));
        }
        for bad in [
            "",
            "2026-12-07",
            "2026-12-07T00:04:05",
            "2026-13-07T00:04:05Z",
            "2026-12-07T00:04:05+01:00",
            "x-12-07T00:04:05Z",
        ] {
            assert_eq!(parse_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_body_that_is_not_the_endpoints_is_an_error_and_a_disabled_detector_has_none() {
        assert!(in_window("<html>", round_start(), Duration::from_secs(4)).is_err());
        let off = r#"{"enabled": false, "ongoing": [], "stalls": []}"#;
        assert_eq!(in_window(off, round_start(), Duration::from_secs(4)).expect("parsed"), []);
    }
}
