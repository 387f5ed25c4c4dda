//! The revocation feed: an append-only log of revocation events in SQL, and its live delivery to
//! `SessionService.WatchRevocations` streams ([`crate::grpc`]).
//!
//! - **Writing.** Every event gets the next number of the one-row `revocation_sequence` counter,
//!   taken in the transaction that inserts it ([`RevocationLog::append_in`]). The counter's row
//!   lock serializes writers on PostgreSQL until they commit (SQLite serializes every writer
//!   anyway), so sequence order is commit order; a rolled-back transaction gives its number back,
//!   so committed sequences have no gaps; and since the counter is never pruned, a number is never
//!   reused, across restarts included. After the commit, [`RevocationLog::announce`] wakes this
//!   process's tailer and, with Redis, publishes the sequence on [`REDIS_CHANNEL`].
//! - **Tailing.** One task per process (the *tailer*) is the only reader of new events: woken by
//!   a local append, by a message on [`REDIS_CHANNEL`] (another replica, or the CLI, appended) or
//!   by a slow poll (the safety net), it reads every event after the last one it has seen, in
//!   order, and broadcasts it. Broadcast order is therefore sequence order, whoever wrote the
//!   event.
//! - **Retention.** An event expires once every token it covers has expired (`occurred_at` +
//!   access-token lifetime + [`RETENTION_MARGIN_SECS`]), a `KeyRevoked` event once no verifier
//!   can still hold the key in a stale JWKS ([`KEY_REVOKED_RETENTION_SECS`]); the purge
//!   ([`super::purge`]) deletes expired events only, so a reconnecting verifier can never miss
//!   a revocation that still matters.
//! - **Identity.** Sequence numbers identify events only within one history of the log. A
//!   database restored from a backup, or a failover that lost the last writes, numbers new
//!   events again from an earlier head, and a verifier that kept its old position would ignore
//!   them. So the log has an *epoch* (a random id in `revocation_sequence`, written when the log
//!   is created) and every event a *fingerprint* (a digest of its stored row). The tailer checks,
//!   at every read, that the last event it broadcast is still in the table as it was, and, at
//!   every poll, that the epoch has not changed: when the head went below it, or its event
//!   differs, the log went back under it ([`LogState::reason`] `behind` or `diverged`), and it
//!   writes a new epoch so that every replica learns it (a restored copy carries the original's
//!   epoch, so the epoch alone cannot tell). Either way the tailer moves its tail to the new
//!   head and bumps [`LogState::generation`]: the open streams then reset their verifiers
//!   ([`crate::grpc`]). A verifier that reconnects is checked the same way, with the position,
//!   epoch and fingerprint it sends.
//! - **Health.** The streams vouch for what the tailer has read: [`RevocationLog::vouch`] says
//!   whether the tailer's last read succeeded recently enough. A replica that cannot read its
//!   log (a lost connection, a row it cannot parse) ends its streams instead of heartbeating
//!   while missing what the others write.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::auth::v1 as pb;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, AnyPool};
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinSet;
use tokio_stream::StreamExt as _;

use super::model::EndReason;

/// The Redis channel on which the sequence of each new event is published.
pub const REDIS_CHANNEL: &str = "auth:revocations";
/// Kept beyond the access-token lifetime before an event may be forgotten: covers the verifiers'
/// clock leeway (30 s by default) with room to spare.
pub const RETENTION_MARGIN_SECS: i64 = 60;
/// How long a `KeyRevoked` event is kept (and held by `hybrid` verifiers): the verifiers'
/// default `AUTH_JWKS_MAX_STALE` (24 h) plus an hour. A verifier that cannot refresh its JWKS
/// keeps serving its last good key set, the revoked key included, for up to that long; the
/// event must outlive it, or a token forged with a leaked key would verify again there.
pub const KEY_REVOKED_RETENTION_SECS: i64 = 25 * 3600;
/// Live events buffered per watcher before it lags (and re-reads the table instead).
const LIVE_CAPACITY: usize = 1024;
/// Events read per query.
pub const PAGE: i64 = 500;

