//! `GET /userinfo` (OpenID Connect Core §5.3): the claims of the bearer's user. The access token
//! is verified like on every other route of the issuer (its own key, the session checked), and
//! must be a user's token with the `openid` scope.

use authn::Principal;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::header::WWW_AUTHENTICATE;
use http::{HeaderValue, StatusCode};
use serde::Serialize;

use super::error::{ApiError, no_store};
use crate::oidc::OPENID;
use crate::state::AppState;
use crate::users;

pub const USERINFO_PATH: &str = "/userinfo";

pub fn router() -> Router<AppState> {
    Router::new().route(USERINFO_PATH, get(userinfo))
}

/// The answer of `GET /userinfo`.
#[derive(Debug, Serialize)]
pub struct UserInfo {
    pub sub: String,
    pub preferred_username: String,
    pub roles: Vec<String>,
    /// The scope of the presented access token.
    pub scope: String,
}

/// RFC 6750 §3.1: the token is valid but does not carry `openid`.
fn insufficient_scope() -> Response {
    let mut response = (
        StatusCode::FORBIDDEN,
        [(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer error="insufficient_scope", scope="openid""#),
        )],
        Json(serde_json::json!({
            "error": "insufficient_scope",
            "error_description": "the access token lacks the openid scope",
        })),
    )
        .into_response();
    no_store(&mut response);
    response
}

#[tracing::instrument(name = "oidc.userinfo", skip_all)]
async fn userinfo(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    if principal.sid().is_none() {
        return Err(ApiError::Forbidden("a user's access token is required"));
    }
    if !principal.scopes().any(|s| s == OPENID) {
        return Ok(insufficient_scope());
    }
    let user = users::find_by_id(&state.pool, principal.sub())
        .await
        .map_err(ApiError::internal)?
        .filter(|user| !user.is_disabled())
        .ok_or(ApiError::Forbidden("the user is no longer active"))?;
    let mut response = Json(UserInfo {
        sub: user.id,
        preferred_username: user.username,
        roles: principal.roles().map(str::to_owned).collect(),
        scope: principal.scopes().collect::<Vec<_>>().join(" "),
    })
    .into_response();
    no_store(&mut response);
    Ok(response)
}
