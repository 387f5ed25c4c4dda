//! Cookie transport for browsers, so that a web page never holds a token in JavaScript:
//!
//! - `POST /v1/cookie/login` (form `username`, `password`, optional `scope`) logs in with the
//!   password grant (legacy: an issuer with `AUTH_PASSWORD_GRANT=false`, as in the prod overlay,
//!   answers it 400 `unsupported_grant_type`, passed on; browsers use `/login`) and answers 204 with the access and refresh tokens in
//!   `__Host-` cookies: `HttpOnly` (no script reads them), `Secure`, `SameSite=Strict` (no
//!   cross-site request carries them), `Path=/`.
//! - `POST /v1/cookie/refresh` rotates the refresh token and renews both cookies.
//! - `POST /v1/cookie/logout` ends the session at the issuer (revoking the refresh token, so it
//!   ends even when the access cookie has expired) and clears both cookies.
//!
//! Every route here, and every state-changing route authenticated by the cookie, also passes
//! [`authn::bearer::check_same_origin`] (fetch metadata and `Origin`): the CSRF defence does not
//! rest on `SameSite` alone.

use std::net::SocketAddr;
use std::sync::Arc;

use authn::bearer::{ACCESS_TOKEN_COOKIE, check_same_origin};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Router};
use platform::trace::TraceContext;
use serde::Deserialize;

use crate::error::ApiError;
use crate::proxy::Proxy;

/// The cookie holding the refresh token.
pub const REFRESH_TOKEN_COOKIE: &str = "__Host-refresh_token";

pub fn router<S>(proxy: Arc<Proxy>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/v1/cookie/login", post(login))
        .route("/v1/cookie/refresh", post(refresh))
        .route("/v1/cookie/logout", post(logout))
        .with_state(proxy)
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    scope: Option<String>,
}

#[derive(Deserialize)]
struct Tokens {
    access_token: String,
    expires_in: u64,
    refresh_token: Option<String>,
}

fn cookie(name: &str, value: &str, max_age: Option<u64>) -> Option<HeaderValue> {
    let max_age = max_age
        .map(|secs| format!("; Max-Age={secs}"))
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{name}={value}; HttpOnly; Secure; SameSite=Strict; Path=/{max_age}"
    ))
    .ok()
}

pub(crate) fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(n, value)| (n == name).then_some(value))
}

/// Calls the issuer's token endpoint with `form`; on success answers 204 with the cookies, else
/// passes the issuer's RFC 6749 error through.
async fn grant(
    proxy: &Proxy,
    peer: SocketAddr,
    headers: &HeaderMap,
    context: &TraceContext,
    form: &[(&str, &str)],
) -> Result<Response, ApiError> {
    let url = proxy
        .target("/oauth/token", None)
        .ok_or_else(|| ApiError::Internal("token endpoint URL".into()))?;
    let mut request = proxy
        .client()
        .post(url)
        .headers(context.headers())
        .header(
            "x-forwarded-for",
            proxy.client_ip(peer, headers).to_string(),
        )
        .form(form);
    if let Some(agent) = headers.get(header::USER_AGENT) {
        request = request.header(header::USER_AGENT, agent);
    }
    let response = request
        .send()
        .await
        .map_err(|e| ApiError::BadGateway(e.to_string()))?;
    let status = StatusCode::from_u16(response.status().as_u16())
        .map_err(|e| ApiError::BadGateway(e.to_string()))?;
    if !status.is_success() {
        let body = response
            .bytes()
            .await
            .map_err(|e| ApiError::BadGateway(e.to_string()))?;
        return Ok((status, [(header::CONTENT_TYPE, "application/json")], body).into_response());
    }
    let tokens: Tokens = response
        .json()
        .await
        .map_err(|e| ApiError::BadGateway(e.to_string()))?;
    let mut answer = StatusCode::NO_CONTENT.into_response();
    let cookies = answer.headers_mut();
    if let Some(value) = cookie(
        ACCESS_TOKEN_COOKIE,
        &tokens.access_token,
        Some(tokens.expires_in),
    ) {
        cookies.append(header::SET_COOKIE, value);
    }
    if let Some(refresh) = tokens.refresh_token.as_deref()
        && let Some(value) = cookie(REFRESH_TOKEN_COOKIE, refresh, None)
    {
        cookies.append(header::SET_COOKIE, value);
    }
    cookies.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(answer)
}

#[tracing::instrument(name = "cookie_login", skip_all)]
async fn login(
    State(proxy): State<Arc<Proxy>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    context: TraceContext,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, ApiError> {
    // Login CSRF: a cross-site page must not log the browser into the attacker's account.
    check_same_origin(&Method::POST, &headers)?;
    let Form(form) = form.map_err(|_| {
        ApiError::InvalidRequest("expected a form with username and password".into())
    })?;
    let mut fields = vec![
        ("grant_type", "password"),
        ("username", form.username.as_str()),
        ("password", form.password.as_str()),
    ];
    if let Some(scope) = form.scope.as_deref() {
        fields.push(("scope", scope));
    }
    grant(&proxy, peer, &headers, &context, &fields).await
}

#[tracing::instrument(name = "cookie_refresh", skip_all)]
async fn refresh(
    State(proxy): State<Arc<Proxy>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    context: TraceContext,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_same_origin(&Method::POST, &headers)?;
    let Some(refresh_token) = cookie_value(&headers, REFRESH_TOKEN_COOKIE) else {
        return Err(ApiError::InvalidRequest("no refresh token cookie".into()));
    };
    let fields = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
    ];
    grant(&proxy, peer, &headers, &context, &fields).await
}

#[tracing::instrument(name = "cookie_logout", skip_all)]
async fn logout(
    State(proxy): State<Arc<Proxy>>,
    context: TraceContext,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_same_origin(&Method::POST, &headers)?;
    // The refresh token is revoked (RFC 7009; these first-party tokens need no client
    // credentials), which ends its session at the issuer: with an expired access cookie, the
    // usual case after a pause, the access token alone could not end it, and the session would
    // outlive the logout by the refresh token's lifetime.
    if let Some(token) = cookie_value(&headers, REFRESH_TOKEN_COOKIE) {
        let url = proxy
            .target("/oauth/revoke", None)
            .ok_or_else(|| ApiError::Internal("revocation URL".into()))?;
        match proxy
            .client()
            .post(url)
            .headers(context.headers())
            .form(&[("token", token)])
            .send()
            .await
        {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => {
                tracing::warn!(status = %response.status(), "refresh token revocation refused; clearing the cookies anyway");
            }
            Err(error) => {
                tracing::warn!(%error, "refresh token revocation failed; clearing the cookies anyway");
            }
        }
    }
    if let Some(token) = cookie_value(&headers, ACCESS_TOKEN_COOKIE) {
        let url = proxy
            .target("/v1/logout", None)
            .ok_or_else(|| ApiError::Internal("logout URL".into()))?;
        // The cookies are cleared whatever the issuer answers: an expired token or an issuer
        // outage must not leave the browser logged in.
        if let Err(error) = proxy
            .client()
            .post(url)
            .headers(context.headers())
            .bearer_auth(token)
            .send()
            .await
        {
            tracing::warn!(%error, "logout at the issuer failed; clearing the cookies anyway");
        }
    }
    let mut answer = StatusCode::NO_CONTENT.into_response();
    for name in [ACCESS_TOKEN_COOKIE, REFRESH_TOKEN_COOKIE] {
        if let Some(value) = cookie(name, "", Some(0)) {
            answer.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    Ok(answer)
}
