//! The `hybrid` mode: an in-memory revocation set, fed by the issuer's
//! `SessionService/WatchRevocations` stream, consulted on every request without I/O.
//!
//! - Entries expire when every token they cover has expired (the event's `expires_at`), so the
//!   set stays as small as the number of revocations in one token lifetime.
//! - The feed resumes after a reconnect from the last applied sequence number, so no event is
//!   lost; the issuer retains events until they expire.
//! - Freshness: the issuer sends a heartbeat every second. When nothing has been heard for
//!   longer than `max_staleness`, the set may be missing revocations: requests then go through
//!   the fallback `stateful` check, or fail closed without one. Never open.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use proto::auth::v1::revocation_event::Target;
use proto::auth::v1::session_service_client::SessionServiceClient;
use proto::auth::v1::watch_revocations_response::Message;
use proto::auth::v1::{RevocationEvent, WatchRevocationsRequest};

use crate::bearer::with_bearer;
use crate::claims::AccessClaims;
use crate::error::{AuthError, RejectReason};
use crate::service_token::ServiceToken;
use crate::session::StatefulCheck;

/// An entry of the revocation set: when it stops mattering, and (for users) when it happened.
#[derive(Debug, Clone, Copy)]
struct Entry {
    occurred_at: i64,
    expires_at: i64,
}

struct UntilExpiresAt;

impl<K> Expiry<K, Entry> for UntilExpiresAt {
    fn expire_after_create(&self, _key: &K, entry: &Entry, _now: Instant) -> Option<Duration> {
        let remaining = entry.expires_at.saturating_sub(crate::unix_now()).max(0);
        Some(Duration::from_secs(u64::try_from(remaining).unwrap_or(0)))
    }
}

fn revocation_cache() -> moka::sync::Cache<String, Entry> {
    // No capacity bound on purpose: evicting a live revocation would let a revoked token through.
    // Expiry alone bounds the size.
    moka::sync::Cache::builder()
        .expire_after(UntilExpiresAt)
        .build()
}

/// The revocation set and the state of the stream feeding it. Cheap to clone.
#[derive(Clone)]
pub struct RevocationFeed {
    inner: Arc<Inner>,
}

struct Inner {
    sessions: moka::sync::Cache<String, Entry>,
    users: moka::sync::Cache<String, Entry>,
    kids: moka::sync::Cache<String, Entry>,
    last_sequence: AtomicU64,
    /// Milliseconds since `started` when the stream last proved the set current.
    last_heard_ms: AtomicU64,
    caught_up: AtomicBool,
    started: Instant,
    max_staleness: Duration,
    fallback: Option<StatefulCheck>,
}

impl std::fmt::Debug for RevocationFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationFeed")
            .field("last_sequence", &self.last_sequence())
            .field("fresh", &self.is_fresh())
            .field("entries", &self.entries())
            .finish_non_exhaustive()
    }
}

/// Where and how the feed connects.
#[derive(Debug)]
pub struct FeedConfig {
    /// The issuer's gRPC endpoint (`AUTH_GRPC_URL`).
    pub grpc_url: String,
    pub token: Arc<ServiceToken>,
    /// `AUTH_MAX_STALENESS`.
    pub max_staleness: Duration,
    /// The `stateful` check used while the feed is stale; `None` fails closed instead.
    pub fallback: Option<StatefulCheck>,
}

impl RevocationFeed {
    /// An empty feed that is not fed by anything (tests); see [`RevocationFeed::start`].
    pub fn new(max_staleness: Duration, fallback: Option<StatefulCheck>) -> Self {
        Self {
            inner: Arc::new(Inner {
                sessions: revocation_cache(),
                users: revocation_cache(),
                kids: revocation_cache(),
                last_sequence: AtomicU64::new(0),
                last_heard_ms: AtomicU64::new(0),
                caught_up: AtomicBool::new(false),
                started: Instant::now(),
                max_staleness,
                fallback,
            }),
        }
    }

    /// Starts the feed: a background task keeps a `WatchRevocations` stream open, reconnecting
    /// with backoff and resuming from the last applied sequence. It ends when the last clone of
    /// the feed is dropped. Needs a Tokio runtime.
    pub fn start(config: FeedConfig) -> Result<Self, tonic::transport::Error> {
        let feed = Self::new(config.max_staleness, config.fallback);
        let endpoint = tonic::transport::Endpoint::from_shared(config.grpc_url)?
            .connect_timeout(Duration::from_secs(2))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        tokio::spawn(watch_loop(
            Arc::downgrade(&feed.inner),
            endpoint,
            config.token,
        ));
        tokio::spawn(report_loop(Arc::downgrade(&feed.inner)));
        Ok(feed)
    }

