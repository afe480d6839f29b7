//! `offload-gateway`: parse the configuration, set up logs and traces, serve until SIGTERM/SIGINT (the
//! telemetry guard, dropped last, flushes the spans not yet exported).

use clap::Parser;

/// mimalloc rather than glibc's malloc: blocks freed on another thread than the one that allocated them cost no
/// lock (why: the workspace manifest, beside the dependency).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let config = offload_gateway::Config::parse();
    let _telemetry = offload_telemetry::init("offload-gateway", config.log_format)?;
    offload_gateway::serve_blocking(config)
}
