//! A synchronous compute client, built the way synchronous client libraries are (reqwest's `blocking`, tonic's
//! blocking-client example, Celery's `AsyncResult.get()`): it owns an I/O thread (a one-worker tokio runtime) and
//! its own connections, and its methods block the calling thread until compute answers.
//!
//! It exists to reproduce a mistake, measured: calling it from an async handler (`UPSTREAM_WAIT_BLOCKING`) blocks
//! that runtime worker for the whole upstream call. It never deadlocks, even on a current-thread gateway whose
//! only thread it blocks: the connection is driven by its own thread, and every call carries the request's
//! deadline (sent to compute as `grpc-timeout` and enforced locally while waiting). What its failures mean is
//! decided where the async client's are, in [`crate::upstream_status`].

use std::{
    collections::BTreeSet,
    sync::{Mutex, mpsc},
    time::{Duration, Instant},
};

use offload_proto::{service_names, v1::compute_client::ComputeClient};
use offload_telemetry::grpc_trace;
use tokio::sync::mpsc::Sender;
use tonic::{
    Request, Response, Status,
    transport::{Channel, Endpoint, channel::Change},
};
use tracing::Instrument;

use crate::{balancer::ChannelSettings, discovery::Endpoints, method::ComputeMethod};

/// Room for endpoint changes not yet taken in by the balanced channel (a whole re-resolution's worth).
const CHANGES_BUFFERED: usize = 1024;

/// A blocking client over all compute endpoints (tonic's dynamically balanced channel, fed by discovery; this
/// client does not retry).
#[derive(Debug)]
pub struct BlockingComputeClient {
    /// The I/O thread. An `Option` only so that `Drop` can take it and shut it down without blocking.
    runtime: Option<tokio::runtime::Runtime>,
    client: ComputeClient<Channel>,
    /// Inserts and removals for the balanced channel, and the endpoints it has now.
    changes: Sender<Change<String, Endpoint>>,
    endpoints: Mutex<BTreeSet<String>>,
    settings: ChannelSettings,
}

impl BlockingComputeClient {
    /// A client with no endpoints yet (see [`Endpoints::set_endpoints`]) whose connections are opened on first
    /// use, on its own I/O thread.
    pub fn new(settings: ChannelSettings) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sync-client-io")
            .enable_all()
            .build()?;
        let (client, changes) = {
            // The channel's connection tasks must live on the client's own runtime, not the caller's.
            let _entered = runtime.enter();
            let (channel, changes) = Channel::balance_channel(CHANGES_BUFFERED);
            let client = settings.client(channel);
            (client, changes)
        };
        Ok(Self { runtime: Some(runtime), client, changes, endpoints: Mutex::default(), settings })
    }

    /// Calls method `M` on compute, blocking the calling thread until the reply or `deadline`; traced as a client
    /// span of the caller's current span (the request's).
    pub fn call<M: ComputeMethod>(&self, message: M, deadline: Instant) -> Result<M::Reply, Status> {
        let Some(runtime) = &self.runtime else { return Err(Status::unavailable("sync client closed")) };
        let remaining = deadline.saturating_duration_since(Instant::now());
        let span = grpc_trace::client_span(service_names::COMPUTE, M::NAME, None);
        let mut request = Request::new(message);
        request.set_timeout(remaining);
        grpc_trace::inject(&span, request.metadata_mut());
        let (tx, rx) = mpsc::sync_channel(1);
        let reply = M::call(self.client.clone(), request).instrument(span.clone());
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

impl Endpoints for BlockingComputeClient {
    fn set_endpoints(&self, urls: &BTreeSet<String>) {
        let mut current = self.endpoints.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let removed = current.difference(urls).cloned().map(Change::Remove);
        let inserted = urls.difference(&current).filter_map(|url| match self.settings.endpoint(url) {
            Ok(endpoint) => Some(Change::Insert(url.clone(), endpoint)),
            Err(error) => {
                tracing::warn!(url, %error, "sync client: ignoring an unusable compute endpoint");
                None
            }
        });
        for change in removed.chain(inserted).collect::<Vec<_>>() {
            // The buffer holds far more than one resolution's changes; only a client being dropped refuses them.
            if self.changes.try_send(change).is_err() {
                tracing::warn!("sync client: endpoint change dropped");
            }
        }
        current.clone_from(urls);
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
