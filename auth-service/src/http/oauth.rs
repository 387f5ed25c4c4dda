//! What the OAuth endpoints (`/oauth/token`, `/oauth/revoke`, `/oauth/introspect`) share: the
//! form body, the client credentials and the client authentication, each refusal in the
//! RFC 6749 §5.2 shape ([`TokenError`]).

use std::error::Error as _;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use http::HeaderMap;
use http::request::Parts;

use super::error::TokenError;
use super::form::{self, ClientCredentials, CredentialsError, Form, FormError};
use crate::clients::{self, Client};
use crate::scope::ScopeSet;
use crate::state::AppState;

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

/// The authenticated client, `None` when the request carries no client credentials.
pub(super) async fn authenticate_client(
    state: &AppState,
    credentials: &ClientCredentials,
) -> Result<Option<Client>, TokenError> {
    let (id, secret) = match credentials {
        ClientCredentials::None => return Ok(None),
        // Every registered client is confidential: an id alone proves nothing.
        ClientCredentials::IdOnly(_) => {
            return Err(TokenError::InvalidClient {
                description: "client authentication failed",
                basic: false,
            });
        }
        ClientCredentials::Basic { id, secret } | ClientCredentials::Post { id, secret } => {
            (id, secret)
        }
    };
    clients::authenticate(&state.clients, &state.passwords, id, secret)
        .await
        .map_err(TokenError::internal)?
        .map(Some)
        .ok_or(TokenError::InvalidClient {
            description: "client authentication failed",
            basic: credentials.used_basic(),
        })
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
