//! Every way a gateway request can fail, and the one place each becomes a gRPC status. (Which failure a status
//! from compute is, is decided in [`crate::upstream_status`].)

use std::time::Duration;

use tonic::Status;

/// A failed gateway request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request named an `UpstreamWait` this gateway does not know.
    #[error("unknown upstream_wait {0}: expected one of the offload.v1.UpstreamWait values 0..=4")]
    UnknownUpstreamWait(i32),
    /// No compute endpoint is currently healthy.
    #[error("no healthy compute endpoint (of {configured} configured)")]
    NoHealthyReplica { configured: usize },
    /// The deadline passed while waiting for compute.
    #[error("deadline exceeded after {waited:?} waiting for compute")]
    DeadlineExceeded { waited: Duration },
    /// The connection to a replica failed before it answered (refused, reset, draining): worth another replica.
    #[error("transport failure: {message}")]
    Transport { endpoint: String, message: String },
    /// Compute answered with an error: passed on with compute's code (INVALID_ARGUMENT, RESOURCE_EXHAUSTED, …) so
    /// clients can act on it; the endpoint is kept for debugging.
    #[error("compute {endpoint}: {status}")]
    Compute { endpoint: String, status: Status },
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::UnknownUpstreamWait(_) => Status::invalid_argument(e.to_string()),
            Error::NoHealthyReplica { .. } | Error::Transport { .. } => Status::unavailable(e.to_string()),
            Error::DeadlineExceeded { .. } => Status::deadline_exceeded(e.to_string()),
            Error::Compute { status, .. } => Status::new(status.code(), status.message().to_owned()),
        }
    }
}
