//! Deadlines and cancellation really free the CPU, and SIGTERM drains: checked on the real binaries, whose CPU
//! time and exit codes only a separate process has.

use std::time::{Duration, Instant};

use offload_proto::v1::{ExecMode, SumOfSquaresRequest, compute_client::ComputeClient, gateway_client::GatewayClient};
use offload_testkit::{binaries::start, child::ChildServer};
use offload_tests::{assert_deadline, channel};
use tonic::Request;

/// A sum that takes about a minute: it can only end early if cancellation works.
const MINUTE_LONG_N: u64 = 1_000_000_000_000;

fn long_request(mode: ExecMode, timeout: Option<Duration>) -> Request<SumOfSquaresRequest> {
    let mut request = Request::new(SumOfSquaresRequest { n: MINUTE_LONG_N, mode: mode as i32, ..Default::default() });
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    request
}

/// CPU the process burns over one second, some time after a job should have stopped. A job still running would
/// burn about one CPU-second per second per thread it uses; an idle server burns almost nothing.
async fn cpu_over_one_second(proc: &ChildServer) -> Duration {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = proc.cpu_time();
    tokio::time::sleep(Duration::from_secs(1)).await;
    proc.cpu_time() - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_ends_the_call_and_the_job_in_every_mode() {
    let compute = start("offload-compute", &[]);
    let mut client = ComputeClient::new(channel(&compute.url()).await);
    for mode in [ExecMode::Inline, ExecMode::SpawnBlocking, ExecMode::BlockInPlace, ExecMode::Rayon] {
        let started = Instant::now();
        let err =
            client.sum_of_squares(long_request(mode, Some(Duration::from_millis(300)))).await.expect_err("deadline");
        assert_deadline(&err);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "{mode:?}: answered {took:?} after a 300 ms deadline");
        let burnt = cpu_over_one_second(&compute).await;
        assert!(burnt < Duration::from_millis(400), "{mode:?}: the job kept running ({burnt:?} CPU in 1 s)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_cancels_offloaded_jobs() {
    let compute = start("offload-compute", &[]);
    let client = ComputeClient::new(channel(&compute.url()).await);
    // INLINE and BLOCK_IN_PLACE cannot notice a disconnect (the handler is blocked inside the kernel; only the
    // deadline reaches it), so only the offloading modes are expected to stop here.
    for mode in [ExecMode::SpawnBlocking, ExecMode::Rayon] {
        let mut call_client = client.clone();
        let call = tokio::spawn(async move { call_client.sum_of_squares(long_request(mode, None)).await });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let busy = compute.cpu_time();
        assert!(busy > Duration::from_millis(100), "{mode:?}: the job never started ({busy:?})");
        call.abort();
        let burnt = cpu_over_one_second(&compute).await;
        assert!(burnt < Duration::from_millis(400), "{mode:?}: the job outlived its client ({burnt:?} CPU in 1 s)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_forwards_the_remaining_deadline() {
    let compute = start("offload-compute", &[]);
    let gateway = start("offload-gateway", &["--compute", &compute.url()]);
    offload_tests::wait_serving(&gateway.url(), offload_proto::service_names::GATEWAY).await;
    let mut client = GatewayClient::new(channel(&gateway.url()).await);
    let err = client.sum_of_squares(long_request(ExecMode::Rayon, Some(Duration::from_millis(300)))).await;
    assert_deadline(&err.expect_err("deadline"));
    let burnt = cpu_over_one_second(&compute).await;
    assert!(burnt < Duration::from_millis(400), "compute kept working after the gateway's deadline ({burnt:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_jobs_then_exits_zero() {
    let mut compute = start("offload-compute", &["--drain-timeout", "30s"]);
    let mut client = ComputeClient::new(channel(&compute.url()).await);
    // A job of a second or two, in flight when SIGTERM arrives.
    let n = 20_000_000_000;
    let mut in_flight = client.clone();
    let call = tokio::spawn(async move {
        in_flight.sum_of_squares(SumOfSquaresRequest { n, mode: ExecMode::Rayon as i32, ..Default::default() }).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    compute.terminate();
    let reply = call.await.expect("join").expect("the in-flight job finished during the drain");
    assert_eq!(reply.into_inner().value, "2666666666466666666670000000000");
    let code = tokio::task::spawn_blocking(move || {
        let code = compute.wait_exit(Duration::from_secs(30));
        (code, compute)
    })
    .await
    .expect("join");
    assert_eq!(code.0, Some(0), "exit code after a clean drain");
    // And it no longer serves.
    let after = client.sum_of_squares(SumOfSquaresRequest { n: 10, mode: 0, ..Default::default() }).await;
    assert!(after.is_err(), "still answering after exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_is_bounded_by_its_grace_period() {
    let mut compute = start("offload-compute", &["--drain-timeout", "500ms"]);
    let mut client = ComputeClient::new(channel(&compute.url()).await);
    let call = tokio::spawn(async move { client.sum_of_squares(long_request(ExecMode::Rayon, None)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    compute.terminate();
    let started = Instant::now();
    let (code, _compute) =
        tokio::task::spawn_blocking(move || (compute.wait_exit(Duration::from_secs(20)), compute)).await.expect("join");
    assert_eq!(code, Some(0), "exits cleanly after the grace period");
    assert!(started.elapsed() < Duration::from_secs(10), "a minute-long job did not hold the shutdown hostage");
    assert!(call.await.expect("join").is_err(), "the abandoned call failed rather than hanging");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lame_duck_keeps_taking_calls_after_health_says_not_serving() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let mut compute = start("offload-compute", &["--lame-duck", "5s", "--drain-timeout", "30s"]);
    let channel = channel(&compute.url()).await;
    let (mut health, mut client) = (HealthClient::new(channel.clone()), ComputeClient::new(channel));
    compute.terminate();
    let check = || HealthCheckRequest { service: "offload.v1.Compute".to_owned() };
    let deadline = Instant::now() + Duration::from_secs(4);
    while health.check(check()).await.expect("health answers in the lame duck").into_inner().status
        != ServingStatus::NotServing as i32
    {
        assert!(Instant::now() < deadline, "health never said NOT_SERVING after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Well past the default 100 ms, well inside the 5 s asked for: new calls are still taken.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let reply = client.sum_of_squares(SumOfSquaresRequest { n: 10, mode: 0, ..Default::default() }).await;
    assert_eq!(reply.expect("a call in the lame duck is served").into_inner().value, "285");
    // The drain waits for connections to close (up to --drain-timeout): close ours.
    drop((health, client));
    let (code, _compute) =
        tokio::task::spawn_blocking(move || (compute.wait_exit(Duration::from_secs(30)), compute)).await.expect("join");
    assert_eq!(code, Some(0), "exits cleanly once the lame duck and the drain are over");
}
