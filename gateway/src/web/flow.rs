//! Sign-in and sign-out: `GET /login`, `GET /callback`, `POST /logout`.
//!
//! The flow is the authorization code flow with PKCE (RFC 7636, S256) and OpenID Connect's
//! `nonce`, the gateway authenticating to the token endpoint as a confidential client. What the
//! callback must check is carried from `/login` to `/callback` in the browser itself, sealed
//! ([`super::seal`]) in the `__Host-login` cookie: nothing is stored server-side, so any
//! replica can finish a sign-in another began, and the cookie is deleted by the callback
//! whatever its outcome, so a replayed callback finds nothing to match.

use std::net::SocketAddr;

use authn::base64url;
use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use platform::trace::TraceContext;
use reqwest::Url;
use serde::{Deserialize, Serialize};

use super::issuer::{GrantError, OnBehalf};
use super::seal::random_token;
use super::session::{self, SameSite, set_cookie, token_cookies};
use super::{
    Browser, CSRF_COOKIE, ID_TOKEN_COOKIE, LOGIN_COOKIE, LOGIN_TTL, SCOPES, WebError, WebState,
    html,
};
use crate::cookie::{REFRESH_TOKEN_COOKIE, cookie_value};

/// The sign-in in progress, sealed in the `__Host-login` cookie.
#[derive(Debug, Serialize, Deserialize)]
struct LoginState {
    state: String,
    nonce: String,
    code_verifier: String,
    return_to: String,
    /// Unix seconds: refused after this even if the browser kept the cookie.
    expires_at: i64,
}

/// Where to go after signing in: a path of this origin, or `/`.
///
/// Only `/`-rooted paths of printable ASCII pass: `//host` and `/\host` (which browsers read
/// as another host), absolute URLs, and anything with a backslash or a control character are
/// replaced by `/`, so `/login?return_to=` cannot be made into an open redirect.
pub fn safe_return_to(raw: Option<&str>) -> String {
    match raw {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && path.len() <= 512
                && path.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// The PKCE S256 challenge of a verifier (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    base64url::encode(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref(),
    )
}

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    return_to: Option<String>,
}

/// `GET /login`: redirects to the issuer's authorization endpoint, through the public URL (the
/// gateway forwards `/oauth/*` to the issuer).
#[tracing::instrument(name = "web.login", skip_all)]
pub async fn login(
    State(state): State<WebState>,
    query: Result<Query<LoginQuery>, QueryRejection>,
) -> Result<Response, WebError> {
    let browser = state.browser()?;
    let Query(query) = query.unwrap_or_default();
    let login = LoginState {
        state: random_token(32),
        nonce: random_token(32),
        // 43 characters from 32 random bytes: the shortest verifier RFC 7636 allows, with
        // all of its entropy.
        code_verifier: random_token(32),
        return_to: safe_return_to(query.return_to.as_deref()),
        expires_at: authn::unix_now() + LOGIN_TTL.as_secs() as i64,
    };
    let json = serde_json::to_vec(&login).map_err(|e| WebError::Internal(e.to_string()))?;
    let sealed = browser.keys().seal(LOGIN_COOKIE, &json);
    let mut url = Url::parse(&format!("{}/oauth/authorize", browser.public_url))
        .map_err(|e| WebError::Internal(e.to_string()))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &browser.client_id)
        .append_pair("redirect_uri", &browser.redirect_uri)
        .append_pair("scope", SCOPES)
        .append_pair("state", &login.state)
        .append_pair("nonce", &login.nonce)
        .append_pair("code_challenge", &pkce_challenge(&login.code_verifier))
        .append_pair("code_challenge_method", "S256");
    let mut response = Redirect::to(url.as_str()).into_response();
    if let Some(cookie) = set_cookie(
        LOGIN_COOKIE,
        &sealed,
        SameSite::Lax,
        Some(LOGIN_TTL.as_secs()),
    ) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

#[derive(Debug, Default, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Why a callback did not sign the browser in; each is a page with a link to sign in again.
#[derive(Debug)]
enum Failure {
    /// The issuer answered with an error (`access_denied`: the user declined).
    Issuer {
        error: String,
        description: Option<String>,
    },
    /// No sign-in cookie, or one that does not open or has expired: a replay, or too slow.
    NoSignIn,
    /// `state` differs from the one this browser's sign-in sent: a forged or mixed-up callback.
    StateMismatch,
    /// The issuer refused the code (spent, expired, not for this client or verifier).
    CodeRefused(String),
    /// The ID token or access token did not verify.
    BadTokens(String),
    Web(WebError),
}

