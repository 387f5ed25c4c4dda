//! Configuration: environment variables with matching command-line flags, and their defaults.
//!
//! Every default is a constant of this module and [`Config::default`] is built from the same
//! constants, so tests get exactly what an operator gets without touching the process
//! environment.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use platform::client_addr::TrustedProxies;
use platform::config::default_duration;
use secrecy::SecretString;

pub const ENV_HTTP_ADDR: &str = "AUTH_HTTP_ADDR";
pub const ENV_METRICS_ADDR: &str = "AUTH_METRICS_ADDR";
pub const ENV_GRPC_ADDR: &str = "AUTH_GRPC_ADDR";
pub const ENV_DATABASE_URL: &str = "DATABASE_URL";
pub const ENV_DATABASE_MAX_CONNECTIONS: &str = "DATABASE_MAX_CONNECTIONS";
pub const ENV_DATABASE_MIGRATE: &str = "DATABASE_MIGRATE";
pub const ENV_KEYS_DIR: &str = "AUTH_KEYS_DIR";
pub const ENV_ISSUER: &str = "AUTH_ISSUER";
pub const ENV_AUDIENCE: &str = "AUTH_AUDIENCE";
pub const ENV_ACCESS_TOKEN_TTL: &str = "AUTH_ACCESS_TOKEN_TTL";
pub const ENV_REFRESH_TOKEN_TTL: &str = "AUTH_REFRESH_TOKEN_TTL";
pub const ENV_JWKS_MAX_AGE: &str = "AUTH_JWKS_MAX_AGE";
pub const ENV_REDIS_URL: &str = "REDIS_URL";
pub const ENV_REDIS_CA_FILE: &str = "REDIS_CA_FILE";
pub const ENV_MAX_SESSIONS_PER_USER: &str = "AUTH_MAX_SESSIONS_PER_USER";
pub const ENV_SESSION_STATS_INTERVAL: &str = "AUTH_SESSION_STATS_INTERVAL";
pub const ENV_REVOCATION_HEARTBEAT: &str = "AUTH_REVOCATION_HEARTBEAT";
pub const ENV_REVOCATION_POLL_INTERVAL: &str = "AUTH_REVOCATION_POLL_INTERVAL";
pub const ENV_PURGE_INTERVAL: &str = "AUTH_PURGE_INTERVAL";
pub const ENV_PURGE_BATCH: &str = "AUTH_PURGE_BATCH";
pub const ENV_PURGE_GRACE: &str = "AUTH_PURGE_GRACE";
pub const ENV_KEY_STORE: &str = "AUTH_KEY_STORE";
pub const ENV_KEY_ENCRYPTION_KEY: &str = "AUTH_KEY_ENCRYPTION_KEY";
pub const ENV_KEY_ENCRYPTION_KEY_FILE: &str = "AUTH_KEY_ENCRYPTION_KEY_FILE";
pub const ENV_KEY_ROTATION_INTERVAL: &str = "AUTH_KEY_ROTATION_INTERVAL";
pub const ENV_KEY_PREPUBLISH: &str = "AUTH_KEY_PREPUBLISH";
pub const ENV_KEY_RELOAD_INTERVAL: &str = "AUTH_KEY_RELOAD_INTERVAL";
pub const ENV_KEY_PROMOTION_MAX_WAIT: &str = "AUTH_KEY_PROMOTION_MAX_WAIT";
pub const ENV_VERIFIER_REPORT_TTL: &str = "AUTH_VERIFIER_REPORT_TTL";
pub const ENV_SHUTDOWN_DELAY: &str = "AUTH_SHUTDOWN_DELAY";
pub const ENV_LOGIN_THROTTLE_AFTER: &str = "AUTH_LOGIN_THROTTLE_AFTER";
pub const ENV_LOGIN_LOCK_AFTER: &str = "AUTH_LOGIN_LOCK_AFTER";
pub const ENV_LOGIN_ADDRESS_THROTTLE_AFTER: &str = "AUTH_LOGIN_ADDRESS_THROTTLE_AFTER";
pub const ENV_LOGIN_ADDRESS_LOCK_AFTER: &str = "AUTH_LOGIN_ADDRESS_LOCK_AFTER";
pub const ENV_LOGIN_BASE_DELAY: &str = "AUTH_LOGIN_BASE_DELAY";
pub const ENV_LOGIN_MAX_DELAY: &str = "AUTH_LOGIN_MAX_DELAY";
pub const ENV_LOGIN_LOCK_DURATION: &str = "AUTH_LOGIN_LOCK_DURATION";
pub const ENV_TRUSTED_PROXIES: &str = "AUTH_TRUSTED_PROXIES";
pub const ENV_PASSWORD_GRANT: &str = "AUTH_PASSWORD_GRANT";
pub const ENV_CLIENT_AUTH_THROTTLE_AFTER: &str = "AUTH_CLIENT_AUTH_THROTTLE_AFTER";
pub const ENV_CLIENT_AUTH_LOCK_AFTER: &str = "AUTH_CLIENT_AUTH_LOCK_AFTER";
pub const ENV_CLIENT_AUTH_ADDRESS_THROTTLE_AFTER: &str = "AUTH_CLIENT_AUTH_ADDRESS_THROTTLE_AFTER";
pub const ENV_CLIENT_AUTH_ADDRESS_LOCK_AFTER: &str = "AUTH_CLIENT_AUTH_ADDRESS_LOCK_AFTER";
pub const ENV_CLIENT_AUTH_BASE_DELAY: &str = "AUTH_CLIENT_AUTH_BASE_DELAY";
pub const ENV_CLIENT_AUTH_MAX_DELAY: &str = "AUTH_CLIENT_AUTH_MAX_DELAY";
pub const ENV_CLIENT_AUTH_LOCK_DURATION: &str = "AUTH_CLIENT_AUTH_LOCK_DURATION";
pub const ENV_ARGON2_PERMITS: &str = "AUTH_ARGON2_PERMITS";
pub const ENV_ARGON2_MAX_WAITING: &str = "AUTH_ARGON2_MAX_WAITING";

/// Memory one Argon2 run holds while it runs: the memory cost of the parameters every hash is
/// made with (`crate::passwords` uses the crate's defaults, `m=19456` KiB, 19 MiB). The default
/// permits are derived from it and the cgroup memory limit (`Argon2Config::permits_in_effect`).
pub const ARGON2_MEMORY_PER_RUN: u64 = argon2::Params::DEFAULT_M_COST as u64 * 1024;

pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8081";
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9091";
pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:50051";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/auth.db";
pub const DEFAULT_DATABASE_MAX_CONNECTIONS: u32 = 10;
/// `DATABASE_MIGRATE` true: the embedded SQLite defaults and the local stack need no step.
pub const DEFAULT_DATABASE_MIGRATE: bool = true;
pub const DEFAULT_KEYS_DIR: &str = "data/keys";
pub const DEFAULT_ISSUER: &str = "http://127.0.0.1:8081";
pub const DEFAULT_AUDIENCE: &str = "orders";
pub const DEFAULT_ACCESS_TOKEN_TTL: &str = "5m";
pub const DEFAULT_REFRESH_TOKEN_TTL: &str = "14d";
pub const DEFAULT_JWKS_MAX_AGE: &str = "5m";
pub const DEFAULT_MAX_SESSIONS_PER_USER: u32 = 0;
pub const DEFAULT_SESSION_STATS_INTERVAL: &str = "15s";
pub const DEFAULT_REVOCATION_HEARTBEAT: &str = "1s";
pub const DEFAULT_REVOCATION_POLL_INTERVAL: &str = "2s";
pub const DEFAULT_PURGE_INTERVAL: &str = "1m";
pub const DEFAULT_PURGE_BATCH: u32 = 1000;
pub const DEFAULT_PURGE_GRACE: &str = "1h";
/// The pause between two batches of the purge (not a setting).
pub const DEFAULT_PURGE_PAUSE: Duration = Duration::from_millis(50);
pub const DEFAULT_KEY_ROTATION_INTERVAL: &str = "30d";
pub const DEFAULT_KEY_RELOAD_INTERVAL: &str = "10s";
pub const DEFAULT_KEY_PROMOTION_MAX_WAIT: &str = "15m";
pub const DEFAULT_VERIFIER_REPORT_TTL: &str = "90s";
pub const DEFAULT_SHUTDOWN_DELAY: &str = "5s";
pub const DEFAULT_SHUTDOWN_GRACE: &str = "20s";
pub const DEFAULT_CLIENT_CACHE_TTL: &str = "5s";
pub const DEFAULT_LOGIN_THROTTLE_AFTER: u32 = 5;
pub const DEFAULT_LOGIN_LOCK_AFTER: u32 = 10;
pub const DEFAULT_LOGIN_ADDRESS_THROTTLE_AFTER: u32 = 20;
pub const DEFAULT_LOGIN_ADDRESS_LOCK_AFTER: u32 = 100;
pub const DEFAULT_LOGIN_BASE_DELAY: &str = "1s";
pub const DEFAULT_LOGIN_MAX_DELAY: &str = "30s";
pub const DEFAULT_LOGIN_LOCK_DURATION: &str = "15m";
pub const DEFAULT_CLIENT_AUTH_THROTTLE_AFTER: u32 = 5;
pub const DEFAULT_CLIENT_AUTH_LOCK_AFTER: u32 = 10;
pub const DEFAULT_CLIENT_AUTH_ADDRESS_THROTTLE_AFTER: u32 = 20;
pub const DEFAULT_CLIENT_AUTH_ADDRESS_LOCK_AFTER: u32 = 100;
pub const DEFAULT_CLIENT_AUTH_BASE_DELAY: &str = "1s";
pub const DEFAULT_CLIENT_AUTH_MAX_DELAY: &str = "30s";
pub const DEFAULT_CLIENT_AUTH_LOCK_DURATION: &str = "15m";
/// `AUTH_ARGON2_PERMITS` 0: one Argon2 run at a time per CPU, at least two, and no more than
/// the memory limit holds ([`Argon2Config::permits_in_effect`]).
pub const DEFAULT_ARGON2_PERMITS: usize = 0;
/// What the process needs besides its Argon2 runs, kept out of the memory limit when the
/// permits are derived from it: 32 MiB of baseline (the measured peak RSS under load, 26 MB,
/// rounded up) and 64 MiB of margin (allocator fragmentation, bursts of connections, the
/// Redis and database buffers). docs/OPERATIONS.md, "Argon2 capacity".
pub const ARGON2_MEMORY_HEADROOM: u64 = 96 * 1024 * 1024;
/// cgroup v2's memory limit of the process's cgroup ("max": none).
pub const CGROUP_V2_MEMORY_MAX: &str = "/sys/fs/cgroup/memory.max";
/// cgroup v1's memory limit (a huge number: none).
pub const CGROUP_V1_MEMORY_LIMIT: &str = "/sys/fs/cgroup/memory/memory.limit_in_bytes";
/// Without `AUTH_ARGON2_MAX_WAITING`: this many waiters per permit. A full queue drains in
/// about this many Argon2 runs' time (some 30 ms each), far within a login's patience and the
/// verifiers' 2 s deadline on their service-token requests.
pub const DEFAULT_ARGON2_WAITING_PER_PERMIT: usize = 8;

/// Where the signing keys live (`AUTH_KEY_STORE`). See `docs/KEYS.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum KeyStoreKind {
    /// `database` with an encryption key configured; otherwise `mounted` when `AUTH_KEYS_DIR`
    /// exists and cannot be written (a Kubernetes Secret), else `files`.
    #[default]
    Auto,
    /// In the database, private keys encrypted with AES-256-GCM under
    /// `AUTH_KEY_ENCRYPTION_KEY(_FILE)`. Shared by every replica.
    Database,
    /// PKCS#8 PEM files in `AUTH_KEYS_DIR` with their states in `keys.json`, rotated by the
    /// service (one replica, or replicas sharing the directory).
    Files,
    /// PEM files in `AUTH_KEYS_DIR` managed by the operator (a mounted Secret), read-only:
    /// `signing-key.pem` signs, `next*.pem` are published ahead, any other `*.pem` is published
    /// for verification only. The service never rotates them.
    Mounted,
}

impl KeyStoreKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyStoreKind::Auto => "auto",
            KeyStoreKind::Database => "database",
            KeyStoreKind::Files => "files",
            KeyStoreKind::Mounted => "mounted",
        }
    }
}

/// The service configuration. Flags are global, so they apply to every subcommand.
#[derive(Clone, Args)]
pub struct Config {
    /// Address of the HTTP listener (token, authorization and admin endpoints, JWKS, health).
    #[arg(long, env = ENV_HTTP_ADDR, default_value = DEFAULT_HTTP_ADDR, global = true)]
    pub http_addr: SocketAddr,

    /// Address of the metrics listener (`GET /metrics` only). Apart from the HTTP port so that
    /// no ingress or public Service exposes it and NetworkPolicies can open it to monitoring
    /// alone.
    #[arg(long, env = ENV_METRICS_ADDR, default_value = DEFAULT_METRICS_ADDR, global = true)]
    pub metrics_addr: SocketAddr,

    /// Address of the gRPC listener (`auth.v1.SessionService`).
    #[arg(long, env = ENV_GRPC_ADDR, default_value = DEFAULT_GRPC_ADDR, global = true)]
    pub grpc_addr: SocketAddr,

    /// `sqlite://path` (created if missing) or `postgres://...`. May carry a password: never
    /// printed in full.
    #[arg(long, env = ENV_DATABASE_URL, default_value = DEFAULT_DATABASE_URL, global = true, hide_env_values = true)]
    pub database_url: String,

    /// Size of the database connection pool.
    #[arg(long, env = ENV_DATABASE_MAX_CONNECTIONS, default_value_t = DEFAULT_DATABASE_MAX_CONNECTIONS, global = true)]
    pub database_max_connections: u32,

