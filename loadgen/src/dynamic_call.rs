//! Calls to any method, known by its descriptors: the dynamic path of `offload-bench load`, for every service that
//! is not offload's own (whose typed path is [`crate::call`]).
//!
//! The four shapes of gRPC call, with ghz's semantics: a unary or server-streaming call sends one message (`-d`'s
//! message at the request number, round-robin over an array); client-streaming and bidi calls send `-d`'s array
//! as the stream's messages. Each stream counts as one call, its latency the whole stream's. A stream ends when
//! its messages run out, or earlier at `--stream-call-count` messages (sent, or received for server streaming) or
//! after `--stream-call-duration`; the client ending a stream that way is a success, not a cancellation.
//!
//! A unary reply is held to the protocol: two reply messages, or two `grpc-status` trailers, fail the call as the
//! protocol error they are, where a generated client would take the first and call it a success.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime},
};

use prost_reflect::{DynamicMessage, MethodDescriptor};
use tokio::{sync::mpsc, time::Instant};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Status, client::Grpc, codegen::http::uri::PathAndQuery, transport::Channel};

use crate::{
    codec::DynamicCodec,
    request::{Metadata, Payload},
    template::CallData,
};

/// How streams are fed and ended (ghz's `--stream-*` flags).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamOptions {
    /// End each stream after this long.
    pub call_duration: Option<Duration>,
    /// End each stream after this many messages: sent (client streaming, bidi; `-d`'s array is cycled to reach
    /// it) or received (server streaming).
    pub call_count: Option<u64>,
    /// Render `-d`'s template afresh for every message of a stream, not once per stream.
    pub dynamic_messages: bool,
    /// Wait this long between the messages a client sends.
    pub interval: Option<Duration>,
}

/// One method, what to send it, and how.
#[derive(Debug)]
pub struct DynamicCall {
    method: MethodDescriptor,
    /// `/package.Service/Method`.
    path: PathAndQuery,
    payload: Payload,
    metadata: Metadata,
    stream: StreamOptions,
    /// HTTP/2 connections the workers share, for `{{.WorkerID}}`.
    connections: usize,
    /// The next call's `{{.RequestNumber}}`.
    next_request: AtomicU64,
}

impl DynamicCall {
    /// `method` with `-d` and `-m` (checked against it now).
    pub fn new(
        method: MethodDescriptor,
        data: Option<&str>,
        metadata: Option<&str>,
        stream: StreamOptions,
        connections: usize,
    ) -> anyhow::Result<Self> {
        let payload = Payload::new(&method, data)?;
        Self::with_payload(method, payload, metadata, stream, connections)
    }

    /// `method` sending `payload` (e.g. binary messages, `-b`/`-B`), with `-m` (checked against it now).
    pub fn with_payload(
        method: MethodDescriptor,
        payload: Payload,
        metadata: Option<&str>,
        stream: StreamOptions,
        connections: usize,
    ) -> anyhow::Result<Self> {
        let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
        let path = PathAndQuery::try_from(path.as_str()).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
        Ok(Self {
            payload,
            metadata: Metadata::new(&method, metadata)?,
            method,
            path,
            stream,
            connections,
            next_request: AtomicU64::new(0),
        })
    }

    /// The method, `package.Service.Method`.
    pub fn method_name(&self) -> &str {
        self.method.full_name()
    }

    /// The method's descriptor.
    pub fn method(&self) -> &MethodDescriptor {
        &self.method
    }

    /// Makes one call (one whole stream) on `grpc`, from `worker`, within `timeout`.
    pub async fn call(&self, grpc: Grpc<Channel>, worker: usize, timeout: Duration) -> Result<(), Status> {
        self.call_within(grpc, worker, Some(timeout)).await
    }

    /// Makes one call (one whole stream) on `grpc`, from `worker`, within `timeout` if any (ghz's `-t 0`: none).
    pub async fn call_within(
        &self,
        grpc: Grpc<Channel>,
        worker: usize,
        timeout: Option<Duration>,
    ) -> Result<(), Status> {
        let request_number = self.next_request.fetch_add(1, Ordering::Relaxed);
        let data = CallData {
            method: &self.method,
            request_number,
            worker,
            connections: self.connections,
            now: SystemTime::now(),
        };
        let Some(timeout) = timeout else {
            return self.shaped(grpc, &data, None).await.map_err(crate::call::ghz_status);
        };
        match tokio::time::timeout(timeout, self.shaped(grpc, &data, Some(timeout))).await {
            Ok(result) => result.map_err(crate::call::ghz_status),
            Err(_) => Err(Status::deadline_exceeded("deadline exceeded before the call ended")),
        }
    }

