//! Reverse proxy to the auth-service for `/oauth/*`, `/.well-known/*`, `/v1/sessions`,
//! `/v1/sessions/*`, `/v1/logout` and `/v1/logout-all`.
//!
//! Forwarded: method, path and query, the body (bounded by `GATEWAY_MAX_BODY`), end-to-end
//! headers (cookies and `Authorization` included: the auth-service authenticates those calls
//! itself). Dropped: hop-by-hop headers (RFC 9110 §7.6.1), in both directions, and any
//! client-supplied `Forwarded`/`X-Forwarded-*`/`X-Real-IP`: the gateway is the edge, so it
//! sets `X-Forwarded-For` (the client: the peer address, or behind a proxy named in
//! `GATEWAY_TRUSTED_PROXIES` the address that proxy forwarded), `X-Forwarded-Proto` and
//! `X-Forwarded-Host` itself. `x-request-id` and `traceparent` are the request's trace context (validated or new,
//! this hop as the parent span), never the client's raw values. Redirects are passed back, never followed. An unreachable upstream is a 502
//! `{"error":"bad_gateway"}`, a slow one a 504.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use platform::client_addr::TrustedProxies;
use platform::trace::TraceContext;
use reqwest::Url;

use crate::error::ApiError;

/// The forwarding client and where it forwards to.
#[derive(Debug)]
pub struct Proxy {
    client: reqwest::Client,
    upstream: Url,
    max_body: usize,
    /// Whose `X-Forwarded-For` is believed (`GATEWAY_TRUSTED_PROXIES`).
    trusted: TrustedProxies,
}

/// A proxy that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("AUTH_HTTP_URL is not an http(s) URL: {0}")]
    Url(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

impl Proxy {
    /// A proxy to `upstream` (an `http://` or `https://` base URL, possibly with a path prefix).
    pub fn new(
        upstream: &str,
        max_body: usize,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Self, ProxyError> {
        let upstream = Url::parse(upstream).map_err(|e| ProxyError::Url(e.to_string()))?;
        if !matches!(upstream.scheme(), "http" | "https")
            || upstream.host().is_none()
            || upstream.query().is_some()
        {
            return Err(ProxyError::Url(upstream.to_string()));
        }
        let client = platform::http::client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            .build()?;
        Ok(Self {
            client,
            upstream,
            max_body,
            trusted: TrustedProxies::default(),
        })
    }

    /// The same proxy, believing the `X-Forwarded-For` of requests from `trusted` peers.
    pub fn trusting(self, trusted: TrustedProxies) -> Self {
        Self { trusted, ..self }
    }

    /// The client of a request from `peer`: the peer itself, or the address a trusted proxy
    /// in front of the gateway forwarded.
    pub(crate) fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        self.trusted.client_ip(peer.ip(), headers)
    }

    /// The HTTP client to the auth-service.
    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The upstream URL for a request path and query, refusing any path the URL parser would
    /// rewrite (dot segments, backslashes): what is forwarded is exactly what was routed.
    pub(crate) fn target(&self, path: &str, query: Option<&str>) -> Option<Url> {
        let prefix = self.upstream.path().trim_end_matches('/');
        let expected = format!("{prefix}{path}");
        let mut url = self.upstream.clone();
        url.set_path(&expected);
        url.set_query(query);
        (url.path() == expected).then_some(url)
    }
}

/// The routes forwarded to the auth-service.
pub fn router<S>(proxy: Arc<Proxy>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/oauth/{*rest}", any(forward))
        .route("/.well-known/{*rest}", any(forward))
        .route("/v1/sessions", any(forward))
        .route("/v1/sessions/{*rest}", any(forward))
        .route("/v1/logout", any(forward))
        .route("/v1/logout-all", any(forward))
        .with_state(proxy)
}

#[tracing::instrument(name = "proxy", skip_all, fields(method = %request.method(), path = %request.uri().path()))]
async fn forward(
    State(proxy): State<Arc<Proxy>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let url = proxy
        .target(parts.uri.path(), parts.uri.query())
        .ok_or_else(|| ApiError::InvalidRequest("the request path is not valid".into()))?;
    let body = axum::body::to_bytes(body, proxy.max_body)
        .await
        .map_err(|error| {
            if is_length_limit(&error) {
                ApiError::PayloadTooLarge
            } else {
                ApiError::InvalidRequest("the request body cannot be read".into())
            }
        })?;

    let client = proxy.client_ip(peer, &parts.headers);
    let mut headers = forwarded_request_headers(&parts.headers, client);
    // The validated request id and this hop's traceparent, never the client's raw values.
    match parts.extensions.get::<TraceContext>() {
        Some(context) => context.inject(&mut headers),
        None => TraceContext::from_headers(&parts.headers).inject(&mut headers),
    }
    let upstream = proxy
        .client
        .request(parts.method, url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|error| {
            if error.is_timeout() {
                ApiError::GatewayTimeout
            } else {
                ApiError::BadGateway(format!("auth-service: {error}"))
            }
        })?;

    let upstream: axum::http::Response<reqwest::Body> = upstream.into();
    let (mut parts, body) = upstream.into_parts();
    parts.headers = end_to_end(&parts.headers);
    Ok(Response::from_parts(parts, Body::new(body)).into_response())
}

fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = source {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus the
/// de-facto `Proxy-*` family and `Proxy-Connection`.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
];

/// Whether a header must not cross a proxy.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    let name = name.as_str();
    HOP_BY_HOP.contains(&name) || name.starts_with("proxy-")
}