    /// Apply pending database migrations at start (`serve` and the operator commands). `false`
    /// (production: a Job runs `auth-service migrate` with DDL rights first) only checks that
    /// every migration of this release is applied, and refuses to start otherwise. Either way,
    /// migrations of a newer release are tolerated, so a rollback starts.
    #[arg(long, env = ENV_DATABASE_MIGRATE, default_value_t = DEFAULT_DATABASE_MIGRATE, action = clap::ArgAction::Set, global = true)]
    pub database_migrate: bool,

    /// Directory of the signing keys in the `files` and `mounted` stores (`signing-key.pem`,
    /// `keys.json`), created with mode 0700.
    #[arg(long, env = ENV_KEYS_DIR, default_value = DEFAULT_KEYS_DIR, global = true)]
    pub keys_dir: PathBuf,

    /// The `iss` of issued tokens; also the base URL of the published endpoints.
    #[arg(long, env = ENV_ISSUER, default_value = DEFAULT_ISSUER, global = true)]
    pub issuer: String,

    /// The `aud` of issued access tokens.
    #[arg(long, env = ENV_AUDIENCE, default_value = DEFAULT_AUDIENCE, global = true)]
    pub audience: String,

    /// Lifetime of access tokens (humantime: `5m`, `1h`).
    #[arg(long, env = ENV_ACCESS_TOKEN_TTL, default_value = DEFAULT_ACCESS_TOKEN_TTL, value_parser = humantime::parse_duration, global = true)]
    pub access_token_ttl: Duration,

    /// Lifetime of a session and of its refresh tokens (absolute, counted from the login).
    #[arg(long, env = ENV_REFRESH_TOKEN_TTL, default_value = DEFAULT_REFRESH_TOKEN_TTL, value_parser = humantime::parse_duration, global = true)]
    pub refresh_token_ttl: Duration,

    /// `Cache-Control: max-age` of the JWKS document.
    #[arg(long, env = ENV_JWKS_MAX_AGE, default_value = DEFAULT_JWKS_MAX_AGE, value_parser = humantime::parse_duration, global = true)]
    pub jwks_max_age: Duration,

    /// `redis://...`: keep sessions in Redis (shared by several replicas, readable by `stateful`
    /// verifiers) and fan revocation events out to every replica. Unset: sessions in SQL.
    /// `rediss://` connects over TLS. May carry a password: never printed in full.
    #[arg(long, env = ENV_REDIS_URL, global = true, hide_env_values = true)]
    pub redis_url: Option<String>,

    /// PEM file of the CA(s) that sign the Redis server's certificate, for a `rediss://`
    /// `REDIS_URL`; replaces the public roots. Unset: the public roots (webpki-roots).
    #[arg(long, env = ENV_REDIS_CA_FILE, global = true)]
    pub redis_ca_file: Option<PathBuf>,

    /// Most active sessions per user; a login beyond it ends the user's oldest sessions. 0:
    /// unlimited.
    #[arg(long, env = ENV_MAX_SESSIONS_PER_USER, default_value_t = DEFAULT_MAX_SESSIONS_PER_USER, global = true)]
    pub max_sessions_per_user: u32,

    /// How often `auth_sessions_active` and `auth_users_active` are recomputed from the session
    /// store (`sessions::stats`); scrapes read the last values. `0s`: never (no such gauges).
    #[arg(long = "session-stats-interval", value_name = "SESSION_STATS_INTERVAL", env = ENV_SESSION_STATS_INTERVAL, default_value = DEFAULT_SESSION_STATS_INTERVAL, value_parser = humantime::parse_duration, global = true)]
    pub session_stats_interval: Duration,

    /// The revocation feed: `AUTH_REVOCATION_*`.
    #[command(flatten)]
    pub revocation: RevocationConfig,

    /// The purge of expired rows: `AUTH_PURGE_*`.
    #[command(flatten)]
    pub purge: PurgeConfig,

    /// The signing keys: `AUTH_KEY_*` (with `AUTH_KEYS_DIR` and `AUTH_JWKS_MAX_AGE` above).
    #[command(flatten)]
    pub keys: KeysConfig,

    /// How long to keep serving, reporting not ready, after a shutdown signal, so that
    /// Kubernetes withdraws the endpoint (and verifiers re-resolve the headless gRPC Service)
    /// before the listeners close. In-flight requests then have `AUTH_SHUTDOWN_GRACE` to finish.
    #[arg(long, env = ENV_SHUTDOWN_DELAY, default_value = DEFAULT_SHUTDOWN_DELAY, value_parser = humantime::parse_duration, global = true)]
    pub shutdown_delay: Duration,

    /// How long in-flight requests may take to finish once the listeners are closed; whatever
    /// is left after it is cut.
    #[arg(long, env = "AUTH_SHUTDOWN_GRACE", default_value = DEFAULT_SHUTDOWN_GRACE, value_parser = humantime::parse_duration, global = true)]
    pub shutdown_grace: Duration,

    /// How long the token endpoint reuses a client's row (scopes, roles, secret hash) after
    /// reading it: a client changed or removed in the database is seen within this time. 0:
    /// read on every request.
    #[arg(long, env = "AUTH_CLIENT_CACHE_TTL", default_value = DEFAULT_CLIENT_CACHE_TTL, value_parser = humantime::parse_duration, global = true)]
    pub client_cache_ttl: Duration,

    /// Login throttling: `AUTH_LOGIN_*`.
    #[command(flatten)]
    pub login_throttle: LoginThrottleConfig,

    /// Client-authentication throttling: `AUTH_CLIENT_AUTH_*`.
    #[command(flatten)]
    pub client_auth_throttle: ClientAuthThrottleConfig,

    /// The Argon2 runs and their queue: `AUTH_ARGON2_*`.
    #[command(flatten)]
    pub argon2: Argon2Config,

    /// Comma-separated addresses or networks (`10.0.0.0/8,fd00::/8`) of the reverse proxies
    /// (the gateway) whose `X-Forwarded-For` names the client for login throttling. Empty: the
    /// TCP peer is the client.
    #[arg(long, env = ENV_TRUSTED_PROXIES, default_value = "", value_parser = TrustedProxies::parse, global = true)]
    pub trusted_proxies: TrustedProxies,

    /// Serve the legacy `password` grant (first-party tools). `false` answers it with
    /// `unsupported_grant_type` and leaves it out of discovery: browsers sign in through
    /// `/oauth/authorize` instead. Off in the production overlay.
    #[arg(long, env = ENV_PASSWORD_GRANT, default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub password_grant: bool,
}

/// The revocation feed's intervals (`AUTH_REVOCATION_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Args)]
pub struct RevocationConfig {
    /// Interval of the heartbeats on `WatchRevocations` streams.
    #[arg(long = "revocation-heartbeat", value_name = "REVOCATION_HEARTBEAT", env = ENV_REVOCATION_HEARTBEAT, default_value = DEFAULT_REVOCATION_HEARTBEAT, value_parser = parse_positive_duration, global = true)]
    pub heartbeat: Duration,

