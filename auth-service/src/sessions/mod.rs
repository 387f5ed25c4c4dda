//! Sessions: one per login, identified by the `sid` claim of the user's access tokens and the
//! family of its refresh tokens.
//!
//! Two records make a session:
//!
//! - the **family row** in the SQL `sessions` table, written with the first refresh token in the
//!   login transaction ([`create_family`]): what a refresh needs (client, granted scope, absolute
//!   end) and what refresh tokens reference. It is always in SQL, whatever the store.
//! - the **session state** in a [`SessionStore`]: whether the session is still active, plus what
//!   `GET /v1/sessions` shows. [`SqlStore`] keeps it in the same `sessions` row (the embedded
//!   default); [`RedisStore`] keeps it in Redis (`REDIS_URL`, several replicas), where `stateful`
//!   verifiers can read it directly.
//!
//! The store is the only authority on whether a session is active: `CheckSession`, the issuer's
//! own bearer checks and the refresh grant all ask it. Ending a session through the store also
//! appends the matching revocation event ([`crate::revocation`]) for `hybrid` verifiers.

mod lookup;
pub mod redis;
pub mod sql;

use std::fmt;
use std::sync::Arc;

use authn::session::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::{Any, AnyPool};

use crate::crypto;
use crate::refresh_tokens;
use crate::scope::ScopeSet;
use crate::users::LookupError;

pub use self::lookup::StoreLookup;
pub use self::redis::RedisStore;
pub use self::sql::SqlStore;

/// A login session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The `sid` claim.
    pub id: String,
    pub user_id: String,
    /// The client that authenticated the login, if any; refreshes must come from it too.
    pub client_id: Option<String>,
    /// The scope granted at login; `None` means all of the user's scopes, whatever they are at
    /// the time of each refresh.
    pub scope: Option<ScopeSet>,
    pub created_at: i64,
    /// The same instant in Unix milliseconds: orders sessions begun within one second.
    pub created_at_ms: i64,
    /// The login, or the last refresh.
    pub last_seen_at: i64,
    /// The absolute end of the session, and of every refresh token of its family.
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

impl Session {
    pub fn is_active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

/// What a login records.
#[derive(Clone, Debug, Default)]
pub struct NewSession {
    pub user_id: String,
    pub client_id: Option<String>,
    pub scope: Option<ScopeSet>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// Seconds from now until the session (and its refresh tokens) end.
    pub lifetime_secs: i64,
}

/// Why a session ended: the `reason` of its `SessionsEnded` event, the label of
/// `auth_sessions_ended_total`, and the `ended_reason` stored with the SQL row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// `POST /v1/logout`.
    Logout,
    /// `POST /v1/logout-all`.
    LogoutAll,
    /// `DELETE /v1/sessions/{sid}`.
    Deleted,
    /// `POST /oauth/revoke`.
    Revoked,
    /// An already-rotated refresh token of the session was presented.
    RefreshReuse,
    /// The user went over `AUTH_MAX_SESSIONS_PER_USER`; the oldest sessions end.
    SessionCap,
    /// The user was disabled.
    UserDisabled,
}

impl EndReason {
    pub const ALL: [EndReason; 7] = [
        EndReason::Logout,
        EndReason::LogoutAll,
        EndReason::Deleted,
        EndReason::Revoked,
        EndReason::RefreshReuse,
        EndReason::SessionCap,
        EndReason::UserDisabled,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            EndReason::Logout => "logout",
            EndReason::LogoutAll => "logout_all",
            EndReason::Deleted => "deleted",
            EndReason::Revoked => "revoked",
            EndReason::RefreshReuse => "refresh_reuse",
            EndReason::SessionCap => "session_cap",
            EndReason::UserDisabled => "user_disabled",
        }
    }

    pub fn parse(reason: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == reason)
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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

    /// Whether the SQL `sessions` rows are this store's whole truth about which sessions are
    /// active. A refresh rotation reads its session's row inside its own transaction; when this
    /// holds, that read is the store's answer and asking [`SessionStore::is_active`] as well
    /// would only take a second pooled connection while the transaction holds the first.
    fn sql_rows_are_authoritative(&self) -> bool {
        false
    }

    /// Whether the store answers (for `/readyz`).
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// The backend's name, for logs.
    fn backend(&self) -> &'static str;
}

/// The store shared by every handler.
pub type SharedStore = Arc<dyn SessionStore>;

/// Counts sessions ended for `reason`.
pub(crate) fn count_ended(reason: EndReason, sessions: usize) {
    metrics::counter!("auth_sessions_ended_total", "reason" => reason.as_str())
        .increment(u64::try_from(sessions).unwrap_or(u64::MAX));
}

#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    id: String,
    user_id: String,
    client_id: Option<String>,
    scope: Option<String>,
    created_at: i64,
    created_at_ms: Option<i64>,
    last_seen_at: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
    user_agent: Option<String>,
    ip: Option<String>,
}

impl SessionRow {
    pub(crate) fn into_session(self) -> Result<Session, LookupError> {
        let scope = self
            .scope
            .as_deref()
            .map(ScopeSet::parse)
            .transpose()
            .map_err(|e| LookupError::Corrupt(format!("session {}: {e}", self.id)))?;
        Ok(Session {
            id: self.id,
            user_id: self.user_id,
            client_id: self.client_id,
            scope,
            created_at: self.created_at,
            created_at_ms: self
                .created_at_ms
                .unwrap_or(self.created_at.saturating_mul(1000)),
            last_seen_at: self.last_seen_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            user_agent: self.user_agent,
            ip: self.ip,
        })
    }
}

pub(crate) const SESSION_COLUMNS: &str = "s.id, s.user_id, s.client_id, s.scope, s.created_at, \
     s.created_at_ms, s.last_seen_at, s.expires_at, s.revoked_at, s.user_agent, s.ip";

/// The session a login at `now` is about to record, with a fresh random id.
pub fn new_session(new: NewSession, now: i64) -> Session {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Session {
        id: crypto::random_id(),
        user_id: new.user_id,
        client_id: new.client_id,
        scope: new.scope,
        created_at: now,
        // Within `now`'s second, so both orders agree.
        created_at_ms: now_ms.clamp(now.saturating_mul(1000), now.saturating_mul(1000) + 999),
        last_seen_at: now,
        expires_at: now.saturating_add(new.lifetime_secs),
        revoked_at: None,
        user_agent: new.user_agent,
        ip: new.ip,
    }
}

/// Writes the family row of `session` and the first refresh token of its family, atomically,
/// and returns the refresh token (the only time its clear text exists on the server). The
/// session is not active until the store has recorded it ([`SessionStore::create`]).
pub async fn create_family(
    pool: &AnyPool,
    session: &Session,
    now: i64,
) -> Result<String, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sql::insert_row(&mut tx, session).await?;
    let refresh_token =
        refresh_tokens::insert(&mut tx, &session.id, session.expires_at, now).await?;
    tx.commit().await?;
    Ok(refresh_token)
}

/// The family row of `sid`, whatever its state.
pub async fn find<'e, E>(executor: E, sid: &str) -> Result<Option<Session>, LookupError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let row: Option<SessionRow> = sqlx::query_as(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.id = $1"
    ))
    .bind(sid)
    .fetch_optional(executor)
    .await?;
    row.map(SessionRow::into_session).transpose()
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
