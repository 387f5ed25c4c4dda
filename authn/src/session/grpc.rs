//! `stateful` lookups against the issuer over gRPC (`SessionService/CheckSession`).

use std::sync::Arc;
use std::time::Duration;

use proto::auth::v1::CheckSessionRequest;
use proto::auth::v1::session_service_client::SessionServiceClient;

use super::{BoxFuture, LookupError, SessionLookup, SessionStatus};
use crate::bearer::with_bearer;
use crate::service_token::ServiceToken;

/// Asks the issuer over gRPC (`SessionService/CheckSession`), authenticated with the verifier's
/// own client-credentials token.
#[derive(Debug)]
pub struct GrpcSessionLookup {
    client: SessionServiceClient<tonic::transport::Channel>,
    token: Arc<ServiceToken>,
}

impl GrpcSessionLookup {
    /// A lookup against `grpc_url`, connected lazily (and reconnected) by tonic.
    pub fn new(
        grpc_url: &str,
        token: Arc<ServiceToken>,
        timeout: Duration,
    ) -> Result<Self, LookupError> {
        let channel = tonic::transport::Endpoint::from_shared(grpc_url.to_owned())
            .map_err(|e| LookupError(e.to_string()))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Self {
            client: SessionServiceClient::new(channel),
            token,
        })
    }

    async fn ask(&self, sid: &str) -> Result<Result<SessionStatus, tonic::Status>, LookupError> {
        let mut request = tonic::Request::new(CheckSessionRequest {
            sid: sid.to_owned(),
        });
        with_bearer(&mut request, &self.token.get().await?)
            .map_err(|e| LookupError(e.to_string()))?;
        Ok(self
            .client
            .clone()
            .check_session(request)
            .await
            .map(|response| {
                let response = response.into_inner();
                SessionStatus {
                    active: response.active,
                    user_changed_at: (response.user_changed_at > 0)
                        .then_some(response.user_changed_at),
                }
            }))
    }
}

impl SessionLookup for GrpcSessionLookup {
    fn is_active<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Result<bool, LookupError>> {
        Box::pin(async move { Ok(self.status(sid, "").await?.active) })
    }

    /// `CheckSession` answers both: the issuer reads the session's user.
    fn status<'a>(
        &'a self,
        sid: &'a str,
        _sub: &'a str,
    ) -> BoxFuture<'a, Result<SessionStatus, LookupError>> {
        Box::pin(async move {
            match self.ask(sid).await? {
                Ok(status) => Ok(status),
                // Our own token expired or its key rotated: get a new one and ask once more.
                Err(status) if status.code() == tonic::Code::Unauthenticated => {
                    self.token.invalidate().await;
                    self.ask(sid)
                        .await?
                        .map_err(|status| LookupError(status.to_string()))
                }
                Err(status) => Err(LookupError(status.to_string())),
            }
        })
    }
}