    /// How often the revocation table is polled for events written elsewhere (other replicas,
    /// the CLI), in case their notification was missed.
    #[arg(long = "revocation-poll-interval", value_name = "REVOCATION_POLL_INTERVAL", env = ENV_REVOCATION_POLL_INTERVAL, default_value = DEFAULT_REVOCATION_POLL_INTERVAL, value_parser = parse_positive_duration, global = true)]
    pub poll_interval: Duration,
}

impl Default for RevocationConfig {
    fn default() -> Self {
        Self {
            heartbeat: default_duration(DEFAULT_REVOCATION_HEARTBEAT),
            poll_interval: default_duration(DEFAULT_REVOCATION_POLL_INTERVAL),
        }
    }
}

/// The purge of expired sessions, refresh tokens and revocation events (`AUTH_PURGE_*`; what is
/// kept how long: `sessions::purge`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Args)]
pub struct PurgeConfig {
    /// How often each replica deletes what has expired (sessions and refresh tokens past
    /// `AUTH_PURGE_GRACE`, revocation events no verifier needs). `0s`: never (another replica,
    /// or a job, purges).
    #[arg(id = "purge_interval", long = "purge-interval", value_name = "PURGE_INTERVAL", env = ENV_PURGE_INTERVAL, default_value = DEFAULT_PURGE_INTERVAL, value_parser = humantime::parse_duration, global = true)]
    pub interval: Duration,

    /// Rows deleted per statement; the purge pauses between batches and goes on until a batch
    /// comes back short, so no statement holds its locks for long.
    #[arg(id = "purge_batch", long = "purge-batch", value_name = "PURGE_BATCH", env = ENV_PURGE_BATCH, default_value_t = DEFAULT_PURGE_BATCH, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub batch: u32,

    /// How long a session's family (its row and refresh tokens) is kept after the session's
    /// absolute end (`AUTH_REFRESH_TOKEN_TTL` after the login, whether or not it ended earlier).
    #[arg(id = "purge_grace", long = "purge-grace", value_name = "PURGE_GRACE", env = ENV_PURGE_GRACE, default_value = DEFAULT_PURGE_GRACE, value_parser = humantime::parse_duration, global = true)]
    pub grace: Duration,

    /// The pause between two batches.
    #[arg(skip = DEFAULT_PURGE_PAUSE)]
    pub pause: Duration,
}

impl Default for PurgeConfig {
    fn default() -> Self {
        Self {
            interval: default_duration(DEFAULT_PURGE_INTERVAL),
            batch: DEFAULT_PURGE_BATCH,
            grace: default_duration(DEFAULT_PURGE_GRACE),
            pause: DEFAULT_PURGE_PAUSE,
        }
    }
}

/// The signing keys' store and schedule (`AUTH_KEY_*`). The key manager takes these with the
/// key directory, the JWKS max-age and the access-token lifetime (`keys::KeySettings`).
#[derive(Debug, Clone, Args)]
pub struct KeysConfig {
    /// Where the signing keys live: `auto`, `database`, `files` or `mounted` (docs/KEYS.md).
    #[arg(long = "key-store", value_name = "KEY_STORE", env = ENV_KEY_STORE, value_enum, default_value_t = KeyStoreKind::Auto, global = true)]
    pub store: KeyStoreKind,

    /// The key that encrypts the private signing keys in the database: 32 bytes, base64
    /// (`openssl rand -base64 32`). Never printed.
    #[arg(long = "key-encryption-key", value_name = "KEY_ENCRYPTION_KEY", env = ENV_KEY_ENCRYPTION_KEY, hide_env_values = true, global = true)]
    pub encryption_key: Option<SecretString>,

    /// A file holding `AUTH_KEY_ENCRYPTION_KEY` (a mounted Secret).
    #[arg(long = "key-encryption-key-file", value_name = "KEY_ENCRYPTION_KEY_FILE", env = ENV_KEY_ENCRYPTION_KEY_FILE, global = true)]
    pub encryption_key_file: Option<PathBuf>,

    /// How long a key signs before the next one takes over. `0s` turns scheduled rotation off
    /// (manual rotation only).
    #[arg(long = "key-rotation-interval", value_name = "KEY_ROTATION_INTERVAL", env = ENV_KEY_ROTATION_INTERVAL, default_value = DEFAULT_KEY_ROTATION_INTERVAL, value_parser = humantime::parse_duration, global = true)]
    pub rotation_interval: Duration,

    /// How long a new key is published before it signs. Default: 2 x `AUTH_JWKS_MAX_AGE` + 1
    /// minute.
    #[arg(long = "key-prepublish", value_name = "KEY_PREPUBLISH", env = ENV_KEY_PREPUBLISH, value_parser = humantime::parse_duration, global = true)]
    pub prepublish: Option<Duration>,

    /// How often each replica re-reads the key set and runs the rotation schedule.
    #[arg(long = "key-reload-interval", value_name = "KEY_RELOAD_INTERVAL", env = ENV_KEY_RELOAD_INTERVAL, default_value = DEFAULT_KEY_RELOAD_INTERVAL, value_parser = parse_positive_duration, global = true)]
    pub reload_interval: Duration,

    /// How long a due `next` key waits for every connected verifier to report that it holds
    /// it before it signs anyway (with a warning and `auth_key_promotions_forced_total`).
    /// `0s`: promote on time, without waiting.
    #[arg(long = "key-promotion-max-wait", value_name = "KEY_PROMOTION_MAX_WAIT", env = ENV_KEY_PROMOTION_MAX_WAIT, default_value = DEFAULT_KEY_PROMOTION_MAX_WAIT, value_parser = humantime::parse_duration, global = true)]
    pub promotion_max_wait: Duration,

    /// How long a verifier's report of the keys it holds counts: a verifier that has not
    /// reported for this long is no longer waited for. Verifiers renew theirs every third of it.
    #[arg(long = "verifier-report-ttl", value_name = "VERIFIER_REPORT_TTL", env = ENV_VERIFIER_REPORT_TTL, default_value = DEFAULT_VERIFIER_REPORT_TTL, value_parser = parse_positive_duration, global = true)]
    pub verifier_report_ttl: Duration,

    /// The algorithm of the keys the service generates (the first key and scheduled
    /// rotations): `RS256` (RSA-2048), `ES256` (P-256) or `EdDSA` (Ed25519). Keys already
    /// stored keep theirs (docs/KEYS.md).
    #[arg(
        long = "signing-alg",
        value_name = "SIGNING_ALG",
        env = "AUTH_SIGNING_ALG",
        default_value = "RS256",
        global = true
    )]
    pub signing_alg: authn::jwk::Algorithm,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            store: KeyStoreKind::Auto,
            encryption_key: None,
            encryption_key_file: None,
            rotation_interval: default_duration(DEFAULT_KEY_ROTATION_INTERVAL),
            prepublish: None,
            reload_interval: default_duration(DEFAULT_KEY_RELOAD_INTERVAL),
            promotion_max_wait: default_duration(DEFAULT_KEY_PROMOTION_MAX_WAIT),
            verifier_report_ttl: default_duration(DEFAULT_VERIFIER_REPORT_TTL),
            signing_alg: authn::jwk::Algorithm::Rs256,
        }
    }
}

