//! The HTTP edge of the platform: the only service a frontend talks to.
//!
//! - REST over `orders.v1.OrderService` ([`orders`]): the token (from `Authorization: Bearer`
//!   or the `__Host-access_token` cookie, never both) is verified here, the route's scope
//!   checked, and the original token passed on to the orders service, which verifies it again.
//! - A reverse proxy to the auth-service ([`proxy`]) for `/oauth/*`, `/.well-known/*`,
//!   `/v1/sessions*` and `/v1/logout*`.
//! - The web app and its backend ([`web`]): `/`, `GET /login`, `GET /callback`, `POST /logout`
//!   and the app's forms; the gateway signs browsers in as a confidential client of the issuer
//!   and keeps their tokens in `HttpOnly` cookies (see docs/BROWSER.md).
//! - `/healthz`, `/readyz` (the JWKS is loaded and no shutdown has begun) ([`ops`]); `/metrics`
//!   on a listener of its own (`GATEWAY_METRICS_ADDR`): `gateway_requests_total` and the
//!   `gateway_request_duration_seconds` histogram by method, route template and status.
//!
//! Errors are JSON `{"error": "<stable code>", "error_description": "..."}` ([`error`]); 401
//! carries `WWW-Authenticate: Bearer ...` (RFC 6750). Every request gets an `x-request-id` and a
//! W3C `traceparent` (the client's when well formed, new ones otherwise: a malformed value is
//! never passed on), runs in a span carrying both, answers with the `x-request-id`, and passes
//! both on to the upstreams (gRPC metadata to orders-service, headers to auth-service);
//! `Authorization` and `Cookie` are marked sensitive so that traces never show them.
//!
//! The library exposes [`App`] so that tests start the real gateway in-process on port 0;
//! `main.rs` is a thin shell around it.

pub mod app;
pub mod config;
pub mod cookie;
pub mod error;
pub mod extract;
pub mod ops;
pub mod orders;
pub mod proxy;
pub mod state;
pub mod web;

pub use app::{App, BuildError, router};
pub use config::Config;
