//! One round of the comparison: start the servers, run the mixed load, read their CPU time, stop them.

use std::time::{Duration, Instant, SystemTime};

use anyhow::bail;
use offload_proto::{
    service_names,
    v1::{ExecMode, FactorialRequest, SumOfSquaresRequest, UpstreamWait},
};

use super::{
    CompareArgs,
    attribution::{Breakdown, Sink},
    pin,
    stall_events::{self, StallEvent},
    stalls::Stalls,
};
use crate::ServerRuntime;
use offload_loadgen::{
    call::{Call, Caller},
    recording::Recording,
    runner::{self, Plan},
};
use offload_testkit::{
    child::{ChildServer, cpu_time_of},
    cluster::Launcher,
    job::{JobSizer, Kernel},
    scrape::{self, HistogramDelta},
};

/// Deadline of a heavy call: far above any job, so only a truly stuck server fails it.
const HEAVY_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline of a probe: a probe slower than this is a failure worth counting, not a latency.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Probes in flight at most: far above rate × latency in any sane round, so the bound never shapes the result
/// unless the server stalls for seconds (and then the wait counts, since latency runs from the scheduled time).
/// Raised to the round's number of probes (see [`probe_plan`]), so that each probe's worker index is its number.
const PROBE_CONCURRENCY: usize = 256;
/// How long a server may take to drain and exit at the end of a round.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// Everything every round shares.
#[derive(Debug, Clone)]
pub struct Setup {
    pub args: CompareArgs,
    pub heavy: HeavyJob,
    pub probe_mode: ExecMode,
    pub heavy_concurrency: usize,
    pub cores: usize,
}

/// The heavy job and what it costs alone.
#[derive(Debug, Clone, Copy)]
pub struct HeavyJob {
    pub kernel: Kernel,
    pub n: u64,
    /// Best single-core time of the kernel, as the compute server measured it (`INLINE`, nothing else running).
    pub job_time: Duration,
}

impl HeavyJob {
    /// Measures the kernel on a compute server (the one at `--compute`, or a fresh one of this executable) and
    /// picks `n` for `job_ms` of one core when not given.
    pub async fn calibrate(args: &CompareArgs) -> anyhow::Result<Self> {
        let kernel = match args.heavy_method.as_str() {
            "sum-of-squares" => Kernel::SumOfSquares,
            "factorial" => Kernel::Factorial,
            other => bail!("--heavy-method {other:?}: use sum-of-squares or factorial"),
        };
        let fresh = match &args.compute {
            Some(_) => None,
            None => Some(ChildServer::start(Launcher::this_executable()?.compute(&["--listen", "127.0.0.1:0"]))?),
        };
        let url = match (&args.compute, &fresh) {
            (Some(url), _) => url.clone(),
            (None, Some(server)) => server.url(),
            (None, None) => unreachable!("a server was started when no --compute was given"),
        };
        let mut sizer = JobSizer::connect(&url).await?;
        let n = match (args.heavy_n, kernel) {
            (Some(n), _) => n,
            (None, Kernel::SumOfSquares) => sizer.sum_of_squares_n(args.job_ms).await?,
            // Factorial's cost is not linear in n; 50 000 takes a few ms, near the default job.
            (None, Kernel::Factorial) => 50_000,
        };
        let job_time = sizer.job_time(kernel, n).await?;
        if let Some(server) = fresh {
            server.stop(STOP_GRACE);
        }
        Ok(Self { kernel, n, job_time })
    }

    /// Jobs per second if every core did nothing else.
    pub fn ideal_rps(&self, cores: usize) -> f64 {
        cores as f64 / self.job_time.as_secs_f64()
    }

    /// `SumOfSquares(n = …)`.
    pub fn describe(&self) -> String {
        format!("{}(n = {})", self.kernel.method(), self.n)
    }

    fn call(&self, mode: ExecMode, wait: UpstreamWait) -> Call {
        let (n, mode, upstream_wait) = (self.n, mode as i32, wait as i32);
        if self.kernel == Kernel::SumOfSquares {
            Call::GatewaySumOfSquares(SumOfSquaresRequest { n, mode, upstream_wait })
        } else {
            Call::GatewayFactorial(FactorialRequest { n, mode, upstream_wait })
        }
    }
}

