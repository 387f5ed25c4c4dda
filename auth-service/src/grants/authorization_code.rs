//! The `authorization_code` grant (RFC 6749 §4.1.3, RFC 7636 §4.6): redeems a code issued by
//! `/oauth/authorize` ([`crate::oidc::codes`]). The code is claimed first (single use), then
//! checked against the client that presents it, the exact redirect URI, the PKCE verifier and
//! the browser session that approved it (still open); any mismatch burns it. A second
//! presentation of a used code is refused and ends the session its first redemption started. A
//! success starts a session like a password login (a refresh family, the per-user cap), recorded
//! with the device of the browser that signed in (not of the backend redeeming the code), and
//! with the `openid` scope adds an ID token.

use super::{GrantError, Issued};
use crate::clients::Client;
use crate::crypto;
use crate::db;
use crate::oidc::browser;
use crate::oidc::codes::{self, Redemption};
use crate::oidc::id_token::{self, IdTokenClaims};
use crate::oidc::{OPENID, pkce};
use crate::sessions::{self, EndReason, NewSession};
use crate::state::AppState;
use crate::tokens::Grant;
use crate::users;

use super::password::start_session;

/// One description for every refused code, whatever the reason: the caller learns nothing
/// about codes it does not hold.
pub const INVALID_CODE: &str = "the authorization code is invalid, expired, used or not yours";

/// A code presented at the token endpoint, its client authenticated (or identified, if public).
#[derive(Debug)]
pub struct CodeRequest<'a> {
    pub code: &'a str,
    pub redirect_uri: &'a str,
    pub code_verifier: &'a str,
    pub client: Client,
}

pub async fn grant(state: &AppState, request: CodeRequest<'_>) -> Result<Issued, GrantError> {
    let CodeRequest {
        code,
        redirect_uri,
        code_verifier,
        client,
    } = request;
    let now = db::now();
    // The session's id is chosen before the code is claimed, and recorded with the claim: a
    // replay racing this redemption still learns which session to end.
    let session_id = crypto::random_id();
    let claimed = match codes::redeem(&state.pool, code, &session_id, now)
        .await
        .map_err(GrantError::internal)?
    {
        Redemption::Claimed(claimed) => claimed,
        Redemption::Replayed { session_id } => {
            tracing::warn!(
                audit = "code_replay",
                client_id = %client.id,
                session_id = session_id.as_deref(),
                "an authorization code was presented again: its session ends"
            );
            if let Some(sid) = session_id {
                state
                    .sessions
                    .end(&sid, EndReason::CodeReplay)
                    .await
                    .map_err(GrantError::internal)?;
            }
            return Err(GrantError::InvalidGrant(INVALID_CODE));
        }
        Redemption::Invalid => return Err(GrantError::InvalidGrant(INVALID_CODE)),
    };
    if claimed.client_id != client.id
        || claimed.redirect_uri != redirect_uri
        || !pkce::verify_s256(&claimed.code_challenge, code_verifier)
    {
        return Err(GrantError::InvalidGrant(INVALID_CODE));
    }
    // The browser session that approved the code must still be open: signing out at the issuer
    // (RP-initiated logout) within the code's minute kills its codes too.
    if !browser::is_live(&state.pool, &claimed.browser_session, now)
        .await
        .map_err(GrantError::internal)?
    {
        return Err(GrantError::InvalidGrant(INVALID_CODE));
    }
    let user = users::find_by_id(&state.pool, &claimed.user_id)
        .await
        .map_err(GrantError::internal)?
        .filter(|user| !user.is_disabled())
        .ok_or(GrantError::InvalidGrant(INVALID_CODE))?;
    // What the user has now: an administrator may have changed it since the code was issued.
    let scope = claimed
        .scope
        .filter(|s| s == OPENID || user.scopes.contains(s));
    // After the user's last change, or the verifiers would refuse the new token as stale.
    let issued_at = users::issue_time_after_change(user.claims_changed_at)
        .await
        .max(now);

    let mut session = sessions::new_session(
        NewSession {
            user_id: user.id.clone(),
            client_id: Some(client.id.clone()),
            scope: Some(scope.clone()),
            user_agent: claimed.device.user_agent.clone(),
            ip: claimed.device.ip.clone(),
            lifetime_secs: state.session_ttl_secs,
        },
        now,
    );
    session.id = session_id;
    let refresh_token = start_session(state, &session, now).await?;
    let access = state
        .tokens
        .issue(
            Grant {
                subject: user.id.clone(),
                scope: scope.clone(),
                roles: user.roles,
                sid: Some(session.id.clone()),
                client_id: Some(client.id.clone()),
            },
            issued_at,
        )
        .map_err(GrantError::internal)?;
    let id_token = if scope.contains(OPENID) {
        let claims = IdTokenClaims {
            iss: state.tokens.issuer().to_owned(),
            sub: user.id,
            aud: client.id,
            exp: access.claims.exp,
            iat: issued_at,
            auth_time: claimed.auth_time,
            nonce: claimed.nonce,
            at_hash: id_token::at_hash(&access.token),
            sid: session.id,
        };
        Some(id_token::sign(&state.tokens.signer(), &claims).map_err(GrantError::internal)?)
    } else {
        None
    };
    Ok(Issued {
        access,
        refresh_token: Some(refresh_token),
        id_token,
    })
}
