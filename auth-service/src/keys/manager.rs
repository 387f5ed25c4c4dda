//! The key manager: the facade the rest of the issuer uses. It holds the set as this replica
//! loaded it ([`Snapshot`], swapped whole on every change) and the active signer, and hands
//! every change to [`Storage`]; [`KeyManager::spawn`] (in `task`) starts its background task.

use std::sync::Arc;

use arc_swap::ArcSwap;
use authn::jwk::Algorithm;
use authn::sign::Signer;
use authn::verifier::LocalKeys;
use sqlx::AnyPool;
use tokio::sync::Mutex;

use super::KeyStoreError;
use super::publication::PublishedJwks;
use super::schedule::{self, KeyInfo, KeyState, KeyTiming, Outcome};
use super::settings::KeySettings;
use super::snapshot::Snapshot;
use super::storage::Storage;
use crate::config::KeyStoreKind;
use crate::sessions::revocation::RevocationLog;

/// The key that signs now, replaced when the active key changes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ActiveSigner(Arc<ArcSwap<Signer>>);

impl ActiveSigner {
    fn new(signer: Arc<Signer>) -> Self {
        Self(Arc::new(ArcSwap::new(signer)))
    }

    pub fn get(&self) -> Arc<Signer> {
        self.0.load_full()
    }

    fn set(&self, signer: Arc<Signer>) {
        self.0.store(signer);
    }
}

/// The signing keys of this issuer. Cheap to clone.
#[derive(Clone)]
pub struct KeyManager {
    inner: Arc<Inner>,
}

struct Inner {
    storage: Storage,
    current: ArcSwap<Snapshot>,
    signer: ActiveSigner,
    local: LocalKeys,
    /// One reload at a time in this process.
    reloading: Mutex<()>,
}

impl std::fmt::Debug for KeyManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyManager")
            .field("store", &self.store_kind())
            .field("kid", &self.kid())
            .finish_non_exhaustive()
    }
}

impl KeyManager {
    /// Opens the key store of `settings` (see [`super::KeyStore::from_settings`]), creates the
    /// first key of an empty store, and loads the set. Fails when the store cannot be read: a
    /// wrong encryption key, a corrupt file, a mounted directory without `signing-key.pem`.
    pub async fn open(
        pool: AnyPool,
        settings: &KeySettings,
        log: RevocationLog,
    ) -> Result<Self, KeyStoreError> {
        let storage = Storage::open(pool, settings, log).await?;
        let snapshot = storage.load(None).await?;
        tracing::info!(
            store = storage.store.kind().as_str(),
            kid = snapshot.active.kid(),
            keys = snapshot.keys.len(),
            "signing keys loaded"
        );
        let key_set = snapshot.verifying_keys()?;
        snapshot.record_metrics();
        // The rotation interval in effect: none when only an operator rotates (interval 0, or
        // the read-only mounted store, which never rotates by itself).
        let scheduled = storage
            .timing
            .rotation_interval
            .filter(|_| storage.store.is_writable());
        metrics::gauge!("auth_signing_key_rotation_interval_seconds")
            .set(scheduled.map_or(0.0, |interval| interval.as_secs_f64()));
        Ok(Self {
            inner: Arc::new(Inner {
                signer: ActiveSigner::new(snapshot.active.clone()),
                local: LocalKeys::new(key_set),
                current: ArcSwap::from_pointee(snapshot),
                storage,
                reloading: Mutex::new(()),
            }),
        })
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.current.load_full()
    }

    /// The key that signs now.
    pub fn signer(&self) -> Arc<Signer> {
        self.inner.signer.get()
    }

    /// The `kid` of the key that signs now.
    pub fn kid(&self) -> String {
        self.signer().kid().to_owned()
    }

    /// A handle on the key that signs, for the token issuer.
    pub fn active_signer(&self) -> ActiveSigner {
        self.inner.signer.clone()
    }

    /// The published keys as the issuer's own verifier sees them, replaced on every change.
    pub fn local_keys(&self) -> LocalKeys {
        self.inner.local.clone()
    }

    /// The JWKS document to serve.
    pub fn jwks(&self) -> Arc<PublishedJwks> {
        self.snapshot().jwks.clone()
    }

    /// Every key this replica knows, in activation order.
    pub fn keys(&self) -> Vec<KeyInfo> {
        self.snapshot().keys.clone()
    }

    /// The schedule's timing (the served JWKS max-age included).
    /// The algorithm of the published key `kid` (`None`: not published).
    pub fn algorithm_of(&self, kid: &str) -> Option<Algorithm> {
        self.snapshot().signers.get(kid).map(|s| s.algorithm())
    }

    pub fn timing(&self) -> KeyTiming {
        self.inner.storage.timing
    }

    pub fn store_kind(&self) -> KeyStoreKind {
        self.inner.storage.store.kind()
    }

    fn install(&self, snapshot: Snapshot) -> Result<(), KeyStoreError> {
        let key_set = snapshot.verifying_keys()?;
        let previous = self.snapshot();
        if previous.active.kid() != snapshot.active.kid() {
            tracing::info!(
                from = previous.active.kid(),
                to = snapshot.active.kid(),
                "signing key changed"
            );
        }
        self.inner.signer.set(snapshot.active.clone());
        self.inner.local.replace(key_set);
        snapshot.record_metrics();
        self.inner.current.store(Arc::new(snapshot));
        Ok(())
    }

