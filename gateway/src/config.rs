//! Configuration of `offload-gateway`: one documented struct; every flag also reads an `OFFLOAD_GATEWAY_*`
//! environment variable, and the defaults point at a compute server on its default address.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use offload_duration::parse as parse_duration;
use offload_proto::v1::UpstreamWait;
use offload_serve::{
    admission::{Admission, gradient::GradientSettings},
    flags::choice,
    runtime::{Flavor, available_cores},
    transport::read_pem,
};
use offload_telemetry::LogFormat;
use tonic::codec::CompressionEncoding;

use crate::{connection::TlsClient, discovery::Target};

/// How replies travel from compute to the gateway (`--compute-compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HopCompression {
    /// gzip, as compute offers it to any client that accepts it.
    Gzip,
    /// Uncompressed (gRPC's name for it).
    Identity,
}

impl HopCompression {
    /// The encoding the gateway's clients accept from compute, if any.
    pub fn accepted(self) -> Option<CompressionEncoding> {
        match self {
            Self::Gzip => Some(CompressionEncoding::Gzip),
            Self::Identity => None,
        }
    }
}

/// The offload gateway: accepts offload.v1 requests and forwards them to a balanced set of compute replicas.
#[derive(Debug, Clone, Parser)]
#[command(name = "offload-gateway", version)]
pub struct Config {
    /// Address to listen on for gRPC.
    #[arg(long, env = "OFFLOAD_GATEWAY_LISTEN", default_value = "127.0.0.1:50050")]
    pub listen: SocketAddr,

    /// Compute endpoints to balance over, comma-separated: `http://host:port`, `https://host:port` (with
    /// --compute-tls-ca), or `dns:///name:port`, every address of the name, re-resolved every --dns-refresh (a
    /// Kubernetes headless Service: one address per ready pod).
    #[arg(long, env = "OFFLOAD_GATEWAY_COMPUTE", value_delimiter = ',', default_value = "http://127.0.0.1:50051")]
    pub compute: Vec<String>,

    /// How often `dns:///` compute names are resolved again, so pods joining and leaving are seen.
    #[arg(long, env = "OFFLOAD_GATEWAY_DNS_REFRESH", default_value = "5s", value_parser = parse_duration)]
    pub dns_refresh: Duration,

    /// Call compute over TLS, trusting this CA (PEM) for compute's certificate. Plaintext unless set.
    #[arg(long, env = "OFFLOAD_GATEWAY_COMPUTE_TLS_CA")]
    pub compute_tls_ca: Option<PathBuf>,

    /// Mutual TLS: the gateway's client certificate chain (PEM) presented to compute. Needs --compute-tls-key.
    #[arg(long, env = "OFFLOAD_GATEWAY_COMPUTE_TLS_CERT", requires_all = ["compute_tls_key", "compute_tls_ca"])]
    pub compute_tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --compute-tls-cert.
    #[arg(long, env = "OFFLOAD_GATEWAY_COMPUTE_TLS_KEY", requires = "compute_tls_cert")]
    pub compute_tls_key: Option<PathBuf>,

    /// The name compute's certificate must carry. Discovered endpoints are pod IPs, so set this to the name in
    /// the certificate (e.g. `compute.offload.svc`). Default: each URL's host.
    #[arg(long, env = "OFFLOAD_GATEWAY_COMPUTE_TLS_SERVER_NAME", requires = "compute_tls_ca")]
    pub compute_tls_server_name: Option<String>,

