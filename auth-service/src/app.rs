//! Start-up and serving: [`App::build`] prepares everything and binds both listeners;
//! [`App::run`] serves until a shutdown future resolves, then drains.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use shared::session::SessionCheck;
use shared::verifier::{Keys, Policy, Verifier};
use sqlx::AnyPool;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

use crate::config::{Config, redact_url};
use crate::db::{self, DbError};
use crate::grpc::SessionChecker;
use crate::http::well_known::WellKnown;
use crate::keys::{KeyManager, KeyStoreError};
use crate::passwords::{PasswordError, Passwords};
use crate::revocation::{RedisFanout, RevocationLog};
use crate::sessions::{self, RedisStore, SharedStore, SqlStore, StoreLookup};
use crate::tokens::TokenIssuer;

/// How long in-flight requests may take to finish once shutdown starts.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest time one RPC may take.
pub const GRPC_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub pool: AnyPool,
    pub passwords: Passwords,
    pub tokens: Arc<TokenIssuer>,
    pub well_known: Arc<WellKnown>,
    /// The signing keys: the active one, the published set, rotation and revocation.
    pub keys: KeyManager,
    /// Lifetime of a session (and of its refresh tokens), from the login.
    pub session_ttl_secs: i64,
    /// Where session state lives (SQL, or Redis with `REDIS_URL`).
    pub sessions: SharedStore,
    /// The revocation feed.
    pub revocations: RevocationLog,
    /// Verifies the issuer's own access tokens presented to its API: its own key, and a
    /// `stateful` session check against [`AppState::sessions`].
    pub verifier: Verifier,
    /// `AUTH_MAX_SESSIONS_PER_USER`; 0 is unlimited.
    pub max_sessions_per_user: u32,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("tokens", &self.tokens)
            .field("keys", &self.keys)
            .field("session_ttl_secs", &self.session_ttl_secs)
            .field("sessions", &self.sessions.backend())
            .field("max_sessions_per_user", &self.max_sessions_per_user)
            .finish_non_exhaustive()
    }
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

/// The session store and revocation log of `config`: Redis when `REDIS_URL` is set, else SQL.
/// Shared by the server and the operator commands.
pub async fn session_backend(
    pool: &AnyPool,
    config: &Config,
) -> Result<(SharedStore, RevocationLog), BuildError> {
    match &config.redis_url {
        Some(url) => {
            tracing::info!(redis = %redact_url(url), "sessions in Redis");
            let (client, manager) = sessions::redis::connect(url)
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
    #[error("gRPC server failed: {0}")]
    Grpc(#[source] tonic::transport::Error),
}

/// The revocation feed's intervals, from [`Config`].
#[derive(Debug, Clone, Copy)]
struct FeedTiming {
    heartbeat: Duration,
    poll: Duration,
    prune: Duration,
}

/// The issuer, built and bound, not yet serving.
pub struct App {
    state: AppState,
    feed: FeedTiming,
    http_listener: TcpListener,
    grpc_listener: TcpListener,
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("http_addr", &self.http_addr)
            .field("grpc_addr", &self.grpc_addr)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Connects the database and applies migrations, opens the signing keys (creating the
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
        let pool =
            db::connect_and_migrate(&config.database_url, config.database_max_connections).await?;
        let passwords = Passwords::new().await?;
        let (sessions, revocations) = session_backend(&pool, &config).await?;
        let keys = KeyManager::open(pool.clone(), &config, revocations.clone()).await?;
        let verifier = Verifier::new(
            Keys::local(keys.local_keys()),
            Policy::new(config.issuer.clone(), config.audience.clone()),
        )
        .with_session_check(SessionCheck::stateful(
            Arc::new(StoreLookup(sessions.clone())),
            Duration::ZERO,
        ));
        let state = AppState {
            pool,
            passwords,
            sessions,
            revocations,
            verifier,
            max_sessions_per_user: config.max_sessions_per_user,
            well_known: Arc::new(WellKnown::new(&config.issuer)),
            tokens: Arc::new(TokenIssuer::new(
                keys.active_signer(),
                config.issuer.clone(),
                config.audience.clone(),
                config.access_token_ttl,
            )),
            session_ttl_secs: i64::try_from(config.refresh_token_ttl.as_secs()).unwrap_or(i64::MAX),
            keys,
        };
        let http_listener = bind(config.http_addr).await?;
        let grpc_listener = bind(config.grpc_addr).await?;
        Ok(Self {
            http_addr: local_addr(&http_listener, config.http_addr)?,
            grpc_addr: local_addr(&grpc_listener, config.grpc_addr)?,
            state,
            feed: FeedTiming {
                heartbeat: config.revocation_heartbeat,
                poll: config.revocation_poll_interval,
                prune: config.revocation_prune_interval,
            },
            http_listener,
            grpc_listener,
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

    /// The shared state: database pool, password hasher, token issuer.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The key id of the key that signs now.
    pub fn kid(&self) -> String {
        self.state.keys.kid()
    }

    /// Serves HTTP and gRPC until `shutdown` resolves, then stops accepting, ends the
    /// `WatchRevocations` streams, lets in-flight requests finish (at most [`DRAIN_TIMEOUT`]) and
    /// returns. The revocation feed's background tasks (tailer, pruner, Redis subscriber) and the
    /// signing-key schedule run for as long.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };

        let mut background =
            self.state
                .revocations
                .spawn_tasks(stop_rx.clone(), self.feed.poll, self.feed.prune);
        background.push(self.state.keys.spawn(stop_rx.clone()));
        let router = crate::http::router(self.state.clone());
        let http = axum::serve(
            self.http_listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stopped(stop_rx.clone()));

        let grpc = tonic::transport::Server::builder()
            .timeout(GRPC_TIMEOUT)
            .layer(shared::grpc::RequireAuthLayer::new(
                self.state.verifier.clone(),
            ))
            .add_service(
                SessionChecker::new(
                    self.state.sessions.clone(),
                    self.state.revocations.clone(),
                    self.feed.heartbeat,
                    stop_rx.clone(),
                )
                .into_server(),
            )
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(self.grpc_listener),
                stopped(stop_rx.clone()),
            );

        let servers = async {
            tokio::try_join!(async { http.await.map_err(ServeError::Http) }, async {
                grpc.await.map_err(ServeError::Grpc)
            },)
            .map(|_| ())
        };
        let drain_deadline = async {
            stopped(stop_rx.clone()).await;
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        };
        let result = tokio::select! {
            result = servers => result,
            () = drain_deadline => {
                tracing::warn!(timeout = ?DRAIN_TIMEOUT, "drain deadline passed; dropping open connections");
                Ok(())
            }
        };
        // The servers may also have stopped on an error: stop the background tasks in any case.
        for task in background {
            task.abort();
        }
        result
    }
}

fn describe_metrics() {
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
        "Sessions ended, by reason (logout, logout_all, deleted, revoked, refresh_reuse, session_cap, user_disabled)"
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
        "auth_signing_keys",
        "Signing keys this replica knows, by state (next, active, retired, revoked)"
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
