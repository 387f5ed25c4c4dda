//! The one error type of the gRPC boundary, and its mapping to `tonic::Status`.

use shared::AuthError;
use tonic::{Code, Status};

/// Everything an RPC can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Authentication or authorization failed (UNAUTHENTICATED, PERMISSION_DENIED, UNAVAILABLE).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The request is malformed; the message says which field and is safe to show.
    #[error("{0}")]
    InvalidArgument(&'static str),
    /// No such order, or one the caller may not see: both answer the same, so that a caller
    /// cannot probe for the existence of other users' orders.
    #[error("order not found")]
    NotFound,
    /// The order is already cancelled.
    #[error("order is already cancelled")]
    AlreadyCancelled,
    /// The database failed; the detail is logged, the caller gets a generic INTERNAL.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The database holds something this version cannot read.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl Error {
    /// The gRPC code this error answers with.
    pub fn code(&self) -> Code {
        match self {
            Error::Auth(auth) => Status::from(auth.clone()).code(),
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotFound => Code::NotFound,
            Error::AlreadyCancelled => Code::FailedPrecondition,
            Error::Database(_) | Error::Corrupt(_) => Code::Internal,
        }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::Auth(auth) => auth.into(),
            Error::InvalidArgument(message) => Status::invalid_argument(message),
            Error::NotFound => Status::not_found("order not found"),
            Error::AlreadyCancelled => Status::failed_precondition("order is already cancelled"),
            Error::Database(_) | Error::Corrupt(_) => {
                tracing::error!(error = %error, "request failed");
                Status::internal("internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_code() {
        let cases = [
            (
                Error::InvalidArgument("id must be a UUID"),
                Code::InvalidArgument,
            ),
            (Error::NotFound, Code::NotFound),
            (Error::AlreadyCancelled, Code::FailedPrecondition),
            (Error::Database(sqlx::Error::PoolTimedOut), Code::Internal),
            (Error::Corrupt("status".into()), Code::Internal),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code);
            assert_eq!(Status::from(error).code(), code);
        }
    }

    #[test]
    fn internal_errors_do_not_leak_detail() {
        let status = Status::from(Error::Corrupt("secret detail".into()));
        assert_eq!(status.message(), "internal error");
    }
}
