//! Test support for the platform's suites, and nothing else: a dev-dependency only, never
//! compiled into a service binary.
//!
//! - [`TestIssuer`] and [`JwksServer`]: an in-process issuer that mints and forges tokens, and a
//!   scriptable JWKS endpoint.
//! - [`attacks`]: the catalogue of malicious tokens every edge must refuse.
//! - [`logs`]: log lines captured in memory.
//! - [`PgDatabase`]: a PostgreSQL database of one's own for a test.
//! - [`eventually`]: polling for a condition, never sleeping on one.

pub mod attacks;
mod forger;
pub mod logs;
mod postgres;

use std::future::Future;
use std::time::Duration;

pub use forger::{JwksServer, TestIssuer};
pub use postgres::PgDatabase;

/// `bytes` random bytes from the system CSPRNG, base64url-encoded (ids in forged claims).
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).expect("the system random number generator");
    authn::base64url::encode(buf)
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `within`; panics with `what`
/// when time runs out. Tests wait on a condition this way instead of sleeping for a guess.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