    /// How the gateway waits for compute when a request says UPSTREAM_WAIT_UNSPECIFIED: `async` (the right way),
    /// `blocking` (a synchronous client called on the runtime thread), `spawn-blocking`, `spawn-task`.
    #[arg(
        long,
        env = "OFFLOAD_GATEWAY_DEFAULT_UPSTREAM_WAIT",
        value_parser = choice::<UpstreamWait>(),
        default_value_t = UpstreamWait::Async
    )]
    pub default_upstream_wait: UpstreamWait,

    /// tokio scheduler for the gateway itself: `thread-per-core` (the default) serves each connection on one of
    /// `--workers` threads with a runtime of its own and connections of its own to compute, so nothing on a call's
    /// path crosses threads, and runs a call on another thread only when its connection's thread is clearly busier
    /// (one busy connection still gets every core; its HTTP/2 framing stays on one); `multi-thread` is tokio's
    /// work-stealing pool (every hand-off may cross threads: more CPU per call); `current-thread` one event loop.
    #[arg(long, env = "OFFLOAD_GATEWAY_RUNTIME", value_enum, default_value_t = Flavor::ThreadPerCore)]
    pub runtime: Flavor,

    /// tokio worker threads, or shards with `thread-per-core` (not `current-thread`). Default: the CPUs this
    /// process may use.
    #[arg(long, env = "OFFLOAD_GATEWAY_WORKERS", default_value_t = available_cores())]
    pub workers: usize,

    /// Most requests in flight through the gateway; more are refused at once with RESOURCE_EXHAUSTED (a call from a
    /// connection holding less than its fair share waits for the next slot freed instead). The gateway
    /// holds little per request (a few kB, one reply at a time), so 1024 bounds memory while staying well above
    /// what the compute tier can absorb.
    #[arg(long, env = "OFFLOAD_GATEWAY_MAX_INFLIGHT", default_value_t = 1024)]
    pub max_inflight: usize,

    /// Adapt the limit on requests in flight to the latency of the admitted ones (the gradient algorithm of
    /// Envoy's adaptive-concurrency filter), with `--max-inflight` as its ceiling: no more calls in flight than
    /// keep their latency within `--adaptive-tolerance` of the ideal, the rest refused at once. Without it the
    /// limit is `--max-inflight` itself, which bounds memory but lets admitted calls queue at compute under
    /// overload. The ideal latency is measured with one call in flight (25 calls admitted one at a time): at start
    /// and every `--adaptive-min-rtt-interval`; whenever the limit is down to 1 anyway, it is measured for free.
    #[arg(long, env = "OFFLOAD_GATEWAY_ADAPTIVE_CONCURRENCY")]
    pub adaptive_concurrency: bool,

    /// With `--adaptive-concurrency`: how far the median latency may rise above the ideal before the limit
    /// shrinks (0.25: 25 %).
    #[arg(long, env = "OFFLOAD_GATEWAY_ADAPTIVE_TOLERANCE", default_value_t = 0.25)]
    pub adaptive_tolerance: f64,

    /// With `--adaptive-concurrency`: how often the limit is adjusted.
    #[arg(long, env = "OFFLOAD_GATEWAY_ADAPTIVE_WINDOW", default_value = "100ms", value_parser = parse_duration)]
    pub adaptive_window: Duration,

    /// With `--adaptive-concurrency`: how often the ideal latency is measured again.
    #[arg(
        long,
        env = "OFFLOAD_GATEWAY_ADAPTIVE_MIN_RTT_INTERVAL",
        default_value = "30s",
        value_parser = parse_duration
    )]
    pub adaptive_min_rtt_interval: Duration,

    /// Deadline given to the upstream call when the client sets none, so that no call can wait forever. Longer
    /// than the largest default job (about a minute).
    #[arg(long, env = "OFFLOAD_GATEWAY_DEFAULT_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub default_timeout: Duration,

    /// How long a connection attempt to a compute endpoint may take before it counts as unreachable.
    #[arg(long, env = "OFFLOAD_GATEWAY_CONNECT_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// HTTP/2 PING interval on every connection to compute, also while it is idle. Together with
    /// --compute-keepalive-timeout it bounds how long a replica that went silent without a reset (a network
    /// partition, a dead node) keeps receiving calls: interval + timeout, 4 s with the defaults. A ping a second
    /// is 17 bytes each way: nothing, against noticing an idle connection's death a second sooner.
    #[arg(long, env = "OFFLOAD_GATEWAY_COMPUTE_KEEPALIVE_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub compute_keepalive_interval: Duration,

    /// HTTP/2 connections to each compute replica, for each shard of a `thread-per-core` gateway (Envoy keeps its
    /// pools per worker too); calls take their shard's in turn. One, as gRPC's own clients keep per address: on
    /// each side a connection is one task, which every call on it passes through, so a compute with many cores
    /// serving one busy gateway may want several. On the 2-core development machine 2 measured the same as 1
    /// (docs/log/overhead-2026.md).
    #[arg(long, env = "OFFLOAD_GATEWAY_COMPUTE_CONNECTIONS", default_value_t = 1)]
    pub compute_connections: usize,

    /// How long a PING to compute may go unanswered before its connection counts as dead: its calls in flight are
    /// retried on another replica (deadline permitting) and the replica leaves rotation. Far above a loaded
    /// network's round trip and a busy compute's time to answer a ping, below the 5 s deadlines clients commonly
    /// set; a compute whose runtime is blocked longer than this (INLINE jobs on one thread) is treated as gone.
    #[arg(long, env = "OFFLOAD_GATEWAY_COMPUTE_KEEPALIVE_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub compute_keepalive_timeout: Duration,

    /// After a compute endpoint's health stream breaks, wait this long before watching it again. Bounds how soon a
    /// restarted replica gets traffic again.
    #[arg(long, env = "OFFLOAD_GATEWAY_HEALTH_RETRY", default_value = "250ms", value_parser = parse_duration)]
    pub health_retry: Duration,

    /// Largest gRPC message accepted from compute or sent to clients, in bytes. Must be at least compute's
    /// `--max-message-bytes` or the largest replies will not pass.
    #[arg(long, env = "OFFLOAD_GATEWAY_MAX_MESSAGE_BYTES", default_value_t = offload_proto::MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,

    /// Whether compute is asked to gzip its replies to the gateway (`gzip`) or not (`identity`). Requests are a
    /// few bytes and always go uncompressed. Off by default, by measurement: on Factorial(200000) gzip cuts the
    /// hop's bytes 2.24× (974 kB to 435 kB) but costs compute 83 % more CPU per call (docs/api.md, "Compression"):
    /// worth it only where the network between the tiers (below about 60 Mbit/s), not CPU, is the scarce resource.
    #[arg(long, env = "OFFLOAD_GATEWAY_COMPUTE_COMPRESSION", value_enum, default_value_t = HopCompression::Identity)]
    pub compute_compression: HopCompression,

    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish before they are dropped.
    #[arg(long, env = "OFFLOAD_GATEWAY_DRAIN_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// On SIGTERM/SIGINT, how long to keep taking new calls after health turns NOT_SERVING, so that balancers
    /// watching health stop sending here before connections are refused (at most --drain-timeout). Set it to how
    /// long your balancer takes to drop an endpoint; `0s` stops at once.
    #[arg(long, env = "OFFLOAD_GATEWAY_LAME_DUCK", default_value = "100ms", value_parser = parse_duration)]
    pub lame_duck: Duration,

    /// A poll of a request's handler that holds its tokio worker longer than this is a stall: logged as a WARN
    /// while it lasts (method, upstream-wait style, n, thread, trace id) and counted in
    /// `offload_runtime_stalls_total`. `0` turns the detector off.
    #[arg(long, env = "OFFLOAD_GATEWAY_STALL_THRESHOLD", default_value = "10ms", value_parser = parse_duration)]
    pub stall_threshold: Duration,

    /// Connections, HTTP/2 streams and windows, and the timeouts that bound slow or silent clients.
    #[command(flatten, next_help_heading = "Connection limits")]
    pub limits: offload_serve::limits::ConnectionLimits,

    /// Admin address serving Prometheus metrics at `/metrics` (for example `0.0.0.0:9090`). Off unless set.
    #[arg(long, env = "OFFLOAD_GATEWAY_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Log line format.
    #[arg(long, env = "OFFLOAD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The most `--compute-connections`: a bound on what one mistyped flag makes the gateway open per replica.
