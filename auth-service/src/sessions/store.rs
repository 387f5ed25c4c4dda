//! The [`SessionStore`] contract: the one authority on whether a session is active.

use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::model::{EndReason, Session};
use super::stats::SessionStats;
use crate::users::LookupError;

/// Why a store operation failed. Callers fail closed: a session whose state cannot be read is
/// not active.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("session store (Redis) error: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("session store did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("stored session is invalid: {0}")]
    Corrupt(String),
    /// The session state changed but its revocation event could not be written.
    #[error("cannot record the revocation event: {0}")]
    Event(#[source] sqlx::Error),
}

impl From<LookupError> for StoreError {
    fn from(e: LookupError) -> Self {
        match e {
            LookupError::Db(e) => StoreError::Db(e),
            other => StoreError::Corrupt(other.to_string()),
        }
    }
}

/// Where session state lives. Both implementations pass the same test suite
/// (`tests/session_store.rs`).
///
/// "Active" means: created, not ended, and not past `expires_at`. [`SessionStore::end`] and
/// [`SessionStore::end_all_for_user`] append a `SessionsEnded` revocation event for what they
/// ended (nothing for sessions that were already over), count `auth_sessions_ended_total`, and
/// are idempotent.
pub trait SessionStore: Send + Sync + fmt::Debug + 'static {
    /// Records a new active session. Idempotent: creating a session that exists changes nothing.
    fn create<'a>(&'a self, session: &'a Session) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The session if it is active.
    fn get<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Result<Option<Session>, StoreError>>;

    /// Sets `last_seen_at` of an active session (a refresh); nothing for an inactive one.
    fn touch<'a>(&'a self, sid: &'a str, now: i64) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Ends an active session. Returns whether it was active.
    fn end<'a>(
        &'a self,
        sid: &'a str,
        reason: EndReason,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Ends every active session of a user, as one revocation event. Returns their ids.
    fn end_all_for_user<'a>(
        &'a self,
        user_id: &'a str,
        reason: EndReason,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>>;

    /// The user's active sessions, oldest first (by `created_at_ms`, then id).
    fn list_active_for_user<'a>(
        &'a self,
        user_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Session>, StoreError>>;

    /// Whether the session is active.
    fn is_active<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Records, where this store's readers look for it, that the user's roles or scopes changed
    /// at `at` (the `users` row has it already): the Redis store writes
    /// [`authn::session::redis_user_changed_key`] for `stateful` verifiers that read Redis.
    fn record_user_change<'a>(
        &'a self,
        user_id: &'a str,
        at: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let _ = (user_id, at);
        Box::pin(async { Ok(()) })
    }

    /// When the user's roles or scopes last changed, as `CheckSession` reports it; `None` when
    /// never (or so long ago that no token from before can be live).
    fn user_changed_at<'a>(
        &'a self,
        user_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<i64>, StoreError>>;

    /// Whether the SQL `sessions` rows are this store's whole truth about which sessions are
    /// active. A refresh rotation reads its session's row inside its own transaction; when this
    /// holds, that read is the store's answer and asking [`SessionStore::is_active`] as well
    /// would only take a second pooled connection while the transaction holds the first.
    fn sql_rows_are_authoritative(&self) -> bool {
        false
    }

    /// The active sessions counted at `now`, store-wide ([`super::stats`]).
    fn stats(&self, now: i64) -> BoxFuture<'_, Result<SessionStats, StoreError>>;

    /// Whether the store answers (for `/readyz`).
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// The backend's name, for logs.
    fn backend(&self) -> &'static str;
}

/// The store shared by every handler.
pub type SharedStore = Arc<dyn SessionStore>;

/// Counts sessions ended for `reason`.
pub(super) fn count_ended(reason: EndReason, sessions: usize) {
    metrics::counter!("auth_sessions_ended_total", "reason" => reason.as_str())
        .increment(u64::try_from(sessions).unwrap_or(u64::MAX));
}

/// Applies the per-user session cap after a login: when the user has more than `cap` active
/// sessions, the oldest ones (never `keep`, the new one) end with [`EndReason::SessionCap`].
/// `cap` 0 is unlimited. Returns the ids of the sessions ended.
///
/// Two logins at the same instant may both see the other's session and leave the user one
/// session short of the cap, or both miss it and leave one over until the next login: the cap
/// is a bound on accumulation, not a lock.
pub async fn enforce_cap(
    store: &dyn SessionStore,
    user_id: &str,
    cap: u32,
    keep: &str,
) -> Result<Vec<String>, StoreError> {
    if cap == 0 {
        return Ok(Vec::new());
    }
    let active = store.list_active_for_user(user_id).await?;
    let excess = active
        .len()
        .saturating_sub(usize::try_from(cap).unwrap_or(usize::MAX));
    let mut ended = Vec::with_capacity(excess);
    for session in active.iter().filter(|s| s.id != keep).take(excess) {
        if store.end(&session.id, EndReason::SessionCap).await? {
            ended.push(session.id.clone());
        }
    }
    Ok(ended)
}