    /// Refuses `claims` if revoked; when the set cannot be trusted, defers to the fallback.
    pub async fn check(&self, kid: &str, claims: &AccessClaims) -> Result<(), AuthError> {
        let inner = &self.inner;
        let revoked = claims
            .sid
            .as_deref()
            .is_some_and(|sid| inner.sessions.contains_key(sid))
            || inner
                .users
                .get(&claims.sub)
                .is_some_and(|entry| claims.iat <= entry.occurred_at)
            || inner.kids.contains_key(kid);
        if revoked {
            return Err(RejectReason::Revoked.into());
        }
        if self.is_fresh() {
            return Ok(());
        }
        metrics::counter!("auth_revocation_feed_stale_checks_total").increment(1);
        match &inner.fallback {
            Some(stateful) => stateful.check(claims).await,
            None => Err(AuthError::Unavailable),
        }
    }

    /// Whether the set is known to be current within `max_staleness`.
    pub fn is_fresh(&self) -> bool {
        self.inner.caught_up.load(Ordering::Acquire) && self.lag() <= self.inner.max_staleness
    }

    /// Whether requests can be decided: a fresh feed, or a fallback.
    pub fn is_ready(&self) -> bool {
        self.is_fresh() || self.inner.fallback.is_some()
    }

    /// Time since the stream last proved the set current.
    pub fn lag(&self) -> Duration {
        let heard = Duration::from_millis(self.inner.last_heard_ms.load(Ordering::Acquire));
        self.inner.started.elapsed().saturating_sub(heard)
    }

    pub fn last_sequence(&self) -> u64 {
        self.inner.last_sequence.load(Ordering::Acquire)
    }

    /// Number of live entries (sessions, users, keys).
    pub fn entries(&self) -> u64 {
        self.inner.sessions.entry_count()
            + self.inner.users.entry_count()
            + self.inner.kids.entry_count()
    }

    /// Applies one event. Events at or below the last applied sequence are ignored.
    pub fn apply(&self, event: &RevocationEvent) {
        let inner = &self.inner;
        if event.sequence <= inner.last_sequence.load(Ordering::Acquire) {
            return;
        }
        let entry = Entry {
            occurred_at: event.occurred_at,
            expires_at: event.expires_at,
        };
        if entry.expires_at > crate::unix_now() {
            match &event.target {
                Some(Target::SessionsEnded(ended)) => {
                    for sid in &ended.session_ids {
                        inner.sessions.insert(sid.clone(), entry);
                    }
                }
                Some(Target::UserDisabled(user)) => inner.users.insert(user.user_id.clone(), entry),
                Some(Target::KeyRevoked(key)) => inner.kids.insert(key.kid.clone(), entry),
                None => {
                    tracing::warn!(sequence = event.sequence, "revocation event without target")
                }
            }
        }
        inner.last_sequence.store(event.sequence, Ordering::Release);
        metrics::counter!("auth_revocation_events_applied_total").increment(1);
    }

