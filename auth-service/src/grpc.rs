//! gRPC: `auth.v1.SessionService`, for verifiers in `stateful` mode.
//!
//! Callers authenticate with an access token of this issuer (a `client_credentials` token)
//! carrying scope `sessions:check`; [`shared::grpc::RequireAuthLayer`] verifies it against the
//! issuer's own public key before any RPC runs.

use proto::auth::v1::session_service_server::{SessionService, SessionServiceServer};
use proto::auth::v1::{CheckSessionRequest, CheckSessionResponse};
use shared::Scope;
use sqlx::AnyPool;
use tonic::{Request, Response, Status};

use crate::{db, sessions};

/// Longest `sid` looked up; ours are 22 characters.
const MAX_SID_LEN: usize = 128;

/// The `SessionService` implementation.
#[derive(Debug, Clone)]
pub struct SessionChecker {
    pool: AnyPool,
}

impl SessionChecker {
    pub fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    pub fn into_server(self) -> SessionServiceServer<Self> {
        SessionServiceServer::new(self)
    }
}

#[tonic::async_trait]
impl SessionService for SessionChecker {
    #[tracing::instrument(name = "auth.v1.SessionService/CheckSession", skip_all, fields(caller))]
    async fn check_session(
        &self,
        request: Request<CheckSessionRequest>,
    ) -> Result<Response<CheckSessionResponse>, Status> {
        let principal = shared::grpc::principal(&request)?;
        tracing::Span::current().record("caller", principal.sub());
        principal.require(Scope::SessionsCheck)?;
        let sid = request.get_ref().sid.as_str();
        if sid.is_empty() {
            return Err(Status::invalid_argument("sid is required"));
        }
        if sid.len() > MAX_SID_LEN {
            return Ok(Response::new(CheckSessionResponse {
                active: false,
                expires_at: 0,
            }));
        }
        let active_until = sessions::active_until(&self.pool, sid, db::now())
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "session lookup failed");
                Status::internal("internal error")
            })?;
        Ok(Response::new(CheckSessionResponse {
            active: active_until.is_some(),
            expires_at: active_until.unwrap_or(0),
        }))
    }
}
