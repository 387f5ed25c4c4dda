//! Administration (role `admin`): `POST /v1/admin/users/{user_id}/disable` and `.../enable`;
//! the signing keys: `GET /v1/admin/keys`, `POST /v1/admin/keys/rotate[?immediate=true]`,
//! `POST /v1/admin/keys/{kid}/revoke`.

use authn::{Principal, Role};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, no_store};
use crate::accounts;
use crate::keys::{KeyListing, KeyStoreError, Outcome};
use crate::state::AppState;

/// Longest user id looked up; ours are 36-character UUIDs.
const MAX_USER_ID_LEN: usize = 128;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/users/{user_id}/disable", post(disable))
        .route("/v1/admin/users/{user_id}/enable", post(enable))
        .route("/v1/admin/keys", get(list_keys))
        .route("/v1/admin/keys/rotate", post(rotate_keys))
        .route("/v1/admin/keys/{kid}/revoke", post(revoke_key))
}

fn require_admin(principal: &Principal) -> Result<(), ApiError> {
    if principal.is(Role::Admin) {
        Ok(())
    } else {
        Err(ApiError::Forbidden("role admin is required"))
    }
}

const NO_SUCH_USER: ApiError = ApiError::NotFound("no such user");

fn no_content() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    no_store(&mut response);
    response
}

/// Disables the user: refuses its logins and refreshes and ends every session (204).
#[tracing::instrument(name = "admin.disable_user", skip_all, fields(admin = principal.sub()))]
async fn disable(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&principal)?;
    if user_id.len() > MAX_USER_ID_LEN {
        return Err(NO_SUCH_USER);
    }
    accounts::disable_user(
        &state.pool,
        state.sessions.as_ref(),
        &state.revocations,
        &user_id,
    )
    .await
    .map_err(ApiError::internal)?
    .ok_or(NO_SUCH_USER)?;
    Ok(no_content())
}

/// Lets the user log in again (204). Its old sessions stay ended.
#[tracing::instrument(name = "admin.enable_user", skip_all, fields(admin = principal.sub()))]
async fn enable(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&principal)?;
    if user_id.len() > MAX_USER_ID_LEN {
        return Err(NO_SUCH_USER);
    }
    if accounts::enable_user(&state.pool, &user_id)
        .await
        .map_err(ApiError::internal)?
    {
        Ok(no_content())
    } else {
        Err(NO_SUCH_USER)
    }
}

/// What a rotation or a revocation did, and the key set after it.
#[derive(Debug, Serialize)]
struct Changed {
    #[serde(flatten)]
    outcome: Outcome,
    #[serde(flatten)]
    listing: KeyListing,
}

fn json_no_store(body: impl Serialize) -> Response {
    let mut response = Json(body).into_response();
    no_store(&mut response);
    response
}

fn key_error(error: KeyStoreError) -> ApiError {
    match error {
        KeyStoreError::UnknownKey => ApiError::NotFound("no such key"),
        KeyStoreError::ReadOnly => ApiError::Conflict(
            "the signing keys are mounted read-only: rotate them by replacing the files",
        ),
        other => ApiError::internal(other),
    }
}

/// The signing keys, their states and the schedule (200).
#[tracing::instrument(name = "admin.list_keys", skip_all, fields(admin = principal.sub()))]
async fn list_keys(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    require_admin(&principal)?;
    // Show what the store holds now, not this replica's view of up to one reload ago.
    state.keys.reload().await.map_err(key_error)?;
    Ok(json_no_store(KeyListing::of(&state.keys)))
}

#[derive(Debug, Deserialize)]
struct RotateQuery {
    #[serde(default)]
    immediate: bool,
}

/// Starts a rotation (200): the next key signs after the pre-publication window, or at once
/// with `?immediate=true`, which breaks verifiers that have not refetched the JWKS yet until
/// they do (an unknown `kid` makes them refetch, at most once per their minimum interval).
#[tracing::instrument(name = "admin.rotate_keys", skip_all, fields(admin = principal.sub()))]
async fn rotate_keys(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<RotateQuery>,
) -> Result<Response, ApiError> {
    require_admin(&principal)?;
    let outcome = state
        .keys
        .rotate(crate::db::now(), query.immediate)
        .await
        .map_err(key_error)?;
    tracing::info!(immediate = query.immediate, created = ?outcome.created, activated = ?outcome.activated, "key rotation requested");
    Ok(json_no_store(Changed {
        outcome,
        listing: KeyListing::of(&state.keys),
    }))
}

/// Revokes a key (200): withdrawn from the JWKS at once, a `KeyRevoked` event for `hybrid`
/// verifiers; the active key is replaced by an immediate rotation first. 404 for an unknown
/// key (or one already removed).
#[tracing::instrument(name = "admin.revoke_key", skip_all, fields(admin = principal.sub(), kid))]
async fn revoke_key(
    State(state): State<AppState>,
    principal: Principal,
    Path(kid): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&principal)?;
    if kid.len() > authn::jws::MAX_KID_LEN {
        return Err(ApiError::NotFound("no such key"));
    }
    tracing::Span::current().record("kid", kid.as_str());
    let outcome = state
        .keys
        .revoke(&kid, crate::db::now())
        .await
        .map_err(key_error)?;
    tracing::warn!(kid, replacement = ?outcome.activated.first(), "signing key revoked");
    Ok(json_no_store(Changed {
        outcome,
        listing: KeyListing::of(&state.keys),
    }))
}
