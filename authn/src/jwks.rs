//! The remote key-set client: fetches the issuer's JWKS, validates it whole, and serves keys
//! from memory.
//!
//! - Fetches are single-flight and rate-limited: a moka cache holding the outcome of the last
//!   fetch for `min_refetch_interval` makes every concurrent or repeated caller share one
//!   fetch. A flood of tokens with unknown `kid`s therefore costs the issuer at most one request
//!   per interval, and a failed fetch is not retried in a tight loop either.
//! - A background task refreshes the set when the issuer's `Cache-Control: max-age` says it
//!   goes stale, bounded below by `min_refetch_interval` (so `no-cache` cannot turn into a fetch
//!   per request) and above by `refresh_interval`; refetches are conditional (`If-None-Match`).
//! - A new set replaces the old one only when it parsed and holds at least one usable key; when
//!   a fetch fails the last good set keeps serving for up to `max_stale`, after which the
//!   verifier fails closed ([`AuthError::Unavailable`]).
//! - The issuer's `KeyAdded` event ([`JwksClient::fetch_until_holds`]) fetches at once, past
//!   `min_refetch_interval` (the issuer announced a key: this is not a flood of unknown kids),
//!   still one fetch at a time. Every change of the set's `kid`s is announced on
//!   [`JwksClient::changes`], for the report of the keys a verifier holds
//!   ([`crate::key_report`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::watch;

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

/// A [`JwksClient`] that does not keep it alive: for background tasks that should end with it.
#[derive(Clone)]
pub struct WeakJwksClient(Weak<Inner>);

impl WeakJwksClient {
    /// The client, unless every clone of it has been dropped.
    pub fn upgrade(&self) -> Option<JwksClient> {
        self.0.upgrade().map(|inner| JwksClient { inner })
    }
}

struct Inner {
    config: JwksConfig,
    http: reqwest::Client,
    current: RwLock<Option<Loaded>>,
    /// The single-flight gate: holds the last fetch's outcome for `min_refetch_interval`.
    last_fetch: moka::future::Cache<(), Result<(), FetchError>>,
    /// One forced fetch at a time ([`JwksClient::refresh_now`]).
    forcing: tokio::sync::Mutex<()>,
    /// Fetches completed (successful or not): a forced fetch that waited for another one can
    /// tell that one finished meanwhile.
    fetches_completed: AtomicU64,
    /// Bumped whenever the set's `kid`s change.
    changed: watch::Sender<u64>,
}

#[derive(Clone)]
struct Loaded {
    keys: Arc<KeySet>,
    /// When the issuer last confirmed this set (a fresh body or a 304).
    fetched_at: Instant,
    etag: Option<http::HeaderValue>,
    /// The issuer's `max-age`, if it sent one.
    max_age: Option<Duration>,
}

/// What one successful fetch produced.
enum Fetched {
    New {
        keys: KeySet,
        etag: Option<http::HeaderValue>,
        max_age: Option<Duration>,
    },
    NotModified {
        max_age: Option<Duration>,
    },
}