/// The login throttle's limits (`AUTH_LOGIN_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Args)]
pub struct LoginThrottleConfig {
    /// Failed password logins of one account (by username, whether or not it exists) after which
    /// each further attempt must wait a growing delay. 0: never delayed.
    #[arg(long = "login-throttle-after", value_name = "LOGIN_THROTTLE_AFTER", env = ENV_LOGIN_THROTTLE_AFTER, default_value_t = DEFAULT_LOGIN_THROTTLE_AFTER, global = true)]
    pub throttle_after: u32,

    /// Failed password logins of one account after which it is locked for
    /// `AUTH_LOGIN_LOCK_DURATION`, the right password included. 0: never locked.
    #[arg(long = "login-lock-after", value_name = "LOGIN_LOCK_AFTER", env = ENV_LOGIN_LOCK_AFTER, default_value_t = DEFAULT_LOGIN_LOCK_AFTER, global = true)]
    pub lock_after: u32,

    /// As `AUTH_LOGIN_THROTTLE_AFTER`, for the failures from one client address (any username).
    #[arg(long = "login-address-throttle-after", value_name = "LOGIN_ADDRESS_THROTTLE_AFTER", env = ENV_LOGIN_ADDRESS_THROTTLE_AFTER, default_value_t = DEFAULT_LOGIN_ADDRESS_THROTTLE_AFTER, global = true)]
    pub address_throttle_after: u32,

    /// As `AUTH_LOGIN_LOCK_AFTER`, for the failures from one client address (any username).
    #[arg(long = "login-address-lock-after", value_name = "LOGIN_ADDRESS_LOCK_AFTER", env = ENV_LOGIN_ADDRESS_LOCK_AFTER, default_value_t = DEFAULT_LOGIN_ADDRESS_LOCK_AFTER, global = true)]
    pub address_lock_after: u32,

    /// The first login delay; it doubles with each further failure.
    #[arg(long = "login-base-delay", value_name = "LOGIN_BASE_DELAY", env = ENV_LOGIN_BASE_DELAY, default_value = DEFAULT_LOGIN_BASE_DELAY, value_parser = parse_positive_duration, global = true)]
    pub base_delay: Duration,

    /// The longest login delay.
    #[arg(long = "login-max-delay", value_name = "LOGIN_MAX_DELAY", env = ENV_LOGIN_MAX_DELAY, default_value = DEFAULT_LOGIN_MAX_DELAY, value_parser = parse_positive_duration, global = true)]
    pub max_delay: Duration,

    /// How long a login lock lasts; failures are also forgotten this long after the last one.
    #[arg(long = "login-lock-duration", value_name = "LOGIN_LOCK_DURATION", env = ENV_LOGIN_LOCK_DURATION, default_value = DEFAULT_LOGIN_LOCK_DURATION, value_parser = parse_positive_duration, global = true)]
    pub lock_duration: Duration,
}

impl Default for LoginThrottleConfig {
    fn default() -> Self {
        Self {
            throttle_after: DEFAULT_LOGIN_THROTTLE_AFTER,
            lock_after: DEFAULT_LOGIN_LOCK_AFTER,
            address_throttle_after: DEFAULT_LOGIN_ADDRESS_THROTTLE_AFTER,
            address_lock_after: DEFAULT_LOGIN_ADDRESS_LOCK_AFTER,
            base_delay: default_duration(DEFAULT_LOGIN_BASE_DELAY),
            max_delay: default_duration(DEFAULT_LOGIN_MAX_DELAY),
            lock_duration: default_duration(DEFAULT_LOGIN_LOCK_DURATION),
        }
    }
}

/// The client-authentication throttle's limits (`AUTH_CLIENT_AUTH_*`): failed client
/// authentications (token, revocation, introspection) per client id and per client address,
/// checked before Argon2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Args)]
pub struct ClientAuthThrottleConfig {
    /// Failed authentications of one client id (registered or not) after which each further
    /// attempt must wait a growing delay. 0: never delayed.
    #[arg(id = "client_auth_throttle_after", long = "client-auth-throttle-after", value_name = "CLIENT_AUTH_THROTTLE_AFTER", env = ENV_CLIENT_AUTH_THROTTLE_AFTER, default_value_t = DEFAULT_CLIENT_AUTH_THROTTLE_AFTER, global = true)]
    pub throttle_after: u32,

    /// Failed authentications of one client id after which it is locked for
    /// `AUTH_CLIENT_AUTH_LOCK_DURATION` (except from the addresses it authenticated from
    /// before). 0: never locked.
    #[arg(id = "client_auth_lock_after", long = "client-auth-lock-after", value_name = "CLIENT_AUTH_LOCK_AFTER", env = ENV_CLIENT_AUTH_LOCK_AFTER, default_value_t = DEFAULT_CLIENT_AUTH_LOCK_AFTER, global = true)]
    pub lock_after: u32,

    /// As `AUTH_CLIENT_AUTH_THROTTLE_AFTER`, for the failures from one client address (any
    /// client id).
    #[arg(id = "client_auth_address_throttle_after", long = "client-auth-address-throttle-after", value_name = "CLIENT_AUTH_ADDRESS_THROTTLE_AFTER", env = ENV_CLIENT_AUTH_ADDRESS_THROTTLE_AFTER, default_value_t = DEFAULT_CLIENT_AUTH_ADDRESS_THROTTLE_AFTER, global = true)]
    pub address_throttle_after: u32,

    /// As `AUTH_CLIENT_AUTH_LOCK_AFTER`, for the failures from one client address (any client
    /// id).
    #[arg(id = "client_auth_address_lock_after", long = "client-auth-address-lock-after", value_name = "CLIENT_AUTH_ADDRESS_LOCK_AFTER", env = ENV_CLIENT_AUTH_ADDRESS_LOCK_AFTER, default_value_t = DEFAULT_CLIENT_AUTH_ADDRESS_LOCK_AFTER, global = true)]
    pub address_lock_after: u32,

    /// The first delay; it doubles with each further failure.
    #[arg(id = "client_auth_base_delay", long = "client-auth-base-delay", value_name = "CLIENT_AUTH_BASE_DELAY", env = ENV_CLIENT_AUTH_BASE_DELAY, default_value = DEFAULT_CLIENT_AUTH_BASE_DELAY, value_parser = parse_positive_duration, global = true)]
    pub base_delay: Duration,

    /// The longest delay.
    #[arg(id = "client_auth_max_delay", long = "client-auth-max-delay", value_name = "CLIENT_AUTH_MAX_DELAY", env = ENV_CLIENT_AUTH_MAX_DELAY, default_value = DEFAULT_CLIENT_AUTH_MAX_DELAY, value_parser = parse_positive_duration, global = true)]
    pub max_delay: Duration,

    /// How long a lock lasts; failures are also forgotten this long after the last one.
    #[arg(id = "client_auth_lock_duration", long = "client-auth-lock-duration", value_name = "CLIENT_AUTH_LOCK_DURATION", env = ENV_CLIENT_AUTH_LOCK_DURATION, default_value = DEFAULT_CLIENT_AUTH_LOCK_DURATION, value_parser = parse_positive_duration, global = true)]
    pub lock_duration: Duration,
}

