//! One client connection, the shape of a grpc-go, tonic or grpcio channel, through the gateway's default
//! thread-per-core runtime: its calls spread over the shards (`offload_shard_calls_moved_total` counts them) and
//! answer, and the calls running on another shard than their connection's are drained like any other at SIGTERM.

use std::time::{Duration, Instant};

use offload_proto::v1::{ExecMode, FactorialRequest, gateway_client::GatewayClient};
use offload_testkit::{binaries::start, scrape};
use offload_tests::{channel, wait_serving};

/// Calls kept in flight on the one connection: a channel's usual concurrency, far past what one shard needs to
/// be "clearly busier" than an idle one.
const CALLS: usize = 48;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connections_calls_run_on_every_shard_and_drain() {
    let compute = start("offload-compute", &[]);
    let mut gateway = start(
        "offload-gateway",
        &["--compute", &compute.url(), "--workers", "2", "--metrics-listen", "127.0.0.1:0", "--drain-timeout", "30s"],
    );
    wait_serving(&gateway.url(), offload_proto::service_names::GATEWAY).await;
    let metrics = gateway.metrics_addr.expect("--metrics-listen was given");
    let moved = || {
        let scraped = scrape::scrape(metrics).expect("scrape");
        scrape::value(&scraped, "offload_shard_calls_moved_total", &[]).expect("the counter is exported")
    };
    assert_eq!(moved(), 0.0, "nothing moved before any call");

    // One channel: one HTTP/2 connection, so one shard serves all of its streams.
    let client = GatewayClient::new(channel(&gateway.url()).await);
    let call = |n| {
        let mut client = client.clone();
        tokio::spawn(async move {
            client.factorial(FactorialRequest { n, mode: ExecMode::Rayon as i32, ..Default::default() }).await
        })
    };
    // Waves of calls until some have run on the other shard.
    let waited = Instant::now();
    while moved() == 0.0 {
        assert!(waited.elapsed() < Duration::from_secs(60), "no call of the one connection left its shard");
        let wave: Vec<_> = (0..CALLS).map(|_| call(20_000)).collect();
        for reply in wave {
            reply.await.expect("join").expect("a call through the gateway");
        }
    }

    // The drain: calls in flight (some on the other shard) when SIGTERM arrives all answer.
    let before = moved();
    let in_flight: Vec<_> = (0..CALLS).map(|_| call(60_000)).collect();
    let waited = Instant::now();
    while moved() == before {
        assert!(waited.elapsed() < Duration::from_secs(60), "no call of the last wave left its shard");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gateway.terminate();
    for reply in in_flight {
        let reply = reply.await.expect("join").expect("a call in flight at SIGTERM answers");
        assert!(reply.into_inner().digits > 0);
    }
    assert_eq!(gateway.wait_exit(Duration::from_secs(30)), Some(0), "the gateway drained and exited cleanly");
}
