//! The axum adapter (feature `axum`): extractors that verify the request's bearer token, and
//! the HTTP answer of every [`AuthError`].
//!
//! Handlers ask for a [`Principal`] (or [`Authenticated`] when they must pass the token on)
//! and never touch the `Authorization` header or cookies themselves. A route named in the
//! verifier's [`crate::RoutePolicy`] (`METHOD /route/{template}`) is verified at its level.

use axum::extract::{FromRef, FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::authz::Principal;
use crate::bearer::{BearerToken, TokenSource, check_same_origin, token_from_headers};
use crate::error::{AuthError, INVALID_TOKEN_DESCRIPTION, RejectReason};
use crate::freshness::Freshness;
use crate::verifier::{Verifier, record_rejection};

/// The verified caller together with the token it presented, for services that pass the token
/// on (the gateway forwards it so the next service can verify it again).
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub principal: Principal,
    pub token: BearerToken,
}

impl<S> FromRequestParts<S> for Authenticated
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let verifier = Verifier::from_ref(state);
        let (token, source) =
            token_from_headers(&parts.headers).inspect_err(|r| record_rejection(*r))?;
        if source == TokenSource::Cookie {
            check_same_origin(&parts.method, &parts.headers)?;
        }
        let principal = verifier
            .verify_with(token, route_level(&verifier, parts))
            .await?;
        Ok(Self {
            principal,
            token: BearerToken::new(token),
        })
    }
}

/// The level the verifier's route policy gives the route that serves this request (axum's
/// [`MatchedPath`], the template, never the raw path); `None` (the mode's) when the policy is
/// empty or does not name it.
fn route_level(verifier: &Verifier, parts: &Parts) -> Option<Freshness> {
    if verifier.route_policy().is_empty() {
        return None;
    }
    let route = parts.extensions.get::<MatchedPath>()?;
    verifier.level_of(parts.method.as_str(), route.as_str())
}

impl<S> FromRequestParts<S> for Principal
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Authenticated::from_request_parts(parts, state)
            .await?
            .principal)
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let (status, challenge, body) = match self {
            // RFC 6750 §3.1: a request without credentials gets a bare challenge.
            AuthError::Unauthenticated(RejectReason::Missing) => (
                StatusCode::UNAUTHORIZED,
                Some(HeaderValue::from_static("Bearer")),
                serde_json::json!({
                    "error": "missing_token",
                    "error_description": "an access token is required",
                }),
            ),
            AuthError::Unauthenticated(RejectReason::ClaimsChanged) => (
                StatusCode::UNAUTHORIZED,
                Some(HeaderValue::from_static(
                    r#"Bearer error="invalid_token", error_description="the user's claims changed; refresh the token""#,
                )),
                serde_json::json!({
                    "error": "invalid_token",
                    "error_description": crate::error::CLAIMS_CHANGED_DESCRIPTION,
                }),
            ),
            AuthError::Unauthenticated(_) => (
                StatusCode::UNAUTHORIZED,
                Some(HeaderValue::from_static(
                    r#"Bearer error="invalid_token", error_description="the access token is invalid""#,
                )),
                serde_json::json!({
                    "error": "invalid_token",
                    "error_description": INVALID_TOKEN_DESCRIPTION,
                }),
            ),
            AuthError::Forbidden { scope } => (
                StatusCode::FORBIDDEN,
                HeaderValue::from_str(&format!(
                    r#"Bearer error="insufficient_scope", scope="{}""#,
                    scope.as_str()
                ))
                .ok(),
                serde_json::json!({
                    "error": "insufficient_scope",
                    "error_description": format!("scope {} is required", scope.as_str()),
                    "scope": scope.as_str(),
                }),
            ),
            AuthError::CrossSite => (
                StatusCode::FORBIDDEN,
                None,
                serde_json::json!({
                    "error": "cross_site_request",
                    "error_description": "cookie-authenticated requests must come from this site",
                }),
            ),
            AuthError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                serde_json::json!({
                    "error": "temporarily_unavailable",
                    "error_description": "tokens cannot be verified right now",
                }),
            ),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(challenge) = challenge {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}
