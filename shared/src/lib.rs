//! The one place where tokens are made sense of.
//!
//! Every service of the platform verifies bearer tokens through this crate and nowhere else:
//!
//! - [`jws`]: strict parsing of compact JWS and RS256 signing ([`jws::Signer`]).
//! - [`jwk`]: JWK ingestion with a key policy, RFC 7638 thumbprints, validated [`jwk::KeySet`]s.
//! - [`jwks`]: the remote key-set client: cached, single-flight, refreshed in the background,
//!   serving the last good set for a bounded time when the issuer is down.
//! - [`verifier`]: pinned algorithm, issuer, audience, type and time checks, producing a
//!   [`Principal`] or an [`AuthError`] that says why (for logs and metrics, never for the caller).
//! - [`authz`]: typed authorization from claims (`principal.require(Scope::OrdersWrite)?`).
//! - [`http`] and [`grpc`]: the axum extractor and the tonic tower layer.
//! - [`config`], [`telemetry`], [`db`], [`shutdown`]: the plumbing every binary shares.
//! - [`trace`] and [`request_metrics`]: request ids and W3C trace context carried from hop to
//!   hop, and request counts and latency histograms, as tower layers every server applies.

pub mod authz;
pub mod claims;
pub mod client_addr;
pub mod config;
pub mod db;
pub mod error;
pub mod grpc;
pub mod http;
pub mod jwk;
pub mod jwks;
pub mod jws;
pub mod request_metrics;
pub mod revocation;
pub mod service_token;
pub mod session;
pub mod shutdown;
pub mod telemetry;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod trace;
pub mod verifier;

pub use authz::{Principal, Role, Scope};
pub use error::{AuthError, RejectReason};
pub use verifier::Verifier;

/// Seconds since the Unix epoch, the unit of every time claim.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A random value of `bytes` bytes from the system CSPRNG, base64url-encoded: session ids,
/// token ids, refresh tokens, client secrets.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).expect("BUG: the system random number generator failed");
    jws::b64_encode(buf)
}
