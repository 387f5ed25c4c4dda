//! Sessions: one per login, identified by the `sid` claim of the user's access tokens and the
//! family of its refresh tokens.

use sqlx::{Any, AnyPool};

use crate::crypto;
use crate::refresh_tokens;
use crate::scope::ScopeSet;
use crate::users::LookupError;

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

#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    id: String,
    user_id: String,
    client_id: Option<String>,
    scope: Option<String>,
    created_at: i64,
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
            last_seen_at: self.last_seen_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            user_agent: self.user_agent,
            ip: self.ip,
        })
    }
}

pub(crate) const SESSION_COLUMNS: &str = "s.id, s.user_id, s.client_id, s.scope, s.created_at, \
     s.last_seen_at, s.expires_at, s.revoked_at, s.user_agent, s.ip";

/// Creates a session and the first refresh token of its family, atomically. Returns the session
/// and the refresh token (the only time its clear text exists on the server).
pub async fn create(
    pool: &AnyPool,
    new: NewSession,
    now: i64,
) -> Result<(Session, String), sqlx::Error> {
    let session = Session {
        id: crypto::random_id(),
        user_id: new.user_id,
        client_id: new.client_id,
        scope: new.scope,
        created_at: now,
        last_seen_at: now,
        expires_at: now.saturating_add(new.lifetime_secs),
        revoked_at: None,
        user_agent: new.user_agent,
        ip: new.ip,
    };
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO sessions (id, user_id, client_id, scope, created_at, last_seen_at, \
         expires_at, revoked_at, user_agent, ip) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $9)",
    )
    .bind(&session.id)
    .bind(&session.user_id)
    .bind(session.client_id.as_deref())
    .bind(session.scope.as_ref().map(ToString::to_string))
    .bind(session.created_at)
    .bind(session.last_seen_at)
    .bind(session.expires_at)
    .bind(session.user_agent.as_deref())
    .bind(session.ip.as_deref())
    .execute(&mut *tx)
    .await?;
    let refresh_token =
        refresh_tokens::insert(&mut tx, &session.id, session.expires_at, now).await?;
    tx.commit().await?;
    Ok((session, refresh_token))
}

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

/// The end of session `sid` if it is active: it exists, is not revoked, has not expired and its
/// user is not disabled. `None` otherwise (an unknown session is simply inactive).
pub async fn active_until(pool: &AnyPool, sid: &str, now: i64) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.id = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 \
         AND u.disabled_at IS NULL",
    )
    .bind(sid)
    .bind(now)
    .fetch_optional(pool)
    .await
}
