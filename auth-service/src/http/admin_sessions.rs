//! Administration of sessions: their counts, store-wide (`sessions::stats`).
//!
//! | route | scope | does |
//! | --- | --- | --- |
//! | `GET /v1/admin/sessions/stats` | `users:admin` | active sessions and users, by client, by UTC day begun |
//!
//! Role `admin` and the `users:admin` scope, like the users' routes: sessions are the users'.
//! Each request takes a fresh snapshot from the store (what every replica would answer); the
//! gauges `auth_sessions_active` and `auth_users_active` are the periodic copy of it.

use authn::{Principal, Scope};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::admin::require_admin;
use super::error::{ApiError, no_store};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/admin/sessions/stats", get(stats))
}

/// The snapshot (200), as [`crate::sessions::SessionStats`] serializes it.
#[tracing::instrument(name = "admin.session_stats", skip_all, fields(admin = principal.sub()))]
async fn stats(State(state): State<AppState>, principal: Principal) -> Result<Response, ApiError> {
    require_admin(&principal, Scope::UsersAdmin)?;
    let stats = state
        .sessions
        .stats(crate::db::now())
        .await
        .map_err(ApiError::internal)?;
    let mut response = Json(stats).into_response();
    no_store(&mut response);
    Ok(response)
}
