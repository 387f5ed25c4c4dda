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
//! - Position: sequence numbers mean something only within one history of the issuer's log. The
//!   feed resumes with its sequence, the log's epoch and the fingerprint of the last event it
//!   applied; the issuer answers a `Reset` when they are not in its log (a database restored
//!   from a backup, a failover that lost writes), and the feed resets by itself when a
//!   heartbeat's head is below its position or its epoch changes. A reset forgets the position
//!   (the backlog then starts from the oldest retained event) and makes the feed stale until the
//!   next heartbeat, so requests go to the fallback meanwhile. It keeps the entries: they are
//!   revocations that happened, in whatever history, and a restore must not bring back a session
//!   that was logged out or a key that was revoked (they expire as usual). An entry only grows:
//!   an older event replayed from the restored log (an earlier logout everywhere of the same
//!   user) never replaces a newer one. Counted in
//!   `auth_revocation_feed_resets_total{reason}`.
//! - Changed users: a `UserChanged` entry makes the user's tokens issued at or before the change
//!   stale ([`RejectReason::ClaimsChanged`]: the session stands, a refresh gets the new claims).
//!   It is held and united like a disabled user's, so a replayed or older event never re-admits
//!   a stale token, and consulted first too, fresh or stale.
//! - Revoked keys: a `KeyRevoked` entry is held for the event's lifetime (25 h), through resets
//!   and staleness alike, and is consulted before the fallback, which knows sessions only. What
//!   bounds the time a revoked key is still accepted by a verifier that never got the event (it
//!   was stale or disconnected when the key was revoked): the verifier's next successful JWKS
//!   refresh, which no longer lists the key, or its reconnection, whose backlog has the event.
//!   Both need the issuer reachable; until then a stale feed fails closed without a fallback.
//! - Added keys: a `KeyAdded` event revokes nothing; when the feed knows the verifier's JWKS
//!   client ([`FeedConfig::jwks`]) and the key is not in its set, it fetches the JWKS at once
//!   ([`JwksClient::fetch_until_holds`]), and the key reporter tells the issuer
//!   ([`crate::key_report`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::Expiry;
use proto::auth::v1::revocation_event::Target;
use proto::auth::v1::session_service_client::SessionServiceClient;
use proto::auth::v1::watch_revocations_response::Message;
use proto::auth::v1::{Heartbeat, Reset, RevocationEvent, WatchRevocationsRequest};

use crate::bearer::with_bearer;
use crate::claims::AccessClaims;
use crate::error::{AuthError, RejectReason};
use crate::jwks::JwksClient;
use crate::service_token::ServiceToken;
use crate::session::StatefulCheck;

/// An entry of the revocation set: when it stops mattering, and (for users) when it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    occurred_at: i64,
    expires_at: i64,
}

impl Entry {
    /// Both revocations at once: tokens issued up to the later one, until the later expiry. An
    /// entry only ever grows, so an older event (replayed after a reset, from a log restored to
    /// an earlier copy) never weakens what a newer one revoked.
    fn union(self, other: Entry) -> Entry {
        Entry {
            occurred_at: self.occurred_at.max(other.occurred_at),
            expires_at: self.expires_at.max(other.expires_at),
        }
    }

    fn remaining(&self) -> Duration {
        let remaining = self.expires_at.saturating_sub(crate::unix_now()).max(0);
        Duration::from_secs(u64::try_from(remaining).unwrap_or(0))
    }
}

struct UntilExpiresAt;

impl<K> Expiry<K, Entry> for UntilExpiresAt {
    fn expire_after_create(&self, _key: &K, entry: &Entry, _now: Instant) -> Option<Duration> {
        Some(entry.remaining())
    }

    fn expire_after_update(
        &self,
        _key: &K,
        entry: &Entry,
        _now: Instant,
        _until_now: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.remaining())
    }
}

