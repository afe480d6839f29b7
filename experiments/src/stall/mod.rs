//! `offload-bench stall`: does *this* gRPC server block its event loop? Any server: tonic, Python `grpc.aio`, Go,
//! Java, reached like `load` reaches it (server reflection, `--proto` or `--protoset`).
//!
//! Two phases against one target. **Idle**: a light probe (the standard health check by default) sent open-loop
//! at `--rps`, its latency measured from each call's *scheduled* send time, so a stall is charged to every probe
//! it delayed. **Loaded**: the same probe while `-c` clients send `--call` closed-loop, as fast as the server
//! answers. A server whose handlers block the event loop makes the probes wait behind them, and the probe's p99
//! climbs to about one blocking call; a server that keeps heavy work off its loop answers probes as fast as when
//! idle. [`verdict`] turns the two p99s into `stalls` or `ok` by a rule printed with it.
//!
//! It lives with the experiments, not in the load generator: it is a measurement with a conclusion, built from
//! the load generator's parts (open and closed loop runner, dynamic calls), as `compare` is; the load generator
//! stays one tool, ghz's.

mod output;
mod sender;
pub mod verdict;

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use clap::Args;
use offload_duration::parse as parse_duration;
use offload_loadgen::{
    call,
    descriptors::DescriptorArgs,
    limits,
    recording::Recording,
    runner::{self, Plan},
};

use self::{
    output::Outcome,
    sender::{NOT_SERVING, Sender},
    verdict::Rule,
};

/// Clients sending `--call` by default: enough to occupy every worker of a server with up to 8 threads (each
/// worker must be given a call to block on); a bigger server needs a bigger `-c`.
const DEFAULT_CONCURRENCY: usize = 8;
/// Probes in flight at most: far above rate × latency unless the server stalls for seconds, and then the wait
/// for a slot counts too, since latency runs from the scheduled time.
const PROBE_CONCURRENCY: usize = 256;
/// Probes sent and thrown away before the idle phase: the first calls on a connection pay for its warm-up
/// (HTTP/2 windows, the server's lazy set-up), which is not what the idle baseline is about.
const PROBE_WARMUP: Duration = Duration::from_millis(200);
/// Load sent before the loaded probes start: the clients' connections, the server's pools and queues reach their
/// steady state first, so the loaded phase measures the load, not its ramp.
const LOAD_SETTLE: Duration = Duration::from_millis(300);
/// Deadline of a probe: a probe slower than this is a failure (and counted at this latency).
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Does this gRPC server block its event loop? Probe latency idle, then under load, and a verdict.
///
/// The verdict's rule: the server **stalls** when the loaded probe p99 is at least `--min-ratio` (K, default 10)
/// times the idle p99 AND at least `--min-extra` (X, default 10 ms) above it; otherwise it is **ok**. Either half
/// alone misfires on a busy machine; a blocked event loop passes both by far (docs/stall.md has the
/// measurements).
#[derive(Debug, Clone, Args)]
pub struct StallArgs {
    /// Server address, `host:port` or a URL.
    #[arg(long)]
    pub target: String,
    /// The method the load sends, `package.Service/Method` (any method of any service).
    #[arg(long)]
    pub call: String,
    /// Its request as proto3 JSON (`{"n": 5000000, "mode": "EXEC_MODE_INLINE"}`); ghz's templates work.
    #[arg(short = 'd', long)]
    pub data: Option<String>,
    /// Its request metadata, a JSON object of strings; ghz's templates work.
    #[arg(short = 'm', long)]
    pub metadata: Option<String>,
    /// Clients sending `--call` at once, closed loop, in the loaded phase. Give at least the server's worker
    /// threads: a worker blocks only if it is given a call to block on (1 to 10000).
    #[arg(short = 'c', long, default_value_t = DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// Measured time of each phase (idle, loaded); the whole run takes a little over twice this.
    #[arg(short = 'z', long, default_value = "3s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Probes per second, open loop, in both phases (0.001 to 1000000). Light enough not to be load: a health
    /// check costs a server tens of microseconds, so 200/s is under 1 % of one core.
    #[arg(long, default_value_t = 200.0)]
    pub rps: f64,
    /// The probe: `health` (grpc.health.v1.Health/Check for the whole server) or any method,
    /// `package.Service/Method`, sent with an empty request.
    #[arg(long, default_value = "health")]
    pub probe: String,
    /// K of the rule: the loaded p99 must be at least this many times the idle p99 to be a stall (1 to 1000000).
    #[arg(long, default_value_t = verdict::DEFAULT_MIN_RATIO)]
    pub min_ratio: f64,
    /// X of the rule: the loaded p99 must also be at least this far above the idle p99 (`10ms`).
    #[arg(long, default_value = "10ms", value_parser = parse_duration)]
    pub min_extra: Duration,
    /// Deadline of each `--call` (`20s`; `0`: none, as `load -t 0`).
    #[arg(short = 't', long, default_value = "20s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Plaintext connection (the only kind supported; accepted for ghz compatibility).
    #[arg(long)]
    pub insecure: bool,
    /// Where the method's descriptors come from.
    #[command(flatten)]
    pub descriptors: DescriptorArgs,
    /// Also write the numbers and the verdict here as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl StallArgs {
    fn rule(&self) -> Rule {
        Rule { min_ratio: self.min_ratio, min_extra: self.min_extra }
    }

