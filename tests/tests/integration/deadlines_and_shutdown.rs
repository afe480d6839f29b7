//! Deadlines and cancellation really free the CPU, and SIGTERM drains: checked on the real binaries, whose CPU
//! time and exit codes only a separate process has.

use std::time::{Duration, Instant};

use offload_proto::v1::{ExecMode, SumOfSquaresRequest, compute_client::ComputeClient, gateway_client::GatewayClient};
use offload_testkit::{binaries::start, child::ChildServer};
use offload_tests::{assert_deadline, channel, metric, wait_until};
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

/// CPU a process may burn over [`QUIET_WINDOW`] and still count as idle: a tenth of one core. An idle server burns
/// a few milliseconds a second (its timers; `/proc` counts in 10 ms ticks); a job still running burns one to two
/// cores, and even sharing two cores with five other busy processes it gets a third of one, over three times this.
const QUIET_CPU: Duration = Duration::from_millis(100);
const QUIET_WINDOW: Duration = Duration::from_secs(1);

/// How long a job has to stop after its call ended. A job that ignored the end of its call runs for a minute
/// ([`MINUTE_LONG_N`]); one that noticed stops within milliseconds, and the rest is room for a loaded machine.
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// Waits until `proc` burns less than [`QUIET_CPU`] over a [`QUIET_WINDOW`] (each window is a measurement, not a
/// wait for something to happen), and returns how long that took; panics after [`STOP_WITHIN`] with `what`.
async fn wait_cpu_quiet(proc: &ChildServer, what: &str) -> Duration {
    let started = Instant::now();
    loop {
        let before = proc.cpu_time();
        tokio::time::sleep(QUIET_WINDOW).await;
        let burnt = proc.cpu_time() - before;
        if burnt < QUIET_CPU {
            return started.elapsed();
        }
        assert!(started.elapsed() < STOP_WITHIN, "{what}: still burning {burnt:?} CPU a second after {STOP_WITHIN:?}");
    }
}

/// Waits until `proc` has burnt `more` CPU than `since`: its job is running.
async fn wait_cpu_burnt(proc: &ChildServer, since: Duration, more: Duration, what: &str) {
    wait_until(what, Duration::from_secs(10), async || proc.cpu_time() >= since + more).await;
}