/// Records `entry` for `key`, united with what is already there.
fn revoke(cache: &moka::sync::Cache<String, Entry>, key: &str, entry: Entry) {
    cache
        .entry_by_ref(key)
        .and_compute_with(|existing| match existing {
            Some(existing) if existing.value().union(entry) == *existing.value() => {
                moka::ops::compute::Op::Nop
            }
            Some(existing) => moka::ops::compute::Op::Put(existing.value().union(entry)),
            None => moka::ops::compute::Op::Put(entry),
        });
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
    /// Users whose roles or scopes changed: their tokens issued at or before the change carry
    /// stale claims ([`RejectReason::ClaimsChanged`], not revoked: the session stands).
    changed: moka::sync::Cache<String, Entry>,
    kids: moka::sync::Cache<String, Entry>,
    last_sequence: AtomicU64,
    /// Where in which log the feed stands, beyond its sequence: what it resumes with.
    cursor: Mutex<Cursor>,
    /// Milliseconds since `started` when the stream last proved the set current.
    last_heard_ms: AtomicU64,
    caught_up: AtomicBool,
    resets: AtomicU64,
    started: Instant,
    max_staleness: Duration,
    fallback: Option<StatefulCheck>,
    /// Fetches a key the issuer announces (`KeyAdded`).
    jwks: Option<JwksClient>,
}

/// The epoch of the log the feed follows and the fingerprint of the last event it applied.
#[derive(Debug, Default, Clone)]
struct Cursor {
    epoch: String,
    fingerprint: String,
}

impl std::fmt::Debug for RevocationFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationFeed")
            .field("last_sequence", &self.last_sequence())
            .field("epoch", &self.epoch())
            .field("fresh", &self.is_fresh())
            .field("lag", &self.lag())
            .field("resets", &self.resets())
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
    /// The verifier's JWKS client, fetched at once when the issuer announces a key it does not
    /// hold (`KeyAdded`); `None`: the key is picked up at the next refresh.
    pub jwks: Option<JwksClient>,
}

/// What the stream should do after a message ([`RevocationFeed::receive`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on reading.
    Continue,
    /// The feed reset itself (the issuer's head went below its position, or its epoch changed):
    /// reconnect, so that the issuer sends the log from its oldest retained event.
    Reconnect,
}

/// The reasons a feed resets, the values of the `reason` label.
const RESET_REASONS: &[&str] = &["epoch", "behind", "diverged", "restored", "head_below"];

impl RevocationFeed {
    /// An empty feed that is not fed by anything (tests); see [`RevocationFeed::start`].
    pub fn new(max_staleness: Duration, fallback: Option<StatefulCheck>) -> Self {
        Self::with_jwks(max_staleness, fallback, None)
    }

