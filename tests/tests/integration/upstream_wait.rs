//! The seed experiment's own scenario: how the gateway waits for compute. Every style answers correctly and ends
//! at the deadline; a synchronous call on a current-thread gateway's only thread stalls its health checks for about
//! the upstream job's time, while awaiting does not.

use std::time::{Duration, Instant};

use offload_proto::{
    service_names,
    v1::{ExecMode, FactorialRequest, SumOfSquaresRequest, UpstreamWait},
};
use offload_tests::{assert_deadline, compute, gateway, gateway_client, health, wait_serving};
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

/// How long a gateway health check takes while one heavy call, waited for in `style`, is in flight; and how long
/// that heavy call took.
async fn health_delay_during_upstream_call(gateway_url: &str, style: UpstreamWait, n: u64) -> (Duration, Duration) {
    let mut client = offload_proto::v1::gateway_client::GatewayClient::new(offload_tests::channel(gateway_url).await);
    let heavy = tokio::spawn(async move {
        let started = Instant::now();
        let reply = client
            .sum_of_squares(SumOfSquaresRequest { n, mode: ExecMode::Rayon as i32, upstream_wait: style as i32 })
            .await;
        (reply, started.elapsed())
    });
    // Let the heavy call reach the gateway's handler.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    health(gateway_url, "").await.expect("health answers eventually");
    let delay = started.elapsed();
    let (reply, heavy_took) = heavy.await.expect("join");
    reply.expect("heavy call succeeds");
    (delay, heavy_took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_wait_on_a_current_thread_gateway_stalls_its_health_checks() {
    let compute_server = compute(&[]);
    let gateway_server = gateway(&[&compute_server], &["--runtime", "current-thread"]);
    wait_serving(&gateway_server.url(), service_names::GATEWAY).await;
    // A job of roughly half a second on the pool.
    let n = 8_000_000_000;
    let (blocked, job) = health_delay_during_upstream_call(&gateway_server.url(), UpstreamWait::Blocking, n).await;
    let (awaited, _) = health_delay_during_upstream_call(&gateway_server.url(), UpstreamWait::Async, n).await;
    // The blocked gateway answers its health check only after the upstream call returns: about the job time
    // minus the 50 ms head start. Awaiting leaves the thread free: the check answers in about a round trip.
    let head_start = Duration::from_millis(50);
    assert!(
        blocked * 10 >= job.saturating_sub(head_start) * 7,
        "BLOCKING delayed health by only {blocked:?} (job {job:?})"
    );
    assert!(blocked > awaited * 5, "BLOCKING {blocked:?} vs ASYNC {awaited:?}: no clear difference");
}
