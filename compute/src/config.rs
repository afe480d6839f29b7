//! Configuration of `offload-compute`: one documented struct; every flag also reads an `OFFLOAD_COMPUTE_*`
//! environment variable, and every default works on a laptop.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;
use offload_duration::parse as parse_duration;
use offload_proto::v1::ExecMode;
use offload_serve::{
    flags::choice,
    runtime::{Flavor, available_cores},
};
use offload_telemetry::LogFormat;

use crate::{executor::PoolPriority, kernel::sum_of_squares};

/// The offload compute server: exact factorial and sum of squares, run in a selectable execution mode.
#[derive(Debug, Clone, Parser)]
#[command(name = "offload-compute", version)]
pub struct Config {
    /// Address to listen on for gRPC.
    #[arg(long, env = "OFFLOAD_COMPUTE_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// Mode used when a request says EXEC_MODE_UNSPECIFIED. `adaptive` is the production choice: tiny jobs
    /// inline, everything else on the rayon pool.
    #[arg(
        long,
        env = "OFFLOAD_COMPUTE_DEFAULT_MODE",
        value_parser = choice::<ExecMode>(),
        default_value_t = ExecMode::Adaptive
    )]
    pub default_mode: ExecMode,

    /// tokio scheduler: `current-thread` reproduces a single event loop (asyncio's model), `multi-thread` is
    /// tokio's default work-stealing pool, `thread-per-core` serves each connection on one of `--workers` threads
    /// with a current-thread runtime of its own (no `block-in-place` there).
    #[arg(long, env = "OFFLOAD_COMPUTE_RUNTIME", value_enum, default_value_t = Flavor::MultiThread)]
    pub runtime: Flavor,

    /// tokio worker threads, or shards with `thread-per-core` (not `current-thread`). Default: the CPUs this
    /// process may use.
    #[arg(long, env = "OFFLOAD_COMPUTE_WORKERS", default_value_t = available_cores())]
    pub workers: usize,

    /// Threads in the dedicated rayon pool. Default: the CPUs this process may use, so CPU work never
    /// oversubscribes the machine.
    #[arg(long, env = "OFFLOAD_COMPUTE_RAYON_THREADS", default_value_t = available_cores())]
    pub rayon_threads: usize,

    /// OS scheduling priority of the rayon threads: `idle` (SCHED_IDLE: preempted at once whenever a tokio worker
    /// needs the core, so offloaded work never delays the runtime), `low` (nice 10) or `normal`.
    #[arg(long, env = "OFFLOAD_COMPUTE_RAYON_PRIORITY", value_enum, default_value_t = PoolPriority::Idle)]
    pub rayon_priority: PoolPriority,

    /// Most jobs in flight at once; more are refused with RESOURCE_EXHAUSTED rather than queued, except that a call
    /// from a connection holding less than its fair share waits for the next slot freed. 256 keeps the worst case
    /// (256 maximal factorial replies) under a gigabyte while leaving room for high-concurrency light load.
    #[arg(long, env = "OFFLOAD_COMPUTE_MAX_INFLIGHT", default_value_t = 256)]
    pub max_inflight: usize,

    /// Largest n accepted by Factorial. 200 000! has 973 351 digits and takes ~30 ms of one core.
    #[arg(long, env = "OFFLOAD_COMPUTE_MAX_FACTORIAL_N", default_value_t = 200_000)]
    pub max_factorial_n: u64,

    /// Largest n accepted by SumOfSquares. 10^12 is about a minute of work on two cores: long enough that
    /// clients need deadlines, short enough to finish.
    #[arg(long, env = "OFFLOAD_COMPUTE_MAX_SUM_OF_SQUARES_N", default_value_t = 1_000_000_000_000)]
    pub max_sum_of_squares_n: u64,

    /// Largest gRPC message sent, in bytes. Replies that would be larger are refused with INVALID_ARGUMENT up
    /// front. The default is tonic's and grpcurl's default receive limit, so every client can read every reply.
    #[arg(long, env = "OFFLOAD_COMPUTE_MAX_MESSAGE_BYTES", default_value_t = offload_proto::MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,

    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish before they are dropped.
    #[arg(long, env = "OFFLOAD_COMPUTE_DRAIN_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// On SIGTERM/SIGINT, how long to keep taking new calls after health turns NOT_SERVING, so that balancers
    /// watching health stop sending here before connections are refused (at most --drain-timeout). Set it to how
    /// long your balancer takes to drop an endpoint; `0s` stops at once.
    #[arg(long, env = "OFFLOAD_COMPUTE_LAME_DUCK", default_value = "100ms", value_parser = parse_duration)]
    pub lame_duck: Duration,

    /// Name this instance reports in every reply's `execution.served_by`. Default: `HOST:port`, HOST being
    /// `$HOSTNAME` if set and not empty (the pod name on Kubernetes), else the machine's host name, else `compute`.
    #[arg(long, env = "OFFLOAD_COMPUTE_INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// Fault injection for resilience tests: a job with exactly this n panics inside the kernel's thread. The
    /// request gets INTERNAL; the server must keep serving. Off unless set.
    #[arg(long, env = "OFFLOAD_COMPUTE_PANIC_ON_N")]
    pub panic_on_n: Option<u64>,

    /// A poll of a request's handler that holds its tokio worker longer than this is a stall: logged as a WARN
    /// while it lasts (method, mode, n, thread, trace id) and counted in `offload_runtime_stalls_total`. `0` turns
    /// the detector off.
    #[arg(long, env = "OFFLOAD_COMPUTE_STALL_THRESHOLD", default_value = "10ms", value_parser = parse_duration)]
    pub stall_threshold: Duration,

    /// Connections, HTTP/2 streams and windows, and the timeouts that bound slow or silent clients.
    #[command(flatten, next_help_heading = "Connection limits")]
    pub limits: offload_serve::limits::ConnectionLimits,

    /// Admin address serving Prometheus metrics at `/metrics` (for example `0.0.0.0:9090`). Off unless set.
    #[arg(long, env = "OFFLOAD_COMPUTE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Log line format.
    #[arg(long, env = "OFFLOAD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Serve gRPC over TLS with this certificate chain (PEM). Needs --tls-key. Plaintext unless set.
    #[arg(long, env = "OFFLOAD_COMPUTE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "OFFLOAD_COMPUTE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Mutual TLS: accept only clients presenting a certificate signed by this CA (PEM). Needs --tls-cert.
    #[arg(long, env = "OFFLOAD_COMPUTE_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

