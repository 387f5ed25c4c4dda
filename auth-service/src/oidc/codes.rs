//! Authorization codes: 256 random bits, stored only as their SHA-256 (like refresh tokens),
//! single use, valid [`CODE_TTL_SECS`], bound to the client, the exact redirect URI, the PKCE
//! challenge, the nonce and the browser session that approved them.
//!
//! Redemption claims the code with a conditional `UPDATE` (`used_at IS NULL`), so two
//! concurrent redemptions cannot both win, on SQLite and PostgreSQL alike; the winner records
//! the id of the session it will start in the same statement. A later redemption finds the code
//! used and is told which session to end (RFC 6749 §4.1.2: a code used twice should revoke the
//! tokens issued from it). Rows are deleted an hour after they expire, when codes are issued.

use sqlx::AnyPool;

use crate::crypto;
use crate::scope::ScopeSet;
use crate::sessions::ClientMeta;

/// Longest life of an authorization code (RFC 6749 §4.1.2 recommends at most 10 minutes; a
/// browser redirect and a back-channel request take a second or two).
pub const CODE_TTL_SECS: i64 = 60;
/// How long a used or expired code is kept, so that its replay still ends its session.
const KEEP_AFTER_EXPIRY_SECS: i64 = 3600;

/// What an authorization code stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub user_id: String,
    pub scope: ScopeSet,
    pub auth_time: i64,
    /// The hash of the browser session's token.
    pub browser_session: String,
    /// The browser that approved the code (its `User-Agent` and address), recorded with the
    /// session the code starts: the token request comes from the client's backend.
    pub device: ClientMeta,
}

