//! The one error type of the gRPC boundary, and its mapping to `tonic::Status`.

use authn::AuthError;
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
    /// The database failed; the detail is logged, the caller gets a generic INTERNAL, or
    /// UNAVAILABLE (worth a retry) when the database could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// No database connection could be had; the caller gets UNAVAILABLE (worth a retry).
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
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
            Error::Unavailable(_) => Code::Unavailable,
            Error::Database(error) if database_unreachable(error) => Code::Unavailable,
            Error::Database(_) | Error::Corrupt(_) => Code::Internal,
        }
    }
}

/// Whether the database could not be reached (no connection, or the server ended it), rather
/// than refusing a statement: the call may succeed once the pool reconnects.
fn database_unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        // SQLSTATE class 08 (connection exception) and 57P0x (the server is shutting down or
        // terminated this backend, e.g. pg_terminate_backend).
        sqlx::Error::Database(error) => error
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P0")),
        _ => false,
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::Auth(auth) => auth.into(),
            Error::InvalidArgument(message) => Status::invalid_argument(message),
            Error::NotFound => Status::not_found("order not found"),
            Error::AlreadyCancelled => Status::failed_precondition("order is already cancelled"),
            Error::Unavailable(_) => {
                tracing::error!(error = %error, "database unreachable");
                Status::unavailable("service unavailable")
            }
            Error::Database(ref database) if database_unreachable(database) => {
                tracing::error!(error = %error, "database unreachable");
                Status::unavailable("service unavailable")
            }
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
            (
                Error::Database(sqlx::Error::PoolTimedOut),
                Code::Unavailable,
            ),
            (Error::Database(sqlx::Error::RowNotFound), Code::Internal),
            (
                Error::Unavailable(sqlx::Error::PoolClosed),
                Code::Unavailable,
            ),
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