    /// [`RevocationFeed::new`], fetching `jwks` when the issuer announces a key it lacks.
    pub fn with_jwks(
        max_staleness: Duration,
        fallback: Option<StatefulCheck>,
        jwks: Option<JwksClient>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                sessions: revocation_cache(),
                users: revocation_cache(),
                changed: revocation_cache(),
                kids: revocation_cache(),
                last_sequence: AtomicU64::new(0),
                cursor: Mutex::new(Cursor::default()),
                last_heard_ms: AtomicU64::new(0),
                caught_up: AtomicBool::new(false),
                resets: AtomicU64::new(0),
                started: Instant::now(),
                max_staleness,
                fallback,
                jwks,
            }),
        }
    }

    /// Starts the feed: a background task keeps a `WatchRevocations` stream open, reconnecting
    /// with backoff and resuming from the last applied sequence. It ends when the last clone of
    /// the feed is dropped. Needs a Tokio runtime.
    pub fn start(config: FeedConfig) -> Result<Self, tonic::transport::Error> {
        let feed = Self::with_jwks(config.max_staleness, config.fallback, config.jwks);
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
    /// Revoked entries are refused whether the feed is fresh or not: the fallback knows
    /// sessions only, never keys.
    pub async fn check(&self, kid: &str, claims: &AccessClaims) -> Result<(), AuthError> {
        self.refuse_listed(kid, claims)?;
        if self.is_fresh() {
            return Ok(());
        }
        metrics::counter!("auth_revocation_feed_stale_checks_total").increment(1);
        match &self.inner.fallback {
            Some(stateful) => stateful.check(claims).await,
            None => Err(AuthError::Unavailable),
        }
    }

    /// Refuses `claims` if the set holds its session, its user (by `iat`) or its key, fresh or
    /// stale; says nothing of what the set does not hold.
    pub(crate) fn refuse_listed(&self, kid: &str, claims: &AccessClaims) -> Result<(), AuthError> {
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
        if inner
            .changed
            .get(&claims.sub)
            .is_some_and(|entry| claims.iat <= entry.occurred_at)
        {
            return Err(RejectReason::ClaimsChanged.into());
        }
        Ok(())
    }

    /// The `stateful` check used while the feed is stale.
    pub fn fallback(&self) -> Option<&StatefulCheck> {
        self.inner.fallback.as_ref()
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

    /// The epoch of the issuer's log the feed follows (empty before the first heartbeat, or
    /// from an issuer that sends none).
    pub fn epoch(&self) -> String {
        self.cursor().epoch
    }

    /// How many times the feed has reset its position.
    pub fn resets(&self) -> u64 {
        self.inner.resets.load(Ordering::Acquire)
    }

    /// Number of live entries (sessions, users, keys).
    pub fn entries(&self) -> u64 {
        self.inner.sessions.entry_count()
            + self.inner.users.entry_count()
            + self.inner.changed.entry_count()
            + self.inner.kids.entry_count()
    }

    fn cursor(&self) -> Cursor {
        self.inner.cursor.lock().expect("cursor").clone()
    }

    /// The request that resumes the feed where it stands: its sequence, the epoch of that
    /// sequence's log, and the fingerprint of the event it applied last.
    pub fn resume_request(&self) -> WatchRevocationsRequest {
        let cursor = self.cursor();
        WatchRevocationsRequest {
            after_sequence: self.last_sequence(),
            log_epoch: cursor.epoch,
            after_fingerprint: cursor.fingerprint,
        }
    }

    /// Handles one message of the stream.
    pub fn receive(&self, message: Message) -> Flow {
        match message {
            Message::Event(event) => {
                self.apply(&event);
                Flow::Continue
            }
            Message::Heartbeat(heartbeat) => self.heartbeat(&heartbeat),
            Message::Reset(reset) => {
                self.issuer_reset(&reset);
                Flow::Continue
            }
        }
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
                        revoke(&inner.sessions, sid, entry);
                    }
                }
                Some(Target::UserDisabled(user)) => revoke(&inner.users, &user.user_id, entry),
                Some(Target::UserChanged(user)) => revoke(&inner.changed, &user.user_id, entry),
                Some(Target::KeyRevoked(key)) => revoke(&inner.kids, &key.kid, entry),
                Some(Target::KeyAdded(key)) => self.key_added(&key.kid),
                None => {
                    tracing::warn!(sequence = event.sequence, "revocation event without target")
                }
            }
        }
        inner
            .cursor
            .lock()
            .expect("cursor")
            .fingerprint
            .clone_from(&event.fingerprint);
        inner.last_sequence.store(event.sequence, Ordering::Release);
        metrics::counter!("auth_revocation_events_applied_total").increment(1);
    }

    /// The issuer published `kid`: fetch the JWKS now if the set lacks it, in the background
    /// (the stream goes on meanwhile).
    fn key_added(&self, kid: &str) {
        let Some(jwks) = &self.inner.jwks else {
            return;
        };
        if jwks.has(kid) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        tracing::info!(kid, "the issuer published a signing key; fetching the JWKS");
        let (jwks, kid) = (jwks.clone(), kid.to_owned());
        runtime.spawn(async move { jwks.fetch_until_holds(&kid).await });
    }

    /// A heartbeat: the feed is current, unless the heartbeat says the issuer follows another
    /// log than the one the feed's position belongs to (its head below the position, another
    /// epoch), in which case the feed resets and must reconnect.
    fn heartbeat(&self, heartbeat: &Heartbeat) -> Flow {
        let position = self.last_sequence();
        if heartbeat.head_sequence < position {
            tracing::warn!(
                head = heartbeat.head_sequence,
                position,
                "the issuer's revocation log is behind this verifier's position: resetting"
            );
            self.reset("head_below");
            return Flow::Reconnect;
        }
        if !heartbeat.log_epoch.is_empty() {
            let mut cursor = self.inner.cursor.lock().expect("cursor");
            if cursor.epoch.is_empty() {
                cursor.epoch.clone_from(&heartbeat.log_epoch);
            } else if cursor.epoch != heartbeat.log_epoch {
                let followed = std::mem::take(&mut cursor.epoch);
                drop(cursor);
                tracing::warn!(
                    epoch = %heartbeat.log_epoch,
                    followed = %followed,
                    "the issuer's revocation log has another epoch: resetting"
                );
                self.reset("epoch");
                return Flow::Reconnect;
            }
        }
        self.heard();
        Flow::Continue
    }

    /// The issuer says the feed's position is not in its log; the events that follow start from
    /// its oldest retained one.
    fn issuer_reset(&self, reset: &Reset) {
        let reason = RESET_REASONS
            .iter()
            .find(|known| **known == reset.reason)
            .copied()
            .unwrap_or("other");
        tracing::warn!(
            reason,
            head = reset.head_sequence,
            position = self.last_sequence(),
            epoch = %reset.log_epoch,
            "the issuer reset the revocation feed"
        );
        self.reset(reason);
        self.inner
            .cursor
            .lock()
            .expect("cursor")
            .epoch
            .clone_from(&reset.log_epoch);
    }

    /// Forgets the position (sequence, epoch, fingerprint) and counts as stale until the next
    /// heartbeat. The entries stay: they are revocations that happened.
    pub fn reset(&self, reason: &'static str) {
        let inner = &self.inner;
        inner.caught_up.store(false, Ordering::Release);
        *inner.cursor.lock().expect("cursor") = Cursor::default();
        inner.last_sequence.store(0, Ordering::Release);
        inner.resets.fetch_add(1, Ordering::AcqRel);
        metrics::counter!("auth_revocation_feed_resets_total", "reason" => reason).increment(1);
    }

    /// Records that the stream has delivered everything up to now.
    pub fn heard(&self) {
        let inner = &self.inner;
        let now = u64::try_from(inner.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        inner.last_heard_ms.store(now, Ordering::Release);
        inner.caught_up.store(true, Ordering::Release);
    }
}

