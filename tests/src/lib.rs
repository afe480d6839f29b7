//! Fixtures for the integration tests: real offload servers on `127.0.0.1:0`, each on its own tokio runtime in
//! its own thread (as a separate process would be), and the clients that talk to them. Servers as child
//! processes, raw HTTP/2 and Python peers are in `offload-testkit`.

use std::{
    net::SocketAddr,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use clap::Parser;
use offload_proto::v1::{FactorialRequest, compute_client::ComputeClient, gateway_client::GatewayClient};
use offload_serve::runtime::Flavor;
use offload_testkit::raw::{RawConnection, frame};
use prost::Message;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// A server running in this process on its own runtime thread. Stopped (and joined) on drop.
#[derive(Debug)]
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    /// `http://addr`, as clients and the gateway's `--compute` take it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends the shutdown signal and waits for the server to drain and stop, returning what `run` returned.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|_| anyhow::anyhow!("server thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Starts a server whose `run` takes a listener, a config and a shutdown future, on a runtime of `flavor`.
fn spawn<C, F, Fut>(name: &str, flavor: Flavor, workers: usize, config: C, run: F) -> Server
where
    C: Send + 'static,
    F: FnOnce(tokio::net::TcpListener, C, std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> Fut
        + Send
        + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    std_listener.set_nonblocking(true).expect("nonblocking");
    let addr = std_listener.local_addr().expect("local addr");
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let runtime = offload_serve::runtime::build(flavor, workers, name, None).expect("runtime");
    let thread = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener)?;
                run(
                    listener,
                    config,
                    Box::pin(async move {
                        let _ = stop_rx.await;
                    }),
                )
                .await
            })
        })
        .expect("spawn server thread");
    Server { addr, stop: Some(stop_tx), thread: Some(thread) }
}

/// Starts a compute server configured by `args` (as on the command line, `--listen` excluded).
pub fn compute(args: &[&str]) -> Server {
    let config = offload_compute::Config::parse_from(std::iter::once("offload-compute").chain(args.iter().copied()));
    let (flavor, workers) = (config.runtime, config.workers);
    spawn("compute", flavor, workers, config, offload_compute::run)
}

/// Starts a gateway in front of `computes`, configured by `args`.
pub fn gateway(computes: &[&Server], args: &[&str]) -> Server {
    let urls: Vec<String> = computes.iter().map(|c| c.url()).collect();
    let list = urls.join(",");
    let mut argv = vec!["offload-gateway", "--compute", &list];
    argv.extend_from_slice(args);
    gateway_with_config(offload_gateway::Config::parse_from(argv))
}

/// Starts a gateway with a ready-made configuration (for `--compute` lists that are not running servers).
pub fn gateway_with_config(config: offload_gateway::Config) -> Server {
    let (flavor, workers) = (config.runtime, config.workers);
    spawn("gateway", flavor, workers, config, offload_gateway::run)
}

/// Starts a gateway whose `dns:///` targets are resolved by `resolver`.
pub fn gateway_with_resolver(
    config: offload_gateway::Config,
    resolver: std::sync::Arc<dyn offload_gateway::discovery::Resolve>,
) -> Server {
    let (flavor, workers) = (config.runtime, config.workers);
    spawn("gateway", flavor, workers, (config, resolver), |listener, (config, resolver), shutdown| {
        offload_gateway::run_with_resolver(listener, config, resolver, shutdown)
    })
}

