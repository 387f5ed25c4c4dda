//! Configuration every verifier (gateway, orders-service) shares (feature `config`): where the
//! issuer is, what tokens must say, how keys are cached, which mode. Flattened into each
//! service's own clap `Config`; the names are the platform's stable `AUTH_*` variables.

use std::sync::Arc;
use std::time::Duration;

use crate::check::SessionCheck;
use crate::error::LookupError;
use crate::freshness::{Freshness, RoutePolicy, RoutePolicyError};
use crate::jwk::AllowedAlgorithms;
use crate::jwks::{FetchError, JwksClient, JwksConfig};
use crate::key_report::{KeyReporter, ReporterConfig};
use crate::revocation::{FeedConfig, RevocationFeed};
use secrecy::{ExposeSecret as _, SecretString};

use crate::service_token::ServiceToken;
use crate::session::{GrpcSessionLookup, RedisSessionLookup, SessionLookup, StatefulCheck};
use crate::verifier::{Keys, Policy, Verifier};

pub const DEFAULT_ISSUER: &str = "http://127.0.0.1:8081";
pub const DEFAULT_AUDIENCE: &str = "orders";
pub const DEFAULT_JWKS_URL: &str = "http://127.0.0.1:8081/.well-known/jwks.json";
pub const DEFAULT_GRPC_URL: &str = "http://127.0.0.1:50051";
pub const DEFAULT_TOKEN_URL: &str = "http://127.0.0.1:8081/oauth/token";

/// How a verifier decides whether a validly signed token is still good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AuthMode {
    /// Signature and claims only: no I/O per request; revocation only by expiry.
    #[default]
    Stateless,
    /// Also asks whether the token's session is active on every request: the shared Redis store
    /// when `REDIS_URL` is set, else the issuer over gRPC. Revocation takes effect at once.
    Stateful,
    /// Also consults an in-memory revocation set pushed by the issuer over a gRPC stream: no
    /// I/O per request, revocation within the push delay. Falls back to `stateful` checks when
    /// the stream has been silent for `AUTH_MAX_STALENESS`, or fails closed.
    Hybrid,
}

impl AuthMode {
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthMode::Stateless => "stateless",
            AuthMode::Stateful => "stateful",
            AuthMode::Hybrid => "hybrid",
        }
    }
}

