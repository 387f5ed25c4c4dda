//! Start-up and serving: [`App::build`] prepares everything and binds both listeners;
//! [`App::run`] serves until a shutdown future resolves, then shuts down readiness first and
//! drains.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use authn::check::SessionCheck;
use authn::verifier::{Keys, Policy, Verifier};
use platform::db::POOL_REPORT_INTERVAL;
use platform::readiness::{Check, CheckPolicy, Readiness, ReadinessTask};
use platform::request_metrics::GrpcMetricsLayer;
use platform::shutdown::{Drain, Lifecycle};
use platform::trace::TraceContextLayer;
use sqlx::AnyPool;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::transport::server::TcpIncoming;
use tower::ServiceBuilder;

use crate::clients::ClientRows;
use crate::config::{Config, PurgeConfig, RevocationConfig, redact_url};
use crate::db::{self, DbError};
use crate::grpc::{self, SessionChecker};
use crate::keys::{KeyManager, KeySettings, KeyStoreError};
use crate::passwords::{PasswordError, Passwords};
use crate::sessions::revocation::{RedisFanout, RevocationLog};
use crate::sessions::{self, Purger, RedisStore, SharedStore, SqlStore, StoreLookup};
use crate::state::AppState;
use crate::throttle::{RedisCounters, Throttle};
use crate::tokens::TokenIssuer;

/// Longest time one RPC may take.
pub const GRPC_TIMEOUT: Duration = Duration::from_secs(10);

