//! `GET /oauth/authorize` and the hosted sign-in page it shows, posting back to
//! `POST /oauth/authorize` (the authorization code flow, RFC 6749 §4.1, with PKCE and the
//! OpenID Connect parameters).
//!
//! A request is checked in this order:
//!
//! 1. `client_id` and `redirect_uri`: an unknown client, a missing redirect URI or one that is not
//!    byte for byte one of the client's registered URIs is answered with an HTML error page,
//!    never with a redirect (RFC 6749 §4.1.2.1: no open redirector).
//! 2. Every other fault is sent back to the redirect URI with `error`, `error_description`,
//!    `state` (unchanged) and `iss` (RFC 9207): `response_type` must be `code`; PKCE is
//!    required of every client, with `code_challenge_method=S256`; `scope` must be within the
//!    client's registered scopes.
//! 3. The browser's issuer session (the `__Host-auth_session` cookie) answers at once with a
//!    code, unless `prompt=login`; without one, `prompt=none` answers `login_required`, anything
//!    else gets the sign-in form.
//!
//! The sign-in form carries the request in hidden fields and a CSRF token (double submit: the
//! same random value in the `__Host-auth_csrf` cookie, which no other site and no sibling
//! subdomain can set, and in the form). Its password check is the `password` grant's
//! ([`grants::password::check_password`]): the same throttle, the same answer for an unknown
//! user and a wrong password, the same audit lines. The clients are first-party: no consent
//! screen.

use std::net::IpAddr;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header::{COOKIE, LOCATION, RETRY_AFTER, SET_COOKIE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode};

use super::error::no_store;
use super::form::{self, Form};
use super::html::{self, escape};
use crate::clients::{self, Client};
use crate::crypto;
use crate::db;
use crate::grants::{self, GrantError};
use crate::oidc::browser::{self, BrowserSession};
use crate::oidc::codes::{self, CodeGrant};
use crate::oidc::{OPENID, pkce};
use crate::passwords::SecretString;
use crate::scope::ScopeSet;
use crate::sessions::ClientMeta;
use crate::state::AppState;
use crate::users;

pub const AUTHORIZE_PATH: &str = "/oauth/authorize";
/// The CSRF cookie of the sign-in form.
pub const CSRF_COOKIE: &str = "__Host-auth_csrf";
/// The CSRF field of the sign-in form.
pub const CSRF_FIELD: &str = "csrf_token";
/// Longest `nonce` and `state` accepted.
const MAX_PARAM: usize = 1024;

/// The request parameters the sign-in form carries over to its POST.
const CARRIED: [&str; 8] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
];

pub fn router() -> Router<AppState> {
    Router::new().route(AUTHORIZE_PATH, get(authorize).post(sign_in))
}

