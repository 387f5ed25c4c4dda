//! The family row: a session's row in the SQL `sessions` table, written with its first refresh
//! token ([`super::create_family`]) and referenced by every refresh token of the family. It is
//! always in SQL, whatever the [`super::SessionStore`].

use sqlx::{Any, AnyConnection};

use super::model::Session;
use crate::scope::ScopeSet;
use crate::users::LookupError;

#[derive(sqlx::FromRow)]
pub(super) struct SessionRow {
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
    pub(super) fn into_session(self) -> Result<Session, LookupError> {
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

pub(super) const SESSION_COLUMNS: &str = "s.id, s.user_id, s.client_id, s.scope, s.created_at, \
     s.created_at_ms, s.last_seen_at, s.expires_at, s.revoked_at, s.user_agent, s.ip";

/// Inserts the family row of `session` (nothing if it exists).
pub(super) async fn insert_row(
    conn: &mut AnyConnection,
    session: &Session,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sessions (id, user_id, client_id, scope, created_at, created_at_ms, \
         last_seen_at, expires_at, revoked_at, user_agent, ip) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, $10) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&session.id)
    .bind(&session.user_id)
    .bind(session.client_id.as_deref())
    .bind(session.scope.as_ref().map(ToString::to_string))
    .bind(session.created_at)
    .bind(session.created_at_ms)
    .bind(session.last_seen_at)
    .bind(session.expires_at)
    .bind(session.user_agent.as_deref())
    .bind(session.ip.as_deref())
    .execute(conn)
    .await?;
    Ok(())
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
