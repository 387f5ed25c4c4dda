//! Wiring: listeners, database, verifier, the gRPC server and the operations router.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use proto::orders::v1::order_service_server::OrderServiceServer;
use shared::Verifier;
use shared::grpc::RequireAuthLayer;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;

use crate::config::Config;
use crate::http::{self, OpsState};
use crate::repo::OrderRepository;
use crate::rpc::OrdersRpc;

/// The schema migrations of this service, embedded at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Largest gRPC message accepted or sent. Orders are tiny; a page of 100 is a few KiB.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the database: {0}")]
    Database(#[source] sqlx::Error),
    #[error("cannot migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot set up token verification: {0}")]
    Verifier(String),
}

/// Why the service stopped serving before it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("HTTP server failed: {0}")]
    Http(#[from] std::io::Error),
    #[error("server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A built service: listeners bound, database migrated, verifier started, not yet serving.
pub struct App {
    grpc_listener: TcpListener,
    http_listener: TcpListener,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    repo: OrderRepository,
    verifier: Verifier,
    request_timeout: Duration,
    max_concurrent_requests: usize,
    shutdown_grace: Duration,
}

impl App {
    /// Binds both listeners (port 0 picks a free port), opens and migrates the database and
    /// starts the verifier's JWKS client.
    pub async fn build(config: Config) -> Result<Self, BuildError> {
        let grpc_listener = bind(config.grpc_addr).await?;
        let http_listener = bind(config.http_addr).await?;
        let grpc_addr = local_addr(&grpc_listener, config.grpc_addr)?;
        let http_addr = local_addr(&http_listener, config.http_addr)?;

        let pool = shared::db::connect(&config.database_url, config.database_max_connections)
            .await
            .map_err(BuildError::Database)?;
        MIGRATOR.run(&pool).await?;

        let verifier = config
            .auth
            .build_verifier()
            .map_err(|error| BuildError::Verifier(error.to_string()))?;

        Ok(Self {
            grpc_listener,
            http_listener,
            grpc_addr,
            http_addr,
            repo: OrderRepository::new(pool),
            verifier,
            request_timeout: config.request_timeout,
            max_concurrent_requests: config.max_concurrent_requests.max(1),
            shutdown_grace: config.shutdown_grace,
        })
    }

    /// Where the gRPC `OrderService` listens.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Where `/healthz`, `/readyz` and `/metrics` listen.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Serves until `shutdown` resolves, then stops accepting connections and lets in-flight
    /// requests finish for up to the configured grace period.
    pub async fn run<F>(self, shutdown: F) -> Result<(), RunError>
    where
        F: Future<Output = ()> + Send,
    {
        let (stop, stopped) = watch::channel(false);

        let rpc = OrderServiceServer::new(OrdersRpc::new(self.repo.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let layers = ServiceBuilder::new()
            .layer(GlobalConcurrencyLimitLayer::new(
                self.max_concurrent_requests,
            ))
            .layer(RequireAuthLayer::new(self.verifier.clone()))
            .into_inner();
        let grpc = tonic::transport::Server::builder()
            .timeout(self.request_timeout)
            .http2_max_header_list_size(shared::grpc::MAX_METADATA_BYTES)
            .layer(layers)
            .add_service(rpc)
            .serve_with_incoming_shutdown(
                TcpIncoming::from(self.grpc_listener),
                stop_signal(stopped.clone()),
            );

        let router = http::router(OpsState {
            repo: self.repo,
            verifier: self.verifier,
        });
        let ops = axum::serve(self.http_listener, router)
            .with_graceful_shutdown(stop_signal(stopped))
            .into_future();

        let mut grpc = tokio::spawn(grpc);
        let mut ops = tokio::spawn(ops);
        tokio::select! {
            () = shutdown => {}
            result = &mut grpc => {
                ops.abort();
                result??;
                return Ok(());
            }
            result = &mut ops => {
                grpc.abort();
                result??;
                return Ok(());
            }
        }

        tracing::info!(grace = ?self.shutdown_grace, "shutting down, draining requests");
        // Sending fails only when both servers have already stopped: nothing left to tell.
        let _ = stop.send(true);
        let drained = tokio::time::timeout(self.shutdown_grace, async {
            let grpc = (&mut grpc).await;
            let ops = (&mut ops).await;
            (grpc, ops)
        })
        .await;
        match drained {
            Ok((grpc_result, ops_result)) => {
                grpc_result??;
                ops_result??;
            }
            Err(_) => {
                tracing::warn!("drain deadline reached, closing remaining connections");
                grpc.abort();
                ops.abort();
            }
        }
        Ok(())
    }
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

/// Resolves once the stop flag is raised (or its sender is gone).
async fn stop_signal(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}