/// Waits until compute (started with `--metrics-listen`) has a call in flight: admitted, its reply not yet sent.
async fn wait_in_flight(compute: &ChildServer) {
    let metrics = compute.metrics_addr.expect("--metrics-listen");
    wait_until("a call in flight on compute", Duration::from_secs(10), async || {
        metric(metrics, "offload_in_flight", &[]).await.unwrap_or(0.0) >= 1.0
    })
    .await;
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
        let quiet = wait_cpu_quiet(&compute, &format!("{mode:?}: the job outlived its deadline")).await;
        println!("{mode:?}: deadline answered after {took:?}, compute idle {quiet:?} later");
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
        let idle = compute.cpu_time();
        let call = tokio::spawn(async move { call_client.sum_of_squares(long_request(mode, None)).await });
        // Two of the job's tenths of a second: it is running, so there is something for the disconnect to stop.
        wait_cpu_burnt(&compute, idle, 2 * QUIET_CPU, &format!("{mode:?}: the job started")).await;
        assert!(!call.is_finished(), "{mode:?}: a minute-long call already ended");
        call.abort();
        let quiet = wait_cpu_quiet(&compute, &format!("{mode:?}: the job outlived its client")).await;
        println!("{mode:?}: compute idle {quiet:?} after the client went away");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_forwards_the_remaining_deadline() {
    let compute = start("offload-compute", &[]);
    let gateway = start("offload-gateway", &["--compute", &compute.url()]);
    offload_tests::wait_serving(&gateway.url(), offload_proto::service_names::GATEWAY).await;
    let mut client = GatewayClient::new(channel(&gateway.url()).await);
    // INLINE: only the deadline compute was given can stop this job (a disconnect cannot reach a handler blocked in
    // the kernel), so compute going idle shows the gateway forwarded what was left of the 300 ms, not its own
    // 120 s default.
    let err = client.sum_of_squares(long_request(ExecMode::Inline, Some(Duration::from_millis(300)))).await;
    assert_deadline(&err.expect_err("deadline"));
    wait_cpu_quiet(&compute, "compute kept working after the gateway's deadline").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_jobs_then_exits_zero() {
    let compute = start("offload-compute", &["--drain-timeout", "30s", "--metrics-listen", "127.0.0.1:0"]);
    let mut client = ComputeClient::new(channel(&compute.url()).await);
    // A job of about half a second of one core, in flight when SIGTERM arrives. On the blocking pool, at normal
    // priority: rayon's threads run at SCHED_IDLE and may get no CPU at all on a busy machine.
    let n = 5_000_000_000;
    let mut in_flight = client.clone();
    let call = tokio::spawn(async move {
        let request = SumOfSquaresRequest { n, mode: ExecMode::SpawnBlocking as i32, ..Default::default() };
        in_flight.sum_of_squares(request).await
    });
    wait_in_flight(&compute).await;
    assert!(!call.is_finished(), "the job ended before SIGTERM: nothing left to drain");
    compute.terminate();
    let reply = call.await.expect("join");
    let (code, mut compute) = tokio::task::spawn_blocking(move || {
        let mut compute = compute;
        (compute.wait_exit(Duration::from_secs(40)), compute)
    })
    .await
    .expect("join");
    let log = compute.log_lines();
    let reply = reply.unwrap_or_else(|e| panic!("the in-flight job did not finish in the drain: {e:?}\n{log:#?}"));
    assert_eq!(reply.into_inner().value, "41666666654166666667500000000");
    assert_eq!(code, Some(0), "exit code after a clean drain");
    assert!(log.iter().any(|l| l.contains("drained")), "no drain reported: {log:#?}");
    assert!(!log.iter().any(|l| l.contains("grace period expired")), "the drain ran out of time: {log:#?}");
    // And it no longer serves.
    let after = client.sum_of_squares(SumOfSquaresRequest { n: 10, mode: 0, ..Default::default() }).await;
    assert!(after.is_err(), "still answering after exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_is_bounded_by_its_grace_period() {
    let compute = start("offload-compute", &["--drain-timeout", "500ms", "--metrics-listen", "127.0.0.1:0"]);
    let mut client = ComputeClient::new(channel(&compute.url()).await);
    let call = tokio::spawn(async move { client.sum_of_squares(long_request(ExecMode::Rayon, None)).await });
    wait_in_flight(&compute).await;
    compute.terminate();
    let started = Instant::now();
    let (code, mut compute) = tokio::task::spawn_blocking(move || {
        let mut compute = compute;
        (compute.wait_exit(Duration::from_secs(20)), compute)
    })
    .await
    .expect("join");
    let took = started.elapsed();
    assert_eq!(code, Some(0), "exits cleanly after the grace period");
    // A minute-long job against a 500 ms grace period (plus the 100 ms lame duck): ten seconds is room for a
    // loaded machine, and a sixth of what waiting for the job would take.
    assert!(took < Duration::from_secs(10), "a minute-long job held the shutdown hostage for {took:?}");
    let log = compute.log_lines();
    assert!(log.iter().any(|l| l.contains("grace period expired")), "the grace period did not end the drain: {log:#?}");
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
    // The scenario, not a wait for something: a call that arrives well past the default 100 ms lame duck, well
    // inside the 5 s asked for, is still taken.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let reply = client.sum_of_squares(SumOfSquaresRequest { n: 10, mode: 0, ..Default::default() }).await;
    assert_eq!(reply.expect("a call in the lame duck is served").into_inner().value, "285");
    // The drain waits for connections to close (up to --drain-timeout): close ours.
    drop((health, client));
    let (code, _compute) =
        tokio::task::spawn_blocking(move || (compute.wait_exit(Duration::from_secs(30)), compute)).await.expect("join");
    assert_eq!(code, Some(0), "exits cleanly once the lame duck and the drain are over");
}
