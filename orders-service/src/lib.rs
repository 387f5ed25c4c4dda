//! The orders resource service: `orders.v1.OrderService` over gRPC.
//!
//! Every call carries `authorization: Bearer <access token>`; a [`authn::grpc::RequireAuthLayer`]
//! verifies it against the issuer's JWKS before any handler runs. Authorization is decided from
//! the claims:
//!
//! - scope `orders:read` for `GetOrder` and `ListOrders`, `orders:write` for `CreateOrder` and
//!   `CancelOrder` (missing: `PERMISSION_DENIED`);
//! - a user sees, lists and cancels only its own orders; role `admin` sees, lists and cancels all;
//! - an order the caller may not access answers `NOT_FOUND`, exactly like an unknown id, so the
//!   existence of other users' orders is never revealed.
//!
//! Invalid input is `INVALID_ARGUMENT` (item blank or over 200 characters after trimming,
//! quantity outside 1..=1000, an id that is not a UUID, `page_size` over 100, a page token this
//! service did not issue); cancelling a cancelled order is `FAILED_PRECONDITION`; storage
//! failures are a generic `INTERNAL` with the detail in the log.
//!
//! `ListOrders` returns the newest orders first, paged with an opaque keyset cursor
//! (`next_page_token`), stable under concurrent inserts.
//!
//! Operations: `/readyz` on the HTTP listener fails while the database or the issuer's keys
//! are unavailable and as soon as a shutdown begins (readiness first, then the listeners close
//! after `ORDERS_SHUTDOWN_DELAY` and in-flight calls drain); every call runs in a span carrying
//! the `x-request-id` and W3C `traceparent` it arrived with; calls are counted and timed by
//! method and code (`orders_requests_total`, `orders_request_duration_seconds`).
//! `orders-service migrate` applies the migrations and exits.
//!
//! The library exposes [`App`] so that tests (and the gateway's tests) start the real service
//! in-process on port 0; `main.rs` is a thin shell around it.

pub mod app;
pub mod cli;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod repo;
pub mod rpc;

pub use app::{App, BuildError, RunError};
pub use config::Config;
