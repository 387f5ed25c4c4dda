//! The web app and its backend: the gateway as a confidential OAuth client of the issuer that
//! keeps every token out of the browser's JavaScript (the "backend for frontend" of OAuth 2.0
//! for Browser-Based Apps). See docs/BROWSER.md.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /` | the web app: orders, sessions, sign-out buttons (a sign-in link when signed out) |
//! | `GET /app.css` | its stylesheet |
//! | `GET /login?return_to=/path` | starts the authorization code flow (PKCE S256, state, nonce) |
//! | `GET /callback` | the redirect URI: checks state, exchanges the code, checks the ID token |
//! | `POST /logout` | ends the session at the issuer, revokes the refresh token, clears cookies |
//! | `POST /orders`, `POST /orders/{id}/cancel` | create, cancel (then back to `/`) |
//! | `POST /sessions/{sid}/end`, `POST /sessions/end-others`, `POST /logout-everywhere` | sessions |
//!
//! Tokens live in `HttpOnly; Secure; SameSite=Strict` `__Host-` cookies, the same ones the
//! cookie transport ([`crate::cookie`]) sets, so the REST routes accept a signed-in browser too
//! (and refresh it: [`session::refresh_for_rest`]); the ID token is kept likewise, for the
//! `id_token_hint` of the issuer's RP-initiated logout.
//! The sign-in in progress (state, nonce, PKCE verifier, return path) lives in a sealed
//! (AES-256-GCM) `__Host-login` cookie for ten minutes. Every POST passes the same-origin check
//! and carries a CSRF token bound to the `__Host-csrf` cookie. Off (404) without
//! `GATEWAY_PUBLIC_URL`, `GATEWAY_CLIENT_ID` and `GATEWAY_CLIENT_SECRET`.

pub mod flow;
pub mod html;
pub mod issuer;
pub mod pages;
pub mod seal;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use authn::config::AuthMode;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use reqwest::Url;
use secrecy::{ExposeSecret as _, SecretString};

use crate::config::Config;
use crate::proxy::Proxy;
use crate::state::AppState;

/// The cookie holding the sealed sign-in in progress.
pub const LOGIN_COOKIE: &str = "__Host-login";
/// The cookie the CSRF tokens of the forms are bound to.
pub const CSRF_COOKIE: &str = "__Host-csrf";
/// The cookie keeping the ID token, for the `id_token_hint` of RP-initiated logout.
pub const ID_TOKEN_COOKIE: &str = "__Host-id_token";
/// How long a sign-in may take, from `/login` to `/callback`.
pub const LOGIN_TTL: Duration = Duration::from_secs(600);
/// The scopes the web app asks for.
pub const SCOPES: &str = "openid orders:read orders:write";

/// Browser sign-in settings that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BrowserConfigError {
    #[error(
        "browser sign-in needs GATEWAY_PUBLIC_URL, GATEWAY_CLIENT_ID and GATEWAY_CLIENT_SECRET together; missing: {0}"
    )]
    Incomplete(String),
    #[error(
        "GATEWAY_PUBLIC_URL must be an absolute https:// URL (http:// only for localhost or a loopback address) without query or fragment: {0}"
    )]
    PublicUrl(String),
    #[error("GATEWAY_CLIENT_ID must not be empty")]
    ClientId,
    #[error("GATEWAY_CLIENT_SECRET must not be empty")]
    ClientSecret,
}