    /// Refuses, by flag and with the range it takes, every number that cannot mean a measurement: before any
    /// connection is opened.
    fn check(&self) -> anyhow::Result<()> {
        limits::check_rate("--rps", self.rps)?;
        limits::check_range("-c", self.concurrency, 1..=limits::MAX_CONCURRENCY, " clients")?;
        if self.duration.is_zero() {
            bail!("-z 0s: out of range; each phase needs a duration above 0 (default 3s)");
        }
        if !self.min_ratio.is_finite() || !(1.0..=verdict::MAX_MIN_RATIO).contains(&self.min_ratio) {
            bail!(
                "--min-ratio {:?}: out of range; it takes 1 to {} (a ratio below 1 would call a server whose probes \
                 got faster a stall)",
                self.min_ratio,
                verdict::MAX_MIN_RATIO
            );
        }
        Ok(())
    }
}

/// Measures, prints the verdict and writes `--json`.
pub fn run(args: StallArgs) -> anyhow::Result<()> {
    crate::block_on(stall(args))
}

async fn stall(args: StallArgs) -> anyhow::Result<()> {
    args.check()?;
    let timeout = (!args.timeout.is_zero()).then_some(args.timeout);
    let url = if args.target.contains("://") { args.target.clone() } else { format!("http://{}", args.target) };
    let source = args.descriptors.source();
    // Probe and load on connections of their own, so a probe never queues behind the load in the client.
    let probe_channel = call::connect(&url).await?;
    let probe = match args.probe.as_str() {
        "health" => Sender::health(probe_channel),
        method => Sender::dynamic(probe_channel, &source, method, None, None).await.context("--probe")?,
    };
    let load = Sender::dynamic(
        call::connect(&url).await?,
        &source,
        &args.call,
        args.data.as_deref(),
        args.metadata.as_deref(),
    )
    .await
    .context("--call")?;

    probes(&probe, args.rps, PROBE_WARMUP).await;
    let idle = probes(&probe, args.rps, args.duration).await;
    if idle.failed() > 0 {
        bail!("the probe {} fails on the idle server, so no verdict: {:?}", probe.method_name(), idle.errors);
    }
    let (loaded, load) = tokio::join!(
        async {
            tokio::time::sleep(LOAD_SETTLE).await;
            probes(&probe, args.rps, args.duration).await
        },
        closed_loop(&load, args.concurrency, LOAD_SETTLE + args.duration, timeout),
    );
    if load.ok() == 0 {
        bail!("no {} call succeeded, so nothing loaded the server: {:?}", args.call, load.errors);
    }
    let not_serving: u64 = loaded.errors.iter().filter(|(e, _)| e.contains(NOT_SERVING)).map(|(_, n)| n).sum();
    if not_serving > 0 {
        bail!(
            "{NOT_SERVING} ({not_serving} of {} probes under load), so no verdict: {:?}",
            loaded.count(),
            loaded.errors
        );
    }
    let outcome = Outcome::new(&args, probe.method_name(), idle, loaded, load, args.rule());
    print!("{}", outcome.text());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&outcome.json())?;
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Probes open-loop at `rps` for `duration`.
async fn probes(probe: &Sender, rps: f64, duration: Duration) -> Recording {
    let plan = Plan { concurrency: PROBE_CONCURRENCY, total: None, duration: Some(duration), rps: Some(rps) };
    let probe = probe.clone();
    runner::run(plan, move |worker| probe.clone().send(worker, Some(PROBE_TIMEOUT)), None).await
}

/// `concurrency` clients sending `load` back to back for `duration`.
async fn closed_loop(load: &Sender, concurrency: usize, duration: Duration, timeout: Option<Duration>) -> Recording {
    let plan = Plan { concurrency, total: None, duration: Some(duration), rps: None };
    let load = load.clone();
    runner::run(plan, move |worker| load.clone().send(worker, timeout), None).await
}
