//! The HTTP interface: one module per concern, merged into one [`router`].

pub mod admin;
pub mod error;
pub mod form;
pub mod health;
pub mod sessions;
pub mod token;
pub mod token_state;
pub mod well_known;

use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::app::AppState;

/// Largest request body on any route (only the OAuth endpoints take a body).
pub const MAX_BODY_BYTES: usize = token::TOKEN_BODY_LIMIT;
/// Longest time a request may take, password hashing included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Every HTTP route of the issuer, with tracing, a body limit and a request timeout.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(token::router())
        .merge(token_state::router())
        .merge(sessions::router())
        .merge(admin::router())
        .merge(well_known::router())
        .merge(health::router())
        .layer(
            ServiceBuilder::new()
                .layer(
                    TraceLayer::new_for_http().make_span_with(|request: &Request| {
                        // The matched route, never the raw URI: a query string could carry secrets.
                        let route = request
                            .extensions()
                            .get::<MatchedPath>()
                            .map_or("unmatched", MatchedPath::as_str);
                        tracing::info_span!("http", method = %request.method(), route)
                    }),
                )
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
