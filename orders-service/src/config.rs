//! Configuration, from environment variables and matching command-line flags.

use std::net::SocketAddr;
use std::time::Duration;

use authn::config::VerifierConfig;
use platform::config::default_duration;

pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:50052";
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:9092";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/orders.db";
pub const DEFAULT_DATABASE_MAX_CONNECTIONS: u32 = 10;
/// `DATABASE_MIGRATE` true: the embedded SQLite default and the local stack need no step.
pub const DEFAULT_DATABASE_MIGRATE: bool = true;
pub const DEFAULT_REQUEST_TIMEOUT: &str = "10s";
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 512;
pub const DEFAULT_SHUTDOWN_DELAY: &str = "5s";
pub const DEFAULT_SHUTDOWN_GRACE: &str = "20s";

/// Everything the service needs to start.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "orders-service",
    version,
    about = "Orders over gRPC, authorized from access tokens"
)]
pub struct Config {
    /// Where the gRPC `orders.v1.OrderService` listens.
    #[arg(long, env = "ORDERS_GRPC_ADDR", default_value = DEFAULT_GRPC_ADDR)]
    pub grpc_addr: SocketAddr,

    /// Where `/healthz`, `/readyz` and `/metrics` listen.
    #[arg(long, env = "ORDERS_HTTP_ADDR", default_value = DEFAULT_HTTP_ADDR)]
    pub http_addr: SocketAddr,

    /// `sqlite://path` (created if missing) or `postgres://...`.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,

    /// Size of the database connection pool.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = DEFAULT_DATABASE_MAX_CONNECTIONS)]
    pub database_max_connections: u32,

    /// Apply pending database migrations at start. `false` (production: a Job runs
    /// `orders-service migrate` with DDL rights first) only checks that every migration of this
    /// release is applied, and refuses to start otherwise. Either way, migrations of a newer
    /// release are tolerated, so a rollback starts.
    #[arg(long, env = "DATABASE_MIGRATE", default_value_t = DEFAULT_DATABASE_MIGRATE, action = clap::ArgAction::Set)]
    pub database_migrate: bool,

    /// Longest time one RPC may take (a shorter `grpc-timeout` from the client wins).
    #[arg(long, env = "ORDERS_REQUEST_TIMEOUT", default_value = DEFAULT_REQUEST_TIMEOUT, value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Most RPCs served at once; more wait.
    #[arg(long, env = "ORDERS_MAX_CONCURRENT_REQUESTS", default_value_t = DEFAULT_MAX_CONCURRENT_REQUESTS)]
    pub max_concurrent_requests: usize,

    /// How long to keep serving, reporting not ready, after a shutdown signal, so that
    /// Kubernetes withdraws the endpoint before the listeners close.
    #[arg(long, env = "ORDERS_SHUTDOWN_DELAY", default_value = DEFAULT_SHUTDOWN_DELAY, value_parser = humantime::parse_duration)]
    pub shutdown_delay: Duration,

    /// How long in-flight requests may take to finish once the listeners are closed.
    #[arg(long, env = "ORDERS_SHUTDOWN_GRACE", default_value = DEFAULT_SHUTDOWN_GRACE, value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// How tokens are verified (issuer, audience, JWKS, mode).
    #[command(flatten)]
    pub auth: VerifierConfig,
}

impl Config {
    /// Parses the process's command line and environment.
    pub fn from_env() -> Result<Self, clap::Error> {
        <Self as clap::Parser>::try_parse()
    }

    /// The readiness-first shutdown timing.
    pub fn drain(&self) -> platform::shutdown::Drain {
        platform::shutdown::Drain {
            delay: self.shutdown_delay,
            grace: self.shutdown_grace,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            grpc_addr: DEFAULT_GRPC_ADDR
                .parse()
                .expect("BUG: DEFAULT_GRPC_ADDR is a socket address"),
            http_addr: DEFAULT_HTTP_ADDR
                .parse()
                .expect("BUG: DEFAULT_HTTP_ADDR is a socket address"),
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            database_max_connections: DEFAULT_DATABASE_MAX_CONNECTIONS,
            database_migrate: DEFAULT_DATABASE_MIGRATE,
            request_timeout: default_duration(DEFAULT_REQUEST_TIMEOUT),
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            shutdown_delay: default_duration(DEFAULT_SHUTDOWN_DELAY),
            shutdown_grace: default_duration(DEFAULT_SHUTDOWN_GRACE),
            auth: VerifierConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[test]
    fn defaults_match_the_flags_defaults() {
        // Only this service's own variables: DATABASE_URL may well be set where tests run.
        let parsed = Config::try_parse_from(["orders-service"]).unwrap();
        let default = Config::default();
        assert_eq!(parsed.grpc_addr, default.grpc_addr);
        assert_eq!(parsed.http_addr, default.http_addr);
        assert_eq!(parsed.request_timeout, default.request_timeout);
        assert_eq!(
            parsed.max_concurrent_requests,
            default.max_concurrent_requests
        );
        assert_eq!(parsed.shutdown_grace, default.shutdown_grace);
        assert_eq!(parsed.shutdown_delay, Duration::from_secs(5));
        assert_eq!(parsed.shutdown_delay, default.shutdown_delay);
        assert!(default.database_migrate);
    }

    #[test]
    fn flags_override_defaults() {
        let parsed = Config::try_parse_from([
            "orders-service",
            "--grpc-addr",
            "0.0.0.0:1",
            "--request-timeout",
            "2s",
        ])
        .unwrap();
        assert_eq!(parsed.grpc_addr, "0.0.0.0:1".parse().unwrap());
        assert_eq!(parsed.request_timeout, Duration::from_secs(2));
        let parsed =
            Config::try_parse_from(["orders-service", "--database-migrate", "false"]).unwrap();
        assert!(!parsed.database_migrate);
    }
}
