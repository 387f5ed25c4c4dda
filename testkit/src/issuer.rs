//! A test issuer whose JWKS is served over HTTP, for suites that verify tokens without the
//! real auth-service.

use authn::config::VerifierConfig;

use crate::{JwksServer, TestIssuer};

/// The scopes of the orders API, as tokens carry them.
pub const READ: &str = "orders:read";
pub const WRITE: &str = "orders:write";
pub const READ_WRITE: &str = "orders:read orders:write";

/// A token issuer whose JWKS is served over HTTP, as the real auth-service does.
pub struct Issuer {
    pub issuer: TestIssuer,
    pub jwks: JwksServer,
}

impl Issuer {
    pub async fn start() -> Self {
        Self::start_with(authn::jwk::Algorithm::Rs256).await
    }

    /// An issuer signing with a key of `alg` (RS256, ES256 or EdDSA).
    pub async fn start_with(alg: authn::jwk::Algorithm) -> Self {
        let issuer = TestIssuer::with_alg(alg);
        let jwks = issuer.serve_jwks().await;
        Self { issuer, jwks }
    }

    /// A valid token of a plain user.
    pub fn user(&self, sub: &str, scope: &str) -> String {
        self.issuer.user_token(sub, scope, &["user"])
    }

    /// A valid token of an administrator.
    pub fn admin(&self, sub: &str, scope: &str) -> String {
        self.issuer.user_token(sub, scope, &["admin"])
    }

    /// What a service under test needs to verify this issuer's tokens.
    pub fn verifier_config(&self) -> VerifierConfig {
        self.issuer.verifier_config(&self.jwks.url())
    }
}
