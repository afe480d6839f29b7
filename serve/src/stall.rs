//! The servers' stall detector: [`stallwatch`], set up the same way in both servers. The process's runtimes (the
//! main one and, with `--runtime thread-per-core`, each shard's) are instrumented when they are built, so every
//! task on them is watched; the tower layer names the request behind a stall; each stall that ends is counted in
//! `offload_runtime_stalls_total{method,mode,cause}` and its length in `offload_runtime_stall_seconds`; the admin
//! port serves the last ones at `/debug/stalls`.
//!
//! A server started by [`crate::runtime::serve_process`] shares one detector across its runtimes; a server a test
//! runs in-process (on a runtime the test built) gets its own, watching the runtime it runs on without hooks.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

pub use stallwatch::{
    DEFAULT_THRESHOLD, Detector, MIN_THRESHOLD, StallLayer, StallReport, StallTag, in_current_call, is_own_code,
};

use offload_telemetry::metrics::Metrics;

/// The `method` label of a stall no wrapped call was polling in (a background task, a task spawned unwrapped).
pub const NO_CALL: &str = "none";

/// The mode label of a call whose server had not said its mode (or not yet).
pub const UNKNOWN_MODE: &str = "unknown";

/// The detector of a process made by [`crate::runtime::serve_process`], and where its stalls are counted once the
/// server has made its metrics.
#[derive(Debug, Clone)]
pub struct ProcessStalls {
    pub detector: Detector,
    metrics: Arc<OnceLock<Metrics>>,
}

static PROCESS: OnceLock<ProcessStalls> = OnceLock::new();

/// `--stall-threshold`'s check: 0 (off) or at least [`MIN_THRESHOLD`].
pub fn validate_threshold(flag: &str, threshold: Duration) -> Result<(), String> {
    if !threshold.is_zero() && threshold < MIN_THRESHOLD {
        return Err(format!(
            "{flag}={threshold:?} is below the minimum of {MIN_THRESHOLD:?} (0 turns the detector off)"
        ));
    }
    Ok(())
}

/// Makes the process's detector (none when `threshold` is 0) before its runtimes are built.
pub fn for_process(threshold: Duration) -> Option<&'static ProcessStalls> {
    if threshold.is_zero() {
        return None;
    }
    Some(PROCESS.get_or_init(|| {
        let metrics = Arc::new(OnceLock::new());
        let detector = built(threshold, Arc::clone(&metrics));
        ProcessStalls { detector, metrics }
    }))
}

/// The process's detector, if [`for_process`] made one.
pub(crate) fn process() -> Option<&'static ProcessStalls> {
    PROCESS.get()
}

fn built(threshold: Duration, metrics: Arc<OnceLock<Metrics>>) -> Detector {
    Detector::builder()
        .threshold(threshold)
        .on_stall(move |stall| {
            if let Some(metrics) = metrics.get() {
                count(metrics, stall);
            }
        })
        .try_build()
        .unwrap_or_else(|e| {
            // Validated at start-up (validate_threshold): a threshold that passed is never refused.
            tracing::error!(error = %e, "stall detector refused its threshold; using the default");
            Detector::builder().threshold(DEFAULT_THRESHOLD).build()
        })
}

/// The detector a server's skeleton uses: the process's (whose stalls it counts from now on), or, for a server
/// run in-process on a runtime it did not build, one of its own watching that runtime. `None` when off.
pub(crate) fn for_server(threshold: Duration, name: &str, metrics: &Metrics) -> Option<Detector> {
    if threshold.is_zero() {
        return None;
    }
    if let Some(process) = process() {
        let _ = process.metrics.set(metrics.clone());
        return Some(process.detector.clone());
    }
    let detector = built(threshold, Arc::new(OnceLock::from(metrics.clone())));
    detector.watch_current(name);
    Some(detector)
}

/// Counts an ended stall in the server's metrics.
fn count(metrics: &Metrics, stall: &StallReport) {
    let (method, mode) = match &stall.call {
        Some(call) => {
            (call.method.rsplit('/').next().unwrap_or(&call.method), call.mode.as_deref().unwrap_or(UNKNOWN_MODE))
        }
        None => (NO_CALL, UNKNOWN_MODE),
    };
    metrics.observe_stall(method, mode, stall.cause.kind.as_str(), stall.length_ms);
}

/// The layer that names the request behind a stall, with the trace id the tracing layer gave the call.
pub(crate) fn layer(detector: Option<&Detector>) -> StallLayer {
    detector.map_or_else(StallLayer::off, |d| {
        d.layer().trace_id_with(|span, traceparent| {
            offload_telemetry::grpc_trace::trace_id(span, traceparent).map(|id| id.to_string())
        })
    })
}

/// `/debug/stalls`: the stalls going on and the last that ended (newest last), with what the rate limits skipped.
pub(crate) fn debug_json(detector: Option<&Detector>) -> serde_json::Value {
    let Some(detector) = detector else {
        return serde_json::json!({ "enabled": false, "ongoing": [], "stalls": [] });
    };
    let (stacks_skipped, lines_suppressed) = detector.skipped();
    serde_json::json!({
        "enabled": true,
        "threshold_ms": detector.threshold().as_secs_f64() * 1e3,
        "ongoing": detector.ongoing(),
        "stalls": detector.recent(),
        "stacks_skipped": stacks_skipped,
        "lines_suppressed": lines_suppressed,
    })
}