/// The token checks and key-cache bounds of a verifier.
#[derive(Debug, Clone, clap::Args)]
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
    #[arg(long = "auth-leeway", env = "AUTH_LEEWAY", value_parser = humantime::parse_duration, default_value = "30s")]
    pub leeway: Duration,
    /// Longest accepted token lifetime (`exp - iat`).
    #[arg(long = "auth-max-token-lifetime", env = "AUTH_MAX_TOKEN_LIFETIME", value_parser = humantime::parse_duration, default_value = "1h")]
    pub max_token_lifetime: Duration,
    /// The signature algorithms accepted, comma-separated (`RS256`, `ES256`, `EdDSA`). A token
    /// is verified only with the algorithm of the key its `kid` names, and only if that
    /// algorithm is listed here.
    #[arg(long = "auth-allowed-algs", env = "AUTH_ALLOWED_ALGS", default_value = DEFAULT_ALLOWED_ALGS)]
    pub allowed_algs: AllowedAlgorithms,
    /// Background JWKS refresh period.
    #[arg(long = "auth-jwks-refresh-interval", env = "AUTH_JWKS_REFRESH_INTERVAL", value_parser = humantime::parse_duration, default_value = "5m")]
    pub jwks_refresh_interval: Duration,
    /// At most one JWKS fetch per this interval (unknown-`kid` refetches included).
    #[arg(long = "auth-jwks-min-refetch-interval", env = "AUTH_JWKS_MIN_REFETCH_INTERVAL", value_parser = humantime::parse_duration, default_value = "10s")]
    pub jwks_min_refetch_interval: Duration,
    /// Deadline of one JWKS fetch.
    #[arg(long = "auth-jwks-timeout", env = "AUTH_JWKS_TIMEOUT", value_parser = humantime::parse_duration, default_value = "5s")]
    pub jwks_timeout: Duration,
    /// How long the last good key set serves while the issuer cannot be reached.
    #[arg(long = "auth-jwks-max-stale", env = "AUTH_JWKS_MAX_STALE", value_parser = humantime::parse_duration, default_value = "24h")]
    pub jwks_max_stale: Duration,
    /// The issuer's gRPC endpoint (`stateful` session checks, `hybrid` revocation stream).
    #[arg(long = "auth-grpc-url", env = "AUTH_GRPC_URL", default_value = DEFAULT_GRPC_URL)]
    pub grpc_url: String,
    /// The issuer's token endpoint, for this verifier's own client-credentials token.
    #[arg(long = "auth-token-url", env = "AUTH_TOKEN_URL", default_value = DEFAULT_TOKEN_URL)]
    pub token_url: String,
    /// This verifier's client id at the issuer (needs scope `sessions:check`); required by
    /// `hybrid`, and by `stateful` without `REDIS_URL`.
    #[arg(long = "auth-client-id", env = "AUTH_CLIENT_ID")]
    pub client_id: Option<String>,
    /// This verifier's client secret.
    #[arg(
        long = "auth-client-secret",
        env = "AUTH_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub client_secret: Option<SecretString>,
    /// The shared session store: `stateful` verifiers read sessions from it directly.
    /// `rediss://` connects over TLS.
    #[arg(long = "redis-url", env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// PEM file of the CA(s) that sign the Redis server's certificate, for a `rediss://`
    /// `REDIS_URL`; replaces the public roots. Unset: the public roots (webpki-roots).
    #[arg(long = "redis-ca-file", env = "REDIS_CA_FILE")]
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// `hybrid`: how long the revocation stream may stay silent before requests fall back to
    /// `stateful` checks (or fail closed).
    #[arg(long = "auth-max-staleness", env = "AUTH_MAX_STALENESS", value_parser = humantime::parse_duration, default_value = "5s")]
    pub max_staleness: Duration,
    /// `stateful`: how long a positive session answer is reused. 0 (the default) asks on every
    /// request; a non-zero TTL lets a revoked session through for up to that long.
    #[arg(long = "auth-session-cache-ttl", env = "AUTH_SESSION_CACHE_TTL", value_parser = humantime::parse_duration, default_value = "0s")]
    pub session_cache_ttl: Duration,
    /// Deadline of one session lookup.
    #[arg(long = "auth-session-timeout", env = "AUTH_SESSION_TIMEOUT", value_parser = humantime::parse_duration, default_value = "2s")]
    pub session_timeout: Duration,
    /// Verified-token cache size (tokens; 0 disables it). A repeated token skips the signature
    /// check, never the expiry, key-set and session checks.
    #[arg(long = "auth-token-cache-size", env = "AUTH_TOKEN_CACHE_SIZE", default_value_t = DEFAULT_TOKEN_CACHE_SIZE)]
    pub token_cache_size: u64,
    /// Routes that do not follow AUTH_MODE, comma-separated `ROUTE=LEVEL`: ROUTE is
    /// `METHOD /path/template` (gateway) or `/package.Service/Method` (gRPC), LEVEL `token`
    /// (signature and claims), `pushed` (and the revocation feed; AUTH_MODE=hybrid) or `live`
    /// (and a session lookup now). Example: `POST /v1/orders/{id}/cancel=live`.
    #[arg(long = "auth-route-policy", env = "AUTH_ROUTE_POLICY", default_value = "", value_parser = RoutePolicy::parse)]
    pub route_policy: RoutePolicy,
    /// BENCHMARK BUILDS ONLY (cargo feature `bench-auth-off`): `true` switches token
    /// verification off (the load benchmark's auth-off baseline, see
    /// `Verifier::insecure_skip_verification`). In any other build, setting it at all refuses
    /// to start the service, so a stray variable can never open a production service. Hidden
    /// from `--help` there.
    #[arg(
        long = "auth-insecure-skip-verify",
        env = "AUTH_INSECURE_SKIP_VERIFY",
        hide = !cfg!(feature = "bench-auth-off")
    )]
    pub insecure_skip_verify: Option<String>,
}