/// The gateway as the issuer's confidential client, for browsers.
pub struct Browser {
    /// `GATEWAY_PUBLIC_URL`, without a trailing slash.
    pub public_url: String,
    /// `{GATEWAY_PUBLIC_URL}/callback`.
    pub redirect_uri: String,
    pub client_id: String,
    client_secret: SecretString,
    keys: seal::Keys,
    /// Refreshes in flight or just done, by refresh token digest: concurrent requests of one
    /// browser (two tabs) rotate its refresh token once, instead of presenting the same token
    /// twice, which the issuer treats as theft and answers by ending the session.
    refreshes: session::Refreshes,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("public_url", &self.public_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl Browser {
    /// The browser sign-in of `config`: `None` when none of its three settings is given.
    pub fn from_config(config: &Config) -> Result<Option<Self>, BrowserConfigError> {
        let (url, id, secret) = match (&config.public_url, &config.client_id, &config.client_secret)
        {
            (None, None, None) => return Ok(None),
            (Some(url), Some(id), Some(secret)) => (url, id, secret),
            (url, id, secret) => {
                let missing: Vec<&str> = [
                    (url.is_none(), "GATEWAY_PUBLIC_URL"),
                    (id.is_none(), "GATEWAY_CLIENT_ID"),
                    (secret.is_none(), "GATEWAY_CLIENT_SECRET"),
                ]
                .into_iter()
                .filter_map(|(missing, name)| missing.then_some(name))
                .collect();
                return Err(BrowserConfigError::Incomplete(missing.join(", ")));
            }
        };
        let public_url = public_url(url)?;
        if id.trim().is_empty() {
            return Err(BrowserConfigError::ClientId);
        }
        if secret.expose_secret().is_empty() {
            return Err(BrowserConfigError::ClientSecret);
        }
        Ok(Some(Self {
            redirect_uri: format!("{public_url}/callback"),
            public_url,
            client_id: id.clone(),
            keys: seal::Keys::derive(secret.expose_secret().as_bytes()),
            client_secret: secret.clone(),
            refreshes: session::Refreshes::new(),
        }))
    }

    pub fn keys(&self) -> &seal::Keys {
        &self.keys
    }
}

/// Checks `GATEWAY_PUBLIC_URL`, returning it without a trailing slash. `__Host-` cookies are
/// `Secure`, which browsers honour over `http://` only for localhost.
fn public_url(raw: &str) -> Result<String, BrowserConfigError> {
    let bad = || BrowserConfigError::PublicUrl(raw.to_owned());
    let url = Url::parse(raw).map_err(|_| bad())?;
    let host = url.host_str().ok_or_else(bad)?;
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    if !scheme_ok
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(bad());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// What the web routes share.
#[derive(Clone)]
pub struct WebState {
    pub app: AppState,
    pub proxy: Arc<Proxy>,
    /// `None`: browser sign-in is off.
    pub browser: Option<Arc<Browser>>,
    pub mode: AuthMode,
}

impl WebState {
    fn browser(&self) -> Result<&Arc<Browser>, WebError> {
        self.browser.as_ref().ok_or(WebError::NotConfigured)
    }
}

/// The web app's routes, with their security headers.
pub fn router<S>(state: WebState) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(flow::login))
        .route("/callback", get(flow::callback))
        .route("/logout", post(flow::logout))
        .route("/orders", post(pages::create_order))
        .route("/orders/{id}/cancel", post(pages::cancel_order))
        .route("/sessions/{sid}/end", post(pages::end_session))
        .route("/sessions/end-others", post(pages::end_other_sessions))
        .route("/logout-everywhere", post(pages::logout_everywhere))
        .layer(middleware::from_fn(security_headers))
        .route("/app.css", get(stylesheet))
        .with_state(state)
}

/// The policy of every page: only same-origin resources, no inline script or style, never in
/// a frame, forms only to this origin; pages carry user data, so nothing is stored by caches,
/// and the callback's code never leaks in a `Referer`.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        include_str!("../../static/app.css"),
    )
        .into_response()
}

