//! Every way a gateway request can fail, and the one place each becomes a gRPC status. (Which failure a status
//! from compute is, is decided in [`crate::upstream_status`].)

use std::time::Duration;

use tonic::{Code, Status, metadata::MetadataMap};
use tonic_types::{ErrorDetails, StatusExt};

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
            Error::UnknownUpstreamWait(_) => Status::with_error_details(
                Code::InvalidArgument,
                e.to_string(),
                ErrorDetails::with_bad_request_violation("upstream_wait", e.to_string()),
            ),
            Error::NoHealthyReplica { .. } | Error::Transport { .. } => Status::unavailable(e.to_string()),
            Error::DeadlineExceeded { .. } => Status::deadline_exceeded(e.to_string()),
            // Compute's answer as compute gave it: code, message, the details (`google.rpc.BadRequest`,
            // `RetryInfo`, … in `grpc-status-details-bin`) byte for byte, and compute's own metadata.
            Error::Compute { status, .. } => Status::with_details_and_metadata(
                status.code(),
                status.message().to_owned(),
                status.details().to_vec().into(),
                answer_metadata(status.metadata()),
            ),
        }
    }
}

/// Headers of compute's reply that describe compute's HTTP/2 response, not its answer: the gateway's own
/// response sets its own (tonic removes the gRPC status headers and the content type itself).
const HOP_HEADERS: [&str; 4] = ["date", "content-length", "grpc-encoding", "grpc-accept-encoding"];

/// The metadata of compute's answer that is meant for the client: everything but the hop's headers.
fn answer_metadata(metadata: &MetadataMap) -> MetadataMap {
    let mut headers = metadata.clone().into_headers();
    for name in HOP_HEADERS {
        headers.remove(name);
    }
    MetadataMap::from_headers(headers)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic_types::StatusExt;

    use super::*;

    #[test]
    fn computes_answer_passes_with_its_details_and_metadata() {
        let mut details = ErrorDetails::with_bad_request_violation("n", "n = 7 is above --max-factorial-n=5");
        details.set_retry_info(Some(Duration::from_millis(20)));
        let answer = Status::with_error_details(Code::InvalidArgument, "n = 7 is above 5", details);
        let mut metadata = answer.metadata().clone();
        metadata.insert("x-compute-note", "kept".parse().expect("ascii"));
        metadata.insert("grpc-accept-encoding", "gzip".parse().expect("ascii"));
        let answer = Status::with_details_and_metadata(
            answer.code(),
            answer.message().to_owned(),
            answer.details().to_vec().into(),
            metadata,
        );
        let passed = Status::from(Error::Compute { endpoint: "http://a".into(), status: answer.clone() });
        assert_eq!((passed.code(), passed.message()), (answer.code(), answer.message()));
        assert_eq!(passed.details(), answer.details(), "details byte for byte");
        assert_eq!(passed.get_details_retry_info().and_then(|r| r.retry_delay), Some(Duration::from_millis(20)));
        assert_eq!(passed.metadata().get("x-compute-note").map(|v| v.to_str().ok()), Some(Some("kept")));
        assert!(passed.metadata().get("grpc-accept-encoding").is_none(), "the hop's own headers stay behind");
    }
}
