//! Refresh tokens: opaque 256-bit random strings, stored only as SHA-256 hashes, rotated on
//! every use. The session is the family: every token of a login shares its `session_id`, and
//! the login writes the family row with the first token ([`create_family`]).

use sqlx::{Any, AnyConnection, AnyPool, Transaction};

use super::family::{self, SESSION_COLUMNS, SessionRow};
use super::model::Session;
use crate::crypto;
use crate::users::{self, LookupError, User};

/// Writes the family row of `session` and the first refresh token of its family, atomically,
/// and returns the refresh token (the only time its clear text exists on the server). The
/// session is not active until the store has recorded it ([`super::SessionStore::create`]).
pub async fn create_family(
    pool: &AnyPool,
    session: &Session,
    now: i64,
) -> Result<String, sqlx::Error> {
    let mut tx = pool.begin().await?;
    family::insert_row(&mut tx, session).await?;
    let refresh_token = insert(&mut tx, &session.id, session.expires_at, now).await?;
    tx.commit().await?;
    Ok(refresh_token)
}

/// Stores a fresh refresh token of session `session_id` and returns its clear text.
pub async fn insert(
    conn: &mut AnyConnection,
    session_id: &str,
    expires_at: i64,
    now: i64,
) -> Result<String, sqlx::Error> {
    let token = crypto::random_secret();
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at, used_at, \
         replaced_by) VALUES ($1, $2, $3, $4, NULL, NULL)",
    )
    .bind(crypto::token_hash(&token))
    .bind(session_id)
    .bind(now)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(token)
}

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// Unknown or expired token; or its session is over or its user disabled. One variant: the
    /// client learns nothing about which.
    #[error("refresh token is invalid, expired or already used ({0})")]
    Invalid(&'static str),
    /// The token was rotated already: it was stolen, or its thief used it first. The caller
    /// ends session `session_id`; the client gets the same answer as for `Invalid`.
    #[error("refresh token of session {session_id} was already used")]
    Reused { session_id: String },
    #[error(transparent)]
    Lookup(#[from] LookupError),
}

impl From<sqlx::Error> for RotateError {
    fn from(e: sqlx::Error) -> Self {
        Self::Lookup(LookupError::Db(e))
    }
}

/// A refresh token being exchanged: the presented token is already marked used inside an open
/// transaction. [`Rotation::commit`] stores its successor and makes both changes visible;
/// dropping the rotation (a policy check failed) rolls everything back.
pub struct Rotation {
    tx: Transaction<'static, Any>,
    old_hash: String,
    now: i64,
    /// The token's session, active.
    pub session: Session,
    /// The session's user as it is now (current roles and scopes), not disabled.
    pub user: User,
}

impl std::fmt::Debug for Rotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotation")
            .field("session", &self.session.id)
            .field("user", &self.user.id)
            .finish_non_exhaustive()
    }
}

/// Claims refresh token `presented` for a rotation.
///
/// A token that exists, has not expired, but was used already is a reuse
/// ([`RotateError::Reused`]): there is no grace period, not even for the loser of two
/// concurrent refreshes (see `docs/ISSUER.md`).
///
/// The token is marked used with `UPDATE .. WHERE used_at IS NULL` as the transaction's first
/// statement, and only the caller that changed the row goes on: of two concurrent uses of one
/// token exactly one wins, on SQLite (the write lock is taken before anything is read, so the
/// loser waits instead of failing on a stale snapshot) and on PostgreSQL (row lock, then the
/// `WHERE` is re-checked).
pub async fn begin_rotation(
    pool: &AnyPool,
    presented: &str,
    now: i64,
) -> Result<Rotation, RotateError> {
    let old_hash = crypto::token_hash(presented);
    let mut tx = pool.begin().await?;
    let claimed = sqlx::query(
        "UPDATE refresh_tokens SET used_at = $1 \
         WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1",
    )
    .bind(now)
    .bind(&old_hash)
    .execute(&mut *tx)
    .await?;
    if claimed.rows_affected() != 1 {
        let used: Option<(String, Option<i64>)> = sqlx::query_as(
            "SELECT session_id, used_at FROM refresh_tokens \
             WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(&old_hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        // Release the write lock before the caller ends the session.
        tx.rollback().await?;
        return Err(match used {
            Some((session_id, Some(_))) => RotateError::Reused { session_id },
            _ => RotateError::Invalid("unknown or expired"),
        });
    }
    let row: Option<SessionRow> = sqlx::query_as(&format!(
        "SELECT {SESSION_COLUMNS} FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id \
         WHERE t.token_hash = $1"
    ))
    .bind(&old_hash)
    .fetch_optional(&mut *tx)
    .await?;
    let session = row
        .ok_or(RotateError::Invalid("no session"))?
        .into_session()?;
    if !session.is_active(now) {
        return Err(RotateError::Invalid("session ended"));
    }
    let user = users::find_by_id(&mut *tx, &session.user_id)
        .await?
        .ok_or(RotateError::Invalid("user deleted"))?;
    if user.is_disabled() {
        return Err(RotateError::Invalid("user disabled"));
    }
    Ok(Rotation {
        tx,
        old_hash,
        now,
        session,
        user,
    })
}

impl Rotation {
    /// Stores the successor token (same session, expiring with it), links it from the used one
    /// (`replaced_by`), commits, and returns the new token's clear text. The caller then
    /// touches the session in the store.
    pub async fn commit(mut self) -> Result<String, sqlx::Error> {
        let token = insert(
            &mut self.tx,
            &self.session.id,
            self.session.expires_at,
            self.now,
        )
        .await?;
        sqlx::query("UPDATE refresh_tokens SET replaced_by = $1 WHERE token_hash = $2")
            .bind(crypto::token_hash(&token))
            .bind(&self.old_hash)
            .execute(&mut *self.tx)
            .await?;
        self.tx.commit().await?;
        Ok(token)
    }
}

/// What a refresh token is, for revocation and introspection.
#[derive(Debug, Clone)]
pub struct TokenInfo {
    /// The family row of its session.
    pub session: Session,
    pub expires_at: i64,
    /// When it was rotated, if it was.
    pub used_at: Option<i64>,
}

/// Looks up refresh token `presented` by its hash, whatever its state.
pub async fn find(pool: &AnyPool, presented: &str) -> Result<Option<TokenInfo>, LookupError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        expires_at: i64,
        used_at: Option<i64>,
        session_id: String,
    }
    let row: Option<Row> = sqlx::query_as(
        "SELECT expires_at, used_at, session_id FROM refresh_tokens WHERE token_hash = $1",
    )
    .bind(crypto::token_hash(presented))
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let Some(session) = family::find(pool, &row.session_id).await? else {
        return Ok(None);
    };
    Ok(Some(TokenInfo {
        session,
        expires_at: row.expires_at,
        used_at: row.used_at,
    }))
}
