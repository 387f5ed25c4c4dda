//! The remote key-set client: fetches the issuer's JWKS, validates it whole, and serves keys
//! from memory.
//!
//! - Fetches are single-flight and rate-limited: a moka cache holding the outcome of the last
//!   fetch for `min_refetch_interval` makes every concurrent or repeated caller share one
//!   fetch. A flood of tokens with unknown `kid`s therefore costs the issuer at most one request
//!   per interval, and a failed fetch is not retried in a tight loop either.
//! - A background task refreshes the set every `refresh_interval`.
//! - A new set replaces the old one only when it parsed and holds at least one usable key; when
//!   a fetch fails the last good set keeps serving for up to `max_stale`, after which the
//!   verifier fails closed ([`AuthError::Unavailable`]).

use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use crate::error::{AuthError, RejectReason};
use crate::jwk::{JwkSet, KeySet, VerifyingKey};

/// Timing and size bounds of a [`JwksClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksConfig {
    pub url: String,
    /// How often the background task refetches the set.
    pub refresh_interval: Duration,
    /// At most one fetch per this interval, whatever triggers it.
    pub min_refetch_interval: Duration,
    /// Connect-and-read deadline of one fetch.
    pub timeout: Duration,
    /// How long the last good set keeps serving while fetches fail.
    pub max_stale: Duration,
    /// Largest accepted JWKS body.
    pub max_body_bytes: usize,
}

impl JwksConfig {
    pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(300);
    pub const DEFAULT_MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(10);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
    pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(24 * 3600);
    pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;

    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            refresh_interval: Self::DEFAULT_REFRESH_INTERVAL,
            min_refetch_interval: Self::DEFAULT_MIN_REFETCH_INTERVAL,
            timeout: Self::DEFAULT_TIMEOUT,
            max_stale: Self::DEFAULT_MAX_STALE,
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// Why one JWKS fetch failed. The previous key set stays in use.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("request failed: {0}")]
    Request(String),
    #[error("issuer answered HTTP {0}")]
    Status(u16),
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    #[error("not a JWKS document: {0}")]
    Invalid(String),
    #[error("no usable key in the set")]
    NoUsableKeys,
}

/// A cached, self-refreshing view of the issuer's JWKS. Cheap to clone.
#[derive(Clone)]
pub struct JwksClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: JwksConfig,
    http: reqwest::Client,
    current: RwLock<Option<Loaded>>,
    /// The single-flight gate: holds the last fetch's outcome for `min_refetch_interval`.
    last_fetch: moka::future::Cache<(), Result<(), FetchError>>,
}

#[derive(Clone)]
struct Loaded {
    keys: Arc<KeySet>,
    fetched_at: Instant,
}

