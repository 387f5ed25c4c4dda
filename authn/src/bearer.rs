//! Finding the one bearer token of a request, in HTTP headers, cookies or gRPC metadata, and
//! attaching one to an outgoing gRPC call. Shared by the axum and tonic adapters; no framework
//! types beyond the `http` crate's.

use std::fmt;

use http::{HeaderMap, HeaderValue, Method, header};

use crate::error::{AuthError, RejectReason};
use crate::jws::MAX_TOKEN_LEN;

/// The cookie a browser client carries its access token in. The `__Host-` prefix makes browsers
/// accept it only when `Secure`, without `Domain` and with `Path=/`.
pub const ACCESS_TOKEN_COOKIE: &str = "__Host-access_token";

/// Where a request's token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer`: sent deliberately by the client, never by a browser on its own.
    Header,
    /// The [`ACCESS_TOKEN_COOKIE`]: attached by browsers automatically, hence the CSRF check.
    Cookie,
}

/// Finds the one access token of a request: `Authorization: Bearer <token>` or the
/// [`ACCESS_TOKEN_COOKIE`] cookie. A request carrying more than one token (two `Authorization`
/// headers, two such cookies, or a header and a cookie) is refused rather than choosing one.
pub fn token_from_headers(headers: &HeaderMap) -> Result<(&str, TokenSource), RejectReason> {
    let mut authorization = headers.get_all(header::AUTHORIZATION).iter();
    let from_header = match (authorization.next(), authorization.next()) {
        (None, _) => None,
        (Some(value), None) => Some(bearer_token(value)?),
        (Some(_), Some(_)) => return Err(RejectReason::Ambiguous),
    };
    let mut from_cookie = None;
    for value in headers.get_all(header::COOKIE) {
        let value = value.to_str().map_err(|_| RejectReason::Malformed)?;
        for pair in value.split(';') {
            if let Some((name, token)) = pair.trim().split_once('=')
                && name == ACCESS_TOKEN_COOKIE
                && from_cookie.replace(token).is_some()
            {
                return Err(RejectReason::Ambiguous);
            }
        }
    }
    let (token, source) = match (from_header, from_cookie) {
        (Some(_), Some(_)) => return Err(RejectReason::Ambiguous),
        (Some(token), None) => (token, TokenSource::Header),
        (None, Some(token)) => (token, TokenSource::Cookie),
        (None, None) => return Err(RejectReason::Missing),
    };
    if token.len() > MAX_TOKEN_LEN {
        return Err(RejectReason::TooLarge);
    }
    if token.is_empty() {
        return Err(RejectReason::Malformed);
    }
    Ok((token, source))
}

/// The CSRF defence for cookie-authenticated requests (the cookie is also `SameSite=Strict`;
/// this is the second layer, for browsers or proxies that do not honour it): a state-changing
/// request is refused when the browser marks it as not same-origin, by `Sec-Fetch-Site`, or,
/// for browsers without fetch metadata, by an `Origin` whose host is not the request's `Host`.
/// Requests with neither header do not come from a cross-site page: browsers always send
/// `Origin` on cross-origin POST, PUT, PATCH and DELETE.
pub fn check_same_origin(method: &Method, headers: &HeaderMap) -> Result<(), AuthError> {
    if method.is_safe() {
        return Ok(());
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => Ok(()),
            _ => Err(AuthError::CrossSite),
        };
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin_host = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, host)| host);
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if origin_host.is_none() || origin_host != host {
            return Err(AuthError::CrossSite);
        }
    }
    Ok(())
}

/// The token of an `Authorization: Bearer <token>` value (RFC 6750 §2.1; the scheme is
/// case-insensitive). The length is checked before anything else.
pub fn bearer_token(value: &HeaderValue) -> Result<&str, RejectReason> {
    if value.len() > MAX_TOKEN_LEN + "Bearer ".len() {
        return Err(RejectReason::TooLarge);
    }
    let value = value.to_str().map_err(|_| RejectReason::Malformed)?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(token),
        _ => Err(RejectReason::Malformed),
    }
}

/// The one bearer token of a gRPC call (its `authorization` metadata); two entries are refused.
pub fn token_from_metadata(headers: &HeaderMap) -> Result<&str, RejectReason> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    match (values.next(), values.next()) {
        (None, _) => Err(RejectReason::Missing),
        (Some(value), None) => bearer_token(value),
        (Some(_), Some(_)) => Err(RejectReason::Ambiguous),
    }
}