const MAX_COMPUTE_CONNECTIONS: usize = 64;

impl Config {
    /// The parsed `--compute` entries.
    pub fn targets(&self) -> Result<Vec<Target>, String> {
        self.compute.iter().filter(|c| !c.trim().is_empty()).map(|c| Target::parse(c)).collect()
    }

    /// The TLS settings towards compute (`None`: plaintext), reading the PEM files; a file that is not what its flag
    /// asks for is refused here, at start, naming the flags.
    pub fn compute_tls(&self) -> anyhow::Result<Option<TlsClient>> {
        let Some(ca) = &self.compute_tls_ca else { return Ok(None) };
        let ca = read_pem(ca, "--compute-tls-ca")?;
        let identity = match (&self.compute_tls_cert, &self.compute_tls_key) {
            (Some(cert), Some(key)) => {
                Some((read_pem(cert, "--compute-tls-cert")?, read_pem(key, "--compute-tls-key")?))
            }
            _ => None,
        };
        let identity = identity.as_ref().map(|(cert, key)| (cert.as_slice(), key.as_slice()));
        TlsClient::new(&ca, identity, self.compute_tls_server_name.as_deref()).map(Some).map_err(anyhow::Error::msg)
    }

    /// The admission control `--max-inflight` and the `--adaptive-*` flags ask for.
    pub fn admission(&self) -> Admission {
        let admission = if self.adaptive_concurrency {
            Admission::adaptive(GradientSettings {
                window: self.adaptive_window,
                min_rtt_interval: self.adaptive_min_rtt_interval,
                tolerance: self.adaptive_tolerance,
                ..GradientSettings::with_ceiling(self.max_inflight)
            })
        } else {
            Admission::new(self.max_inflight)
        };
        // A call waiting for its fair share of the slots waits at most two send timeouts (see `Admission`).
        admission.waiting_at_most(self.limits.send_timeout * 2)
    }