impl std::fmt::Debug for JwksClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksClient")
            .field("url", &self.inner.config.url)
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl JwksClient {
    /// A client that has not fetched yet. See [`JwksClient::start`].
    pub fn new(config: JwksConfig) -> Result<Self, FetchError> {
        let http = crate::http::client_builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            // A JWKS location is configuration; a redirect must not move it elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "token-platform-verifier/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| FetchError::Request(e.to_string()))?;
        let last_fetch = moka::future::Cache::builder()
            .max_capacity(1)
            .time_to_live(config.min_refetch_interval)
            .build();
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                http,
                current: RwLock::new(None),
                last_fetch,
            }),
        })
    }

    /// A client that fetches at once and then every `refresh_interval` in a background task,
    /// which ends when the last clone of the client is dropped. Needs a Tokio runtime.
    pub fn start(config: JwksConfig) -> Result<Self, FetchError> {
        let client = Self::new(config)?;
        let weak = Arc::downgrade(&client.inner);
        tokio::spawn(refresh_loop(weak));
        Ok(client)
    }

    pub fn config(&self) -> &JwksConfig {
        &self.inner.config
    }

    /// The key `kid`. An unknown `kid` triggers a refetch (shared with every concurrent caller
    /// and at most one per `min_refetch_interval`) before it is refused.
    pub async fn key(&self, kid: &str) -> Result<Arc<VerifyingKey>, AuthError> {
        if let Some(keys) = self.usable_keys()
            && let Some(key) = keys.get(kid)
        {
            return Ok(key.clone());
        }
        metrics::counter!("jwks_unknown_kid_total").increment(1);
        self.refresh().await;
        match self.usable_keys() {
            Some(keys) => keys
                .get(kid)
                .cloned()
                .ok_or(AuthError::Unauthenticated(RejectReason::UnknownKey)),
            None => Err(AuthError::Unavailable),
        }
    }

    /// Whether a key set younger than `max_stale` is loaded.
    pub fn is_ready(&self) -> bool {
        self.usable_keys().is_some()
    }

    /// The age of the loaded key set, if any.
    pub fn age(&self) -> Option<Duration> {
        self.loaded().map(|l| l.fetched_at.elapsed())
    }

    /// Fetches the key set unless a fetch happened within `min_refetch_interval`; concurrent
    /// callers share one fetch. Returns whether the latest fetch succeeded.
    pub async fn refresh(&self) -> bool {
        self.inner
            .last_fetch
            .get_with((), self.fetch_and_install())
            .await
            .is_ok()
    }

    fn loaded(&self) -> Option<Loaded> {
        self.inner
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn usable_keys(&self) -> Option<Arc<KeySet>> {
        let loaded = self.loaded()?;
        if loaded.fetched_at.elapsed() <= self.inner.config.max_stale {
            Some(loaded.keys)
        } else {
            None
        }
    }

    async fn fetch_and_install(&self) -> Result<(), FetchError> {
        let url = &self.inner.config.url;
        match self.fetch().await {
            Ok(keys) => {
                metrics::counter!("jwks_fetch_total", "outcome" => "ok").increment(1);
                #[allow(clippy::cast_precision_loss)]
                metrics::gauge!("jwks_keys").set(keys.len() as f64);
                tracing::debug!(%url, keys = keys.len(), "JWKS loaded");
                *self
                    .inner
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Loaded {
                    keys: Arc::new(keys),
                    fetched_at: Instant::now(),
                });
                Ok(())
            }
            Err(error) => {
                metrics::counter!("jwks_fetch_total", "outcome" => "error").increment(1);
                match self.age() {
                    Some(age) => tracing::warn!(
                        %url, %error, stale_for_secs = age.as_secs(),
                        "JWKS fetch failed; serving the last good key set"
                    ),
                    None => {
                        tracing::warn!(%url, %error, "JWKS fetch failed; no key set loaded yet")
                    }
                }
                Err(error)
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, FetchError> {
        let config = &self.inner.config;
        let mut response = self
            .inner
            .http
            .get(&config.url)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| FetchError::Request(e.to_string()))?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        let too_large = FetchError::TooLarge(config.max_body_bytes);
        if response
            .content_length()
            .is_some_and(|len| len > config.max_body_bytes as u64)
        {
            return Err(too_large);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| FetchError::Request(e.to_string()))?
        {
            if body.len() + chunk.len() > config.max_body_bytes {
                return Err(too_large);
            }
            body.extend_from_slice(&chunk);
        }
        let document: JwkSet =
            serde_json::from_slice(&body).map_err(|e| FetchError::Invalid(e.to_string()))?;
        let (keys, dropped) = KeySet::from_jwks(&document);
        for key in &dropped {
            tracing::warn!(kid = ?key.kid, reason = %key.reason, "JWKS key dropped at ingestion");
        }
        metrics::counter!("jwks_keys_dropped_total").increment(dropped.len() as u64);
        if keys.is_empty() {
            return Err(FetchError::NoUsableKeys);
        }
        Ok(keys)
    }
}

async fn refresh_loop(inner: Weak<Inner>) {
    loop {
        let Some(inner) = inner.upgrade() else { return };
        let client = JwksClient { inner };
        let ok = client.refresh().await;
        let config = client.config();
        let pause = if ok {
            config.refresh_interval
        } else {
            config.min_refetch_interval
        };
        drop(client);
        tokio::time::sleep(pause).await;
    }
}
