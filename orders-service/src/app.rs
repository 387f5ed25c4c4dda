//! Wiring: listeners, database, verifier, the gRPC server and the operations router.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;

use authn::Verifier;
use authn::grpc::RequireAuthLayer;
use platform::db::POOL_REPORT_INTERVAL;
use platform::readiness::{Check, CheckPolicy, Readiness, ReadinessTask};
use platform::request_metrics::{GrpcMetricsLayer, HttpMetricsLayer, MetricNames};
use platform::schema::{SchemaError, SchemaMode};
use platform::shutdown::{Drain, Lifecycle};
use platform::trace::TraceContextLayer;
use proto::orders::v1::order_service_server::OrderServiceServer;
use sqlx::AnyPool;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;

use crate::config::Config;
use crate::http::{self, OpsState};
use crate::repo::OrderRepository;
use crate::rpc::OrdersRpc;

/// The schema migrations of this service, embedded at build time. They tolerate applied
/// migrations they do not know, so that after a release adds one the previous release still
/// starts (`kubectl rollout undo`); `platform::schema` logs them.
pub static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator
});

/// How an operator applies the migrations, named in the error of a server that finds them
/// missing.
pub const MIGRATE_COMMAND: &str = "orders-service migrate";

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
    #[error(transparent)]
    Schema(#[from] SchemaError),
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

/// The gRPC methods this service serves: the only values of the `rpc` metric label, and the
/// routes `AUTH_ROUTE_POLICY` may name.
pub const RPC_METHODS: &[&str] = &[
    "/orders.v1.OrderService/CreateOrder",
    "/orders.v1.OrderService/GetOrder",
    "/orders.v1.OrderService/ListOrders",
    "/orders.v1.OrderService/CancelOrder",
];

/// `orders_requests_total{rpc, code}` and `orders_request_duration_seconds{rpc, code}`.
pub const GRPC_METRICS: MetricNames =
    MetricNames::new("orders_requests_total", "orders_request_duration_seconds");

/// The operations listener's own requests (probes, scrapes).
pub const HTTP_METRICS: MetricNames = MetricNames::new(
    "orders_http_requests_total",
    "orders_http_request_duration_seconds",
);

/// A built service: listeners bound, database migrated, verifier started, not yet serving.
pub struct App {
    grpc_listener: TcpListener,
    http_listener: TcpListener,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    pool: AnyPool,
    repo: OrderRepository,
    verifier: Verifier,
    request_timeout: Duration,
    max_concurrent_requests: usize,
    drain: Drain,
    lifecycle: Lifecycle,
    /// The last result of the database check `/readyz` reports, and the task refreshing it.
    readiness: Readiness,
    readiness_task: ReadinessTask,
}

/// Opens the database and applies the migrations (what `orders-service migrate` does, whatever
/// `DATABASE_MIGRATE` says).
pub async fn migrate(config: &Config) -> Result<AnyPool, BuildError> {
    open_database(config, SchemaMode::Migrate).await
}

/// Opens the database, then applies the migrations or only checks that they are applied, as
/// `mode` says; a database that does not fit is closed before the error returns.
async fn open_database(config: &Config, mode: SchemaMode) -> Result<AnyPool, BuildError> {
    let pool = platform::db::connect(&config.database_url, config.database_max_connections)
        .await
        .map_err(BuildError::Database)?;
    if let Err(error) = platform::schema::prepare(&pool, &MIGRATOR, mode, MIGRATE_COMMAND).await {
        pool.close().await;
        return Err(error.into());
    }
    Ok(pool)
}

impl App {
    /// Binds both listeners (port 0 picks a free port), opens the database and migrates it (or,
    /// with `DATABASE_MIGRATE=false`, checks that it is migrated) and starts the verifier's JWKS
    /// client.
    pub async fn build(config: Config) -> Result<Self, BuildError> {
        let grpc_listener = bind(config.grpc_addr).await?;
        let http_listener = bind(config.http_addr).await?;
        let grpc_addr = local_addr(&grpc_listener, config.grpc_addr)?;
        let http_addr = local_addr(&http_listener, config.http_addr)?;

        let pool = open_database(&config, SchemaMode::from_flag(config.database_migrate)).await?;

        // The database over a connection of its own; the first round runs here.
        let database = Check::database("database", &pool, &config.database_url)
            .map_err(BuildError::Database)?;
        let (readiness, readiness_task) =
            Readiness::start(vec![database], CheckPolicy::default()).await;

        let verifier = config
            .auth
            .build_verifier_for(RPC_METHODS)
            .map_err(|error| BuildError::Verifier(error.to_string()))?;

        Ok(Self {
            grpc_listener,
            http_listener,
            grpc_addr,
            http_addr,
            repo: OrderRepository::new(pool.clone()),
            pool,
            verifier,
            request_timeout: config.request_timeout,
            max_concurrent_requests: config.max_concurrent_requests.max(1),
            drain: config.drain(),
            lifecycle: Lifecycle::new(),
            readiness,
            readiness_task,
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

    /// The service's shutdown phase (what `/readyz` reports first).
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// Serves until `shutdown` resolves, then shuts down readiness first: `/readyz` answers 503
    /// at once, both listeners keep serving for `ORDERS_SHUTDOWN_DELAY`, then they close and
    /// in-flight calls have up to `ORDERS_SHUTDOWN_GRACE` to finish.
    pub async fn run<F>(self, shutdown: F) -> Result<(), RunError>
    where
        F: Future<Output = ()> + Send,
    {
        let _pool_usage = platform::db::report_pool_usage(&self.pool, POOL_REPORT_INTERVAL);
        let _readiness_task = self.readiness_task;

        let rpc = OrderServiceServer::new(OrdersRpc::new(self.repo.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        // Outermost first: every call gets its trace context and is counted, whoever answers.
        let layers = ServiceBuilder::new()
            .layer(TraceContextLayer::grpc())
            .layer(GrpcMetricsLayer::new(GRPC_METRICS, RPC_METHODS).timeout(self.request_timeout))
            .layer(GlobalConcurrencyLimitLayer::new(
                self.max_concurrent_requests,
            ))
            .layer(RequireAuthLayer::new(self.verifier.clone()))
            .into_inner();
        let grpc = tonic::transport::Server::builder()
            .timeout(self.request_timeout)
            .http2_max_header_list_size(authn::grpc::MAX_METADATA_BYTES)
            .layer(layers)
            .add_service(rpc)
            .serve_with_incoming_shutdown(
                TcpIncoming::from(self.grpc_listener),
                self.lifecycle.stopping(),
            );

        let router = http::router(OpsState {
            repo: self.repo,
            verifier: self.verifier,
            lifecycle: self.lifecycle.clone(),
            readiness: self.readiness,
        })
        .layer(HttpMetricsLayer::new(HTTP_METRICS));
        let ops = axum::serve(self.http_listener, router)
            .with_graceful_shutdown(self.lifecycle.stopping())
            .into_future();

        let servers = vec![
            tokio::spawn(async move { grpc.await.map_err(RunError::from) }),
            tokio::spawn(async move { ops.await.map_err(RunError::from) }),
        ];
        let result =
            platform::shutdown::serve(&self.lifecycle, shutdown, self.drain, servers).await;
        self.pool.close().await;
        result
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