/// What one round measured.
#[derive(Debug, Clone)]
pub struct RoundResult {
    /// `idle` or the mode's short name.
    pub label: String,
    /// The heavy jobs' mode (`None` for the idle round).
    pub mode: Option<ExecMode>,
    /// For the gateway rounds: how the gateway waited for compute (heavy jobs then run in `RAYON`).
    pub wait: Option<UpstreamWait>,
    /// For a `--pinned` round: the one CPU the load generator ran on.
    pub pinned: Option<usize>,
    pub heavy: Option<Recording>,
    pub probe: Recording,
    /// Each successful probe's time by segment, from its scheduled send time ([`super::attribution`]).
    pub probe_calls: Vec<Breakdown>,
    /// Each successful heavy job's time by segment.
    pub heavy_calls: Vec<Breakdown>,
    pub health: Option<Recording>,
    /// CPU the compute and gateway processes used during the measured window.
    pub compute_cpu: Option<Duration>,
    pub gateway_cpu: Option<Duration>,
    /// CPU this process (the load generator) used during the measured window.
    pub client_cpu: Option<Duration>,
    pub window: Duration,
    /// The stressed server's scheduling-delay probe over the window (compute's in mode rounds, the gateway's in
    /// upstream-wait rounds), from its `/metrics`.
    pub schedule_delay: Option<HistogramDelta>,
    /// Stalls over the window, summed over both servers, with the top culprit and the stalls the servers kept;
    /// `None` when no server's `/metrics` was read (`--gateway`).
    pub stalls: Option<Stalls>,
}

/// The servers of a round: started here, or the ones `--gateway` points at.
struct Servers {
    compute: Option<ChildServer>,
    gateway: Option<ChildServer>,
    gateway_url: String,
    compute_url: Option<String>,
}

