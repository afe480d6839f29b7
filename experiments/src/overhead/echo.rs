//! The floor the servers are measured against: a bare tonic server answering `offload.v1.Compute/Factorial` with a
//! constant reply. No layers, no metrics, no spans, no admission, no executor: what tonic, hyper and h2 cost per
//! call and nothing of ours. `offload-bench echo` (hidden) runs it as a child process, so it gets its own CPU
//! account and profile like compute and the gateway.
//!
//! With `--forward URL` the same bare server is instead a **bare proxy**: each call is made again, unchanged, to
//! the server at URL through a tonic `Channel` (the client the gateway uses) and its reply passed back. A proxy in
//! front of the echo is the floor of a hop: what one more server call and one more client call cost in tonic
//! itself on this machine, against which the gateway in front of compute is judged.

use std::net::SocketAddr;

use anyhow::Context;
use offload_proto::v1::{
    ExecMode, Execution, FactorialRequest, FactorialResponse, SumOfSquaresRequest, SumOfSquaresResponse,
    compute_client::ComputeClient, compute_server,
};
use tonic::{
    Request, Response, Status,
    transport::{Channel, Endpoint, server::TcpIncoming},
};

/// `offload-bench echo`: where to listen, and whether to answer or forward.
#[derive(Debug, Clone, clap::Args)]
pub struct EchoArgs {
    /// Address to serve on (port 0: any free port; the serving line says which).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Forward every `Factorial` call to this server (`http://host:port`) through a tonic `Channel` and pass its
    /// reply back, instead of answering it: a bare proxy.
    #[arg(long, value_name = "URL")]
    pub forward: Option<String>,
}

/// The constant service, or the bare proxy when it has an upstream.
#[derive(Debug, Clone)]
struct Echo {
    upstream: Option<ComputeClient<Channel>>,
}

/// The reply every call gets: the same shape as compute's answer to `Factorial(1)` (value, digits and an
/// `Execution` naming its server), so the bytes on the wire match and only the work behind them differs.
fn constant_reply() -> FactorialResponse {
    FactorialResponse {
        value: "1".to_owned(),
        digits: 1,
        execution: Some(Execution {
            mode: ExecMode::Inline as i32,
            served_by: "echo".to_owned(),
            ..Default::default()
        }),
    }
}

#[tonic::async_trait]
impl compute_server::Compute for Echo {
    async fn factorial(&self, request: Request<FactorialRequest>) -> Result<Response<FactorialResponse>, Status> {
        match &self.upstream {
            None => Ok(Response::new(constant_reply())),
            // A clone of a Channel is a handle on the same connection, as in the gateway.
            Some(upstream) => upstream.clone().factorial(request.into_inner()).await,
        }
    }

    async fn sum_of_squares(&self, _: Request<SumOfSquaresRequest>) -> Result<Response<SumOfSquaresResponse>, Status> {
        Err(Status::unimplemented("the echo server answers Factorial only"))
    }
}

/// Serves the echo on a multi-thread runtime (a worker per core, as compute runs by default) until SIGTERM or
/// SIGINT. Logs `addr=` on stdout, as the launchers expect.
pub fn serve_blocking(args: EchoArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start tokio")?;
    runtime.block_on(async move {
        // Signals first, as the offload servers do: from the moment the address is printed, a SIGTERM stops it.
        let shutdown = offload_serve::drain::signal();
        let upstream = match &args.forward {
            None => None,
            Some(url) => {
                let endpoint = Endpoint::from_shared(url.clone()).with_context(|| format!("bad --forward {url}"))?;
                let channel =
                    endpoint.tcp_nodelay(true).connect().await.with_context(|| format!("cannot reach {url}"))?;
                Some(ComputeClient::new(channel))
            }
        };
        let listener =
            tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("cannot bind {}", args.listen))?;
        let addr = listener.local_addr()?;
        // Nagle off, as tonic's own `serve` and both offload servers set it.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        println!("offload-echo serving addr={addr}");
        tonic::transport::Server::builder()
            .add_service(compute_server::ComputeServer::new(Echo { upstream }))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .context("echo server failed")
    })
}