/// What an event revokes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// Tokens whose `sid` is listed.
    SessionsEnded {
        session_ids: Vec<String>,
        user_id: String,
        reason: EndReason,
    },
    /// Tokens of `sub` = `user_id` issued at or before the event.
    UserDisabled { user_id: String },
    /// Tokens signed with `kid`.
    KeyRevoked { kid: String },
    /// Tokens of `sub` = `user_id` issued at or before the event carry roles or scopes that
    /// changed since: refused as such, the session stands and a refresh gets the new claims.
    UserChanged { user_id: String },
    /// Revokes nothing: a signing key was published, and `hybrid` verifiers fetch the JWKS at
    /// once instead of at their next refresh (docs/KEYS.md, "Rotation with the verifiers").
    KeyAdded { kid: String },
}

impl Target {
    /// The `kind` column, and the label of `auth_revocation_events_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::SessionsEnded { .. } => "sessions_ended",
            Target::UserDisabled { .. } => "user_disabled",
            Target::KeyRevoked { .. } => "key_revoked",
            Target::UserChanged { .. } => "user_changed",
            Target::KeyAdded { .. } => "key_added",
        }
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub sequence: u64,
    pub occurred_at: i64,
    pub expires_at: i64,
    pub target: Target,
    /// A digest of the stored row ([`fingerprint`]): two events with one sequence number are
    /// the same event only if their fingerprints are equal.
    pub fingerprint: String,
}

/// The fingerprint of a stored event: SHA-256 over its columns as stored, the first 128 bits,
/// base64url. Computed from the row (not from a re-serialization) so that every version of the
/// issuer computes the same value for the same row.
pub fn fingerprint(
    sequence: i64,
    kind: &str,
    payload: &str,
    occurred_at: i64,
    expires_at: i64,
) -> String {
    use aws_lc_rs::digest;
    use base64::Engine as _;
    let input = format!("{sequence}\n{kind}\n{occurred_at}\n{expires_at}\n{payload}");
    let hash = digest::digest(&digest::SHA256, input.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&hash.as_ref()[..16])
}

impl Event {
    pub fn to_proto(&self) -> pb::RevocationEvent {
        use pb::revocation_event::Target as T;
        let target = match &self.target {
            Target::SessionsEnded {
                session_ids,
                user_id,
                reason,
            } => T::SessionsEnded(pb::SessionsEnded {
                session_ids: session_ids.clone(),
                user_id: user_id.clone(),
                reason: reason.as_str().to_owned(),
            }),
            Target::UserDisabled { user_id } => T::UserDisabled(pb::UserDisabled {
                user_id: user_id.clone(),
            }),
            Target::KeyRevoked { kid } => T::KeyRevoked(pb::KeyRevoked { kid: kid.clone() }),
            Target::UserChanged { user_id } => T::UserChanged(pb::UserChanged {
                user_id: user_id.clone(),
            }),
            Target::KeyAdded { kid } => T::KeyAdded(pb::KeyAdded { kid: kid.clone() }),
        };
        pb::RevocationEvent {
            sequence: self.sequence,
            occurred_at: self.occurred_at,
            expires_at: self.expires_at,
            target: Some(target),
            fingerprint: self.fingerprint.clone(),
        }
    }
}

/// An event written inside a transaction that has not been announced yet; pass it to
/// [`RevocationLog::announce`] once the transaction has committed.
#[derive(Debug)]
#[must_use = "announce the event once its transaction has committed"]
pub struct Appended {
    pub sequence: u64,
    kind: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read revocation events: {0}")]
    Db(#[from] sqlx::Error),
    #[error("revocation event {sequence} is unreadable: {reason}")]
    Corrupt { sequence: i64, reason: String },
}

/// The Redis side of the feed: a connection to publish on, and the client to subscribe with.
#[derive(Clone)]
pub struct RedisFanout {
    pub client: redis::Client,
    pub publisher: redis::aio::ConnectionManager,
}

impl std::fmt::Debug for RedisFanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisFanout").finish_non_exhaustive()
    }
}

