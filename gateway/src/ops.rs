//! `/healthz`, `/readyz`, and the names of the request metrics. `/metrics` has a listener of
//! its own (`GATEWAY_METRICS_ADDR`): the gateway's port is public.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use platform::request_metrics::MetricNames;
use serde_json::json;

use crate::state::AppState;

/// `gateway_requests_total{method, route, status}` and
/// `gateway_request_duration_seconds{method, route, status}` (a histogram), recorded by
/// [`platform::request_metrics::HttpMetricsLayer`]. The route is the matched template (a bounded
/// set), never the raw path.
pub const HTTP_METRICS: MetricNames =
    MetricNames::new("gateway_requests_total", "gateway_request_duration_seconds");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// Liveness: the process serves HTTP.
async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Readiness: not shutting down, and the issuer's keys are loaded, so tokens can be verified.
/// The upstreams are not probed: the gateway still answers (502/503) without them, and
/// restarting it would not help.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if !state.lifecycle.is_serving() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "shutting_down" })),
        )
    } else if state.verifier.is_ready() {
        (StatusCode::OK, Json(json!({ "status": "ready" })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready", "checks": { "jwks": false } })),
        )
    }
}