impl Failure {
    fn page(self) -> Response {
        let (status, text, detail) = match self {
            Failure::Issuer { error, description } => {
                let cancelled = error == "access_denied";
                let text = if cancelled {
                    "The sign-in was cancelled or refused."
                } else {
                    "The sign-in service reported an error."
                };
                let detail = match description {
                    Some(description) => format!("{error}: {description}"),
                    None => error,
                };
                (StatusCode::BAD_REQUEST, text, Some(detail))
            }
            Failure::NoSignIn => (
                StatusCode::BAD_REQUEST,
                "This sign-in has expired or was already completed.",
                None,
            ),
            Failure::StateMismatch => (
                StatusCode::BAD_REQUEST,
                "This sign-in response does not belong to the sign-in this browser started.",
                None,
            ),
            Failure::CodeRefused(error) => {
                tracing::info!(error, "web: the issuer refused the authorization code");
                (
                    StatusCode::BAD_REQUEST,
                    "The sign-in could not be completed: its code was refused.",
                    None,
                )
            }
            Failure::BadTokens(detail) => {
                tracing::warn!(detail, "web: tokens from the issuer did not verify");
                (
                    StatusCode::BAD_GATEWAY,
                    "The sign-in could not be completed: the identity token did not verify.",
                    None,
                )
            }
            Failure::Web(error) => return error.into_response(),
        };
        let detail = detail
            .map(|d| format!("<p class=\"detail\">{}</p>\n", html::escape(&d)))
            .unwrap_or_default();
        let body = format!(
            "<h1>Sign-in did not complete</h1>\n<p>{}</p>\n{detail}<p><a href=\"/login\">Sign in again</a></p>",
            html::escape(text)
        );
        super::html_response(status, html::page("Sign-in did not complete", &body))
    }
}

