//! The seed experiment's own scenario: how the gateway waits for compute. Every style answers correctly and ends
//! at the deadline; a synchronous call on a current-thread gateway's only thread holds its health checks until the
//! upstream call has returned, while awaiting answers them with the call still running. How long the stall is, in
//! ratios of one run, is `offload-bench compare`'s to measure (its probe latency per style).

use std::time::{Duration, Instant};

use offload_proto::{
    service_names,
    v1::{ExecMode, FactorialRequest, SumOfSquaresRequest, UpstreamWait},
};
use offload_testkit::{binaries::start, child::ChildServer};
use offload_tests::{
    assert_deadline, compute, gateway, gateway_client, gateway_with_config, health, metric, wait_serving, wait_until,
};
use tonic::{Code, Request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_style_returns_exact_results_and_says_which_it_used() {
    let compute_server = compute(&[]);
    let gateway_server = gateway(&[&compute_server], &["--default-upstream-wait", "spawn-task"]);
    wait_serving(&gateway_server.url(), service_names::GATEWAY).await;
    let mut client = gateway_client(&gateway_server).await;
    for style in [
        UpstreamWait::Unspecified,
        UpstreamWait::Async,
        UpstreamWait::Blocking,
        UpstreamWait::SpawnBlocking,
        UpstreamWait::SpawnTask,
    ] {
        let reply = client
            .factorial(FactorialRequest { n: 20, mode: ExecMode::Rayon as i32, upstream_wait: style as i32 })
            .await
            .expect("factorial")
            .into_inner();
        assert_eq!(reply.value, "2432902008176640000", "{style:?}");
        let used = reply.execution.expect("report").upstream_wait();
        let expected = if style == UpstreamWait::Unspecified { UpstreamWait::SpawnTask } else { style };
        assert_eq!(used, expected);
        let reply = client
            .sum_of_squares(SumOfSquaresRequest { n: 100_000_000, mode: 0, upstream_wait: style as i32 })
            .await
            .expect("sum")
            .into_inner();
        assert_eq!(reply.value, "333333328333333350000000", "{style:?}");
    }
    let err = client.factorial(FactorialRequest { n: 20, mode: 0, upstream_wait: 9 }).await.expect_err("unknown style");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("upstream_wait"), "{}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_end_every_style() {
    let compute_server = compute(&[]);
    let gateway_server = gateway(&[&compute_server], &[]);
    wait_serving(&gateway_server.url(), service_names::GATEWAY).await;
    let mut client = gateway_client(&gateway_server).await;
    for style in UpstreamWait::REQUESTABLE {
        let mut request = Request::new(SumOfSquaresRequest {
            n: 1_000_000_000_000,
            mode: ExecMode::Rayon as i32,
            upstream_wait: style as i32,
        });
        request.set_timeout(Duration::from_millis(300));
        let started = Instant::now();
        let err = client.sum_of_squares(request).await.expect_err("a minute-long job");
        assert_deadline(&err);
        assert!(started.elapsed() < Duration::from_secs(5), "{style:?} took {:?}", started.elapsed());
    }
}

/// Sent to a gateway while one heavy call, waited for in `style`, was in flight on `compute` (a child started with
/// `--metrics-listen`): whether compute had already finished that call when the gateway answered a health check, and
/// how long the check took.
async fn health_check_during_upstream_call(
    gateway_url: &str,
    compute: &ChildServer,
    style: UpstreamWait,
    n: u64,
) -> (bool, Duration) {
    let metrics = compute.metrics_addr.expect("--metrics-listen");
    // Compute counts a call when its handler returns, before the reply is sent: once counted, the gateway may
    // have its reply; not yet counted, the gateway cannot.
    let ok = &[("method", "SumOfSquares"), ("mode", "spawn-blocking"), ("code", "OK")];
    let finished = async || metric(metrics, "offload_requests_total", ok).await.unwrap_or(0.0);
    let before = finished().await;
    let mut client = offload_proto::v1::gateway_client::GatewayClient::new(offload_tests::channel(gateway_url).await);
    let heavy = tokio::spawn(async move {
        let request = SumOfSquaresRequest { n, mode: ExecMode::SpawnBlocking as i32, upstream_wait: style as i32 };
        client.sum_of_squares(request).await
    });
    // The call is on compute: the gateway is waiting for it, in `style`.
    wait_until("the heavy call in flight on compute", Duration::from_secs(10), async || {
        metric(metrics, "offload_in_flight", &[]).await.unwrap_or(0.0) >= 1.0
    })
    .await;
    let started = Instant::now();
    health(gateway_url, "").await.expect("health answers eventually");
    let delay = started.elapsed();
    let upstream_done = finished().await > before;
    heavy.await.expect("join").expect("heavy call succeeds");
    (upstream_done, delay)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_wait_on_a_current_thread_gateway_stalls_its_health_checks() {
    let compute_server = start("offload-compute", &["--metrics-listen", "127.0.0.1:0"]);
    let argv = ["offload-gateway", "--compute", &compute_server.url(), "--runtime", "current-thread"];
    let gateway_server = gateway_with_config(<offload_gateway::Config as clap::Parser>::parse_from(argv));
    wait_serving(&gateway_server.url(), service_names::GATEWAY).await;
    // A job of about half a second of one core (on compute's blocking pool, at normal priority: rayon's SCHED_IDLE
    // threads may get no CPU on a busy machine): the health check takes milliseconds unless something holds it,
    // so only a gateway thread blocked on the upstream call makes it outlast the job.
    let n = 4_000_000_000;
    let url = gateway_server.url();
    let (blocked_done, blocked) =
        health_check_during_upstream_call(&url, &compute_server, UpstreamWait::Blocking, n).await;
    let (awaited_done, awaited) =
        health_check_during_upstream_call(&url, &compute_server, UpstreamWait::Async, n).await;
    println!("health check during the upstream call: BLOCKING {blocked:?}, ASYNC {awaited:?}");
    assert!(blocked_done, "BLOCKING: the health check was answered ({blocked:?}) while compute still had the call");
    assert!(!awaited_done, "ASYNC: the health check ({awaited:?}) waited for the upstream call to finish");
}
