//! The one error type of the HTTP boundary, its JSON rendering, and the mapping of the orders
//! service's gRPC statuses onto it.
//!
//! Every error body is `{"error": "<stable code>", "error_description": "..."}`. Descriptions of
//! 5xx answers are generic (the detail goes to the log), and no description ever echoes a
//! token or a request body.

use std::borrow::Cow;

use authn::{AuthError, RejectReason, Scope};
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tonic::Code;

/// Everything a gateway request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Refused at the edge: 401 with `WWW-Authenticate`, 403 `insufficient_scope`, or 503.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The orders service refused the token (401, `invalid_token`).
    #[error("token refused upstream")]
    InvalidToken,
    /// The orders service refused the call for a reason other than a missing scope.
    #[error("forbidden")]
    Forbidden,
    /// 400: a malformed body, query or argument.
    #[error("invalid request: {0}")]
    InvalidRequest(Cow<'static, str>),
    /// 413: the body is over `GATEWAY_MAX_BODY`.
    #[error("payload too large")]
    PayloadTooLarge,
    /// 415: a JSON body without `Content-Type: application/json`.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// 404.
    #[error("not found: {0}")]
    NotFound(Cow<'static, str>),
    /// 409: the resource is not in a state that allows this.
    #[error("conflict: {0}")]
    Conflict(String),
    /// 502: an upstream failed or answered something unexpected.
    #[error("bad gateway: {0}")]
    BadGateway(String),
    /// 503: an upstream is unavailable.
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// 504: an upstream did not answer in time.
    #[error("upstream timed out")]
    GatewayTimeout,
    /// 500: a bug in the gateway.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Auth(AuthError::Unauthenticated(_)) | ApiError::InvalidToken => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::Auth(AuthError::Forbidden { .. } | AuthError::CrossSite)
            | ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::Auth(AuthError::Unavailable) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A JSON error response with a stable code.
pub fn error_response(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        Json(json!({ "error": code, "error_description": description })),
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match self {
            ApiError::Auth(auth) => auth.into_response(),
            ApiError::InvalidToken => {
                let mut response = error_response(
                    status,
                    "invalid_token",
                    "the access token is missing, malformed, expired or revoked",
                );
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer error="invalid_token""#),
                );
                response
            }
            ApiError::Forbidden => {
                error_response(status, "forbidden", "the token does not allow this request")
            }
            ApiError::InvalidRequest(description) => {
                error_response(status, "invalid_request", &description)
            }
            ApiError::PayloadTooLarge => {
                error_response(status, "payload_too_large", "the request body is too large")
            }
            ApiError::UnsupportedMediaType => error_response(
                status,
                "unsupported_media_type",
                "the request body must be application/json",
            ),
            ApiError::NotFound(description) => error_response(status, "not_found", &description),
            ApiError::Conflict(description) => error_response(status, "conflict", &description),
            ApiError::BadGateway(ref detail) => {
                tracing::warn!(detail, "upstream failure");
                error_response(status, "bad_gateway", "an upstream service failed")
            }
            ApiError::Unavailable(ref detail) => {
                tracing::warn!(detail, "upstream unavailable");
                error_response(
                    status,
                    "service_unavailable",
                    "an upstream service is unavailable",
                )
            }
            ApiError::GatewayTimeout => error_response(
                status,
                "gateway_timeout",
                "an upstream service did not answer in time",
            ),
            ApiError::Internal(ref detail) => {
                tracing::error!(detail, "internal error");
                error_response(status, "internal_error", "internal error")
            }
        }
    }
}