/// The session store and revocation log of `config`: Redis when `REDIS_URL` is set, else SQL.
/// Shared by the server and the operator commands.
pub async fn session_backend(
    pool: &AnyPool,
    config: &Config,
) -> Result<(SharedStore, RevocationLog), BuildError> {
    match &config.redis_url {
        Some(url) => {
            tracing::info!(redis = %redact_url(url), "sessions in Redis");
            let (client, manager) = sessions::redis::connect(url, config.redis_ca_file.as_deref())
                .await
                .map_err(BuildError::Redis)?;
            let log = RevocationLog::new(
                pool.clone(),
                config.access_token_ttl,
                Some(RedisFanout {
                    client,
                    publisher: manager.clone(),
                }),
            )
            .await
            .map_err(BuildError::Revocations)?;
            Ok((Arc::new(RedisStore::new(manager, log.clone())), log))
        }
        None => {
            let log = RevocationLog::new(pool.clone(), config.access_token_ttl, None)
                .await
                .map_err(BuildError::Revocations)?;
            Ok((Arc::new(SqlStore::new(pool.clone(), log.clone())), log))
        }
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Keys(#[from] KeyStoreError),
    #[error(transparent)]
    Passwords(#[from] PasswordError),
    #[error("cannot connect to Redis: {0}")]
    Redis(#[source] redis::RedisError),
    #[error("cannot read the revocation log: {0}")]
    Revocations(#[source] sqlx::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Why serving stopped other than by the shutdown future.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("HTTP server failed: {0}")]
    Http(#[source] std::io::Error),
    #[error("metrics server failed: {0}")]
    Metrics(#[source] std::io::Error),
    #[error("gRPC server failed: {0}")]
    Grpc(#[source] tonic::transport::Error),
    #[error("server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The issuer, built and bound, not yet serving.
pub struct App {
    state: AppState,
    /// The revocation feed's intervals.
    feed: RevocationConfig,
    /// The purge of expired rows.
    purge: PurgeConfig,
    session_stats_interval: Duration,
    http_listener: TcpListener,
    grpc_listener: TcpListener,
    metrics_listener: TcpListener,
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    metrics_addr: SocketAddr,
    drain: Drain,
    /// The background dependency checks behind `/readyz`, stopped with the app.
    readiness_task: ReadinessTask,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("http_addr", &self.http_addr)
            .field("grpc_addr", &self.grpc_addr)
            .field("metrics_addr", &self.metrics_addr)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Connects the database and applies its migrations (or, with `DATABASE_MIGRATE=false`,
    /// checks that they are applied), opens the signing keys (creating the
    /// first one if need be), and binds the HTTP and gRPC listeners (port 0 picks a free port).
    pub async fn build(config: Config) -> Result<Self, BuildError> {
        tracing::info!(database = %redact_url(&config.database_url), keys_dir = %config.keys_dir.display(), "starting");
        if config.access_token_ttl > Policy::DEFAULT_MAX_LIFETIME {
            tracing::warn!(
                ttl = ?config.access_token_ttl,
                "AUTH_ACCESS_TOKEN_TTL exceeds the verifiers' default maximum token lifetime; they will refuse these tokens"
            );
        }
        describe_metrics();
        let pool = db::open(&config).await?;
        let passwords = Passwords::with_limits(&config.argon2).await?;
        let (sessions, revocations) = session_backend(&pool, &config).await?;
        let (readiness, readiness_task) = readiness_checks(&pool, &config, &sessions).await?;
        let (login_throttle, client_throttle) = throttles(&config).await?;
        let keys = KeyManager::open(
            pool.clone(),
            &KeySettings::from_config(&config),
            revocations.clone(),
        )
        .await?;
        // Every CheckSession call carries the calling verifier's service token: the cache spares
        // an RSA verification per call (the session check still runs on every hit).
        let verifier = Verifier::new(
            Keys::local(keys.local_keys()),
            Policy::new(config.issuer.clone(), config.audience.clone()),
        )
        .with_token_cache(authn::config::DEFAULT_TOKEN_CACHE_SIZE)
        .with_session_check(SessionCheck::stateful(
            Arc::new(StoreLookup(sessions.clone())),
            Duration::ZERO,
        ));
        let state = AppState {
            clients: ClientRows::new(pool.clone(), config.client_cache_ttl),
            pool,
            passwords,
            sessions,
            revocations,
            verifier,
            max_sessions_per_user: config.max_sessions_per_user,
            tokens: Arc::new(TokenIssuer::new(
                keys.active_signer(),
                config.issuer.clone(),
                config.audience.clone(),
                config.access_token_ttl,
            )),
            session_ttl_secs: i64::try_from(config.refresh_token_ttl.as_secs()).unwrap_or(i64::MAX),
            keys,
            lifecycle: Lifecycle::new(),
            readiness,
            login_throttle: Arc::new(login_throttle),
            client_throttle: Arc::new(client_throttle),
            trusted_proxies: Arc::new(config.trusted_proxies.clone()),
            password_grant: config.password_grant,
        };
        let http_listener = bind(config.http_addr).await?;
        let grpc_listener = bind(config.grpc_addr).await?;
        let metrics_listener = bind(config.metrics_addr).await?;
        Ok(Self {
            http_addr: local_addr(&http_listener, config.http_addr)?,
            grpc_addr: local_addr(&grpc_listener, config.grpc_addr)?,
            metrics_addr: local_addr(&metrics_listener, config.metrics_addr)?,
            state,
            feed: config.revocation,
            purge: config.purge,
            session_stats_interval: config.session_stats_interval,
            http_listener,
            grpc_listener,
            metrics_listener,
            drain: Drain {
                delay: config.shutdown_delay,
                grace: config.shutdown_grace,
            },
            readiness_task,
        })
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The bound metrics address (`GET /metrics`).
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// The shared state: database pool, password hasher, token issuer.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The key id of the key that signs now.
    pub fn kid(&self) -> String {
        self.state.keys.kid()
    }

    /// The service's shutdown phase (what `/readyz` reports first).
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.state.lifecycle
    }

    /// Serves HTTP and gRPC until `shutdown` resolves, then shuts down readiness first:
    /// `/readyz` answers 503 at once while both listeners (and the open `WatchRevocations`
    /// streams) keep serving for `AUTH_SHUTDOWN_DELAY`; then the listeners close, the streams
    /// end, and in-flight requests have up to `AUTH_SHUTDOWN_GRACE` to finish. The revocation
    /// feed's background tasks (tailer, Redis subscriber), the purge of expired rows and the
    /// signing-key schedule run until the servers are done, so the streams get live events for
    /// as long as they last.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let lifecycle = self.state.lifecycle.clone();
        let _readiness_task = self.readiness_task;
        let _pool_usage = platform::db::report_pool_usage(&self.state.pool, POOL_REPORT_INTERVAL);
        let (stop_background, background_stop) = watch::channel(false);
        let mut background = JoinSet::new();
        self.state.revocations.spawn_tasks(
            &mut background,
            &background_stop,
            self.feed.poll_interval,
        );
        Purger::new(
            self.state.pool.clone(),
            self.state.revocations.clone(),
            self.purge,
        )
        .spawn(&mut background, background_stop.clone());
        sessions::StatsRefresher::new(self.state.sessions.clone(), self.session_stats_interval)
            .spawn(&mut background, background_stop.clone());
        self.state.keys.spawn(&mut background, background_stop);

        let router = crate::http::router(self.state.clone());
        let http = axum::serve(
            self.http_listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(lifecycle.stopping())
        .into_future();

        // Outermost first: every call gets its trace context and is counted, whoever answers.
        // The metrics layer is not given GRPC_TIMEOUT as the calls' deadline: a
        // `WatchRevocations` stream outlives it by design, and would be counted as
        // DEADLINE_EXCEEDED whenever its verifier goes away. CheckSession callers send their
        // own `grpc-timeout`, which the layer reads.
        let layers = ServiceBuilder::new()
            .layer(TraceContextLayer::grpc())
            .layer(GrpcMetricsLayer::new(grpc::GRPC_METRICS, grpc::RPC_METHODS))
            .layer(authn::grpc::RequireAuthLayer::new(
                self.state.verifier.clone(),
            ))
            .into_inner();
        let grpc = tonic::transport::Server::builder()
            .timeout(GRPC_TIMEOUT)
            .http2_max_header_list_size(authn::grpc::MAX_METADATA_BYTES)
            .layer(layers)
            .add_service(
                SessionChecker::new(
                    self.state.sessions.clone(),
                    self.state.revocations.clone(),
                    grpc::Callers {
                        verifier: self.state.verifier.clone(),
                        clients: self.state.clients.clone(),
                    },
                    self.feed.heartbeat,
                    lifecycle.clone(),
                    self.state.keys.clone(),
                )
                .into_server(),
            )
            .serve_with_incoming_shutdown(
                TcpIncoming::from(self.grpc_listener),
                lifecycle.stopping(),
            );

        // Scraped until the listeners close, so the drain itself shows on the dashboards.
        let metrics = axum::serve(self.metrics_listener, platform::telemetry::metrics_router())
            .with_graceful_shutdown(lifecycle.stopping())
            .into_future();

        let servers = vec![
            tokio::spawn(async move { http.await.map_err(ServeError::Http) }),
            tokio::spawn(async move { grpc.await.map_err(ServeError::Grpc) }),
            tokio::spawn(async move { metrics.await.map_err(ServeError::Metrics) }),
        ];
        let result = platform::shutdown::serve(&lifecycle, shutdown, self.drain, servers).await;
        // The servers are done (drained, or one failed): stop the background tasks, then let the
        // database connections go.
        let _ = stop_background.send(true);
        background.abort_all();
        self.state.pool.close().await;
        result
    }
}

/// The dependency checks behind `/readyz`: the database over a connection of its own and, with
/// Redis, the session store (the SQL store is the database, checked once). The first round
/// runs before this returns.
async fn readiness_checks(
    pool: &AnyPool,
    config: &Config,
    sessions: &SharedStore,
) -> Result<(Readiness, ReadinessTask), BuildError> {
    let mut checks = vec![
        Check::database("database", pool, &config.database_url)
            .map_err(|e| BuildError::Db(DbError::Connect(e)))?,
    ];
    if sessions.backend() != "sql" {
        let sessions = sessions.clone();
        checks.push(Check::new("session_store", move || {
            let sessions = sessions.clone();
            async move { sessions.ping().await.map_err(|e| e.to_string()) }
        }));
    }
    Ok(Readiness::start(checks, CheckPolicy::default()).await)
}

/// The login and client-authentication throttles of `config`: counting in Redis (shared by the
/// replicas) when `REDIS_URL` is set, else in memory.
async fn throttles(config: &Config) -> Result<(Throttle, Throttle), BuildError> {
    let login = Throttle::login(&config.login_throttle);
    let client = Throttle::client_auth(&config.client_auth_throttle);
    match &config.redis_url {
        Some(url) => {
            let redis = RedisCounters::connect(url, config.redis_ca_file.as_deref())
                .await
                .map_err(BuildError::Redis)?;
            tracing::info!("failed logins and client authentications counted in Redis");
            Ok((login.with_redis(redis.clone()), client.with_redis(redis)))
        }
        None => Ok((login, client)),
    }
}

fn describe_metrics() {
    crate::throttle::describe_metrics();
    crate::passwords::describe_metrics();
    sessions::purge::describe_metrics();
    sessions::describe_stats_metrics();
    metrics::describe_counter!(
        "auth_tokens_issued_total",
        "Access tokens issued by the token endpoint, by grant type"
    );
    metrics::describe_counter!(
        "auth_token_errors_total",
        "Refused token requests, by RFC 6749 error code"
    );
    metrics::describe_counter!(
        "auth_sessions_ended_total",
        "Sessions ended, by reason (logout, logout_all, deleted, revoked, refresh_reuse, session_cap, user_disabled, code_replay)"
    );
    metrics::describe_counter!(
        "auth_revocation_events_total",
        "Revocation events appended to the feed, by kind"
    );
    metrics::describe_gauge!(
        "auth_revocation_watchers",
        "Open WatchRevocations streams on this replica"
    );
    metrics::describe_gauge!(
        "auth_revocation_log_head",
        "The last revocation event this replica's tailer has read and pushed"
    );
    metrics::describe_gauge!(
        "auth_revocation_log_epoch",
        "The epoch (identity) of the revocation log this replica follows: 1 for the current one"
    );
    metrics::describe_gauge!(
        "auth_revocation_log_failing",
        "1 while this replica cannot read its revocation log (its streams end, verifiers go stale)"
    );
    metrics::describe_counter!(
        "auth_revocation_log_resets_total",
        "Times this replica found its revocation log went back (behind, diverged) or changed epoch"
    );
    metrics::describe_counter!(
        "auth_revocation_stream_resets_total",
        "Resets sent to WatchRevocations callers, by reason (epoch, behind, diverged, restored)"
    );
    metrics::describe_gauge!(
        "auth_signing_keys",
        "Signing keys this replica knows, by state (next, active, retired, revoked)"
    );
    metrics::describe_gauge!(
        "auth_signing_key_activated_timestamp_seconds",
        "When the key this replica signs with started signing (Unix seconds; a mounted key: its file's modification time)"
    );
    metrics::describe_gauge!(
        "auth_signing_key_rotation_interval_seconds",
        "The scheduled rotation interval in effect (AUTH_KEY_ROTATION_INTERVAL); 0 when keys rotate only by hand (interval 0s, or the mounted store)"
    );
    metrics::describe_counter!(
        "auth_key_rotations_total",
        "Key rotations started, by kind (scheduled, manual, immediate, emergency)"
    );
    metrics::describe_counter!(
        "auth_refresh_reuse_total",
        "Presentations of an already-rotated refresh token (each ends its session)"
    );
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, BuildError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BuildError::Bind { addr, source })
}

fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, BuildError> {
    listener
        .local_addr()
        .map_err(|source| BuildError::Bind { addr, source })
}
