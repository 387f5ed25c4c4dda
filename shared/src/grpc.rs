//! Bearer tokens in gRPC calls: a tower layer that verifies them on the server, and the
//! client-side helper that attaches them.
//!
//! A tower layer rather than a tonic interceptor because interceptors are synchronous, and
//! verification may have to wait for a key-set fetch (an unknown `kid`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::HeaderMap;
use tonic::metadata::MetadataValue;
use tower::{Layer, Service};

use crate::authz::Principal;
use crate::error::{AuthError, RejectReason};
use crate::http::bearer_token;
use crate::verifier::{Verifier, record_rejection};

/// The largest header list (all metadata of a call) a gRPC server accepts: room for a maximal
/// token ([`crate::jws::MAX_TOKEN_LEN`]) and the usual metadata. Larger lists are refused by
/// HTTP/2 before anything parses them.
pub const MAX_METADATA_BYTES: u32 = 16 * 1024;

/// Verifies the `authorization: Bearer` metadata of every call and puts the [`Principal`] in
/// the request extensions; calls without a valid token are answered `UNAUTHENTICATED` (or
/// `UNAVAILABLE` when no key set is usable) without reaching the service.
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
pub type ResponseFuture<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

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
        Box::pin(async move {
            match authenticate(&verifier, request.headers()).await {
                Ok(principal) => {
                    request.extensions_mut().insert(principal);
                    inner.call(request).await
                }
                Err(error) => Ok(tonic::Status::from(error).into_http()),
            }
        })
    }
}

async fn authenticate(verifier: &Verifier, headers: &HeaderMap) -> Result<Principal, AuthError> {
    let token = token_from_metadata(headers).inspect_err(|r| record_rejection(*r))?;
    verifier.verify(token).await
}

/// The one bearer token of a call; two `authorization` entries are refused.
pub fn token_from_metadata(headers: &HeaderMap) -> Result<&str, RejectReason> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    match (values.next(), values.next()) {
        (None, _) => Err(RejectReason::Missing),
        (Some(value), None) => bearer_token(value),
        (Some(_), Some(_)) => Err(RejectReason::Ambiguous),
    }
}

/// The verified caller of an RPC served behind [`RequireAuthLayer`].
pub fn principal<T>(request: &tonic::Request<T>) -> Result<&Principal, tonic::Status> {
    request
        .extensions()
        .get::<Principal>()
        .ok_or_else(|| AuthError::Unauthenticated(RejectReason::Missing).into())
}

/// Attaches `authorization: Bearer <token>` to an outgoing call.
pub fn with_bearer<T>(request: &mut tonic::Request<T>, token: &str) -> Result<(), tonic::Status> {
    let value = MetadataValue::try_from(format!("Bearer {token}"))
        .map_err(|_| tonic::Status::from(AuthError::Unauthenticated(RejectReason::Malformed)))?;
    request.metadata_mut().insert("authorization", value);
    Ok(())
}

/// Attaches the caller's request id and `traceparent` (W3C Trace Context) to an outgoing call,
/// so the callee continues the same trace ([`crate::trace`]).
pub fn with_trace<T>(request: &mut tonic::Request<T>, context: &crate::trace::TraceContext) {
    let metadata = request.metadata_mut();
    if let Ok(id) = MetadataValue::try_from(context.request_id().as_str()) {
        metadata.insert("x-request-id", id);
    }
    if let Ok(parent) = MetadataValue::try_from(context.traceparent().to_string()) {
        metadata.insert("traceparent", parent);
    }
}

/// A gRPC channel that balances calls across every address `url`'s host resolves to, and follows
/// changes: the host is re-resolved every `refresh`.
///
/// One HTTP/2 connection carries every call to one server, so behind a Kubernetes Service a
/// plain channel pins a client to one pod. Pointed at a headless Service (whose DNS name
/// resolves to every ready pod), this spreads calls across all of them. An IP-literal host gives
/// a single endpoint. When a resolution fails, the last known addresses stay in use. tonic's
/// balancer takes endpoint changes but does no resolution, hence the small resolver task here;
/// it ends when the channel is dropped.
pub fn balanced_channel(
    url: &str,
    refresh: std::time::Duration,
    configure: impl Fn(tonic::transport::Endpoint) -> tonic::transport::Endpoint + Send + 'static,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    use std::collections::BTreeSet;
    use std::net::SocketAddr;

    use tonic::transport::channel::Change;
    use tonic::transport::{Channel, Endpoint};

    let template = Endpoint::from_shared(url.to_owned())?;
    let uri = template.uri().clone();
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(configure(template).connect_lazy());
    }
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    let scheme = uri.scheme_str().unwrap_or("http").to_owned();
    let (channel, changes) = Channel::balance_channel::<SocketAddr>(64);
    tokio::spawn(async move {
        let mut current: BTreeSet<SocketAddr> = BTreeSet::new();
        loop {
            match tokio::net::lookup_host((host.as_str(), port)).await {
                Ok(addresses) => {
                    let resolved: BTreeSet<SocketAddr> = addresses.collect();
                    for gone in current.difference(&resolved) {
                        if changes.send(Change::Remove(*gone)).await.is_err() {
                            return;
                        }
                    }
                    for new in resolved.difference(&current) {
                        let Ok(endpoint) = Endpoint::from_shared(format!("{scheme}://{new}"))
                        else {
                            continue;
                        };
                        if changes
                            .send(Change::Insert(*new, configure(endpoint)))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    if resolved != current {
                        tracing::debug!(%host, addresses = resolved.len(), "gRPC endpoints updated");
                    }
                    current = resolved;
                }
                Err(error) => {
                    tracing::warn!(%host, %error, "cannot resolve gRPC host; keeping the last known endpoints");
                }
            }
            tokio::time::sleep(refresh).await;
            if changes.is_closed() {
                return;
            }
        }
    });
    Ok(channel)
}