    async fn shaped(
        &self,
        mut grpc: Grpc<Channel>,
        data: &CallData<'_>,
        timeout: Option<Duration>,
    ) -> Result<(), Status> {
        let request = |message| self.request(message, data, timeout);
        let stream_request = |messages| self.request(messages, data, timeout);
        let codec = DynamicCodec::new(self.method.output());
        let path = self.path.clone();
        grpc.ready().await.map_err(|e| Status::unavailable(format!("connection not ready: {e}")))?;
        let ends_at = self.stream.call_duration.and_then(|d| Instant::now().checked_add(d));
        match (self.method.is_client_streaming(), self.method.is_server_streaming()) {
            (false, false) => {
                let message = self.payload.message(&self.method, data, data.request_number)?;
                // Sent as a server stream (the same bytes on the wire) and read to its end, so a reply the
                // protocol forbids is seen: tonic's unary call takes the first message and drops the rest.
                let mut replies = grpc.server_streaming(request(message)?, path, codec).await?.into_inner();
                if replies.message().await?.is_none() {
                    return Err(Status::internal("protocol error: a unary call ended without a reply message"));
                }
                if replies.message().await?.is_some() {
                    return Err(Status::internal("protocol error: a unary call got more than one reply message"));
                }
                let statuses = replies.trailers().await?.map_or(0, |t| t.get_all("grpc-status").iter().count());
                if statuses > 1 {
                    return Err(Status::internal(format!(
                        "protocol error: the reply has {statuses} grpc-status trailers"
                    )));
                }
                Ok(())
            }
            (false, true) => {
                let message = self.payload.message(&self.method, data, data.request_number)?;
                let mut replies = grpc.server_streaming(request(message)?, path, codec).await?.into_inner();
                let mut received = 0;
                loop {
                    if self.stream.call_count.is_some_and(|count| received >= count) {
                        return Ok(()); // Dropping the stream cancels it: ended by the client, on purpose.
                    }
                    let next = match ends_at {
                        Some(at) => match tokio::time::timeout_at(at, replies.message()).await {
                            Ok(next) => next,
                            Err(_) => return Ok(()),
                        },
                        None => replies.message().await,
                    };
                    if next?.is_none() {
                        return Ok(());
                    }
                    received += 1;
                }
            }
            (true, server_streams) => {
                let (tx, rx) = mpsc::channel(1);
                let send = self.send_stream(tx, data, ends_at);
                let call = async {
                    let messages = stream_request(ReceiverStream::new(rx))?;
                    if !server_streams {
                        return grpc.client_streaming::<_, _, DynamicMessage, _>(messages, path, codec).await.map(drop);
                    }
                    let mut replies = grpc.streaming(messages, path, codec).await?.into_inner();
                    while replies.message().await?.is_some() {}
                    Ok(())
                };
                let (sent, called) = tokio::join!(send, call);
                called.and(sent)
            }
        }
    }

    /// `message` with this call's metadata and deadline.
    fn request<T>(&self, message: T, data: &CallData<'_>, timeout: Option<Duration>) -> Result<Request<T>, Status> {
        let mut request = Request::new(message);
        *request.metadata_mut() = self.metadata.map(data)?;
        if let Some(timeout) = timeout {
            request.set_timeout(timeout);
        }
        Ok(request)
    }

    /// Feeds a client stream: `-d`'s messages in order (cycled up to `--stream-call-count`), then closes it.
    async fn send_stream(
        &self,
        tx: mpsc::Sender<DynamicMessage>,
        data: &CallData<'_>,
        ends_at: Option<Instant>,
    ) -> Result<(), Status> {
        let fixed = self.payload.messages(&self.method, data)?;
        let count = self.stream.call_count.unwrap_or(fixed.len() as u64);
        for i in 0..count {
            if ends_at.is_some_and(|at| Instant::now() >= at) {
                break;
            }
            if let (Some(interval), true) = (self.stream.interval, i > 0) {
                tokio::time::sleep(interval).await;
            }
            let message = if self.stream.dynamic_messages {
                let fresh = CallData { now: SystemTime::now(), ..data.clone() };
                self.payload.message(&self.method, &fresh, i)?
            } else if fixed.is_empty() {
                break;
            } else {
                fixed[(i % fixed.len() as u64) as usize].clone()
            };
            if tx.send(message).await.is_err() {
                break; // The call ended (the server answered early, or failed): its status says why.
            }
        }
        Ok(())
    }
}