/// `GET /callback`: finishes the sign-in. The `__Host-login` cookie is deleted whatever happens.
#[tracing::instrument(name = "web.callback", skip_all)]
pub async fn callback(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    context: TraceContext,
    headers: HeaderMap,
    query: Result<Query<CallbackQuery>, QueryRejection>,
) -> Response {
    let Query(query) = query.unwrap_or_default();
    let mut response = match finish(&state, peer, &context, &headers, query).await {
        Ok(response) => response,
        Err(failure) => failure.page(),
    };
    if let Some(cookie) = set_cookie(LOGIN_COOKIE, "", SameSite::Lax, Some(0)) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

async fn finish(
    state: &WebState,
    peer: SocketAddr,
    context: &TraceContext,
    headers: &HeaderMap,
    query: CallbackQuery,
) -> Result<Response, Failure> {
    let browser = state.browser().map_err(Failure::Web)?;
    let login = open_login(browser, headers).ok_or(Failure::NoSignIn)?;
    if let Some(error) = query.error {
        return Err(Failure::Issuer {
            error,
            description: query.error_description,
        });
    }
    let presented = query.state.unwrap_or_default();
    if aws_lc_rs::constant_time::verify_slices_are_equal(
        presented.as_bytes(),
        login.state.as_bytes(),
    )
    .is_err()
    {
        return Err(Failure::StateMismatch);
    }
    let code = query
        .code
        .filter(|code| !code.is_empty())
        .ok_or_else(|| Failure::CodeRefused("no code in the callback".into()))?;

    let on_behalf = OnBehalf {
        client_ip: state.proxy.client_ip(peer, headers),
        headers,
        context,
    };
    let tokens = browser
        .exchange_code(&state.proxy, &on_behalf, &code, &login.code_verifier)
        .await
        .map_err(|error| match error {
            GrantError::Refused(error) => Failure::CodeRefused(error),
            GrantError::Failed(detail) => Failure::Web(WebError::Upstream(detail)),
        })?;
    let id_token = tokens
        .id_token
        .as_deref()
        .ok_or_else(|| Failure::BadTokens("no id_token in the token response".into()))?;
    let identity = state
        .app
        .verifier
        .verify_id_token(id_token, &browser.client_id, &login.nonce)
        .await
        .map_err(|e| Failure::BadTokens(format!("ID token: {e}")))?;
    let principal = state
        .app
        .verifier
        .verify(&tokens.access_token)
        .await
        .map_err(|e| Failure::BadTokens(format!("access token: {e}")))?;
    if principal.sub() != identity.sub {
        return Err(Failure::BadTokens(
            "the access token and the ID token name different users".into(),
        ));
    }
    tracing::info!(sub = %identity.sub, "web: signed in");

    let mut response = Redirect::to(&login.return_to).into_response();
    let cookies = response.headers_mut();
    for cookie in token_cookies(&tokens) {
        cookies.append(header::SET_COOKIE, cookie);
    }
    // A new CSRF cookie for every sign-in: nothing from before it carries over.
    if let Some(cookie) = set_cookie(CSRF_COOKIE, &random_token(32), SameSite::Strict, None) {
        cookies.append(header::SET_COOKIE, cookie);
    }
    if let Some(cookie) = set_cookie(ID_TOKEN_COOKIE, id_token, SameSite::Strict, None) {
        cookies.append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

fn open_login(browser: &Browser, headers: &HeaderMap) -> Option<LoginState> {
    let sealed = cookie_value(headers, LOGIN_COOKIE)?;
    let json = browser.keys().open(LOGIN_COOKIE, sealed)?;
    let login: LoginState = serde_json::from_slice(&json).ok()?;
    (login.expires_at > authn::unix_now()).then_some(login)
}

/// A form whose only field is its CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    pub csrf: String,
}

/// `POST /logout`: revokes the refresh token (the issuer ends its session, whatever the access
/// token's state: an expired access cookie is the usual case after a pause), clears the cookies
/// and goes back to `/`, through the issuer's `end_session_endpoint` when it has one (which
/// ends the issuer's own sign-in session in this browser, so the next `/login` asks again).
#[tracing::instrument(name = "web.logout", skip_all)]
pub async fn logout(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    context: TraceContext,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, WebError> {
    let browser = state.browser()?;
    let refresh = cookie_value(&headers, REFRESH_TOKEN_COOKIE);
    let access = cookie_value(&headers, authn::bearer::ACCESS_TOKEN_COOKIE);
    let on_behalf = OnBehalf {
        client_ip: state.proxy.client_ip(peer, &headers),
        headers: &headers,
        context: &context,
    };
    if refresh.is_some() || access.is_some() {
        let Form(form) = form.map_err(|_| WebError::Forbidden)?;
        session::check_csrf(browser, &headers, &form.csrf)?;
        // Revoking either token ends the one session both belong to; the refresh token first,
        // since it outlives the access token.
        if let Some(token) = refresh.or(access)
            && let Err(error) = browser.revoke(&state.proxy, &on_behalf, token).await
        {
            // The cookies go anyway: a browser must be able to sign out while the issuer is
            // down. The session then ends by expiry.
            tracing::warn!(%error, "web: revocation at the issuer failed; clearing cookies anyway");
        }
    }
    Ok(end_session(&state, browser, &on_behalf, &headers).await)
}

/// Where a signed-out browser goes: the issuer's RP-initiated logout endpoint (OpenID Connect
/// RP-Initiated Logout 1.0) with `id_token_hint`, `client_id` and
/// `post_logout_redirect_uri={GATEWAY_PUBLIC_URL}/`, or `/` when the issuer has none; every
/// session cookie deleted either way.
pub async fn end_session(
    state: &WebState,
    browser: &Browser,
    on_behalf: &OnBehalf<'_>,
    headers: &HeaderMap,
) -> Response {
    let Some(path) = browser.end_session_path(&state.proxy, on_behalf).await else {
        return signed_out_redirect();
    };
    let Ok(mut url) = Url::parse(&format!("{}{path}", browser.public_url)) else {
        return signed_out_redirect();
    };
    {
        let mut query = url.query_pairs_mut();
        if let Some(id_token) = cookie_value(headers, ID_TOKEN_COOKIE) {
            query.append_pair("id_token_hint", id_token);
        }
        query
            .append_pair("client_id", &browser.client_id)
            .append_pair(
                "post_logout_redirect_uri",
                &format!("{}/", browser.public_url),
            );
    }
    signed_out_redirect_to(url.as_str())
}

/// A redirect to `/` that deletes every session cookie.
pub fn signed_out_redirect() -> Response {
    signed_out_redirect_to("/")
}

fn signed_out_redirect_to(location: &str) -> Response {
    let mut response = Redirect::to(location).into_response();
    session::clear_cookies(&mut response);
    response
        .headers_mut()
        .insert("clear-site-data", HeaderValue::from_static("\"cache\""));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_return_targets() {
        for good in ["/", "/orders", "/a/b?x=1&y=%2F", "/#frag"] {
            assert_eq!(safe_return_to(Some(good)), good, "{good}");
        }
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "evil.example",
            "javascript:alert(1)",
            "/a b",
            "/\tevil",
            "/é",
            "",
        ] {
            assert_eq!(safe_return_to(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_return_to(None), "/");
        assert_eq!(safe_return_to(Some(&format!("/{}", "a".repeat(600)))), "/");
    }

    #[test]
    fn pkce_challenge_is_the_unpadded_base64url_sha256_of_the_verifier() {
        // Computed independently: base64.urlsafe_b64encode(sha256(verifier)) without "=".
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gXFgnE-cM"),
            "KJ0WX99Ye0-SAIhFvWJJsSeYpyZWtMRiXf8OPTeyZxM"
        );
    }
}
