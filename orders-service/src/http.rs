//! The operations listener: `/healthz`, `/readyz`, `/metrics`.

use std::time::Duration;

use authn::Verifier;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use platform::shutdown::Lifecycle;
use serde_json::json;

use crate::repo::OrderRepository;

/// How long `/readyz` waits for the database before calling it down.
const DATABASE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the probes look at.
#[derive(Clone)]
pub struct OpsState {
    pub repo: OrderRepository,
    pub verifier: Verifier,
    pub lifecycle: Lifecycle,
}

pub fn router(state: OpsState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(platform::telemetry::metrics_handler))
        .with_state(state)
}

/// Liveness: the process serves HTTP.
async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Readiness: not shutting down, the database answers and the issuer's keys have been loaded,
/// so a token can be verified. A lost database connection makes it fail until the pool
/// reconnects, which it does by itself on the next use.
async fn readyz(State(state): State<OpsState>) -> impl IntoResponse {
    if !state.lifecycle.is_serving() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "shutting_down" })),
        );
    }
    let database = matches!(
        tokio::time::timeout(DATABASE_PROBE_TIMEOUT, state.repo.ping()).await,
        Ok(Ok(()))
    );
    let keys = state.verifier.is_ready();
    let status = if database && keys {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if status == StatusCode::OK { "ready" } else { "not_ready" },
        "checks": { "database": database, "jwks": keys },
    });
    (status, Json(body))
}
