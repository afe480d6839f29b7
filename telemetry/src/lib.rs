//! Telemetry set-up, once for every offload binary: logs, traces and metrics.
//!
//! - Logs: the `tracing` subscriber, human-readable or JSON (`--log-format`), filtered by `RUST_LOG` (default
//!   `info`), the convention operators already know.
//! - Traces: an OpenTelemetry layer on the same subscriber, exporting OTLP when the standard `OTEL_*` environment
//!   asks for it ([`otel`]); gRPC server/client spans and W3C trace context in [`grpc_trace`].
//! - Metrics: Prometheus text on an admin port, in [`metrics`].

pub mod grpc_trace;
pub mod metrics;
mod otel;
mod rpc_attributes;

use std::{
    io::IsTerminal,
    sync::atomic::{AtomicBool, Ordering},
};

use opentelemetry::trace::TracerProvider as _;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Whether this process exports traces: set once by [`init`] when its OpenTelemetry layer is installed.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans leave this process (OTLP export configured and installed). Spans that exist only for traces
/// (a gateway's client span, compute's job span) and OpenTelemetry attributes are built only then: without an
/// exporter nothing would read them, and on a trivial call they cost more than the work.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines for a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Keeps the trace exporter alive; dropping it flushes the spans not yet exported (bounded to a few seconds).
/// Hold it in `main` until the server has stopped.
#[derive(Debug)]
#[must_use = "dropping the guard stops trace export"]
pub struct Telemetry {
    exporter: Option<otel::Exporter>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(exporter) = &mut self.exporter {
            exporter.shutdown();
        }
    }
}

/// Installs the global subscriber for the process named `service` (the default `service.name` of its traces).
/// Call once, first thing in `main`. Safe to call again (tests): later calls leave the first subscriber in place
/// and export nothing.
pub fn init(service: &str, format: LogFormat) -> anyhow::Result<Telemetry> {
    let mut exporter = otel::from_env(service)?;
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref())?;
    let otel_layer = exporter.as_ref().map(|e| {
        // Thread names show which pool ran a span (`offload-rayon-0`, a tokio worker, the blocking pool).
        tracing_opentelemetry::layer().with_tracer(e.provider.tracer("offload")).with_threads(true)
    });
    let registry = tracing_subscriber::registry().with(filter).with(otel_layer);
    let installed = match format {
        LogFormat::Text => {
            // Colour only for a person at a terminal: escape codes in a file or a pipe are noise.
            let ansi = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            registry.with(fmt::layer().with_target(false).with_ansi(ansi)).try_init()
        }
        // The span list carries the request span's `trace_id` into every line written during a request.
        LogFormat::Json => registry.with(fmt::layer().json().flatten_event(true).with_span_list(true)).try_init(),
    };
    if installed.is_err()
        && let Some(mut unused) = exporter.take()
    {
        unused.shutdown();
    }
    if exporter.is_some() {
        EXPORTING.store(true, Ordering::Relaxed);
        tracing::info!(service, "exporting traces over OTLP (OTEL_EXPORTER_OTLP_* from the environment)");
    }
    Ok(Telemetry { exporter })
}

/// The log filter `RUST_LOG` asks for (`info` when unset or empty); a value it cannot parse is refused, naming it,
/// rather than silently replaced by the default.
fn log_filter(rust_log: Option<&str>) -> anyhow::Result<EnvFilter> {
    match rust_log.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(EnvFilter::new("info")),
        Some(value) => EnvFilter::builder().parse(value).map_err(|e| {
            anyhow::anyhow!("RUST_LOG={value:?} is not a log filter ({e}); e.g. RUST_LOG=info,offload_compute=debug")
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_is_honoured_or_refused_by_name() {
        assert_eq!(log_filter(None).expect("default").to_string(), "info");
        assert_eq!(log_filter(Some("  ")).expect("empty").to_string(), "info");
        assert_eq!(
            log_filter(Some("warn,offload_compute=debug")).expect("valid").to_string(),
            "offload_compute=debug,warn"
        );
        let refused = log_filter(Some("offload_compute=loud")).expect_err("not a level").to_string();
        assert!(refused.contains("RUST_LOG=\"offload_compute=loud\""), "{refused}");
    }
}