impl Default for ClientAuthThrottleConfig {
    fn default() -> Self {
        Self {
            throttle_after: DEFAULT_CLIENT_AUTH_THROTTLE_AFTER,
            lock_after: DEFAULT_CLIENT_AUTH_LOCK_AFTER,
            address_throttle_after: DEFAULT_CLIENT_AUTH_ADDRESS_THROTTLE_AFTER,
            address_lock_after: DEFAULT_CLIENT_AUTH_ADDRESS_LOCK_AFTER,
            base_delay: default_duration(DEFAULT_CLIENT_AUTH_BASE_DELAY),
            max_delay: default_duration(DEFAULT_CLIENT_AUTH_MAX_DELAY),
            lock_duration: default_duration(DEFAULT_CLIENT_AUTH_LOCK_DURATION),
        }
    }
}

/// How many Argon2 runs at once, and how many may wait (`AUTH_ARGON2_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Args)]
pub struct Argon2Config {
    /// Argon2 runs at once (each holds 19 MiB while it runs). 0: one per CPU, at least two, but
    /// no more than fit in the cgroup memory limit after a 96 MiB headroom.
    #[arg(id = "argon2_permits", long = "argon2-permits", value_name = "ARGON2_PERMITS", env = ENV_ARGON2_PERMITS, default_value_t = DEFAULT_ARGON2_PERMITS, global = true)]
    pub permits: usize,

    /// Verifications (logins, client authentications) that may wait for a running Argon2 to
    /// finish; one more is answered 503 with `Retry-After` at once instead of waiting. Default:
    /// 8 per permit. 0: none waits.
    #[arg(id = "argon2_max_waiting", long = "argon2-max-waiting", value_name = "ARGON2_MAX_WAITING", env = ENV_ARGON2_MAX_WAITING, global = true)]
    pub max_waiting: Option<usize>,
}

/// How many Argon2 runs at once, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Permits {
    pub permits: usize,
    pub reason: PermitsReason,
}

/// Where [`Argon2Permits::permits`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermitsReason {
    /// `AUTH_ARGON2_PERMITS` set.
    Configured,
    /// One per CPU (at least two), no memory limit or one that holds them.
    Cpus,
    /// Fewer than the CPUs, so that the runs fit in the cgroup memory limit.
    MemoryLimit { limit_bytes: u64 },
}

impl Argon2Config {
    /// The permits in effect: `permits`, or for 0 one per CPU (at least two) capped by what the
    /// cgroup memory limit holds.
    pub fn effective_permits(&self) -> usize {
        self.permits_in_effect().permits
    }

    /// The permits in effect and why, reading the process's cgroup memory limit.
    pub fn permits_in_effect(&self) -> Argon2Permits {
        let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let limit = cgroup_memory_limit(
            std::fs::read_to_string(CGROUP_V2_MEMORY_MAX)
                .ok()
                .as_deref(),
            std::fs::read_to_string(CGROUP_V1_MEMORY_LIMIT)
                .ok()
                .as_deref(),
        );
        self.permits_for(cpus, limit)
    }

    /// The rule of [`Argon2Config::permits_in_effect`], without reading anything: an explicit
    /// `permits` wins; else the smaller of max(`cpus`, 2) and (limit - headroom) / memory per
    /// run, at least one.
    pub fn permits_for(&self, cpus: usize, memory_limit: Option<u64>) -> Argon2Permits {
        if self.permits > 0 {
            return Argon2Permits {
                permits: self.permits,
                reason: PermitsReason::Configured,
            };
        }
        let by_cpu = cpus.max(2);
        let Some(limit) = memory_limit else {
            return Argon2Permits {
                permits: by_cpu,
                reason: PermitsReason::Cpus,
            };
        };
        let by_memory = limit.saturating_sub(ARGON2_MEMORY_HEADROOM) / ARGON2_MEMORY_PER_RUN;
        let by_memory = usize::try_from(by_memory).unwrap_or(usize::MAX).max(1);
        if by_memory < by_cpu {
            Argon2Permits {
                permits: by_memory,
                reason: PermitsReason::MemoryLimit { limit_bytes: limit },
            }
        } else {
            Argon2Permits {
                permits: by_cpu,
                reason: PermitsReason::Cpus,
            }
        }
    }

    /// The waiting room in effect: `max_waiting`, or [`DEFAULT_ARGON2_WAITING_PER_PERMIT`] per
    /// permit.
    pub fn effective_max_waiting(&self) -> usize {
        self.max_waiting.unwrap_or_else(|| {
            self.effective_permits()
                .saturating_mul(DEFAULT_ARGON2_WAITING_PER_PERMIT)
        })
    }
}

/// The memory limit of the process's cgroup from the contents of cgroup v2's `memory.max` or,
/// without it, v1's `memory.limit_in_bytes`; `None` when neither sets one ("max", or v1's
/// page-rounded `i64::MAX` meaning unlimited) or neither reads.
pub fn cgroup_memory_limit(
    v2_memory_max: Option<&str>,
    v1_limit_in_bytes: Option<&str>,
) -> Option<u64> {
    /// v1 reports "no limit" as a number near `i64::MAX`; no real limit comes close to this.
    const V1_UNLIMITED: u64 = 1 << 62;
    if let Some(v2) = v2_memory_max {
        return v2.trim().parse::<u64>().ok();
    }
    v1_limit_in_bytes?
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|limit| *limit < V1_UNLIMITED)
}

/// A humantime duration greater than zero (an interval of zero would spin).
fn parse_positive_duration(value: &str) -> Result<Duration, String> {
    match humantime::parse_duration(value) {
        Ok(duration) if duration.is_zero() => Err("must be greater than zero".to_owned()),
        Ok(duration) => Ok(duration),
        Err(e) => Err(e.to_string()),
    }
}

