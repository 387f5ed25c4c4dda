//! [`Snapshot`]: the key set as one replica loaded it, with everything derived from it (the
//! active signer, the JWKS document, the verifying keys). Replaced whole on every change.

use std::collections::HashMap;
use std::sync::Arc;

use authn::jwk::{JwkSet, KeySet};
use authn::sign::Signer;

use super::KeyStoreError;
use super::publication::{PublishedJwks, published_set};
use super::schedule::{KeyInfo, KeyState, KeyTiming};

/// The key set as loaded by this replica.
pub(super) struct Snapshot {
    pub(super) keys: Vec<KeyInfo>,
    /// Private keys of the published keys, by `kid`.
    pub(super) signers: HashMap<String, Arc<Signer>>,
    pub(super) active: Arc<Signer>,
    pub(super) jwks: Arc<PublishedJwks>,
    key_set: JwkSet,
    /// The lock row's version this was read at (`None`: a mounted directory, re-read each time).
    pub(super) version: Option<i64>,
}

impl Snapshot {
    pub(super) fn build(
        mut keys: Vec<KeyInfo>,
        signers: HashMap<String, Arc<Signer>>,
        version: Option<i64>,
        timing: &KeyTiming,
    ) -> Result<Self, KeyStoreError> {
        keys.sort_by(|a, b| (a.activates_at, &a.kid).cmp(&(b.activates_at, &b.kid)));
        let active = keys
            .iter()
            .filter(|k| k.state == KeyState::Active)
            .max_by_key(|k| k.activates_at)
            .and_then(|k| signers.get(&k.kid))
            .cloned()
            .ok_or(KeyStoreError::NoActive)?;
        let key_set = published_set(&keys, &signers);
        Ok(Self {
            jwks: Arc::new(PublishedJwks::new(&key_set, timing)),
            key_set,
            keys,
            signers,
            active,
            version,
        })
    }

    pub(super) fn same_keys(&self, other: &Snapshot) -> bool {
        self.keys == other.keys && self.jwks.etag == other.jwks.etag
    }

    /// The published keys as a verifier ingests them; our own keys must pass the same policy.
    pub(super) fn verifying_keys(&self) -> Result<KeySet, KeyStoreError> {
        let (key_set, dropped) = KeySet::from_jwks(&self.key_set);
        match dropped.first() {
            Some(dropped) => Err(KeyStoreError::OwnKey(dropped.reason.to_string())),
            None => Ok(key_set),
        }
    }

    pub(super) fn record_metrics(&self) {
        for state in KeyState::ALL {
            let count = self.keys.iter().filter(|k| k.state == state).count();
            #[allow(clippy::cast_precision_loss)]
            metrics::gauge!("auth_signing_keys", "state" => state.as_str()).set(count as f64);
        }
        // The active key's age is `time() - this` (the alert on a rotation that did not happen).
        if let Some(active) = self.keys.iter().find(|k| k.kid == self.active.kid()) {
            #[allow(clippy::cast_precision_loss)]
            metrics::gauge!("auth_signing_key_activated_timestamp_seconds")
                .set(active.activates_at as f64);
        }
    }
}
