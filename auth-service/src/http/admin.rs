//! Administration: role `admin` and, in the same token, the scope of the resource
//! (`users:admin`, `keys:admin`). Roles go into a user's tokens whatever scope was asked for, so
//! the role alone would let a token its administrator narrowed (to `orders:read`, say) administer.
//!
//! | route | scope | does |
//! | --- | --- | --- |
//! | `GET /v1/admin/users` | `users:admin` | every user |
//! | `GET /v1/admin/users/{user_id}` | `users:admin` | one user |
//! | `POST /v1/admin/users` | `users:admin` | creates a user (201), 409 for a taken username |
//! | `PATCH /v1/admin/users/{user_id}` | `users:admin` | changes `roles`, `scopes`, `enabled` |
//! | `POST /v1/admin/users/{user_id}/disable`, `.../enable` | `users:admin` | (204) |
//! | `GET /v1/admin/keys` | `keys:admin` | the signing keys |
//! | `POST /v1/admin/keys/rotate[?immediate=true][&alg=ES256]` | `keys:admin` | starts a rotation |
//! | `POST /v1/admin/keys/{kid}/revoke` | `keys:admin` | revokes a key |
//!
//! Bodies are JSON objects; unknown members, a role or scope that is not well-formed, more roles
//! or scopes than a token may carry ([`crate::scope::check_grants`]), a missing member answer
//! 400 `invalid_request` with what is wrong. A change of roles or scopes makes the
//! verifiers refuse the user's older tokens as stale ([`accounts::change_user`]).

use authn::{Principal, Role, Scope};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, no_store};
use crate::accounts::{self, GrantChange};
use crate::keys::{KeyListing, KeyStoreError, Outcome};
use crate::scope::{self, ScopeSet};
use crate::state::AppState;
use crate::users::{self, CreateUserError, NewUser, User};

/// Longest user id looked up; ours are 36-character UUIDs.
const MAX_USER_ID_LEN: usize = 128;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/users", get(list_users).post(create_user))
        .route(
            "/v1/admin/users/{user_id}",
            get(get_user).patch(update_user),
        )
        .route("/v1/admin/users/{user_id}/disable", post(disable))
        .route("/v1/admin/users/{user_id}/enable", post(enable))
        .route("/v1/admin/keys", get(list_keys))
        .route("/v1/admin/keys/rotate", post(rotate_keys))
        .route("/v1/admin/keys/{kid}/revoke", post(revoke_key))
}

/// Role `admin` and `scope` (403 `forbidden` without the role, 403 `insufficient_scope`
/// without the scope).
pub(super) fn require_admin(principal: &Principal, scope: Scope) -> Result<(), ApiError> {
    if !principal.is(Role::Admin) {
        return Err(ApiError::Forbidden("role admin is required"));
    }
    principal.require(scope)?;
    Ok(())
}

/// A user as the admin API shows it.
#[derive(Debug, Serialize)]
struct UserView {
    id: String,
    username: String,
    roles: Vec<String>,
    /// Space separated, like the `scope` claim.
    scopes: String,
    enabled: bool,
    created_at: i64,
    /// When the roles or scopes last changed; absent if never.
    #[serde(skip_serializing_if = "Option::is_none")]
    claims_changed_at: Option<i64>,
}

impl From<User> for UserView {
    fn from(user: User) -> Self {
        Self {
            enabled: !user.is_disabled(),
            id: user.id,
            username: user.username,
            roles: user.roles,
            scopes: user.scopes.to_string(),
            created_at: user.created_at,
            claims_changed_at: user.claims_changed_at,
        }
    }
}

/// A JSON body, or 400 `invalid_request` saying what is wrong with it.
fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(body)| body)
        .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
}

/// Role names, each well-formed (1-64 characters of `[A-Za-z0-9._:-]`), sorted and
/// de-duplicated.
fn parse_role_list(roles: &[String]) -> Result<Vec<String>, ApiError> {
    let invalid = || ApiError::BadRequest(scope::InvalidRoles.to_string());
    for role in roles {
        if scope::parse_roles(role).map_err(|_| invalid())? != [role.as_str()] {
            return Err(invalid());
        }
    }
    scope::parse_roles(&roles.join(",")).map_err(|_| invalid())
}

fn parse_scopes(scopes: &str) -> Result<ScopeSet, ApiError> {
    ScopeSet::parse(scopes).map_err(|e| ApiError::BadRequest(e.to_string()))
}

async fn find_user(state: &AppState, user_id: &str) -> Result<User, ApiError> {
    if user_id.len() > MAX_USER_ID_LEN {
        return Err(NO_SUCH_USER);
    }
    users::find_by_id(&state.pool, user_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or(NO_SUCH_USER)
}

/// Every user, by username (200).
#[tracing::instrument(name = "admin.list_users", skip_all, fields(admin = principal.sub()))]
async fn list_users(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    require_admin(&principal, Scope::UsersAdmin)?;
    let users = users::list(&state.pool).await.map_err(ApiError::internal)?;
    Ok(json_no_store(
        users.into_iter().map(UserView::from).collect::<Vec<_>>(),
    ))
}

/// One user (200), 404 for an unknown id.
#[tracing::instrument(name = "admin.get_user", skip_all, fields(admin = principal.sub()))]
async fn get_user(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&principal, Scope::UsersAdmin)?;
    Ok(json_no_store(UserView::from(
        find_user(&state, &user_id).await?,
    )))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    username: String,
    password: String,
    #[serde(default = "default_roles")]
    roles: Vec<String>,
    #[serde(default)]
    scopes: String,
}

