//! The grants of the token endpoint (RFC 6749), apart from HTTP: what each one checks, records
//! and issues once its parameters are read and its client is authenticated. `POST /oauth/token`
//! (`crate::http::token`) parses the form, authenticates the client, dispatches to
//! [`authorization_code`], [`password`], [`refresh`] or [`client_credentials`], and writes
//! the answer.

pub mod authorization_code;
pub mod client_credentials;
pub mod password;
pub mod refresh;

use std::time::Duration;

use crate::scope::ScopeSet;
use crate::tokens::AccessToken;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The grants this issuer supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    AuthorizationCode,
    Password,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub const ALL: [GrantType; 4] = [
        GrantType::AuthorizationCode,
        GrantType::Password,
        GrantType::RefreshToken,
        GrantType::ClientCredentials,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::Password => "password",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
        }
    }

    pub fn parse(grant_type: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == grant_type)
    }
}

/// What a grant issued: an access token, and a refresh token for a user's session.
#[derive(Debug)]
pub struct Issued {
    pub access: AccessToken,
    pub refresh_token: Option<String>,
    /// The ID token of an `authorization_code` grant with the `openid` scope.
    pub id_token: Option<String>,
}

/// Why a grant refused, once its request was well-formed and its client authenticated.
/// Descriptions are static: nothing the client sent is echoed back. The token endpoint answers
/// each in the RFC 6749 §5.2 shape.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// `invalid_grant`: wrong credentials, an unusable refresh token, another client's token.
    #[error("invalid_grant: {0}")]
    InvalidGrant(&'static str),
    /// A password login refused unchecked by the login throttle.
    #[error("invalid_grant: login throttled")]
    LoginThrottled { retry_after: Duration },
    /// Argon2's waiting room is full: try again in a moment.
    #[error("too many credential checks waiting")]
    Busy,
    /// `invalid_scope`: more than the user, the session or the client may have.
    #[error("invalid_scope: {0}")]
    InvalidScope(&'static str),
    /// Anything on our side.
    #[error("internal error: {0}")]
    Internal(#[source] BoxError),
}

impl GrantError {
    pub fn internal(e: impl Into<BoxError>) -> Self {
        Self::Internal(e.into())
    }

    /// A failed credentials check: [`GrantError::Busy`] when Argon2's queue is full.
    pub fn lookup(error: crate::users::LookupError) -> Self {
        match error {
            crate::users::LookupError::Password(crate::passwords::PasswordError::Busy) => {
                Self::Busy
            }
            other => Self::internal(other),
        }
    }
}

/// The scope granted for `requested` out of `allowed`: all of it when nothing was asked for,
/// or what was asked if `allowed` covers it (else `invalid_scope` with `exceeds`).
fn granted_scope(
    requested: Option<ScopeSet>,
    allowed: ScopeSet,
    exceeds: &'static str,
) -> Result<ScopeSet, GrantError> {
    match requested {
        Some(requested) if requested.is_subset(&allowed) => Ok(requested),
        Some(_) => Err(GrantError::InvalidScope(exceeds)),
        None => Ok(allowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_types_round_trip() {
        for grant in GrantType::ALL {
            assert_eq!(GrantType::parse(grant.as_str()), Some(grant));
        }
        assert_eq!(GrantType::parse("implicit"), None);
        assert_eq!(GrantType::parse("PASSWORD"), None);
    }
}
