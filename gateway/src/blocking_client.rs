//! A synchronous compute client, built the way synchronous client libraries are (reqwest's `blocking`, tonic's
//! blocking-client example, Celery's `AsyncResult.get()`): it owns an I/O thread (a one-worker tokio runtime) and
//! its own connections, and its methods block the calling thread until compute answers.
//!
//! It exists to reproduce a mistake, measured: calling it from an async handler (`UPSTREAM_WAIT_BLOCKING`) blocks
//! that runtime worker for the whole upstream call. It never deadlocks, even on a current-thread gateway whose
//! only thread it blocks: the connection is driven by its own thread, and every call carries the request's
//! deadline (sent to compute as `grpc-timeout` and enforced locally while waiting).

use std::{
    future::Future,
    sync::mpsc,
    time::{Duration, Instant},
};

use offload_proto::{
    service_names,
    v1::{
        FactorialRequest, FactorialResponse, SumOfSquaresRequest, SumOfSquaresResponse, compute_client::ComputeClient,
    },
};
use offload_telemetry::grpc_trace;
use tonic::{
    Request, Response, Status,
    transport::{Channel, Endpoint},
};
use tracing::Instrument;

use crate::balancer::ChannelSettings;

/// A blocking client over all compute endpoints (tonic's balanced channel: this client does not retry).
#[derive(Debug)]
pub struct BlockingComputeClient {
    /// The I/O thread. An `Option` only so that `Drop` can take it and shut it down without blocking.
    runtime: Option<tokio::runtime::Runtime>,
    client: ComputeClient<Channel>,
}

impl BlockingComputeClient {
    /// A client whose connections are opened on first use, on its own I/O thread.
    pub fn new(urls: &[String], settings: ChannelSettings) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sync-client-io")
            .enable_all()
            .build()?;
        let client = {
            // The channel's connection tasks must live on the client's own runtime, not the caller's.
            let _entered = runtime.enter();
            let endpoints = urls
                .iter()
                .map(|url| {
                    Ok(Endpoint::from_shared(url.clone())?.connect_timeout(settings.connect_timeout).tcp_nodelay(true))
                })
                .collect::<Result<Vec<_>, tonic::transport::Error>>()?;
            ComputeClient::new(Channel::balance_list(endpoints.into_iter()))
                .max_decoding_message_size(settings.max_message_bytes)
                .max_encoding_message_size(settings.max_message_bytes)
        };
        Ok(Self { runtime: Some(runtime), client })
    }

    /// `Compute/Factorial`, blocking until the reply or `deadline`.
    pub fn factorial(&self, request: FactorialRequest, deadline: Instant) -> Result<FactorialResponse, Status> {
        self.call("Factorial", request, deadline, |mut client, request| async move { client.factorial(request).await })
    }

    /// `Compute/SumOfSquares`, blocking until the reply or `deadline`.
    pub fn sum_of_squares(
        &self,
        request: SumOfSquaresRequest,
        deadline: Instant,
    ) -> Result<SumOfSquaresResponse, Status> {
        self.call("SumOfSquares", request, deadline, |mut client, request| async move {
            client.sum_of_squares(request).await
        })
    }

    /// One call, traced as a client span of the caller's current span (the request's).
    fn call<Req, Resp, F, Fut>(&self, method: &str, message: Req, deadline: Instant, call: F) -> Result<Resp, Status>
    where
        Req: Send + 'static,
        Resp: Send + 'static,
        F: FnOnce(ComputeClient<Channel>, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>> + Send + 'static,
    {
        let Some(runtime) = &self.runtime else { return Err(Status::unavailable("sync client closed")) };
        let remaining = deadline.saturating_duration_since(Instant::now());
        let span = grpc_trace::client_span(service_names::COMPUTE, method, "sync client");
        let mut request = Request::new(message);
        request.set_timeout(remaining);
        grpc_trace::inject(&span, request.metadata_mut());
        let (tx, rx) = mpsc::sync_channel(1);
        let reply = call(self.client.clone(), request).instrument(span.clone());
        runtime.spawn(async move {
            let _ = tx.send(reply.await.map(Response::into_inner));
        });
        // A plain OS-level wait: this is what blocks the caller's thread.
        let result = match rx.recv_timeout(remaining.max(Duration::from_millis(1))) {
            Ok(reply) => reply,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(Status::deadline_exceeded("sync client: deadline exceeded")),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Status::unavailable("sync client: I/O thread gone")),
        };
        grpc_trace::record_status(&span, result.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok), false);
        result
    }
}

impl Drop for BlockingComputeClient {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its tasks end, which is not allowed inside async code: let it go.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
