//! `GET /healthz` (the process answers), `GET /readyz` (not shutting down, and the database and
//! the session store answer). `/metrics` has a listener of its own (`AUTH_METRICS_ADDR`).

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use http::StatusCode;
use serde_json::json;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: not shutting down (after SIGTERM it answers 503 at once, while the listeners keep
/// serving for `AUTH_SHUTDOWN_DELAY`), and the database and the session store ready as of the
/// last background check (`platform::readiness`: every second, 500 ms at most, unready after
/// three failures in a row). It never waits on a dependency, so it answers within any probe
/// timeout, and a blip of a second or two does not take every replica out at once.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if !state.lifecycle.is_serving() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "shutting_down" })),
        );
    }
    let database = state.readiness.is_dependency_ready("database");
    // The SQL session store is the database, checked once.
    let session_store = match state.sessions.backend() {
        "sql" => database,
        _ => state.readiness.is_dependency_ready("session_store"),
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
