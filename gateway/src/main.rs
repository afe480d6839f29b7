//! `offload-gateway`: parse the configuration, build the runtime it asks for, serve until SIGTERM/SIGINT.

use anyhow::Context;
use clap::Parser;
use offload_gateway::Config;

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    offload_telemetry::init(config.log_format);
    let runtime = offload_serve::runtime::build(config.runtime, config.workers, "offload-gateway")
        .context("cannot start the tokio runtime")?;
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        offload_gateway::run(listener, config, offload_serve::drain::signal()).await
    });
    // Requests abandoned by an expired drain are dropped here (which cancels their jobs); threads stuck in a job
    // that cannot notice cancellation (INLINE) must not keep the process alive.
    runtime.shutdown_timeout(offload_serve::drain::RUNTIME_SHUTDOWN);
    result
}
