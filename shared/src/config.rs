//! Configuration every verifier (gateway, orders-service) shares: where the issuer is, what
//! tokens must say, how keys are cached. Flattened into each service's own clap `Config`.

use std::time::Duration;

use crate::jwks::{FetchError, JwksClient, JwksConfig};
use crate::verifier::{Keys, Policy, Verifier};

pub const DEFAULT_ISSUER: &str = "http://127.0.0.1:8081";
pub const DEFAULT_AUDIENCE: &str = "orders";
pub const DEFAULT_JWKS_URL: &str = "http://127.0.0.1:8081/.well-known/jwks.json";

/// How a verifier decides whether a validly signed token is still good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AuthMode {
    /// Signature and claims only: no I/O per request; revocation only by expiry.
    #[default]
    Stateless,
}

/// Parses a human duration such as `30s`, `5m` or `24h`.
pub fn parse_duration(value: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(value)
}

/// The token checks and key-cache bounds of a verifier.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct VerifierConfig {
    /// Expected `iss`, compared exactly.
    #[arg(long = "auth-issuer", env = "AUTH_ISSUER", default_value = DEFAULT_ISSUER)]
    pub issuer: String,
    /// This service's audience: tokens must list it in `aud`.
    #[arg(long = "auth-audience", env = "AUTH_AUDIENCE", default_value = DEFAULT_AUDIENCE)]
    pub audience: String,
    /// The issuer's JWKS.
    #[arg(long = "auth-jwks-url", env = "AUTH_JWKS_URL", default_value = DEFAULT_JWKS_URL)]
    pub jwks_url: String,
    #[arg(long = "auth-mode", env = "AUTH_MODE", value_enum, default_value_t = AuthMode::Stateless)]
    pub mode: AuthMode,
    /// Tolerated clock skew on `exp`, `nbf`, `iat`.
    #[arg(long = "auth-leeway", env = "AUTH_LEEWAY", value_parser = parse_duration, default_value = "30s")]
    pub leeway: Duration,
    /// Longest accepted token lifetime (`exp - iat`).
    #[arg(long = "auth-max-token-lifetime", env = "AUTH_MAX_TOKEN_LIFETIME", value_parser = parse_duration, default_value = "1h")]
    pub max_token_lifetime: Duration,
    /// Background JWKS refresh period.
    #[arg(long = "auth-jwks-refresh-interval", env = "AUTH_JWKS_REFRESH_INTERVAL", value_parser = parse_duration, default_value = "5m")]
    pub jwks_refresh_interval: Duration,
    /// At most one JWKS fetch per this interval (unknown-`kid` refetches included).
    #[arg(long = "auth-jwks-min-refetch-interval", env = "AUTH_JWKS_MIN_REFETCH_INTERVAL", value_parser = parse_duration, default_value = "10s")]
    pub jwks_min_refetch_interval: Duration,
    /// Deadline of one JWKS fetch.
    #[arg(long = "auth-jwks-timeout", env = "AUTH_JWKS_TIMEOUT", value_parser = parse_duration, default_value = "5s")]
    pub jwks_timeout: Duration,
    /// How long the last good key set serves while the issuer cannot be reached.
    #[arg(long = "auth-jwks-max-stale", env = "AUTH_JWKS_MAX_STALE", value_parser = parse_duration, default_value = "24h")]
    pub jwks_max_stale: Duration,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        Self {
            issuer: DEFAULT_ISSUER.to_owned(),
            audience: DEFAULT_AUDIENCE.to_owned(),
            jwks_url: DEFAULT_JWKS_URL.to_owned(),
            mode: AuthMode::Stateless,
            leeway: Policy::DEFAULT_LEEWAY,
            max_token_lifetime: Policy::DEFAULT_MAX_LIFETIME,
            jwks_refresh_interval: JwksConfig::DEFAULT_REFRESH_INTERVAL,
            jwks_min_refetch_interval: JwksConfig::DEFAULT_MIN_REFETCH_INTERVAL,
            jwks_timeout: JwksConfig::DEFAULT_TIMEOUT,
            jwks_max_stale: JwksConfig::DEFAULT_MAX_STALE,
        }
    }
}

/// A verifier configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("AUTH_JWKS_REFRESH_INTERVAL must not be shorter than AUTH_JWKS_MIN_REFETCH_INTERVAL")]
    RefreshFasterThanRefetchLimit,
    #[error("AUTH_ISSUER and AUTH_AUDIENCE must not be empty")]
    Empty,
    #[error("JWKS client: {0}")]
    Jwks(#[from] FetchError),
}

impl VerifierConfig {
    pub fn policy(&self) -> Policy {
        Policy {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            leeway: self.leeway,
            max_lifetime: self.max_token_lifetime,
        }
    }

    pub fn jwks(&self) -> JwksConfig {
        JwksConfig {
            url: self.jwks_url.clone(),
            refresh_interval: self.jwks_refresh_interval,
            min_refetch_interval: self.jwks_min_refetch_interval,
            timeout: self.jwks_timeout,
            max_stale: self.jwks_max_stale,
            max_body_bytes: JwksConfig::DEFAULT_MAX_BODY_BYTES,
        }
    }

    /// Builds the verifier and starts its JWKS client (fetching in the background at once).
    /// Needs a Tokio runtime.
    pub fn build_verifier(&self) -> Result<Verifier, ConfigError> {
        if self.issuer.is_empty() || self.audience.is_empty() {
            return Err(ConfigError::Empty);
        }
        if self.jwks_refresh_interval < self.jwks_min_refetch_interval {
            return Err(ConfigError::RefreshFasterThanRefetchLimit);
        }
        let client = JwksClient::start(self.jwks())?;
        Ok(Verifier::new(Keys::remote(client), self.policy()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        verifier: VerifierConfig,
    }

    #[test]
    fn clap_defaults_equal_default() {
        // Holds unless the test environment sets AUTH_* variables.
        let parsed = Cli::try_parse_from(["verifier"]).unwrap();
        assert_eq!(parsed.verifier, VerifierConfig::default());
    }

    #[test]
    fn flags_parse_durations_and_modes() {
        let parsed = Cli::try_parse_from([
            "verifier",
            "--auth-leeway",
            "5s",
            "--auth-mode",
            "stateless",
            "--auth-jwks-max-stale",
            "1h 30m",
        ])
        .unwrap();
        assert_eq!(parsed.verifier.leeway, Duration::from_secs(5));
        assert_eq!(parsed.verifier.jwks_max_stale, Duration::from_secs(5400));
        assert!(Cli::try_parse_from(["verifier", "--auth-leeway", "soon"]).is_err());
        assert!(Cli::try_parse_from(["verifier", "--auth-mode", "trusting"]).is_err());
    }
}
