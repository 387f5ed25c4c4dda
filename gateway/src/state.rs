//! What the handlers share.

use std::time::Duration;

use authn::Verifier;
use axum::extract::FromRef;
use platform::shutdown::Lifecycle;
use proto::orders::v1::order_service_client::OrderServiceClient;
use tonic::transport::Channel;

/// The state of the REST and operations routes (the proxy routes carry their own).
#[derive(Debug, Clone)]
pub struct AppState {
    /// Verifies tokens at the edge.
    pub verifier: Verifier,
    /// The orders service, over a lazily connected, multiplexed channel (cheap to clone).
    pub orders: OrderServiceClient<Channel>,
    /// The deadline passed on to upstream calls.
    pub request_timeout: Duration,
    /// The shutdown phase: `/readyz` turns 503 as soon as a shutdown begins.
    pub lifecycle: Lifecycle,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}
