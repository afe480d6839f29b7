//! The detector in front of a tonic service: the gRPC health service, behind a wrapper whose calls block their
//! worker for 50 ms (a synchronous sleep in an async handler, the mistake the detector names). It serves on
//! 127.0.0.1:0 on a current-thread runtime (one event loop, as asyncio's), checks its own health a few times (the
//! watchdog warns while each check still blocks the only thread), prints the stalls it saw as JSON on stdout, and
//! stops.
//!
//! `cargo run -p stallwatch --example tonic_server`

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::Context,
    time::{Duration, Instant},
};

use stallwatch::StallTag;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{body::Body, codegen::http, server::NamedService, transport::Server};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// How long each call blocks its worker: five times the threshold below.
const BLOCK: Duration = Duration::from_millis(50);
/// Calls the example makes before it stops.
const CALLS: usize = 3;

/// Wraps a tonic service so that every call blocks its worker for [`BLOCK`] first.
#[derive(Debug, Clone)]
struct Blocking<S>(S);

impl<S: NamedService> NamedService for Blocking<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<Body>> for Blocking<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The stall reports name this mode (and no n: these calls have no size).
        if let Some(tag) = request.extensions().get::<StallTag>() {
            tag.set("sleep", None);
        }
        let reply = self.0.call(request);
        Box::pin(async move {
            std::thread::sleep(BLOCK);
            reply.await
        })
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_target(false).with_writer(std::io::stderr).init();
    let detector = stallwatch::Detector::builder().threshold(Duration::from_millis(10)).build();
    let mut builder = tokio::runtime::Builder::new_current_thread();
    detector.instrument(builder.enable_all(), "tonic");
    builder.build()?.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (_reporter, health) = tonic_health::server::health_reporter();
        // The detector's layer in front of every route names the call behind each stall.
        let router = Server::builder().layer(detector.layer()).add_service(Blocking(health));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
            let _ = stopped.await;
        }));
        let mut client = HealthClient::new(tonic::transport::Channel::from_shared(url)?.connect().await?);
        for _ in 0..CALLS {
            let status = client.check(HealthCheckRequest::default()).await?.into_inner().status;
            tracing::info!(status, "health checked");
        }
        let _ = stop.send(());
        server.await??;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    let until = Instant::now() + Duration::from_secs(5);
    while detector.recent().len() < CALLS && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("{}", serde_json::to_string(&detector.recent())?);
    Ok(())
}
