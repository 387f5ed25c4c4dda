//! A browser's session as the web routes see it: the access token cookie verified, or renewed
//! from the refresh token cookie when it has expired (transparent refresh), and the cookies
//! that carry them.

use std::sync::Arc;
use std::time::Duration;

use authn::bearer::{ACCESS_TOKEN_COOKIE, check_same_origin};
use authn::{AuthError, Principal};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::Response;

use super::issuer::{GrantError, OnBehalf, Tokens};
use super::seal::random_token;
use super::{Browser, CSRF_COOKIE, ID_TOKEN_COOKIE, WebError, WebState};
use crate::cookie::{REFRESH_TOKEN_COOKIE, cookie_value};
use crate::proxy::Proxy;

/// How long the outcome of one refresh is reused for the same refresh token from the same
/// browser: long enough for the requests that were in flight together, short enough that it
/// is no window for a replay.
const REFRESH_REUSE: Duration = Duration::from_secs(10);

/// `SameSite` of a cookie.
#[derive(Debug, Clone, Copy)]
pub enum SameSite {
    /// Token and CSRF cookies: never sent with a request another site started.
    Strict,
    /// The sign-in cookie: it must come back on the top-level redirect from the issuer to
    /// `/callback`, which may be cross-site when the issuer has another origin.
    Lax,
}

/// A `Set-Cookie` value for a `__Host-` cookie: `HttpOnly`, `Secure`, `Path=/`, no `Domain`.
/// `max_age` `None` is a session cookie, `Some(0)` deletes it.
pub fn set_cookie(
    name: &str,
    value: &str,
    same_site: SameSite,
    max_age: Option<u64>,
) -> Option<HeaderValue> {
    let same_site = match same_site {
        SameSite::Strict => "Strict",
        SameSite::Lax => "Lax",
    };
    let max_age = max_age
        .map(|secs| format!("; Max-Age={secs}"))
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{name}={value}; HttpOnly; Secure; SameSite={same_site}; Path=/{max_age}"
    ))
    .ok()
}

/// The cookies carrying freshly issued tokens: the access token for its lifetime, the refresh
/// token for the browser session.
pub fn token_cookies(tokens: &Tokens) -> Vec<HeaderValue> {
    let mut cookies = Vec::new();
    cookies.extend(set_cookie(
        ACCESS_TOKEN_COOKIE,
        &tokens.access_token,
        SameSite::Strict,
        Some(tokens.expires_in),
    ));
    if let Some(refresh) = &tokens.refresh_token {
        cookies.extend(set_cookie(
            REFRESH_TOKEN_COOKIE,
            refresh,
            SameSite::Strict,
            None,
        ));
    }
    cookies
}

