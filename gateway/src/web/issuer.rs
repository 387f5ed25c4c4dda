//! The gateway's calls to the issuer on behalf of a browser, over the backchannel
//! (`AUTH_HTTP_URL`): the token endpoint as a confidential client (code exchange, refresh),
//! revocation, and the session API with the browser's access token. Each call carries the
//! browser's address and user agent (so the issuer records the device) and the trace context.

use std::net::IpAddr;

use axum::http::{HeaderMap, header};
use platform::trace::TraceContext;
use secrecy::ExposeSecret as _;
use serde::Deserialize;

use super::Browser;
use super::WebError;
use crate::proxy::Proxy;

/// A successful token response (RFC 6749 §5.1, OpenID Connect Core §3.1.3.3).
#[derive(Clone, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub expires_in: u64,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub id_token: Option<String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(<redacted>)")
    }
}

/// Why the token endpoint gave no tokens.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GrantError {
    /// The issuer refused the grant (`invalid_grant` and the other §5.2 errors): the code or
    /// refresh token is spent, expired or revoked. The browser must sign in again.
    #[error("refused by the issuer: {0}")]
    Refused(String),
    /// The issuer could not be reached or answered something else.
    #[error("{0}")]
    Failed(String),
}

/// One entry of the issuer's `GET /v1/sessions`.
#[derive(Debug, Clone, Deserialize)]
pub struct SessionView {
    pub id: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    #[serde(default)]
    pub user_agent: Option<String>,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub current: bool,
}

/// Who the gateway calls on behalf of, for the issuer's records and the trace.
#[derive(Clone, Copy)]
pub struct OnBehalf<'a> {
    pub client_ip: IpAddr,
    pub headers: &'a HeaderMap,
    pub context: &'a TraceContext,
}

impl OnBehalf<'_> {
    fn apply(&self, mut request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request = request
            .headers(self.context.headers())
            .header("x-forwarded-for", self.client_ip.to_string());
        if let Some(agent) = self.headers.get(header::USER_AGENT) {
            request = request.header(header::USER_AGENT, agent);
        }
        request
    }
}

fn url(proxy: &Proxy, path: &str) -> Result<reqwest::Url, WebError> {
    proxy
        .target(path, None)
        .ok_or_else(|| WebError::Internal(format!("issuer URL for {path}")))
}

fn failed(error: reqwest::Error) -> WebError {
    WebError::Upstream(format!("auth-service: {error}"))
}

impl Browser {
    /// Calls the token endpoint as this confidential client (HTTP Basic, RFC 6749 §2.3.1; the
    /// issuer's client ids and generated secrets need no form-encoding).
    async fn grant(
        &self,
        proxy: &Proxy,
        on_behalf: &OnBehalf<'_>,
        form: &[(&str, &str)],
    ) -> Result<Tokens, GrantError> {
        let url = proxy
            .target("/oauth/token", None)
            .ok_or_else(|| GrantError::Failed("token endpoint URL".into()))?;
        let request = proxy
            .client()
            .post(url)
            .basic_auth(&self.client_id, Some(self.client_secret.expose_secret()))
            .form(form);
        let response = on_behalf
            .apply(request)
            .send()
            .await
            .map_err(|e| GrantError::Failed(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return response
                .json()
                .await
                .map_err(|e| GrantError::Failed(format!("token response: {e}")));
        }
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let error = body["error"].as_str().unwrap_or("unknown").to_owned();
        if status.is_client_error() {
            Err(GrantError::Refused(error))
        } else {
            Err(GrantError::Failed(format!("{status}: {error}")))
        }
    }

    /// Exchanges an authorization code (with its PKCE verifier) for tokens.
    pub async fn exchange_code(
        &self,
        proxy: &Proxy,
        on_behalf: &OnBehalf<'_>,
        code: &str,
        code_verifier: &str,
    ) -> Result<Tokens, GrantError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_verifier", code_verifier),
        ];
        self.grant(proxy, on_behalf, &form).await
    }

    /// Rotates a refresh token.
    pub async fn refresh(
        &self,
        proxy: &Proxy,
        on_behalf: &OnBehalf<'_>,
        refresh_token: &str,
    ) -> Result<Tokens, GrantError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        self.grant(proxy, on_behalf, &form).await
    }

    /// Revokes a token of this client (RFC 7009): the issuer ends the session behind it.
    pub async fn revoke(
        &self,
        proxy: &Proxy,
        on_behalf: &OnBehalf<'_>,
        token: &str,
    ) -> Result<(), WebError> {
        let request = proxy
            .client()
            .post(url(proxy, "/oauth/revoke")?)
            .basic_auth(&self.client_id, Some(self.client_secret.expose_secret()))
            .form(&[("token", token)]);
        let response = on_behalf.apply(request).send().await.map_err(failed)?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(WebError::Upstream(format!(
                "revocation answered {}",
                response.status()
            )))
        }
    }
}

