//! How `stall` sends its two kinds of call: the probe and the load. The default probe, the standard health check,
//! goes through the load generator's typed client, so it needs nothing from the server but `grpc.health.v1`;
//! every other method goes through its dynamic path ([`offload_loadgen::dynamic_call`]), with descriptors from
//! the server's reflection, `--proto` or `--protoset`, so any gRPC server can be measured.

use std::{sync::Arc, time::Duration};

use offload_loadgen::{
    call::{self, Call, Caller},
    descriptors::Source,
    dynamic_call::{DynamicCall, StreamOptions},
};
use tonic::{Status, client::Grpc, transport::Channel};

/// One method with its request, ready to be sent over one connection. Cheap to clone (clones share both).
#[derive(Debug, Clone)]
pub enum Sender {
    /// `grpc.health.v1.Health/Check` for the whole server (`service: ""`).
    Health(Box<Caller>),
    /// Any method, by its descriptors.
    Dynamic { call: Arc<DynamicCall>, grpc: Grpc<Channel> },
}

impl Sender {
    /// The standard health check over `channel`.
    pub fn health(channel: Channel) -> Self {
        Self::Health(Box::new(Caller::new(channel)))
    }

    /// `method` (`package.Service/Method`) with `data` (proto3 JSON) and `metadata`, described by `source`,
    /// over `channel`.
    pub async fn dynamic(
        channel: Channel,
        source: &Source,
        method: &str,
        data: Option<&str>,
        metadata: Option<&str>,
    ) -> anyhow::Result<Self> {
        let descriptor = source.method(&channel, method).await?;
        let call = DynamicCall::new(descriptor, data, metadata, StreamOptions::default(), 1)?;
        let grpc = Grpc::new(channel).max_decoding_message_size(call::MAX_REPLY_BYTES);
        Ok(Self::Dynamic { call: Arc::new(call), grpc })
    }

    /// The method, `package.Service.Method`.
    pub fn method_name(&self) -> &str {
        match self {
            Self::Health(_) => "grpc.health.v1.Health.Check",
            Self::Dynamic { call, .. } => call.method_name(),
        }
    }

    /// Sends one call from `worker` and waits for its reply, within `timeout`.
    pub async fn send(self, worker: usize, timeout: Duration) -> Result<(), Status> {
        match self {
            Self::Health(mut caller) => caller.call(&Call::HealthCheck(String::new()), Some(timeout)).await,
            Self::Dynamic { call, grpc } => call.call(grpc, worker, timeout).await,
        }
    }
}
