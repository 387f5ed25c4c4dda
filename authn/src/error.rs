//! The authentication boundary's error, mapped to HTTP and gRPC in one place each.

use crate::scope::Scope;

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
    /// `alg` is not an allowed algorithm, or not the algorithm of the key its `kid` names.
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
    /// The user's roles or scopes changed after the token was issued (`iat` at or before the
    /// change): the session stands, and a refresh gets a token with the new claims.
    ClaimsChanged,
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
            RejectReason::ClaimsChanged => "claims_changed",
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
#[cfg(any(feature = "axum", feature = "tonic"))]
pub(crate) const INVALID_TOKEN_DESCRIPTION: &str =
    "the access token is missing, malformed, expired or revoked";

/// The description of a token refused for [`RejectReason::ClaimsChanged`]: the one refusal
/// whose reason the client is told, because it says what to do (refresh), and says nothing an
/// attacker could use.
pub const CLAIMS_CHANGED_DESCRIPTION: &str = "the user's claims changed; refresh the token";

/// Why a session (or the verifier's own service token) could not be looked up. The request
/// fails closed (503).
#[derive(Debug, Clone, thiserror::Error)]
#[error("session lookup failed: {0}")]
pub struct LookupError(pub String);
