//! What the OAuth endpoints (`/oauth/token`, `/oauth/revoke`, `/oauth/introspect`) share: the
//! form body, the client credentials and the client authentication, each refusal in the
//! RFC 6749 §5.2 shape ([`TokenError`]).
//!
//! Client authentication, in this order: the client id is looked up; a secret Argon2 accepted
//! for it within the last minute is accepted at once (an HMAC, no Argon2, no throttle: it is
//! exactly right); otherwise the client-authentication throttle reserves the attempt *before*
//! Argon2 (per client id and client address, [`crate::throttle`]) or refuses it unchecked with
//! 429, the same for a registered and an unknown id; then Argon2 decides, and the throttle
//! learns the outcome. A full Argon2 queue answers 503 at once.

use std::error::Error as _;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use http::HeaderMap;
use http::request::Parts;

use super::error::TokenError;
use super::form::{self, ClientCredentials, CredentialsError, Form, FormError};
use crate::clients::{Client, Presented};
use crate::passwords::{PasswordError, Priority};
use crate::scope::ScopeSet;
use crate::state::AppState;
use crate::throttle::{Attempt, Scope};
use crate::users::LookupError;

/// Largest accepted token request body. Real requests are a few hundred bytes.
pub const TOKEN_BODY_LIMIT: usize = 16 * 1024;

/// Reads a form-encoded request (the token, revocation and introspection endpoints).
pub(super) async fn read_form(request: Request) -> Result<(Parts, Form), TokenError> {
    let (parts, body) = request.into_parts();
    if !form::is_form_content_type(&parts.headers) {
        return Err(TokenError::InvalidRequest(
            "Content-Type must be application/x-www-form-urlencoded",
        ));
    }
    let body = read_body(body).await?;
    let form = Form::parse(&body).map_err(|e| {
        TokenError::InvalidRequest(match e {
            FormError::InvalidUtf8 => "the request body is not valid UTF-8",
            FormError::InvalidEncoding => "a parameter is not valid percent-encoded UTF-8",
            FormError::Duplicate => "a parameter is repeated",
        })
    })?;
    Ok((parts, form))
}

async fn read_body(body: Body) -> Result<Bytes, TokenError> {
    axum::body::to_bytes(body, TOKEN_BODY_LIMIT)
        .await
        .map_err(|e| {
            let mut source = e.source();
            while let Some(err) = source {
                if err.is::<http_body_util::LengthLimitError>() {
                    return TokenError::BodyTooLarge;
                }
                source = err.source();
            }
            TokenError::InvalidRequest("the request body could not be read")
        })
}

/// A required parameter, `invalid_request` with `missing` when it is absent (or empty).
pub(super) fn required<'f>(
    form: &'f Form,
    name: &str,
    missing: &'static str,
) -> Result<&'f str, TokenError> {
    form.get(name).ok_or(TokenError::InvalidRequest(missing))
}

/// The `scope` parameter, if any.
pub(super) fn requested_scope(form: &Form) -> Result<Option<ScopeSet>, TokenError> {
    form.get("scope")
        .map(ScopeSet::parse)
        .transpose()
        .map_err(|_| TokenError::InvalidScope("the scope parameter is malformed"))
}

pub(super) fn client_credentials(
    headers: &HeaderMap,
    form: &Form,
) -> Result<ClientCredentials, TokenError> {
    form::client_credentials(headers, form).map_err(|e| match e {
        CredentialsError::MalformedBasic => TokenError::InvalidClient {
            description: "malformed HTTP Basic client credentials",
            basic: true,
        },
        CredentialsError::UnsupportedScheme => TokenError::InvalidClient {
            description: "clients authenticate with HTTP Basic or client_secret_post",
            basic: true,
        },
        CredentialsError::Conflict(description) => TokenError::InvalidRequest(description),
    })
}