/// The revocation log of this issuer. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RevocationLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: AnyPool,
    /// Access-token lifetime + margin: how long an event matters.
    retention_secs: i64,
    live: broadcast::Sender<Arc<Event>>,
    /// The last sequence the tailer has broadcast.
    tail: watch::Sender<u64>,
    /// The fingerprint of the event at the tail, when known (only the tailer writes it).
    tail_fingerprint: Mutex<Option<String>>,
    /// The log's identity and the tailer's health, as the streams follow them.
    state: watch::Sender<LogState>,
    /// When the tailer last read the table successfully, in milliseconds since `started`.
    last_read_ms: AtomicU64,
    /// How often the tailer reads at the least (`AUTH_REVOCATION_POLL_INTERVAL`), in ms.
    poll_interval_ms: AtomicU64,
    started: Instant,
    wake: Notify,
    redis: Option<RedisFanout>,
}

/// What the open streams need to know of the log besides its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogState {
    /// The log's epoch (see the module documentation).
    pub epoch: Arc<str>,
    /// Bumped each time the tailer finds the log went back: streams opened in an earlier
    /// generation reset their verifiers.
    pub generation: u64,
    /// Why the last generation began: `behind`, `diverged` or `epoch`; empty for the first.
    pub reason: &'static str,
    /// Why the tailer's last read failed; `None` once a read succeeds.
    pub failure: Option<Arc<str>>,
}

/// The head of the log and its epoch, as the database has them now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub head: u64,
    pub epoch: String,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    sequence: i64,
    kind: String,
    payload: String,
    occurred_at: i64,
    expires_at: i64,
}

impl EventRow {
    fn into_event(self) -> Result<Event, ReadError> {
        let corrupt = |reason: String| ReadError::Corrupt {
            sequence: self.sequence,
            reason,
        };
        let target: Target =
            serde_json::from_str(&self.payload).map_err(|e| corrupt(e.to_string()))?;
        if target.kind() != self.kind {
            return Err(corrupt(format!(
                "kind {} with a {} payload",
                self.kind,
                target.kind()
            )));
        }
        let sequence = u64::try_from(self.sequence).map_err(|e| corrupt(e.to_string()))?;
        Ok(Event {
            sequence,
            occurred_at: self.occurred_at,
            expires_at: self.expires_at,
            target,
            fingerprint: fingerprint(
                self.sequence,
                &self.kind,
                &self.payload,
                self.occurred_at,
                self.expires_at,
            ),
        })
    }
}

fn to_db_sequence(sequence: u64) -> i64 {
    i64::try_from(sequence).unwrap_or(i64::MAX)
}

