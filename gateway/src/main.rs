//! `offload-gateway`: parse the configuration, set up logging, serve until SIGTERM/SIGINT.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let config = offload_gateway::Config::parse();
    offload_telemetry::init(config.log_format);
    offload_gateway::serve_blocking(config)
}