/// Deletes the token and CSRF cookies.
pub fn clear_cookies(response: &mut Response) {
    for name in [
        ACCESS_TOKEN_COOKIE,
        REFRESH_TOKEN_COOKIE,
        CSRF_COOKIE,
        ID_TOKEN_COOKIE,
    ] {
        if let Some(value) = set_cookie(name, "", SameSite::Strict, Some(0)) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
}

/// A signed-in browser.
pub struct Signed {
    /// The access token (from the cookie, or just refreshed).
    pub token: String,
    pub principal: Principal,
    /// The CSRF token the forms of this page carry.
    pub csrf: String,
    /// Cookies to set on the answer: rotated tokens, a new CSRF cookie.
    pub set_cookies: Vec<HeaderValue>,
}

impl Signed {
    /// Adds the cookies of this session's renewal to `response`.
    pub fn finish(self, mut response: Response) -> Response {
        for cookie in self.set_cookies {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        response
    }
}

/// What a browser's cookies amount to.
pub enum Resolved {
    /// No token cookies at all.
    Anonymous,
    Signed(Box<Signed>),
    /// Token cookies that no longer work: the access token is expired or revoked and the
    /// refresh token refused (or absent). The cookies are to be cleared.
    Ended,
}

/// Finds the session of a browser, refreshing it when the access token is gone or refused.
pub async fn resolve(
    state: &WebState,
    browser: &Browser,
    headers: &HeaderMap,
    on_behalf: &OnBehalf<'_>,
) -> Result<Resolved, WebError> {
    let access = cookie_value(headers, ACCESS_TOKEN_COOKIE);
    let mut set_cookies = Vec::new();
    let mut verified = None;
    if let Some(token) = access {
        match state.app.verifier.verify(token).await {
            Ok(principal) => verified = Some((token.to_owned(), principal)),
            Err(AuthError::Unavailable) => return Err(WebError::Unavailable),
            // Expired, revoked or not ours: the refresh token decides.
            Err(_) => {}
        }
    }
    if verified.is_none() {
        let Some(refresh) = cookie_value(headers, REFRESH_TOKEN_COOKIE) else {
            return Ok(if access.is_some() {
                Resolved::Ended
            } else {
                Resolved::Anonymous
            });
        };
        match refreshed(state, browser, on_behalf, refresh).await? {
            Some(renewal) => {
                set_cookies = renewal.cookies;
                verified = Some((renewal.token, renewal.principal));
            }
            None => return Ok(Resolved::Ended),
        }
    }
    let Some((token, principal)) = verified else {
        return Ok(Resolved::Ended);
    };
    let csrf_cookie = match cookie_value(headers, CSRF_COOKIE) {
        Some(cookie) => cookie.to_owned(),
        // Signed in through the cookie transport: forms need a CSRF cookie too.
        None => {
            let cookie = random_token(32);
            set_cookies.extend(set_cookie(CSRF_COOKIE, &cookie, SameSite::Strict, None));
            cookie
        }
    };
    Ok(Resolved::Signed(Box::new(Signed {
        token,
        principal,
        csrf: browser.keys().csrf_token(&csrf_cookie),
        set_cookies,
    })))
}

/// Renews a signed-in session from its refresh cookie at once, although its access token still
/// verifies here: a service refused that token as older than the user's last change, which this
/// gateway has not heard of yet (in `hybrid` mode each verifier receives the push on its own;
/// the issuer knows first). The renewed token carries the new claims; the session stays.
pub async fn renew(
    state: &WebState,
    browser: &Browser,
    headers: &HeaderMap,
    on_behalf: &OnBehalf<'_>,
    signed: &mut Signed,
) -> Result<(), WebError> {
    // A refresh earlier in this request rotated the cookie: its successor is the one to use.
    let rotated = signed
        .set_cookies
        .iter()
        .find_map(|cookie| set_cookie_value(cookie, REFRESH_TOKEN_COOKIE));
    let Some(refresh) = rotated.or_else(|| cookie_value(headers, REFRESH_TOKEN_COOKIE)) else {
        return Err(WebError::SignedOut);
    };
    let Some(renewal) = refreshed(state, browser, on_behalf, refresh).await? else {
        return Err(WebError::SignedOut);
    };
    // The new cookies replace any set earlier in this request (the CSRF cookie stays).
    signed.set_cookies.retain(|cookie| {
        set_cookie_value(cookie, ACCESS_TOKEN_COOKIE).is_none()
            && set_cookie_value(cookie, REFRESH_TOKEN_COOKIE).is_none()
    });
    signed.set_cookies.extend(renewal.cookies);
    signed.token = renewal.token;
    signed.principal = renewal.principal;
    Ok(())
}

/// A session renewed from its refresh token.
struct Renewal {
    token: String,
    principal: Principal,
    /// The rotated token cookies.
    cookies: Vec<HeaderValue>,
}

/// Redeems `refresh` and verifies the access token it brings; `None` when the session is over
/// (the refresh token refused, or its access token not accepted).
async fn refreshed(
    state: &WebState,
    browser: &Browser,
    on_behalf: &OnBehalf<'_>,
    refresh: &str,
) -> Result<Option<Renewal>, WebError> {
    let tokens = match browser
        .refreshes
        .refresh(browser, &state.proxy, on_behalf, refresh)
        .await
    {
        Ok(tokens) => tokens,
        Err(GrantError::Refused(error)) => {
            tracing::info!(error, "web: refresh refused; the browser signs in again");
            return Ok(None);
        }
        Err(GrantError::Failed(detail)) => return Err(WebError::Upstream(detail)),
    };
    match state.app.verifier.verify(&tokens.access_token).await {
        Ok(principal) => Ok(Some(Renewal {
            cookies: token_cookies(&tokens),
            token: tokens.access_token,
            principal,
        })),
        Err(AuthError::Unavailable) => Err(WebError::Unavailable),
        Err(error) => {
            tracing::warn!(%error, "web: a refreshed access token does not verify");
            Ok(None)
        }
    }
}

/// The value a `Set-Cookie` header gives the cookie `name`, if it is that cookie's.
fn set_cookie_value<'c>(cookie: &'c HeaderValue, name: &str) -> Option<&'c str> {
    let (pair, _) = cookie.to_str().ok()?.split_once(';')?;
    pair.strip_prefix(name)?.strip_prefix('=')
}