impl Config {
    /// The issuer without a trailing slash, the base of every published URL.
    pub fn issuer_base(&self) -> &str {
        self.issuer.trim_end_matches('/')
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http_addr: DEFAULT_HTTP_ADDR
                .parse()
                .expect("BUG: DEFAULT_HTTP_ADDR is a socket address"),
            metrics_addr: DEFAULT_METRICS_ADDR
                .parse()
                .expect("BUG: DEFAULT_METRICS_ADDR is a socket address"),
            grpc_addr: DEFAULT_GRPC_ADDR
                .parse()
                .expect("BUG: DEFAULT_GRPC_ADDR is a socket address"),
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            database_max_connections: DEFAULT_DATABASE_MAX_CONNECTIONS,
            database_migrate: DEFAULT_DATABASE_MIGRATE,
            keys_dir: PathBuf::from(DEFAULT_KEYS_DIR),
            issuer: DEFAULT_ISSUER.to_owned(),
            audience: DEFAULT_AUDIENCE.to_owned(),
            access_token_ttl: default_duration(DEFAULT_ACCESS_TOKEN_TTL),
            refresh_token_ttl: default_duration(DEFAULT_REFRESH_TOKEN_TTL),
            jwks_max_age: default_duration(DEFAULT_JWKS_MAX_AGE),
            redis_url: None,
            redis_ca_file: None,
            max_sessions_per_user: DEFAULT_MAX_SESSIONS_PER_USER,
            session_stats_interval: default_duration(DEFAULT_SESSION_STATS_INTERVAL),
            revocation: RevocationConfig::default(),
            purge: PurgeConfig::default(),
            keys: KeysConfig::default(),
            client_cache_ttl: default_duration(DEFAULT_CLIENT_CACHE_TTL),
            shutdown_grace: default_duration(DEFAULT_SHUTDOWN_GRACE),
            shutdown_delay: default_duration(DEFAULT_SHUTDOWN_DELAY),
            login_throttle: LoginThrottleConfig::default(),
            client_auth_throttle: ClientAuthThrottleConfig::default(),
            argon2: Argon2Config::default(),
            trusted_proxies: TrustedProxies::default(),
            password_grant: true,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("http_addr", &self.http_addr)
            .field("metrics_addr", &self.metrics_addr)
            .field("grpc_addr", &self.grpc_addr)
            .field("database_url", &redact_url(&self.database_url))
            .field("database_max_connections", &self.database_max_connections)
            .field("database_migrate", &self.database_migrate)
            .field("keys_dir", &self.keys_dir)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("access_token_ttl", &self.access_token_ttl)
            .field("refresh_token_ttl", &self.refresh_token_ttl)
            .field("jwks_max_age", &self.jwks_max_age)
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("redis_ca_file", &self.redis_ca_file)
            .field("max_sessions_per_user", &self.max_sessions_per_user)
            .field("session_stats_interval", &self.session_stats_interval)
            .field("revocation", &self.revocation)
            .field("purge", &self.purge)
            .field("keys", &self.keys)
            .field("shutdown_delay", &self.shutdown_delay)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("client_cache_ttl", &self.client_cache_ttl)
            .field("login_throttle", &self.login_throttle)
            .field("client_auth_throttle", &self.client_auth_throttle)
            .field("argon2", &self.argon2)
            .field("trusted_proxies", &self.trusted_proxies.to_string())
            .field("password_grant", &self.password_grant)
            .finish()
    }
}

