//! `offload-gateway`: parse the configuration, build the runtime it asks for, serve until SIGTERM/SIGINT.

use anyhow::Context;
use clap::Parser;
use offload_gateway::Config;

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    offload_telemetry::init(config.log_format);
    let runtime = offload_serve::runtime::build(config.runtime, config.workers, "offload-gateway")
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        offload_gateway::run(listener, config, offload_serve::drain::signal()).await
    })
}