/// A channel to `url`, connected now.
pub async fn channel(url: &str) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Channel::from_shared(url.to_owned()).expect("url").connect().await {
            Ok(channel) => return channel,
            Err(e) if Instant::now() > deadline => panic!("cannot connect to {url}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// A compute client to `server`, with the default message size limit (as any client would have).
pub async fn compute_client(server: &Server) -> ComputeClient<Channel> {
    ComputeClient::new(channel(&server.url()).await)
}

/// A gateway client to `server`.
pub async fn gateway_client(server: &Server) -> GatewayClient<Channel> {
    GatewayClient::new(channel(&server.url()).await)
}

/// The health status of `service` on `url`.
pub async fn health(url: &str, service: &str) -> Result<ServingStatus, tonic::Status> {
    let mut client = HealthClient::new(channel(url).await);
    let reply = client.check(HealthCheckRequest { service: service.to_owned() }).await?;
    Ok(reply.into_inner().status())
}

/// Waits (at most 10 s) until `service` on `url` reports SERVING.
pub async fn wait_serving(url: &str, service: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while health(url, service).await.ok() != Some(ServingStatus::Serving) {
        assert!(Instant::now() < deadline, "{service} on {url} never became SERVING");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `condition` every 20 ms until it holds; panics saying what never happened if it still does not after
/// `limit`. For a test that must see something happen (a metric move, a connection made) before it asserts.
pub async fn wait_until(what: &str, limit: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition().await {
        assert!(Instant::now() < deadline, "{what}: not after {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of sample `name` with `labels` on the `/metrics` of `addr` (a server's `--metrics-listen`), read off
/// the runtime's threads; `None` if the scrape fails or has no such sample.
pub async fn metric(
    addr: SocketAddr,
    name: &'static str,
    labels: &'static [(&'static str, &'static str)],
) -> Option<f64> {
    tokio::task::spawn_blocking(move || {
        offload_testkit::scrape::scrape(addr).ok().and_then(|s| offload_testkit::scrape::value(&s, name, labels))
    })
    .await
    .expect("scrape task")
}

/// Asserts that a call ended because its deadline passed. The server answers `DEADLINE_EXCEEDED` just before the
/// deadline, but a tonic client also runs its own timer for the same deadline and reports `CANCELLED` ("Timeout
/// expired") when that fires first; which one a tonic client sees is a race on the last millisecond.
pub fn assert_deadline(status: &tonic::Status) {
    let local_timeout =
        status.code() == tonic::Code::Cancelled && status.message() == tonic::TimeoutExpired(()).to_string();
    assert!(status.code() == tonic::Code::DeadlineExceeded || local_timeout, "not a deadline: {status:?}");
}

/// Runs a server binary's `command` and asserts it refused to start, naming `flag` and the duration syntax it
/// accepts: how a bad duration from the command line or the environment must fail.
pub fn refused_naming(command: &mut std::process::Command, flag: &str) {
    let out = command.output().expect("run");
    assert!(!out.status.success(), "{flag} taken");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(flag) && stderr.contains(offload_duration::SYNTAX), "{stderr}");
}

/// The calls in flight on a child server (`offload_in_flight` on its `--metrics-listen`); panics if it cannot be read.
pub async fn in_flight(server: &offload_testkit::child::ChildServer) -> f64 {
    let addr = server.metrics_addr.expect("--metrics-listen was given");
    metric(addr, "offload_in_flight", &[]).await.expect("offload_in_flight on /metrics")
}

/// A server readied for a test that counts the memory large replies hold: its honest connection, the request and
/// the size of its reply.
#[derive(Debug)]
pub struct WarmedForLargeReplies {
    pub honest: RawConnection,
    pub request: Vec<u8>,
    pub reply_bytes: u64,
}

/// One honest `Factorial(n)` call to `path` on `addr` read in full (the reply's size), then `slots` at once, so
/// every thread that runs those jobs has run one: the allocator (mimalloc) keeps each thread's freed pages, and a
/// first job on a cold thread would count its working memory as held by the replies under test (a cold CI run
/// measured +78 MiB this way, warm ones +14-46).
pub async fn warm_for_large_replies(addr: SocketAddr, path: &str, n: u64, slots: u64) -> WarmedForLargeReplies {
    let honest = RawConnection::connect(addr).await.expect("connect");
    let request = frame(&FactorialRequest { n, ..Default::default() }.encode_to_vec());
    let reply = honest.call(path, request.clone(), Some("60S")).await.expect("an honest call");
    assert_eq!(reply.code, tonic::Code::Ok, "{}", reply.message);
    let warm: Vec<_> = (0..slots)
        .map(|_| {
            let (honest, request, path) = (honest.clone(), request.clone(), path.to_owned());
            tokio::spawn(async move { honest.call(&path, request, Some("60S")).await })
        })
        .collect();
    for call in warm {
        let reply = call.await.expect("join").expect("an honest call");
        assert_eq!(reply.code, tonic::Code::Ok, "{}", reply.message);
    }
    WarmedForLargeReplies { honest, request, reply_bytes: reply.body.len() as u64 }
}
