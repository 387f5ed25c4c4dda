//! The SQL session store: session state is the `revoked_at` (and `ended_reason`) of the family
//! row itself, so a session and its refresh tokens live in one database and survive restarts.
//! Ending sessions and appending their revocation event happen in one transaction.

use futures_util::future::BoxFuture;
use sqlx::AnyPool;

use super::family::{SESSION_COLUMNS, SessionRow, insert_row};
use super::model::{EndReason, Session};
use super::revocation::{RevocationLog, Target};
use super::stats::{SECONDS_PER_DAY, SessionStats, first_day};
use super::store::{SessionStore, StoreError, count_ended};
use crate::db;

/// Sessions in the issuer's database (SQLite or PostgreSQL).
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    log: RevocationLog,
}

impl SqlStore {
    pub fn new(pool: AnyPool, log: RevocationLog) -> Self {
        Self { pool, log }
    }
}

impl SessionStore for SqlStore {
    fn create<'a>(&'a self, session: &'a Session) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            // The login transaction has written the row already ([`super::create_family`]).
            let mut conn = self.pool.acquire().await?;
            insert_row(&mut conn, session).await?;
            Ok(())
        })
    }

    fn get<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Result<Option<Session>, StoreError>> {
        Box::pin(async move {
            let row: Option<SessionRow> = sqlx::query_as(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions s \
                 WHERE s.id = $1 AND s.revoked_at IS NULL AND s.expires_at > $2"
            ))
            .bind(sid)
            .bind(db::now())
            .fetch_optional(&self.pool)
            .await?;
            Ok(row.map(SessionRow::into_session).transpose()?)
        })
    }

    fn touch<'a>(&'a self, sid: &'a str, now: i64) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query(
                "UPDATE sessions SET last_seen_at = $1 \
                 WHERE id = $2 AND revoked_at IS NULL AND expires_at > $1",
            )
            .bind(now)
            .bind(sid)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn end<'a>(
        &'a self,
        sid: &'a str,
        reason: EndReason,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let now = db::now();
            // The UPDATE comes first, so SQLite takes its write lock before anything is read.
            let mut tx = self.pool.begin().await?;
            let user_id: Option<String> = sqlx::query_scalar(
                "UPDATE sessions SET revoked_at = $1, ended_reason = $2 \
                 WHERE id = $3 AND revoked_at IS NULL AND expires_at > $1 RETURNING user_id",
            )
            .bind(now)
            .bind(reason.as_str())
            .bind(sid)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(user_id) = user_id else {
                return Ok(false);
            };
            let target = Target::SessionsEnded {
                session_ids: vec![sid.to_owned()],
                user_id,
                reason,
            };
            let appended = self
                .log
                .append_in(&mut tx, &target, now)
                .await
                .map_err(StoreError::Event)?;
            tx.commit().await?;
            self.log.announce(appended).await;
            count_ended(reason, 1);
            Ok(true)
        })
    }

    fn end_all_for_user<'a>(
        &'a self,
        user_id: &'a str,
        reason: EndReason,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            let now = db::now();
            let mut tx = self.pool.begin().await?;
            let mut ended: Vec<String> = sqlx::query_scalar(
                "UPDATE sessions SET revoked_at = $1, ended_reason = $2 \
                 WHERE user_id = $3 AND revoked_at IS NULL AND expires_at > $1 RETURNING id",
            )
            .bind(now)
            .bind(reason.as_str())
            .bind(user_id)
            .fetch_all(&mut *tx)
            .await?;
            if ended.is_empty() {
                return Ok(ended);
            }
            ended.sort_unstable();
            let target = Target::SessionsEnded {
                session_ids: ended.clone(),
                user_id: user_id.to_owned(),
                reason,
            };
            let appended = self
                .log
                .append_in(&mut tx, &target, now)
                .await
                .map_err(StoreError::Event)?;
            tx.commit().await?;
            self.log.announce(appended).await;
            count_ended(reason, ended.len());
            Ok(ended)
        })
    }

    fn list_active_for_user<'a>(
        &'a self,
        user_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Session>, StoreError>> {
        Box::pin(async move {
            let rows: Vec<SessionRow> = sqlx::query_as(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions s \
                 WHERE s.user_id = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 \
                 ORDER BY s.created_at_ms, s.id"
            ))
            .bind(user_id)
            .bind(db::now())
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(SessionRow::into_session)
                .collect::<Result<_, _>>()?)
        })
    }

    fn user_changed_at<'a>(
        &'a self,
        user_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<i64>, StoreError>> {
        Box::pin(async move {
            let changed: Option<Option<i64>> =
                sqlx::query_scalar("SELECT claims_changed_at FROM users WHERE id = $1")
                    .bind(user_id)
                    .fetch_optional(&self.pool)
                    .await?;
            Ok(changed.flatten())
        })
    }

    fn is_active<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let found: Option<i64> = sqlx::query_scalar(
                "SELECT expires_at FROM sessions \
                 WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2",
            )
            .bind(sid)
            .bind(db::now())
            .fetch_optional(&self.pool)
            .await?;
            Ok(found.is_some())
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        })
    }

    fn stats(&self, now: i64) -> BoxFuture<'_, Result<SessionStats, StoreError>> {
        Box::pin(sql_stats(&self.pool, now))
    }

    fn sql_rows_are_authoritative(&self) -> bool {
        true
    }

    fn backend(&self) -> &'static str {
        "sql"
    }
}

/// The snapshot of the SQL store: one grouped count and one distinct count over the active
/// rows, in one transaction.
async fn sql_stats(pool: &AnyPool, now: i64) -> Result<SessionStats, StoreError> {
    let window_start = first_day(now) * SECONDS_PER_DAY;
    let mut tx = pool.begin().await?;
    // Both statements use `sessions_active_idx` (partial, `revoked_at IS NULL`).
    let groups: Vec<(Option<String>, i64, i64)> = sqlx::query_as(
        "SELECT client_id, \
         CASE WHEN created_at >= $2 THEN created_at / 86400 ELSE -1 END AS day, \
         COUNT(*) FROM sessions \
         WHERE revoked_at IS NULL AND expires_at > $1 \
         GROUP BY client_id, CASE WHEN created_at >= $2 THEN created_at / 86400 ELSE -1 END",
    )
    .bind(now)
    .bind(window_start)
    .fetch_all(&mut *tx)
    .await?;
    let users: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT DISTINCT user_id FROM sessions \
         WHERE revoked_at IS NULL AND expires_at > $1) AS active_users",
    )
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(SessionStats::from_groups(
        now,
        count(users),
        groups
            .into_iter()
            .map(|(client, day, sessions)| (client, (day >= 0).then_some(day), count(sessions))),
    ))
}
