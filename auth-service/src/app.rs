//! Start-up and serving: [`App::build`] prepares everything and binds both listeners;
//! [`App::run`] serves until a shutdown future resolves, then drains.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shared::jwk::{JwkSet, KeySet};
use shared::jws::Signer;
use shared::verifier::{Keys, Policy, Verifier};
use sqlx::AnyPool;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;

use crate::config::{Config, redact_url};
use crate::db::{self, DbError};
use crate::grpc::SessionChecker;
use crate::http::well_known::WellKnown;
use crate::keys::{self, KeyStoreError};
use crate::passwords::{PasswordError, Passwords};
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
    /// Lifetime of a session (and of its refresh tokens), from the login.
    pub session_ttl_secs: i64,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("tokens", &self.tokens)
            .field("session_ttl_secs", &self.session_ttl_secs)
            .finish_non_exhaustive()
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
    #[error("the signing key does not pass the verification key policy")]
    OwnKey,
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

/// The issuer, built and bound, not yet serving.
pub struct App {
    state: AppState,
    verifier: Verifier,
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
    /// Connects the database and applies migrations, loads or creates the signing key, and
    /// binds the HTTP and gRPC listeners (port 0 picks a free port).
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
        let signer = Arc::new(keys::load_or_create(&config.keys_dir).await?);
        let passwords = Passwords::new().await?;
        let verifier = own_verifier(&signer, &config)?;
        let state = AppState {
            pool,
            passwords,
            well_known: Arc::new(WellKnown::new(&signer, &config.issuer, config.jwks_max_age)),
            tokens: Arc::new(TokenIssuer::new(
                signer,
                config.issuer.clone(),
                config.audience.clone(),
                config.access_token_ttl,
            )),
            session_ttl_secs: i64::try_from(config.refresh_token_ttl.as_secs()).unwrap_or(i64::MAX),
        };
        let http_listener = bind(config.http_addr).await?;
        let grpc_listener = bind(config.grpc_addr).await?;
        Ok(Self {
            http_addr: local_addr(&http_listener, config.http_addr)?,
            grpc_addr: local_addr(&grpc_listener, config.grpc_addr)?,
            state,
            verifier,
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

    /// The key id of the signing key.
    pub fn kid(&self) -> &str {
        self.state.tokens.signer().kid()
    }

    /// Serves HTTP and gRPC until `shutdown` resolves, then stops accepting, lets in-flight
    /// requests finish (at most [`DRAIN_TIMEOUT`]) and returns.
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

        let router = crate::http::router(self.state.clone());
        let http = axum::serve(
            self.http_listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stopped(stop_rx.clone()));

        let grpc = tonic::transport::Server::builder()
            .timeout(GRPC_TIMEOUT)
            .layer(shared::grpc::RequireAuthLayer::new(self.verifier))
            .add_service(SessionChecker::new(self.state.pool.clone()).into_server())
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
        tokio::select! {
            result = servers => result,
            () = drain_deadline => {
                tracing::warn!(timeout = ?DRAIN_TIMEOUT, "drain deadline passed; dropping open connections");
                Ok(())
            }
        }
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
}

/// The verifier for tokens presented to this issuer's own gRPC API: its own public key only.
fn own_verifier(signer: &Signer, config: &Config) -> Result<Verifier, BuildError> {
    let (keys, dropped) = KeySet::from_jwks(&JwkSet::from_keys([signer.public_jwk()]));
    if keys.is_empty() || !dropped.is_empty() {
        return Err(BuildError::OwnKey);
    }
    Ok(Verifier::new(
        Keys::fixed(keys),
        Policy::new(config.issuer.clone(), config.audience.clone()),
    ))
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
