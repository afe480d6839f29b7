//! Every way a compute request can fail, and the one place each becomes a gRPC status.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{executor::ExecError, kernel::Interrupted};

/// A failed compute request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `n` is above a configured limit.
    #[error("{method}: n = {n} is above the server's limit {flag}={limit}")]
    AboveLimit { method: &'static str, n: u64, flag: &'static str, limit: u64 },
    /// The reply would not fit the message size limit.
    #[error(
        "Factorial: the reply for n = {n} would be about {reply_bytes} bytes, above the server's limit \
         --max-message-bytes={limit}"
    )]
    ReplyTooLarge { n: u64, reply_bytes: u64, limit: u64 },
    /// The request named an `ExecMode` this server does not know.
    #[error("unknown mode {0}: expected one of the offload.v1.ExecMode values 0..=6")]
    UnknownMode(i32),
    /// The job did not produce a value.
    #[error(transparent)]
    Exec(#[from] ExecError),
}

impl From<Interrupted> for Error {
    fn from(e: Interrupted) -> Self {
        Self::Exec(ExecError::Interrupted(e))
    }
}

/// The domain of the `google.rpc.ErrorInfo` reasons below: the API they belong to.
const ERROR_DOMAIN: &str = "offload.v1";

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            // Bad arguments say which field was wrong and why (`google.rpc.BadRequest`), and a limit's refusal also
            // says which limit in a form a program can read (`google.rpc.ErrorInfo`: the flag and its value).
            Error::AboveLimit { flag, limit, .. } => {
                let mut details = ErrorDetails::with_bad_request_violation("n", message.clone());
                details.set_error_info("N_ABOVE_LIMIT", ERROR_DOMAIN, limit_metadata(flag, limit));
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            Error::ReplyTooLarge { limit, .. } => {
                let mut details = ErrorDetails::with_bad_request_violation("n", message.clone());
                details.set_error_info("REPLY_TOO_LARGE", ERROR_DOMAIN, limit_metadata("--max-message-bytes", limit));
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            Error::UnknownMode(_) => Status::with_error_details(
                Code::InvalidArgument,
                message.clone(),
                ErrorDetails::with_bad_request_violation("mode", message),
            ),
            Error::Exec(ExecError::Interrupted(Interrupted::DeadlineExceeded)) => Status::deadline_exceeded(message),
            Error::Exec(ExecError::Interrupted(Interrupted::Cancelled)) => Status::cancelled(message),
            Error::Exec(ExecError::BlockInPlaceUnsupported { .. }) => Status::failed_precondition(message),
            Error::Exec(ExecError::Panicked(_)) => Status::internal(message),
            Error::Exec(ExecError::WorkerGone) => Status::unavailable(message),
        }
    }
}

/// The `ErrorInfo` metadata of a limit: the flag that sets it and its value.
fn limit_metadata(flag: &str, limit: u64) -> HashMap<String, String> {
    HashMap::from([("flag".to_owned(), flag.to_owned()), ("limit".to_owned(), limit.to_string())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_refusals_name_the_field_and_the_limit_in_their_details() {
        let status = Status::from(Error::AboveLimit { method: "Factorial", n: 7, flag: "--max-factorial-n", limit: 5 });
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let violation = &details.bad_request().expect("BadRequest").field_violations[0];
        assert_eq!(violation.field, "n");
        assert!(violation.description.contains("--max-factorial-n=5"), "{}", violation.description);
        let info = details.error_info().expect("ErrorInfo");
        assert_eq!((info.reason.as_str(), info.domain.as_str()), ("N_ABOVE_LIMIT", ERROR_DOMAIN));
        assert_eq!(info.metadata.get("limit").map(String::as_str), Some("5"));

        let status = Status::from(Error::UnknownMode(42));
        assert_eq!(status.get_details_bad_request().expect("BadRequest").field_violations[0].field, "mode");
    }
}