    /// Checks what clap cannot. Fails with a message naming the flag.
    pub fn validate(&self) -> Result<(), String> {
        offload_serve::stall::validate_threshold("--stall-threshold", self.stall_threshold)?;
        if self.compute.iter().all(|c| c.trim().is_empty()) {
            return Err("--compute needs at least one endpoint URL".into());
        }
        for target in self.targets()? {
            match target {
                Target::Url(url) if url.starts_with("https:") && self.compute_tls_ca.is_none() => {
                    return Err(format!("--compute: {url:?} is https: give --compute-tls-ca"));
                }
                Target::Url(url) if url.starts_with("http:") && self.compute_tls_ca.is_some() => {
                    return Err(format!("--compute: {url:?} is plaintext but --compute-tls-ca asks for TLS"));
                }
                _ => {}
            }
        }
        if self.default_upstream_wait == UpstreamWait::Unspecified {
            return Err("--default-upstream-wait must name a style".into());
        }
        if self.compute_keepalive_interval.is_zero() || self.compute_keepalive_timeout.is_zero() {
            return Err("--compute-keepalive-interval and --compute-keepalive-timeout must be above zero".into());
        }
        if self.dns_refresh.is_zero() {
            return Err("--dns-refresh must be above zero".into());
        }
        if self.max_inflight == 0 || self.workers == 0 {
            return Err("--max-inflight and --workers must be at least 1".into());
        }
        if !(1..=MAX_COMPUTE_CONNECTIONS).contains(&self.compute_connections) {
            return Err(format!(
                "--compute-connections must be between 1 and {MAX_COMPUTE_CONNECTIONS}, not {}",
                self.compute_connections
            ));
        }
        if !(self.adaptive_tolerance.is_finite() && self.adaptive_tolerance >= 0.0) {
            return Err("--adaptive-tolerance must be a number of at least 0".into());
        }
        if self.adaptive_window.is_zero() || self.adaptive_min_rtt_interval.is_zero() {
            return Err("--adaptive-window and --adaptive-min-rtt-interval must be above zero".into());
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
        assert_eq!(config.default_upstream_wait, UpstreamWait::Async);
        let spawned = Config::parse_from(["offload-gateway", "--default-upstream-wait", "spawn-task"]);
        assert_eq!(spawned.default_upstream_wait, UpstreamWait::SpawnTask);
    }

    #[test]
    fn several_endpoints() {
        let config = Config::parse_from(["offload-gateway", "--compute", "http://a:1,http://b:2"]);
        assert_eq!(config.compute.len(), 2);
        let bad = Config::parse_from(["offload-gateway", "--compute", "not a url"]);
        assert!(bad.validate().is_err());
    }

    #[test]
    fn dns_targets_and_tls_must_agree_with_the_urls() {
        let dns = Config::parse_from(["offload-gateway", "--compute", "dns:///compute.offload:50051,http://x:1"]);
        dns.validate().expect("valid");
        assert_eq!(dns.targets().expect("targets")[0], Target::Dns { host: "compute.offload".into(), port: 50051 });
        let https_without_ca = Config::parse_from(["offload-gateway", "--compute", "https://x:1"]);
        assert!(https_without_ca.validate().expect_err("refused").contains("--compute-tls-ca"));
        let http_with_ca =
            Config::parse_from(["offload-gateway", "--compute", "http://x:1", "--compute-tls-ca", "/ca.pem"]);
        assert!(http_with_ca.validate().is_err());
        let cert_without_key =
            Config::try_parse_from(["offload-gateway", "--compute-tls-ca", "/ca.pem", "--compute-tls-cert", "/c.pem"]);
        assert!(cert_without_key.is_err(), "clap requires --compute-tls-key with --compute-tls-cert");
    }

    #[test]
    fn one_connection_to_each_replica_unless_told() {
        assert_eq!(Config::parse_from(["offload-gateway"]).compute_connections, 1);
        let told = Config::parse_from(["offload-gateway", "--compute-connections", "5"]);
        told.validate().expect("valid");
        assert_eq!(told.compute_connections, 5);
        for bad in ["0", "65"] {
            let config = Config::parse_from(["offload-gateway", "--compute-connections", bad]);
            assert!(config.validate().expect_err("refused").contains("--compute-connections"), "{bad}");
        }
    }

    #[test]
    fn a_silent_replica_is_given_up_on_within_the_keepalive_bound() {
        let config = Config::parse_from(["offload-gateway"]);
        assert_eq!(config.compute_keepalive_interval + config.compute_keepalive_timeout, Duration::from_secs(4));
        for bad in ["--compute-keepalive-interval=0s", "--compute-keepalive-timeout=0ms"] {
            let config = Config::parse_from(["offload-gateway", bad]);
            let flag = bad.split('=').next().unwrap_or_default();
            assert!(config.validate().expect_err("refused").contains(flag), "{bad}");
        }
    }

    #[test]
    fn adaptive_concurrency_is_opt_in_and_bounded_by_max_inflight() {
        let fixed = Config::parse_from(["offload-gateway", "--max-inflight", "64"]);
        assert_eq!(fixed.admission().limit(), 64);
        let adaptive = Config::parse_from(["offload-gateway", "--max-inflight", "64", "--adaptive-concurrency"]);
        adaptive.validate().expect("valid");
        let refused = adaptive.admission();
        let _one = refused.try_admit("--max-inflight").expect("one call while the ideal latency is measured");
        let status = refused.try_admit("--max-inflight").expect_err("a second waits for the measurement");
        assert!(status.message().contains("adaptive concurrency limit; --max-inflight=64"), "{}", status.message());
        for bad in [["--adaptive-tolerance=-0.1"], ["--adaptive-tolerance=NaN"], ["--adaptive-window=0s"]] {
            let config = Config::parse_from(["offload-gateway", "--adaptive-concurrency", bad[0]]);
            let flag = bad[0].split('=').next().unwrap_or_default();
            assert!(config.validate().expect_err("refused").contains(flag), "{bad:?}");
        }
    }
}