/// For the REST routes (`/v1/orders...`): a browser signed in through the web app (it holds the
/// ID token cookie) whose access cookie has expired or been refused, and that holds a refresh
/// cookie, is refreshed before the route runs, which then sees the new access token; both
/// rotated cookies are set on the answer. A refused refresh clears the cookies and the route
/// answers its usual 401. Requests with `Authorization`, and cookie-transport sessions (no ID
/// token cookie: they renew through `/v1/cookie/refresh`), pass untouched.
pub async fn refresh_for_rest(
    axum::extract::State(state): axum::extract::State<WebState>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(browser) = state.browser.clone() else {
        return next.run(request).await;
    };
    let headers = request.headers().clone();
    let refresh = match (
        headers.contains_key(header::AUTHORIZATION),
        cookie_value(&headers, ID_TOKEN_COOKIE),
        cookie_value(&headers, REFRESH_TOKEN_COOKIE),
    ) {
        (false, Some(_), Some(refresh)) => refresh,
        _ => return next.run(request).await,
    };
    if let Some(token) = cookie_value(&headers, ACCESS_TOKEN_COOKIE) {
        match state.app.verifier.verify(token).await {
            // Valid, or undecidable (the route answers 503): nothing to renew.
            Ok(_) | Err(AuthError::Unavailable) => return next.run(request).await,
            Err(_) => {}
        }
    }
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0);
    let context = request
        .extensions()
        .get::<platform::trace::TraceContext>()
        .cloned()
        .unwrap_or_else(|| platform::trace::TraceContext::from_headers(&headers));
    let Some(peer) = peer else {
        return next.run(request).await;
    };
    let on_behalf = OnBehalf {
        client_ip: state.proxy.client_ip(peer, &headers),
        headers: &headers,
        context: &context,
    };
    match browser
        .refreshes
        .refresh(&browser, &state.proxy, &on_behalf, refresh)
        .await
    {
        Ok(tokens) => {
            replace_access_cookie(request.headers_mut(), Some(&tokens.access_token));
            let mut response = next.run(request).await;
            for cookie in token_cookies(&tokens) {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            response
        }
        Err(GrantError::Refused(error)) => {
            tracing::info!(
                error,
                "web: refresh refused on a REST route; cookies cleared"
            );
            replace_access_cookie(request.headers_mut(), None);
            let mut response = next.run(request).await;
            clear_cookies(&mut response);
            response
        }
        Err(GrantError::Failed(detail)) => {
            tracing::warn!(detail, "web: refresh failed on a REST route");
            next.run(request).await
        }
    }
}

/// Rewrites a request's cookies with `access` as its access token cookie (none: without one).
fn replace_access_cookie(headers: &mut HeaderMap, access: Option<&str>) {
    let mut pairs: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .map(str::trim)
        .filter(|pair| {
            !pair.is_empty()
                && pair.split_once('=').map(|(name, _)| name) != Some(ACCESS_TOKEN_COOKIE)
        })
        .map(str::to_owned)
        .collect();
    if let Some(access) = access {
        pairs.push(format!("{ACCESS_TOKEN_COOKIE}={access}"));
    }
    headers.remove(header::COOKIE);
    if let Ok(value) = HeaderValue::from_str(&pairs.join("; ")) {
        headers.insert(header::COOKIE, value);
    }
}