/// Attaches `authorization: Bearer <token>` to an outgoing gRPC call.
#[cfg(feature = "tonic")]
pub fn with_bearer<T>(request: &mut tonic::Request<T>, token: &str) -> Result<(), tonic::Status> {
    let value = tonic::metadata::MetadataValue::try_from(format!("Bearer {token}"))
        .map_err(|_| tonic::Status::from(AuthError::Unauthenticated(RejectReason::Malformed)))?;
    request.metadata_mut().insert("authorization", value);
    Ok(())
}

/// A raw bearer token, as received. Its `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn bearer_header_or_cookie() {
        let h = headers(&[(header::AUTHORIZATION, "Bearer abc")]);
        assert_eq!(token_from_headers(&h), Ok(("abc", TokenSource::Header)));
        let h = headers(&[(header::AUTHORIZATION, "bearer abc")]);
        assert_eq!(token_from_headers(&h), Ok(("abc", TokenSource::Header)));
        let h = headers(&[(header::COOKIE, "a=1; __Host-access_token=xyz; b=2")]);
        assert_eq!(token_from_headers(&h), Ok(("xyz", TokenSource::Cookie)));
    }

    #[test]
    fn missing_and_malformed() {
        assert_eq!(
            token_from_headers(&HeaderMap::new()),
            Err(RejectReason::Missing)
        );
        let h = headers(&[(header::COOKIE, "access_token=xyz")]);
        assert_eq!(token_from_headers(&h), Err(RejectReason::Missing));
        for value in ["Basic abc", "Bearer", "Bearerabc", "Bearer "] {
            let h = headers(&[(header::AUTHORIZATION, value)]);
            assert!(token_from_headers(&h).is_err(), "{value}");
        }
    }

    #[test]
    fn two_tokens_are_refused() {
        let h = headers(&[
            (header::AUTHORIZATION, "Bearer a"),
            (header::AUTHORIZATION, "Bearer b"),
        ]);
        assert_eq!(token_from_headers(&h), Err(RejectReason::Ambiguous));
        let h = headers(&[
            (header::AUTHORIZATION, "Bearer a"),
            (header::COOKIE, "__Host-access_token=b"),
        ]);
        assert_eq!(token_from_headers(&h), Err(RejectReason::Ambiguous));
        let h = headers(&[(
            header::COOKIE,
            "__Host-access_token=a; __Host-access_token=b",
        )]);
        assert_eq!(token_from_headers(&h), Err(RejectReason::Ambiguous));
        let h = headers(&[
            (header::COOKIE, "__Host-access_token=a"),
            (header::COOKIE, "__Host-access_token=b"),
        ]);
        assert_eq!(token_from_headers(&h), Err(RejectReason::Ambiguous));
    }

    #[test]
    fn huge_tokens_are_refused_before_parsing() {
        let value = format!("Bearer {}", "a".repeat(64 * 1024));
        let h = headers(&[(header::AUTHORIZATION, &value)]);
        assert_eq!(token_from_headers(&h), Err(RejectReason::TooLarge));
        let cookie = format!("__Host-access_token={}", "a".repeat(64 * 1024));
        let h = headers(&[(header::COOKIE, &cookie)]);
        assert_eq!(token_from_headers(&h), Err(RejectReason::TooLarge));
    }

    #[test]
    fn cross_site_state_changes_are_refused() {
        let post = Method::POST;
        let ok = |pairs: &[(header::HeaderName, &str)]| check_same_origin(&post, &headers(pairs));
        assert!(ok(&[]).is_ok());
        assert!(
            ok(&[(
                header::HeaderName::from_static("sec-fetch-site"),
                "same-origin"
            )])
            .is_ok()
        );
        assert!(ok(&[(header::HeaderName::from_static("sec-fetch-site"), "none")]).is_ok());
        for site in ["cross-site", "same-site"] {
            let h = [(header::HeaderName::from_static("sec-fetch-site"), site)];
            assert_eq!(ok(&h), Err(AuthError::CrossSite), "{site}");
        }
        let same = [
            (header::HOST, "shop.example"),
            (header::ORIGIN, "https://shop.example"),
        ];
        assert!(ok(&same).is_ok());
        for origin in [
            "https://evil.example",
            "null",
            "https://shop.example.evil.example",
        ] {
            let h = [(header::HOST, "shop.example"), (header::ORIGIN, origin)];
            assert_eq!(ok(&h), Err(AuthError::CrossSite), "{origin}");
        }
        let evil = headers(&[(header::ORIGIN, "https://evil.example")]);
        assert!(
            check_same_origin(&Method::GET, &evil).is_ok(),
            "safe methods pass"
        );
    }

    #[test]
    fn redacted_debug() {
        assert!(!format!("{:?}", BearerToken("secret".into())).contains("secret"));
    }
}
