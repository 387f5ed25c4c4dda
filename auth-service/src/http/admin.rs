//! Administration (role `admin`): `POST /v1/admin/users/{user_id}/disable` and `.../enable`.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use shared::{Principal, Role};

use super::error::{ApiError, no_store};
use crate::accounts;
use crate::app::AppState;

/// Longest user id looked up; ours are 36-character UUIDs.
const MAX_USER_ID_LEN: usize = 128;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/users/{user_id}/disable", post(disable))
        .route("/v1/admin/users/{user_id}/enable", post(enable))
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