/// The CSRF defence of every POST: the browser says it is same-origin (fetch metadata or
/// `Origin`), and the form's token is the one bound to this browser's CSRF cookie.
pub fn check_csrf(browser: &Browser, headers: &HeaderMap, token: &str) -> Result<(), WebError> {
    check_same_origin(&Method::POST, headers).map_err(|_| WebError::Forbidden)?;
    let cookie = cookie_value(headers, CSRF_COOKIE).ok_or(WebError::Forbidden)?;
    if browser.keys().check_csrf(cookie, token) {
        Ok(())
    } else {
        Err(WebError::Forbidden)
    }
}

/// Refreshes by refresh token, one at a time per token: concurrent requests of one browser
/// share one rotation (moka's `try_get_with` runs one call for every waiter), and its outcome
/// is reused for 10 seconds for requests of the same browser (address and user agent) that
/// still carried the old cookie.
pub struct Refreshes {
    done: moka::future::Cache<String, Tokens>,
}

impl Refreshes {
    pub fn new() -> Self {
        Self {
            done: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(REFRESH_REUSE)
                .build(),
        }
    }

    async fn refresh(
        &self,
        browser: &Browser,
        proxy: &Proxy,
        on_behalf: &OnBehalf<'_>,
        refresh_token: &str,
    ) -> Result<Tokens, GrantError> {
        // Keyed by a digest (the cache never holds a usable refresh token) of the token and of
        // the browser's address and user agent: a stolen, just-rotated token replayed from
        // elsewhere misses the cache and reaches the issuer, whose reuse detection ends the
        // session, instead of being handed the new tokens.
        let agent = on_behalf
            .headers
            .get(header::USER_AGENT)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for part in [
            refresh_token.as_bytes(),
            on_behalf.client_ip.to_string().as_bytes(),
            agent,
        ] {
            digest.update(&(part.len() as u64).to_be_bytes());
            digest.update(part);
        }
        let key = authn::base64url::encode(digest.finish().as_ref());
        self.done
            .try_get_with(key, browser.refresh(proxy, on_behalf, refresh_token))
            .await
            .map_err(|error: Arc<GrantError>| GrantError::clone(&error))
    }
}

impl Default for Refreshes {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_cookie_is_read_back_only_under_its_own_name() {
        let cookie = set_cookie(REFRESH_TOKEN_COOKIE, "r1", SameSite::Strict, None).unwrap();
        assert_eq!(set_cookie_value(&cookie, REFRESH_TOKEN_COOKIE), Some("r1"));
        assert_eq!(set_cookie_value(&cookie, ACCESS_TOKEN_COOKIE), None);
        // A name that is a prefix of another is not that other.
        let longer = set_cookie("__Host-access_token2", "x", SameSite::Strict, None).unwrap();
        assert_eq!(set_cookie_value(&longer, ACCESS_TOKEN_COOKIE), None);
    }

    #[test]
    fn cookies_are_host_prefixed_http_only_and_secure() {
        let cookie = set_cookie("__Host-x", "v", SameSite::Strict, Some(60)).unwrap();
        assert_eq!(
            cookie,
            "__Host-x=v; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=60"
        );
        let lax = set_cookie("__Host-login", "v", SameSite::Lax, None).unwrap();
        assert_eq!(
            lax,
            "__Host-login=v; HttpOnly; Secure; SameSite=Lax; Path=/"
        );
    }

    #[test]
    fn the_access_cookie_of_a_request_is_replaced() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-access_token=old"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        replace_access_cookie(&mut headers, Some("new"));
        assert_eq!(headers[header::COOKIE], "a=1; b=2; __Host-access_token=new");
        replace_access_cookie(&mut headers, None);
        assert_eq!(headers[header::COOKIE], "a=1; b=2");
    }

    #[test]
    fn token_cookies_carry_both_tokens() {
        let tokens = Tokens {
            access_token: "a.b.c".into(),
            expires_in: 300,
            refresh_token: Some("r".into()),
            id_token: None,
        };
        let cookies = token_cookies(&tokens);
        assert_eq!(cookies.len(), 2);
        assert!(
            cookies[0]
                .to_str()
                .unwrap()
                .starts_with("__Host-access_token=a.b.c;")
        );
        assert!(cookies[0].to_str().unwrap().ends_with("Max-Age=300"));
        assert!(
            cookies[1]
                .to_str()
                .unwrap()
                .starts_with("__Host-refresh_token=r;")
        );
    }
}
