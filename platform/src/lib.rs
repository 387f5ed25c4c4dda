//! What every service of the platform runs on, apart from token verification (which is
//! `authn`'s):
//!
//! - [`config`]: parsing helpers for each service's clap `Config`.
//! - [`telemetry`]: logs (text or JSON), the Prometheus recorder and `/metrics`.
//! - [`trace`] and [`request_metrics`]: request ids and W3C trace context carried from hop to
//!   hop, and request counts and latency histograms, as tower layers every server applies.
//! - [`readiness`]: `/readyz` from cached, bounded dependency checks run in the background.
//! - [`shutdown`]: readiness-first graceful shutdown of a service's listeners.
//! - [`db`]: SQL pools (SQLite or PostgreSQL) and their usage gauges.
//! - [`schema`]: migrations at start-up: applied (`DATABASE_MIGRATE=true`) or only checked,
//!   tolerating the newer migrations of a later release (rollbacks).
//! - [`client_addr`]: the client's address, resolved hop by hop through trusted proxies.
//! - [`http`] and [`grpc`]: outbound HTTP clients and gRPC channels.

pub mod client_addr;
pub mod config;
pub mod db;
pub mod grpc;
pub mod http;
pub mod readiness;
pub mod request_metrics;
pub mod schema;
pub mod shutdown;
pub mod telemetry;
pub mod trace;
