//! The verifier's own access token: a client-credentials token it presents to the issuer when
//! it asks about sessions (`stateful`) or watches revocations (`hybrid`).
//!
//! Renewed in the background, well before it expires: once a token is obtained, a task renews
//! it at a random point between [`REFRESH_FROM`] and [`REFRESH_TO`] of its lifetime (2.5 to 3
//! minutes into a 5-minute token, so that replicas spread out), and retries a failed renewal
//! with a doubling, jittered delay (from [`RETRY_BASE`] up to [`RETRY_MAX`], longer when the
//! issuer says `Retry-After`) while the current token stays in use. A flood at the issuer at
//! renewal time, or a restart, costs retries, not the token: it lapses only if the issuer
//! refuses for the whole second half of its lifetime. Callers never wait for a background
//! renewal. The lazy path stays as the fallback: a token that was invalidated (the issuer
//! refused it) or is about to expire (within 30 s, or a tenth of its lifetime) is
//! fetched by the next [`ServiceToken::get`], one request for all concurrent callers.
//!
//! Renewals are counted in `auth_service_token_renewals_total{path, outcome}` (`background` or
//! `on_demand`; `ok` or `failed`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::error::LookupError;

/// The background renewal happens at a random point between these fractions of the lifetime.
pub const REFRESH_FROM: f64 = 0.5;
pub const REFRESH_TO: f64 = 0.6;
/// The first retry of a failed background renewal waits up to this long (jittered), doubling
/// with each further failure up to [`RETRY_MAX`].
pub const RETRY_BASE: Duration = Duration::from_secs(1);
pub const RETRY_MAX: Duration = Duration::from_secs(30);
/// The longest `Retry-After` of the issuer that is honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// The lazy path renews a token this long before it expires (at most a tenth of its lifetime),
/// so a token is never presented as it expires.
const RENEW_MARGIN: Duration = Duration::from_secs(30);

/// Obtains and caches a client-credentials access token; renews it in the background well
/// before it expires, and on demand when it must.
#[derive(Debug)]
pub struct ServiceToken {
    inner: Arc<Inner>,
    /// The background renewal, started with the first token; stopped when this is dropped.
    refresher: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    client_secret: SecretString,
    /// A tokio mutex held across an on-demand fetch: concurrent callers wait for one token
    /// request. The background renewal fetches without it, so callers keep the current token.
    cached: tokio::sync::Mutex<Option<Cached>>,
    /// Signalled when an on-demand fetch replaced the token (the renewal plans anew).
    replaced: Notify,
}

#[derive(Debug, Clone)]
struct Cached {
    token: String,
    /// When the background renewal runs.
    refresh_at: Instant,
    /// From when `get` fetches a new one itself.
    renew_at: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

/// A failed token request, with the issuer's `Retry-After` if it gave one.
struct FetchError {
    message: String,
    retry_after: Option<Duration>,
}

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
            inner: Arc::new(Inner {
                http,
                token_url: token_url.into(),
                client_id: client_id.into(),
                client_secret,
                cached: tokio::sync::Mutex::new(None),
                replaced: Notify::new(),
            }),
            refresher: Mutex::new(None),
        })
    }

    /// A valid token, from memory or freshly requested.
    pub async fn get(&self) -> Result<String, LookupError> {
        let mut cached = self.inner.cached.lock().await;
        if let Some(current) = cached.as_ref()
            && Instant::now() < current.renew_at
        {
            return Ok(current.token.clone());
        }
        let fresh = self.inner.fetch().await.map_err(|error| {
            count_renewal("on_demand", "failed");
            LookupError(error.message)
        })?;
        count_renewal("on_demand", "ok");
        let token = fresh.token.clone();
        *cached = Some(fresh);
        drop(cached);
        self.inner.replaced.notify_one();
        self.start_refresher();
        Ok(token)
    }

    /// Forgets the cached token (the issuer refused it): the next [`ServiceToken::get`] fetches
    /// one.
    pub async fn invalidate(&self) {
        *self.inner.cached.lock().await = None;
    }

    /// Starts the background renewal unless it runs.
    fn start_refresher(&self) {
        let mut refresher = self
            .refresher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if refresher.as_ref().is_none_or(JoinHandle::is_finished) {
            *refresher = Some(tokio::spawn(renew_in_background(Arc::clone(&self.inner))));
        }
    }
}

