//! Every way a gateway request can fail, and the one place each becomes a gRPC status.

use std::time::Duration;

use tonic::{Code, Status};

/// A failed gateway request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request named an `UpstreamWait` this gateway does not know.
    #[error("unknown upstream_wait {0}: expected one of the offload.v1.UpstreamWait values 0..=4")]
    UnknownUpstreamWait(i32),
    /// No compute endpoint is currently healthy.
    #[error("no healthy compute endpoint (of {configured} configured)")]
    NoHealthyUpstream { configured: usize },
    /// The deadline passed while waiting for compute.
    #[error("deadline exceeded after {waited:?} waiting for compute")]
    DeadlineExceeded { waited: Duration },
    /// Compute answered with an error: passed through as is, with the endpoint named for debugging.
    #[error("compute {endpoint}: {status}")]
    Upstream { endpoint: String, status: Status },
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::UnknownUpstreamWait(_) => Status::invalid_argument(e.to_string()),
            Error::NoHealthyUpstream { .. } => Status::unavailable(e.to_string()),
            Error::DeadlineExceeded { .. } => Status::deadline_exceeded(e.to_string()),
            // Keep compute's code (INVALID_ARGUMENT, RESOURCE_EXHAUSTED, …) so clients can act on it; a transport
            // failure already arrives as UNAVAILABLE.
            Error::Upstream { ref status, .. } => {
                let code = match status.code() {
                    // A compute-side CANCELLED that the client did not cause is, from the client's side, a failure
                    // of the upstream; report it as such.
                    Code::Cancelled => Code::Unavailable,
                    code => code,
                };
                Status::new(code, status.message().to_owned())
            }
        }
    }
}
