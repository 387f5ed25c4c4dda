//! The authentication boundary's error, mapped to HTTP and gRPC in one place each.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::authz::Scope;

/// Why a token was refused. Recorded in logs and in the `auth_verify_total{outcome}` metric,
/// never told to the caller, who only learns that the token is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// No token in the request.
    Missing,
    /// More than one token in one request (two headers, or a header and a cookie).
    Ambiguous,
    /// Longer than [`crate::jws::MAX_TOKEN_LEN`].
    TooLarge,
    /// Not a compact JWS of three canonical base64url segments with a JSON object header.
    Malformed,
    /// `alg` is not the pinned RS256.
    AlgorithmNotAllowed,
    /// `typ` is not `at+jwt`.
    WrongType,
    /// The header has a `crit` member.
    CriticalHeader,
    /// No `kid`, or one longer than [`crate::jws::MAX_KID_LEN`].
    MissingKid,
    /// No key with this `kid`, even after a refetch.
    UnknownKey,
    BadSignature,
    /// The payload is not a JSON object of correctly typed claims.
    InvalidClaims,
    Expired,
    NotYetValid,
    IssuedInFuture,
    /// `exp - iat` exceeds the policy's maximum lifetime.
    LifetimeTooLong,
    WrongIssuer,
    WrongAudience,
    /// The token's session has ended, its user was disabled or its key revoked.
    Revoked,
}

impl RejectReason {
    /// A stable, low-cardinality label for metrics and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectReason::Missing => "missing",
            RejectReason::Ambiguous => "ambiguous",
            RejectReason::TooLarge => "too_large",
            RejectReason::Malformed => "malformed",
            RejectReason::AlgorithmNotAllowed => "algorithm_not_allowed",
            RejectReason::WrongType => "wrong_type",
            RejectReason::CriticalHeader => "critical_header",
            RejectReason::MissingKid => "missing_kid",
            RejectReason::UnknownKey => "unknown_key",
            RejectReason::BadSignature => "bad_signature",
            RejectReason::InvalidClaims => "invalid_claims",
            RejectReason::Expired => "expired",
            RejectReason::NotYetValid => "not_yet_valid",
            RejectReason::IssuedInFuture => "issued_in_future",
            RejectReason::LifetimeTooLong => "lifetime_too_long",
            RejectReason::WrongIssuer => "wrong_issuer",
            RejectReason::WrongAudience => "wrong_audience",
            RejectReason::Revoked => "revoked",
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Authentication and authorization failures of a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// 401 / `UNAUTHENTICATED`.
    #[error("unauthenticated: {0}")]
    Unauthenticated(RejectReason),
    /// 403 / `PERMISSION_DENIED`: the token is valid but lacks `scope`.
    #[error("insufficient scope: {} required", scope.as_str())]
    Forbidden { scope: Scope },
    /// 403: a state-changing request authenticated by cookie that a browser marks cross-site.
    #[error("cross-site request refused")]
    CrossSite,
    /// 503 / `UNAVAILABLE`: the verifier cannot decide (no usable key set). Never fails open.
    #[error("verifier unavailable")]
    Unavailable,
}

impl From<RejectReason> for AuthError {
    fn from(reason: RejectReason) -> Self {
        AuthError::Unauthenticated(reason)
    }
}

/// The generic description every refused token gets: the reason stays in the logs.
const INVALID_TOKEN_DESCRIPTION: &str =
    "the access token is missing, malformed, expired or revoked";

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let (status, challenge, body) = match self {
            // RFC 6750 §3.1: a request without credentials gets a bare challenge.
            AuthError::Unauthenticated(RejectReason::Missing) => (
                StatusCode::UNAUTHORIZED,
                Some(HeaderValue::from_static("Bearer")),
                serde_json::json!({
                    "error": "missing_token",
                    "error_description": "an access token is required",
                }),
            ),
            AuthError::Unauthenticated(_) => (
                StatusCode::UNAUTHORIZED,
                Some(HeaderValue::from_static(
                    r#"Bearer error="invalid_token", error_description="the access token is invalid""#,
                )),
                serde_json::json!({
                    "error": "invalid_token",
                    "error_description": INVALID_TOKEN_DESCRIPTION,
                }),
            ),
            AuthError::Forbidden { scope } => (
                StatusCode::FORBIDDEN,
                HeaderValue::from_str(&format!(
                    r#"Bearer error="insufficient_scope", scope="{}""#,
                    scope.as_str()
                ))
                .ok(),
                serde_json::json!({
                    "error": "insufficient_scope",
                    "error_description": format!("scope {} is required", scope.as_str()),
                    "scope": scope.as_str(),
                }),
            ),
            AuthError::CrossSite => (
                StatusCode::FORBIDDEN,
                None,
                serde_json::json!({
                    "error": "cross_site_request",
                    "error_description": "cookie-authenticated requests must come from this site",
                }),
            ),
            AuthError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                serde_json::json!({
                    "error": "temporarily_unavailable",
                    "error_description": "tokens cannot be verified right now",
                }),
            ),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(challenge) = challenge {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

impl From<AuthError> for tonic::Status {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Unauthenticated(RejectReason::Missing) => {
                tonic::Status::unauthenticated("an access token is required")
            }
            AuthError::Unauthenticated(_) => {
                tonic::Status::unauthenticated(INVALID_TOKEN_DESCRIPTION)
            }
            AuthError::Forbidden { scope } => {
                tonic::Status::permission_denied(format!("scope {} is required", scope.as_str()))
            }
            AuthError::CrossSite => tonic::Status::permission_denied("cross-site request refused"),
            AuthError::Unavailable => {
                tonic::Status::unavailable("tokens cannot be verified right now")
            }
        }
    }
}
