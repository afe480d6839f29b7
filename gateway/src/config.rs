//! Configuration of `offload-gateway`: one documented struct; every flag also reads an `OFFLOAD_GATEWAY_*`
//! environment variable, and the defaults point at a compute server on its default address.

use std::{net::SocketAddr, time::Duration};

use clap::Parser;
use offload_serve::{
    flags::parse_duration,
    runtime::{Flavor, available_cores},
};
use offload_telemetry::LogFormat;

/// The offload gateway: accepts offload.v1 requests and forwards them to a balanced set of compute replicas.
#[derive(Debug, Clone, Parser)]
#[command(name = "offload-gateway", version)]
pub struct Config {
    /// Address to listen on for gRPC.
    #[arg(long, env = "OFFLOAD_GATEWAY_LISTEN", default_value = "127.0.0.1:50050")]
    pub listen: SocketAddr,

    /// Compute endpoints to balance over, comma-separated (`http://host:port`).
    #[arg(long, env = "OFFLOAD_GATEWAY_COMPUTE", value_delimiter = ',', default_value = "http://127.0.0.1:50051")]
    pub compute: Vec<String>,

    /// How the gateway waits for compute when a request says UPSTREAM_WAIT_UNSPECIFIED: `async` (the right way),
    /// `blocking` (a synchronous client called on the runtime thread), `spawn-blocking`, `spawn-task`.
    #[arg(long, env = "OFFLOAD_GATEWAY_DEFAULT_UPSTREAM_WAIT", value_enum, default_value_t = WaitArg::Async)]
    pub default_upstream_wait: WaitArg,

    /// tokio scheduler for the gateway itself.
    #[arg(long, env = "OFFLOAD_GATEWAY_RUNTIME", value_enum, default_value_t = Flavor::MultiThread)]
    pub runtime: Flavor,

    /// tokio worker threads (multi-thread runtime only). Default: the CPUs this process may use.
    #[arg(long, env = "OFFLOAD_GATEWAY_WORKERS", default_value_t = available_cores())]
    pub workers: usize,

    /// Most requests in flight through the gateway; more are refused at once with RESOURCE_EXHAUSTED. The gateway
    /// holds little per request (a few kB, one reply at a time), so 1024 bounds memory while staying well above
    /// what the compute tier can absorb.
    #[arg(long, env = "OFFLOAD_GATEWAY_MAX_INFLIGHT", default_value_t = 1024)]
    pub max_inflight: usize,

    /// Deadline given to the upstream call when the client sets none, so that no call can wait forever. Longer
    /// than the largest default job (about a minute).
    #[arg(long, env = "OFFLOAD_GATEWAY_DEFAULT_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub default_timeout: Duration,

    /// How long a connection attempt to a compute endpoint may take before it counts as unreachable.
    #[arg(long, env = "OFFLOAD_GATEWAY_CONNECT_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// After a compute endpoint's health stream breaks, wait this long before watching it again. Bounds how soon a
    /// restarted replica gets traffic again.
    #[arg(long, env = "OFFLOAD_GATEWAY_HEALTH_RETRY", default_value = "250ms", value_parser = parse_duration)]
    pub health_retry: Duration,

    /// Largest gRPC message accepted from compute or sent to clients, in bytes. Must be at least compute's
    /// `--max-message-bytes` or the largest replies will not pass.
    #[arg(long, env = "OFFLOAD_GATEWAY_MAX_MESSAGE_BYTES", default_value_t = offload_proto::MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,

    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish before they are dropped.
    #[arg(long, env = "OFFLOAD_GATEWAY_DRAIN_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Admin address serving Prometheus metrics at `/metrics` (for example `0.0.0.0:9090`). Off unless set.
    #[arg(long, env = "OFFLOAD_GATEWAY_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Log line format.
    #[arg(long, env = "OFFLOAD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The upstream-wait styles a gateway can default to (the proto's `UpstreamWait` without `UNSPECIFIED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WaitArg {
    /// Await the async client.
    Async,
    /// Call the synchronous client on the runtime thread.
    Blocking,
    /// Call the synchronous client in `spawn_blocking`.
    SpawnBlocking,
    /// Await the async client inside `tokio::spawn`.
    SpawnTask,
}

impl From<WaitArg> for offload_proto::v1::UpstreamWait {
    fn from(w: WaitArg) -> Self {
        match w {
            WaitArg::Async => Self::Async,
            WaitArg::Blocking => Self::Blocking,
            WaitArg::SpawnBlocking => Self::SpawnBlocking,
            WaitArg::SpawnTask => Self::SpawnTask,
        }
    }
}

impl Config {
    /// Checks what clap cannot. Fails with a message naming the flag.
    pub fn validate(&self) -> Result<(), String> {
        if self.compute.iter().all(|c| c.trim().is_empty()) {
            return Err("--compute needs at least one endpoint URL".into());
        }
        for url in &self.compute {
            url.parse::<tonic::transport::Uri>().map_err(|e| format!("--compute: {url:?} is not a URL: {e}"))?;
        }
        if self.max_inflight == 0 || self.workers == 0 {
            return Err("--max-inflight and --workers must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_point_at_local_compute() {
        let config = Config::parse_from(["offload-gateway"]);
        config.validate().expect("valid");
        assert_eq!(config.compute, ["http://127.0.0.1:50051"]);
    }

    #[test]
    fn several_endpoints() {
        let config = Config::parse_from(["offload-gateway", "--compute", "http://a:1,http://b:2"]);
        assert_eq!(config.compute.len(), 2);
        let bad = Config::parse_from(["offload-gateway", "--compute", "not a url"]);
        assert!(bad.validate().is_err());
    }
}
