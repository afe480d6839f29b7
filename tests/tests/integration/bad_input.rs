//! Bad input and overload get a clear status naming the limit, never a panic or a hang; a panicking job fails
//! only its own request.

use std::time::{Duration, Instant};

use offload_proto::{
    service_names,
    v1::{ExecMode, FactorialRequest, SumOfSquaresRequest},
};
use offload_tests::{compute, compute_client, gateway, gateway_client, health, wait_serving};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_invalid_argument_naming_the_flag_on_both_servers() {
    let compute_server = compute(&["--max-factorial-n", "1000", "--max-sum-of-squares-n", "1000000"]);
    let gateway_server = gateway(&[&compute_server], &[]);
    wait_serving(&gateway_server.url(), service_names::GATEWAY).await;
    let mut direct = compute_client(&compute_server).await;
    let mut via_gateway = gateway_client(&gateway_server).await;

    // At the limit: fine. One above, and u64::MAX: refused, naming the flag.
    assert!(direct.factorial(FactorialRequest { n: 1000, mode: 0, ..Default::default() }).await.is_ok());
    assert!(
        via_gateway.sum_of_squares(SumOfSquaresRequest { n: 1_000_000, mode: 0, ..Default::default() }).await.is_ok()
    );
    for n in [1001, u64::MAX] {
        let direct_err =
            direct.factorial(FactorialRequest { n, mode: 0, ..Default::default() }).await.expect_err("over the limit");
        let gateway_err = via_gateway
            .factorial(FactorialRequest { n, mode: 0, ..Default::default() })
            .await
            .expect_err("over the limit");
        for err in [direct_err, gateway_err] {
            assert_eq!(err.code(), Code::InvalidArgument);
            assert!(err.message().contains("--max-factorial-n=1000"), "{}", err.message());
        }
    }
    for n in [1_000_001, u64::MAX] {
        let err = via_gateway
            .sum_of_squares(SumOfSquaresRequest { n, mode: 0, ..Default::default() })
            .await
            .expect_err("over");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("--max-sum-of-squares-n=1000000"), "{}", err.message());
    }

    // The lower boundary, n = 0 (also what an empty message means): 0! = 1, the empty sum is 0.
    let reply = via_gateway.factorial(FactorialRequest::default()).await.expect("0!");
    assert_eq!(reply.into_inner().value, "1");
    let reply = direct.sum_of_squares(SumOfSquaresRequest::default()).await.expect("empty sum");
    assert_eq!(reply.into_inner().value, "0");

    // Unknown enum values (a newer client, or garbage) are refused, not defaulted.
    for mode in [7, 99, -1] {
        let err = via_gateway
            .factorial(FactorialRequest { n: 5, mode, ..Default::default() })
            .await
            .expect_err("unknown mode");
        assert_eq!(err.code(), Code::InvalidArgument, "mode {mode}");
        assert!(err.message().contains("unknown mode"), "{}", err.message());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_over_the_message_limit_is_refused_up_front() {
    let compute_server = compute(&["--max-message-bytes", "100000"]);
    let mut client = compute_client(&compute_server).await;
    let err = client
        .factorial(FactorialRequest { n: 50_000, mode: 0, ..Default::default() })
        .await
        .expect_err("213 237 digits > 100 kB");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("--max-message-bytes=100000"), "{}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_max_inflight_is_resource_exhausted_at_once() {
    let compute_server = compute(&["--max-inflight", "1"]);
    let mut client = compute_client(&compute_server).await;
    // One long job holds the only slot (cancelled by its deadline afterwards).
    let mut long = client.clone();
    let holder = tokio::spawn(async move {
        let mut request = tonic::Request::new(SumOfSquaresRequest {
            n: 1_000_000_000_000,
            mode: ExecMode::Rayon as i32,
            ..Default::default()
        });
        request.set_timeout(Duration::from_secs(3));
        long.sum_of_squares(request).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let err =
        client.factorial(FactorialRequest { n: 5, mode: 0, ..Default::default() }).await.expect_err("no slot left");
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("--max-inflight=1"), "{}", err.message());
    assert!(started.elapsed() < Duration::from_secs(2), "refused at once, not queued");
    let held = holder.await.expect("join").expect_err("deadline");
    offload_tests::assert_deadline(&held);
    // The slot is free again once the server has answered the expired call (a tonic client's own timer may
    // report the deadline a moment before the server's reply frees the slot).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match client.factorial(FactorialRequest { n: 5, mode: 0, ..Default::default() }).await {
            Ok(_) => break,
            Err(e) if e.code() == Code::ResourceExhausted && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("not admitted after the long job ended: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_in_place_on_current_thread_runtimes_is_failed_precondition_naming_the_runtime() {
    // A thread-per-core shard is a current-thread runtime too: refused as well, and the message says which.
    for (runtime, named) in [
        ("current-thread", "this server runs current-thread"),
        ("thread-per-core", "this server runs thread-per-core, whose shards are current-thread runtimes"),
    ] {
        let compute_server = compute(&["--runtime", runtime, "--workers", "2"]);
        let mut client = compute_client(&compute_server).await;
        let err = client
            .factorial(FactorialRequest { n: 20, mode: ExecMode::BlockInPlace as i32, ..Default::default() })
            .await
            .expect_err("not possible on a current-thread runtime");
        assert_eq!(err.code(), Code::FailedPrecondition, "{runtime}: {err:?}");
        assert!(err.message().ends_with(named), "{runtime}: {}", err.message());
        // Every other mode works on the single thread.
        for mode in [ExecMode::Inline, ExecMode::SpawnBlocking, ExecMode::Rayon, ExecMode::Adaptive] {
            let reply = client
                .factorial(FactorialRequest { n: 20, mode: mode as i32, ..Default::default() })
                .await
                .expect("works");
            assert_eq!(reply.into_inner().value, "2432902008176640000");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_job_fails_alone_in_every_mode() {
    let compute_server = compute(&["--panic-on-n", "77"]);
    let gateway_server = gateway(&[&compute_server], &[]);
    wait_serving(&gateway_server.url(), service_names::GATEWAY).await;
    let mut client = gateway_client(&gateway_server).await;
    for mode in
        [ExecMode::Inline, ExecMode::SpawnTask, ExecMode::SpawnBlocking, ExecMode::BlockInPlace, ExecMode::Rayon]
    {
        let err = client
            .factorial(FactorialRequest { n: 77, mode: mode as i32, ..Default::default() })
            .await
            .expect_err("panics");
        assert_eq!(err.code(), Code::Internal, "{mode:?}");
        assert!(err.message().contains("injected panic"), "{}", err.message());
        let ok = client
            .factorial(FactorialRequest { n: 20, mode: mode as i32, ..Default::default() })
            .await
            .expect("still serving");
        assert_eq!(ok.into_inner().value, "2432902008176640000");
    }
    assert_eq!(health(&compute_server.url(), service_names::COMPUTE).await.expect("health"), ServingStatus::Serving);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_compute_is_unavailable_fast_and_the_gateway_not_ready() {
    // A port nothing listens on: bind, take the port, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let url = format!("http://{dead}");
    let argv = ["offload-gateway", "--compute", url.as_str()];
    let config = <offload_gateway::Config as clap::Parser>::parse_from(argv);
    let gateway_server = offload_tests::gateway_with_config(config);
    let mut client = gateway_client(&gateway_server).await;
    let started = Instant::now();
    let err =
        client.factorial(FactorialRequest { n: 20, mode: 0, ..Default::default() }).await.expect_err("nobody home");
    assert_eq!(err.code(), Code::Unavailable);
    assert!(started.elapsed() < Duration::from_secs(5), "failed fast: {:?}", started.elapsed());
    assert_eq!(health(&gateway_server.url(), service_names::GATEWAY).await.expect("h"), ServingStatus::NotServing);
    assert_eq!(health(&gateway_server.url(), "").await.expect("h"), ServingStatus::Serving, "alive, not ready");
}