/// How one stream ended.
enum StreamEnd {
    /// The issuer closed it (shutdown), or the feed reset itself.
    Closed,
    /// It failed; `refused`: the issuer no longer accepts the token (expired, client removed).
    Failed { error: String, refused: bool },
}

async fn watch_loop(
    inner: std::sync::Weak<Inner>,
    endpoint: tonic::transport::Endpoint,
    token: Arc<ServiceToken>,
) {
    const FIRST_BACKOFF: Duration = Duration::from_millis(100);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let feed = RevocationFeed { inner: strong };
        let mut healthy = false;
        match watch_once(&feed, &endpoint, &token, &mut healthy).await {
            StreamEnd::Closed => {
                tracing::info!("revocation stream ended; reconnecting");
                metrics::counter!("auth_revocation_feed_reconnects_total").increment(1);
            }
            StreamEnd::Failed { error, refused } => {
                if refused {
                    // An expired token, or a client removed: a fresh token, if there is one.
                    token.invalidate().await;
                }
                if refused && healthy {
                    // The routine end of a stream whose token expired: not a failure.
                    tracing::debug!(%error, "revocation stream ended with its token; reconnecting with a fresh one");
                    metrics::counter!("auth_revocation_feed_renewals_total").increment(1);
                } else {
                    tracing::warn!(%error, refused, lag_ms = feed.lag().as_millis() as u64, "revocation stream failed; reconnecting");
                    metrics::counter!("auth_revocation_feed_reconnects_total").increment(1);
                }
            }
        }
        drop(feed);
        if healthy {
            // The stream worked (a heartbeat came): reconnect at once, from a short backoff.
            backoff = FIRST_BACKOFF;
            continue;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// One stream, until it ends. `healthy` turns true once a heartbeat has been heard.
async fn watch_once(
    feed: &RevocationFeed,
    endpoint: &tonic::transport::Endpoint,
    token: &ServiceToken,
    healthy: &mut bool,
) -> StreamEnd {
    let failed = |error: String| StreamEnd::Failed {
        error,
        refused: false,
    };
    let refusal = |status: &tonic::Status| {
        matches!(
            status.code(),
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
        )
    };
    let channel = match endpoint.connect().await {
        Ok(channel) => channel,
        Err(error) => return failed(error.to_string()),
    };
    let mut client = SessionServiceClient::new(channel);
    let bearer = match token.get().await {
        Ok(bearer) => bearer,
        Err(error) => return failed(error.to_string()),
    };
    let resume = feed.resume_request();
    let after_sequence = resume.after_sequence;
    let mut request = tonic::Request::new(resume);
    if let Err(status) = with_bearer(&mut request, &bearer) {
        return failed(status.to_string());
    }
    let mut stream = match client.watch_revocations(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => {
            return StreamEnd::Failed {
                refused: refusal(&status),
                error: status.to_string(),
            };
        }
    };
    tracing::info!(after_sequence, "revocation stream connected");
    loop {
        match stream.message().await {
            Ok(Some(message)) => {
                let Some(message) = message.message else {
                    continue;
                };
                let heartbeat = matches!(message, Message::Heartbeat(_));
                if feed.receive(message) == Flow::Reconnect {
                    return StreamEnd::Closed;
                }
                *healthy |= heartbeat;
            }
            Ok(None) => return StreamEnd::Closed,
            Err(status) => {
                return StreamEnd::Failed {
                    refused: refusal(&status),
                    error: status.to_string(),
                };
            }
        }
    }
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
            metrics::gauge!("auth_revocation_feed_fresh").set(if feed.is_fresh() {
                1.0
            } else {
                0.0
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::Audience;
    use proto::auth::v1::{KeyRevoked, SessionsEnded, UserChanged, UserDisabled};

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
            fingerprint: format!("fp-{sequence}"),
        }
    }

    fn ended(sid: &str) -> Target {
        Target::SessionsEnded(SessionsEnded {
            session_ids: vec![sid.into()],
            ..SessionsEnded::default()
        })
    }

    fn heartbeat(head: u64, epoch: &str) -> Message {
        Message::Heartbeat(Heartbeat {
            head_sequence: head,
            sent_at_ms: 0,
            log_epoch: epoch.into(),
        })
    }

    fn reset(reason: &str, epoch: &str) -> Message {
        Message::Reset(Reset {
            reason: reason.into(),
            log_epoch: epoch.into(),
            head_sequence: 1,
        })
    }

    /// A session store that finds every session active: a fallback that would let anything
    /// with a session through.
    #[derive(Debug)]
    struct EverySessionActive;

    impl crate::session::SessionLookup for EverySessionActive {
        fn is_active<'a>(
            &'a self,
            _sid: &'a str,
        ) -> crate::session::BoxFuture<'a, Result<bool, crate::session::LookupError>> {
            Box::pin(async { Ok(true) })
        }
    }

    fn with_lenient_fallback(max_staleness: Duration) -> RevocationFeed {
        RevocationFeed::new(
            max_staleness,
            Some(StatefulCheck::new(
                Arc::new(EverySessionActive),
                Duration::ZERO,
            )),
        )
    }

    /// A feed with sessions s1 (1), user mallory (2) and key leaked (3) revoked, fresh, in
    /// epoch "e1".
    fn fed(feed: &RevocationFeed) {
        feed.receive(Message::Event(event(1, ended("s1"))));
        feed.receive(Message::Event(event(
            2,
            Target::UserDisabled(UserDisabled {
                user_id: "mallory".into(),
            }),
        )));
        feed.receive(Message::Event(event(
            3,
            Target::KeyRevoked(KeyRevoked {
                kid: "leaked".into(),
            }),
        )));
        assert_eq!(feed.receive(heartbeat(3, "e1")), Flow::Continue);
        assert!(feed.is_fresh());
    }

    fn service_claims(sub: &str, iat: i64) -> AccessClaims {
        AccessClaims {
            sid: None,
            client_id: Some(sub.into()),
            ..claims(sub, "unused", iat)
        }
    }

    #[tokio::test]
    async fn a_reset_forgets_the_position_keeps_the_entries_and_is_stale_until_a_heartbeat() {
        let feed = with_lenient_fallback(Duration::from_secs(5));
        fed(&feed);
        let now = crate::unix_now();
        let revoked = Err(AuthError::Unauthenticated(RejectReason::Revoked));

        assert_eq!(feed.receive(reset("behind", "e2")), Flow::Continue);
        assert!(!feed.is_fresh(), "mid-reset: stale");
        assert!(feed.is_ready(), "the fallback decides meanwhile");
        assert_eq!((feed.last_sequence(), feed.resets()), (0, 1));
        assert_eq!(
            feed.resume_request(),
            WatchRevocationsRequest {
                after_sequence: 0,
                log_epoch: "e2".into(),
                after_fingerprint: String::new(),
            }
        );
        // What was revoked stays revoked, although the fallback finds every session active and
        // knows nothing of keys; the rest goes to the fallback.
        assert_eq!(feed.check("k", &claims("u", "s1", now)).await, revoked);
        assert_eq!(
            feed.check("k", &claims("mallory", "s9", now - 1)).await,
            revoked
        );
        assert_eq!(feed.check("leaked", &claims("u", "s2", now)).await, revoked);
        assert_eq!(
            feed.check("leaked", &service_claims("svc", now)).await,
            revoked
        );
        assert!(feed.check("k", &claims("u", "s2", now)).await.is_ok());

        // The backlog of the new history, from its start: events numbered below the old
        // position are applied, and the feed is fresh again at the heartbeat.
        feed.receive(Message::Event(event(1, ended("new-1"))));
        assert!(!feed.is_fresh(), "still catching up");
        assert_eq!(feed.receive(heartbeat(1, "e2")), Flow::Continue);
        assert!(feed.is_fresh());
        assert_eq!(feed.last_sequence(), 1);
        assert_eq!(feed.check("k", &claims("u", "new-1", now)).await, revoked);
        assert_eq!(
            feed.check("leaked", &service_claims("svc", now)).await,
            revoked
        );
    }

    #[tokio::test]
    async fn an_older_event_replayed_after_a_reset_never_weakens_a_newer_one() {
        // A user logged out everywhere at `now`; the log is then restored to a copy holding an
        // earlier logout-all of theirs, which the feed replays after its reset.
        let feed = with_lenient_fallback(Duration::from_secs(5));
        let now = crate::unix_now();
        let mallory = || {
            Target::UserDisabled(UserDisabled {
                user_id: "mallory".into(),
            })
        };
        feed.receive(Message::Event(event(7, mallory())));
        feed.receive(Message::Event(event(8, ended("s1"))));
        assert_eq!(feed.receive(heartbeat(8, "e1")), Flow::Continue);
        feed.receive(reset("behind", "e2"));
        let earlier = RevocationEvent {
            occurred_at: now - 100,
            expires_at: now + 10,
            ..event(1, mallory())
        };
        feed.receive(Message::Event(earlier));
        let earlier_end = RevocationEvent {
            expires_at: now + 1,
            ..event(2, ended("s1"))
        };
        feed.receive(Message::Event(earlier_end));
        assert_eq!(feed.receive(heartbeat(2, "e2")), Flow::Continue);
        assert!(feed.is_fresh());

        // A token issued between the two logouts-everywhere is still refused...
        let revoked = Err(AuthError::Unauthenticated(RejectReason::Revoked));
        assert_eq!(
            feed.check("k", &claims("mallory", "s2", now - 50)).await,
            revoked
        );
        // ...and both entries keep the later expiry.
        let users = feed.inner.users.get("mallory").expect("user entry");
        assert_eq!((users.occurred_at, users.expires_at), (now, now + 360));
        let session = feed.inner.sessions.get("s1").expect("session entry");
        assert_eq!(session.expires_at, now + 360);
        assert_eq!(feed.check("k", &claims("u", "s1", now)).await, revoked);
    }

    #[tokio::test]
    async fn revoked_keys_are_refused_by_a_stale_feed_whose_fallback_knows_sessions_only() {
        let feed = with_lenient_fallback(Duration::ZERO);
        feed.apply(&event(
            1,
            Target::KeyRevoked(KeyRevoked {
                kid: "leaked".into(),
            }),
        ));
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(!feed.is_fresh());
        let now = crate::unix_now();
        let revoked = Err(AuthError::Unauthenticated(RejectReason::Revoked));
        // With a session the fallback finds active, and without any (a service token, which
        // the fallback never looks up): refused all the same.
        assert_eq!(feed.check("leaked", &claims("u", "s", now)).await, revoked);
        assert_eq!(
            feed.check("leaked", &service_claims("svc", now)).await,
            revoked
        );
        assert!(
            feed.check("current", &service_claims("svc", now))
                .await
                .is_ok()
        );
        // And still after the feed reset itself.
        feed.reset("epoch");
        assert_eq!(
            feed.check("leaked", &service_claims("svc", now)).await,
            revoked
        );
    }

    #[test]
    fn a_heartbeat_below_the_position_resets_the_feed_and_asks_to_reconnect() {
        let feed = RevocationFeed::new(Duration::from_secs(5), None);
        fed(&feed);
        assert_eq!(feed.receive(heartbeat(3, "e1")), Flow::Continue);
        assert_eq!(
            feed.receive(heartbeat(7, "e1")),
            Flow::Continue,
            "ahead is fine"
        );
        assert_eq!(feed.receive(heartbeat(2, "e1")), Flow::Reconnect);
        assert!(!feed.is_fresh());
        assert_eq!((feed.last_sequence(), feed.resets()), (0, 1));
        assert_eq!(feed.resume_request(), WatchRevocationsRequest::default());
        assert!(feed.inner.sessions.contains_key("s1"), "the entries stay");
        assert!(feed.inner.users.contains_key("mallory"));
        assert!(feed.inner.kids.contains_key("leaked"));
    }

    #[test]
    fn another_epoch_resets_the_feed_and_an_empty_one_is_ignored() {
        let feed = RevocationFeed::new(Duration::from_secs(5), None);
        assert_eq!(feed.receive(heartbeat(0, "")), Flow::Continue);
        assert_eq!(feed.epoch(), "", "an issuer that predates epochs");
        fed(&feed);
        assert_eq!(
            feed.epoch(),
            "e1",
            "adopted from the first heartbeat that has one"
        );
        assert_eq!(feed.receive(heartbeat(3, "")), Flow::Continue);
        assert!(feed.is_fresh());
        assert_eq!(feed.receive(heartbeat(3, "e2")), Flow::Reconnect);
        assert!(!feed.is_fresh());
        assert_eq!(feed.resume_request(), WatchRevocationsRequest::default());
        // Reconnected: the issuer's reset names the epoch, and the feed follows it.
        feed.receive(reset("epoch", "e2"));
        feed.receive(Message::Event(event(1, ended("a"))));
        assert_eq!(feed.receive(heartbeat(1, "e2")), Flow::Continue);
        assert!(feed.is_fresh());
        assert_eq!(feed.resets(), 2);
    }

    #[test]
    fn the_resume_request_names_the_last_event_applied() {
        let feed = RevocationFeed::new(Duration::from_secs(5), None);
        assert_eq!(feed.resume_request(), WatchRevocationsRequest::default());
        fed(&feed);
        let mut old = event(2, ended("late"));
        old.fingerprint = "not-applied".into();
        feed.apply(&old);
        assert_eq!(
            feed.resume_request(),
            WatchRevocationsRequest {
                after_sequence: 3,
                log_epoch: "e1".into(),
                after_fingerprint: "fp-3".into(),
            }
        );
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

    fn changed(user: &str) -> Target {
        Target::UserChanged(UserChanged {
            user_id: user.into(),
        })
    }

    #[tokio::test]
    async fn a_user_change_refuses_the_users_tokens_issued_at_or_before_it_as_stale() {
        let feed = with_lenient_fallback(Duration::from_secs(5));
        fed(&feed);
        let now = crate::unix_now();
        feed.apply(&RevocationEvent {
            occurred_at: now - 10,
            ..event(4, changed("alice"))
        });
        let stale = Err(AuthError::Unauthenticated(RejectReason::ClaimsChanged));
        assert_eq!(
            feed.check("k", &claims("alice", "s1a", now - 20)).await,
            stale
        );
        assert_eq!(
            feed.check("k", &claims("alice", "s1a", now - 10)).await,
            stale,
            "issued in the second of the change"
        );
        assert!(
            feed.check("k", &claims("alice", "s1a", now - 9))
                .await
                .is_ok(),
            "issued after: the refreshed token"
        );
        assert!(
            feed.check("k", &claims("bob", "s1b", now - 20))
                .await
                .is_ok(),
            "another user"
        );
        // A change never hides a revocation: a disabled user, an ended session stay revoked.
        feed.apply(&event(5, changed("mallory")));
        let revoked = Err(AuthError::Unauthenticated(RejectReason::Revoked));
        assert_eq!(
            feed.check("k", &claims("mallory", "s9", now - 1)).await,
            revoked
        );
        assert_eq!(
            feed.check("k", &claims("alice", "s1", now - 20)).await,
            revoked
        );
        // Stale or fresh, what the set holds is refused first.
        feed.reset("epoch");
        assert!(!feed.is_fresh());
        assert_eq!(
            feed.check("k", &claims("alice", "s1a", now - 20)).await,
            stale
        );
    }

    #[tokio::test]
    async fn user_changes_replayed_or_older_are_idempotent_and_never_weaken_a_newer_one() {
        let feed = RevocationFeed::new(Duration::from_secs(5), None);
        let now = crate::unix_now();
        feed.receive(Message::Event(event(7, changed("alice"))));
        assert_eq!(feed.receive(heartbeat(7, "e1")), Flow::Continue);
        let stale = Err(AuthError::Unauthenticated(RejectReason::ClaimsChanged));
        let before = claims("alice", "s", now - 1);
        assert_eq!(feed.check("k", &before).await, stale);

        // The same event again (a reconnect that resumed one event early): nothing changes.
        let entries = feed.entries();
        feed.receive(Message::Event(RevocationEvent {
            occurred_at: now - 100,
            ..event(7, changed("alice"))
        }));
        assert_eq!(feed.entries(), entries);
        assert_eq!(feed.last_sequence(), 7);
        let entry = feed.inner.changed.get("alice").expect("entry");
        assert_eq!((entry.occurred_at, entry.expires_at), (now, now + 360));

        // After a reset, the restored log replays an older change of the same user: the newer
        // one still decides.
        feed.receive(reset("behind", "e2"));
        feed.receive(Message::Event(RevocationEvent {
            occurred_at: now - 100,
            expires_at: now + 10,
            ..event(1, changed("alice"))
        }));
        assert_eq!(feed.receive(heartbeat(1, "e2")), Flow::Continue);
        assert_eq!(feed.check("k", &before).await, stale);
        let entry = feed.inner.changed.get("alice").expect("entry");
        assert_eq!((entry.occurred_at, entry.expires_at), (now, now + 360));

        // A newer change moves the line forward.
        feed.receive(Message::Event(RevocationEvent {
            occurred_at: now + 30,
            ..event(2, changed("alice"))
        }));
        assert_eq!(feed.check("k", &claims("alice", "s", now + 1)).await, stale);
        assert!(
            feed.check("k", &claims("alice", "s", now + 31))
                .await
                .is_ok()
        );
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
