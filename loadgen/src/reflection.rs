//! Method descriptors from the server itself, by gRPC server reflection: the services it lists and the files that
//! define them (with their imports), as grpcurl and ghz fetch them when given no `.proto` file.
//!
//! The files may define more services than the server lists (a file's other services, its imports' services): the
//! gateway's `offload/v1/offload.proto` also defines `offload.v1.Compute`, which the gateway answers with
//! `UNIMPLEMENTED`. So what the server *lists* is kept beside the files ([`Reflected::listed`]), and only those
//! services are offered.
//!
//! `grpc.reflection.v1` is asked first; a server that answers `UNIMPLEMENTED` is asked again over
//! `grpc.reflection.v1alpha`, which older servers (and some current ones, such as Python's `grpcio-reflection`)
//! serve alone. The two versions are the same protocol under two package names, so one macro writes both clients.
//!
//! The server is not trusted to end the exchange: reflection as a whole has a deadline (the caller's, `load`'s
//! `--connect-timeout`), and what it may send is capped ([`MAX_SERVICES`], [`MAX_FILES`], [`MAX_BYTES`]), so a
//! server that never answers, lists services without end or makes every file import a new one is refused with the
//! limit it passed instead of holding the run or its memory.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use anyhow::Context;
use prost::Message;
use prost_reflect::DescriptorPool;
use prost_types::FileDescriptorProto;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, transport::Channel};

/// Requests the reflection stream may have queued before the client reads answers: one per file is all it needs.
const QUEUED_REQUESTS: usize = 16;
/// Services listed at most: far above any real server's (tens), and each one listed costs a request.
pub const MAX_SERVICES: usize = 10_000;
/// Files (with their imports) at most: Google's whole public API is about 3 000 files.
pub const MAX_FILES: usize = 10_000;
/// Encoded descriptor bytes at most, all files together: 64 MiB, some ten times Google's whole public API.
pub const MAX_BYTES: usize = 64 << 20;

/// What a server's reflection says.
#[derive(Debug, Clone)]
pub struct Reflected {
    /// The services the server lists (`ListServices`): the ones it serves.
    pub listed: Vec<String>,
    /// The files defining them, with their imports: they may define services the server does not serve.
    pub pool: DescriptorPool,
}

/// Every service the server lists, and every file they need, as a descriptor pool; within `deadline`.
pub async fn fetch(channel: Channel, deadline: Duration) -> anyhow::Result<Reflected> {
    let fetch = async {
        match files_v1(channel.clone()).await {
            Err(status) if status.code() == Code::Unimplemented => files_v1alpha(channel).await,
            other => other,
        }
    };
    let (listed, files) = tokio::time::timeout(deadline, fetch)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "server reflection did not finish within {deadline:?} (--connect-timeout); give the service's \
                 definitions with --proto or --protoset"
            )
        })?
        .map_err(|status| {
            anyhow::anyhow!(
                "server reflection failed ({}: {}); give the service's definitions with --proto or --protoset",
                crate::recording::go_code_name(status.code()),
                crate::text::escaped(status.message())
            )
        })?;
    let mut pool = DescriptorPool::new();
    pool.add_file_descriptor_protos(files).context("the server's reflection answers are not valid descriptors")?;
    Ok(Reflected { listed, pool })
}

/// A reflection answer past one of the caps: refused with the cap it passed.
fn too_much(what: &str, limit: usize) -> Status {
    Status::resource_exhausted(format!("the server sent more than {limit} {what} (the most reflection takes)"))
}

macro_rules! reflection_client {
    ($function:ident, $version:ident) => {
        /// The services listed and the files defining them (and their imports), over this version of the protocol.
        async fn $function(channel: Channel) -> Result<(Vec<String>, Vec<FileDescriptorProto>), Status> {
            use tonic_reflection::pb::$version::{
                ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
                server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
            };
            let request = |r| ServerReflectionRequest { host: String::new(), message_request: Some(r) };
            let (tx, rx) = mpsc::channel(QUEUED_REQUESTS);
            let closed = |_| Status::unavailable("reflection stream closed");
            tx.send(request(MessageRequest::ListServices(String::new()))).await.map_err(closed)?;
            let mut answers = ServerReflectionClient::new(channel)
                .server_reflection_info(ReceiverStream::new(rx))
                .await?
                .into_inner();
            let listed: Vec<String> = match answers.message().await?.and_then(|a| a.message_response) {
                Some(MessageResponse::ListServicesResponse(list)) if list.service.len() > MAX_SERVICES => {
                    return Err(too_much("services", MAX_SERVICES));
                }
                Some(MessageResponse::ListServicesResponse(list)) => list.service.into_iter().map(|s| s.name).collect(),
                Some(MessageResponse::ErrorResponse(e)) => {
                    return Err(Status::new(e.error_code.into(), e.error_message))
                }
                _ => return Err(Status::internal("no answer to list_services")),
            };
            let mut wanted: Vec<MessageRequest> =
                listed.iter().map(|name| MessageRequest::FileContainingSymbol(name.clone())).collect();
            let mut files = HashMap::new();
            let mut asked = HashSet::new();
            let (mut received_files, mut received_bytes) = (0, 0);
            while let Some(next) = wanted.pop() {
                tx.send(request(next)).await.map_err(closed)?;
                let answer = answers.message().await?.and_then(|a| a.message_response);
                // A service whose file the server cannot give (some list themselves without one) is left out.
                let Some(MessageResponse::FileDescriptorResponse(found)) = answer else { continue };
                for bytes in found.file_descriptor_proto {
                    (received_files, received_bytes) = (received_files + 1, received_bytes + bytes.len());
                    if received_files > MAX_FILES {
                        return Err(too_much("descriptor files", MAX_FILES));
                    }
                    if received_bytes > MAX_BYTES {
                        return Err(too_much("bytes of descriptors", MAX_BYTES));
                    }
                    let file = FileDescriptorProto::decode(bytes.as_slice())
                        .map_err(|e| Status::internal(format!("undecodable file descriptor: {e}")))?;
                    for import in &file.dependency {
                        if !files.contains_key(import) && asked.insert(import.clone()) {
                            wanted.push(MessageRequest::FileByFilename(import.clone()));
                        }
                    }
                    files.insert(file.name().to_owned(), file);
                }
            }
            Ok((listed, files.into_values().collect()))
        }
    };
}

reflection_client!(files_v1, v1);
reflection_client!(files_v1alpha, v1alpha);
