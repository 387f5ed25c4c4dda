//! The few HTML pages the issuer serves (the sign-in form, the error page of a request that
//! cannot be sent back to its client), written by hand: two small pages do not justify a
//! template engine, and [`escape`] is applied to every value that comes from the request.
//!
//! Every page carries the headers of a page that must never be framed, cached or scripted:
//! `Content-Security-Policy` (no script at all, `frame-ancestors 'none'`), `X-Frame-Options:
//! DENY` for older browsers, `Cache-Control: no-store`, `Referrer-Policy: no-referrer` and
//! `X-Content-Type-Options: nosniff`. Their one stylesheet is served by the issuer itself, under
//! `/oauth/` so that a gateway forwarding the issuer's routes forwards it too.

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header::{
    CACHE_CONTROL, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{HeaderValue, StatusCode};

use super::error::no_store;
use crate::state::AppState;

/// No script, no plugin, no framing, no `<base>`; only the form posting back and the issuer's own
/// stylesheet ([`STYLESHEET_PATH`]). `form-action` is left out on purpose: a browser applies it to
/// the redirect that follows the sign-in POST, which leaves for the client's origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; style-src 'self'; script-src 'none'";

/// Where the pages' stylesheet is served.
pub const STYLESHEET_PATH: &str = "/oauth/signin.css";

const STYLESHEET: &str = include_str!("../../static/signin.css");

pub fn router() -> Router<AppState> {
    Router::new().route(STYLESHEET_PATH, get(stylesheet))
}

/// The stylesheet: the same bytes for everyone, so shared caches may keep it for an hour.
async fn stylesheet() -> Response {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=3600"),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// `value` with the five characters that matter in HTML text and quoted attributes replaced by
/// their entities.
pub fn escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#x27;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Adds the headers every issuer page carries.
pub fn secure_page_headers(response: &mut Response) {
    no_store(response);
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
}

/// A complete page: `title` and `body` are HTML already (escape what they carry).
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title>\n<link rel=\"stylesheet\" href=\"{STYLESHEET_PATH}\">\n</head>\n<body>\n<main>\n<h1>{title}</h1>\n{body}\n</main>\n</body></html>\n"
    );
    let mut response = (
        status,
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        html,
    )
        .into_response();
    secure_page_headers(&mut response);
    response
}

/// The page of a request that must not be redirected (an unknown client, a redirect URI that is
/// not registered): the message, escaped, and nothing else.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    page(
        status,
        "Sign-in request refused",
        &format!("<p>{}</p>", escape(message)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            escape(r#"<script>alert("x")</script>&'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#x27;"
        );
        assert_eq!(escape("plain text"), "plain text");
    }

    #[test]
    fn pages_refuse_framing_caching_and_script() {
        let response = error_page(StatusCode::BAD_REQUEST, "<b>x</b>");
        let headers = response.headers();
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["cache-control"], "no-store");
        let csp = headers["content-security-policy"].to_str().expect("ascii");
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'none'"));
        assert!(csp.contains("style-src 'self'") && !csp.contains("unsafe-inline"));
    }

    #[tokio::test]
    async fn pages_link_the_stylesheet_the_issuer_serves() {
        let page = error_page(StatusCode::BAD_REQUEST, "x");
        let body = axum::body::to_bytes(page.into_body(), 1 << 16)
            .await
            .expect("body");
        let body = String::from_utf8(body.to_vec()).expect("utf-8");
        assert!(body.contains(&format!(
            r#"<link rel="stylesheet" href="{STYLESHEET_PATH}">"#
        )));

        let css = stylesheet().await;
        assert_eq!(css.status(), StatusCode::OK);
        assert_eq!(css.headers()[CONTENT_TYPE], "text/css; charset=utf-8");
        assert_eq!(css.headers()[X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
}