/// The orders service's answer, as the HTTP client should see it.
impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        match status.code() {
            // The one refusal whose reason the client is told: it says what to do (refresh).
            Code::Unauthenticated if status.message() == authn::CLAIMS_CHANGED_DESCRIPTION => {
                ApiError::Auth(AuthError::Unauthenticated(RejectReason::ClaimsChanged))
            }
            Code::Unauthenticated => ApiError::InvalidToken,
            Code::PermissionDenied => match missing_scope(&status) {
                Some(scope) => ApiError::Auth(AuthError::Forbidden { scope }),
                None => ApiError::Forbidden,
            },
            Code::NotFound => ApiError::NotFound(status.message().to_owned().into()),
            Code::InvalidArgument | Code::OutOfRange => {
                ApiError::InvalidRequest(status.message().to_owned().into())
            }
            Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => {
                ApiError::Conflict(status.message().to_owned())
            }
            Code::Unavailable | Code::ResourceExhausted => {
                ApiError::Unavailable(status.message().to_owned())
            }
            Code::DeadlineExceeded | Code::Cancelled => ApiError::GatewayTimeout,
            code => ApiError::BadGateway(format!("{code:?}: {}", status.message())),
        }
    }
}

/// Which scope a PERMISSION_DENIED from a service built on `authn` says is missing: it was
/// made by `Status::from(AuthError::Forbidden { scope })`, so compare with exactly that.
fn missing_scope(status: &tonic::Status) -> Option<Scope> {
    Scope::ALL.into_iter().find(|&scope| {
        tonic::Status::from(AuthError::Forbidden { scope }).message() == status.message()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Status;

    async fn body(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn grpc_codes_map_to_http() {
        let cases = [
            (Status::unauthenticated("x"), 401, "invalid_token"),
            (Status::permission_denied("x"), 403, "forbidden"),
            (
                Status::from(AuthError::Forbidden {
                    scope: Scope::OrdersWrite,
                }),
                403,
                "insufficient_scope",
            ),
            (Status::not_found("order not found"), 404, "not_found"),
            (
                Status::invalid_argument("id must be a UUID"),
                400,
                "invalid_request",
            ),
            (
                Status::failed_precondition("order is already cancelled"),
                409,
                "conflict",
            ),
            (Status::unavailable("down"), 503, "service_unavailable"),
            (Status::deadline_exceeded("slow"), 504, "gateway_timeout"),
            (Status::internal("secret detail"), 502, "bad_gateway"),
            (Status::unknown("secret detail"), 502, "bad_gateway"),
            (Status::unimplemented("secret detail"), 502, "bad_gateway"),
        ];
        for (status, http, code) in cases {
            let response = ApiError::from(status).into_response();
            assert_eq!(response.status().as_u16(), http, "{code}");
            let json = body(response).await;
            assert_eq!(json["error"], code);
            assert!(json["error_description"].is_string());
            assert!(!json.to_string().contains("secret detail"));
        }
    }

    #[tokio::test]
    async fn a_token_refused_upstream_as_stale_says_so() {
        let status = Status::from(AuthError::Unauthenticated(RejectReason::ClaimsChanged));
        let response = ApiError::from(status).into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(
            response.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with(r#"Bearer error="invalid_token""#)
        );
        let json = body(response).await;
        assert_eq!(json["error"], "invalid_token");
        assert_eq!(json["error_description"], authn::CLAIMS_CHANGED_DESCRIPTION);
    }

    #[tokio::test]
    async fn unauthenticated_carries_a_bearer_challenge() {
        let response = ApiError::from(Status::unauthenticated("x")).into_response();
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer error="invalid_token""#
        );
    }

    #[tokio::test]
    async fn insufficient_scope_names_the_scope() {
        let response = ApiError::from(Status::from(AuthError::Forbidden {
            scope: Scope::OrdersRead,
        }))
        .into_response();
        let challenge = response.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(challenge.contains("insufficient_scope"), "{challenge}");
        assert!(challenge.contains("orders:read"), "{challenge}");
    }

    #[test]
    fn status_matches_the_response() {
        let errors = [
            ApiError::Auth(AuthError::Unauthenticated(RejectReason::Expired)),
            ApiError::Auth(AuthError::Unauthenticated(RejectReason::Missing)),
            ApiError::Auth(AuthError::Forbidden {
                scope: Scope::OrdersRead,
            }),
            ApiError::Auth(AuthError::Unavailable),
            ApiError::PayloadTooLarge,
            ApiError::UnsupportedMediaType,
            ApiError::GatewayTimeout,
            ApiError::Internal("x".into()),
        ];
        for error in errors {
            let status = error.status();
            assert_eq!(error.into_response().status(), status);
        }
    }
}
