//! The issuer's browser sessions: a successful sign-in on the hosted page sets a `__Host-`
//! cookie (Secure, HttpOnly, SameSite=Lax, Path=/) holding 256 random bits, stored only as their
//! SHA-256. While it lives, a second authorization in the same browser skips the form (unless
//! the client asks `prompt=login`). It lives until it expires, the user signs out at the issuer
//! (`end_session_endpoint`), or any token session it started ends: a device logged out from
//! another one, or by a replayed refresh token, must sign in again, not be given a new session
//! silently by its next authorization.

use sqlx::AnyPool;

use crate::crypto;

/// The cookie's name. `__Host-`: set only by this origin over HTTPS, for the whole origin, so
/// no sibling subdomain can plant or overwrite it.
pub const COOKIE: &str = "__Host-auth_session";

/// A live browser session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserSession {
    /// SHA-256 of the cookie's token: how codes name the session.
    pub token_hash: String,
    pub user_id: String,
    pub auth_time: i64,
    pub expires_at: i64,
}

/// Opens a session for `user_id` signed in at `now`; returns the cookie's token and the session.
pub async fn open(
    pool: &AnyPool,
    user_id: &str,
    now: i64,
    lifetime_secs: i64,
) -> Result<(String, BrowserSession), sqlx::Error> {
    sqlx::query("DELETE FROM browser_sessions WHERE expires_at < $1")
        .bind(now)
        .execute(pool)
        .await?;
    let token = crypto::random_secret();
    let session = BrowserSession {
        token_hash: crypto::token_hash(&token),
        user_id: user_id.to_owned(),
        auth_time: now,
        expires_at: now.saturating_add(lifetime_secs),
    };
    sqlx::query(
        "INSERT INTO browser_sessions (token_hash, user_id, auth_time, expires_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(&session.token_hash)
    .bind(&session.user_id)
    .bind(session.auth_time)
    .bind(session.expires_at)
    .execute(pool)
    .await?;
    Ok((token, session))
}

#[derive(sqlx::FromRow)]
struct Row {
    token_hash: String,
    user_id: String,
    auth_time: i64,
    expires_at: i64,
}

/// The live session of the cookie token `token`, if any.
pub async fn find(
    pool: &AnyPool,
    token: &str,
    now: i64,
) -> Result<Option<BrowserSession>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT token_hash, user_id, auth_time, expires_at FROM browser_sessions \
         WHERE token_hash = $1 AND ended_at IS NULL AND expires_at > $2",
    )
    .bind(crypto::token_hash(token))
    .bind(now)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| BrowserSession {
        token_hash: row.token_hash,
        user_id: row.user_id,
        auth_time: row.auth_time,
        expires_at: row.expires_at,
    }))
}

/// Whether the session whose token hashes to `token_hash` is live (not ended, not expired).
pub async fn is_live(pool: &AnyPool, token_hash: &str, now: i64) -> Result<bool, sqlx::Error> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT auth_time FROM browser_sessions \
         WHERE token_hash = $1 AND ended_at IS NULL AND expires_at > $2",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(pool)
    .await?;
    Ok(found.is_some())
}

/// The token sessions the browser session `token_hash` started: those of the codes it approved
/// that were redeemed. (Codes are kept, used or not, as long as their browser session can be
/// live: what links a sign-in to the sessions it started.)
pub async fn started_sessions(
    pool: &AnyPool,
    token_hash: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT token_session_id FROM authorization_codes \
         WHERE browser_session = $1 AND token_session_id IS NOT NULL",
    )
    .bind(token_hash)
    .fetch_all(pool)
    .await
}

/// Ends the session whose token hashes to `token_hash`.
pub async fn end(pool: &AnyPool, token_hash: &str, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE browser_sessions SET ended_at = $1 WHERE token_hash = $2 AND ended_at IS NULL",
    )
    .bind(now)
    .bind(token_hash)
    .execute(pool)
    .await?;
    Ok(())
}
