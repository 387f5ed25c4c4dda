//! `GET|POST /oauth/logout`: RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0), the
//! `end_session_endpoint` of discovery.
//!
//! With a valid `id_token_hint` (an ID token of this issuer, expired or not), the token session
//! it names (`sid`) ends, pushed to the verifiers like any logout, and so does this browser's
//! issuer session (its `__Host-auth_session` cookie is cleared). Without one nothing ends: a
//! cross-site link must not be able to sign anyone out. `post_logout_redirect_uri` is followed
//! only if it is byte for byte one the client registered (the client named by `client_id` or
//! the hint's audience, which must agree); `state` is passed back. Anything else gets an HTML
//! page, never a redirect.

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header::{LOCATION, SET_COOKIE};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::authorize::cookie;
use super::error::no_store;
use super::form::{self, Form};
use super::html;
use crate::clients;
use crate::db;
use crate::oidc::{browser, id_token};
use crate::sessions::EndReason;
use crate::state::AppState;

pub const END_SESSION_PATH: &str = "/oauth/logout";

pub fn router() -> Router<AppState> {
    Router::new().route(END_SESSION_PATH, get(end_session).post(end_session))
}

#[tracing::instrument(name = "oidc.end_session", skip_all)]
async fn end_session(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let params = if parts.method == http::Method::POST {
        if !form::is_form_content_type(&parts.headers) {
            return html::error_page(
                StatusCode::BAD_REQUEST,
                "The logout request was not a form.",
            );
        }
        match axum::body::to_bytes(body, super::oauth::TOKEN_BODY_LIMIT).await {
            Ok(body) => Form::parse(&body),
            Err(_) => {
                return html::error_page(
                    StatusCode::BAD_REQUEST,
                    "The logout request is unreadable.",
                );
            }
        }
    } else {
        Form::parse(parts.uri.query().unwrap_or("").as_bytes())
    };
    let Ok(params) = params else {
        return html::error_page(
            StatusCode::BAD_REQUEST,
            "The logout request's parameters are malformed or repeated.",
        );
    };
    match handle(&state, &parts.headers, &params).await {
        Ok(response) | Err(response) => response,
    }
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    params: &Form,
) -> Result<Response, Response> {
    let bad = |message: &str| html::error_page(StatusCode::BAD_REQUEST, message);
    let hint = match params.get("id_token_hint") {
        None => None,
        Some(token) => Some(
            id_token::verify_hint(&state.keys.local_keys().get(), state.tokens.issuer(), token)
                .ok_or_else(|| bad("The id_token_hint is not an ID token of this issuer."))?,
        ),
    };
    let client_id = match (params.get("client_id"), &hint) {
        (Some(id), Some(hint)) if id != hint.aud => {
            return Err(bad("client_id is not the audience of the id_token_hint."));
        }
        (Some(id), _) => Some(id.to_owned()),
        (None, Some(hint)) => Some(hint.aud.clone()),
        (None, None) => None,
    };
    let redirect_to = match params.get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => {
            let client = match client_id
                .as_deref()
                .filter(|id| clients::validate_client_id(id))
            {
                Some(id) => state.clients.find(id).await.map_err(|error| {
                    tracing::error!(%error, "client lookup failed");
                    html::error_page(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "The server could not handle the request.",
                    )
                })?,
                None => None,
            };
            match client {
                Some(client) if client.has_post_logout_redirect_uri(uri) => Some(uri.to_owned()),
                _ => {
                    return Err(bad(
                        "The post_logout_redirect_uri is not registered for this client.",
                    ));
                }
            }
        }
    };

    let mut clear_cookie = None;
    if let Some(hint) = &hint {
        let now = db::now();
        if let Some(sid) = &hint.sid {
            let ended = state.sessions.end(sid, EndReason::Logout).await;
            if let Err(error) = ended {
                tracing::error!(%error, "cannot end the session of an RP-initiated logout");
                return Err(html::error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The sign-out could not be completed. Try again.",
                ));
            }
        }
        if let Some(token) = cookie(headers, browser::COOKIE) {
            if let Ok(Some(session)) = browser::find(&state.pool, token, now).await
                && let Err(error) = browser::end(&state.pool, &session.token_hash, now).await
            {
                tracing::error!(%error, "cannot end the browser session");
            }
            clear_cookie = Some(HeaderValue::from_static(
                "__Host-auth_session=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0",
            ));
        }
    }

    let mut response = match redirect_to {
        Some(uri) => {
            let Ok(mut url) = url::Url::parse(&uri) else {
                return Err(bad("The post_logout_redirect_uri is unusable."));
            };
            if let Some(value) = params.get("state") {
                url.query_pairs_mut().append_pair("state", value);
            }
            let Ok(location) = HeaderValue::try_from(url.as_str()) else {
                return Err(bad("The post_logout_redirect_uri is unusable."));
            };
            let mut response = (StatusCode::FOUND, [(LOCATION, location)]).into_response();
            no_store(&mut response);
            response
        }
        None => html::page(
            StatusCode::OK,
            if hint.is_some() {
                "Signed out"
            } else {
                "Not signed out"
            },
            if hint.is_some() {
                "<p>You are signed out. You can close this window.</p>"
            } else {
                "<p>Nothing was ended: the request did not say which sign-in to end.</p>"
            },
        ),
    };
    if let Some(cookie) = clear_cookie {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    Ok(response)
}
