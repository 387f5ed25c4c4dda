//! The key set as `GET /v1/admin/keys` and `auth-service keys list|rotate|revoke` show it.

use serde::Serialize;

use super::KeyStoreError;
use super::manager::KeyManager;
use super::schedule::{KeyInfo, KeyState};
use super::verifiers::{Coverage, KeyCoverage};

/// One key as listed by the admin API and the command line.
#[derive(Debug, Clone, Serialize)]
pub struct ListedKey {
    #[serde(flatten)]
    pub info: KeyInfo,
    /// When a retired or revoked key leaves the set.
    pub removed_at: Option<i64>,
    /// `RS256`, `ES256` or `EdDSA`; `null` for a key no longer published (its private key is
    /// not loaded).
    pub alg: Option<&'static str>,
    /// How many of the connected verifiers hold it (their last reports); `null` for a revoked
    /// key.
    pub verifiers: Option<KeyCoverage>,
}

/// The key set, its store and its schedule.
#[derive(Debug, Serialize)]
pub struct KeyListing {
    /// `database`, `files` or `mounted`.
    pub store: &'static str,
    /// The key that signs now.
    pub signing_kid: String,
    /// `null`: scheduled rotation is off.
    pub rotation_interval_secs: Option<u64>,
    pub prepublish_secs: u64,
    pub jwks_max_age_secs: u64,
    /// How long a due `next` key waits for the verifiers (`AUTH_KEY_PROMOTION_MAX_WAIT`).
    pub promotion_max_wait_secs: u64,
    /// Verifiers whose report has not expired.
    pub connected_verifiers: usize,
    /// Connected verifiers that do not hold the signing key (after an immediate rotation, until
    /// they fetch the JWKS): they refuse its tokens meanwhile.
    pub verifiers_without_signing_key: usize,
    pub keys: Vec<ListedKey>,
}

impl KeyListing {
    /// What `keys` (this replica's view) holds now, with what the verifiers reported.
    pub async fn load(keys: &KeyManager) -> Result<Self, KeyStoreError> {
        Ok(Self::of(keys, &keys.coverage().await?))
    }

    /// What `keys` (this replica's view) holds now, with `coverage`.
    pub fn of(keys: &KeyManager, coverage: &Coverage) -> Self {
        let timing = keys.timing();
        let signing_kid = keys.kid();
        Self {
            store: keys.store_kind().as_str(),
            rotation_interval_secs: timing.rotation_interval.map(|d| d.as_secs()),
            prepublish_secs: timing.prepublish.as_secs(),
            jwks_max_age_secs: timing.jwks_max_age.as_secs(),
            promotion_max_wait_secs: timing.promotion_max_wait.as_secs(),
            connected_verifiers: coverage.connected,
            verifiers_without_signing_key: coverage.missing(&signing_kid),
            signing_kid,
            keys: keys.listed(coverage),
        }
    }
}

impl KeyManager {
    /// [`KeyManager::keys`] with their removal times and how many verifiers hold each.
    pub fn listed(&self, coverage: &Coverage) -> Vec<ListedKey> {
        let timing = self.timing();
        self.keys()
            .into_iter()
            .map(|info| ListedKey {
                removed_at: timing.removal_at(&info),
                alg: self.algorithm_of(&info.kid).map(|alg| alg.as_str()),
                verifiers: (info.state != KeyState::Revoked).then(|| coverage.of_key(&info.kid)),
                info,
            })
            .collect()
    }
}