fn default_roles() -> Vec<String> {
    vec!["user".to_owned()]
}

/// Creates a user (201, `Location` the user's URL): 400 for a malformed username, role or
/// scope or a password of the wrong length, 409 when the username is taken.
#[tracing::instrument(name = "admin.create_user", skip_all, fields(admin = principal.sub()))]
async fn create_user(
    State(state): State<AppState>,
    principal: Principal,
    body: Result<Json<CreateUser>, JsonRejection>,
) -> Result<Response, ApiError> {
    require_admin(&principal, Scope::UsersAdmin)?;
    let body = json_body(body)?;
    let roles = parse_role_list(&body.roles)?;
    let scopes = parse_scopes(&body.scopes)?;
    let user = users::create(
        &state.pool,
        &state.passwords,
        NewUser {
            username: body.username,
            password: body.password.into(),
            roles,
            scopes,
        },
    )
    .await
    .map_err(|error| match error {
        CreateUserError::InvalidUsername(_)
        | CreateUserError::WeakPassword
        | CreateUserError::TooManyGrants(_) => ApiError::BadRequest(error.to_string()),
        CreateUserError::Duplicate(_) => {
            ApiError::Conflict("a user with this username already exists")
        }
        other => ApiError::internal(other),
    })?;
    tracing::info!(audit = "user_created", user_id = %user.id, "user created");
    let location = format!("/v1/admin/users/{}", user.id);
    let mut response = (StatusCode::CREATED, Json(UserView::from(user))).into_response();
    if let Ok(location) = header::HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    no_store(&mut response);
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateUser {
    roles: Option<Vec<String>>,
    scopes: Option<String>,
    enabled: Option<bool>,
}

/// Changes a user (200, the user as it is now): `roles` and `scopes` replace the current ones
/// (the user's older tokens are then refused as stale, its sessions stay); `enabled: false`
/// disables it (its sessions end), `true` enables it. 400 for a body without any of them.
#[tracing::instrument(name = "admin.update_user", skip_all, fields(admin = principal.sub()))]
async fn update_user(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<String>,
    body: Result<Json<UpdateUser>, JsonRejection>,
) -> Result<Response, ApiError> {
    require_admin(&principal, Scope::UsersAdmin)?;
    let body = json_body(body)?;
    if body.roles.is_none() && body.scopes.is_none() && body.enabled.is_none() {
        return Err(ApiError::BadRequest(
            "nothing to change: give roles, scopes or enabled".to_owned(),
        ));
    }
    let change = GrantChange {
        roles: body.roles.as_deref().map(parse_role_list).transpose()?,
        scopes: body.scopes.as_deref().map(parse_scopes).transpose()?,
    };
    find_user(&state, &user_id).await?;
    if change != GrantChange::default() {
        accounts::change_user(
            &state.pool,
            state.sessions.as_ref(),
            &state.revocations,
            &user_id,
            change,
        )
        .await
        .map_err(|error| match error {
            accounts::AccountError::TooManyGrants(error) => ApiError::BadRequest(error.to_string()),
            other => ApiError::internal(other),
        })?
        .ok_or(NO_SUCH_USER)?;
    }
    match body.enabled {
        Some(false) => {
            accounts::disable_user(
                &state.pool,
                state.sessions.as_ref(),
                &state.revocations,
                &user_id,
            )
            .await
            .map_err(ApiError::internal)?
            .ok_or(NO_SUCH_USER)?;
        }
        Some(true) => {
            accounts::enable_user(&state.pool, &user_id)
                .await
                .map_err(ApiError::internal)?;
        }
        None => {}
    }
    Ok(json_no_store(UserView::from(
        find_user(&state, &user_id).await?,
    )))
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
    require_admin(&principal, Scope::UsersAdmin)?;
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
    require_admin(&principal, Scope::UsersAdmin)?;
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
        error @ KeyStoreError::NextKeyAlgorithm { .. } => ApiError::BadRequest(error.to_string()),
        other => ApiError::internal(other),
    }
}

/// The signing keys, their states and the schedule (200).
#[tracing::instrument(name = "admin.list_keys", skip_all, fields(admin = principal.sub()))]
async fn list_keys(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    require_admin(&principal, Scope::KeysAdmin)?;
    // Show what the store holds now, not this replica's view of up to one reload ago.
    state.keys.reload().await.map_err(key_error)?;
    Ok(json_no_store(
        KeyListing::load(&state.keys).await.map_err(key_error)?,
    ))
}

#[derive(Debug, Deserialize)]
struct RotateQuery {
    #[serde(default)]
    immediate: bool,
    /// The new key's algorithm (`RS256`, `ES256`, `EdDSA`); default `AUTH_SIGNING_ALG`.
    #[serde(default)]
    alg: Option<String>,
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
    require_admin(&principal, Scope::KeysAdmin)?;
    let alg = query
        .alg
        .as_deref()
        .map(str::parse::<authn::jwk::Algorithm>)
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let outcome = state
        .keys
        .rotate_as(crate::db::now(), query.immediate, alg)
        .await
        .map_err(key_error)?;
    tracing::info!(immediate = query.immediate, created = ?outcome.created, activated = ?outcome.activated, "key rotation requested");
    Ok(json_no_store(Changed {
        outcome,
        listing: KeyListing::load(&state.keys).await.map_err(key_error)?,
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
    require_admin(&principal, Scope::KeysAdmin)?;
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
        listing: KeyListing::load(&state.keys).await.map_err(key_error)?,
    }))
}
