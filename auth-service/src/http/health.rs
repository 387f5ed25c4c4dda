//! `GET /healthz` (the process answers), `GET /readyz` (not shutting down, and the database and
//! the session store answer). `/metrics` has a listener of its own (`AUTH_METRICS_ADDR`).

use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use http::StatusCode;
use serde_json::json;

use crate::state::AppState;

/// How long `/readyz` waits for the database, then for the session store.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: not shutting down (after SIGTERM it answers 503 at once, while the listeners keep
/// serving for `AUTH_SHUTDOWN_DELAY`), the database answers and the session store answers. A
/// lost database connection makes it fail until the pool reconnects, which it does by itself on
/// the next use.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if !state.lifecycle.is_serving() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "shutting_down" })),
        );
    }
    let database = matches!(
        tokio::time::timeout(READY_TIMEOUT, platform::db::ping(&state.pool)).await,
        Ok(true)
    );
    if !database {
        tracing::warn!("not ready: the database does not answer");
    }
    let session_store = match tokio::time::timeout(READY_TIMEOUT, state.sessions.ping()).await {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::warn!(%error, "not ready: the session store does not answer");
            false
        }
        Err(_) => {
            tracing::warn!("not ready: the session store does not answer in time");
            false
        }
    };
    let status = if database && session_store {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if status == StatusCode::OK { "ready" } else { "not_ready" },
        "checks": { "database": database, "session_store": session_store },
    });
    (status, Json(body))
}
