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
//!   can still hold the key in a stale JWKS ([`KEY_REVOKED_RETENTION_SECS`]); the pruner deletes
//!   expired events only, so a reconnecting verifier can never miss a revocation that still
//!   matters.

use std::sync::Arc;
use std::time::Duration;

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
}

impl Target {
    /// The `kind` column, and the label of `auth_revocation_events_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::SessionsEnded { .. } => "sessions_ended",
            Target::UserDisabled { .. } => "user_disabled",
            Target::KeyRevoked { .. } => "key_revoked",
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
        };
        pb::RevocationEvent {
            sequence: self.sequence,
            occurred_at: self.occurred_at,
            expires_at: self.expires_at,
            target: Some(target),
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
    wake: Notify,
    redis: Option<RedisFanout>,
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
        let head = head(&pool).await?;
        let ttl = i64::try_from(access_token_ttl.as_secs()).unwrap_or(i64::MAX / 2);
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                retention_secs: ttl.saturating_add(RETENTION_MARGIN_SECS),
                live: broadcast::channel(LIVE_CAPACITY).0,
                tail: watch::channel(head).0,
                wake: Notify::new(),
                redis,
            }),
        })
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
            Target::SessionsEnded { .. } | Target::UserDisabled { .. } => self.inner.retention_secs,
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
        head(&self.inner.pool).await
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

    /// Starts the tailer, the pruner and (with Redis) the subscriber to other replicas' events
    /// in `tasks`. They stop when `stop` turns true.
    pub fn spawn_tasks(
        &self,
        tasks: &mut JoinSet<()>,
        stop: &watch::Receiver<bool>,
        poll_interval: Duration,
        prune_interval: Duration,
    ) {
        tasks.spawn(self.clone().tail_loop(stop.clone(), poll_interval));
        tasks.spawn(self.clone().prune_loop(stop.clone(), prune_interval));
        if let Some(redis) = self.inner.redis.clone() {
            tasks.spawn(self.clone().subscribe_loop(redis.client, stop.clone()));
        }
    }

    async fn tail_loop(self, mut stop: watch::Receiver<bool>, poll_interval: Duration) {
        let mut poll = tokio::time::interval(poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stopped(&mut stop) => return,
                () = self.inner.wake.notified() => {}
                _ = poll.tick() => {}
            }
            if let Err(error) = self.broadcast_new().await {
                tracing::warn!(%error, "cannot read new revocation events; retrying at the next poll");
            }
        }
    }

    /// Reads and broadcasts every event after the tail.
    async fn broadcast_new(&self) -> Result<(), ReadError> {
        loop {
            let events = self.read_after(self.tail(), PAGE).await?;
            let full_page = events.len() == usize::try_from(PAGE).unwrap_or(usize::MAX);
            for event in events {
                let sequence = event.sequence;
                // No receiver is not an error: nobody is watching.
                let _ = self.inner.live.send(Arc::new(event));
                self.inner.tail.send_replace(sequence);
            }
            if !full_page {
                return Ok(());
            }
        }
    }

    async fn prune_loop(self, mut stop: watch::Receiver<bool>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stopped(&mut stop) => return,
                _ = tick.tick() => {}
            }
            match self.prune(crate::db::now()).await {
                Ok(0) => {}
                Ok(pruned) => tracing::debug!(pruned, "pruned expired revocation events"),
                Err(error) => tracing::warn!(%error, "cannot prune revocation events"),
            }
        }
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

async fn head(pool: &AnyPool) -> Result<u64, sqlx::Error> {
    let head: i64 =
        sqlx::query_scalar("SELECT last_sequence FROM revocation_sequence WHERE id = 1")
            .fetch_one(pool)
            .await?;
    Ok(u64::try_from(head).unwrap_or(0))
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
