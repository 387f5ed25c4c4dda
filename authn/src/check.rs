//! What a verifier does after signature and claims to learn whether a token still stands. This
//! is where the three modes differ:
//!
//! - `stateless`: nothing; a token is good until it expires.
//! - `stateful`: asks a [`SessionLookup`] on every request ([`crate::session`]).
//! - `hybrid`: consults an in-memory revocation set fed by the issuer's revocation stream
//!   ([`crate::revocation::RevocationFeed`], feature `tonic`), with no I/O per request.

use std::sync::Arc;
use std::time::Duration;

use crate::claims::AccessClaims;
use crate::error::AuthError;
use crate::freshness::Freshness;
#[cfg(feature = "tonic")]
use crate::revocation::RevocationFeed;
use crate::session::{SessionLookup, StatefulCheck};

/// What a verifier checks beyond signature and claims.
#[derive(Debug, Clone, Default)]
pub enum SessionCheck {
    /// Nothing: revocation only by expiry.
    #[default]
    Stateless,
    /// A lookup per request.
    Stateful(StatefulCheck),
    /// The in-memory revocation set; falls back to its stateful check (or fails closed) when the
    /// feed is stale. Fed over gRPC, hence only with the `tonic` feature.
    #[cfg(feature = "tonic")]
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
            #[cfg(feature = "tonic")]
            SessionCheck::Hybrid(_) => "hybrid",
        }
    }

    pub(crate) async fn check(&self, kid: &str, claims: &AccessClaims) -> Result<(), AuthError> {
        #[cfg(not(feature = "tonic"))]
        let _ = kid;
        match self {
            SessionCheck::Stateless => Ok(()),
            SessionCheck::Stateful(check) => check.check(claims).await,
            #[cfg(feature = "tonic")]
            SessionCheck::Hybrid(feed) => feed.check(kid, claims).await,
        }
    }

    /// The check at `level` instead of the mode's ([`crate::freshness`]): `Token` nothing,
    /// `Pushed` the revocation feed (hybrid), `Live` the revocation set where there is one and
    /// then `live` (or the mode's own lookup). A level this check cannot give fails closed:
    /// [`crate::Verifier::with_route_policy`] refuses such a policy before any request.
    pub(crate) async fn check_at(
        &self,
        level: Freshness,
        live: Option<&StatefulCheck>,
        kid: &str,
        claims: &AccessClaims,
    ) -> Result<(), AuthError> {
        #[cfg(not(feature = "tonic"))]
        let _ = kid;
        match level {
            Freshness::Token => Ok(()),
            Freshness::Pushed => match self {
                #[cfg(feature = "tonic")]
                SessionCheck::Hybrid(feed) => feed.check(kid, claims).await,
                _ => Err(cannot_check(level, self)),
            },
            Freshness::Live => {
                // What the set holds (a revoked key, a disabled user) is known without asking.
                #[cfg(feature = "tonic")]
                if let SessionCheck::Hybrid(feed) = self {
                    feed.refuse_listed(kid, claims)?;
                }
                match live.or_else(|| self.lookup()) {
                    Some(lookup) => lookup.check(claims).await,
                    None => Err(cannot_check(level, self)),
                }
            }
        }
    }

    /// The session lookup this check makes, or falls back to: what `live` routes ask when the
    /// verifier was given none of their own.
    pub fn lookup(&self) -> Option<&StatefulCheck> {
        match self {
            SessionCheck::Stateless => None,
            SessionCheck::Stateful(check) => Some(check),
            #[cfg(feature = "tonic")]
            SessionCheck::Hybrid(feed) => feed.fallback(),
        }
    }

    /// Whether this check has the issuer's revocation feed (`hybrid`), which `Pushed` needs.
    pub(crate) fn has_feed(&self) -> bool {
        #[cfg(feature = "tonic")]
        let has = matches!(self, SessionCheck::Hybrid(_));
        #[cfg(not(feature = "tonic"))]
        let has = false;
        has
    }

    /// Whether the check can currently decide (hybrid: the feed is fresh, or a fallback exists).
    pub(crate) fn is_ready(&self) -> bool {
        match self {
            SessionCheck::Stateless | SessionCheck::Stateful(_) => true,
            #[cfg(feature = "tonic")]
            SessionCheck::Hybrid(feed) => feed.is_ready(),
        }
    }
}

