//! The `stateful` check: whether a token's session is still active, asked of a
//! [`SessionLookup`] on every request. The lookups: the issuer over gRPC ([`grpc`], feature
//! `tonic`), the shared Redis store ([`redis`], feature `redis`), or, inside the issuer, its
//! own store.

use std::sync::Arc;
use std::time::Duration;

pub use futures_util::future::BoxFuture;

use crate::claims::AccessClaims;
pub use crate::error::LookupError;
use crate::error::{AuthError, RejectReason};

#[cfg(feature = "tonic")]
pub mod grpc;
#[cfg(feature = "redis")]
pub mod redis;

#[cfg(feature = "tonic")]
pub use grpc::GrpcSessionLookup;
#[cfg(feature = "redis")]
pub use redis::RedisSessionLookup;

/// Redis key under which a session's record lives while the session is active. The issuer's
/// Redis session store writes it (with a TTL equal to the session's remaining life) and deletes
/// it when the session ends; a `stateful` verifier with `REDIS_URL` only tests its existence.
pub fn redis_session_key(sid: &str) -> String {
    format!("auth:session:{sid}")
}

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