    /// Re-reads the key set if another replica (or the command line) changed it. Returns
    /// whether anything changed. On an error the current set stays in use.
    pub async fn reload(&self) -> Result<bool, KeyStoreError> {
        self.refresh(false).await
    }

    async fn refresh(&self, force: bool) -> Result<bool, KeyStoreError> {
        let _one_at_a_time = self.inner.reloading.lock().await;
        let current = self.snapshot();
        if !force
            && let Some(version) = current.version
            && self.inner.storage.version().await? == Some(version)
        {
            return Ok(false);
        }
        let loaded = self.inner.storage.load(Some(&current)).await?;
        let changed = !loaded.same_keys(&current);
        self.install(loaded)?;
        Ok(changed)
    }

    /// Runs the schedule at `now` (Unix seconds): catches up with the stored set, then, if a
    /// step is due (a key to publish, activate or remove), applies it under the lock. Safe to
    /// call from every replica at once; only one applies each step.
    pub async fn tick(&self, now: i64) -> Result<Outcome, KeyStoreError> {
        self.reload().await?;
        if !self.inner.storage.store.is_writable() {
            return Ok(Outcome::default());
        }
        let timing = self.inner.storage.timing;
        let hint = self.keys();
        if schedule::tick(&mut hint.clone(), now, &timing, None).is_ok_and(|o| o.is_empty()) {
            return Ok(Outcome::default());
        }
        let outcome = self
            .inner
            .storage
            .mutate(now, &hint, |keys, fresh| {
                schedule::tick(keys, now, &timing, fresh)
            })
            .await?;
        self.changed(&outcome).await?;
        Ok(outcome)
    }

    /// A manual rotation at `now`: the next key signs after the pre-publication window, or at
    /// once with `immediate` (verifiers that have not refetched the JWKS refuse its tokens
    /// until they do, which an unknown `kid` triggers, at most once per their minimum interval).
    pub async fn rotate(&self, now: i64, immediate: bool) -> Result<Outcome, KeyStoreError> {
        self.rotate_as(now, immediate, None).await
    }

    /// [`KeyManager::rotate`] to a key of `alg` (`keys rotate --alg`); `None`: the configured
    /// `AUTH_SIGNING_ALG`. A pending next key of another algorithm is an error rather than
    /// silently promoted: revoke it first, or rotate without `--alg`.
    pub async fn rotate_as(
        &self,
        now: i64,
        immediate: bool,
        alg: Option<Algorithm>,
    ) -> Result<Outcome, KeyStoreError> {
        let timing = self.inner.storage.timing;
        let snapshot = self.snapshot();
        if let Some(requested) = alg
            && let Some(next) = snapshot
                .keys
                .iter()
                .filter(|k| k.state == KeyState::Next)
                .find_map(|k| snapshot.signers.get(&k.kid))
            && next.algorithm() != requested
        {
            return Err(KeyStoreError::NextKeyAlgorithm {
                next: next.algorithm(),
                requested,
            });
        }
        let alg = alg.unwrap_or(self.inner.storage.signing_alg);
        let outcome = self
            .inner
            .storage
            .mutate_as(alg, now, &self.keys(), |keys, fresh| {
                schedule::rotate(keys, now, &timing, immediate, fresh)
            })
            .await?;
        self.changed(&outcome).await?;
        Ok(outcome)
    }

    /// Revokes `kid` at `now`: withdrawn from the JWKS at once and a `KeyRevoked` event on the
    /// revocation feed. The active key is first replaced by an immediate rotation.
    pub async fn revoke(&self, kid: &str, now: i64) -> Result<Outcome, KeyStoreError> {
        let outcome = self
            .inner
            .storage
            .mutate(now, &self.keys(), |keys, fresh| {
                schedule::revoke(keys, kid, now, fresh)
            })
            .await?;
        self.changed(&outcome).await?;
        Ok(outcome)
    }

    async fn changed(&self, outcome: &Outcome) -> Result<(), KeyStoreError> {
        if outcome.is_empty() {
            // Nothing to do after all: another replica did it while this one waited for the
            // lock. Catch up with what it did.
            self.reload().await?;
            return Ok(());
        }
        if let Some(kind) = outcome.rotation {
            metrics::counter!("auth_key_rotations_total", "kind" => kind.as_str()).increment(1);
        }
        tracing::info!(
            created = ?outcome.created,
            activated = ?outcome.activated,
            retired = ?outcome.retired,
            removed = ?outcome.removed,
            revoked = ?outcome.revoked,
            rescheduled = ?outcome.rescheduled,
            rotation = outcome.rotation.map(|k| k.as_str()),
            "signing keys changed"
        );
        self.refresh(true).await?;
        Ok(())
    }

    /// The revocation feed key changes are announced on.
    pub(super) fn revocations(&self) -> &RevocationLog {
        &self.inner.storage.log
    }
}