/// A request at a level its verifier cannot check: a policy that slipped past the start-up
/// check. Refused as undecidable (never accepted), and logged.
fn cannot_check(level: Freshness, check: &SessionCheck) -> AuthError {
    tracing::error!(
        level = level.as_str(),
        mode = check.mode(),
        "a request asks for a freshness this verifier cannot check; refusing it"
    );
    AuthError::Unavailable
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use proto::auth::v1::revocation_event::Target;
    use proto::auth::v1::watch_revocations_response::Message;
    use proto::auth::v1::{Heartbeat, KeyRevoked, RevocationEvent, SessionsEnded};

    use super::*;
    use crate::claims::Audience;
    use crate::error::RejectReason;
    use crate::session::{BoxFuture, LookupError};

    /// A session store holding the ended sessions, counting its lookups.
    #[derive(Debug, Default)]
    struct Store {
        ended: Mutex<HashSet<String>>,
        lookups: AtomicUsize,
    }

    impl Store {
        fn end(&self, sid: &str) {
            self.ended.lock().unwrap().insert(sid.into());
        }

        fn lookups(&self) -> usize {
            self.lookups.load(Ordering::SeqCst)
        }
    }

    impl SessionLookup for Store {
        fn is_active<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Result<bool, LookupError>> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            let active = !self.ended.lock().unwrap().contains(sid);
            Box::pin(async move { Ok(active) })
        }
    }

    fn claims(sid: &str) -> AccessClaims {
        let now = crate::unix_now();
        AccessClaims {
            iss: "i".into(),
            sub: "alice".into(),
            aud: Audience::One("a".into()),
            exp: now + 300,
            iat: now,
            nbf: None,
            jti: "j".into(),
            scope: None,
            roles: vec![],
            sid: Some(sid.into()),
            client_id: None,
        }
    }

    fn lookup(store: &Arc<Store>) -> StatefulCheck {
        StatefulCheck::new(store.clone(), Duration::ZERO)
    }

    const REVOKED: Result<(), AuthError> = Err(AuthError::Unauthenticated(RejectReason::Revoked));

    /// A fresh feed that has heard of the end of session `sid` (and nothing else).
    fn fresh_feed_that_ended(sid: &str, fallback: Option<StatefulCheck>) -> RevocationFeed {
        let feed = RevocationFeed::new(Duration::from_secs(5), fallback);
        let now = crate::unix_now();
        feed.receive(Message::Event(RevocationEvent {
            sequence: 1,
            occurred_at: now,
            expires_at: now + 360,
            target: Some(Target::SessionsEnded(SessionsEnded {
                session_ids: vec![sid.into()],
                ..SessionsEnded::default()
            })),
            fingerprint: "fp-1".into(),
        }));
        feed.receive(Message::Heartbeat(Heartbeat {
            head_sequence: 1,
            sent_at_ms: 0,
            log_epoch: "e".into(),
        }));
        assert!(feed.is_fresh());
        feed
    }

    /// `check` of a token of session `sid`, at `level` (`None`: the mode's).
    async fn at(
        check: &SessionCheck,
        level: Option<Freshness>,
        live: Option<&StatefulCheck>,
        sid: &str,
    ) -> Result<(), AuthError> {
        let claims = claims(sid);
        match level {
            None => check.check("k", &claims).await,
            Some(level) => check.check_at(level, live, "k", &claims).await,
        }
    }

    #[tokio::test]
    async fn in_stateless_mode_live_asks_the_lookup_and_token_asks_nothing() {
        let store = Arc::new(Store::default());
        store.end("ended");
        let stateless = SessionCheck::Stateless;
        let live = lookup(&store);

        // The mode's check and `token`: the ended session is not noticed.
        assert_eq!(at(&stateless, None, Some(&live), "ended").await, Ok(()));
        let token = at(&stateless, Some(Freshness::Token), Some(&live), "ended");
        assert_eq!(token.await, Ok(()));
        assert_eq!(store.lookups(), 0);

        let refused = at(&stateless, Some(Freshness::Live), Some(&live), "ended");
        assert_eq!(refused.await, REVOKED);
        let active = at(&stateless, Some(Freshness::Live), Some(&live), "active");
        assert_eq!(active.await, Ok(()));
        assert_eq!(store.lookups(), 2, "one lookup per live request");
    }

    #[tokio::test]
    async fn in_stateful_mode_token_skips_the_lookup_and_live_is_the_modes_check() {
        let store = Arc::new(Store::default());
        store.end("ended");
        let stateful = SessionCheck::Stateful(lookup(&store));

        let token = at(&stateful, Some(Freshness::Token), None, "ended");
        assert_eq!(token.await, Ok(()));
        assert_eq!(store.lookups(), 0, "a token route costs no lookup");

        let live = at(&stateful, Some(Freshness::Live), None, "ended");
        assert_eq!(live.await, REVOKED);
        assert_eq!(at(&stateful, None, None, "ended").await, REVOKED);
        assert_eq!(store.lookups(), 2);
    }

    #[tokio::test]
    async fn in_hybrid_mode_pushed_is_the_set_and_live_asks_the_fallback_now() {
        // The store knows of a logout the feed has not pushed yet ("late"); the feed knows of
        // one the store has forgotten ("pushed").
        let store = Arc::new(Store::default());
        store.end("late");
        let feed = fresh_feed_that_ended("pushed", Some(lookup(&store)));
        let hybrid = SessionCheck::Hybrid(feed.clone());

        for level in [None, Some(Freshness::Pushed)] {
            assert_eq!(
                at(&hybrid, level, None, "pushed").await,
                REVOKED,
                "{level:?}"
            );
            let late = at(&hybrid, level, None, "late").await;
            assert_eq!(late, Ok(()), "{level:?}: not pushed yet");
        }
        assert_eq!(store.lookups(), 0, "a fresh feed asks nobody");

        let live = Some(Freshness::Live);
        let late = at(&hybrid, live, None, "late").await;
        assert_eq!(late, REVOKED, "the lookup knows at once");
        let pushed = at(&hybrid, live, None, "pushed").await;
        assert_eq!(pushed, REVOKED, "the set is consulted too");
        assert_eq!(at(&hybrid, live, None, "active").await, Ok(()));
        assert_eq!(store.lookups(), 2, "what the set refuses costs no lookup");

        // A revoked key is refused by the set at a live route, whatever the store says.
        let now = crate::unix_now();
        feed.apply(&RevocationEvent {
            sequence: 2,
            occurred_at: now,
            expires_at: now + 360,
            target: Some(Target::KeyRevoked(KeyRevoked { kid: "k".into() })),
            fingerprint: "fp-2".into(),
        });
        assert_eq!(at(&hybrid, live, None, "active").await, REVOKED);

        let token = at(&hybrid, Some(Freshness::Token), None, "pushed").await;
        assert_eq!(token, Ok(()), "token checks nothing, not even the set");
    }

    #[tokio::test]
    async fn a_level_the_check_cannot_give_fails_closed() {
        let unavailable = Err(AuthError::Unavailable);
        let stateless = SessionCheck::Stateless;
        for level in [Freshness::Pushed, Freshness::Live] {
            let refused = at(&stateless, Some(level), None, "s").await;
            assert_eq!(refused, unavailable, "{level}");
        }
        let store = Arc::new(Store::default());
        let stateful = SessionCheck::Stateful(lookup(&store));
        let refused = at(&stateful, Some(Freshness::Pushed), None, "s").await;
        assert_eq!(refused, unavailable);
        // A hybrid feed without a fallback has nobody to ask live.
        let feed = SessionCheck::Hybrid(fresh_feed_that_ended("x", None));
        let refused = at(&feed, Some(Freshness::Live), None, "s").await;
        assert_eq!(refused, unavailable);
        assert!(!stateless.has_feed() && !stateful.has_feed() && feed.has_feed());
        assert!(stateless.lookup().is_none() && stateful.lookup().is_some());
        assert!(feed.lookup().is_none());
    }
}
