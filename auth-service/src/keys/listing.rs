//! The key set as `GET /v1/admin/keys` and `auth-service keys list|rotate|revoke` show it.

use serde::Serialize;

use super::manager::KeyManager;
use super::schedule::KeyInfo;

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
    pub keys: Vec<ListedKey>,
}

impl KeyListing {
    /// What `keys` (this replica's view) holds now.
    pub fn of(keys: &KeyManager) -> Self {
        let timing = keys.timing();
        Self {
            store: keys.store_kind().as_str(),
            signing_kid: keys.kid(),
            rotation_interval_secs: timing.rotation_interval.map(|d| d.as_secs()),
            prepublish_secs: timing.prepublish.as_secs(),
            jwks_max_age_secs: timing.jwks_max_age.as_secs(),
            keys: keys.listed(),
        }
    }
}

impl KeyManager {
    /// [`KeyManager::keys`] with their removal times.
    pub fn listed(&self) -> Vec<ListedKey> {
        let timing = self.timing();
        self.keys()
            .into_iter()
            .map(|info| ListedKey {
                removed_at: timing.removal_at(&info),
                alg: self.algorithm_of(&info.kid).map(|alg| alg.as_str()),
                info,
            })
            .collect()
    }
}
