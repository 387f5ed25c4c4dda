//! `POST /oauth/token` (RFC 6749): parses the form, authenticates the client, hands the request
//! to its grant ([`crate::grants`]: `authorization_code`, `password`, `refresh_token`,
//! `client_credentials`) and writes the answer.
//!
//! `AUTH_PASSWORD_GRANT=false` turns the `password` grant off: it is then answered
//! `unsupported_grant_type` (RFC 6749 §5.2: the server does not support the grant type), the
//! same for every client, and discovery no longer lists it.

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;

use super::error::{TokenError, no_store};
use super::form::ClientCredentials;
use super::oauth::{authenticate_client, client_credentials, read_form, requested_scope, required};
use crate::grants::authorization_code::CodeRequest;
use crate::grants::password::{ClientMeta, PasswordRequest};
use crate::grants::refresh::RefreshRequest;
use crate::grants::{self, GrantType, Issued};
use crate::passwords::SecretString;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route(super::well_known::TOKEN_PATH, post(token))
}

/// RFC 6749 §5.1.
#[derive(Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// OpenID Connect Core §3.1.3.3.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

impl From<Issued> for TokenResponse {
    fn from(issued: Issued) -> Self {
        Self {
            access_token: issued.access.token,
            token_type: "Bearer",
            expires_in: issued.access.expires_in,
            scope: issued.access.claims.scope,
            refresh_token: issued.refresh_token,
            id_token: issued.id_token,
        }
    }
}

#[tracing::instrument(name = "oauth.token", skip_all, fields(grant_type = tracing::field::Empty))]
async fn token(State(state): State<AppState>, request: Request) -> Response {
    match handle(&state, request).await {
        Ok((grant, issued)) => {
            metrics::counter!("auth_tokens_issued_total", "grant" => grant.as_str()).increment(1);
            let mut response = Json(TokenResponse::from(issued)).into_response();
            no_store(&mut response);
            response
        }
        Err(e) => e.into_response(),
    }
}

/// Reads the grant's parameters (a missing one first, then a malformed `scope`) before it
/// authenticates the client, so a request wrong in several ways always gets the same error.
async fn handle(state: &AppState, request: Request) -> Result<(GrantType, Issued), TokenError> {
    let (parts, form) = read_form(request).await?;
    let grant = required(&form, "grant_type", "grant_type is required")?;
    let grant = GrantType::parse(grant)
        .filter(|grant| *grant != GrantType::Password || state.password_grant)
        .ok_or(TokenError::UnsupportedGrantType)?;
    tracing::Span::current().record("grant_type", grant.as_str());
    let credentials = client_credentials(&parts.headers, &form)?;
    let issued = match grant {
        GrantType::AuthorizationCode => {
            let code = required(&form, "code", "code is required")?;
            let redirect_uri = required(&form, "redirect_uri", "redirect_uri is required")?;
            let code_verifier =
                required(&form, "code_verifier", "code_verifier is required (PKCE)")?;
            let client = authenticate_client(state, &parts, &credentials)
                .await?
                .ok_or(TokenError::InvalidClient {
                    description: "client authentication is required",
                    basic: false,
                })?;
            let request = CodeRequest {
                code,
                redirect_uri,
                code_verifier,
                client,
            };
            grants::authorization_code::grant(state, request).await?
        }
        GrantType::Password => {
            let client_ip = state.trusted_proxies.client_ip_of(&parts);
            let username = required(&form, "username", "username is required")?;
            let password = SecretString::from(required(&form, "password", "password is required")?);
            let scope = requested_scope(&form)?;
            // The login throttle first: a throttled login costs no Argon2, not even the
            // client's. A failed client authentication then drops (releases) the reservation.
            let attempt = grants::password::reserve(state, username, client_ip).await?;
            let client = authenticate_client(state, &parts, &credentials).await?;
            let request = PasswordRequest {
                username,
                password,
                scope,
                client,
                client_ip,
                meta: ClientMeta::of(&parts, client_ip),
                attempt,
            };
            grants::password::grant(state, request).await?
        }
        GrantType::RefreshToken => {
            let refresh_token = required(&form, "refresh_token", "refresh_token is required")?;
            let scope = requested_scope(&form)?;
            let client = authenticate_client(state, &parts, &credentials).await?;
            let request = RefreshRequest {
                refresh_token,
                scope,
                client,
            };
            grants::refresh::grant(state, request).await?
        }
        GrantType::ClientCredentials => {
            let scope = requested_scope(&form)?;
            let required_client = TokenError::InvalidClient {
                description: "client authentication is required",
                basic: false,
            };
            if matches!(credentials, ClientCredentials::None) {
                return Err(required_client);
            }
            let client = authenticate_client(state, &parts, &credentials)
                .await?
                .ok_or(required_client)?;
            if client.public {
                return Err(TokenError::UnauthorizedClient(
                    "a public client cannot use client_credentials",
                ));
            }
            grants::client_credentials::grant(state, client, scope)?
        }
    };
    Ok((grant, issued))
}