impl Config {
    /// Checks what clap cannot: combinations and ranges. Fails with a message naming the flag.
    pub fn validate(&self) -> Result<(), String> {
        offload_serve::stall::validate_threshold("--stall-threshold", self.stall_threshold)?;
        if self.max_sum_of_squares_n > sum_of_squares::MAX_N {
            return Err(format!(
                "--max-sum-of-squares-n={} is above {}, the largest n whose sum fits in 128 bits",
                self.max_sum_of_squares_n,
                sum_of_squares::MAX_N
            ));
        }
        if self.max_inflight == 0 || self.workers == 0 || self.rayon_threads == 0 {
            return Err("--max-inflight, --workers and --rayon-threads must be at least 1".into());
        }
        if self.default_mode == ExecMode::Unspecified {
            return Err("--default-mode must name a mode".into());
        }
        if self.runtime != Flavor::MultiThread && self.default_mode == ExecMode::BlockInPlace {
            return Err("--default-mode=block-in-place needs --runtime=multi-thread".into());
        }
        Ok(())
    }

    /// `--instance-id`, or its default for a server listening on `port` (see the flag).
    pub fn instance_id(&self, port: u16) -> String {
        self.instance_id.clone().unwrap_or_else(|| {
            let host = default_host(std::env::var("HOSTNAME").ok(), machine_host_name);
            format!("{host}:{port}")
        })
    }
}

/// The host part of the default `--instance-id`, the first of these that is set and not empty: `$HOSTNAME` (the
/// pod name on Kubernetes, where the container's host name may differ), the machine's host name (shells set
/// `HOSTNAME` without exporting it, so a server started from one, by systemd or in plain Docker seldom sees it),
/// and `compute` last, so the id is never empty.
fn default_host(env: Option<String>, machine: impl FnOnce() -> Option<String>) -> String {
    let set = |name: &Option<String>| name.as_ref().is_some_and(|n| !n.trim().is_empty());
    let host = if set(&env) { env } else { Some(machine()).filter(set).flatten() };
    host.map_or_else(|| "compute".to_owned(), |h| h.trim().to_owned())
}

/// The machine's host name (`gethostname(2)`), if it has one.
fn machine_host_name() -> Option<String> {
    // 256 bytes: above HOST_NAME_MAX (64 on Linux, 255 by POSIX), with room for the terminating NUL.
    let mut buffer = [0u8; 256];
    // SAFETY: the pointer and length describe `buffer`, which outlives the call; gethostname writes at most
    // `len` bytes into it.
    let status = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if status != 0 {
        return None;
    }
    let end = buffer.iter().position(|&b| b == 0)?;
    String::from_utf8(buffer[..end].to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_validate() {
        let config = Config::parse_from(["offload-compute"]);
        config.validate().expect("defaults are valid");
        assert_eq!(config.listen, "127.0.0.1:50051".parse().expect("addr"));
        assert_eq!(config.default_mode, ExecMode::Adaptive);
        assert_eq!(config.stall_threshold, offload_serve::stall::DEFAULT_THRESHOLD);
        let off = Config::parse_from(["offload-compute", "--stall-threshold", "0"]);
        assert!(off.stall_threshold.is_zero());
    }

    #[test]
    fn modes_are_named_as_everywhere_else() {
        let config = Config::parse_from(["offload-compute", "--default-mode", "spawn-blocking"]);
        assert_eq!(config.default_mode, ExecMode::SpawnBlocking);
        assert!(Config::try_parse_from(["offload-compute", "--default-mode", "unspecified"]).is_err());
        let current =
            Config::parse_from(["offload-compute", "--runtime=current-thread", "--default-mode=block-in-place"]);
        assert!(current.validate().expect_err("refused").contains("--runtime=multi-thread"));
    }

    #[test]
    fn the_default_instance_id_prefers_hostname_then_the_machine_then_compute() {
        let named = |name: &str| Some(name.to_owned());
        assert_eq!(default_host(named("pod-7"), || named("machine")), "pod-7");
        assert_eq!(default_host(None, || named("machine")), "machine");
        assert_eq!(default_host(named(""), || named("machine")), "machine", "an empty $HOSTNAME is unset");
        assert_eq!(default_host(None, || None), "compute");
        assert_eq!(default_host(None, || named(" ")), "compute", "an empty host name is none");
        // The machine is asked only when $HOSTNAME is not there.
        assert_eq!(default_host(named("pod-7"), || panic!("not asked")), "pod-7");
        // This machine has a name, and the default uses it when --instance-id is not given.
        let machine = machine_host_name().expect("gethostname");
        assert!(!machine.is_empty());
        let given = Config::parse_from(["offload-compute", "--instance-id", "mine"]);
        assert_eq!(given.instance_id(80), "mine");
    }

    #[test]
    fn rejects_impossible_limits() {
        let config = Config::parse_from(["offload-compute", "--max-sum-of-squares-n", "20000000000000"]);
        assert!(config.validate().expect_err("too big").contains("--max-sum-of-squares-n"));
    }
}
