//! A replica lost to the network, through every upstream-wait style: killed (the kernel resets its connections),
//! and blackholed behind the test kit's fault proxy (nothing reset: the gateway must notice by itself, through its
//! HTTP/2 keepalive). The synchronous styles go through the same forward stack as the async ones, so all four
//! answer alike: `UNAVAILABLE` when no replica is left, a retry on another replica when one is. The scenarios
//! under steady load, with the figures, are `offload-bench reliability`'s (blackhole, slow-link, link-reset).

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use offload_proto::{
    service_names,
    v1::{ExecMode, SumOfSquaresRequest, UpstreamWait, gateway_client::GatewayClient},
};
use offload_testkit::{
    binaries::start,
    fault_proxy::{Fault, FaultProxy},
};
use offload_tests::{gateway_client, gateway_with_config, wait_serving};
use tonic::{Code, Request, transport::Channel};

/// A sum of squares in `RAYON` under `style`, with `timeout`.
fn sum(n: u64, style: UpstreamWait, timeout: Duration) -> Request<SumOfSquaresRequest> {
    let mut request =
        Request::new(SumOfSquaresRequest { n, mode: ExecMode::Rayon as i32, upstream_wait: style as i32 });
    request.set_timeout(timeout);
    request
}

/// A gateway (in this process) over `urls`, with `args`, serving.
async fn gateway_over(urls: &[String], args: &[&str]) -> (offload_tests::Server, GatewayClient<Channel>) {
    let list = urls.join(",");
    let argv =
        ["offload-gateway", "--compute", list.as_str(), "--workers", "4"].into_iter().chain(args.iter().copied());
    let gateway = gateway_with_config(<offload_gateway::Config as clap::Parser>::parse_from(argv));
    wait_serving(&gateway.url(), service_names::GATEWAY).await;
    let client = gateway_client(&gateway).await;
    (gateway, client)
}

