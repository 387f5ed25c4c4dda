//! The `password` grant: a user's login. Throttled per account and client address before the
//! password is checked ([`crate::throttle`]), and before the client's credentials too
//! ([`reserve`]): a throttled login costs no Argon2 run at all. A success starts a session (its
//! family row and first refresh token, then the session store) under the per-user session cap.

use std::net::IpAddr;

use super::{GrantError, Issued};
use crate::clients::Client;
use crate::passwords::{Priority, SecretString};
use crate::scope::ScopeSet;
pub use crate::sessions::ClientMeta;
use crate::sessions::{self, EndReason, NewSession, Session};
use crate::state::AppState;
use crate::throttle::Attempt;
use crate::tokens::Grant;
use crate::users::{self, Login, User};

/// The same answer for an unknown user, a wrong password and a disabled account.
pub const BAD_CREDENTIALS: &str = "invalid username or password";

/// Reserves a check of `username`'s password from `client_ip` with the login throttle, or
/// refuses it unchecked. The first step of a login, before its client (if any) is
/// authenticated: a throttled login then costs no Argon2 run, neither for the password nor for
/// the client secret, and is answered alike for every username, existing or not. Sound because
/// the answer does not depend on the client: a first-party login (no client) gets the same.
pub async fn reserve(
    state: &AppState,
    username: &str,
    client_ip: Option<IpAddr>,
) -> Result<Attempt, GrantError> {
    state
        .login_throttle
        .begin(username, client_ip)
        .await
        .map_err(|refused| GrantError::LoginThrottled {
            retry_after: refused.retry_after,
        })
}

/// A password login, its parameters read, its check reserved ([`reserve`]) and its client (if
/// it sent credentials) authenticated.
#[derive(Debug)]
pub struct PasswordRequest<'a> {
    pub username: &'a str,
    pub password: SecretString,
    /// The `scope` parameter; `None`: everything the user has, now and at every refresh.
    pub scope: Option<ScopeSet>,
    pub client: Option<Client>,
    /// The client's address as the throttle counts it (`None`: unknown, not counted).
    pub client_ip: Option<IpAddr>,
    pub meta: ClientMeta,
    /// The check reserved by [`reserve`].
    pub attempt: Attempt,
}

/// Checks the password (unless the throttle refuses the attempt unchecked), starts a session
/// and issues its first access and refresh tokens.
pub async fn grant(state: &AppState, request: PasswordRequest<'_>) -> Result<Issued, GrantError> {
    let PasswordRequest {
        username,
        password,
        scope: requested,
        client,
        client_ip,
        meta,
        attempt,
    } = request;

    let user = check_password(state, username, &password, client_ip, attempt).await?;

    // No `scope`: everything the user has, now and at every refresh (stored as NULL).
    let (scope, session_scope) = match requested {
        Some(requested) if requested.is_subset(&user.scopes) => {
            (requested.clone(), Some(requested))
        }
        Some(_) => {
            return Err(GrantError::InvalidScope(
                "the requested scope exceeds the scopes of the user",
            ));
        }
        None => (user.scopes.clone(), None),
    };

    let now = users::issue_time_after_change(user.claims_changed_at).await;
    let client_id = client.map(|c| c.id);
    let session = sessions::new_session(
        NewSession {
            user_id: user.id.clone(),
            client_id: client_id.clone(),
            scope: session_scope,
            user_agent: meta.user_agent,
            ip: meta.ip,
            lifetime_secs: state.session_ttl_secs,
        },
        now,
    );
    let refresh_token = start_session(state, &session, now).await?;
    let access = state
        .tokens
        .issue(
            Grant {
                subject: user.id,
                scope,
                roles: user.roles,
                sid: Some(session.id),
                client_id,
            },
            now,
        )
        .map_err(GrantError::internal)?;
    Ok(Issued {
        access,
        refresh_token: Some(refresh_token),
        id_token: None,
    })
}