pub const DEFAULT_TOKEN_CACHE_SIZE: u64 = 10_000;
pub const DEFAULT_ALLOWED_ALGS: &str = "RS256,ES256,EdDSA";

impl Default for VerifierConfig {
    fn default() -> Self {
        Self {
            issuer: DEFAULT_ISSUER.to_owned(),
            audience: DEFAULT_AUDIENCE.to_owned(),
            jwks_url: DEFAULT_JWKS_URL.to_owned(),
            mode: AuthMode::Stateless,
            leeway: Policy::DEFAULT_LEEWAY,
            max_token_lifetime: Policy::DEFAULT_MAX_LIFETIME,
            allowed_algs: AllowedAlgorithms::all(),
            jwks_refresh_interval: JwksConfig::DEFAULT_REFRESH_INTERVAL,
            jwks_min_refetch_interval: JwksConfig::DEFAULT_MIN_REFETCH_INTERVAL,
            jwks_timeout: JwksConfig::DEFAULT_TIMEOUT,
            jwks_max_stale: JwksConfig::DEFAULT_MAX_STALE,
            grpc_url: DEFAULT_GRPC_URL.to_owned(),
            token_url: DEFAULT_TOKEN_URL.to_owned(),
            client_id: None,
            client_secret: None,
            redis_url: None,
            redis_ca_file: None,
            max_staleness: Duration::from_secs(5),
            session_cache_ttl: Duration::ZERO,
            session_timeout: Duration::from_secs(2),
            token_cache_size: DEFAULT_TOKEN_CACHE_SIZE,
            route_policy: RoutePolicy::default(),
            insecure_skip_verify: None,
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
    #[error(
        "AUTH_MODE={0} needs AUTH_CLIENT_ID and AUTH_CLIENT_SECRET (a client with scope sessions:check){1}"
    )]
    MissingCredentials(&'static str, &'static str),
    #[error("session lookup: {0}")]
    Lookup(#[from] LookupError),
    #[error("AUTH_GRPC_URL: {0}")]
    GrpcUrl(String),
    #[error(
        "AUTH_INSECURE_SKIP_VERIFY is set, but switching token verification off exists only in \
         benchmark builds (cargo feature bench-auth-off); unset it"
    )]
    SkipVerifyUnavailable,
    #[error("AUTH_INSECURE_SKIP_VERIFY must be true or false, got {0:?}")]
    SkipVerifyInvalid(String),
    #[error(transparent)]
    RoutePolicy(#[from] RoutePolicyError),
}

