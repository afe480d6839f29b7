//! What a status met on the way to compute means for the gateway, decided here and nowhere else, for the async
//! and the synchronous wait styles alike: the deadline passed, the transport failed (retry on another replica), or
//! compute answered (pass it on).

use std::time::Duration;

use tonic::{Code, Status};

use crate::error::Error;

/// The gateway's failure for `status`, met calling `endpoint` after `waited` spent waiting for compute.
pub fn classify(status: Status, endpoint: &str, waited: Duration) -> Error {
    if status.code() == Code::DeadlineExceeded {
        Error::DeadlineExceeded { waited }
    } else if is_transport_failure(&status) {
        Error::Transport { endpoint: endpoint.to_owned(), message: status.message().to_owned() }
    } else if status.code() == Code::Cancelled {
        // A compute-side CANCELLED that the client did not cause is, from the client's side, a failure of the
        // replica: report it as UNAVAILABLE.
        Error::Compute { endpoint: endpoint.to_owned(), status: Status::unavailable(status.message().to_owned()) }
    } else {
        Error::Compute { endpoint: endpoint.to_owned(), status }
    }
}

/// Whether another replica may succeed where this failed: only when the transport failed, before compute
/// answered. Both methods are pure, so running a call again elsewhere is safe even if it had started.
pub fn retryable(error: &Error) -> bool {
    matches!(error, Error::Transport { .. })
}

/// Whether the call failed in the transport rather than in compute: `UNAVAILABLE` (the replica refused the
/// connection, did not accept it within the connect timeout, or is draining), or an HTTP/2 error on the connection
/// or the stream (`INTERNAL`/`UNKNOWN` with an `h2::Error` as its source: a connection reset or dropped by the
/// keepalive mid-call, a draining replica's GOAWAY racing a new call, found by the rolling-restart scenario). See
/// [`crate::connection`], which produces them. Compute's own answers never carry a transport error as their source.
fn is_transport_failure(status: &Status) -> bool {
    use std::error::Error as _;
    let from_http2 = status.source().is_some_and(|e| e.downcast_ref::<h2::Error>().is_some());
    status.code() == Code::Unavailable || (matches!(status.code(), Code::Unknown | Code::Internal) && from_http2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAITED: Duration = Duration::from_millis(5);

    #[test]
    fn transport_and_http2_failures_are_retried_compute_answers_are_not() {
        for reason in [h2::Reason::REFUSED_STREAM, h2::Reason::NO_ERROR, h2::Reason::PROTOCOL_ERROR] {
            let status = Status::from_error(Box::new(h2::Error::from(reason)));
            assert!(retryable(&classify(status, "a", WAITED)), "{reason:?}");
        }
        let refused = classify(Status::unavailable("connection refused"), "a", WAITED);
        assert!(retryable(&refused));
        assert_eq!(Status::from(refused).message(), "transport failure: connection refused");
        for answer in [Status::internal("job panicked: boom"), Status::invalid_argument("n = 7 is above 5")] {
            let code = answer.code();
            let error = classify(answer, "a", WAITED);
            assert!(!retryable(&error), "{error:?}");
            assert_eq!(Status::from(error).code(), code, "compute's code is passed on");
        }
    }

    #[test]
    fn a_passed_deadline_is_the_deadline() {
        let error = classify(Status::deadline_exceeded("job interrupted"), "a", WAITED);
        assert!(matches!(error, Error::DeadlineExceeded { waited: WAITED }), "{error:?}");
    }

    #[test]
    fn a_cancellation_the_client_did_not_cause_is_unavailable() {
        let error = classify(Status::cancelled("runtime shutting down"), "a", WAITED);
        assert!(!retryable(&error));
        assert_eq!(Status::from(error).code(), Code::Unavailable);
    }
}
