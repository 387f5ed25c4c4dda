//! The verifier's own access token: a client-credentials token it presents to the issuer when
//! it asks about sessions (`stateful`) or watches revocations (`hybrid`).

use std::time::{Duration, Instant};

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use crate::error::LookupError;

/// Obtains and caches a client-credentials access token; renews it shortly before it expires.
#[derive(Debug)]
pub struct ServiceToken {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    client_secret: SecretString,
    /// A tokio mutex held across the fetch: concurrent callers wait for one token request.
    cached: tokio::sync::Mutex<Option<(String, Instant)>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

/// Renew this long before expiry so a token is never presented as it expires.
const RENEW_MARGIN: Duration = Duration::from_secs(30);

impl ServiceToken {
    pub fn new(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: SecretString,
        timeout: Duration,
    ) -> Result<Self, LookupError> {
        let http = crate::outbound::http_client_builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| LookupError(e.to_string()))?;
        Ok(Self {
            http,
            token_url: token_url.into(),
            client_id: client_id.into(),
            client_secret,
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// A valid token, from cache or freshly requested.
    pub async fn get(&self) -> Result<String, LookupError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, renew_at)) = cached.as_ref()
            && Instant::now() < *renew_at
        {
            return Ok(token.clone());
        }
        let response = self
            .http
            .post(&self.token_url)
            .basic_auth(&self.client_id, Some(self.client_secret.expose_secret()))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(|e| LookupError(format!("token request: {e}")))?;
        if !response.status().is_success() {
            return Err(LookupError(format!(
                "token request answered HTTP {}",
                response.status().as_u16()
            )));
        }
        let body: TokenResponse = response
            .json()
            .await
            .map_err(|e| LookupError(format!("token response: {e}")))?;
        let lifetime = Duration::from_secs(body.expires_in);
        let renew_at = Instant::now() + lifetime.saturating_sub(RENEW_MARGIN).max(lifetime / 2);
        *cached = Some((body.access_token.clone(), renew_at));
        Ok(body.access_token)
    }

    /// Forgets the cached token (the issuer refused it).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }
}
