//! Access tokens: the claims of each grant, signed with the key that is active at the time.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use authn::claims::{AccessClaims, Audience};
use authn::sign::{SignError, Signer};

use crate::keys::ActiveSigner;
use crate::scope::{self, GrantsTooLarge, MAX_ACCESS_TOKEN_BYTES, ScopeSet};

/// Why no token was issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    Sign(#[from] SignError),
    /// The subject holds more roles or scopes than a token may carry: stored before the bound
    /// existed, since it is checked whenever roles and scopes are written.
    #[error("the subject's grants exceed what a token may carry: {0}")]
    TooManyGrants(#[from] GrantsTooLarge),
    /// The signed token is longer than [`MAX_ACCESS_TOKEN_BYTES`] (an issuer, audience or
    /// client id much longer than usual, with grants near their bound).
    #[error("the access token would take {0} bytes, at most {MAX_ACCESS_TOKEN_BYTES}")]
    TooLarge(usize),
}

/// Signs access tokens for one issuer and audience.
pub struct TokenIssuer {
    signer: ActiveSigner,
    issuer: String,
    audience: String,
    access_ttl_secs: i64,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("kid", &self.signer.get().kid())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("access_ttl_secs", &self.access_ttl_secs)
            .finish()
    }
}

/// Who a token is for and what it allows.
#[derive(Clone, Debug)]
pub struct Grant {
    /// User id, or client id for `client_credentials`.
    pub subject: String,
    pub scope: ScopeSet,
    pub roles: Vec<String>,
    /// The session of a user token.
    pub sid: Option<String>,
    /// The authenticated client, if any.
    pub client_id: Option<String>,
}

/// A signed access token.
#[derive(Clone)]
pub struct AccessToken {
    pub token: String,
    /// Seconds until `exp`: the `expires_in` of the token response.
    pub expires_in: i64,
    pub claims: AccessClaims,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("jti", &self.claims.jti)
            .field("sub", &self.claims.sub)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    pub fn new(
        signer: ActiveSigner,
        issuer: impl Into<String>,
        audience: impl Into<String>,
        access_ttl: Duration,
    ) -> Self {
        Self {
            signer,
            issuer: issuer.into(),
            audience: audience.into(),
            access_ttl_secs: i64::try_from(access_ttl.as_secs()).unwrap_or(i64::MAX),
        }
    }

    /// The key that signs now (it changes when keys rotate).
    pub fn signer(&self) -> Arc<Signer> {
        self.signer.get()
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The claims of a token issued at `now`: `nbf = iat = now`, `exp = now + ttl`, a random
    /// UUID v4 `jti`.
    pub fn claims(&self, grant: Grant, now: i64) -> AccessClaims {
        AccessClaims {
            iss: self.issuer.clone(),
            sub: grant.subject,
            aud: Audience::One(self.audience.clone()),
            exp: now.saturating_add(self.access_ttl_secs),
            iat: now,
            nbf: Some(now),
            jti: uuid::Uuid::new_v4().to_string(),
            scope: grant.scope.to_claim(),
            roles: grant.roles,
            sid: grant.sid,
            client_id: grant.client_id,
        }
    }

    /// Builds and signs the access token of `grant`. Refuses grants over the bounds of
    /// [`scope::check_grants`] and, whatever they hold, a token over [`MAX_ACCESS_TOKEN_BYTES`]:
    /// the issuer never hands out a token a browser would drop.
    pub fn issue(&self, grant: Grant, now: i64) -> Result<AccessToken, IssueError> {
        scope::check_grants(&grant.roles, &grant.scope)?;
        let claims = self.claims(grant, now);
        let token = self.signer.get().sign(&claims)?;
        if token.len() > MAX_ACCESS_TOKEN_BYTES {
            return Err(IssueError::TooLarge(token.len()));
        }
        Ok(AccessToken {
            token,
            expires_in: self.access_ttl_secs,
            claims,
        })
    }
}
