//! Verifying the platform's access tokens: from a JWKS URL to a typed [`Principal`].
//!
//! ```no_run
//! use authn::jwks::{JwksClient, JwksConfig};
//! use authn::verifier::{Keys, Policy, Verifier};
//! use authn::{AuthError, Scope};
//!
//! async fn handle(bearer: &str) -> Result<String, AuthError> {
//!     let jwks = JwksConfig::new("https://auth.example/.well-known/jwks.json");
//!     let keys = Keys::remote(JwksClient::start(jwks).expect("a valid JWKS URL"));
//!     let verifier = Verifier::new(keys, Policy::new("https://auth.example", "orders"));
//!     let principal = verifier.verify(bearer).await?; // signature, iss, aud, exp, nbf, typ
//!     principal.require(Scope::OrdersRead)?; // 403 insufficient_scope otherwise
//!     Ok(format!("orders of {}", principal.sub()))
//! }
//! ```
//!
//! Build the [`Verifier`] once and share it (it is cheap to clone); its key set is fetched in
//! the background, refreshed before it expires, refetched at most once per interval for an
//! unknown `kid`, and kept for a bounded time while the issuer is down.
//!
//! What is where:
//!
//! - [`jws`]: strict parsing of compact JWS; [`sign`] (feature `sign`): RS256 signing, for the
//!   issuer only.
//! - [`jwk`]: JWK ingestion with a key policy, RFC 7638 thumbprints, validated
//!   [`jwk::KeySet`]s.
//! - [`jwks`]: the remote key-set client: cached, single-flight, refreshed in the background.
//! - `key_report` (feature `tonic`): tells the issuer which keys this verifier holds, so that a
//!   rotation waits for it.
//! - [`verifier`]: pinned algorithm, issuer, audience, type and time checks, producing a
//!   [`Principal`] or an [`AuthError`] that says why (for logs and metrics, never for the
//!   caller).
//! - [`check`], [`session`], `revocation` (feature `tonic`): what `stateful` and `hybrid`
//!   verifiers ask beyond the signature; [`freshness`]: a level per route instead of the
//!   mode's (`AUTH_ROUTE_POLICY`), [`Verifier::verify_fresh`].
//! - [`authz`] and [`scope`]: typed authorization from claims
//!   (`principal.require(Scope::OrdersWrite)?`).
//! - [`id_token`]: OpenID Connect ID tokens, for a relying party (the gateway's browser
//!   sign-in): the same keys and issuer, the client as audience, the `nonce` of the request.
//! - [`bearer`]: the one token of a request (header, cookie or gRPC metadata); `http`
//!   (feature `axum`) and `grpc` (feature `tonic`): the axum extractors and the tonic layer.
//! - `config` (feature `config`): the `AUTH_*` settings every verifier service shares.
//!
//! See the crate's README for what it guarantees and what it refuses.

pub mod authz;
pub mod base64url;
pub mod bearer;
pub mod check;
pub mod claims;
#[cfg(feature = "config")]
pub mod config;
pub mod error;
pub mod freshness;
#[cfg(feature = "tonic")]
pub mod grpc;
#[cfg(feature = "axum")]
pub mod http;
pub mod id_token;
pub mod jwk;
pub mod jwks;
pub mod jws;
#[cfg(feature = "tonic")]
pub mod key_report;
mod outbound;
#[cfg(feature = "tonic")]
pub mod revocation;
pub mod scope;
pub mod service_token;
pub mod session;
#[cfg(feature = "sign")]
pub mod sign;
pub mod verifier;

pub use authz::Principal;
pub use error::{AuthError, CLAIMS_CHANGED_DESCRIPTION, RejectReason};
pub use freshness::{Freshness, RoutePolicy};
pub use scope::{Role, Scope};
pub use verifier::Verifier;

/// Seconds since the Unix epoch, the unit of every time claim.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
