//! The `refresh_token` grant: rotates the presented refresh token of an active session
//! ([`crate::sessions::refresh_tokens`]) and issues a new access token. Presenting a token that
//! was rotated already ends its session (`refresh_reuse`, no grace window).

use super::{GrantError, Issued, granted_scope};
use crate::clients::Client;
use crate::db;
use crate::oidc::OPENID;
use crate::scope::ScopeSet;
use crate::sessions::EndReason;
use crate::sessions::refresh_tokens::{self, RotateError};
use crate::state::AppState;
use crate::tokens::Grant;
use crate::users;

/// The same answer for an unknown, expired, reused or revoked refresh token.
pub const BAD_REFRESH_TOKEN: &str = "the refresh token is invalid, expired or already used";

/// A refresh, its parameters read and its client (if it sent credentials) authenticated.
#[derive(Debug)]
pub struct RefreshRequest<'a> {
    /// The `refresh_token` parameter.
    pub refresh_token: &'a str,
    /// The `scope` parameter; `None`: everything the session still allows.
    pub scope: Option<ScopeSet>,
    pub client: Option<Client>,
}

/// Rotates the refresh token and issues a new access token with it.
pub async fn grant(state: &AppState, request: RefreshRequest<'_>) -> Result<Issued, GrantError> {
    let RefreshRequest {
        refresh_token: presented,
        scope: requested,
        client,
    } = request;

    let now = db::now();
    let rotation = match refresh_tokens::begin_rotation(&state.pool, presented, now).await {
        Ok(rotation) => rotation,
        Err(RotateError::Invalid(why)) => {
            tracing::info!(why, "refresh token refused");
            return Err(GrantError::InvalidGrant(BAD_REFRESH_TOKEN));
        }
        Err(RotateError::Reused { session_id }) => {
            metrics::counter!("auth_refresh_reuse_total").increment(1);
            let ended = state
                .sessions
                .end(&session_id, EndReason::RefreshReuse)
                .await
                .map_err(GrantError::internal)?;
            tracing::warn!(
                sid = %session_id,
                ended,
                "an already-rotated refresh token was presented: its session is ended"
            );
            return Err(GrantError::InvalidGrant(BAD_REFRESH_TOKEN));
        }
        Err(RotateError::Lookup(e)) => return Err(GrantError::internal(e)),
    };
    // A token issued to an authenticated client is only refreshed by that client (RFC 6749 §6).
    // Refused before the commit, so the token stays usable by its client.
    if rotation.session.client_id.as_deref() != client.as_ref().map(|c| c.id.as_str()) {
        return Err(GrantError::InvalidGrant(
            "the refresh token was issued to another client",
        ));
    }
    // Never wider than the login granted, nor than what the user has now. `openid` grants no
    // access and no user holds it: once granted with a code it stays (RFC 6749 §6).
    let current = &rotation.user.scopes;
    let allowed = rotation.session.scope.as_ref().map_or_else(
        || current.clone(),
        |granted| granted.filter(|s| s == OPENID || current.contains(s)),
    );
    let scope = granted_scope(
        requested,
        allowed,
        "the requested scope exceeds the scope of the session",
    )?;
    let sid = rotation.session.id.clone();
    let rotation_changed_at = rotation.user.claims_changed_at;
    let grant = Grant {
        subject: rotation.user.id.clone(),
        scope,
        roles: rotation.user.roles.clone(),
        sid: Some(sid.clone()),
        client_id: rotation.session.client_id.clone(),
    };
    // The store is the authority on the session (with Redis, the SQL row does not know of its
    // end); the SQL store's answer is the row `begin_rotation` read in its transaction. Asked
    // before the commit, so that of two concurrent uses of one token the winner still gets its
    // tokens before the loser's reuse ends the session.
    if !state.sessions.sql_rows_are_authoritative() {
        let active = state
            .sessions
            .is_active(&sid)
            .await
            .map_err(GrantError::internal)?;
        if !active {
            tracing::info!("refresh token of an ended session refused");
            return Err(GrantError::InvalidGrant(BAD_REFRESH_TOKEN));
        }
    }
    // Signed after the commit: the rotation holds a write transaction (on SQLite, the
    // database's write lock) that every other refresh waits for.
    let refresh_token = rotation.commit().await.map_err(GrantError::internal)?;
    // After the commit: the wait (only in the second of a change) holds no lock.
    let now = users::issue_time_after_change(rotation_changed_at)
        .await
        .max(now);
    let access = state
        .tokens
        .issue(grant, now)
        .map_err(GrantError::internal)?;
    // The rotation is committed: the client must get its new token even if this fails.
    if let Err(error) = state.sessions.touch(&sid, now).await {
        tracing::warn!(%error, "cannot record the session's last refresh");
    }
    Ok(Issued {
        access,
        refresh_token: Some(refresh_token),
        id_token: None,
    })
}
