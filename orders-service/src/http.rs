//! The operations listener: `/healthz`, `/readyz`, `/metrics`.

use authn::Verifier;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use platform::readiness::Readiness;
use platform::shutdown::Lifecycle;
use serde_json::json;

use crate::repo::OrderRepository;

/// What the probes look at.
#[derive(Clone)]
pub struct OpsState {
    pub repo: OrderRepository,
    pub verifier: Verifier,
    pub lifecycle: Lifecycle,
    /// The database as of the last background check.
    pub readiness: Readiness,
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

/// Readiness: not shutting down, the database ready as of the last background check
/// (`platform::readiness`: every second, 500 ms at most, unready after three failures in a row;
/// never waited on here, so it answers within any probe timeout) and the issuer's keys loaded, so
/// a token can be verified.
async fn readyz(State(state): State<OpsState>) -> impl IntoResponse {
    if !state.lifecycle.is_serving() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "shutting_down" })),
        );
    }
    let database = state.readiness.is_dependency_ready("database");
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
