//! The stall detector in front of a tonic service that is not offload's: the gRPC health service, behind a wrapper
//! whose calls block their worker thread for 50 ms (a synchronous sleep in an async handler, the mistake the
//! detector names). It serves on 127.0.0.1:0 on a single-threaded runtime, checks its own health a few times (the
//! watchdog warns while each check still blocks the only thread), and stops; or earlier on Ctrl-C.
//!
//! `cargo run -p offload-serve --example stall_detector`

use std::{convert::Infallible, future::Future, pin::Pin, task::Context, time::Duration};

use offload_serve::stall::{StallLayer, StallTag};
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
        // The stall reports and metrics name this mode (and no n: these calls have no size).
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_target(false).init();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (_reporter, health) = tonic_health::server::health_reporter();

    // The detector, in front of every route of the server.
    let stalls = StallLayer::new(Duration::from_millis(10));
    let router = Server::builder().layer(stalls).add_service(Blocking(health));

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
        tokio::select! {
            _ = stopped => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }));
    let mut client = HealthClient::new(tonic::transport::Channel::from_shared(url)?.connect().await?);
    for _ in 0..CALLS {
        let status = client.check(HealthCheckRequest::default()).await?.into_inner().status;
        tracing::info!(status, "health checked");
    }
    let _ = stop.send(());
    server.await??;
    Ok(())
}