/// A request that cannot be answered with a code.
enum Refusal {
    /// Shown in the browser, never redirected: the client or its redirect URI is not known.
    Page(StatusCode, &'static str),
    /// Sent back to the client's redirect URI.
    Redirect {
        to: Box<Target>,
        error: &'static str,
        description: &'static str,
    },
    /// Ours to log, a page with no detail.
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

/// Where the answers of a request go: the registered redirect URI it named, and its `state`.
#[derive(Debug, Clone)]
struct Target {
    redirect_uri: String,
    state: Option<String>,
}

/// A request that passed every check: what a code will stand for.
#[derive(Debug)]
struct Checked {
    client: Client,
    to: Target,
    nonce: Option<String>,
    code_challenge: String,
    scope: ScopeSet,
    prompt_login: bool,
    prompt_none: bool,
}

fn internal(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Refusal {
    Refusal::Internal(e.into())
}

/// Step 1 and 2 of the module doc.
async fn check(state: &AppState, params: &Form) -> Result<Checked, Refusal> {
    let client_id = params.get("client_id").ok_or(Refusal::Page(
        StatusCode::BAD_REQUEST,
        "The request names no client (client_id).",
    ))?;
    let unknown = Refusal::Page(
        StatusCode::BAD_REQUEST,
        "The request names an unknown client.",
    );
    if !clients::validate_client_id(client_id) {
        return Err(unknown);
    }
    let client = state
        .clients
        .find(client_id)
        .await
        .map_err(internal)?
        .ok_or(unknown)?;
    let redirect_uri = params.get("redirect_uri").ok_or(Refusal::Page(
        StatusCode::BAD_REQUEST,
        "The request has no redirect_uri.",
    ))?;
    if !client.has_redirect_uri(redirect_uri) {
        return Err(Refusal::Page(
            StatusCode::BAD_REQUEST,
            "The redirect_uri is not registered for this client.",
        ));
    }
    let to = Target {
        redirect_uri: redirect_uri.to_owned(),
        state: params.get("state").map(str::to_owned),
    };
    let refuse = |error, description| {
        Err(Refusal::Redirect {
            to: Box::new(to.clone()),
            error,
            description,
        })
    };
    if to.state.as_ref().is_some_and(|s| s.len() > MAX_PARAM) {
        return refuse("invalid_request", "state is too long");
    }
    match params.get("response_type") {
        Some("code") => {}
        Some(_) => {
            return refuse(
                "unsupported_response_type",
                "only response_type=code is supported",
            );
        }
        None => return refuse("invalid_request", "response_type is required"),
    }
    match params.get("code_challenge_method") {
        Some(pkce::S256) => {}
        Some(_) => return refuse("invalid_request", "code_challenge_method must be S256"),
        None => {
            return refuse(
                "invalid_request",
                "PKCE is required: code_challenge_method=S256",
            );
        }
    }
    let Some(code_challenge) = params
        .get("code_challenge")
        .filter(|c| pkce::is_valid_challenge(c))
    else {
        return refuse("invalid_request", "PKCE is required: a S256 code_challenge");
    };
    let nonce = params.get("nonce").map(str::to_owned);
    if nonce.as_ref().is_some_and(|n| n.len() > MAX_PARAM) {
        return refuse("invalid_request", "nonce is too long");
    }
    let scope = match params.get("scope").map(ScopeSet::parse) {
        None => client.scopes.clone(),
        Some(Err(_)) => return refuse("invalid_scope", "the scope parameter is malformed"),
        Some(Ok(scope)) if scope.is_subset(&client.scopes) => scope,
        Some(Ok(_)) => return refuse("invalid_scope", "the requested scope exceeds the client's"),
    };
    let prompt: Vec<&str> = params
        .get("prompt")
        .unwrap_or("")
        .split(' ')
        .filter(|p| !p.is_empty())
        .collect();
    let prompt_none = prompt.contains(&"none");
    if prompt_none && prompt.len() > 1 {
        return refuse(
            "invalid_request",
            "prompt=none cannot be combined with other values",
        );
    }
    Ok(Checked {
        client,
        to,
        nonce,
        code_challenge: code_challenge.to_owned(),
        scope,
        prompt_login: prompt.contains(&"login"),
        prompt_none,
    })
}

/// The answer to a refusal.
fn refused(state: &AppState, refusal: Refusal) -> Response {
    match refusal {
        Refusal::Page(status, message) => html::error_page(status, message),
        Refusal::Redirect {
            to,
            error,
            description,
        } => redirect(
            state,
            &to,
            &[("error", error), ("error_description", description)],
            StatusCode::FOUND,
        ),
        Refusal::Internal(error) => {
            tracing::error!(%error, "authorization request failed");
            html::error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The server could not handle the request.",
            )
        }
    }
}

/// A redirect to `to.redirect_uri` with `params`, then `state` (if the request had one) and
/// `iss`, added to its query.
fn redirect(
    state: &AppState,
    to: &Target,
    params: &[(&str, &str)],
    status: StatusCode,
) -> Response {
    // Registered URIs were parsed when they were registered: a failure here is a corrupt row.
    let Ok(mut url) = url::Url::parse(&to.redirect_uri) else {
        return html::error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The redirect URI is unusable.",
        );
    };
    {
        let mut query = url.query_pairs_mut();
        query.extend_pairs(params);
        if let Some(value) = &to.state {
            query.append_pair("state", value);
        }
        query.append_pair("iss", state.tokens.issuer());
    }
    match HeaderValue::try_from(url.as_str()) {
        Ok(location) => {
            let mut response = (status, [(LOCATION, location)]).into_response();
            no_store(&mut response);
            response
        }
        Err(_) => html::error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The redirect URI is unusable.",
        ),
    }
}

/// The value of the cookie `name` in the request's `Cookie` headers. Parsed by hand: the
/// workspace has no cookie crate, and this is a split on `;` and `=` (RFC 6265 §5.4).
pub(super) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// The `Set-Cookie` value of a `__Host-` cookie.
fn host_cookie(name: &str, value: &str, same_site: &str, max_age: Option<i64>) -> HeaderValue {
    let max_age = max_age
        .map(|secs| format!("; Max-Age={secs}"))
        .unwrap_or_default();
    HeaderValue::try_from(format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite={same_site}{max_age}"
    ))
    .expect("BUG: cookie names and base64url values are valid header values")
}

