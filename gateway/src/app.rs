//! Wiring: the listener, the verifier, the upstream clients, the router and its middleware.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::{BoxError, Router};
use platform::request_metrics::HttpMetricsLayer;
use platform::shutdown::{Drain, Lifecycle};
use platform::trace::TraceContextLayer;
use proto::orders::v1::order_service_client::OrderServiceClient;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower::timeout::TimeoutLayer;
use tower_http::sensitive_headers::{
    SetSensitiveRequestHeadersLayer, SetSensitiveResponseHeadersLayer,
};

use crate::config::Config;
use crate::error::{ApiError, error_response};
use crate::proxy::{self, Proxy, ProxyError};
use crate::state::AppState;
use crate::web::{self, Browser, BrowserConfigError, WebState};
use crate::{cookie, ops, orders};

/// How often the orders-service host name is re-resolved for client-side balancing.
pub const GRPC_RESOLVE_INTERVAL: Duration = Duration::from_secs(5);

/// Largest gRPC message accepted from the orders service (a page of 100 orders is a few KiB).
pub const MAX_GRPC_MESSAGE_BYTES: usize = 256 * 1024;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("ORDERS_GRPC_URL is not a valid endpoint: {0}")]
    OrdersUrl(String),
    #[error("cannot set up the auth-service proxy: {0}")]
    Proxy(#[from] ProxyError),
    #[error("cannot set up token verification: {0}")]
    Verifier(String),
    #[error("browser sign-in: {0}")]
    Browser(#[from] BrowserConfigError),
}

/// Bounds applied to every request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body: usize,
    pub request_timeout: Duration,
}

/// The whole HTTP surface: REST orders, the web app and its sign-in, the auth proxy,
/// operations endpoints, and the middleware (sensitive headers, trace context and request id,
/// metrics, timeout, body limit).
pub fn router(web: WebState, limits: Limits) -> Router {
    let (state, proxy) = (web.app.clone(), web.proxy.clone());
    Router::new()
        .merge(orders::router().layer(axum::middleware::from_fn_with_state(
            web.clone(),
            web::session::refresh_for_rest,
        )))
        .merge(ops::router())
        .with_state(state)
        .merge(web::router(web))
        .merge(cookie::router(proxy.clone()))
        .merge(proxy::router(proxy))
        .fallback(not_found)
        .layer(
            ServiceBuilder::new()
                // Outermost, so that no later layer (tracing) can ever record these values.
                .layer(SetSensitiveRequestHeadersLayer::new([
                    header::AUTHORIZATION,
                    header::COOKIE,
                    header::PROXY_AUTHORIZATION,
                ]))
                .layer(SetSensitiveResponseHeadersLayer::new([header::SET_COOKIE]))
                // Accepts or makes x-request-id and traceparent, runs the request in its span
                // and answers with x-request-id.
                .layer(TraceContextLayer::http())
                // Outside the timeout, so a timed-out request counts as its 504.
                .layer(HttpMetricsLayer::new(ops::HTTP_METRICS))
                .layer(HandleErrorLayer::new(timeout_error))
                .layer(TimeoutLayer::new(limits.request_timeout))
                .layer(DefaultBodyLimit::max(limits.max_body)),
        )
}

async fn timeout_error(error: BoxError) -> Response {
    if error.is::<tower::timeout::error::Elapsed>() {
        axum::response::IntoResponse::into_response(ApiError::GatewayTimeout)
    } else {
        axum::response::IntoResponse::into_response(ApiError::Internal(error.to_string()))
    }
}

async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// A built gateway: listener bound, verifier started, upstream clients ready (connected lazily).
pub struct App {
    listener: TcpListener,
    addr: SocketAddr,
    metrics_listener: TcpListener,
    metrics_addr: SocketAddr,
    router: Router,
    drain: Drain,
    lifecycle: Lifecycle,
}

impl App {
    /// Binds the listener (port 0 picks a free port) and sets up the verifier and the upstream
    /// clients. Nothing upstream is contacted yet, except the JWKS fetch, started in the
    /// background.
    pub async fn build(config: Config) -> Result<Self, BuildError> {
        let (listener, addr) = bind(config.addr).await?;
        let (metrics_listener, metrics_addr) = bind(config.metrics_addr).await?;

        let browser = Browser::from_config(&config)?.map(Arc::new);
        let verifier = config
            .auth
            .build_verifier_for(orders::ROUTES)
            .map_err(|error| BuildError::Verifier(error.to_string()))?;

        // Balanced across every address the host resolves to: point ORDERS_GRPC_URL at a
        // headless Service and calls spread over all orders-service pods.
        let (connect_timeout, request_timeout) = (config.connect_timeout, config.request_timeout);
        let channel = platform::grpc::balanced_channel(
            &config.orders_grpc_url,
            GRPC_RESOLVE_INTERVAL,
            move |endpoint| {
                endpoint
                    .connect_timeout(connect_timeout)
                    .timeout(request_timeout)
                    .tcp_nodelay(true)
            },
        )
        .map_err(|error| BuildError::OrdersUrl(error.to_string()))?;
        let orders = OrderServiceClient::new(channel)
            .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES);

        let proxy = Proxy::new(
            &config.auth_http_url,
            config.max_body,
            config.connect_timeout,
            config.request_timeout,
        )?
        .trusting(config.trusted_proxies.clone());

        let lifecycle = Lifecycle::new();
        let state = AppState {
            verifier,
            orders,
            request_timeout: config.request_timeout,
            lifecycle: lifecycle.clone(),
        };
        let limits = Limits {
            max_body: config.max_body,
            request_timeout: config.request_timeout,
        };
        Ok(Self {
            listener,
            addr,
            metrics_listener,
            metrics_addr,
            router: router(
                WebState {
                    app: state,
                    proxy: Arc::new(proxy),
                    browser,
                    mode: config.auth.mode,
                },
                limits,
            ),
            drain: config.drain(),
            lifecycle,
        })
    }

    /// Where the gateway listens.
    pub fn gateway_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `GET /metrics` listens.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// The gateway's shutdown phase (what `/readyz` reports first).
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// Serves until `shutdown` resolves, then shuts down readiness first: `/readyz` answers 503
    /// at once, the listener keeps serving for `GATEWAY_SHUTDOWN_DELAY`, then it closes and
    /// in-flight requests have up to `GATEWAY_SHUTDOWN_GRACE` to finish.
    pub async fn run<F>(self, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send,
    {
        let server = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(self.lifecycle.stopping())
        .into_future();
        // Scraped until the listeners close, so the drain itself shows on the dashboards.
        let metrics = axum::serve(self.metrics_listener, platform::telemetry::metrics_router())
            .with_graceful_shutdown(self.lifecycle.stopping())
            .into_future();
        let servers = vec![tokio::spawn(server), tokio::spawn(metrics)];
        platform::shutdown::serve(&self.lifecycle, shutdown, self.drain, servers).await
    }
}

/// Binds `addr` (port 0 picks a free port) and returns the listener with its bound address.
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), BuildError> {
    let bind_error = |source| BuildError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    Ok((listener, bound))
}
