//! Account administration that reaches beyond the `users` table: disabling a user ends its
//! sessions and tells every verifier. Used by `POST /v1/admin/users/{id}/disable|enable` and by
//! `auth-service user disable|enable`.

use sqlx::AnyPool;

use crate::db;
use crate::sessions::revocation::{RevocationLog, Target};
use crate::sessions::{EndReason, SessionStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What disabling did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disabled {
    /// The user was enabled until now (false: it was disabled already).
    pub newly: bool,
    /// The sessions ended.
    pub ended_sessions: Vec<String>,
}

/// Disables user `user_id`: no more logins or refreshes, every session ended. Returns `None`
/// for an unknown user.
///
/// The flag and a `UserDisabled` event (every token of the user issued until now is revoked,
/// whatever its session) are committed together first, so no login or refresh succeeds after
/// this returns; then the sessions end, as one `SessionsEnded` event. Disabling a disabled user
/// ends whatever sessions it still has, without a second `UserDisabled` event.
pub async fn disable_user(
    pool: &AnyPool,
    sessions: &dyn SessionStore,
    log: &RevocationLog,
    user_id: &str,
) -> Result<Option<Disabled>, AccountError> {
    let now = db::now();
    let mut tx = pool.begin().await?;
    let changed =
        sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2 AND disabled_at IS NULL")
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
    let appended = if changed {
        let target = Target::UserDisabled {
            user_id: user_id.to_owned(),
        };
        Some(log.append_in(&mut tx, &target, now).await?)
    } else {
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(None);
        }
        None
    };
    tx.commit().await?;
    if let Some(appended) = appended {
        log.announce(appended).await;
    }
    let ended_sessions = sessions
        .end_all_for_user(user_id, EndReason::UserDisabled)
        .await?;
    tracing::info!(
        user_id,
        ended = ended_sessions.len(),
        "user disabled and its sessions ended"
    );
    Ok(Some(Disabled {
        newly: changed,
        ended_sessions,
    }))
}

/// Enables user `user_id` again: it may log in; tokens and sessions from before stay revoked.
/// Returns whether the user exists.
pub async fn enable_user(pool: &AnyPool, user_id: &str) -> Result<bool, AccountError> {
    let done = sqlx::query("UPDATE users SET disabled_at = NULL WHERE id = $1")
        .bind(user_id)
        .execute(pool)
        .await?;
    let exists = done.rows_affected() == 1;
    if exists {
        tracing::info!(user_id, "user enabled");
    }
    Ok(exists)
}
