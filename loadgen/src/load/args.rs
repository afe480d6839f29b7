//! `offload-bench load`'s flags: ghz's, by ghz's names (`ghz --help`), each doc comment its `--help` line. Where
//! offload differs on purpose, the line says so: `--rps` and the load schedules send open-loop (latency from each
//! call's scheduled send time), and reports add p99.9.

use std::{path::PathBuf, time::Duration};

use clap::Args;
use offload_duration::parse as parse_duration;

use crate::descriptors::DescriptorArgs;

/// ghz's flags. Every one is optional here so that `--config` can fill it; flags given win over the file.
#[derive(Debug, Clone, Default, Args)]
#[command(after_help = "offload differs from ghz on purpose in two ways: --rps and --load-schedule send open-loop \
(calls leave on schedule whatever the server does, and latency is measured from each call's scheduled send time, \
so a stalled server is charged for every call it delayed), and every report adds p99.9. docs/loadgen.md has the \
flag-by-flag comparison.")]
pub struct LoadArgs {
    /// Host and port to test (`host:port`, as ghz), or a URL (`http://…` plaintext, `https://…` TLS).
    pub host: Option<String>,
    /// Path to a JSON, TOML or YAML config file with ghz's keys; flags given on the command line win.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A fully-qualified method name in 'package.Service/Method' or 'package.Service.Method' format.
    #[arg(long)]
    pub call: Option<String>,
    #[command(flatten)]
    pub descriptors: DescriptorArgs,

    /// File containing trusted root certificates for verifying the server (default: the system's).
    #[arg(long)]
    pub cacert: Option<PathBuf>,
    /// File containing client certificate (public key), to present to the server. Must also provide --key.
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// File containing client private key, to present to the server. Must also provide --cert.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Server name override when validating TLS certificate - useful for self signed certs.
    #[arg(long)]
    pub cname: Option<String>,
    /// Skip TLS client verification of the server's certificate chain and host name.
    #[arg(long = "skipTLS")]
    pub skip_tls: bool,
    /// Use plaintext and insecure connection.
    #[arg(long)]
    pub insecure: bool,
    /// Value to be used as the :authority pseudo-header.
    #[arg(long)]
    pub authority: Option<String>,

    /// Make requests asynchronously, not waiting for one to finish before sending the next: what --rps and
    /// --load-schedule always do here (open loop), so --async needs one of them.
    #[arg(long = "async")]
    pub async_: bool,
    /// Requests per second. offload: open loop, calls sent on a fixed schedule and latency measured from each
    /// call's scheduled send time (ghz: a rate limit on closed-loop workers). Default: closed loop, no limit.
    /// 0.001 to 1000000 (0: none).
    #[arg(short = 'r', long)]
    pub rps: Option<f64>,
    /// Load schedule: const, step or line (open loop, as --rps). Default is const.
    #[arg(long)]
    pub load_schedule: Option<String>,
    /// RPS load start value for step or line schedules.
    #[arg(long)]
    pub load_start: Option<u64>,
    /// Load end value for step or line load schedules.
    #[arg(long)]
    pub load_end: Option<u64>,
    /// Load step value (step schedule) or slope per second (line schedule).
    #[arg(long, allow_hyphen_values = true)]
    pub load_step: Option<i64>,
    /// Load step duration for the step load schedule.
    #[arg(long, value_parser = parse_duration)]
    pub load_step_duration: Option<Duration>,
    /// Max load duration for step or line schedules, after which the rate holds.
    #[arg(long, value_parser = parse_duration)]
    pub load_max_duration: Option<Duration>,

    /// Number of request workers to run concurrently for const concurrency schedule. Default is 50. Open loop:
    /// the most calls in flight at once. 1 to 10000.
    #[arg(short = 'c', long)]
    pub concurrency: Option<usize>,
    /// Concurrency change schedule: const, step or line. Default is const.
    #[arg(long)]
    pub concurrency_schedule: Option<String>,
    /// Concurrency start value for step and line concurrency schedules.
    #[arg(long)]
    pub concurrency_start: Option<u64>,
    /// Concurrency end value for step and line concurrency schedules.
    #[arg(long)]
    pub concurrency_end: Option<u64>,
    /// Concurrency step / slope value for step and line concurrency schedules. Default is 1.
    #[arg(long, allow_hyphen_values = true)]
    pub concurrency_step: Option<i64>,
    /// Concurrency step duration for the step concurrency schedule.
    #[arg(long, value_parser = parse_duration)]
    pub concurrency_step_duration: Option<Duration>,
    /// Max concurrency adjustment duration for step or line concurrency schedules.
    #[arg(long, value_parser = parse_duration)]
    pub concurrency_max_duration: Option<Duration>,

    /// Number of requests to run. Default is 200.
    #[arg(short = 'n', long)]
    pub total: Option<u64>,
    /// Timeout for each request. Default is 20s, use 0 for infinite.
    #[arg(short = 't', long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Duration of application to send requests. When duration is reached, application stops and exits. If
    /// duration is specified, n is ignored. Examples: -z 10s -z 3m.
    #[arg(short = 'z', long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Maximum duration of application to send requests with n setting respected. If duration is reached before n
    /// requests are completed, application stops and exits. Examples: -x 10s -x 3m.
    #[arg(short = 'x', long, value_parser = parse_duration)]
    pub max_duration: Option<Duration>,
    /// What calls in flight when time is up become: close (cancelled, counted as errors), wait (awaited,
    /// counted) or ignore (cancelled, not counted). Default is close.
    #[arg(long)]
    pub duration_stop: Option<String>,

    /// The call data as stringified JSON. If the value is '@' then the request contents are read from stdin.
    #[arg(short = 'd', long)]
    pub data: Option<String>,
    /// File path for call data JSON file. Examples: /home/user/file.json or ./file.json.
    #[arg(short = 'D', long = "data-file")]
    pub data_file: Option<PathBuf>,
    /// The call data comes as serialized binary message or multiple count-prefixed messages read from stdin.
    #[arg(short = 'b', long)]
    pub binary: bool,
    /// File path for the call data as serialized binary message or multiple count-prefixed messages.
    #[arg(short = 'B', long = "binary-file")]
    pub binary_file: Option<PathBuf>,
    /// Request metadata as stringified JSON.
    #[arg(short = 'm', long)]
    pub metadata: Option<String>,
    /// File path for call metadata JSON file. Examples: /home/user/metadata.json or ./metadata.json.
    #[arg(short = 'M', long = "metadata-file")]
    pub metadata_file: Option<PathBuf>,
    /// Interval for stream requests between message sends.
    #[arg(long, value_parser = parse_duration)]
    pub stream_interval: Option<Duration>,
    /// Duration after which client will close the stream in each streaming call.
    #[arg(long, value_parser = parse_duration)]
    pub stream_call_duration: Option<Duration>,
    /// Count of messages sent (client stream) or received (server stream) after which the stream is closed.
    #[arg(long)]
    pub stream_call_count: Option<u64>,
    /// In streaming calls, regenerate and render the data template for each message.
    #[arg(long)]
    pub stream_dynamic_messages: bool,
    /// Reflect metadata as stringified JSON used only for reflection request (not supported: refused).
    #[arg(long)]
    pub reflect_metadata: Option<String>,

    /// Output path. If none provided stdout is used.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Output format. One of: summary, csv, json, pretty, html, influx-summary, influx-details, prometheus.
    /// Default is summary.
    #[arg(short = 'O', long)]
    pub format: Option<String>,
    /// Skip the first X requests when doing the results tally.
    #[arg(long = "skipFirst")]
    pub skip_first: Option<u64>,
    /// Count erroneous (non-OK) responses in stats calculations (percentiles, fastest, slowest, histogram).
    #[arg(long)]
    pub count_errors: bool,

    /// Number of connections to use. Concurrency is distributed evenly among all the connections. Default is 1.
    /// 1 to 1000.
    #[arg(long)]
    pub connections: Option<usize>,
    /// Connection timeout for the initial connection dial, and for server reflection as a whole. Default is 10s.
    #[arg(long, value_parser = parse_duration)]
    pub connect_timeout: Option<Duration>,
    /// Keepalive time duration. Only used if present and above 0.
    #[arg(long, value_parser = parse_duration)]
    pub keepalive: Option<Duration>,

    /// User specified name for the test.
    #[arg(long)]
    pub name: Option<String>,
    /// JSON representation of user-defined string tags.
    #[arg(long)]
    pub tags: Option<String>,
    /// Number of cpu cores to use (the load generator's worker threads). 1 to 1024.
    #[arg(long)]
    pub cpus: Option<usize>,
    /// The path to debug log file (not supported: refused; RUST_LOG=debug logs to stderr).
    #[arg(long)]
    pub debug: Option<String>,
    /// Enable Gzip compression on requests.
    #[arg(short = 'e', long)]
    pub enable_compression: bool,
    /// Client load balancing strategy when the host resolves to several addresses: pick_first (default) or
    /// round_robin.
    #[arg(long)]
    pub lb_strategy: Option<String>,
    /// No progress bar (offload).
    #[arg(long)]
    pub quiet: bool,

    /// A pass/fail criterion, as k6 writes them: `p(99)<50ms`, `avg<20ms`, `errors<1%`, `rps>1000`, `count>=1000`
    /// (repeatable; also "thresholds" in --config). Each is printed with its measured value; exit code 99 when
    /// any fails (offload).
    #[arg(long = "threshold")]
    pub thresholds: Vec<String>,
    /// Stop the run at once when a latency or error threshold fails (checked each second), report what was
    /// seen and exit with code 99 (offload).
    #[arg(long)]
    pub abort_on_fail: bool,
    /// Run shard I of N of this load (1-based: 2/3 is the second of three): an open-loop rate is sent as N
    /// interleaved schedules, -c and -n are divided; merge the shards' JSON reports with `merge` (offload).
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Run one shard of N, the one JOB_COMPLETION_INDEX names (0-based, as a Kubernetes Indexed Job sets it)
    /// (offload).
    #[arg(long, value_name = "N")]
    pub shards: Option<u64>,
    /// When to start sending: an RFC 3339 UTC time (2026-12-07T10:00:00Z) or Unix seconds. Shards given the same
    /// time interleave exactly; a shard without it starts at the next whole second of the clock (offload).
    #[arg(long, value_name = "TIME")]
    pub start_at: Option<String>,
}