/// Checks `username`'s password under the check `attempt` reserved by [`reserve`] (unless the
/// throttle refuses it unchecked), records the outcome with the login throttle, and logs the
/// locks it starts: the one password check of the `password` grant and of the hosted sign-in
/// page alike. An unknown user, a wrong password and a disabled account answer the same.
pub async fn check_password(
    state: &AppState,
    username: &str,
    password: &SecretString,
    client_ip: Option<IpAddr>,
    attempt: Attempt,
) -> Result<User, GrantError> {
    // An error here drops `attempt`: counted neither as a failure nor as a success.
    let priority = if attempt.is_suspect() {
        Priority::Suspect
    } else {
        Priority::Clean
    };
    let user =
        match users::authenticate(&state.pool, &state.passwords, username, password, priority)
            .await
            .map_err(GrantError::lookup)
            .inspect_err(|error| {
                if matches!(error, GrantError::Busy) {
                    state
                        .login_throttle
                        .shed(client_ip, crate::passwords::BUSY_RETRY_AFTER);
                }
            })? {
            Login::Valid(user) => {
                state
                    .login_throttle
                    .succeeded(username, client_ip, attempt)
                    .await;
                user
            }
            Login::Disabled(user) => {
                tracing::info!(user_id = %user.id, "login of a disabled user refused");
                login_failed(state, attempt, username).await;
                return Err(GrantError::InvalidGrant(BAD_CREDENTIALS));
            }
            Login::Invalid => {
                login_failed(state, attempt, username).await;
                return Err(GrantError::InvalidGrant(BAD_CREDENTIALS));
            }
        };
    Ok(user)
}

/// Records a failed password check with the throttle. A lock it starts is an audit event: the
/// account is named by its user id like in every other log line (never by the username, which
/// may be a mistyped password), and only if such a user exists; the address is the client's.
async fn login_failed(state: &AppState, attempt: Attempt, username: &str) {
    let locked = attempt.failed().await;
    if let Some((_, failures)) = locked.subject {
        // Looked up for unknown usernames too, so a lock takes as long either way.
        let user_id = users::find_by_username(&state.pool, username)
            .await
            .ok()
            .flatten()
            .map(|user| user.id);
        tracing::warn!(
            audit = "login_locked",
            scope = "account",
            user_id = user_id.as_deref(),
            failures,
            locked_for = ?locked.duration,
            "password logins of an account locked after repeated failures"
        );
    }
    if let Some((client_ip, failures)) = locked.address {
        tracing::warn!(
            audit = "login_locked",
            scope = "address",
            %client_ip,
            failures,
            locked_for = ?locked.duration,
            "password logins from a client address locked after repeated failures"
        );
    }
}

/// Records the session of a login (family row and first refresh token, then the store), applies
/// the per-user session cap, and returns the refresh token.
pub(crate) async fn start_session(
    state: &AppState,
    session: &Session,
    now: i64,
) -> Result<String, GrantError> {
    let refresh_token = sessions::create_family(&state.pool, session, now)
        .await
        .map_err(GrantError::internal)?;
    state
        .sessions
        .create(session)
        .await
        .map_err(GrantError::internal)?;
    // Disabling a user marks it disabled, then ends its sessions. A login whose password check
    // ran before the mark may have created its session after the sessions were ended: looking
    // again now closes that window.
    let user = users::find_by_id(&state.pool, &session.user_id)
        .await
        .map_err(GrantError::internal)?;
    if user.is_none_or(|user| user.is_disabled()) {
        state
            .sessions
            .end(&session.id, EndReason::UserDisabled)
            .await
            .map_err(GrantError::internal)?;
        return Err(GrantError::InvalidGrant(BAD_CREDENTIALS));
    }
    if let Err(error) = sessions::enforce_cap(
        state.sessions.as_ref(),
        &session.user_id,
        state.max_sessions_per_user,
        &session.id,
    )
    .await
    {
        // The login stands; the cap is enforced again at the user's next login.
        tracing::warn!(%error, "cannot apply the per-user session cap");
    }
    Ok(refresh_token)
}