impl RevocationLog {
    /// A log over `pool`, whose events matter for `access_token_ttl` (+ the margin). Live
    /// delivery starts from the current head: earlier events are read from the table by each
    /// watcher.
    pub async fn new(
        pool: AnyPool,
        access_token_ttl: Duration,
        redis: Option<RedisFanout>,
    ) -> Result<Self, sqlx::Error> {
        // The first issuer on a database gives its log an epoch; the others read it.
        sqlx::query("UPDATE revocation_sequence SET epoch = $1 WHERE id = 1 AND epoch IS NULL")
            .bind(crate::crypto::random_id())
            .execute(&pool)
            .await?;
        let position = position(&pool).await?;
        let ttl = i64::try_from(access_token_ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let log = Self {
            inner: Arc::new(Inner {
                pool,
                retention_secs: ttl.saturating_add(RETENTION_MARGIN_SECS),
                live: broadcast::channel(LIVE_CAPACITY).0,
                tail: watch::channel(position.head).0,
                tail_fingerprint: Mutex::new(None),
                state: watch::channel(LogState {
                    epoch: position.epoch.clone().into(),
                    generation: 0,
                    reason: "",
                    failure: None,
                })
                .0,
                last_read_ms: AtomicU64::new(0),
                poll_interval_ms: AtomicU64::new(u64::MAX),
                started: Instant::now(),
                wake: Notify::new(),
                redis,
            }),
        };
        log.set_tail(position.head).await;
        log.report(&position.epoch, None);
        Ok(log)
    }

    /// Appends an event inside the caller's transaction, occurring at `now`. The caller commits,
    /// then calls [`RevocationLog::announce`].
    pub async fn append_in(
        &self,
        conn: &mut AnyConnection,
        target: &Target,
        now: i64,
    ) -> Result<Appended, sqlx::Error> {
        let sequence: i64 = sqlx::query_scalar(
            "UPDATE revocation_sequence SET last_sequence = last_sequence + 1 WHERE id = 1 \
             RETURNING last_sequence",
        )
        .fetch_one(&mut *conn)
        .await?;
        let payload = serde_json::to_string(target).expect("BUG: an event target serializes");
        sqlx::query(
            "INSERT INTO revocation_events (sequence, kind, payload, occurred_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(sequence)
        .bind(target.kind())
        .bind(payload)
        .bind(now)
        .bind(now.saturating_add(self.retention_secs(target)))
        .execute(&mut *conn)
        .await?;
        Ok(Appended {
            sequence: u64::try_from(sequence).unwrap_or(0),
            kind: target.kind(),
        })
    }

    /// How long an event about `target` matters.
    pub fn retention_secs(&self, target: &Target) -> i64 {
        match target {
            Target::KeyRevoked { .. } => self.inner.retention_secs.max(KEY_REVOKED_RETENTION_SECS),
            Target::SessionsEnded { .. }
            | Target::UserDisabled { .. }
            | Target::UserChanged { .. }
            | Target::KeyAdded { .. } => self.inner.retention_secs,
        }
    }

    /// Appends an event in a transaction of its own and announces it.
    pub async fn append(&self, target: &Target, now: i64) -> Result<u64, sqlx::Error> {
        let mut tx = self.inner.pool.begin().await?;
        let appended = self.append_in(&mut tx, target, now).await?;
        tx.commit().await?;
        let sequence = appended.sequence;
        self.announce(appended).await;
        Ok(sequence)
    }

    /// Makes a committed event known: counts it, wakes this process's tailer and tells the other
    /// replicas through Redis. A failed publish only delays the others until their next poll.
    pub async fn announce(&self, appended: Appended) {
        metrics::counter!("auth_revocation_events_total", "kind" => appended.kind).increment(1);
        self.inner.wake.notify_one();
        if let Some(redis) = &self.inner.redis {
            let mut publisher = redis.publisher.clone();
            let published: Result<i64, _> = redis::cmd("PUBLISH")
                .arg(REDIS_CHANNEL)
                .arg(appended.sequence)
                .query_async(&mut publisher)
                .await;
            if let Err(error) = published {
                tracing::warn!(%error, sequence = appended.sequence, "cannot publish a revocation event on Redis; other replicas will see it at their next poll");
            }
        }
    }

    /// Retained events with a sequence greater than `after`, in order, at most `limit`.
    pub async fn read_after(&self, after: u64, limit: i64) -> Result<Vec<Event>, ReadError> {
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT sequence, kind, payload, occurred_at, expires_at FROM revocation_events \
             WHERE sequence > $1 ORDER BY sequence LIMIT $2",
        )
        .bind(to_db_sequence(after))
        .bind(limit)
        .fetch_all(&self.inner.pool)
        .await?;
        rows.into_iter().map(EventRow::into_event).collect()
    }

    /// The greatest sequence assigned and committed so far, from the table.
    pub async fn head(&self) -> Result<u64, sqlx::Error> {
        Ok(position(&self.inner.pool).await?.head)
    }

    /// The head and the epoch, from the table.
    pub async fn position(&self) -> Result<Position, sqlx::Error> {
        position(&self.inner.pool).await
    }

    /// The retained event numbered `sequence`, if any.
    pub async fn event_at(&self, sequence: u64) -> Result<Option<Event>, ReadError> {
        let row: Option<EventRow> = sqlx::query_as(
            "SELECT sequence, kind, payload, occurred_at, expires_at FROM revocation_events \
             WHERE sequence = $1",
        )
        .bind(to_db_sequence(sequence))
        .fetch_optional(&self.inner.pool)
        .await?;
        row.map(EventRow::into_event).transpose()
    }

    /// The log's identity and the tailer's health, as the streams follow them.
    pub fn state(&self) -> LogState {
        self.inner.state.borrow().clone()
    }

    /// Changes of [`RevocationLog::state`].
    pub fn watch_state(&self) -> watch::Receiver<LogState> {
        self.inner.state.subscribe()
    }

    /// Whether this replica can vouch for its streams now: its tailer's last read succeeded,
    /// no longer ago than one poll interval plus `slack` (a stream's heartbeat interval). `Err`
    /// says why not. A stream that cannot be vouched for sends no heartbeat, so its verifier goes
    /// stale instead of trusting a replica that misses what the others write.
    pub fn vouch(&self, slack: Duration) -> Result<(), String> {
        if let Some(failure) = &self.inner.state.borrow().failure {
            return Err(failure.to_string());
        }
        let poll = Duration::from_millis(self.inner.poll_interval_ms.load(Ordering::Acquire));
        let read = Duration::from_millis(self.inner.last_read_ms.load(Ordering::Acquire));
        let age = self.inner.started.elapsed().saturating_sub(read);
        if age > poll.saturating_add(slack) {
            return Err(format!(
                "the revocation log was last read {} ms ago",
                age.as_millis()
            ));
        }
        Ok(())
    }

    /// The last sequence the tailer has broadcast: every committed event up to it is in the
    /// table and has been sent to live subscribers.
    pub fn tail(&self) -> u64 {
        *self.inner.tail.borrow()
    }

    /// Live events from now on, in sequence order. Subscribe *before* reading the backlog.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.live.subscribe()
    }