/// A database or Redis URL with the password of its user-info (`scheme://user:password@host`) replaced,
/// fit for logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info
                .split_once(':')
                .map_or(user_info, |(user, _)| user);
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    #[test]
    fn flags_override_defaults() {
        let cli = Cli::try_parse_from([
            "auth-service",
            "--http-addr",
            "127.0.0.1:0",
            "--access-token-ttl",
            "90s",
            "--refresh-token-ttl",
            "1h",
            "--database-url",
            "sqlite://x.db",
            "--keys-dir",
            "k",
            "--issuer",
            "https://issuer.example",
            "--audience",
            "a",
            "--jwks-max-age",
            "1m",
            "--grpc-addr",
            "127.0.0.1:0",
            "--database-max-connections",
            "3",
        ])
        .expect("flags parse");
        assert_eq!(cli.config.access_token_ttl, Duration::from_secs(90));
        assert_eq!(cli.config.refresh_token_ttl, Duration::from_secs(3600));
        assert_eq!(cli.config.http_addr.port(), 0);
    }

    #[test]
    fn default_matches_the_documented_values() {
        let config = Config::default();
        assert_eq!(config.http_addr.port(), 8081);
        assert_eq!(config.grpc_addr.port(), 50051);
        assert_eq!(config.access_token_ttl, Duration::from_secs(300));
        assert_eq!(
            config.refresh_token_ttl,
            Duration::from_secs(14 * 24 * 3600)
        );
        assert_eq!(config.jwks_max_age, Duration::from_secs(300));
        assert_eq!(config.audience, "orders");
        assert_eq!(config.redis_url, None);
        assert!(config.database_migrate);
        assert_eq!(config.max_sessions_per_user, 0);
        assert_eq!(config.revocation.heartbeat, Duration::from_secs(1));
        assert_eq!(config.revocation.poll_interval, Duration::from_secs(2));
        assert_eq!(config.purge.interval, Duration::from_secs(60));
        assert_eq!(config.purge.batch, 1000);
        assert_eq!(config.purge.grace, Duration::from_secs(3600));
        assert_eq!(config.keys.store, KeyStoreKind::Auto);
        assert_eq!(
            config.keys.rotation_interval,
            Duration::from_secs(30 * 24 * 3600)
        );
        assert_eq!(config.keys.prepublish, None);
        assert_eq!(config.keys.reload_interval, Duration::from_secs(10));
        assert_eq!(config.shutdown_delay, Duration::from_secs(5));
        assert_eq!(
            (
                config.login_throttle.throttle_after,
                config.login_throttle.lock_after
            ),
            (5, 10)
        );
        assert_eq!(
            (
                config.login_throttle.address_throttle_after,
                config.login_throttle.address_lock_after
            ),
            (20, 100)
        );
        assert_eq!(config.login_throttle.base_delay, Duration::from_secs(1));
        assert_eq!(config.login_throttle.max_delay, Duration::from_secs(30));
        assert_eq!(
            config.login_throttle.lock_duration,
            Duration::from_secs(900)
        );
        assert!(config.trusted_proxies.is_empty());
        let client = config.client_auth_throttle;
        assert_eq!((client.throttle_after, client.lock_after), (5, 10));
        assert_eq!(
            (client.address_throttle_after, client.address_lock_after),
            (20, 100)
        );
        assert_eq!(client.base_delay, Duration::from_secs(1));
        assert_eq!(client.max_delay, Duration::from_secs(30));
        assert_eq!(client.lock_duration, Duration::from_secs(900));
        assert_eq!(config.argon2.permits, 0);
        assert_eq!(config.argon2.max_waiting, None);
        let permits = config.argon2.effective_permits();
        assert!(permits >= 1);
        assert_eq!(config.argon2.effective_max_waiting(), 8 * permits);
    }

    #[test]
    fn client_auth_throttle_and_argon2_flags_parse() {
        let cli = Cli::try_parse_from([
            "auth-service",
            "--client-auth-lock-after",
            "3",
            "--client-auth-lock-duration",
            "2s",
            "--argon2-permits",
            "1",
            "--argon2-max-waiting",
            "0",
        ])
        .expect("flags parse");
        assert_eq!(cli.config.client_auth_throttle.lock_after, 3);
        assert_eq!(
            cli.config.client_auth_throttle.lock_duration,
            Duration::from_secs(2)
        );
        assert_eq!(cli.config.argon2.effective_permits(), 1);
        assert_eq!(cli.config.argon2.effective_max_waiting(), 0);
        let derived = Argon2Config {
            permits: 3,
            max_waiting: None,
        };
        assert_eq!(derived.effective_max_waiting(), 24);
        assert!(Cli::try_parse_from(["auth-service", "--client-auth-base-delay", "0s"]).is_err());
    }

    #[test]
    fn the_cgroup_memory_limit_is_read_from_v2_then_v1() {
        assert_eq!(
            cgroup_memory_limit(Some("268435456\n"), None),
            Some(256 << 20)
        );
        assert_eq!(cgroup_memory_limit(Some("max\n"), Some("1024")), None);
        assert_eq!(
            cgroup_memory_limit(None, Some("201326592\n")),
            Some(192 << 20)
        );
        assert_eq!(
            cgroup_memory_limit(None, Some("9223372036854771712\n")),
            None
        );
        assert_eq!(cgroup_memory_limit(None, None), None);
        assert_eq!(cgroup_memory_limit(Some("garbage"), None), None);
    }

    #[test]
    fn argon2_permits_follow_the_cpus_within_the_memory_limit() {
        let derived = Argon2Config::default();
        let mib = 1u64 << 20;
        // No limit: one per CPU, at least two.
        assert_eq!(derived.permits_for(16, None).permits, 16);
        assert_eq!(derived.permits_for(1, None).permits, 2);
        // 256 MiB on 16 cores: (256 - 96) / 19 = 8 runs, not 16 (16 x 19 MiB is OOM).
        let capped = derived.permits_for(16, Some(256 * mib));
        assert_eq!(capped.permits, 8);
        assert_eq!(
            capped.reason,
            PermitsReason::MemoryLimit {
                limit_bytes: 256 * mib
            }
        );
        assert!(96 * mib + 8 * ARGON2_MEMORY_PER_RUN <= 256 * mib);
        // A limit that holds the CPUs' runs changes nothing.
        assert_eq!(
            derived.permits_for(2, Some(1024 * mib)),
            Argon2Permits {
                permits: 2,
                reason: PermitsReason::Cpus
            }
        );
        // A tiny limit still leaves one run.
        assert_eq!(derived.permits_for(4, Some(64 * mib)).permits, 1);
        // An explicit AUTH_ARGON2_PERMITS wins.
        let configured = Argon2Config {
            permits: 6,
            max_waiting: None,
        };
        assert_eq!(
            configured.permits_for(16, Some(128 * mib)),
            Argon2Permits {
                permits: 6,
                reason: PermitsReason::Configured
            }
        );
    }

    #[test]
    fn key_flags_parse_and_the_encryption_key_is_redacted() {
        let cli = Cli::try_parse_from([
            "auth-service",
            "--key-store",
            "database",
            "--key-encryption-key",
            "c2VjcmV0LWtleS1tYXRlcmlhbA==",
            "--key-rotation-interval",
            "7d",
            "--key-prepublish",
            "15m",
        ])
        .expect("flags parse");
        assert_eq!(cli.config.keys.store, KeyStoreKind::Database);
        assert_eq!(cli.config.keys.prepublish, Some(Duration::from_secs(900)));
        let debug = format!("{:?}", cli.config);
        assert!(!debug.contains("c2VjcmV0"), "{debug}");
        assert!(Cli::try_parse_from(["auth-service", "--key-store", "memory"]).is_err());
        assert!(Cli::try_parse_from(["auth-service", "--key-reload-interval", "0s"]).is_err());
    }

    #[test]
    fn session_flags_parse_and_zero_intervals_are_refused() {
        let cli = Cli::try_parse_from([
            "auth-service",
            "--redis-url",
            "redis://127.0.0.1:6379",
            "--max-sessions-per-user",
            "3",
            "--revocation-heartbeat",
            "250ms",
        ])
        .expect("flags parse");
        assert_eq!(
            cli.config.redis_url.as_deref(),
            Some("redis://127.0.0.1:6379")
        );
        assert_eq!(cli.config.max_sessions_per_user, 3);
        assert_eq!(cli.config.revocation.heartbeat, Duration::from_millis(250));
        assert!(Cli::try_parse_from(["auth-service", "--revocation-heartbeat", "0s"]).is_err());
    }

    #[test]
    fn database_password_is_redacted() {
        let config = Config {
            database_url: "postgres://app:s3cret@db:5432/auth?sslmode=require".into(),
            redis_url: Some("redis://:r3dis@cache:6379/0".into()),
            ..Config::default()
        };
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(!debug.contains("r3dis"), "{debug}");
        assert!(debug.contains("postgres://app:***@db:5432/auth?sslmode=require"));
        assert_eq!(redact_url("sqlite://data/auth.db"), "sqlite://data/auth.db");
    }

    #[test]
    fn purge_and_redis_tls_flags_parse() {
        let cli = Cli::try_parse_from([
            "auth-service",
            "--purge-interval",
            "0s",
            "--purge-batch",
            "50",
            "--purge-grace",
            "10m",
            "--redis-url",
            "rediss://cache:6380",
            "--redis-ca-file",
            "/etc/platform/tls/redis-ca.pem",
        ])
        .expect("flags parse");
        assert_eq!(cli.config.purge.interval, Duration::ZERO);
        assert_eq!(cli.config.purge.batch, 50);
        assert_eq!(cli.config.purge.grace, Duration::from_secs(600));
        assert_eq!(cli.config.purge.pause, DEFAULT_PURGE_PAUSE);
        assert_eq!(
            cli.config.redis_ca_file.as_deref(),
            Some(std::path::Path::new("/etc/platform/tls/redis-ca.pem"))
        );
        assert!(Cli::try_parse_from(["auth-service", "--purge-batch", "0"]).is_err());
    }

    #[test]
    fn shutdown_delay_may_be_zero() {
        let cli = Cli::try_parse_from(["auth-service", "--shutdown-delay", "0s"]).expect("parse");
        assert_eq!(cli.config.shutdown_delay, Duration::ZERO);
        assert!(Cli::try_parse_from(["auth-service", "--shutdown-delay", "soon"]).is_err());
    }

    #[test]
    fn database_migrate_takes_true_or_false() {
        let cli = Cli::try_parse_from(["auth-service", "--database-migrate", "false"])
            .expect("flags parse");
        assert!(!cli.config.database_migrate);
        let cli = Cli::try_parse_from(["auth-service", "--database-migrate", "true"])
            .expect("flags parse");
        assert!(cli.config.database_migrate);
        assert!(Cli::try_parse_from(["auth-service", "--database-migrate", "later"]).is_err());
    }

    #[test]
    fn login_throttle_flags_parse() {
        let cli = Cli::try_parse_from([
            "auth-service",
            "--login-lock-after",
            "0",
            "--login-lock-duration",
            "2s",
            "--trusted-proxies",
            "10.0.0.0/8, fd00::/8",
        ])
        .expect("flags parse");
        assert_eq!(cli.config.login_throttle.lock_after, 0);
        assert_eq!(
            cli.config.login_throttle.lock_duration,
            Duration::from_secs(2)
        );
        assert_eq!(
            cli.config.trusted_proxies.to_string(),
            "10.0.0.0/8,fd00::/8"
        );
        let default = Cli::try_parse_from(["auth-service"]).expect("defaults parse");
        assert!(default.config.trusted_proxies.is_empty());
        assert!(Cli::try_parse_from(["auth-service", "--trusted-proxies", "gateway"]).is_err());
        assert!(Cli::try_parse_from(["auth-service", "--login-base-delay", "0s"]).is_err());
    }
}