/// Stores `grant` under a fresh code and returns the code.
pub async fn issue(pool: &AnyPool, grant: &CodeGrant, now: i64) -> Result<String, sqlx::Error> {
    // A redeemed code stays while its browser session lives: it is what ties that sign-in to
    // the session it started (`super::browser::started_sessions`).
    sqlx::query(
        "DELETE FROM authorization_codes WHERE expires_at < $1 \
         AND (token_session_id IS NULL OR NOT EXISTS (\
           SELECT 1 FROM browser_sessions b WHERE b.token_hash = authorization_codes.browser_session \
           AND b.ended_at IS NULL AND b.expires_at > $2))",
    )
    .bind(now.saturating_sub(KEEP_AFTER_EXPIRY_SECS))
    .bind(now)
    .execute(pool)
    .await?;
    let code = crypto::random_secret();
    sqlx::query(
        "INSERT INTO authorization_codes (code_hash, client_id, redirect_uri, code_challenge, \
         nonce, user_id, scope, auth_time, browser_session, created_at, expires_at, user_agent, \
         client_ip) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(crypto::token_hash(&code))
    .bind(&grant.client_id)
    .bind(&grant.redirect_uri)
    .bind(&grant.code_challenge)
    .bind(grant.nonce.as_deref())
    .bind(&grant.user_id)
    .bind(grant.scope.to_string())
    .bind(grant.auth_time)
    .bind(&grant.browser_session)
    .bind(now)
    .bind(now.saturating_add(CODE_TTL_SECS))
    .bind(grant.device.user_agent.as_deref())
    .bind(grant.device.ip.as_deref())
    .execute(pool)
    .await?;
    Ok(code)
}

/// The outcome of presenting a code.
#[derive(Debug, PartialEq, Eq)]
pub enum Redemption {
    /// First use within its lifetime: the grant, now claimed for `session_id`.
    Claimed(CodeGrant),
    /// Used before: the session its first redemption started (if it started one) must end.
    Replayed { session_id: Option<String> },
    /// Unknown, or expired unused.
    Invalid,
}

#[derive(sqlx::FromRow)]
struct CodeRow {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    nonce: Option<String>,
    user_id: String,
    scope: String,
    auth_time: i64,
    browser_session: String,
    expires_at: i64,
    used_at: Option<i64>,
    token_session_id: Option<String>,
    user_agent: Option<String>,
    client_ip: Option<String>,
}

/// Claims `code` for the session `session_id` (not yet started: its id is chosen first so that
/// a replay racing the first redemption still learns it).
pub async fn redeem(
    pool: &AnyPool,
    code: &str,
    session_id: &str,
    now: i64,
) -> Result<Redemption, sqlx::Error> {
    let hash = crypto::token_hash(code);
    let claimed = sqlx::query(
        "UPDATE authorization_codes SET used_at = $1, token_session_id = $2 \
         WHERE code_hash = $3 AND used_at IS NULL AND expires_at >= $1",
    )
    .bind(now)
    .bind(session_id)
    .bind(&hash)
    .execute(pool)
    .await?
    .rows_affected()
        == 1;
    let row: Option<CodeRow> = sqlx::query_as(
        "SELECT client_id, redirect_uri, code_challenge, nonce, user_id, scope, auth_time, \
         browser_session, expires_at, used_at, token_session_id, user_agent, client_ip \
         FROM authorization_codes WHERE code_hash = $1",
    )
    .bind(&hash)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(Redemption::Invalid);
    };
    if !claimed {
        return Ok(match row.used_at {
            Some(_) => Redemption::Replayed {
                session_id: row.token_session_id,
            },
            None => Redemption::Invalid,
        });
    }
    debug_assert!(row.expires_at >= now);
    let scope = ScopeSet::parse(&row.scope).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(Redemption::Claimed(CodeGrant {
        client_id: row.client_id,
        redirect_uri: row.redirect_uri,
        code_challenge: row.code_challenge,
        nonce: row.nonce,
        user_id: row.user_id,
        scope,
        auth_time: row.auth_time,
        browser_session: row.browser_session,
        device: ClientMeta {
            user_agent: row.user_agent,
            ip: row.client_ip,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> CodeGrant {
        CodeGrant {
            client_id: "web".into(),
            redirect_uri: "https://web.example.com/cb".into(),
            code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
            nonce: Some("n".into()),
            user_id: "u".into(),
            scope: ScopeSet::parse("openid").expect("scope"),
            auth_time: 100,
            browser_session: "b".into(),
            device: ClientMeta {
                user_agent: Some("Firefox".into()),
                ip: Some("203.0.113.7".into()),
            },
        }
    }

    #[tokio::test]
    async fn a_code_is_stored_hashed_used_once_and_expires() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("auth.db").display());
        let pool = crate::db::connect_and_migrate(&url, 2).await.expect("db");
        let code = issue(&pool, &grant(), 1000).await.expect("issued");
        let stored: Vec<String> = sqlx::query_scalar("SELECT code_hash FROM authorization_codes")
            .fetch_all(&pool)
            .await
            .expect("rows");
        assert_eq!(
            stored,
            [crypto::token_hash(&code)],
            "only the hash is stored"
        );

        assert_eq!(
            redeem(&pool, &code, "s1", 1001).await.expect("redeem"),
            Redemption::Claimed(grant())
        );
        assert_eq!(
            redeem(&pool, &code, "s2", 1002).await.expect("redeem"),
            Redemption::Replayed {
                session_id: Some("s1".into())
            }
        );
        assert_eq!(
            redeem(&pool, "unknown", "s3", 1002).await.expect("redeem"),
            Redemption::Invalid
        );
        let late = issue(&pool, &grant(), 2000).await.expect("issued");
        assert_eq!(
            redeem(&pool, &late, "s4", 2000 + CODE_TTL_SECS + 1)
                .await
                .expect("redeem"),
            Redemption::Invalid
        );
    }

    #[tokio::test]
    async fn a_redeemed_code_is_kept_while_its_browser_session_lives() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("auth.db").display());
        let pool = crate::db::connect_and_migrate(&url, 2).await.expect("db");
        let day = 86_400;
        let (_, live) = super::super::browser::open(&pool, "u", 1000, 14 * day)
            .await
            .expect("browser session");
        let kept = CodeGrant {
            browser_session: live.token_hash.clone(),
            ..grant()
        };
        let code = issue(&pool, &kept, 1000).await.expect("issued");
        redeem(&pool, &code, "s1", 1001).await.expect("redeemed");
        // Unredeemed, and of a browser session that is gone: purged when another code is issued.
        issue(&pool, &grant(), 1000).await.expect("issued");

        issue(&pool, &grant(), 1000 + day)
            .await
            .expect("a day later");
        let sessions = super::super::browser::started_sessions(&pool, &live.token_hash)
            .await
            .expect("started sessions");
        assert_eq!(sessions, ["s1"], "the sign-in still knows what it started");
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM authorization_codes")
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!(
            rows, 2,
            "the old unredeemed code was purged, the new one kept"
        );
    }
}