/// What a web route can fail with; each answer is a plain page (or a redirect to sign in).
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("browser sign-in is not configured")]
    NotConfigured,
    /// A POST that is cross-site or without a valid CSRF token.
    #[error("cross-site request or bad CSRF token")]
    Forbidden,
    /// No session any more: cookies cleared, sent to sign in.
    #[error("signed out")]
    SignedOut,
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A service refused the access token as older than the user's last change: the session
    /// stands, and a renewal brings the new claims. Handlers renew and try once more; if it
    /// escapes them, the access cookie is dropped and the page reloaded, which renews it.
    #[error("the user's claims changed")]
    ClaimsChanged,
    /// The issuer does not know the session (ended meanwhile, or another user's).
    #[error("not found")]
    NotFound,
    #[error("upstream: {0}")]
    Upstream(String),
    #[error("unavailable")]
    Unavailable,
    #[error("internal: {0}")]
    Internal(String),
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, title, text) = match &self {
            WebError::NotConfigured => (
                StatusCode::NOT_FOUND,
                "Sign-in is not available",
                "Browser sign-in is not configured on this gateway.",
            ),
            WebError::Forbidden => (
                StatusCode::FORBIDDEN,
                "Request refused",
                "This form came from another site or is out of date. Go back, reload the page and try again.",
            ),
            WebError::SignedOut => {
                let mut response = Redirect::to("/login").into_response();
                session::clear_cookies(&mut response);
                return response;
            }
            WebError::ClaimsChanged => {
                let mut response = Redirect::to("/").into_response();
                if let Some(expired) = session::set_cookie(
                    authn::bearer::ACCESS_TOKEN_COOKIE,
                    "",
                    session::SameSite::Strict,
                    Some(0),
                ) {
                    response.headers_mut().append(header::SET_COOKIE, expired);
                }
                return response;
            }
            WebError::BadRequest(_) => (
                StatusCode::BAD_REQUEST,
                "Bad request",
                "The form was not filled in correctly.",
            ),
            WebError::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "This no longer exists. Go back to the start page and reload it.",
            ),
            WebError::Upstream(detail) => {
                tracing::warn!(detail, "web: upstream failure");
                (
                    StatusCode::BAD_GATEWAY,
                    "Something went wrong",
                    "A service behind this page failed. Try again in a moment.",
                )
            }
            WebError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Temporarily unavailable",
                "Your session cannot be checked right now. Try again in a moment.",
            ),
            WebError::Internal(detail) => {
                tracing::error!(detail, "web: internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "An internal error occurred.",
                )
            }
        };
        let body = format!(
            "<h1>{}</h1>\n<p>{}</p>\n<p><a href=\"/\">Back to the start page</a></p>",
            html::escape(title),
            html::escape(text)
        );
        html_response(status, html::page(title, &body))
    }
}

/// An HTML answer.
pub fn html_response(status: StatusCode, html: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: Option<&str>, id: Option<&str>, secret: Option<&str>) -> Config {
        Config {
            public_url: url.map(str::to_owned),
            client_id: id.map(str::to_owned),
            client_secret: secret.map(SecretString::from),
            ..Config::default()
        }
    }

    #[test]
    fn off_unless_configured() {
        assert!(
            Browser::from_config(&config(None, None, None))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn all_three_settings_or_a_clear_error() {
        let error = Browser::from_config(&config(Some("https://shop.example"), None, Some("s")))
            .unwrap_err()
            .to_string();
        assert!(error.contains("missing: GATEWAY_CLIENT_ID"), "{error}");
        let browser = Browser::from_config(&config(
            Some("https://shop.example/"),
            Some("web"),
            Some("s"),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(browser.public_url, "https://shop.example");
        assert_eq!(browser.redirect_uri, "https://shop.example/callback");
        assert!(!format!("{browser:?}").contains("\"s\""));
    }

    #[test]
    fn public_urls_are_checked() {
        for good in [
            "https://shop.example",
            "https://shop.example/app",
            "http://localhost:8080",
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
        ] {
            assert!(public_url(good).is_ok(), "{good}");
        }
        for bad in [
            "http://shop.example",
            "shop.example",
            "ftp://shop.example",
            "https://shop.example/?a=1",
            "https://shop.example/#x",
            "https://user:pw@shop.example",
            "",
        ] {
            assert!(
                matches!(public_url(bad), Err(BrowserConfigError::PublicUrl(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            Browser::from_config(&config(Some("https://a.example"), Some(" "), Some("s"))),
            Err(BrowserConfigError::ClientId)
        ));
        assert!(matches!(
            Browser::from_config(&config(Some("https://a.example"), Some("web"), Some(""))),
            Err(BrowserConfigError::ClientSecret)
        ));
    }
}
