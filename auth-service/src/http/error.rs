//! The errors of the HTTP API and their one mapping to the wire: [`TokenError`] for the OAuth
//! endpoints (RFC 6749 §5.2, also used by RFC 7009 revocation and RFC 7662 introspection),
//! [`ApiError`] for the `/v1` session and administration API.

use std::time::Duration;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, PRAGMA, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use serde::Serialize;

use crate::grants::GrantError;
use crate::passwords::BUSY_RETRY_AFTER;

/// `WWW-Authenticate` of a failed HTTP Basic client authentication.
pub const BASIC_CHALLENGE: &str = r#"Basic realm="auth-service""#;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every way a token request fails. Descriptions are static: nothing the client sent is
/// echoed back.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("invalid_request: {0}")]
    InvalidRequest(&'static str),
    /// The body exceeds the limit (413, still in the RFC 6749 shape).
    #[error("invalid_request: request body too large")]
    BodyTooLarge,
    #[error("invalid_client: {description}")]
    InvalidClient {
        description: &'static str,
        /// The client tried HTTP Basic: the answer carries a `WWW-Authenticate` challenge.
        basic: bool,
    },
    #[error("invalid_grant: {0}")]
    InvalidGrant(&'static str),
    /// A password login refused unchecked by the login throttle: 429 with `Retry-After`, the
    /// code `invalid_grant` (RFC 6749 has none for this) and one description for every account,
    /// existing or not.
    #[error("invalid_grant: login throttled")]
    LoginThrottled { retry_after: Duration },
    /// A client authentication refused unchecked (no Argon2 run) by the client-authentication
    /// throttle: 429 with `Retry-After`, one description for every client id, registered or
    /// not. The code is `temporarily_unavailable` (RFC 6749 §4.1.2.1, the one code that means
    /// "try again later"), not `invalid_client`: the credentials were not checked, so they must
    /// not be called wrong (a client with the right secret would be told to fix it), and
    /// `invalid_client` over HTTP Basic requires a 401 with a challenge (RFC 6749 §5.2).
    #[error("temporarily_unavailable: client authentication throttled")]
    ClientThrottled { retry_after: Duration },
    /// Argon2's waiting room is full: 503 with `Retry-After`, refused at once.
    #[error("temporarily_unavailable: too many credential checks waiting")]
    Busy,
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(&'static str),
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    #[error("invalid_scope: {0}")]
    InvalidScope(&'static str),
    /// RFC 7009 §2.2.1: a token this server cannot revoke (a service token, which has no
    /// session).
    #[error("unsupported_token_type")]
    UnsupportedTokenType,
    /// Anything on our side; logged, answered with a generic 500 `server_error`, or with 503
    /// `temporarily_unavailable` and `Retry-After` when the cause is a dependency that did not
    /// answer (see [`is_unavailable`]).
    #[error("internal error: {0}")]
    Internal(#[source] BoxError),
}

impl TokenError {
    pub fn internal(e: impl Into<BoxError>) -> Self {
        Self::Internal(e.into())
    }

    /// The RFC 6749 `error` code; also the label of `auth_token_errors_total`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) | Self::BodyTooLarge => "invalid_request",
            Self::InvalidClient { .. } => "invalid_client",
            Self::InvalidGrant(_) | Self::LoginThrottled { .. } => "invalid_grant",
            Self::ClientThrottled { .. } | Self::Busy => "temporarily_unavailable",
            Self::Internal(e) if is_unavailable(e.as_ref()) => "temporarily_unavailable",
            Self::UnauthorizedClient(_) => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::UnsupportedTokenType => "unsupported_token_type",
            Self::Internal(_) => "server_error",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidClient { .. } => StatusCode::UNAUTHORIZED,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::LoginThrottled { .. } | Self::ClientThrottled { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(e) if is_unavailable(e.as_ref()) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn description(&self) -> &'static str {
        match self {
            Self::InvalidRequest(d)
            | Self::InvalidGrant(d)
            | Self::UnauthorizedClient(d)
            | Self::InvalidScope(d) => d,
            Self::InvalidClient { description, .. } => description,
            Self::BodyTooLarge => "request body too large",
            Self::LoginThrottled { .. } => "too many failed logins: try again later",
            Self::ClientThrottled { .. } => {
                "too many failed client authentications: try again later"
            }
            Self::Busy => "the server is busy: try again later",
            Self::Internal(e) if is_unavailable(e.as_ref()) => UNAVAILABLE_DESCRIPTION,
            Self::UnsupportedGrantType => {
                "grant_type must be authorization_code, refresh_token or client_credentials"
            }
            Self::UnsupportedTokenType => {
                "only user tokens (with a session) and refresh tokens can be revoked"
            }
            Self::Internal(_) => "the server could not handle the request",
        }
    }
}

impl From<GrantError> for TokenError {
    fn from(error: GrantError) -> Self {
        match error {
            GrantError::InvalidGrant(description) => Self::InvalidGrant(description),
            GrantError::LoginThrottled { retry_after } => Self::LoginThrottled { retry_after },
            GrantError::Busy => Self::Busy,
            GrantError::InvalidScope(description) => Self::InvalidScope(description),
            GrantError::Internal(e) => Self::Internal(e),
        }
    }
}

/// `Retry-After` of a request that failed because the database or Redis did not answer: long
/// enough for a connection pool to reconnect or a failover to finish, short enough that a
/// client does not give up.
const UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(2);
const UNAVAILABLE_DESCRIPTION: &str = "a backing service is unavailable: try again later";

/// Whether an internal error is a dependency that did not answer (the database or Redis down,
/// unreachable, restarting, or out of pooled connections) rather than a bug or bad data. Such a
/// request may succeed if retried, so it is answered 503 with `Retry-After`, not 500; either
/// way it fails closed. Walks the whole `source()` chain, so wrapping keeps the classification.
pub fn is_unavailable(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(error) = error.downcast_ref::<sqlx::Error>() {
            return match error {
                // `Protocol`: the server's first bytes were not PostgreSQL's, in practice a
                // connection closed during the handshake (a proxy or balancer in front of a
                // database that is down accepts, then hangs up).
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                // SQLSTATE class 08 (connection exception) and 57P (operator intervention:
                // shutting down, starting up), what PostgreSQL answers during a restart.
                sqlx::Error::Database(e) => e
                    .code()
                    .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
                _ => false,
            };
        }
        if let Some(error) = error.downcast_ref::<redis::RedisError>() {
            return error.is_io_error()
                || error.is_connection_dropped()
                || error.is_connection_refusal()
                || error.is_timeout()
                || error.is_cluster_error();
        }
        if let Some(crate::sessions::StoreError::Timeout(_)) = error.downcast_ref() {
            return true;
        }
        next = error.source();
    }
    false
}

/// Whole seconds for `Retry-After`, rounded up, at least 1: a client retrying after the header
/// says is never early.
fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'static str,
    error_description: &'a str,
}

/// `Cache-Control: no-store` and `Pragma: no-cache`, required on token responses (RFC 6749
/// §5.1) and applied to errors as well.
pub fn no_store(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let code = self.code();
        match &self {
            Self::Internal(e) if is_unavailable(e.as_ref()) => {
                tracing::warn!(error = %e, "token request failed: a backing service is unavailable");
            }
            Self::Internal(e) => tracing::error!(error = %e, "token request failed"),
            other => tracing::info!(error = code, reason = %other, "token request refused"),
        }
        metrics::counter!("auth_token_errors_total", "error" => code).increment(1);
        let mut response = (
            self.status(),
            Json(ErrorBody {
                error: code,
                error_description: self.description(),
            }),
        )
            .into_response();
        if matches!(self, Self::InvalidClient { basic: true, .. }) {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static(BASIC_CHALLENGE));
        }
        let retry_after = match self {
            Self::LoginThrottled { retry_after } | Self::ClientThrottled { retry_after } => {
                Some(retry_after)
            }
            Self::Busy => Some(BUSY_RETRY_AFTER),
            Self::Internal(e) if is_unavailable(e.as_ref()) => Some(UNAVAILABLE_RETRY_AFTER),
            _ => None,
        };
        if let Some(retry_after) = retry_after {
            response.headers_mut().insert(
                RETRY_AFTER,
                HeaderValue::from(retry_after_secs(retry_after)),
            );
        }
        no_store(&mut response);
        response
    }
}

