//! The HTTP interface: one module per concern, merged into one [`router`].

pub mod admin;
pub mod admin_sessions;
pub mod authorize;
pub mod end_session;
pub mod error;
pub mod form;
pub mod health;
pub mod html;
pub mod oauth;
pub mod sessions;
pub mod token;
pub mod token_state;
pub mod userinfo;
pub mod well_known;

use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use platform::request_metrics::{HttpMetricsLayer, MetricNames};
use platform::trace::TraceContextLayer;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::state::AppState;

/// Largest request body on any route (only the OAuth endpoints take a body).
pub const MAX_BODY_BYTES: usize = oauth::TOKEN_BODY_LIMIT;
/// Longest time a request may take, password hashing included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `auth_http_requests_total{method, route, status}` and
/// `auth_http_request_duration_seconds{method, route, status}` (a histogram), recorded by
/// [`HttpMetricsLayer`] for every route of [`router`]. The route is the matched template
/// (`/v1/sessions/{sid}`), never the raw path. `http` in the name keeps them apart from the
/// gRPC series ([`crate::grpc::GRPC_METRICS`]), whose labels differ.
pub const HTTP_METRICS: MetricNames = MetricNames::new(
    "auth_http_requests_total",
    "auth_http_request_duration_seconds",
);

/// Every HTTP route of the issuer, with the trace context and request id of each request, its
/// metrics, a body limit and a request timeout.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(token::router())
        .merge(authorize::router())
        .merge(html::router())
        .merge(end_session::router())
        .merge(userinfo::router())
        .merge(token_state::router())
        .merge(sessions::router())
        .merge(admin::router())
        .merge(admin_sessions::router())
        .merge(well_known::router(
            state.tokens.issuer(),
            state.password_grant,
        ))
        .merge(health::router())
        .layer(
            ServiceBuilder::new()
                // Accepts or makes x-request-id and traceparent, runs the request in a span
                // that names the matched route (never the raw URI: a query string could carry
                // secrets) and answers with x-request-id.
                .layer(TraceContextLayer::http())
                // Outside the timeout and the body limit, so their answers (408, 413) count.
                .layer(HttpMetricsLayer::new(HTTP_METRICS))
                .layer(middleware::from_fn(token_errors_in_rfc6749_shape))
                .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    REQUEST_TIMEOUT,
                )),
        )
        .with_state(state)
}

/// The body limit answers a bare 413 before any handler runs; on the OAuth endpoints that answer
/// is given in the RFC 6749 error shape like every other refusal there.
async fn token_errors_in_rfc6749_shape(request: Request, next: Next) -> Response {
    let is_token_endpoint = [
        well_known::TOKEN_PATH,
        well_known::REVOKE_PATH,
        well_known::INTROSPECT_PATH,
    ]
    .contains(&request.uri().path());
    let response = next.run(request).await;
    if is_token_endpoint && response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        error::TokenError::BodyTooLarge.into_response()
    } else {
        response
    }
}
