//! The tonic adapter (feature `tonic`): a tower layer that verifies the bearer token of every
//! call a gRPC server receives, and the gRPC status of every [`AuthError`].
//!
//! A tower layer rather than a tonic interceptor because interceptors are synchronous, and
//! verification may have to wait for a key-set fetch (an unknown `kid`).

use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::HeaderMap;
use tower::{Layer, Service};

use crate::authz::Principal;
pub use crate::bearer::{token_from_metadata, with_bearer};
use crate::error::{AuthError, RejectReason};
use crate::freshness::Freshness;
use crate::verifier::{Verifier, record_rejection};

/// The largest header list (all metadata of a call) a gRPC server accepts: room for a maximal
/// token ([`crate::jws::MAX_TOKEN_LEN`]) and the usual metadata. Larger lists are refused by
/// HTTP/2 before anything parses them.
pub const MAX_METADATA_BYTES: u32 = 16 * 1024;

/// Verifies the `authorization: Bearer` metadata of every call and puts the [`Principal`] in
/// the request extensions; calls without a valid token are answered `UNAUTHENTICATED` (or
/// `UNAVAILABLE` when no key set is usable) without reaching the service. A method named in
/// the verifier's [`crate::RoutePolicy`] (`/package.Service/Method`) is verified at its level.
#[derive(Debug, Clone)]
pub struct RequireAuthLayer {
    verifier: Verifier,
}

impl RequireAuthLayer {
    pub fn new(verifier: Verifier) -> Self {
        Self { verifier }
    }
}

impl<S> Layer<S> for RequireAuthLayer {
    type Service = RequireAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireAuth {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

/// The service made by [`RequireAuthLayer`].
#[derive(Debug, Clone)]
pub struct RequireAuth<S> {
    inner: S,
    verifier: Verifier,
}

/// Boxed because verification is an `async fn` whose future type cannot be named.
pub type ResponseFuture<R, E> = BoxFuture<'static, Result<R, E>>;

impl<S, B> Service<http::Request<B>> for RequireAuth<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone is not ready; the instance polled ready is the one to call (tower's
        // documented pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        // The method path (`/package.Service/Method`) names the RPC; gRPC calls are all POSTs.
        let level = verifier.level_of("POST", request.uri().path());
        Box::pin(async move {
            match authenticate(&verifier, request.headers(), level).await {
                Ok(principal) => {
                    request.extensions_mut().insert(principal);
                    inner.call(request).await
                }
                Err(error) => Ok(tonic::Status::from(error).into_http()),
            }
        })
    }
}

async fn authenticate(
    verifier: &Verifier,
    headers: &HeaderMap,
    level: Option<Freshness>,
) -> Result<Principal, AuthError> {
    let token = token_from_metadata(headers).inspect_err(|r| record_rejection(*r))?;
    verifier.verify_with(token, level).await
}

/// The verified caller of an RPC served behind [`RequireAuthLayer`].
pub fn principal<T>(request: &tonic::Request<T>) -> Result<&Principal, tonic::Status> {
    request
        .extensions()
        .get::<Principal>()
        .ok_or_else(|| AuthError::Unauthenticated(RejectReason::Missing).into())
}

impl From<AuthError> for tonic::Status {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Unauthenticated(RejectReason::Missing) => {
                tonic::Status::unauthenticated("an access token is required")
            }
            AuthError::Unauthenticated(RejectReason::ClaimsChanged) => {
                tonic::Status::unauthenticated(crate::error::CLAIMS_CHANGED_DESCRIPTION)
            }
            AuthError::Unauthenticated(_) => {
                tonic::Status::unauthenticated(crate::error::INVALID_TOKEN_DESCRIPTION)
            }
            AuthError::Forbidden { scope } => {
                tonic::Status::permission_denied(format!("scope {} is required", scope.as_str()))
            }
            AuthError::CrossSite => tonic::Status::permission_denied("cross-site request refused"),
            AuthError::Unavailable => {
                tonic::Status::unavailable("tokens cannot be verified right now")
            }
        }
    }
}