/// The `max-age` of a `Cache-Control` header value (`no-cache` and `no-store` count as 0).
fn max_age(cache_control: Option<&http::HeaderValue>) -> Option<Duration> {
    let value = cache_control?.to_str().ok()?;
    value.split(',').map(str::trim).find_map(|directive| {
        if directive.eq_ignore_ascii_case("no-cache") || directive.eq_ignore_ascii_case("no-store")
        {
            return Some(Duration::ZERO);
        }
        let (name, seconds) = directive.split_once('=')?;
        name.trim().eq_ignore_ascii_case("max-age").then(|| {
            seconds
                .trim()
                .trim_matches('"')
                .parse()
                .ok()
                .map(Duration::from_secs)
        })?
    })
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
        let http = crate::outbound::http_client_builder()
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
                forcing: tokio::sync::Mutex::new(()),
                fetches_completed: AtomicU64::new(0),
                changed: watch::channel(0).0,
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

    /// A handle that does not keep the client alive.
    pub fn downgrade(&self) -> WeakJwksClient {
        WeakJwksClient(Arc::downgrade(&self.inner))
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

    /// Whether `kid` is in the usable key set, without fetching.
    pub fn has(&self, kid: &str) -> bool {
        self.usable_keys()
            .is_some_and(|keys| keys.get(kid).is_some())
    }

    /// Whether a key set younger than `max_stale` is loaded.
    pub fn is_ready(&self) -> bool {
        self.usable_keys().is_some()
    }

    /// The age of the loaded key set, if any.
    pub fn age(&self) -> Option<Duration> {
        self.loaded().map(|l| l.fetched_at.elapsed())
    }

    /// When the background task should refetch: the issuer's `max-age`, clamped to
    /// `[min_refetch_interval, refresh_interval]`.
    pub fn next_refresh_in(&self) -> Duration {
        let config = &self.inner.config;
        self.loaded()
            .and_then(|l| l.max_age)
            .unwrap_or(config.refresh_interval)
            .clamp(config.min_refetch_interval, config.refresh_interval)
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

    /// Fetches the key set now, even within `min_refetch_interval` of the last fetch: for a key
    /// the issuer announced. Forced fetches run one at a time, and a caller that waited while
    /// another fetch finished shares its result. The interval restarts from
    /// this fetch for the unknown-`kid` refetches. Returns whether a key set is loaded.
    pub async fn refresh_now(&self) -> bool {
        self.fetch_now_unless(None).await
    }

    /// [`JwksClient::refresh_now`], unless the set holds `kid` by the time this caller's turn
    /// comes.
    async fn fetch_now_unless(&self, kid: Option<&str>) -> bool {
        let completed_before = self.inner.fetches_completed.load(Ordering::Acquire);
        let _one_at_a_time = self.inner.forcing.lock().await;
        if self.inner.fetches_completed.load(Ordering::Acquire) > completed_before
            || kid.is_some_and(|kid| self.has(kid))
        {
            // A fetch finished while this call waited: callers share it (one that started a
            // moment too early is caught by the caller's retry, see `fetch_until_holds`).
            return self.is_ready();
        }
        if kid.is_some() {
            metrics::counter!("jwks_announced_fetch_total").increment(1);
        }
        self.inner.last_fetch.invalidate(&()).await;
        self.refresh().await
    }

    /// Fetches at once until the set holds `kid` (the issuer's `KeyAdded`): the replica that
    /// answers may not have loaded the new key yet, so a fetch without it is retried after
    /// 0.1, 0.2, 0.4, ... 6.4 s (12.7 s in all). Returns whether the set holds `kid`.
    pub async fn fetch_until_holds(&self, kid: &str) -> bool {
        let mut pause = Duration::from_millis(100);
        for attempt in 0..8 {
            if self.has(kid) {
                return true;
            }
            if attempt > 0 {
                tokio::time::sleep(pause).await;
                pause *= 2;
                if self.has(kid) {
                    return true;
                }
            }
            self.fetch_now_unless(Some(kid)).await;
        }
        let held = self.has(kid);
        if !held {
            tracing::warn!(
                kid,
                "the issuer announced a key that its JWKS still does not list; it will be \
                 picked up at the next refresh"
            );
        }
        held
    }

    /// The `kid`s of the usable key set, sorted; empty before the first fetch.
    pub fn kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self
            .usable_keys()
            .map(|keys| keys.kids().map(str::to_owned).collect())
            .unwrap_or_default();
        kids.sort();
        kids
    }

    /// Changes of the set's `kid`s: the value is bumped at each.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
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
        let result = self.fetch_and_install_once().await;
        self.inner.fetches_completed.fetch_add(1, Ordering::AcqRel);
        result
    }

    async fn fetch_and_install_once(&self) -> Result<(), FetchError> {
        let url = &self.inner.config.url;
        let previous = self.loaded();
        match self
            .fetch(previous.as_ref().and_then(|l| l.etag.clone()))
            .await
        {
            Ok(fetched) => {
                let loaded = match (fetched, previous) {
                    (
                        Fetched::New {
                            keys,
                            etag,
                            max_age,
                        },
                        _,
                    ) => {
                        tracing::debug!(%url, keys = keys.len(), "JWKS loaded");
                        Loaded {
                            keys: Arc::new(keys),
                            fetched_at: Instant::now(),
                            etag,
                            max_age,
                        }
                    }
                    (Fetched::NotModified { max_age }, Some(previous)) => Loaded {
                        fetched_at: Instant::now(),
                        max_age,
                        ..previous
                    },
                    (Fetched::NotModified { .. }, None) => {
                        return Err(FetchError::Invalid("304 without a cached set".into()));
                    }
                };
                metrics::counter!("jwks_fetch_total", "outcome" => "ok").increment(1);
                #[allow(clippy::cast_precision_loss)]
                {
                    metrics::gauge!("jwks_keys").set(loaded.keys.len() as f64);
                    metrics::gauge!("jwks_last_success_timestamp_seconds")
                        .set(crate::unix_now() as f64);
                }
                let kids = |keys: &KeySet| {
                    let mut kids: Vec<&str> = keys.kids().collect();
                    kids.sort_unstable();
                    kids.join(" ")
                };
                let changed = self.loaded().is_none_or(|previous| {
                    !Arc::ptr_eq(&previous.keys, &loaded.keys)
                        && kids(&previous.keys) != kids(&loaded.keys)
                });
                *self
                    .inner
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(loaded);
                if changed {
                    self.inner.changed.send_modify(|version| *version += 1);
                }
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

    async fn fetch(&self, etag: Option<http::HeaderValue>) -> Result<Fetched, FetchError> {
        let config = &self.inner.config;
        let mut request = self
            .inner
            .http
            .get(&config.url)
            .header(http::header::ACCEPT, "application/json");
        if let Some(etag) = etag {
            request = request.header(http::header::IF_NONE_MATCH, etag);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| FetchError::Request(e.to_string()))?;
        let max_age = max_age(response.headers().get(http::header::CACHE_CONTROL));
        if response.status() == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(Fetched::NotModified { max_age });
        }
        let etag = response.headers().get(http::header::ETAG).cloned();
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
        Ok(Fetched::New {
            keys,
            etag,
            max_age,
        })
    }
}

async fn refresh_loop(inner: Weak<Inner>) {
    loop {
        let Some(inner) = inner.upgrade() else { return };
        let client = JwksClient { inner };
        let pause = if client.refresh().await {
            client.next_refresh_in()
        } else {
            client.config().min_refetch_interval
        };
        drop(client);
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        let parse = |v: &'static str| max_age(Some(&http::HeaderValue::from_static(v)));
        assert_eq!(parse("public, max-age=300"), Some(Duration::from_secs(300)));
        assert_eq!(
            parse("max-age=\"60\", must-revalidate"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse("MAX-AGE=5"), Some(Duration::from_secs(5)));
        assert_eq!(parse("no-cache"), Some(Duration::ZERO));
        assert_eq!(parse("public"), None);
        assert_eq!(parse("max-age=soon"), None);
        assert_eq!(max_age(None), None);
    }
}
