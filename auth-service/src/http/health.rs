//! `GET /healthz` (the process answers), `GET /readyz` (the database and the session store
//! answer), `GET /metrics`.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use http::StatusCode;

use crate::app::AppState;

/// How long `/readyz` waits for the database.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(shared::telemetry::metrics_handler))
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match tokio::time::timeout(READY_TIMEOUT, shared::db::ping(&state.pool)).await {
        Ok(true) => {}
        Ok(false) | Err(_) => {
            tracing::warn!("not ready: the database does not answer");
            return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable");
        }
    }
    match tokio::time::timeout(READY_TIMEOUT, state.sessions.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready"),
        Ok(Err(error)) => {
            tracing::warn!(%error, "not ready: the session store does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "session store unavailable")
        }
        Err(_) => {
            tracing::warn!("not ready: the session store does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "session store unavailable")
        }
    }
}