impl VerifierConfig {
    pub fn policy(&self) -> Policy {
        Policy {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            leeway: self.leeway,
            max_lifetime: self.max_token_lifetime,
            algorithms: self.allowed_algs,
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

    /// Builds the verifier of a service that serves no route a route policy can name (a
    /// non-empty `AUTH_ROUTE_POLICY` is refused); see [`VerifierConfig::build_verifier_for`].
    pub fn build_verifier(&self) -> Result<Verifier, ConfigError> {
        self.build_verifier_for(&[])
    }

    /// Builds the verifier of a service serving `routes` (as `AUTH_ROUTE_POLICY` writes them:
    /// `POST /v1/orders/{id}/cancel`, `/orders.v1.OrderService/CancelOrder`) and starts its
    /// JWKS client (fetching in the background at once). Needs a Tokio runtime.
    ///
    /// Refuses a route policy naming a route not in `routes`, `pushed` without
    /// `AUTH_MODE=hybrid`, and `live` without a session lookup: in `stateless` mode one is built
    /// for the `live` routes alone, as `stateful` would build it (`REDIS_URL`, else the issuer
    /// over gRPC with the client credentials).
    pub fn build_verifier_for(&self, routes: &[&str]) -> Result<Verifier, ConfigError> {
        self.route_policy.check_routes(routes)?;
        let skip_verification = self.skip_verification()?;
        if self.issuer.is_empty() || self.audience.is_empty() {
            return Err(ConfigError::Empty);
        }
        if self.jwks_refresh_interval < self.jwks_min_refetch_interval {
            return Err(ConfigError::RefreshFasterThanRefetchLimit);
        }
        let client = JwksClient::start(self.jwks())?;
        self.start_key_reporter(&client)?;
        let verifier = Verifier::new(Keys::remote(client.clone()), self.policy())
            .with_session_check(self.session_check(&client)?)
            .with_token_cache(self.token_cache_size);
        let verifier = self.with_route_policy(verifier)?;
        #[cfg(feature = "bench-auth-off")]
        if skip_verification {
            tracing::warn!(
                "AUTH_INSECURE_SKIP_VERIFY=true: TOKEN VERIFICATION IS OFF. Every well-formed \
                 token is accepted unchecked. Benchmark build (feature bench-auth-off) only; \
                 never run this build anywhere but a load benchmark"
            );
            return Ok(verifier.insecure_skip_verification());
        }
        #[cfg(not(feature = "bench-auth-off"))]
        debug_assert!(!skip_verification, "BUG: refused by skip_verification");
        Ok(verifier)
    }

    /// `verifier` with `AUTH_ROUTE_POLICY`, and a session lookup for its `live` routes when
    /// the mode has none.
    fn with_route_policy(&self, mut verifier: Verifier) -> Result<Verifier, ConfigError> {
        if self.route_policy.is_empty() {
            return Ok(verifier);
        }
        if self.route_policy.asks_for(Freshness::Live)
            && !verifier.supports(Freshness::Live)
            && let Some(lookup) = self.stateful_check()?
        {
            verifier = verifier.with_live_check(lookup);
        }
        let verifier = verifier.with_route_policy(self.route_policy.clone())?;
        tracing::info!(
            mode = self.mode.as_str(),
            route_policy = %self.route_policy,
            "routes with a freshness of their own"
        );
        Ok(verifier)
    }

    /// `AUTH_INSECURE_SKIP_VERIFY`: whether to switch verification off. Refused outright, for
    /// any value, in a build without the `bench-auth-off` feature.
    fn skip_verification(&self) -> Result<bool, ConfigError> {
        let Some(value) = self.insecure_skip_verify.as_deref() else {
            return Ok(false);
        };
        if !cfg!(feature = "bench-auth-off") {
            return Err(ConfigError::SkipVerifyUnavailable);
        }
        match value.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(ConfigError::SkipVerifyInvalid(value.to_owned())),
        }
    }

    fn service_token(&self) -> Result<Option<Arc<ServiceToken>>, ConfigError> {
        match (&self.client_id, &self.client_secret) {
            (Some(id), Some(secret)) if !id.is_empty() && !secret.expose_secret().is_empty() => {
                Ok(Some(Arc::new(ServiceToken::new(
                    &self.token_url,
                    id,
                    secret.clone(),
                    self.session_timeout,
                )?)))
            }
            _ => Ok(None),
        }
    }

    /// The `stateful` check this configuration allows: Redis when `REDIS_URL` is set, else the
    /// issuer over gRPC with the client credentials.
    fn stateful_check(&self) -> Result<Option<StatefulCheck>, ConfigError> {
        let lookup: Arc<dyn SessionLookup> = if let Some(url) = &self.redis_url {
            Arc::new(RedisSessionLookup::new(
                url,
                self.redis_ca_file.as_deref(),
                self.session_timeout,
            )?)
        } else if let Some(token) = self.service_token()? {
            Arc::new(GrpcSessionLookup::new(
                &self.grpc_url,
                token,
                self.session_timeout,
            )?)
        } else {
            return Ok(None);
        };
        Ok(Some(StatefulCheck::new(lookup, self.session_cache_ttl)))
    }

    /// With client credentials, whatever the mode: reports the keys `client` holds to the
    /// issuer, for as long as it lives, so that rotations wait for this verifier.
    fn start_key_reporter(&self, client: &JwksClient) -> Result<(), ConfigError> {
        if let Some(token) = self.service_token()? {
            KeyReporter::start(ReporterConfig {
                grpc_url: self.grpc_url.clone(),
                token,
                jwks: client.clone(),
                instance: None,
            })
            .map_err(|e| ConfigError::GrpcUrl(e.to_string()))?;
        }
        Ok(())
    }

    fn session_check(&self, jwks: &JwksClient) -> Result<SessionCheck, ConfigError> {
        match self.mode {
            AuthMode::Stateless => Ok(SessionCheck::Stateless),
            AuthMode::Stateful => self.stateful_check()?.map(SessionCheck::Stateful).ok_or(
                ConfigError::MissingCredentials("stateful", ", or REDIS_URL"),
            ),
            AuthMode::Hybrid => {
                let token = self
                    .service_token()?
                    .ok_or(ConfigError::MissingCredentials("hybrid", ""))?;
                let feed = RevocationFeed::start(FeedConfig {
                    grpc_url: self.grpc_url.clone(),
                    token,
                    max_staleness: self.max_staleness,
                    fallback: self.stateful_check()?,
                    jwks: Some(jwks.clone()),
                })
                .map_err(|e| ConfigError::GrpcUrl(e.to_string()))?;
                Ok(SessionCheck::Hybrid(feed))
            }
        }
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
        // `VerifierConfig` has no `PartialEq` (its secret must not be compared by accident); its
        // `Debug` shows every setting and redacts the secret.
        assert_eq!(
            format!("{:?}", parsed.verifier),
            format!("{:?}", VerifierConfig::default())
        );
    }

    #[test]
    fn flags_parse_durations_and_modes() {
        let parsed = Cli::try_parse_from([
            "verifier",
            "--auth-leeway",
            "5s",
            "--auth-mode",
            "hybrid",
            "--auth-jwks-max-stale",
            "1h 30m",
        ])
        .unwrap();
        assert_eq!(parsed.verifier.leeway, Duration::from_secs(5));
        assert_eq!(parsed.verifier.jwks_max_stale, Duration::from_secs(5400));
        assert!(Cli::try_parse_from(["verifier", "--auth-leeway", "soon"]).is_err());
        assert_eq!(parsed.verifier.mode, AuthMode::Hybrid);
        assert!(Cli::try_parse_from(["verifier", "--auth-mode", "trusting"]).is_err());
    }
}

#[cfg(test)]
mod mode_tests {
    use super::*;

