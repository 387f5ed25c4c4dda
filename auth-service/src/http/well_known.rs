//! `GET /.well-known/jwks.json` and `GET /.well-known/openid-configuration`.
//!
//! Both documents only change with the key or the configuration, so they are rendered once at
//! start-up and served as bytes.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use http::HeaderValue;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use serde_json::json;
use shared::Scope;
use shared::jwk::JwkSet;
use shared::jws::Signer;

use super::token::GrantType;
use crate::app::AppState;

pub const JWKS_PATH: &str = "/.well-known/jwks.json";
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
pub const TOKEN_PATH: &str = "/oauth/token";
pub const REVOKE_PATH: &str = "/oauth/revoke";
pub const INTROSPECT_PATH: &str = "/oauth/introspect";

/// The rendered documents.
#[derive(Debug, Clone)]
pub struct WellKnown {
    jwks: Bytes,
    jwks_cache_control: HeaderValue,
    discovery: Bytes,
}

impl WellKnown {
    /// Renders the JWKS of `signer` and the discovery document of `issuer`.
    pub fn new(signer: &Signer, issuer: &str, jwks_max_age: Duration) -> Self {
        let jwks = serde_json::to_vec(&JwkSet::from_keys([signer.public_jwk()]))
            .expect("BUG: a JWKS always serializes");
        let jwks_cache_control =
            HeaderValue::from_str(&format!("public, max-age={}", jwks_max_age.as_secs()))
                .expect("BUG: a Cache-Control value is ASCII");
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
            jwks: Bytes::from(jwks),
            jwks_cache_control,
            discovery: Bytes::from(
                serde_json::to_vec(&discovery).expect("BUG: a JSON value always serializes"),
            ),
        }
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route(JWKS_PATH, get(jwks))
        .route(DISCOVERY_PATH, get(discovery))
}

async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    let well_known = &state.well_known;
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (CACHE_CONTROL, well_known.jwks_cache_control.clone()),
        ],
        well_known.jwks.clone(),
    )
}

async fn discovery(State(state): State<AppState>) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (
                CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        state.well_known.discovery.clone(),
    )
}
