//! [`KeySettings`]: the key manager's own settings, taken from the service configuration
//! ([`KeySettings::from_config`]), so that nothing in [`super`] reads the rest of it.

use std::path::PathBuf;
use std::time::Duration;

use authn::jwk::Algorithm;
use secrecy::{ExposeSecret as _, SecretString};

use super::encryption::{EncryptionError, EncryptionKey};
use super::schedule::{KeyTiming, TimingError};
use crate::config::{Config, KeyStoreKind};

/// Where the signing keys live and how they rotate.
#[derive(Debug, Clone)]
pub struct KeySettings {
    /// `AUTH_KEY_STORE`.
    pub store: KeyStoreKind,
    /// `AUTH_KEYS_DIR`: the `files` and `mounted` stores' directory, and where a first
    /// `database` start imports keys from.
    pub dir: PathBuf,
    /// `AUTH_KEY_ENCRYPTION_KEY`.
    pub encryption_key: Option<SecretString>,
    /// `AUTH_KEY_ENCRYPTION_KEY_FILE`.
    pub encryption_key_file: Option<PathBuf>,
    /// `AUTH_KEY_ROTATION_INTERVAL`; zero: no scheduled rotation.
    pub rotation_interval: Duration,
    /// `AUTH_KEY_PREPUBLISH`; `None`: derived from the JWKS max-age.
    pub prepublish: Option<Duration>,
    /// `AUTH_KEY_RELOAD_INTERVAL`.
    pub reload_interval: Duration,
    /// `AUTH_JWKS_MAX_AGE` as configured; the served one may be shorter ([`KeyTiming`]).
    pub jwks_max_age: Duration,
    /// `AUTH_ACCESS_TOKEN_TTL`: how long a retired key must stay published.
    pub access_token_ttl: Duration,
    /// `AUTH_SIGNING_ALG`: the algorithm of generated keys (the first, scheduled rotations).
    pub signing_alg: Algorithm,
    /// `AUTH_KEY_PROMOTION_MAX_WAIT`: how long a due `next` key waits for the verifiers.
    pub promotion_max_wait: Duration,
    /// `AUTH_VERIFIER_REPORT_TTL`: how long a verifier's report of its keys counts.
    pub verifier_report_ttl: Duration,
}

impl KeySettings {
    /// The key settings of the service configuration.
    pub fn from_config(config: &Config) -> Self {
        let keys = &config.keys;
        Self {
            store: keys.store,
            dir: config.keys_dir.clone(),
            encryption_key: keys.encryption_key.clone(),
            encryption_key_file: keys.encryption_key_file.clone(),
            rotation_interval: keys.rotation_interval,
            prepublish: keys.prepublish,
            reload_interval: keys.reload_interval,
            jwks_max_age: config.jwks_max_age,
            access_token_ttl: config.access_token_ttl,
            signing_alg: keys.signing_alg,
            promotion_max_wait: keys.promotion_max_wait,
            verifier_report_ttl: keys.verifier_report_ttl,
        }
    }

    /// The schedule's timing, or why these settings cannot work.
    pub fn timing(&self) -> Result<KeyTiming, TimingError> {
        KeyTiming::new(
            self.rotation_interval,
            self.prepublish,
            self.reload_interval,
            self.jwks_max_age,
            self.access_token_ttl,
        )
        .map(|timing| timing.with_promotion_max_wait(self.promotion_max_wait))
    }

    /// The configured encryption key, from the value or from the file; `None` if neither is set.
    pub fn encryption_key(&self) -> Result<Option<EncryptionKey>, EncryptionError> {
        EncryptionKey::from_config(
            self.encryption_key.as_ref().map(|s| s.expose_secret()),
            self.encryption_key_file.as_deref(),
        )
    }
}

impl From<&Config> for KeySettings {
    fn from(config: &Config) -> Self {
        Self::from_config(config)
    }
}