    #[tokio::test]
    async fn stateful_and_hybrid_need_a_way_to_ask() {
        for mode in [AuthMode::Stateful, AuthMode::Hybrid] {
            let config = VerifierConfig {
                mode,
                ..VerifierConfig::default()
            };
            assert!(matches!(
                config.build_verifier(),
                Err(ConfigError::MissingCredentials(..))
            ));
        }
        let with_redis = VerifierConfig {
            mode: AuthMode::Stateful,
            redis_url: Some("redis://127.0.0.1:1".into()),
            ..VerifierConfig::default()
        };
        assert_eq!(
            with_redis.build_verifier().unwrap().session_check().mode(),
            "stateful"
        );
        let with_client = VerifierConfig {
            mode: AuthMode::Hybrid,
            client_id: Some("gateway".into()),
            client_secret: Some(SecretString::from("s")),
            ..VerifierConfig::default()
        };
        let verifier = with_client.build_verifier().unwrap();
        assert_eq!(verifier.session_check().mode(), "hybrid");
    }

    fn skipping(value: &str) -> VerifierConfig {
        VerifierConfig {
            insecure_skip_verify: Some(value.into()),
            ..VerifierConfig::default()
        }
    }

    /// A normal build refuses AUTH_INSECURE_SKIP_VERIFY whatever its value, even `false`.
    #[cfg(not(feature = "bench-auth-off"))]
    #[tokio::test]
    async fn skipping_verification_is_refused_outside_benchmark_builds() {
        for value in ["true", "false", "1", "yes"] {
            let error = skipping(value).build_verifier().unwrap_err();
            assert!(
                matches!(error, ConfigError::SkipVerifyUnavailable),
                "{value}: {error}"
            );
            assert!(
                error.to_string().contains("only in benchmark builds"),
                "{error}"
            );
        }
        assert!(VerifierConfig::default().build_verifier().is_ok());
    }
}
