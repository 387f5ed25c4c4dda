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
use crate::oidc::{OPENID, pkce};
use crate::state::AppState;

pub const JWKS_PATH: &str = "/.well-known/jwks.json";
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
pub const TOKEN_PATH: &str = "/oauth/token";
pub const REVOKE_PATH: &str = "/oauth/revoke";
pub const INTROSPECT_PATH: &str = "/oauth/introspect";
pub use super::authorize::AUTHORIZE_PATH;
pub use super::end_session::END_SESSION_PATH;
pub use super::userinfo::USERINFO_PATH;

/// The rendered discovery document.
#[derive(Debug, Clone)]
pub struct WellKnown {
    discovery: Bytes,
}

impl WellKnown {
    /// Renders the discovery document of `issuer` (OpenID Connect Discovery 1.0 §3, RFC 8414);
    /// the `password` grant is listed only if `password_grant` allows it.
    pub fn new(issuer: &str, password_grant: bool) -> Self {
        let base = issuer.trim_end_matches('/');
        let grants: Vec<&str> = GrantType::ALL
            .into_iter()
            .filter(|grant| *grant != GrantType::Password || password_grant)
            .map(GrantType::as_str)
            .collect();
        let mut scopes = vec![OPENID];
        scopes.extend(Scope::ALL.map(Scope::as_str));
        let discovery = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{base}{AUTHORIZE_PATH}"),
            "userinfo_endpoint": format!("{base}{USERINFO_PATH}"),
            "end_session_endpoint": format!("{base}{END_SESSION_PATH}"),
            "jwks_uri": format!("{base}{JWKS_PATH}"),
            "token_endpoint": format!("{base}{TOKEN_PATH}"),
            "revocation_endpoint": format!("{base}{REVOKE_PATH}"),
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "introspection_endpoint": format!("{base}{INTROSPECT_PATH}"),
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "grant_types_supported": grants,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "code_challenge_methods_supported": [pkce::S256],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "scopes_supported": scopes,
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "sid", "preferred_username", "roles", "scope"],
            "prompt_values_supported": ["none", "login"],
            "authorization_response_iss_parameter_supported": true,
            "access_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        });
        Self {
            discovery: Bytes::from(
                serde_json::to_vec(&discovery).expect("BUG: a JSON value always serializes"),
            ),
        }
    }
}

/// The routes of the JWKS and of the discovery document of `issuer`.
pub fn router(issuer: &str, password_grant: bool) -> Router<AppState> {
    let well_known = WellKnown::new(issuer, password_grant);
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
