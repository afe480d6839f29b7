//! Every way a compute request can fail, and the one place each becomes a gRPC status.

use tonic::Status;

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

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::AboveLimit { .. } | Error::ReplyTooLarge { .. } | Error::UnknownMode(_) => {
                Status::invalid_argument(message)
            }
            Error::Exec(ExecError::Interrupted(Interrupted::DeadlineExceeded)) => Status::deadline_exceeded(message),
            Error::Exec(ExecError::Interrupted(Interrupted::Cancelled)) => Status::cancelled(message),
            Error::Exec(ExecError::BlockInPlaceUnsupported) => Status::failed_precondition(message),
            Error::Exec(ExecError::Panicked(_)) => Status::internal(message),
            Error::Exec(ExecError::WorkerGone) => Status::unavailable(message),
        }
    }
}
