//! The `client_credentials` grant: a service token for an authenticated client, with the
//! client's own scopes and roles and no session.

use super::{GrantError, Issued, granted_scope};
use crate::clients::Client;
use crate::db;
use crate::scope::ScopeSet;
use crate::state::AppState;
use crate::tokens::Grant;

/// Issues a service token to `client` (authenticated) for `requested` (`None`: all of the
/// client's scopes).
pub fn grant(
    state: &AppState,
    client: Client,
    requested: Option<ScopeSet>,
) -> Result<Issued, GrantError> {
    let scope = granted_scope(
        requested,
        client.scopes.clone(),
        "the requested scope exceeds the scopes of the client",
    )?;
    let access = state
        .tokens
        .issue(
            Grant {
                subject: client.id.clone(),
                scope,
                roles: client.roles,
                sid: None,
                client_id: Some(client.id),
            },
            db::now(),
        )
        .map_err(GrantError::internal)?;
    Ok(Issued {
        access,
        refresh_token: None,
        id_token: None,
    })
}
