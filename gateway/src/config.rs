//! Configuration, from environment variables and matching command-line flags.

use std::net::SocketAddr;
use std::time::Duration;

use authn::config::VerifierConfig;
use platform::client_addr::TrustedProxies;
use platform::config::default_duration;
use secrecy::SecretString;

pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9090";
pub const DEFAULT_AUTH_HTTP_URL: &str = "http://127.0.0.1:8081";
pub const DEFAULT_ORDERS_GRPC_URL: &str = "http://127.0.0.1:50052";
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;
pub const DEFAULT_REQUEST_TIMEOUT: &str = "10s";
pub const DEFAULT_CONNECT_TIMEOUT: &str = "2s";
pub const DEFAULT_SHUTDOWN_DELAY: &str = "5s";
pub const DEFAULT_SHUTDOWN_GRACE: &str = "20s";

/// Everything the gateway needs to start.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "gateway", version, about = "The HTTP edge of the platform")]
pub struct Config {
    /// Where the gateway listens.
    #[arg(long, env = "GATEWAY_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: SocketAddr,

    /// Where `GET /metrics` listens: a port of its own, which no ingress or public Service
    /// exposes (the gateway's port routes every path, the web app included).
    #[arg(long, env = "GATEWAY_METRICS_ADDR", default_value = DEFAULT_METRICS_ADDR)]
    pub metrics_addr: SocketAddr,

    /// The auth-service's HTTP base URL, where `/oauth/*`, `/.well-known/*`, `/v1/sessions*`
    /// and `/v1/logout*` are forwarded.
    #[arg(long, env = "AUTH_HTTP_URL", default_value = DEFAULT_AUTH_HTTP_URL)]
    pub auth_http_url: String,

    /// The orders-service's gRPC endpoint.
    #[arg(long, env = "ORDERS_GRPC_URL", default_value = DEFAULT_ORDERS_GRPC_URL)]
    pub orders_grpc_url: String,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "GATEWAY_MAX_BODY", default_value_t = DEFAULT_MAX_BODY)]
    pub max_body: usize,

    /// Longest time one request may take, upstream calls included.
    #[arg(long, env = "GATEWAY_REQUEST_TIMEOUT", default_value = DEFAULT_REQUEST_TIMEOUT, value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Longest time to open a connection to an upstream service.
    #[arg(long, env = "GATEWAY_CONNECT_TIMEOUT", default_value = DEFAULT_CONNECT_TIMEOUT, value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,

    /// How long to keep serving, reporting not ready, after a shutdown signal, so that
    /// Kubernetes withdraws the endpoint before the listener closes.
    #[arg(long, env = "GATEWAY_SHUTDOWN_DELAY", default_value = DEFAULT_SHUTDOWN_DELAY, value_parser = humantime::parse_duration)]
    pub shutdown_delay: Duration,

    /// How long in-flight requests may take to finish once the listener is closed.
    #[arg(long, env = "GATEWAY_SHUTDOWN_GRACE", default_value = DEFAULT_SHUTDOWN_GRACE, value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// Proxies in front of the gateway (an ingress controller), comma-separated networks or
    /// addresses: for a request from one of them the client is the last `X-Forwarded-For`
    /// entry, the one that proxy wrote. The gateway forwards that one address to the
    /// auth-service, which throttles logins by it. Empty: the TCP peer is the client.
    #[arg(long, env = "GATEWAY_TRUSTED_PROXIES", default_value = "", value_parser = TrustedProxies::parse)]
    pub trusted_proxies: TrustedProxies,

    /// The gateway's external base URL, as browsers reach it (`https://shop.example`): browser
    /// sign-in redirects to `{GATEWAY_PUBLIC_URL}/oauth/authorize` and registers
    /// `{GATEWAY_PUBLIC_URL}/callback` as its redirect URI. Unset: browser sign-in is off.
    #[arg(long, env = "GATEWAY_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// The gateway's own confidential client at the issuer, for browser sign-in (registered with
    /// `auth-service client add --id ID --redirect-uri {GATEWAY_PUBLIC_URL}/callback ...`).
    #[arg(
        id = "gateway_client_id",
        long = "client-id",
        env = "GATEWAY_CLIENT_ID"
    )]
    pub client_id: Option<String>,

    /// The secret of `GATEWAY_CLIENT_ID`. Also the root of the keys that seal the sign-in
    /// cookie and sign CSRF tokens, so every replica with the same secret accepts them.
    #[arg(
        id = "gateway_client_secret",
        long = "client-secret",
        env = "GATEWAY_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub client_secret: Option<SecretString>,

    /// How tokens are verified at the edge (issuer, audience, JWKS, mode).
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
            addr: DEFAULT_ADDR
                .parse()
                .expect("BUG: DEFAULT_ADDR is a socket address"),
            metrics_addr: DEFAULT_METRICS_ADDR
                .parse()
                .expect("BUG: DEFAULT_METRICS_ADDR is a socket address"),
            auth_http_url: DEFAULT_AUTH_HTTP_URL.to_owned(),
            orders_grpc_url: DEFAULT_ORDERS_GRPC_URL.to_owned(),
            max_body: DEFAULT_MAX_BODY,
            request_timeout: default_duration(DEFAULT_REQUEST_TIMEOUT),
            connect_timeout: default_duration(DEFAULT_CONNECT_TIMEOUT),
            shutdown_delay: default_duration(DEFAULT_SHUTDOWN_DELAY),
            shutdown_grace: default_duration(DEFAULT_SHUTDOWN_GRACE),
            trusted_proxies: TrustedProxies::default(),
            public_url: None,
            client_id: None,
            client_secret: None,
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
        // Only the gateway's own variables: others may be set where tests run.
        let parsed = Config::try_parse_from(["gateway"]).unwrap();
        let default = Config::default();
        assert_eq!(parsed.addr, default.addr);
        assert_eq!(parsed.max_body, 64 * 1024);
        assert_eq!(parsed.request_timeout, Duration::from_secs(10));
        assert_eq!(parsed.connect_timeout, default.connect_timeout);
        assert_eq!(parsed.shutdown_grace, default.shutdown_grace);
        assert_eq!(parsed.shutdown_delay, Duration::from_secs(5));
        assert_eq!(parsed.shutdown_delay, default.shutdown_delay);
    }

    #[test]
    fn flags_override_defaults() {
        let parsed = Config::try_parse_from([
            "gateway",
            "--addr",
            "0.0.0.0:80",
            "--auth-http-url",
            "http://auth:8081",
            "--request-timeout",
            "1500ms",
        ])
        .unwrap();
        assert_eq!(parsed.addr, "0.0.0.0:80".parse().unwrap());
        assert_eq!(parsed.auth_http_url, "http://auth:8081");
        assert_eq!(parsed.request_timeout, Duration::from_millis(1500));
    }

    #[test]
    fn browser_sign_in_flags_are_apart_from_the_verifiers_client() {
        let parsed = Config::try_parse_from([
            "gateway",
            "--public-url",
            "https://shop.example",
            "--client-id",
            "web",
            "--client-secret",
            "s3cret",
            "--auth-client-id",
            "gateway",
        ])
        .unwrap();
        assert_eq!(parsed.public_url.as_deref(), Some("https://shop.example"));
        assert_eq!(parsed.client_id.as_deref(), Some("web"));
        assert_eq!(parsed.auth.client_id.as_deref(), Some("gateway"));
        assert!(
            !format!("{parsed:?}").contains("s3cret"),
            "the secret is redacted"
        );
    }
}
