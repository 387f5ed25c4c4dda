//! Test support for the platform's suites, and nothing else: a dev-dependency only, never
//! compiled into a service binary.
//!
//! - [`TestIssuer`] and [`JwksServer`]: an in-process issuer that mints and forges tokens, and a
//!   scriptable JWKS endpoint.
//! - [`attacks`]: the catalogue of malicious tokens every edge must refuse.
//! - [`logs`]: log lines captured in memory.
//! - [`PgDatabase`]: a PostgreSQL database of one's own for a test.
//! - [`migrations`]: the previous and the next release's schema, for the rollback tests.
//! - [`TcpProxy`]: a proxy that can cut or refuse connections, for fault tests.
//! - [`Issuer`]: a [`TestIssuer`] whose JWKS is served over HTTP.
//! - Builders that start each real service in process on port 0: `auth` (feature `auth`),
//!   `orders` (feature `orders`), `gateway` (feature `gateway`, with a stub auth-service), and
//!   `stack` (all three, wired to each other in a chosen verifier mode). Each service's own
//!   suites enable only its own feature, so no service dev-depends on another; the suites that
//!   span services live in `system-tests`.
//! - [`eventually`]: polling for a condition, never sleeping on one.
//! - `browser` (feature `browser`): a real headless Chromium driven over WebDriver.
//! - [`tls`]: a throwaway certificate authority, and Redis and PostgreSQL servers of a test's
//!   own that speak TLS with its certificate.

pub mod attacks;
#[cfg(feature = "auth")]
pub mod auth;
#[cfg(feature = "browser")]
pub mod browser;
mod forger;
#[cfg(feature = "gateway")]
pub mod gateway;
mod issuer;
pub mod logs;
pub mod migrations;
#[cfg(feature = "orders")]
pub mod orders;
mod postgres;
mod proxy;
#[cfg(all(feature = "auth", feature = "orders", feature = "gateway"))]
pub mod stack;
pub mod tls;

use std::future::Future;
use std::time::{Duration, Instant};

pub use forger::{JwksServer, TestIssuer};
pub use issuer::{Issuer, READ, READ_WRITE, WRITE};
pub use postgres::PgDatabase;
pub use proxy::TcpProxy;

/// `bytes` random bytes from the system CSPRNG, base64url-encoded (ids in forged claims).
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).expect("the system random number generator");
    authn::base64url::encode(buf)
}

/// How long a test waits for something that should happen at once (a service becoming ready).
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Polls `condition` every 5 ms until it holds and returns how long that took; fails the test
/// after `within`, naming `what`. Tests wait on a condition this way instead of sleeping for a
/// guess.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if condition().await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `TEST_REDIS_URL`, the Redis server of the tests that need one. Those tests are
/// `#[ignore = "needs TEST_REDIS_URL ..."]`; run with `-- --include-ignored` and without the
/// variable, they fail here saying so, rather than pass without having run.
pub fn test_redis_url() -> String {
    match std::env::var("TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "TEST_REDIS_URL is not set: this test needs a Redis server \
             (TEST_REDIS_URL=redis://127.0.0.1:6379)"
        ),
    }
}

/// A URL where nothing listens (a port bound, then released).
pub async fn unreachable_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}