/// `headers` without hop-by-hop headers, including those the `Connection` header names.
pub fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let listed: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    let mut kept = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if !is_hop_by_hop(name) && !listed.iter().any(|listed| listed == name.as_str()) {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

/// Headers only the edge may set: whatever the client sent is discarded.
const EDGE_HEADERS: [&str; 5] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
];

/// The headers sent upstream for a request of `client` (resolved by `Proxy::client_ip`):
/// `X-Forwarded-For` holds that one address, replacing whatever came in.
pub fn forwarded_request_headers(incoming: &HeaderMap, client: IpAddr) -> HeaderMap {
    let mut headers = end_to_end(incoming);
    for name in EDGE_HEADERS {
        headers.remove(name);
    }
    // The client's framing does not apply to the re-sent body; the client sets its own Host.
    headers.remove(header::CONTENT_LENGTH);
    let host = headers.remove(header::HOST);

    if let Ok(ip) = HeaderValue::try_from(client.to_string()) {
        headers.insert("x-forwarded-for", ip);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    if let Some(host) = host {
        headers.insert("x-forwarded-host", host);
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn hop_by_hop_headers_are_recognised() {
        for name in [
            "connection",
            "keep-alive",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "proxy-authorization",
            "proxy-authenticate",
            "proxy-connection",
        ] {
            assert!(is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
        for name in [
            "authorization",
            "cookie",
            "content-type",
            "x-request-id",
            "trailers",
        ] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn headers_named_by_connection_are_dropped() {
        let kept = end_to_end(&headers(&[
            ("connection", "keep-alive, X-Private"),
            ("connection", "x-other"),
            ("keep-alive", "timeout=5"),
            ("x-private", "1"),
            ("x-other", "1"),
            ("transfer-encoding", "chunked"),
            ("content-type", "application/json"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
        ]));
        assert_eq!(kept.len(), 3);
        assert_eq!(kept["content-type"], "application/json");
        assert_eq!(kept.get_all("set-cookie").iter().count(), 2);
    }

    #[test]
    fn the_edge_sets_forwarding_headers() {
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        let sent = forwarded_request_headers(
            &headers(&[
                ("host", "api.example"),
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-proto", "https"),
                ("forwarded", "for=6.6.6.6"),
                ("x-real-ip", "6.6.6.6"),
                ("content-length", "10"),
                ("authorization", "Bearer abc"),
                ("cookie", "__Host-refresh=x"),
                ("proxy-authorization", "Basic eA=="),
            ]),
            client,
        );
        assert_eq!(sent["x-forwarded-for"], "203.0.113.7");
        assert_eq!(sent.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(sent["x-forwarded-proto"], "http");
        assert_eq!(sent["x-forwarded-host"], "api.example");
        assert_eq!(sent["authorization"], "Bearer abc");
        assert_eq!(sent["cookie"], "__Host-refresh=x");
        for gone in [
            "host",
            "forwarded",
            "x-real-ip",
            "content-length",
            "proxy-authorization",
        ] {
            assert!(sent.get(gone).is_none(), "{gone}");
        }
    }

    fn proxy(upstream: &str) -> Proxy {
        Proxy::new(
            upstream,
            1024,
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .unwrap()
    }

    #[test]
    fn targets_keep_path_and_query() {
        let proxy = proxy("http://auth:8081");
        let url = proxy.target("/oauth/token", Some("a=1&b=%20")).unwrap();
        assert_eq!(url.as_str(), "http://auth:8081/oauth/token?a=1&b=%20");
        let prefixed = super::tests::proxy("http://auth:8081/base/");
        assert_eq!(
            prefixed.target("/v1/logout", None).unwrap().as_str(),
            "http://auth:8081/base/v1/logout"
        );
    }

    #[test]
    fn paths_the_parser_would_rewrite_are_refused() {
        let proxy = proxy("http://auth:8081");
        for path in [
            "/oauth/../admin/users",
            "/oauth/%2e%2e/admin",
            "/oauth/.%2E/admin",
            "/oauth/./token",
            "/oauth/..\\admin",
        ] {
            assert!(proxy.target(path, None).is_none(), "{path}");
        }
    }

    #[test]
    fn only_http_upstreams() {
        for bad in [
            "ftp://auth",
            "not a url",
            "http://auth/?q=1",
            "unix:/tmp/sock",
        ] {
            assert!(
                Proxy::new(bad, 1, Duration::from_secs(1), Duration::from_secs(1)).is_err(),
                "{bad}"
            );
        }
    }
}
