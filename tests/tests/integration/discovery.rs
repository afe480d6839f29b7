//! The gateway follows its compute replicas as discovery reports them (a Kubernetes headless Service's pods
//! joining and leaving): three servers on loopback behind a name the test resolves, load spread over all three,
//! a replica removed from the name stops receiving calls, a new one starts receiving them, with no restart. Both
//! gateway clients follow: the async one (health-watched balancer) and the synchronous one (tonic's
//! `balance_channel`). Then the same through the system resolver with a real name, `localhost`.

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use offload_gateway::discovery::Resolve;
use offload_proto::{
    service_names,
    v1::{ExecMode, SumOfSquaresRequest, UpstreamWait, gateway_client::GatewayClient},
};
use offload_tests::{Server, compute, gateway_client, gateway_with_resolver, wait_serving};
use tonic::transport::Channel;

/// A DNS name whose addresses the test sets, and how many times the gateway has looked it up since.
#[derive(Debug, Default)]
struct Switchboard(Mutex<(Vec<SocketAddr>, usize)>);

impl Switchboard {
    fn set(&self, servers: &[&Server]) {
        *self.0.lock().expect("lock") = (servers.iter().map(|s| s.addr).collect(), 0);
    }

    /// Waits until the gateway has acted on the last [`Self::set`]. Its discovery loop resolves, hands the answer
    /// to both of its clients, then waits for the next refresh: a second lookup since the set begins only after
    /// the first one's answer was applied.
    async fn wait_applied(&self) {
        let lookups = || self.0.lock().expect("lock").1;
        offload_tests::wait_until("the gateway looked the name up again", Duration::from_secs(10), async || {
            lookups() >= 2
        })
        .await;
    }
}

impl Resolve for Switchboard {
    fn resolve(
        &self,
        _host: &str,
        _port: u16,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + '_>> {
        let mut name = self.0.lock().expect("lock");
        name.1 += 1;
        Box::pin(std::future::ready(Ok(name.0.clone())))
    }
}

/// Which replica (`served_by`) answered each of `count` calls made in `style`.
async fn served_by(client: &GatewayClient<Channel>, style: UpstreamWait, count: usize) -> BTreeMap<String, usize> {
    let mut served = BTreeMap::new();
    for _ in 0..count {
        let request = SumOfSquaresRequest { n: 1000, mode: ExecMode::Inline as i32, upstream_wait: style as i32 };
        let reply = client.clone().sum_of_squares(request).await.expect("served").into_inner();
        *served.entry(reply.execution.expect("report").served_by).or_insert(0) += 1;
    }
    served
}

fn ids(which: &[usize]) -> BTreeSet<String> {
    which.iter().map(|&i| IDS[i].to_owned()).collect()
}

/// Calls in `style` until every replica in `want` has served one (bounded: 10 s).
async fn until_all_serve(client: &GatewayClient<Channel>, style: UpstreamWait, want: &BTreeSet<String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = BTreeSet::new();
    while !want.is_subset(&seen) {
        assert!(Instant::now() < deadline, "{style:?}: only {seen:?} of {want:?} ever served");
        seen.extend(served_by(client, style, 10).await.into_keys());
    }
}

/// Each server's `--instance-id`, which replies carry as `served_by`.
const IDS: [&str; 4] = ["a", "b", "c", "d"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_joining_and_leaving_the_name_are_followed_without_restart() {
    let servers = ["a", "b", "c", "d"].map(|name| compute(&["--instance-id", name]));
    let [a, b, c, d] = [&servers[0], &servers[1], &servers[2], &servers[3]];
    let switchboard = Arc::new(Switchboard::default());
    switchboard.set(&[a, b, c]);
    let config = <offload_gateway::Config as clap::Parser>::parse_from([
        "offload-gateway",
        "--compute",
        "dns:///compute.offload.test:50051",
        "--dns-refresh",
        "100ms",
        "--health-retry",
        "100ms",
    ]);
    let gateway = gateway_with_resolver(config, switchboard.clone());
    wait_serving(&gateway.url(), service_names::GATEWAY).await;
    let client = gateway_client(&gateway).await;
    let styles = [UpstreamWait::Async, UpstreamWait::SpawnBlocking];

    for style in styles {
        until_all_serve(&client, style, &ids(&[0, 1, 2])).await;
    }

    // c leaves the name: once the gateway has applied that, no call reaches it (in either client).
    switchboard.set(&[a, b]);
    switchboard.wait_applied().await;
    for style in styles {
        let served = served_by(&client, style, 60).await;
        assert!(!served.contains_key(IDS[2]), "{style:?}: removed replica still served: {served:?}");
        assert_eq!(served.values().sum::<usize>(), 60);
    }

    // d joins: it starts receiving calls, with no restart.
    switchboard.set(&[a, b, d]);
    for style in styles {
        until_all_serve(&client, style, &ids(&[0, 1, 3])).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_name_resolved_by_the_system_resolver() {
    let server = compute(&["--instance-id", "local"]);
    let target = format!("dns:///localhost:{}", server.addr.port());
    let config = <offload_gateway::Config as clap::Parser>::parse_from(["offload-gateway", "--compute", &target]);
    let gateway = offload_tests::gateway_with_config(config);
    wait_serving(&gateway.url(), service_names::GATEWAY).await;
    let client = gateway_client(&gateway).await;
    // localhost may also resolve to ::1, where nothing listens: that endpoint is never healthy, so never used.
    let served = served_by(&client, UpstreamWait::Async, 10).await;
    assert_eq!(served, BTreeMap::from([("local".to_owned(), 10)]));
}
