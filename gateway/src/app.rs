//! Wiring: the listener, the verifier, the upstream clients, the router and its middleware.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use axum::{BoxError, Router, middleware};
use proto::orders::v1::order_service_client::OrderServiceClient;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceBuilder;
use tower::timeout::TimeoutLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::{
    SetSensitiveRequestHeadersLayer, SetSensitiveResponseHeadersLayer,
};
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::config::Config;
use crate::error::{ApiError, error_response};
use crate::extract::REQUEST_ID_HEADER;
use crate::proxy::{self, Proxy, ProxyError};
use crate::state::AppState;
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
}

/// Bounds applied to every request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body: usize,
    pub request_timeout: Duration,
}

/// The whole HTTP surface: REST orders, the auth proxy, operations endpoints, and the middleware
/// (sensitive headers, request id, tracing, timeout, body limit, metrics).
pub fn router(state: AppState, proxy: Arc<Proxy>, limits: Limits) -> Router {
    Router::new()
        .merge(orders::router())
        .merge(ops::router())
        .with_state(state)
        .merge(cookie::router(proxy.clone()))
        .merge(proxy::router(proxy))
        .fallback(not_found)
        .layer(middleware::from_fn(ops::track))
        .layer(
            ServiceBuilder::new()
                // Outermost, so that no later layer (tracing) can ever record these values.
                .layer(SetSensitiveRequestHeadersLayer::new([
                    header::AUTHORIZATION,
                    header::COOKIE,
                    header::PROXY_AUTHORIZATION,
                ]))
                .layer(SetSensitiveResponseHeadersLayer::new([header::SET_COOKIE]))
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(make_span))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(HandleErrorLayer::new(timeout_error))
                .layer(TimeoutLayer::new(limits.request_timeout))
                .layer(DefaultBodyLimit::max(limits.max_body)),
        )
}

/// The span of one request: method, route template and request id; never headers or query.
fn make_span<B>(request: &Request<B>) -> Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|id| id.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!("request", method = %request.method(), route, request_id)
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
    router: Router,
    shutdown_grace: Duration,
}

impl App {
    /// Binds the listener (port 0 picks a free port) and sets up the verifier and the upstream
    /// clients. Nothing upstream is contacted yet, except the JWKS fetch, started in the
    /// background.
    pub async fn build(config: Config) -> Result<Self, BuildError> {
        let listener = TcpListener::bind(config.addr)
            .await
            .map_err(|source| BuildError::Bind {
                addr: config.addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| BuildError::Bind {
            addr: config.addr,
            source,
        })?;

        let verifier = config
            .auth
            .build_verifier()
            .map_err(|error| BuildError::Verifier(error.to_string()))?;

        // Balanced across every address the host resolves to: point ORDERS_GRPC_URL at a
        // headless Service and calls spread over all orders-service pods.
        let (connect_timeout, request_timeout) = (config.connect_timeout, config.request_timeout);
        let channel = shared::grpc::balanced_channel(
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
        )?;

        let state = AppState {
            verifier,
            orders,
            request_timeout: config.request_timeout,
        };
        let limits = Limits {
            max_body: config.max_body,
            request_timeout: config.request_timeout,
        };
        Ok(Self {
            listener,
            addr,
            router: router(state, Arc::new(proxy), limits),
            shutdown_grace: config.shutdown_grace,
        })
    }

    /// Where the gateway listens.
    pub fn gateway_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` resolves, then stops accepting connections and lets in-flight
    /// requests finish for up to the configured grace period.
    pub async fn run<F>(self, shutdown: F) -> std::io::Result<()>
    where
        F: Future<Output = ()> + Send,
    {
        let (stop, mut stopped) = watch::channel(false);
        let server = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        })
        .into_future();
        let mut server = tokio::spawn(server);

        tokio::select! {
            () = shutdown => {}
            result = &mut server => return result.map_err(std::io::Error::other)?,
        }

        tracing::info!(grace = ?self.shutdown_grace, "shutting down, draining requests");
        // Sending fails only when the server has already stopped: nothing left to tell.
        let _ = stop.send(true);
        match tokio::time::timeout(self.shutdown_grace, &mut server).await {
            Ok(result) => result.map_err(std::io::Error::other)?,
            Err(_) => {
                tracing::warn!("drain deadline reached, closing remaining connections");
                server.abort();
                Ok(())
            }
        }
    }
}
