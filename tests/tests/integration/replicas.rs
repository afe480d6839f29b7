//! The gateway over several compute replicas: load spreads over all of them, and when one is killed (SIGKILL, no
//! drain) the calls it had in flight are retried on another, so no client call fails. Calls to one replica take
//! its `--compute-connections` in turn.

use std::{collections::HashMap, time::Duration};

use offload_proto::{
    service_names,
    v1::{ExecMode, SumOfSquaresRequest},
};
use offload_testkit::{binaries::start, child::ChildServer, fault_proxy::FaultProxy};
use offload_tests::{gateway_client, gateway_with_config, wait_serving};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_spreads_and_a_killed_replica_costs_no_failed_call() {
    let metrics = ["--metrics-listen", "127.0.0.1:0"];
    let replicas = [start("offload-compute", &metrics), start("offload-compute", &metrics)];
    let urls = replicas.iter().map(|r| r.url()).collect::<Vec<_>>().join(",");
    let config = <offload_gateway::Config as clap::Parser>::parse_from(["offload-gateway", "--compute", urls.as_str()]);
    let gateway = gateway_with_config(config);
    wait_serving(&gateway.url(), service_names::GATEWAY).await;
    let client = gateway_client(&gateway).await;

    // Every call's reply: which replica served it, and how many attempts the gateway made.
    let run = |count: usize| {
        let client = client.clone();
        async move {
            let mut served: HashMap<String, usize> = HashMap::new();
            let mut most_attempts = 0;
            let calls: Vec<_> = (0..count)
                .map(|_| {
                    let mut client = client.clone();
                    tokio::spawn(async move {
                        let request =
                            SumOfSquaresRequest { n: 20_000_000, mode: ExecMode::Rayon as i32, ..Default::default() };
                        client.sum_of_squares(request).await
                    })
                })
                .collect();
            for call in calls {
                let reply = call.await.expect("join").expect("no call fails, even the ones on the killed replica");
                assert_eq!(reply.get_ref().value, "2666666466666670000000");
                let report = reply.into_inner().execution.expect("report");
                most_attempts = most_attempts.max(report.upstream_attempts);
                *served.entry(report.served_by).or_default() += 1;
            }
            (served, most_attempts)
        }
    };
    // The load spreads once the gateway has seen both replicas healthy: until then it sends every call to the
    // first one it saw, so wait for both to serve, up to a deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let spread = loop {
        let (spread, _) = run(40).await;
        if spread.len() == 2 || std::time::Instant::now() > deadline {
            break spread;
        }
    };
    assert_eq!(spread.len(), 2, "both replicas served: {spread:?}");

    // Kill one replica while calls are in flight on it (its own gauge says so).
    let mut replicas = replicas;
    let victim_metrics = replicas[0].metrics_addr.expect("--metrics-listen");
    let in_flight = tokio::spawn(run(40));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let busy = tokio::task::spawn_blocking(move || {
            offload_testkit::scrape::scrape(victim_metrics)
                .ok()
                .and_then(|s| offload_testkit::scrape::value(&s, "offload_in_flight", &[]))
                .unwrap_or(0.0)
        })
        .await
        .expect("scrape");
        if busy > 0.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no call ever in flight on the replica to kill");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let victim = &mut replicas[0];
    std::process::Command::new("kill").args(["-KILL", &victim.pid().to_string()]).status().expect("kill");
    let (during, most_attempts) = in_flight.await.expect("every call succeeded");
    assert_eq!(during.values().sum::<usize>(), 40);
    assert!(
        most_attempts > 1,
        "the calls in flight on the killed replica were retried: at most {most_attempts} attempt(s)"
    );
    let (after, _) = run(20).await;
    assert_eq!(after.len(), 1, "only the survivor serves after the kill: {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_take_each_of_a_replicas_connections_in_turn() {
    // Multi-thread: the calls take the replica's three connections, the health stream riding on the first.
    let (_compute, proxy, gateway) = counted_gateway(&["--runtime", "multi-thread"]).await;
    sum_six_times(&gateway).await;
    assert_eq!(proxy.accepted(), 4, "the calls took the other two of the replica's three connections");

    // Thread per core: each shard has three connections of its own, opened by its own calls, and the health stream
    // one of its own. Each client connection is served by one shard, the next by the next.
    let (_compute, proxy, gateway) = counted_gateway(&["--runtime", "thread-per-core", "--workers", "2"]).await;
    sum_six_times(&gateway).await;
    assert_eq!(proxy.accepted(), 5, "the first shard's calls took its three connections");
    sum_six_times(&gateway).await;
    assert_eq!(proxy.accepted(), 8, "the second shard's calls took three more");
}

/// A gateway with `args` and `--compute-connections 3` to one compute through a proxy counting its connections,
/// once its health streams (the async path's and the synchronous client's) are connected and nothing else is.
async fn counted_gateway(args: &[&str]) -> (ChildServer, FaultProxy, offload_tests::Server) {
    let compute = start("offload-compute", &[]);
    let proxy = FaultProxy::start(compute.addr).await.expect("proxy");
    let url = proxy.url();
    let argv = ["offload-gateway", "--compute", url.as_str(), "--compute-connections", "3"];
    let gateway = gateway_with_config(<offload_gateway::Config as clap::Parser>::parse_from(argv.iter().chain(args)));
    // SERVING: both health streams were accepted by the proxy and compute's SERVING came back over them. A gateway
    // that opened connections without a call would dial them as it set the replica up, before its health streams
    // were even started, so by now the proxy would have accepted them too: the count below is complete.
    wait_serving(&gateway.url(), service_names::GATEWAY).await;
    assert_eq!(proxy.accepted(), 2, "connections other than the health streams' open only when a call needs them");
    (compute, proxy, gateway)
}

/// Six calls on a new connection to `gateway`.
async fn sum_six_times(gateway: &offload_tests::Server) {
    let mut client = gateway_client(gateway).await;
    for _ in 0..6 {
        let request = SumOfSquaresRequest { n: 10, mode: ExecMode::Inline as i32, ..Default::default() };
        assert_eq!(client.sum_of_squares(request).await.expect("served").get_ref().value, "285");
    }
}
