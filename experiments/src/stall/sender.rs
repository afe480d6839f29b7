//! How `stall` sends its two kinds of call: the probe and the load. The default probe, the standard health check,
//! goes through the load generator's typed client, so it needs nothing from the server but `grpc.health.v1`;
//! every other method goes through its dynamic path ([`offload_loadgen::dynamic_call`]), with descriptors from
//! the server's reflection, `--proto` or `--protoset`, so any gRPC server can be measured.

use std::{sync::Arc, time::Duration};

use offload_loadgen::{
    call::{self, Caller},
    descriptors::Source,
    dynamic_call::{DynamicCall, StreamOptions},
};
use tonic::{Status, client::Grpc, transport::Channel};
use tonic_health::pb::health_check_response::ServingStatus;

/// How long the server's reflection may take, in all: as long as connecting may (`call::connect`'s 5 s), so a
/// server that accepts the reflection stream and never answers is refused instead of waited for.
const REFLECTION_DEADLINE: Duration = Duration::from_secs(5);

/// The start of a failed health probe's message when the server said it is not serving.
pub const NOT_SERVING: &str = "the server's health check says it is not serving";

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
        let descriptor = source.method(&channel, method, REFLECTION_DEADLINE).await?;
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

    /// Sends one call from `worker` and waits for its reply, within `timeout` if any. A health check answered
    /// with anything but `SERVING` is a failure whose message says [`NOT_SERVING`]: a server that says it is not
    /// serving is not one to judge.
    pub async fn send(self, worker: usize, timeout: Option<Duration>) -> Result<(), Status> {
        match self {
            Self::Health(mut caller) => match caller.serving_status("", timeout).await? {
                ServingStatus::Serving => Ok(()),
                other => Err(Status::failed_precondition(format!("{NOT_SERVING}: {}", other.as_str_name()))),
            },
            Self::Dynamic { call, grpc } => call.call_within(grpc, worker, timeout).await,
        }
    }
}
