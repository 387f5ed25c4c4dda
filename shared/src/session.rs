//! Session checks: what a verifier does, after signature and claims, to learn whether a token's
//! session still stands. This is where the three modes differ:
//!
//! - `stateless`: nothing; a token is good until it expires.
//! - `stateful`: asks a [`SessionLookup`] on every request (the issuer over gRPC, the shared
//!   Redis store, or, inside the issuer, its own store).
//! - `hybrid`: consults an in-memory revocation set fed by the issuer's revocation stream
//!   ([`crate::revocation::RevocationFeed`]), with no I/O per request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::claims::AccessClaims;
use crate::error::{AuthError, RejectReason};
use crate::revocation::RevocationFeed;

/// Redis key under which a session's record lives while the session is active. The issuer's
/// Redis session store writes it (with a TTL equal to the session's remaining life) and deletes
/// it when the session ends; a `stateful` verifier with `REDIS_URL` only tests its existence.
pub fn redis_session_key(sid: &str) -> String {
    format!("auth:session:{sid}")
}

/// A boxed future, so [`SessionLookup`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a session could not be looked up. The request fails closed (503).
#[derive(Debug, Clone, thiserror::Error)]
#[error("session lookup failed: {0}")]
pub struct LookupError(pub String);

/// Answers whether a session is active.
pub trait SessionLookup: Send + Sync + std::fmt::Debug + 'static {
    fn is_active<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Result<bool, LookupError>>;
}

/// A `stateful` check: one lookup per request, with an optional short cache of positive answers
/// (`AUTH_SESSION_CACHE_TTL`; a revoked session may then be accepted for up to that long).
#[derive(Debug, Clone)]
pub struct StatefulCheck {
    lookup: Arc<dyn SessionLookup>,
    active_cache: Option<moka::future::Cache<String, ()>>,
}

impl StatefulCheck {
    pub fn new(lookup: Arc<dyn SessionLookup>, cache_ttl: Duration) -> Self {
        let active_cache = (!cache_ttl.is_zero()).then(|| {
            moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(cache_ttl)
                .build()
        });
        Self {
            lookup,
            active_cache,
        }
    }

    /// `Ok` when the token has no session (a service token) or its session is active.
    pub async fn check(&self, claims: &AccessClaims) -> Result<(), AuthError> {
        let Some(sid) = claims.sid.as_deref() else {
            return Ok(());
        };
        if let Some(cache) = &self.active_cache
            && cache.contains_key(sid)
        {
            return Ok(());
        }
        match self.lookup.is_active(sid).await {
            Ok(true) => {
                if let Some(cache) = &self.active_cache {
                    cache.insert(sid.to_owned(), ()).await;
                    #[allow(clippy::cast_precision_loss)]
                    metrics::gauge!("auth_session_cache_entries").set(cache.entry_count() as f64);
                }
                Ok(())
            }
            Ok(false) => Err(RejectReason::Revoked.into()),
            Err(error) => {
                tracing::warn!(%error, "session lookup failed; refusing the request");
                metrics::counter!("auth_session_lookup_errors_total").increment(1);
                Err(AuthError::Unavailable)
            }
        }
    }
}

/// What a verifier checks beyond signature and claims.
#[derive(Debug, Clone, Default)]
pub enum SessionCheck {
    /// Nothing: revocation only by expiry.
    #[default]
    Stateless,
    /// A lookup per request.
    Stateful(StatefulCheck),
    /// The in-memory revocation set; falls back to its stateful check (or fails closed) when the
    /// feed is stale.
    Hybrid(RevocationFeed),
}

impl SessionCheck {
    pub fn stateful(lookup: Arc<dyn SessionLookup>, cache_ttl: Duration) -> Self {
        SessionCheck::Stateful(StatefulCheck::new(lookup, cache_ttl))
    }

    /// The mode's name, for metrics and logs.
    pub fn mode(&self) -> &'static str {
        match self {
            SessionCheck::Stateless => "stateless",
            SessionCheck::Stateful(_) => "stateful",
            SessionCheck::Hybrid(_) => "hybrid",
        }
    }

    pub(crate) async fn check(&self, kid: &str, claims: &AccessClaims) -> Result<(), AuthError> {
        match self {
            SessionCheck::Stateless => Ok(()),
            SessionCheck::Stateful(check) => check.check(claims).await,
            SessionCheck::Hybrid(feed) => feed.check(kid, claims).await,
        }
    }

    /// Whether the check can currently decide (hybrid: the feed is fresh, or a fallback exists).
    pub(crate) fn is_ready(&self) -> bool {
        match self {
            SessionCheck::Stateless | SessionCheck::Stateful(_) => true,
            SessionCheck::Hybrid(feed) => feed.is_ready(),
        }
    }
}

/// Asks the issuer over gRPC (`SessionService/CheckSession`), authenticated with the verifier's
/// own client-credentials token.
#[derive(Debug)]
pub struct GrpcSessionLookup {
    client:
        proto::auth::v1::session_service_client::SessionServiceClient<tonic::transport::Channel>,
    token: Arc<crate::service_token::ServiceToken>,
}

