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
    let replicas = [start("offload-compute", &[]), start("offload-compute", &[])];
    let urls = replicas.iter().map(|r| r.url()).collect::<Vec<_>>().join(",");
    let config = <offload_gateway::Config as clap::Parser>::parse_from(["offload-gateway", "--compute", urls.as_str()]);
    let gateway = gateway_with_config(config);
    wait_serving(&gateway.url(), service_names::GATEWAY).await;
    // Both replicas must be healthy before the load starts, or the spread cannot be checked.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = gateway_client(&gateway).await;

    let run = |count: usize| {
        let client = client.clone();
        async move {
            let mut served: HashMap<String, usize> = HashMap::new();
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
                *served.entry(reply.into_inner().execution.expect("report").served_by).or_default() += 1;
            }
            served
        }
    };
    let spread = run(40).await;
    assert_eq!(spread.len(), 2, "both replicas served: {spread:?}");

    // Kill one replica while calls are in flight on both.
    let mut replicas = replicas;
    let in_flight = tokio::spawn(run(40));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let victim = &mut replicas[0];
    std::process::Command::new("kill").args(["-KILL", &victim.pid().to_string()]).status().expect("kill");
    let during = in_flight.await.expect("every call succeeded");
    assert_eq!(during.values().sum::<usize>(), 40);
    let after = run(20).await;
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
    wait_serving(&gateway.url(), service_names::GATEWAY).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while proxy.accepted() < 2 {
        assert!(std::time::Instant::now() < deadline, "the health streams did not connect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
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
