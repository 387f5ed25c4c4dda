//! The bearer's own sessions: `GET /v1/sessions`, `DELETE /v1/sessions/{sid}`, `POST /v1/logout`
//! and `POST /v1/logout-all`.
//!
//! Callers present an access token of this issuer; it is verified `stateful`ly against the
//! session store, so the token of an ended session is refused (401) at once. These routes are for
//! users: a token without a session (a service token) is refused with 403.

use authn::Principal;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Serialize;

use super::error::{ApiError, no_store};
use crate::sessions::{EndReason, Session};
use crate::state::AppState;

pub const SESSIONS_PATH: &str = "/v1/sessions";
pub const LOGOUT_PATH: &str = "/v1/logout";
pub const LOGOUT_ALL_PATH: &str = "/v1/logout-all";

/// Longest `sid` looked up; ours are 22 characters.
const MAX_SID_LEN: usize = 128;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(SESSIONS_PATH, get(list))
        .route(&format!("{SESSIONS_PATH}/{{sid}}"), delete(end_one))
        .route(LOGOUT_PATH, post(logout))
        .route(LOGOUT_ALL_PATH, post(logout_all))
}

/// One entry of `GET /v1/sessions`. Times in Unix seconds.
#[derive(Debug, Serialize)]
pub struct SessionView {
    pub id: String,
    pub client_id: Option<String>,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// The session of the token that asked.
    pub current: bool,
}

impl SessionView {
    fn new(session: Session, current_sid: &str) -> Self {
        Self {
            current: session.id == current_sid,
            id: session.id,
            client_id: session.client_id,
            created_at: session.created_at,
            last_seen_at: session.last_seen_at,
            expires_at: session.expires_at,
            user_agent: session.user_agent,
            ip: session.ip,
        }
    }
}

/// The caller's session id: only user tokens have one.
fn user_session(principal: &Principal) -> Result<&str, ApiError> {
    principal
        .sid()
        .ok_or(ApiError::Forbidden("a user's access token is required"))
}

fn no_content() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    no_store(&mut response);
    response
}

#[tracing::instrument(name = "sessions.list", skip_all)]
async fn list(State(state): State<AppState>, principal: Principal) -> Result<Response, ApiError> {
    let current = user_session(&principal)?;
    let mut sessions = state
        .sessions
        .list_active_for_user(principal.sub())
        .await
        .map_err(ApiError::internal)?;
    // Newest first.
    sessions.reverse();
    let views: Vec<SessionView> = sessions
        .into_iter()
        .map(|s| SessionView::new(s, current))
        .collect();
    let mut response = Json(views).into_response();
    no_store(&mut response);
    Ok(response)
}

#[tracing::instrument(name = "sessions.delete", skip_all)]
async fn end_one(
    State(state): State<AppState>,
    principal: Principal,
    Path(sid): Path<String>,
) -> Result<Response, ApiError> {
    user_session(&principal)?;
    const NOT_FOUND: ApiError = ApiError::NotFound("no such session");
    if sid.len() > MAX_SID_LEN {
        return Err(NOT_FOUND);
    }
    let session = state
        .sessions
        .get(&sid)
        .await
        .map_err(ApiError::internal)?
        .ok_or(NOT_FOUND)?;
    // Another user's session is as unknown as a session that does not exist.
    if !principal.owns(&session.user_id) {
        return Err(NOT_FOUND);
    }
    state
        .sessions
        .end(&sid, EndReason::Deleted)
        .await
        .map_err(ApiError::internal)?;
    Ok(no_content())
}

#[tracing::instrument(name = "sessions.logout", skip_all)]
async fn logout(State(state): State<AppState>, principal: Principal) -> Result<Response, ApiError> {
    let sid = user_session(&principal)?;
    state
        .sessions
        .end(sid, EndReason::Logout)
        .await
        .map_err(ApiError::internal)?;
    Ok(no_content())
}

#[tracing::instrument(name = "sessions.logout_all", skip_all)]
async fn logout_all(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    user_session(&principal)?;
    state
        .sessions
        .end_all_for_user(principal.sub(), EndReason::LogoutAll)
        .await
        .map_err(ApiError::internal)?;
    Ok(no_content())
}