impl Browser {
    /// The path of the issuer's RP-initiated logout endpoint (`end_session_endpoint` of its
    /// discovery document), when it has one. Only the path is kept: browsers reach the issuer
    /// through the gateway's public URL, like the authorization endpoint.
    pub async fn end_session_path(
        &self,
        proxy: &Proxy,
        on_behalf: &OnBehalf<'_>,
    ) -> Option<String> {
        let url = proxy.target("/.well-known/openid-configuration", None)?;
        let request = proxy.client().get(url);
        let response = on_behalf.apply(request).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let discovery: serde_json::Value = response.json().await.ok()?;
        let endpoint = reqwest::Url::parse(discovery["end_session_endpoint"].as_str()?).ok()?;
        let path = endpoint.path();
        // Only a path the gateway forwards to the issuer.
        (path.starts_with("/oauth/") || path.starts_with("/v1/logout")).then(|| path.to_owned())
    }
}

/// Whether a 401 refuses the token only as older than the user's last change: the challenge
/// says so (`authn` writes the same description into it).
fn claims_changed(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains(authn::CLAIMS_CHANGED_DESCRIPTION))
}

/// The session API, with the browser's access token.
pub struct SessionApi<'a> {
    pub proxy: &'a Proxy,
    pub on_behalf: OnBehalf<'a>,
    pub access_token: &'a str,
}

impl SessionApi<'_> {
    async fn call(
        &self,
        method: reqwest::Method,
        url: reqwest::Url,
    ) -> Result<reqwest::Response, WebError> {
        let request = self
            .proxy
            .client()
            .request(method, url)
            .bearer_auth(self.access_token);
        let response = self.on_behalf.apply(request).send().await.map_err(failed)?;
        match response.status().as_u16() {
            200..=299 => Ok(response),
            401 if claims_changed(&response) => Err(WebError::ClaimsChanged),
            401 => Err(WebError::SignedOut),
            404 => Err(WebError::NotFound),
            status => Err(WebError::Upstream(format!("session API answered {status}"))),
        }
    }

    /// The user's active sessions, newest first.
    pub async fn list(&self) -> Result<Vec<SessionView>, WebError> {
        self.call(reqwest::Method::GET, url(self.proxy, "/v1/sessions")?)
            .await?
            .json()
            .await
            .map_err(failed)
    }

    /// Ends one of the user's sessions. An unknown one (already ended) is not an error.
    pub async fn end(&self, sid: &str) -> Result<(), WebError> {
        let mut url = url(self.proxy, "/v1/sessions")?;
        url.path_segments_mut()
            .map_err(|()| WebError::Internal("sessions URL".into()))?
            .push(sid);
        match self.call(reqwest::Method::DELETE, url).await {
            Ok(_) | Err(WebError::NotFound) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Ends every session of the user, this one included.
    pub async fn logout_all(&self) -> Result<(), WebError> {
        self.call(reqwest::Method::POST, url(self.proxy, "/v1/logout-all")?)
            .await
            .map(drop)
    }
}