impl Drop for ServiceToken {
    fn drop(&mut self) {
        let refresher = self
            .refresher
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(task) = refresher.take() {
            task.abort();
        }
    }
}

impl Inner {
    async fn fetch(&self) -> Result<Cached, FetchError> {
        let failed = |message: String| FetchError {
            message,
            retry_after: None,
        };
        let response = self
            .http
            .post(&self.token_url)
            .basic_auth(&self.client_id, Some(self.client_secret.expose_secret()))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(|e| failed(format!("token request: {e}")))?;
        if !response.status().is_success() {
            let retry_after = response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|secs| Duration::from_secs(secs).min(MAX_RETRY_AFTER));
            return Err(FetchError {
                message: format!("token request answered HTTP {}", response.status().as_u16()),
                retry_after,
            });
        }
        let body: TokenResponse = response
            .json()
            .await
            .map_err(|e| failed(format!("token response: {e}")))?;
        let now = Instant::now();
        let lifetime = Duration::from_secs(body.expires_in);
        let margin = RENEW_MARGIN.min(lifetime / 10);
        let refresh_after = lifetime.mul_f64(REFRESH_FROM + (REFRESH_TO - REFRESH_FROM) * unit());
        Ok(Cached {
            token: body.access_token,
            refresh_at: now + refresh_after,
            renew_at: now + lifetime.saturating_sub(margin),
        })
    }

    /// When the background renewal is due: `None` without a token.
    async fn due(&self) -> Option<Instant> {
        self.cached.lock().await.as_ref().map(|c| c.refresh_at)
    }
}

/// Renews the token at its `refresh_at`, retrying until it succeeds; plans anew whenever an
/// on-demand fetch replaced it. Runs until the [`ServiceToken`] is dropped.
async fn renew_in_background(inner: Arc<Inner>) {
    let mut failures: u32 = 0;
    loop {
        let Some(due) = inner.due().await else {
            // Invalidated: the next `get` fetches a token and wakes us.
            inner.replaced.notified().await;
            continue;
        };
        tokio::select! {
            () = tokio::time::sleep_until(due.into()) => {}
            () = inner.replaced.notified() => {
                failures = 0;
                continue;
            }
        }
        match inner.fetch().await {
            Ok(fresh) => {
                count_renewal("background", "ok");
                if failures > 0 {
                    tracing::info!(failures, "service token renewed after failed attempts");
                }
                failures = 0;
                *inner.cached.lock().await = Some(fresh);
            }
            Err(error) => {
                count_renewal("background", "failed");
                failures = failures.saturating_add(1);
                let wait = retry_delay(failures, error.retry_after);
                tracing::warn!(
                    error = %error.message,
                    failures,
                    retry_in = ?wait,
                    "service token renewal failed; the current token stays in use, retrying"
                );
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = inner.replaced.notified() => failures = 0,
                }
            }
        }
    }
}

/// The wait before retry `failures`: [`RETRY_BASE`] doubling up to [`RETRY_MAX`], a random
/// part of it (half to all, so that verifiers do not retry in step), and at least what the
/// issuer asked for.
fn retry_delay(failures: u32, retry_after: Option<Duration>) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    let backoff = RETRY_BASE
        .saturating_mul(1 << doublings)
        .min(RETRY_MAX)
        .mul_f64(0.5 + 0.5 * unit());
    backoff.max(retry_after.unwrap_or_default())
}

/// A uniform random number in [0, 1).
fn unit() -> f64 {
    let mut bytes = [0u8; 4];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        return 0.5;
    }
    f64::from(u32::from_be_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}

fn count_renewal(path: &'static str, outcome: &'static str) {
    metrics::counter!(
        "auth_service_token_renewals_total",
        "path" => path,
        "outcome" => outcome
    )
    .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_with_jitter_up_to_the_cap_and_honour_retry_after() {
        for failures in 1..40 {
            let delay = retry_delay(failures, None);
            let doublings = (failures - 1).min(16);
            let full = RETRY_BASE.saturating_mul(1 << doublings).min(RETRY_MAX);
            assert!(delay >= full / 2 && delay <= full, "{failures}: {delay:?}");
        }
        assert_eq!(
            retry_delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert!(retry_delay(6, Some(Duration::from_millis(1))) >= RETRY_MAX / 2);
    }

    #[test]
    fn unit_is_in_range() {
        for _ in 0..1000 {
            let u = unit();
            assert!((0.0..1.0).contains(&u), "{u}");
        }
    }
}