impl GrpcSessionLookup {
    /// A lookup against `grpc_url`, connected lazily (and reconnected) by tonic.
    pub fn new(
        grpc_url: &str,
        token: Arc<crate::service_token::ServiceToken>,
        timeout: Duration,
    ) -> Result<Self, LookupError> {
        let channel = tonic::transport::Endpoint::from_shared(grpc_url.to_owned())
            .map_err(|e| LookupError(e.to_string()))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Self {
            client: proto::auth::v1::session_service_client::SessionServiceClient::new(channel),
            token,
        })
    }

    async fn ask(&self, sid: &str) -> Result<Result<bool, tonic::Status>, LookupError> {
        let mut request = tonic::Request::new(proto::auth::v1::CheckSessionRequest {
            sid: sid.to_owned(),
        });
        crate::grpc::with_bearer(&mut request, &self.token.get().await?)
            .map_err(|e| LookupError(e.to_string()))?;
        Ok(self
            .client
            .clone()
            .check_session(request)
            .await
            .map(|response| response.into_inner().active))
    }
}

impl SessionLookup for GrpcSessionLookup {
    fn is_active<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Result<bool, LookupError>> {
        Box::pin(async move {
            match self.ask(sid).await? {
                Ok(active) => Ok(active),
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

/// Reads the shared Redis session store directly: a session is active while its key exists.
#[derive(Debug)]
pub struct RedisSessionLookup {
    client: redis::Client,
    /// Connected on first use and reconnected by the manager; a Redis outage at start-up fails
    /// requests closed instead of keeping the service from starting.
    connection: tokio::sync::OnceCell<redis::aio::ConnectionManager>,
    timeout: Duration,
}

impl RedisSessionLookup {
    pub fn new(redis_url: &str, timeout: Duration) -> Result<Self, LookupError> {
        Ok(Self {
            client: redis::Client::open(redis_url).map_err(|e| LookupError(e.to_string()))?,
            connection: tokio::sync::OnceCell::new(),
            timeout,
        })
    }

    async fn connection(&self) -> Result<redis::aio::ConnectionManager, LookupError> {
        self.connection
            .get_or_try_init(|| async {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(1);
                redis::aio::ConnectionManager::new_with_config(self.client.clone(), config).await
            })
            .await
            .cloned()
            .map_err(|e| LookupError(e.to_string()))
    }
}

impl SessionLookup for RedisSessionLookup {
    fn is_active<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Result<bool, LookupError>> {
        Box::pin(async move {
            let mut connection = self.connection().await?;
            redis::cmd("EXISTS")
                .arg(redis_session_key(sid))
                .query_async::<bool>(&mut connection)
                .await
                .map_err(|e| LookupError(e.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::claims::Audience;

    /// A scripted session store counting its lookups.
    #[derive(Debug, Default)]
    struct Scripted {
        active: Mutex<Option<bool>>,
        lookups: AtomicUsize,
    }

    impl SessionLookup for Scripted {
        fn is_active<'a>(&'a self, _sid: &'a str) -> BoxFuture<'a, Result<bool, LookupError>> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            let answer = *self.active.lock().unwrap();
            Box::pin(async move { answer.ok_or_else(|| LookupError("down".into())) })
        }
    }

    fn claims(sid: Option<&str>) -> AccessClaims {
        AccessClaims {
            iss: "i".into(),
            sub: "u".into(),
            aud: Audience::One("a".into()),
            exp: 2,
            iat: 1,
            nbf: None,
            jti: "j".into(),
            scope: None,
            roles: vec![],
            sid: sid.map(str::to_owned),
            client_id: None,
        }
    }

    #[tokio::test]
    async fn every_request_asks_without_a_cache() {
        let store = Arc::new(Scripted::default());
        *store.active.lock().unwrap() = Some(true);
        let check = StatefulCheck::new(store.clone(), Duration::ZERO);
        for _ in 0..3 {
            check.check(&claims(Some("s"))).await.unwrap();
        }
        assert_eq!(store.lookups.load(Ordering::SeqCst), 3);
        *store.active.lock().unwrap() = Some(false);
        assert_eq!(
            check.check(&claims(Some("s"))).await,
            Err(AuthError::Unauthenticated(RejectReason::Revoked))
        );
    }

    #[tokio::test]
    async fn an_unreachable_store_fails_closed() {
        let store = Arc::new(Scripted::default());
        let check = StatefulCheck::new(store, Duration::ZERO);
        assert_eq!(
            check.check(&claims(Some("s"))).await,
            Err(AuthError::Unavailable)
        );
    }

    #[tokio::test]
    async fn tokens_without_a_session_are_not_looked_up() {
        let store = Arc::new(Scripted::default());
        let check = StatefulCheck::new(store.clone(), Duration::ZERO);
        check.check(&claims(None)).await.unwrap();
        assert_eq!(store.lookups.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_configured_cache_reuses_positive_answers_only() {
        let store = Arc::new(Scripted::default());
        *store.active.lock().unwrap() = Some(false);
        let check = StatefulCheck::new(store.clone(), Duration::from_secs(60));
        assert!(check.check(&claims(Some("s"))).await.is_err());
        assert!(check.check(&claims(Some("s"))).await.is_err());
        assert_eq!(
            store.lookups.load(Ordering::SeqCst),
            2,
            "negative answers are not cached"
        );
        *store.active.lock().unwrap() = Some(true);
        check.check(&claims(Some("s"))).await.unwrap();
        check.check(&claims(Some("s"))).await.unwrap();
        assert_eq!(store.lookups.load(Ordering::SeqCst), 3);
    }
}