/// The browser's live issuer session, if its cookie names one.
async fn browser_session(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<BrowserSession>, Refusal> {
    let Some(token) = cookie(headers, browser::COOKIE) else {
        return Ok(None);
    };
    let now = db::now();
    let Some(session) = browser::find(&state.pool, token, now)
        .await
        .map_err(internal)?
    else {
        return Ok(None);
    };
    // One sign-in, one life: once any session this browser session started has ended (logged
    // out, ended from another device, a refresh token replayed), the browser signs in again
    // instead of being handed a new session silently.
    for sid in browser::started_sessions(&state.pool, &session.token_hash)
        .await
        .map_err(internal)?
    {
        if !state.sessions.is_active(&sid).await.map_err(internal)? {
            browser::end(&state.pool, &session.token_hash, now)
                .await
                .map_err(internal)?;
            return Ok(None);
        }
    }
    Ok(Some(session))
}

#[tracing::instrument(name = "oauth.authorize", skip_all)]
async fn authorize(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let params = match Form::parse(parts.uri.query().unwrap_or("").as_bytes()) {
        Ok(params) => params,
        Err(_) => {
            return html::error_page(
                StatusCode::BAD_REQUEST,
                "The request's parameters are malformed or repeated.",
            );
        }
    };
    match answer(&state, &parts, &params).await {
        Ok(response) | Err(response) => response,
    }
}

async fn answer(state: &AppState, parts: &Parts, params: &Form) -> Result<Response, Response> {
    let checked = check(state, params).await.map_err(|r| refused(state, r))?;
    let session = browser_session(state, &parts.headers)
        .await
        .map_err(|r| refused(state, r))?;
    match session {
        Some(session) if !checked.prompt_login => {
            if let Some(response) = approve(
                state,
                &checked,
                &session,
                device(state, parts),
                StatusCode::FOUND,
                None,
            )
            .await?
            {
                return Ok(response);
            }
        }
        _ => {}
    }
    if checked.prompt_none {
        return Err(redirect(
            state,
            &checked.to,
            &[
                ("error", "login_required"),
                ("error_description", "the user is not signed in"),
            ],
            StatusCode::FOUND,
        ));
    }
    Ok(sign_in_form(params, StatusCode::OK, None))
}

/// The browser asking, as its session will show it: its `User-Agent` and address.
fn device(state: &AppState, parts: &Parts) -> ClientMeta {
    ClientMeta::of(parts, state.trusted_proxies.client_ip_of(parts))
}

/// Issues a code for the user of `session`, approved from `device`, and redirects to the client
/// with it; `None` when the user can no longer sign in (removed or disabled: the session is
/// ended, the form shown).
async fn approve(
    state: &AppState,
    checked: &Checked,
    session: &BrowserSession,
    device: ClientMeta,
    status: StatusCode,
    set_cookie: Option<HeaderValue>,
) -> Result<Option<Response>, Response> {
    let now = db::now();
    let user = users::find_by_id(&state.pool, &session.user_id)
        .await
        .map_err(|e| refused(state, internal(e)))?;
    let Some(user) = user.filter(|user| !user.is_disabled()) else {
        browser::end(&state.pool, &session.token_hash, now)
            .await
            .map_err(|e| refused(state, internal(e)))?;
        return Ok(None);
    };
    // What the client asked for, within the client's scopes (checked), and the user's own;
    // `openid` asks for an ID token and grants no access, so any user may have it.
    let scope = ScopeSet::parse(
        &checked
            .scope
            .iter()
            .filter(|s| *s == OPENID || user.scopes.contains(s))
            .collect::<Vec<_>>()
            .join(" "),
    )
    .map_err(|e| refused(state, internal(e)))?;
    let code = codes::issue(
        &state.pool,
        &CodeGrant {
            client_id: checked.client.id.clone(),
            redirect_uri: checked.to.redirect_uri.clone(),
            code_challenge: checked.code_challenge.clone(),
            nonce: checked.nonce.clone(),
            user_id: user.id,
            scope,
            auth_time: session.auth_time,
            browser_session: session.token_hash.clone(),
            device,
        },
        now,
    )
    .await
    .map_err(|e| refused(state, internal(e)))?;
    let mut response = redirect(state, &checked.to, &[("code", &code)], status);
    if let Some(cookie) = set_cookie {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    Ok(Some(response))
}

/// The sign-in form for the request `params`, with a fresh CSRF token (cookie and field) and an
/// optional message (escaped).
fn sign_in_form(params: &Form, status: StatusCode, message: Option<&str>) -> Response {
    let csrf = crypto::random_secret();
    let mut hidden = String::new();
    for name in CARRIED {
        if let Some(value) = params.get(name) {
            hidden.push_str(&format!(
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">\n",
                escape(value)
            ));
        }
    }
    let message = message
        .map(|m| format!("<p role=\"alert\">{}</p>\n", escape(m)))
        .unwrap_or_default();
    let client = params.get("client_id").map(escape).unwrap_or_default();
    let body = format!(
        "<p>to continue to <strong>{client}</strong></p>\n{message}\
         <form method=\"post\" action=\"{AUTHORIZE_PATH}\">\n{hidden}\
         <input type=\"hidden\" name=\"{CSRF_FIELD}\" value=\"{csrf}\">\n\
         <label>Username <input name=\"username\" autocomplete=\"username\" required></label>\n\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\n\
         <button type=\"submit\">Sign in</button>\n</form>"
    );
    let mut response = html::page(status, "Sign in", &body);
    response
        .headers_mut()
        .append(SET_COOKIE, host_cookie(CSRF_COOKIE, &csrf, "Strict", None));
    response
}

#[tracing::instrument(name = "oauth.sign_in", skip_all)]
async fn sign_in(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if !form::is_form_content_type(&parts.headers) {
        return html::error_page(StatusCode::BAD_REQUEST, "The sign-in form was not a form.");
    }
    let Ok(body) = axum::body::to_bytes(body, super::oauth::TOKEN_BODY_LIMIT).await else {
        return html::error_page(
            StatusCode::BAD_REQUEST,
            "The sign-in form could not be read.",
        );
    };
    let Ok(params) = Form::parse(&body) else {
        return html::error_page(
            StatusCode::BAD_REQUEST,
            "The sign-in form's fields are malformed or repeated.",
        );
    };
    // Login CSRF: the form must come from the page this issuer served to this browser.
    let csrf_ok = match (cookie(&parts.headers, CSRF_COOKIE), params.get(CSRF_FIELD)) {
        (Some(expected), Some(presented)) => {
            verify_slices_are_equal(expected.as_bytes(), presented.as_bytes()).is_ok()
        }
        _ => false,
    };
    if !csrf_ok {
        return html::error_page(
            StatusCode::FORBIDDEN,
            "The sign-in form expired or did not come from this site. Go back and try again.",
        );
    }
    let checked = match check(&state, &params).await {
        Ok(checked) => checked,
        Err(refusal) => return refused(&state, refusal),
    };
    let (Some(username), Some(password)) = (params.get("username"), params.get("password")) else {
        return sign_in_form(
            &params,
            StatusCode::BAD_REQUEST,
            Some("Enter your username and password."),
        );
    };
    let client_ip = state.trusted_proxies.client_ip_of(&parts);
    match log_in(
        &state,
        username,
        SecretString::from(password.to_owned()),
        client_ip,
    )
    .await
    {
        Ok(user_id) => {
            let now = db::now();
            let opened = browser::open(&state.pool, &user_id, now, state.session_ttl_secs).await;
            let (token, session) = match opened {
                Ok(opened) => opened,
                Err(e) => return refused(&state, internal(e)),
            };
            let cookie = host_cookie(browser::COOKIE, &token, "Lax", Some(state.session_ttl_secs));
            match approve(
                &state,
                &checked,
                &session,
                device(&state, &parts),
                StatusCode::SEE_OTHER,
                Some(cookie),
            )
            .await
            {
                Ok(Some(response)) | Err(response) => response,
                Ok(None) => sign_in_form(
                    &params,
                    StatusCode::UNAUTHORIZED,
                    Some(grants::password::BAD_CREDENTIALS),
                ),
            }
        }
        Err(GrantError::LoginThrottled { retry_after }) => {
            let mut response = sign_in_form(
                &params,
                StatusCode::TOO_MANY_REQUESTS,
                Some("Too many failed sign-ins: try again later."),
            );
            if let Ok(value) = HeaderValue::try_from(retry_after.as_secs().max(1).to_string()) {
                response.headers_mut().insert(RETRY_AFTER, value);
            }
            response
        }
        Err(GrantError::InvalidGrant(message)) => {
            sign_in_form(&params, StatusCode::UNAUTHORIZED, Some(message))
        }
        Err(GrantError::Busy) => {
            let mut response = sign_in_form(
                &params,
                StatusCode::SERVICE_UNAVAILABLE,
                Some("The server is busy: try again in a moment."),
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
        Err(error) => refused(&state, internal(error)),
    }
}

/// The `password` grant's check of `username`'s password, throttle and audit included.
async fn log_in(
    state: &AppState,
    username: &str,
    password: SecretString,
    client_ip: Option<IpAddr>,
) -> Result<String, GrantError> {
    let attempt = grants::password::reserve(state, username, client_ip).await?;
    let user =
        grants::password::check_password(state, username, &password, client_ip, attempt).await?;
    Ok(user.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.append(
            COOKIE,
            HeaderValue::from_static("a=1; __Host-auth_csrf=tok; b=2"),
        );
        headers.append(
            COOKIE,
            HeaderValue::from_static("x__Host-auth_session=evil"),
        );
        assert_eq!(cookie(&headers, CSRF_COOKIE), Some("tok"));
        assert_eq!(cookie(&headers, browser::COOKIE), None);
    }
}