    /// Records that the stream has delivered everything up to now.
    pub fn heard(&self) {
        let inner = &self.inner;
        let now = u64::try_from(inner.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        inner.last_heard_ms.store(now, Ordering::Release);
        inner.caught_up.store(true, Ordering::Release);
    }
}

async fn watch_loop(
    inner: std::sync::Weak<Inner>,
    endpoint: tonic::transport::Endpoint,
    token: Arc<ServiceToken>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let feed = RevocationFeed { inner: strong };
        match watch_once(&feed, &endpoint, &token).await {
            Ok(()) => tracing::info!("revocation stream ended by the issuer; reconnecting"),
            Err(error) => {
                tracing::warn!(%error, lag_ms = feed.lag().as_millis() as u64, "revocation stream failed; reconnecting")
            }
        }
        metrics::counter!("auth_revocation_feed_reconnects_total").increment(1);
        drop(feed);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn watch_once(
    feed: &RevocationFeed,
    endpoint: &tonic::transport::Endpoint,
    token: &ServiceToken,
) -> Result<(), String> {
    let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
    let mut client = SessionServiceClient::new(channel);
    let bearer = token.get().await.map_err(|e| e.to_string())?;
    let mut request = tonic::Request::new(WatchRevocationsRequest {
        after_sequence: feed.last_sequence(),
    });
    with_bearer(&mut request, &bearer).map_err(|e| e.to_string())?;
    let mut stream = match client.watch_revocations(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => {
            if status.code() == tonic::Code::Unauthenticated {
                token.invalidate().await;
            }
            return Err(status.to_string());
        }
    };
    tracing::info!(
        after_sequence = feed.last_sequence(),
        "revocation stream connected"
    );
    while let Some(message) = stream.message().await.map_err(|e| e.to_string())? {
        match message.message {
            Some(Message::Event(event)) => feed.apply(&event),
            Some(Message::Heartbeat(_)) => feed.heard(),
            None => {}
        }
    }
    Ok(())
}

/// Publishes the feed's lag and size every second, including while it is disconnected (when
/// the lag is what an operator most needs to see).
async fn report_loop(inner: std::sync::Weak<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let feed = RevocationFeed { inner };
        #[allow(clippy::cast_precision_loss)]
        {
            metrics::gauge!("auth_revocation_feed_lag_seconds").set(feed.lag().as_secs_f64());
            metrics::gauge!("auth_revocation_entries").set(feed.entries() as f64);
            metrics::gauge!("auth_revocation_last_sequence").set(feed.last_sequence() as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::Audience;
    use proto::auth::v1::{KeyRevoked, SessionsEnded, UserDisabled};

    fn claims(sub: &str, sid: &str, iat: i64) -> AccessClaims {
        AccessClaims {
            iss: "i".into(),
            sub: sub.into(),
            aud: Audience::One("a".into()),
            exp: iat + 300,
            iat,
            nbf: None,
            jti: "j".into(),
            scope: None,
            roles: vec![],
            sid: Some(sid.into()),
            client_id: None,
        }
    }

    fn event(sequence: u64, target: Target) -> RevocationEvent {
        let now = crate::unix_now();
        RevocationEvent {
            sequence,
            occurred_at: now,
            expires_at: now + 360,
            target: Some(target),
        }
    }

    #[tokio::test]
    async fn a_stale_feed_without_fallback_fails_closed() {
        let feed = RevocationFeed::new(Duration::from_secs(5), None);
        let now = crate::unix_now();
        assert_eq!(
            feed.check("k", &claims("u", "s", now)).await,
            Err(AuthError::Unavailable)
        );
        assert!(!feed.is_ready());
        feed.heard();
        assert!(feed.check("k", &claims("u", "s", now)).await.is_ok());
    }

    #[tokio::test]
    async fn sessions_users_and_keys_are_revoked() {
        let feed = RevocationFeed::new(Duration::from_secs(5), None);
        feed.heard();
        let now = crate::unix_now();
        feed.apply(&event(
            1,
            Target::SessionsEnded(SessionsEnded {
                session_ids: vec!["s1".into(), "s2".into()],
                user_id: "u".into(),
                reason: "logout_all".into(),
            }),
        ));
        feed.apply(&event(
            2,
            Target::UserDisabled(UserDisabled {
                user_id: "mallory".into(),
            }),
        ));
        feed.apply(&event(
            3,
            Target::KeyRevoked(KeyRevoked {
                kid: "leaked".into(),
            }),
        ));
        let revoked = Err(AuthError::Unauthenticated(RejectReason::Revoked));
        assert_eq!(feed.check("k", &claims("u", "s1", now)).await, revoked);
        assert_eq!(feed.check("k", &claims("u", "s2", now)).await, revoked);
        assert!(feed.check("k", &claims("u", "s3", now)).await.is_ok());
        assert_eq!(
            feed.check("k", &claims("mallory", "s9", now - 10)).await,
            revoked
        );
        assert!(
            feed.check("k", &claims("mallory", "s9", now + 5))
                .await
                .is_ok(),
            "issued after"
        );
        assert_eq!(feed.check("leaked", &claims("u", "s3", now)).await, revoked);
        assert_eq!(feed.last_sequence(), 3);
    }

    #[test]
    fn old_and_expired_events_are_ignored() {
        let feed = RevocationFeed::new(Duration::from_secs(5), None);
        let ended = |sid: &str| {
            Target::SessionsEnded(SessionsEnded {
                session_ids: vec![sid.into()],
                ..SessionsEnded::default()
            })
        };
        feed.apply(&event(5, ended("a")));
        feed.apply(&event(4, ended("b")));
        let mut expired = event(6, ended("c"));
        expired.expires_at = crate::unix_now() - 1;
        feed.apply(&expired);
        feed.inner.sessions.run_pending_tasks();
        assert!(feed.inner.sessions.contains_key("a"));
        assert!(!feed.inner.sessions.contains_key("b"));
        assert!(!feed.inner.sessions.contains_key("c"));
        assert_eq!(feed.last_sequence(), 6);
    }
}
