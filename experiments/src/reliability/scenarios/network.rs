//! Faults of the network rather than of a process, under steady load: one replica reached through a
//! [`FaultProxy`] whose link is blackholed (a partition: packets dropped, nothing reset), made slow, or reset, a
//! third of the way in, and healed at two thirds.
//!
//! A SIGKILL tells the gateway at once (the kernel resets the connections); a blackhole tells it nothing. The
//! gateway notices only through its HTTP/2 keepalive (`--compute-keepalive-interval` + `--compute-keepalive-timeout`,
//! the bound this scenario measures against): then the calls stuck on that connection fail as a transport failure
//! and are retried on another replica, and the replica's health stream, on the same connection, breaks, taking
//! it out of rotation. When it left is read from the gateway's own log line saying so.

use std::{collections::BTreeMap, time::Duration};

use anyhow::Context;
use offload_proto::v1::{ExecMode, SumOfSquaresRequest, gateway_client::GatewayClient};
use offload_testkit::{
    child::ChildServer,
    cluster::{Cluster, Launcher},
    fault_proxy::{Fault, FaultProxy},
};
use tokio::time::Instant;

use super::sampling::{CALL_TIMEOUT, Sample, at, job_of, load, served_by};

/// The `--instance-id` of the replica behind the proxy.
pub const PROXIED: &str = "behind-proxy";

/// The gateway's log line when a replica leaves rotation (`gateway/src/balancer.rs`).
const LEFT_ROTATION: &str = "no longer routed to";

/// How often the gateway's log is read for that line: fine enough for a bound of seconds.
const LOG_POLL: Duration = Duration::from_millis(20);

/// What [`network_fault`] saw.
#[derive(Debug)]
pub struct NetworkFault {
    pub samples: Vec<Sample>,
    pub fault: Fault,
    pub fault_at: Duration,
    pub healed_at: Duration,
    /// The gateway's keepalive interval + timeout: the bound within which a silent replica must leave rotation.
    pub bound: Duration,
    /// From the fault to the gateway's log line taking the proxied replica out of rotation (`None`: it stayed).
    pub left_rotation_after: Option<Duration>,
    /// Calls the gateway retried on another replica.
    pub retried: u64,
    /// From the fault to the send time of the last call whose first attempt still went to the proxied replica.
    pub routed_to_it_for: Duration,
    /// From the heal to the first call the proxied replica served again.
    pub back_in_rotation_after: Option<Duration>,
    pub served_by: BTreeMap<String, u64>,
}

impl NetworkFault {
    /// Calls sent while the fault was in force and served by the proxied replica, and by the others.
    pub fn during_fault(&self) -> (Vec<&Sample>, Vec<&Sample>) {
        self.samples
            .iter()
            .filter(|s| s.sent >= self.fault_at && s.sent < self.healed_at && s.code == tonic::Code::Ok)
            .partition(|s| s.served_by == PROXIED)
    }
}

/// The gateway's HTTP/2 keepalive towards compute, as its flags set it.
#[derive(Debug, Clone, Copy)]
pub struct Keepalive {
    pub interval: Duration,
    pub timeout: Duration,
}

impl Keepalive {
    /// How long a silent replica may keep getting calls: a PING is sent at most `interval` after the last byte
    /// read, and the connection is given up `timeout` later.
    pub fn bound(&self) -> Duration {
        self.interval + self.timeout
    }
}

/// Steady load over `plan.replicas` replicas, one of them behind a fault proxy that gets `fault` for the middle
/// third; the gateway runs with `keepalive`.
pub async fn network_fault(
    launcher: Launcher,
    plan: super::Steady,
    fault: Fault,
    keepalive: Keepalive,
) -> anyhow::Result<NetworkFault> {
    let proxied = ChildServer::start(launcher.compute(&["--instance-id", PROXIED, "--listen", "127.0.0.1:0"]))?;
    let proxy = FaultProxy::start(proxied.addr).await?;
    let (interval, timeout) =
        (format!("{}ms", keepalive.interval.as_millis()), format!("{}ms", keepalive.timeout.as_millis()));
    let url = proxy.url();
    let gateway_args =
        ["--compute", &url, "--compute-keepalive-interval", &interval, "--compute-keepalive-timeout", &timeout];
    let direct = plan.replicas.saturating_sub(1).max(1);
    let mut cluster = Cluster::start(launcher, direct, &[], &gateway_args).await?;
    wait_served_by(&cluster.url(), PROXIED, Duration::from_secs(30)).await?;
    let bound = keepalive.bound();

    let running =
        load(&cluster.url(), job_of(&cluster, plan.job_ms).await?, plan.rps, plan.duration, CALL_TIMEOUT).await?;
    let start = Instant::now();
    at(start, plan.duration / 3).await;
    let fault_at = start.elapsed();
    proxy.set(fault);
    let mut left_rotation_after = None;
    while start.elapsed() < plan.duration * 2 / 3 {
        if left_rotation_after.is_none() && left_rotation(&mut cluster.gateway, &proxy) {
            left_rotation_after = Some(start.elapsed() - fault_at);
        }
        tokio::time::sleep(LOG_POLL).await;
    }
    let healed_at = start.elapsed();
    proxy.set(Fault::Pass);
    let samples = running.await?;

    let retried = samples.iter().filter(|s| s.attempts > 1).count() as u64;
    let routed_to_it_for = samples
        .iter()
        .filter(|s| s.attempts > 1 && s.sent >= fault_at && s.sent < healed_at)
        .map(|s| s.sent - fault_at)
        .max()
        .unwrap_or_default();
    let back_in_rotation_after = samples
        .iter()
        .filter(|s| s.served_by == PROXIED && s.sent >= healed_at)
        .map(|s| s.sent + s.latency - healed_at)
        .min();
    let served_by = served_by(&samples);
    tokio::task::block_in_place(|| {
        cluster.stop();
        proxied.stop(Duration::from_secs(20));
    });
    Ok(NetworkFault {
        samples,
        fault,
        fault_at,
        healed_at,
        bound,
        left_rotation_after,
        retried,
        routed_to_it_for,
        back_in_rotation_after,
        served_by,
    })
}

/// Whether the gateway has logged that the replica behind `proxy` left rotation.
fn left_rotation(gateway: &mut ChildServer, proxy: &FaultProxy) -> bool {
    let addr = proxy.addr().to_string();
    gateway.log_lines().iter().any(|line| line.contains(LEFT_ROTATION) && line.contains(&addr))
}

/// Waits (at most `timeout`) until a call through the gateway at `url` is served by replica `id`.
async fn wait_served_by(url: &str, id: &str, timeout: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut client = GatewayClient::new(offload_testkit::channel(url).await?);
    let probe = SumOfSquaresRequest { n: 1000, mode: ExecMode::Inline as i32, ..Default::default() };
    loop {
        let mut request = tonic::Request::new(probe);
        request.set_timeout(Duration::from_secs(2));
        if let Ok(reply) = client.sum_of_squares(request).await
            && reply.get_ref().execution.as_ref().is_some_and(|e| e.served_by == id)
        {
            return Ok(());
        }
        if started.elapsed() > timeout {
            return Err(anyhow::anyhow!("{id} never served a call through the gateway")).context("network fault");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