/// The authenticated client, `None` when the request carries no client credentials. `parts`
/// name the client's address (see `AUTH_TRUSTED_PROXIES`) for the throttle.
pub(super) async fn authenticate_client(
    state: &AppState,
    parts: &Parts,
    credentials: &ClientCredentials,
) -> Result<Option<Client>, TokenError> {
    let (id, secret) = match credentials {
        ClientCredentials::None => return Ok(None),
        // An id alone identifies a public client (RFC 6749 §2.3: it has no secret; the code
        // flow's PKCE proves it). For a confidential or unknown one it proves nothing.
        ClientCredentials::IdOnly(id) => {
            let presented = Presented::look_up(&state.clients, id)
                .await
                .map_err(lookup_failed)?;
            return match presented.client() {
                Some(client) if client.public => Ok(Some(client.clone())),
                _ => Err(TokenError::InvalidClient {
                    description: "client authentication failed",
                    basic: false,
                }),
            };
        }
        ClientCredentials::Basic { id, secret } | ClientCredentials::Post { id, secret } => {
            (id, secret)
        }
    };
    let failed = TokenError::InvalidClient {
        description: "client authentication failed",
        basic: credentials.used_basic(),
    };
    let presented = Presented::look_up(&state.clients, id)
        .await
        .map_err(lookup_failed)?;
    if let Some(client) = presented.remembered(&state.passwords, secret) {
        return Ok(Some(client));
    }
    // Before Argon2: a refused attempt runs none, and is answered alike for every client id.
    let client_ip = state.trusted_proxies.client_ip_of(parts);
    let attempt = state
        .client_throttle
        .begin(id, client_ip)
        .await
        .map_err(|refused| TokenError::ClientThrottled {
            retry_after: refused.retry_after,
        })?;
    let registered = presented.client().map(|client| client.id.clone());
    // An error here drops `attempt`: counted neither as a failure nor as a success.
    let verified = presented
        .verify(&state.passwords, secret, priority_of(&attempt))
        .await
        .map_err(lookup_failed);
    if matches!(verified, Err(TokenError::Busy)) {
        state
            .client_throttle
            .shed(client_ip, crate::passwords::BUSY_RETRY_AFTER);
    }
    match verified? {
        Some(client) => {
            state
                .client_throttle
                .succeeded(id, client_ip, attempt)
                .await;
            Ok(Some(client))
        }
        None => {
            client_auth_failed(attempt, registered.as_deref()).await;
            Err(failed)
        }
    }
}

/// Records a failed client authentication with the throttle. A lock it starts is an audit
/// event naming the client id only if it is registered (an unknown one is whatever the caller
/// sent), and the address.
async fn client_auth_failed(attempt: Attempt, registered: Option<&str>) {
    let locked = attempt.failed().await;
    if let Some((scope, failures)) = locked.subject {
        tracing::warn!(
            audit = "client_auth_locked",
            scope = scope.as_str(),
            client_id = registered,
            failures,
            locked_for = ?locked.duration,
            "client authentications of a client id locked after repeated failures{}",
            if scope == Scope::Recognised { " at one of its recognised addresses" } else { "" }
        );
    }
    if let Some((client_ip, failures)) = locked.address {
        tracing::warn!(
            audit = "client_auth_locked",
            scope = "address",
            %client_ip,
            failures,
            locked_for = ?locked.duration,
            "client authentications from a client address locked after repeated failures"
        );
    }
}

/// Whether an attempt may wait for Argon2: not once it is suspect (see
/// [`Attempt::is_suspect`]).
pub(super) fn priority_of(attempt: &Attempt) -> Priority {
    if attempt.is_suspect() {
        Priority::Suspect
    } else {
        Priority::Clean
    }
}

/// A failed lookup or verification: 503 when Argon2's queue is full, else a 500.
fn lookup_failed(error: LookupError) -> TokenError {
    match error {
        LookupError::Password(PasswordError::Busy) => TokenError::Busy,
        other => TokenError::internal(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_oversized_body_is_too_large_not_unreadable() {
        let body = Body::from(vec![b'x'; TOKEN_BODY_LIMIT + 1]);
        assert!(matches!(
            read_body(body).await,
            Err(TokenError::BodyTooLarge)
        ));
        let body = Body::from(vec![b'x'; TOKEN_BODY_LIMIT]);
        assert_eq!(read_body(body).await.expect("fits").len(), TOKEN_BODY_LIMIT);
    }
}