impl Servers {
    /// Compute, and a gateway in front of it on `gateway_runtime`.
    fn start(args: &CompareArgs, gateway_runtime: ServerRuntime) -> anyhow::Result<Self> {
        if let Some(gateway) = &args.gateway {
            return Ok(Self {
                compute: None,
                gateway: None,
                gateway_url: gateway.clone(),
                compute_url: args.compute.clone(),
            });
        }
        let launcher = Launcher::this_executable()?;
        // No lame duck: nobody watches these servers' health as a round ends, and two of them stop after each of
        // the eleven rounds (the default 100 ms each put 2.2 s into every run).
        let local = ["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--lame-duck", "0s"];
        let mut command = launcher.compute(&local);
        command.args(["--runtime", args.runtime.flag_value()]);
        let compute = ChildServer::start(command)?;
        let mut command = launcher.gateway(&local);
        command.args(["--runtime", gateway_runtime.flag_value(), "--compute", &compute.url()]);
        let gateway = ChildServer::start(command)?;
        Ok(Self {
            gateway_url: gateway.url(),
            compute_url: Some(compute.url()),
            compute: Some(compute),
            gateway: Some(gateway),
        })
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut caller = Caller::connect(&self.gateway_url).await?;
        let check = Call::HealthCheck(service_names::GATEWAY.to_owned());
        while caller.call(&check, Some(Duration::from_secs(1))).await.is_err() {
            if Instant::now() > deadline {
                bail!("gateway at {} never became ready", self.gateway_url);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The health check answers OK for NOT_SERVING too: wait for a real call to go through.
        let probe =
            Call::GatewayFactorial(FactorialRequest { n: 1, mode: ExecMode::Inline as i32, ..Default::default() });
        while caller.call(&probe, Some(Duration::from_secs(1))).await.is_err() {
            if Instant::now() > deadline {
                bail!("gateway at {} cannot reach compute", self.gateway_url);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Every started server's `/metrics`, compute first (none for `--gateway`: no metrics port is known).
    fn scrape_all(&self) -> Vec<Option<scrape::Scrape>> {
        [&self.compute, &self.gateway]
            .into_iter()
            .map(|s| s.as_ref().and_then(|s| s.metrics_addr).and_then(|a| scrape::scrape(a).ok()))
            .collect()
    }

    /// The stalls every started server's detector kept that began within `window` after `start`, by start time
    /// (none for `--gateway`). A server whose `/debug/stalls` cannot be read only costs the report its bands.
    fn stalls_kept(&self, start: SystemTime, window: Duration) -> Vec<StallEvent> {
        let mut kept = Vec::new();
        for addr in [&self.compute, &self.gateway].into_iter().flatten().filter_map(|s| s.metrics_addr) {
            match scrape::get(addr, "/debug/stalls").and_then(|body| stall_events::in_window(&body, start, window)) {
                Ok(stalls) => kept.extend(stalls),
                Err(e) => eprintln!("warning: stalls kept by the server at {addr}: {e:#}"),
            }
        }
        kept.sort_by_key(|e| e.at);
        kept
    }

    fn cpu(&self) -> (Option<Duration>, Option<Duration>) {
        (self.compute.as_ref().map(ChildServer::cpu_time), self.gateway.as_ref().map(ChildServer::cpu_time))
    }

    fn stop(self) {
        // Gateway first, so compute is not reported unhealthy to a gateway that is about to go anyway.
        for server in [self.gateway, self.compute].into_iter().flatten() {
            if server.stop(STOP_GRACE) != Some(0) {
                eprintln!("warning: a server did not exit cleanly within {STOP_GRACE:?}");
            }
        }
    }
}

fn delta(after: Option<Duration>, before: Option<Duration>) -> Option<Duration> {
    Some(after?.saturating_sub(before?))
}

/// What a round puts under load.
#[derive(Debug, Clone, Copy)]
pub enum Round {
    /// Probes alone: the baseline.
    Idle,
    /// Heavy jobs in this execution mode; health probes go to compute.
    Mode(ExecMode),
    /// Heavy jobs in `RAYON`, waited for by the gateway in this style; health probes go to the gateway.
    Wait(UpstreamWait),
    /// As `Mode`, with the load generator confined to one CPU ([`super::pin`]).
    Pinned(ExecMode),
}

/// Runs one round.
pub async fn run_round(setup: &Setup, round: Round) -> anyhow::Result<RoundResult> {
    let args = &setup.args;
    let (mode, wait, label) = match round {
        Round::Idle => (None, None, "idle".to_owned()),
        Round::Mode(mode) => (Some(mode), None, mode.short_name().to_owned()),
        Round::Pinned(mode) => (Some(mode), None, format!("{}+pinned", mode.short_name())),
        Round::Wait(wait) => (Some(ExecMode::Rayon), Some(wait), format!("wait-{}", wait.short_name())),
    };
    eprintln!("round: {label}");
    // The upstream-wait rounds show what blocking the gateway's runtime costs, on a gateway of their own runtime.
    let gateway_runtime = if wait.is_some() { args.wait_gateway_runtime } else { args.gateway_runtime };
    let servers = Servers::start(args, gateway_runtime)?;
    servers.wait_ready().await?;
    let heavy_caller = Caller::connect(&servers.gateway_url).await?;
    let (heavy_sink, probe_sink) = (Sink::default(), Sink::default());
    let probe_caller = Caller::connect(&servers.gateway_url).await?;
    // The health probe watches the server whose runtime the round stresses.
    let (health_url, health_service) = match wait {
        Some(_) => (Some(servers.gateway_url.clone()), service_names::GATEWAY),
        None => (servers.compute_url.clone(), service_names::COMPUTE),
    };
    let health_caller = match &health_url {
        Some(url) => Some(Caller::connect(url).await?),
        None => None,
    };

    let heavy_load = |duration: Duration, label: &str| {
        mode.map(|mode| {
            let call = setup.heavy.call(mode, wait.unwrap_or(UpstreamWait::Async));
            let (caller, sink) = (heavy_caller.clone(), heavy_sink.clone());
            let plan = Plan { concurrency: setup.heavy_concurrency, total: None, duration: Some(duration), rps: None };
            let progress = runner::progress_bar(&plan, label, args.quiet);
            runner::run(
                plan,
                move |_| {
                    let (caller, call, sink) = (caller.clone(), call.clone(), sink.clone());
                    async move { sink.call(caller, &call, HEAVY_TIMEOUT, None).await }
                },
                progress,
            )
        })
    };
    // Pinned from the warm-up on, so the load's threads have settled on their CPU before the measured window.
    let pinned = match round {
        Round::Pinned(_) => Some(pin::Pinned::confine(pin::client_cpu()?)?),
        _ => None,
    };
    if let Some(warmup) = heavy_load(args.warmup, "warm-up") {
        warmup.await;
        heavy_sink.take();
    }

    // The scheduling-delay probe of the server this round stresses.
    let stressed = if wait.is_some() { &servers.gateway } else { &servers.compute };
    let metrics_addr = stressed.as_ref().and_then(|s| s.metrics_addr);
    let delay_before = metrics_addr.and_then(|a| scrape::scrape(a).ok());
    let stalls_before = servers.scrape_all();
    let (compute_before, gateway_before) = servers.cpu();
    let client_before = cpu_time_of(std::process::id());
    let started = Instant::now();
    // The stalls the servers keep are stamped with the wall clock; this places them on the round's time axis.
    let started_at = SystemTime::now();
    let probe_plan = probe_plan(args);
    let probe_call =
        Call::GatewayFactorial(FactorialRequest { n: 20, mode: setup.probe_mode as i32, ..Default::default() });
    let sink = probe_sink.clone();
    let probes = runner::run(
        probe_plan,
        move |i| {
            let (caller, call, sink) = (probe_caller.clone(), probe_call.clone(), sink.clone());
            async move { sink.call(caller, &call, PROBE_TIMEOUT, Some(i)).await }
        },
        None,
    );
    let health_probes = health_caller.map(|caller| {
        let call = Call::HealthCheck(health_service.to_owned());
        runner::run(
            probe_plan,
            move |_| {
                let (mut caller, call) = (caller.clone(), call.clone());
                async move { caller.call(&call, Some(PROBE_TIMEOUT)).await }
            },
            None,
        )
    });
    let heavy = heavy_load(args.duration, &label);
    let (heavy, probe, health) = tokio::join!(
        async move {
            match heavy {
                Some(h) => Some(h.await),
                None => None,
            }
        },
        probes,
        async move {
            match health_probes {
                Some(h) => Some(h.await),
                None => None,
            }
        },
    );
    let window = started.elapsed();
    let pinned_cpu = pinned.map(|p| p.cpu);
    let (compute_after, gateway_after) = servers.cpu();
    let client_after = cpu_time_of(std::process::id());
    let delay_after = metrics_addr.and_then(|a| scrape::scrape(a).ok());
    let stalls_after = servers.scrape_all();
    let pairs: Vec<_> = stalls_before
        .iter()
        .zip(&stalls_after)
        .filter_map(|(before, after)| Some((before.as_ref()?, after.as_ref()?)))
        .collect();
    let stalls = super::stalls::of_round(&pairs, servers.stalls_kept(started_at, window));
    let schedule_delay = match (&delay_before, &delay_after) {
        (Some(before), Some(after)) => {
            scrape::histogram_delta(before, after, "offload_runtime_schedule_delay_seconds", 99.0)
        }
        _ => None,
    };
    servers.stop();
    let probe_calls = probe_sink.take_open_loop(&probe, args.probe_rps);
    Ok(RoundResult {
        label,
        mode: if wait.is_some() { None } else { mode },
        wait,
        pinned: pinned_cpu,
        heavy,
        probe,
        probe_calls,
        heavy_calls: heavy_sink.take(),
        health,
        compute_cpu: delta(compute_after, compute_before),
        gateway_cpu: delta(gateway_after, gateway_before),
        client_cpu: delta(client_after, client_before),
        window,
        schedule_delay,
        stalls,
    })
}

/// The probes' plan: open loop at `--probe-rps`, with room for every probe of the round in flight, so that the
/// runner's worker index (`call number % concurrency`) is the probe's number and its scheduled time is known.
fn probe_plan(args: &CompareArgs) -> Plan {
    let probes = (args.probe_rps * args.duration.as_secs_f64()).ceil() as usize + 1;
    Plan {
        concurrency: PROBE_CONCURRENCY.max(probes),
        total: None,
        duration: Some(args.duration),
        rps: Some(args.probe_rps),
    }
}

/// Trivial calls straight to compute and through the gateway: throughput at high concurrency, and latency one
/// call at a time (at high concurrency p50 is mostly queueing, `concurrency / throughput`, so the hop's own cost
/// is read at concurrency 1).
#[derive(Debug, Clone)]
pub struct HopResult {
    pub direct: Recording,
    pub via_gateway: Recording,
    pub direct_serial: Recording,
    pub via_gateway_serial: Recording,
}

/// Measures the price of the extra hop (needs a compute endpoint: started here, or `--compute`).
pub async fn hop_price(setup: &Setup) -> anyhow::Result<Option<HopResult>> {
    let args = &setup.args;
    eprintln!("round: hop price");
    let servers = Servers::start(args, args.gateway_runtime)?;
    servers.wait_ready().await?;
    let Some(compute_url) = servers.compute_url.clone() else {
        eprintln!("no --compute given: skipping the hop comparison");
        return Ok(None);
    };
    let mut results = Vec::new();
    for (url, call) in [
        (
            compute_url,
            Call::ComputeFactorial(FactorialRequest { n: 1, mode: ExecMode::Inline as i32, ..Default::default() }),
        ),
        (
            servers.gateway_url.clone(),
            Call::GatewayFactorial(FactorialRequest { n: 1, mode: ExecMode::Inline as i32, ..Default::default() }),
        ),
    ] {
        let caller = Caller::connect(&url).await?;
        let mut recordings = Vec::new();
        for (concurrency, duration) in [
            (args.hop_concurrency, Duration::from_millis(500)),
            (args.hop_concurrency, args.hop_duration),
            (1, args.hop_duration),
        ] {
            let plan = Plan { concurrency, total: None, duration: Some(duration), rps: None };
            let (caller, call) = (caller.clone(), call.clone());
            recordings.push(
                runner::run(
                    plan,
                    move |_| {
                        let (mut caller, call) = (caller.clone(), call.clone());
                        async move { caller.call(&call, Some(PROBE_TIMEOUT)).await }
                    },
                    None,
                )
                .await,
            );
        }
        // The first run was the warm-up.
        let serial = recordings.pop().unwrap_or_default();
        let parallel = recordings.pop().unwrap_or_default();
        results.push((parallel, serial));
    }
    servers.stop();
    let (via_gateway, via_gateway_serial) = results.pop().unwrap_or_default();
    let (direct, direct_serial) = results.pop().unwrap_or_default();
    Ok(Some(HopResult { direct, via_gateway, direct_serial, via_gateway_serial }))
}