    /// Deletes the events that expired at or before `now`. Returns how many.
    pub async fn prune(&self, now: i64) -> Result<u64, sqlx::Error> {
        let done = sqlx::query("DELETE FROM revocation_events WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.inner.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Deletes at most `limit` of the events that expired at or before `now`, those that expired
    /// first. Returns how many. The purge ([`super::purge`]) calls it batch after batch, on its
    /// schedule, until a batch comes back short.
    pub async fn prune_batch(&self, now: i64, limit: i64) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(
            "DELETE FROM revocation_events WHERE sequence IN (SELECT sequence \
             FROM revocation_events WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2)",
        )
        .bind(now)
        .bind(limit)
        .execute(&self.inner.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Starts the tailer and (with Redis) the subscriber to other replicas' events in `tasks`.
    /// They stop when `stop` turns true. Expired events are deleted by the purge
    /// ([`super::purge`]), with the expired sessions and refresh tokens.
    pub fn spawn_tasks(
        &self,
        tasks: &mut JoinSet<()>,
        stop: &watch::Receiver<bool>,
        poll_interval: Duration,
    ) {
        self.inner.poll_interval_ms.store(
            u64::try_from(poll_interval.as_millis()).unwrap_or(u64::MAX),
            Ordering::Release,
        );
        tasks.spawn(self.clone().tail_loop(stop.clone(), poll_interval));
        if let Some(redis) = self.inner.redis.clone() {
            tasks.spawn(self.clone().subscribe_loop(redis.client, stop.clone()));
        }
    }

    async fn tail_loop(self, mut stop: watch::Receiver<bool>, poll_interval: Duration) {
        let mut poll = tokio::time::interval(poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let polled = tokio::select! {
                () = stopped(&mut stop) => return,
                () = self.inner.wake.notified() => false,
                _ = poll.tick() => true,
            };
            match self.read_new(polled).await {
                Ok(()) => {
                    let now =
                        u64::try_from(self.inner.started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    self.inner.last_read_ms.store(now, Ordering::Release);
                    self.set_failure(None);
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot read new revocation events; this replica's revocation streams end until it can");
                    self.set_failure(Some(error.to_string()));
                }
            }
        }
    }

    /// Checks that the log is still the one followed (its epoch, when `check_epoch`), then reads
    /// and broadcasts every event after the tail.
    async fn read_new(&self, check_epoch: bool) -> Result<(), ReadError> {
        if check_epoch {
            let position = self.position().await?;
            if *self.state().epoch != position.epoch {
                self.restart("epoch", Some(position.epoch)).await?;
            }
        }
        loop {
            let tail = self.tail();
            // From the tail itself: its event must still be there as it was broadcast.
            let from = tail.saturating_sub(1);
            let mut events = self.read_after(from, PAGE + 1).await?;
            if tail > 0 {
                let known = self.inner.tail_fingerprint.lock().expect("tail").clone();
                match events.first() {
                    Some(first) if first.sequence == tail => {
                        if known.is_some_and(|known| known != first.fingerprint) {
                            self.restart("diverged", None).await?;
                            continue;
                        }
                        events.remove(0);
                    }
                    // Our last event is gone: expired and pruned, or the log went back.
                    _ => {
                        let position = self.position().await?;
                        if position.head < tail {
                            self.restart("behind", None).await?;
                            continue;
                        }
                    }
                }
            }
            let full_page = events.len() >= usize::try_from(PAGE).unwrap_or(usize::MAX);
            for event in events {
                let sequence = event.sequence;
                *self.inner.tail_fingerprint.lock().expect("tail") =
                    Some(event.fingerprint.clone());
                // No receiver is not an error: nobody is watching.
                let _ = self.inner.live.send(Arc::new(event));
                self.inner.tail.send_replace(sequence);
            }
            #[allow(clippy::cast_precision_loss)]
            metrics::gauge!("auth_revocation_log_head").set(self.tail() as f64);
            if !full_page {
                return Ok(());
            }
        }
    }

    /// The log went back under the tailer (`reason`), or another replica said so by changing the
    /// epoch (`new_epoch`, read from the database): writes a new epoch in the first case, moves
    /// the tail to the current head, and starts a new generation, which makes every open stream
    /// reset its verifier and deliver the log from its oldest retained event.
    async fn restart(
        &self,
        reason: &'static str,
        new_epoch: Option<String>,
    ) -> Result<(), ReadError> {
        let old = self.state().epoch;
        let epoch = if let Some(epoch) = new_epoch {
            epoch
        } else {
            // Only if the database still has the epoch this replica followed: when another
            // replica found the same restore first, its new epoch stands (one reset, not two).
            sqlx::query(
                "UPDATE revocation_sequence SET epoch = $1 \
                 WHERE id = 1 AND (epoch = $2 OR epoch IS NULL)",
            )
            .bind(crate::crypto::random_id())
            .bind(old.as_ref())
            .execute(&self.inner.pool)
            .await?;
            self.position().await?.epoch
        };
        let head = self.position().await?.head;
        tracing::warn!(
            reason,
            tail = self.tail(),
            head,
            old_epoch = %old,
            epoch = %epoch,
            "the revocation log went back (restored from a backup, or a failover lost writes): \
             resetting every revocation stream of this replica"
        );
        metrics::counter!("auth_revocation_log_resets_total", "reason" => reason).increment(1);
        self.report(&epoch, Some(&old));
        // The new generation first: a stream that sees the lower tail has seen it too.
        self.inner.state.send_modify(|state| {
            state.epoch = epoch.into();
            state.generation += 1;
            state.reason = reason;
        });
        self.set_tail(head).await;
        Ok(())
    }

    /// Moves the tail to `sequence`, remembering the fingerprint of its event if it is retained.
    async fn set_tail(&self, sequence: u64) {
        let fingerprint = match self.event_at(sequence).await {
            Ok(event) => event.map(|event| event.fingerprint),
            Err(error) => {
                tracing::warn!(%error, sequence, "cannot read the last revocation event");
                None
            }
        };
        *self.inner.tail_fingerprint.lock().expect("tail") = fingerprint;
        self.inner.tail.send_replace(sequence);
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!("auth_revocation_log_head").set(sequence as f64);
    }

    /// Publishes the epoch as `auth_revocation_log_epoch{epoch} 1` (the previous one at 0).
    fn report(&self, epoch: &str, previous: Option<&str>) {
        if let Some(previous) = previous {
            metrics::gauge!("auth_revocation_log_epoch", "epoch" => previous.to_owned()).set(0.0);
        }
        metrics::gauge!("auth_revocation_log_epoch", "epoch" => epoch.to_owned()).set(1.0);
    }

    fn set_failure(&self, failure: Option<String>) {
        let failing = failure.is_some();
        self.inner.state.send_if_modified(|state| {
            if state.failure.is_none() && failure.is_none() {
                return false;
            }
            state.failure = failure.map(Into::into);
            true
        });
        metrics::gauge!("auth_revocation_log_failing").set(if failing { 1.0 } else { 0.0 });
    }

    /// Listens on [`REDIS_CHANNEL`] and wakes the tailer for every message, reconnecting with a
    /// growing delay. Each (re)subscription wakes the tailer too, for what was published while
    /// unsubscribed.
    async fn subscribe_loop(self, client: redis::Client, mut stop: watch::Receiver<bool>) {
        const MAX_BACKOFF: Duration = Duration::from_secs(10);
        let mut backoff = Duration::from_millis(100);
        loop {
            let session = async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(REDIS_CHANNEL).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            let subscribed = tokio::select! {
                () = stopped(&mut stop) => return,
                subscribed = session => subscribed,
            };
            match subscribed {
                Ok(pubsub) => {
                    tracing::debug!(channel = REDIS_CHANNEL, "subscribed to revocation events");
                    backoff = Duration::from_millis(100);
                    self.inner.wake.notify_one();
                    let mut messages = pubsub.into_on_message();
                    loop {
                        tokio::select! {
                            () = stopped(&mut stop) => return,
                            message = messages.next() => match message {
                                Some(_) => self.inner.wake.notify_one(),
                                None => break,
                            },
                        }
                    }
                    tracing::warn!(
                        "lost the Redis subscription to revocation events; reconnecting"
                    );
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "cannot subscribe to revocation events on Redis");
                }
            }
            tokio::select! {
                () = stopped(&mut stop) => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Resolves once `stop` is true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn position(pool: &AnyPool) -> Result<Position, sqlx::Error> {
    let (head, epoch): (i64, Option<String>) =
        sqlx::query_as("SELECT last_sequence, epoch FROM revocation_sequence WHERE id = 1")
            .fetch_one(pool)
            .await?;
    Ok(Position {
        head: u64::try_from(head).unwrap_or(0),
        epoch: epoch.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_round_trip_through_their_stored_json() {
        let targets = [
            Target::SessionsEnded {
                session_ids: vec!["a".into(), "b".into()],
                user_id: "u".into(),
                reason: EndReason::LogoutAll,
            },
            Target::UserDisabled {
                user_id: "u".into(),
            },
            Target::KeyRevoked { kid: "k".into() },
        ];
        for target in targets {
            let json = serde_json::to_string(&target).expect("serializes");
            assert!(
                json.contains(&format!("\"kind\":\"{}\"", target.kind())),
                "{json}"
            );
            let back: Target = serde_json::from_str(&json).expect("parses");
            assert_eq!(back, target);
        }
        let json = serde_json::to_string(&Target::SessionsEnded {
            session_ids: vec!["s".into()],
            user_id: "u".into(),
            reason: EndReason::RefreshReuse,
        })
        .expect("serializes");
        assert!(json.contains("\"reason\":\"refresh_reuse\""), "{json}");
    }
}