/// Every way a request to the `/v1` session and administration API fails once its bearer token
/// has been verified (the extractor answers 401 and 503 itself, as [`authn::AuthError`]).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 403: the caller's token or role does not allow this.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// 403 `insufficient_scope` (with its `WWW-Authenticate` challenge): the token lacks a scope.
    #[error(transparent)]
    Auth(#[from] authn::AuthError),
    /// 400 `invalid_request`: the body or a parameter is not what the route takes.
    #[error("invalid request: {0}")]
    BadRequest(String),
    /// 404: no such resource, or one the caller may not see (indistinguishable).
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// 409: the request cannot apply to the current state (read-only signing keys).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// 500, generic; the detail goes to the log. 503 with `Retry-After` when the cause is a
    /// dependency that did not answer ([`is_unavailable`]).
    #[error("internal error: {0}")]
    Internal(#[source] BoxError),
}

impl ApiError {
    pub fn internal(e: impl Into<BoxError>) -> Self {
        Self::Internal(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error, description) = match &self {
            Self::Auth(error) => {
                let mut response = error.clone().into_response();
                no_store(&mut response);
                return response;
            }
            Self::BadRequest(description) => {
                let mut response = (
                    StatusCode::BAD_REQUEST,
                    Json(ErrorBody {
                        error: "invalid_request",
                        error_description: description,
                    }),
                )
                    .into_response();
                no_store(&mut response);
                return response;
            }
            Self::Forbidden(description) => (StatusCode::FORBIDDEN, "forbidden", *description),
            Self::NotFound(description) => (StatusCode::NOT_FOUND, "not_found", *description),
            Self::Conflict(description) => (StatusCode::CONFLICT, "conflict", *description),
            Self::Internal(e) if is_unavailable(e.as_ref()) => {
                tracing::warn!(error = %e, "request failed: a backing service is unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    UNAVAILABLE_DESCRIPTION,
                )
            }
            Self::Internal(e) => {
                tracing::error!(error = %e, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "the server could not handle the request",
                )
            }
        };
        let mut response = (
            status,
            Json(ErrorBody {
                error,
                error_description: description,
            }),
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                RETRY_AFTER,
                HeaderValue::from(retry_after_secs(UNAVAILABLE_RETRY_AFTER)),
            );
        }
        no_store(&mut response);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn a_throttled_login_is_a_429_with_retry_after_in_the_rfc6749_shape() {
        let response = TokenError::LoginThrottled {
            retry_after: Duration::from_millis(1500),
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[RETRY_AFTER], "2");
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    }

    #[test]
    fn a_throttled_client_is_a_429_and_a_full_queue_a_503_both_with_retry_after() {
        let throttled = TokenError::ClientThrottled {
            retry_after: Duration::from_secs(30),
        };
        assert_eq!(throttled.code(), "temporarily_unavailable");
        let response = throttled.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[RETRY_AFTER], "30");
        assert!(!response.headers().contains_key(WWW_AUTHENTICATE));
        let response = TokenError::Busy.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
    }

    #[test]
    fn an_unreachable_dependency_is_a_503_with_retry_after_and_a_bug_a_500() {
        use crate::sessions::StoreError;
        let refused = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let unavailable: Vec<BoxError> = vec![
            Box::new(StoreError::Db(sqlx::Error::PoolTimedOut)),
            Box::new(StoreError::Db(sqlx::Error::Io(refused()))),
            Box::new(StoreError::Db(sqlx::Error::Protocol(
                "unexpected response".into(),
            ))),
            Box::new(StoreError::Redis(redis::RedisError::from(refused()))),
            Box::new(StoreError::Timeout(Duration::from_secs(1))),
            // Wrapped once more: the chain is walked.
            Box::new(GrantError::internal(StoreError::Db(
                sqlx::Error::PoolClosed,
            ))),
        ];
        for error in unavailable {
            let token = TokenError::Internal(error);
            assert_eq!(token.code(), "temporarily_unavailable", "{token}");
            let response = token.into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[RETRY_AFTER], "2");
        }
        let response = ApiError::internal(StoreError::Redis(redis::RedisError::from(refused())))
            .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "2");

        let bugs: Vec<BoxError> = vec![
            Box::new(StoreError::Corrupt("bad row".into())),
            Box::new(StoreError::Db(sqlx::Error::RowNotFound)),
            "no key to sign with".into(),
        ];
        for error in bugs {
            let response = TokenError::Internal(error).into_response();
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert!(!response.headers().contains_key(RETRY_AFTER));
        }
        let response = ApiError::internal("no key to sign with").into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
