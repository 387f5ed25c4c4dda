//! `GET /.well-known/jwks.json` and `GET /.well-known/openid-configuration`.
//!
//! The discovery document only changes with the configuration: it is rendered once, with the
//! router.
//! The JWKS changes with the key set: [`crate::keys::KeyManager`] renders it on every change,
//! with its `ETag` and a `Cache-Control: max-age` derived from the rotation schedule; a
//! conditional request (`If-None-Match`) for the current document is answered 304.

use authn::Scope;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::json;

use crate::grants::GrantType;
use crate::state::AppState;

pub const JWKS_PATH: &str = "/.well-known/jwks.json";
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
pub const TOKEN_PATH: &str = "/oauth/token";
pub const REVOKE_PATH: &str = "/oauth/revoke";
pub const INTROSPECT_PATH: &str = "/oauth/introspect";

/// The rendered discovery document.
#[derive(Debug, Clone)]
pub struct WellKnown {
    discovery: Bytes,
}

impl WellKnown {
    /// Renders the discovery document of `issuer`.
    pub fn new(issuer: &str) -> Self {
        let base = issuer.trim_end_matches('/');
        let discovery = json!({
            "issuer": issuer,
            "jwks_uri": format!("{base}{JWKS_PATH}"),
            "token_endpoint": format!("{base}{TOKEN_PATH}"),
            "revocation_endpoint": format!("{base}{REVOKE_PATH}"),
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "introspection_endpoint": format!("{base}{INTROSPECT_PATH}"),
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "grant_types_supported": GrantType::ALL.map(GrantType::as_str),
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": Scope::ALL.map(Scope::as_str),
            "access_token_signing_alg_values_supported": ["RS256"],
        });
        Self {
            discovery: Bytes::from(
                serde_json::to_vec(&discovery).expect("BUG: a JSON value always serializes"),
            ),
        }
    }
}

/// The routes of the JWKS and of the discovery document of `issuer`.
pub fn router(issuer: &str) -> Router<AppState> {
    let well_known = WellKnown::new(issuer);
    Router::new()
        .route(JWKS_PATH, get(jwks))
        .route(DISCOVERY_PATH, get(move || discovery(well_known.clone())))
}

async fn jwks(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let jwks = state.keys.jwks();
    let validators = [
        (CACHE_CONTROL, jwks.cache_control.clone()),
        (ETAG, jwks.etag.clone()),
    ];
    // RFC 9110 §13.1.2: with several If-None-Match fields, any of them matching counts.
    if headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .any(|value| jwks.matches(value))
    {
        return (StatusCode::NOT_MODIFIED, validators).into_response();
    }
    (
        validators,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        jwks.body.clone(),
    )
        .into_response()
}

async fn discovery(well_known: WellKnown) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (
                CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        well_known.discovery,
    )
}
