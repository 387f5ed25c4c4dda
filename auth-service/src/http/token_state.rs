//! What the issuer knows about a token it issued: `POST /oauth/revoke` (RFC 7009) and
//! `POST /oauth/introspect` (RFC 7662). Both take a form like the token endpoint, with the same
//! client authentication.
//!
//! - Revocation ends the session behind the token: a refresh token's family, or an access
//!   token's `sid`. A token issued to another client than the caller's, an unknown, invalid or
//!   expired token all get 200 and change nothing (RFC 7009 §2.2: the caller learns nothing). A
//!   valid service token (no session) gets `unsupported_token_type`: there is nothing to revoke
//!   but its expiry. A first-party caller (no client credentials) may revoke first-party tokens:
//!   holding the token is the proof.
//! - Introspection requires an authenticated client. An access token is active if it verifies and
//!   its session is active; a refresh token if it is the current (unrotated, unexpired) token of
//!   an active session. Anything else is `{"active": false}`.
//!
//! The two token kinds are told apart by their form (a JWS has three dot-separated parts, a
//! refresh token none), so `token_type_hint` is accepted and not needed.

use authn::claims::Audience;
use authn::{AuthError, Principal};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use http::StatusCode;
use serde::Serialize;

use super::error::{TokenError, no_store};
use super::oauth::{authenticate_client, client_credentials, read_form, required};
use super::well_known;
use crate::db;
use crate::sessions::EndReason;
use crate::sessions::refresh_tokens::{self, TokenInfo};
use crate::state::AppState;

/// Longest token looked at: ours are well under 2 KB.
const MAX_TOKEN_LEN: usize = 8 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(well_known::REVOKE_PATH, post(revoke))
        .route(well_known::INTROSPECT_PATH, post(introspect))
}

/// A token found by its form and verified or looked up.
enum Found {
    Access(Principal),
    Refresh(Box<TokenInfo>),
    /// Unknown, malformed, badly signed, expired, or of an ended session.
    Nothing,
}

async fn find(state: &AppState, token: &str) -> Result<Found, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Ok(Found::Nothing);
    }
    if token.split('.').count() == 3 {
        return match state.verifier.verify(token).await {
            Ok(principal) => Ok(Found::Access(principal)),
            Err(AuthError::Unavailable) => Err(TokenError::internal(
                "the session store cannot be reached to check the token",
            )),
            Err(_) => Ok(Found::Nothing),
        };
    }
    Ok(refresh_tokens::find(&state.pool, token)
        .await
        .map_err(TokenError::internal)?
        .map_or(Found::Nothing, |info| Found::Refresh(Box::new(info))))
}

/// A revocation or introspection request, its client authenticated.
struct TokenRequest {
    token: String,
    /// The authenticated client; `None` when the request carried no client credentials.
    client_id: Option<String>,
}

async fn read(state: &AppState, request: Request) -> Result<TokenRequest, TokenError> {
    let (parts, form) = read_form(request).await?;
    let credentials = client_credentials(&parts.headers, &form)?;
    let client = authenticate_client(state, &parts, &credentials).await?;
    let token = required(&form, "token", "token is required")?.to_owned();
    Ok(TokenRequest {
        token,
        client_id: client.map(|c| c.id),
    })
}

#[tracing::instrument(name = "oauth.revoke", skip_all)]
async fn revoke(State(state): State<AppState>, request: Request) -> Response {
    match handle_revoke(&state, request).await {
        Ok(()) => {
            let mut response = StatusCode::OK.into_response();
            no_store(&mut response);
            response
        }
        Err(e) => e.into_response(),
    }
}

async fn handle_revoke(state: &AppState, request: Request) -> Result<(), TokenError> {
    let TokenRequest { token, client_id } = read(state, request).await?;
    let (sid, issued_to) = match find(state, &token).await? {
        Found::Nothing => {
            tracing::info!("revocation of an unknown or invalid token: nothing to do");
            return Ok(());
        }
        Found::Refresh(info) => {
            let info = *info;
            (info.session.id, info.session.client_id)
        }
        Found::Access(principal) => match principal.sid() {
            Some(sid) => (sid.to_owned(), principal.client_id().map(str::to_owned)),
            None => return Err(TokenError::UnsupportedTokenType),
        },
    };
    if issued_to != client_id {
        tracing::info!("revocation of a token issued to another client: ignored");
        return Ok(());
    }
    let ended = state
        .sessions
        .end(&sid, EndReason::Revoked)
        .await
        .map_err(TokenError::internal)?;
    tracing::info!(ended, "token revoked: its session is over");
    Ok(())
}

/// An RFC 7662 §2.2 response.
#[derive(Debug, Default, Serialize)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

#[tracing::instrument(name = "oauth.introspect", skip_all)]
async fn introspect(State(state): State<AppState>, request: Request) -> Response {
    match handle_introspect(&state, request).await {
        Ok(body) => {
            let mut response = Json(body).into_response();
            no_store(&mut response);
            response
        }
        Err(e) => e.into_response(),
    }
}

async fn handle_introspect(
    state: &AppState,
    request: Request,
) -> Result<Introspection, TokenError> {
    let TokenRequest { token, client_id } = read(state, request).await?;
    if client_id.is_none() {
        return Err(TokenError::InvalidClient {
            description: "client authentication is required",
            basic: false,
        });
    }
    let inactive = Introspection::default();
    match find(state, &token).await? {
        Found::Nothing => Ok(inactive),
        Found::Access(principal) => {
            let claims = principal.claims().clone();
            Ok(Introspection {
                active: true,
                scope: claims.scope,
                client_id: claims.client_id,
                token_type: Some("Bearer"),
                exp: Some(claims.exp),
                iat: Some(claims.iat),
                sub: Some(claims.sub),
                aud: Some(claims.aud),
                iss: Some(claims.iss),
                jti: Some(claims.jti),
                sid: claims.sid,
            })
        }
        Found::Refresh(info) => {
            let current = info.used_at.is_none() && info.expires_at > db::now();
            let active = current
                && state
                    .sessions
                    .is_active(&info.session.id)
                    .await
                    .map_err(TokenError::internal)?;
            if !active {
                return Ok(inactive);
            }
            Ok(Introspection {
                active: true,
                token_type: Some("refresh_token"),
                sub: Some(info.session.user_id),
                exp: Some(info.expires_at),
                client_id: info.session.client_id,
                sid: Some(info.session.id),
                ..inactive
            })
        }
    }
}