/// Waits (at most 30 s) until a call through `client` is served by each of `ids`.
async fn wait_served_by_each(client: &GatewayClient<Channel>, ids: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < ids.len() {
        assert!(Instant::now() < deadline, "not every replica served: {seen:?} of {ids:?}");
        if let Ok(reply) = client.clone().sum_of_squares(sum(1000, UpstreamWait::Async, Duration::from_secs(2))).await {
            seen.insert(reply.into_inner().execution.unwrap_or_default().served_by);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_wait_style_reports_a_killed_replica_as_unavailable() {
    let mut replica = start("offload-compute", &[]);
    let (_gateway, client) = gateway_over(&[replica.url()], &[]).await;
    // One call per style in flight on the only replica (a job far longer than the test: n at compute's limit), then
    // SIGKILL.
    let in_flight: Vec<_> = UpstreamWait::REQUESTABLE
        .into_iter()
        .map(|style| {
            let mut client = client.clone();
            (
                style,
                tokio::spawn(async move {
                    client.sum_of_squares(sum(1_000_000_000_000, style, Duration::from_secs(60))).await
                }),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    replica.kill();
    for (style, call) in in_flight {
        let status = call.await.expect("join").expect_err("its replica died");
        assert_eq!(status.code(), Code::Unavailable, "{style:?} in flight: {status:?}");
    }
    // Calls after the kill, in every style: the same answer.
    for style in UpstreamWait::REQUESTABLE {
        let status =
            client.clone().sum_of_squares(sum(1000, style, Duration::from_secs(10))).await.expect_err("none left");
        assert_eq!(status.code(), Code::Unavailable, "{style:?} after: {status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_wait_style_retries_a_killed_replicas_calls_on_another() {
    let mut victim = start("offload-compute", &["--instance-id", "victim"]);
    let survivor = start("offload-compute", &["--instance-id", "survivor"]);
    let (gateway, client) = gateway_over(&[victim.url(), survivor.url()], &[]).await;
    wait_served_by_each(&client, &["victim", "survivor"]).await;
    // Two calls per style, about 0.8 s of one core each in the test build (0.4 s alone on two), spread over both
    // replicas, so all twelve are still running when one replica dies under them 300 ms in.
    // Each style on a connection of its own, so on a shard of its own: a `BLOCKING` call holds its shard's thread
    // (the mistake it stands for), and the other styles' calls must not wait behind it.
    let mut in_flight = Vec::new();
    for style in UpstreamWait::REQUESTABLE {
        let connection = gateway_client(&gateway).await;
        for _ in 0..2 {
            let mut client = connection.clone();
            let call = async move { client.sum_of_squares(sum(1_000_000_000, style, Duration::from_secs(120))).await };
            in_flight.push((style, tokio::spawn(call)));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    victim.kill();
    let mut retried = BTreeMap::<String, u32>::new();
    for (style, call) in in_flight {
        let reply = call.await.expect("join").unwrap_or_else(|s| panic!("{style:?}: no call fails: {s:?}"));
        let execution = reply.into_inner().execution.expect("report");
        assert_eq!(execution.upstream_wait(), style);
        if execution.upstream_attempts > 1 {
            *retried.entry(format!("{style:?}")).or_default() += 1;
            assert_eq!(execution.served_by, "survivor");
        }
    }
    assert!(!retried.is_empty(), "some call was on the killed replica and was retried");
    eprintln!("retried after the kill, by style: {retried:?}");
}

/// The gateway's keepalive in the blackhole test: short, so the test is; the bound it gives is interval + timeout.
const KEEPALIVE: [&str; 4] = ["--compute-keepalive-interval", "500ms", "--compute-keepalive-timeout", "1s"];
const KEEPALIVE_BOUND: Duration = Duration::from_millis(1500);
/// Generous room above the bound for a loaded machine: the test asserts the bound, not a speed.
const SLACK: Duration = Duration::from_millis(2500);

/// One call of the blackhole test's load.
#[derive(Debug)]
struct Sent {
    style: UpstreamWait,
    /// Since the blackhole began (negative: before).
    at: f64,
    outcome: Result<(String, u32), Code>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_replica_leaves_rotation_within_the_keepalive_bound_in_every_style() {
    let direct = start("offload-compute", &["--instance-id", "direct"]);
    let hidden = start("offload-compute", &["--instance-id", "behind-proxy"]);
    let proxy = FaultProxy::start(hidden.addr).await.expect("proxy");
    let (_gateway, client) = gateway_over(&[direct.url(), proxy.url()], &KEEPALIVE).await;
    wait_served_by_each(&client, &["direct", "behind-proxy"]).await;

    // One caller per style, calling back to back (small jobs, 10 s deadlines: time to notice and retry) from 1 s
    // before the blackhole until well past the bound and slack.
    let blackholed_at = Instant::now() + Duration::from_secs(1);
    let until = blackholed_at + KEEPALIVE_BOUND + SLACK + Duration::from_secs(2);
    let callers: Vec<_> = UpstreamWait::REQUESTABLE
        .into_iter()
        .map(|style| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut sent = Vec::new();
                while Instant::now() < until {
                    let at = Instant::now();
                    let at = if at >= blackholed_at {
                        (at - blackholed_at).as_secs_f64()
                    } else {
                        -(blackholed_at - at).as_secs_f64()
                    };
                    let reply = client.clone().sum_of_squares(sum(100_000, style, Duration::from_secs(10))).await;
                    let outcome = reply
                        .map(|r| r.into_inner().execution.unwrap_or_default())
                        .map(|e| (e.served_by, e.upstream_attempts))
                        .map_err(|s| s.code());
                    sent.push(Sent { style, at, outcome });
                }
                sent
            })
        })
        .collect();
    tokio::time::sleep_until(blackholed_at.into()).await;
    proxy.set(Fault::Blackhole);
    let mut sent = Vec::new();
    for caller in callers {
        sent.extend(caller.await.expect("join"));
    }

    let failed: Vec<_> = sent.iter().filter(|s| s.outcome.is_err()).collect();
    assert!(failed.is_empty(), "no call with time to retry fails: {failed:?}");
    let caught: Vec<_> = sent.iter().filter(|s| matches!(&s.outcome, Ok((_, attempts)) if *attempts > 1)).collect();
    assert!(!caught.is_empty(), "some call was caught by the blackhole and retried");
    let settled = (KEEPALIVE_BOUND + SLACK).as_secs_f64();
    let late: Vec<_> =
        sent.iter().filter(|s| s.at >= settled && !matches!(&s.outcome, Ok((by, 1)) if by == "direct")).collect();
    assert!(sent.iter().any(|s| s.at >= settled), "calls were made after the bound");
    assert!(late.is_empty(), "calls still sent to the blackholed replica after the bound: {late:?}");
    let last_caught = caught.iter().map(|s| s.at).fold(f64::MIN, f64::max);
    let styles: std::collections::BTreeSet<_> = caught.iter().map(|s| format!("{:?}", s.style)).collect();
    eprintln!(
        "{} calls; {} caught by the blackhole and retried ({styles:?}), the last sent {last_caught:.2} s in",
        sent.len(),
        caught.len()
    );

    // Healed, it serves again.
    proxy.set(Fault::Pass);
    wait_served_by_each(&client, &["behind-proxy"]).await;
}
