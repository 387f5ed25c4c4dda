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

/// What a lookup knows of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionStatus {
    pub active: bool,
    /// Unix seconds of the last change of the user's roles or scopes, when the lookup knows of
    /// one: tokens issued at or before it carry stale claims.
    pub user_changed_at: Option<i64>,
}

/// Redis key holding the time (Unix seconds) of the last change of a user's roles or scopes,
/// while tokens issued before it may still be live. The issuer's Redis session store writes it
/// (with a TTL of one access-token lifetime and a margin); a `stateful` verifier with
/// `REDIS_URL` reads it with the session's key, in one round trip.
pub fn redis_user_changed_key(user_id: &str) -> String {
    format!("auth:user-changed:{user_id}")
}

/// Answers whether a session is active.
pub trait SessionLookup: Send + Sync + std::fmt::Debug + 'static {
    fn is_active<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Result<bool, LookupError>>;

    /// The session's state and the time of its user's last change (`sub` is the token's, for
    /// lookups that key that time by user). By default, [`SessionLookup::is_active`] alone:
    /// such a lookup knows of no change.
    fn status<'a>(
        &'a self,
        sid: &'a str,
        sub: &'a str,
    ) -> BoxFuture<'a, Result<SessionStatus, LookupError>> {
        let _ = sub;
        Box::pin(async move {
            Ok(SessionStatus {
                active: self.is_active(sid).await?,
                user_changed_at: None,
            })
        })
    }
}

/// A `stateful` check: one lookup per request, with an optional short cache of positive answers
/// (`AUTH_SESSION_CACHE_TTL`; a revoked session may then be accepted for up to that long).
#[derive(Debug, Clone)]
pub struct StatefulCheck {
    lookup: Arc<dyn SessionLookup>,
    /// Active sessions, with their user's last change as the lookup told it.
    active_cache: Option<moka::future::Cache<String, Option<i64>>>,
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

    /// `Ok` when the token has no session (a service token) or its session is active and the
    /// token was issued after its user's last change ([`RejectReason::ClaimsChanged`] if not).
    pub async fn check(&self, claims: &AccessClaims) -> Result<(), AuthError> {
        let Some(sid) = claims.sid.as_deref() else {
            return Ok(());
        };
        let fresh = |changed_at: Option<i64>| match changed_at {
            Some(changed_at) if claims.iat <= changed_at => Err(RejectReason::ClaimsChanged.into()),
            _ => Ok(()),
        };
        if let Some(cache) = &self.active_cache
            && let Some(changed_at) = cache.get(sid).await
        {
            return fresh(changed_at);
        }
        match self.lookup.status(sid, &claims.sub).await {
            Ok(SessionStatus {
                active: true,
                user_changed_at,
            }) => {
                if let Some(cache) = &self.active_cache {
                    cache.insert(sid.to_owned(), user_changed_at).await;
                    #[allow(clippy::cast_precision_loss)]
                    metrics::gauge!("auth_session_cache_entries").set(cache.entry_count() as f64);
                }
                fresh(user_changed_at)
            }
            Ok(SessionStatus { active: false, .. }) => Err(RejectReason::Revoked.into()),
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

    /// A store that knows the time of its users' last change.
    #[derive(Debug)]
    struct Changed {
        at: Option<i64>,
        lookups: AtomicUsize,
    }

    impl SessionLookup for Changed {
        fn is_active<'a>(&'a self, _sid: &'a str) -> BoxFuture<'a, Result<bool, LookupError>> {
            unreachable!("status is asked")
        }

        fn status<'a>(
            &'a self,
            _sid: &'a str,
            sub: &'a str,
        ) -> BoxFuture<'a, Result<SessionStatus, LookupError>> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            let user_changed_at = if sub == "u" { self.at } else { None };
            Box::pin(async move {
                Ok(SessionStatus {
                    active: true,
                    user_changed_at,
                })
            })
        }
    }

    fn issued_at(iat: i64) -> AccessClaims {
        AccessClaims {
            iat,
            exp: iat + 300,
            ..claims(Some("s"))
        }
    }

    #[tokio::test]
    async fn a_token_issued_at_or_before_its_users_change_is_refused_as_stale() {
        let store = Arc::new(Changed {
            at: Some(100),
            lookups: AtomicUsize::new(0),
        });
        let check = StatefulCheck::new(store.clone(), Duration::ZERO);
        let stale = Err(AuthError::Unauthenticated(RejectReason::ClaimsChanged));
        assert_eq!(check.check(&issued_at(99)).await, stale);
        assert_eq!(check.check(&issued_at(100)).await, stale);
        assert!(check.check(&issued_at(101)).await.is_ok());
        let other = AccessClaims {
            sub: "v".into(),
            ..issued_at(50)
        };
        assert!(check.check(&other).await.is_ok(), "another user");
        let never = StatefulCheck::new(
            Arc::new(Changed {
                at: None,
                lookups: AtomicUsize::new(0),
            }),
            Duration::ZERO,
        );
        assert!(never.check(&issued_at(1)).await.is_ok());
    }

    #[tokio::test]
    async fn the_cache_keeps_the_time_of_the_change_with_the_session() {
        let store = Arc::new(Changed {
            at: Some(100),
            lookups: AtomicUsize::new(0),
        });
        let check = StatefulCheck::new(store.clone(), Duration::from_secs(60));
        assert!(check.check(&issued_at(101)).await.is_ok());
        assert_eq!(
            check.check(&issued_at(100)).await,
            Err(AuthError::Unauthenticated(RejectReason::ClaimsChanged)),
            "a cached answer still compares iat"
        );
        assert_eq!(store.lookups.load(Ordering::SeqCst), 1);
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
