//! Telemetry set-up, once for every offload binary: the `tracing` subscriber and its output format.
//!
//! Filtering follows `RUST_LOG` (default `info`), so operators use the convention they already know. Metrics (and
//! the admin port that serves them) are in [`metrics`].

pub mod metrics;

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines for a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the global subscriber. Call once, first thing in `main`. Safe to call again (tests): later calls
/// leave the first subscriber in place.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Text => {
            // Colour only for a person at a terminal: escape codes in a file or a pipe are noise.
            let ansi = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            registry.with(fmt::layer().with_target(false).with_ansi(ansi)).try_init()
        }
        LogFormat::Json => registry.with(fmt::layer().json().flatten_event(true)).try_init(),
    };
}
