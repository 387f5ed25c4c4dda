//! Account administration that reaches beyond the `users` table: disabling a user ends its
//! sessions and tells every verifier; changing its roles or scopes tells every verifier that
//! the user's older tokens carry stale claims. Used by the admin API (`/v1/admin/users...`) and
//! by `auth-service user disable|enable|update`.

use sqlx::AnyPool;

use crate::db;
use crate::scope::ScopeSet;
use crate::sessions::revocation::{RevocationLog, Target};
use crate::sessions::{EndReason, SessionStore, StoreError};
use crate::users::{self, LookupError, User};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// The change would give the user more roles or scopes than a token may carry.
    #[error(transparent)]
    TooManyGrants(#[from] crate::scope::GrantsTooLarge),
}

/// A change of a user's grants: `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantChange {
    pub roles: Option<Vec<String>>,
    pub scopes: Option<ScopeSet>,
}

/// Replaces the roles and/or scopes of user `user_id`. Returns the user as it is now, and
/// `None` for an unknown user.
///
/// When something actually changes, the new values, the time of the change and a `UserChanged`
/// event are committed together: from then on `stateful` verifiers (`CheckSession`, or the
/// Redis key written before the commit) and, once the event reaches them, `hybrid` verifiers
/// refuse the user's tokens issued at or before the change, as stale; the user's sessions and
/// refresh tokens stay valid, and a refresh returns a token with the new claims. Setting the
/// values the user already has changes nothing and writes no event.
pub async fn change_user(
    pool: &AnyPool,
    sessions: &dyn SessionStore,
    log: &RevocationLog,
    user_id: &str,
    change: GrantChange,
) -> Result<Option<User>, AccountError> {
    let now = db::now();
    let mut tx = pool.begin().await?;
    let Some(mut user) = users::find_by_id(&mut *tx, user_id).await? else {
        return Ok(None);
    };
    let roles = change.roles.unwrap_or_else(|| user.roles.clone());
    let scopes = change.scopes.unwrap_or_else(|| user.scopes.clone());
    if roles == user.roles && scopes == user.scopes {
        return Ok(Some(user));
    }
    crate::scope::check_grants(&roles, &scopes)?;
    users::set_grants(&mut tx, user_id, &roles, &scopes, now).await?;
    let appended = log
        .append_in(
            &mut tx,
            &Target::UserChanged {
                user_id: user_id.to_owned(),
            },
            now,
        )
        .await?;
    // Before the commit: should the commit fail, verifiers reading Redis refuse tokens that were
    // fine, whose clients refresh and get the same claims again; the other way round they would
    // accept stale claims until the tokens expire.
    sessions.record_user_change(user_id, now).await?;
    tx.commit().await?;
    log.announce(appended).await;
    tracing::info!(
        audit = "user_changed",
        user_id,
        roles = %crate::scope::roles_to_string(&roles),
        scopes = %scopes,
        "user's roles and scopes changed; older tokens are refused as stale"
    );
    user.roles = roles;
    user.scopes = scopes;
    user.claims_changed_at = Some(now);
    Ok(Some(user))
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
