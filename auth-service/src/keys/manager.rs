//! The key manager: the facade the rest of the issuer uses. It holds the set as this replica
//! loaded it ([`Snapshot`], swapped whole on every change) and the active signer, and hands
//! every change to [`Storage`]; [`KeyManager::spawn`] (in `task`) starts its background task.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use arc_swap::ArcSwap;
use authn::jwk::Algorithm;
use authn::sign::Signer;
use authn::verifier::LocalKeys;
use sqlx::AnyPool;
use tokio::sync::{Mutex, Notify};

use super::KeyStoreError;
use super::publication::PublishedJwks;
use super::schedule::{self, KeyInfo, KeyState, KeyTiming, Outcome};
use super::settings::KeySettings;
use super::snapshot::Snapshot;
use super::storage::{Applied, Storage};
use super::verifiers::{self, Coverage, ReportError, VerifierReports};
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
    /// Seconds added to the wall clock for the schedule's clock ([`KeyManager::now`]).
    clock_offset: AtomicI64,
    /// Wakes the background task for a tick before its interval: a verifier reported while a
    /// due key waits for it.
    poke: Notify,
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
                clock_offset: AtomicI64::new(0),
                poke: Notify::new(),
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
    /// step is due (a key to publish, activate or remove), applies it under the lock. A due
    /// `next` key signs once every connected verifier reported it, or after
    /// `AUTH_KEY_PROMOTION_MAX_WAIT`. Safe to call from every replica at once; only one
    /// applies each step.
    pub async fn tick(&self, now: i64) -> Result<Outcome, KeyStoreError> {
        self.reload().await?;
        if !self.inner.storage.store.is_writable() {
            return Ok(Outcome::default());
        }
        let timing = self.inner.storage.timing;
        let hint = self.keys();
        // The reports matter only while a key is due; most ticks need no query for them.
        let coverage = match schedule::due_next(&hint, now) {
            Some(_) => self.coverage().await?,
            None => Coverage::nobody(),
        };
        let waiting = schedule::due_next(&hint, now).map_or(0, |key| coverage.missing(&key.kid));
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!("auth_key_promotion_waiting_verifiers").set(waiting as f64);
        if schedule::tick(&mut hint.clone(), now, &timing, &coverage, None)
            .is_ok_and(|o| o.is_empty())
        {
            return Ok(Outcome::default());
        }
        let applied = self
            .inner
            .storage
            .mutate(now, &hint, |keys, fresh| {
                schedule::tick(keys, now, &timing, &coverage, fresh)
            })
            .await?;
        if !applied.outcome.activated.is_empty() {
            metrics::gauge!("auth_key_promotion_waiting_verifiers").set(0.0);
        }
        self.changed(applied).await
    }

    /// The schedule's clock, in Unix seconds: the wall clock, unless a test moved it
    /// ([`KeyManager::set_clock`]). The background task and the ticks a verifier's report
    /// triggers run at it.
    pub fn now(&self) -> i64 {
        crate::db::now().saturating_add(self.inner.clock_offset.load(Ordering::Acquire))
    }

    /// Moves this replica's schedule clock so that [`KeyManager::now`] reads `at` now, for tests
    /// that drive the schedule through time (the background task then ticks at that time too).
    /// Reports keep the wall clock.
    pub fn set_clock(&self, at: i64) {
        self.inner
            .clock_offset
            .store(at.saturating_sub(crate::db::now()), Ordering::Release);
    }

    /// The verifiers' reports.
    pub fn reports(&self) -> &VerifierReports {
        &self.inner.storage.reports
    }

    /// What the live reports say now.
    pub async fn coverage(&self) -> Result<Coverage, KeyStoreError> {
        Ok(self.reports().coverage(verifiers::now_ms()).await?)
    }

    /// Records a verifier's report (`SessionService.ReportKeys`). When a due `next` key waits
    /// for verifiers, the background task ticks at once, so the key signs as soon as the last
    /// of them holds it rather than at the next reload interval.
    pub async fn report(
        &self,
        client_id: &str,
        instance: &str,
        kids: &[String],
    ) -> Result<(), ReportError> {
        self.reports()
            .record(client_id, instance, kids, verifiers::now_ms())
            .await?;
        let snapshot = self.snapshot();
        if schedule::due_next(&snapshot.keys, self.now()).is_some() {
            self.inner.poke.notify_one();
        }
        Ok(())
    }

    /// Resolves when a report asks for a tick before the interval.
    pub(super) async fn poked(&self) {
        self.inner.poke.notified().await;
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
        let applied = self
            .inner
            .storage
            .mutate_as(alg, now, &self.keys(), |keys, fresh| {
                schedule::rotate(keys, now, &timing, immediate, fresh)
            })
            .await?;
        self.changed(applied).await
    }

    /// Revokes `kid` at `now`: withdrawn from the JWKS at once and a `KeyRevoked` event on the
    /// revocation feed. The active key is first replaced by an immediate rotation.
    pub async fn revoke(&self, kid: &str, now: i64) -> Result<Outcome, KeyStoreError> {
        let applied = self
            .inner
            .storage
            .mutate(now, &self.keys(), |keys, fresh| {
                schedule::revoke(keys, kid, now, fresh)
            })
            .await?;
        self.changed(applied).await
    }

    /// Installs the set `applied` produced, then announces its events: a verifier told of a
    /// new key finds it in this replica's JWKS.
    async fn changed(&self, applied: Applied) -> Result<Outcome, KeyStoreError> {
        let outcome = &applied.outcome;
        if outcome.is_empty() {
            // Nothing to do after all: another replica did it while this one waited for the
            // lock. Catch up with what it did.
            self.reload().await?;
            return Ok(applied.announce(self.revocations()).await);
        }
        if let Some(kind) = outcome.rotation {
            metrics::counter!("auth_key_rotations_total", "kind" => kind.as_str()).increment(1);
        }
        if let Some(forced) = &outcome.forced {
            metrics::counter!("auth_key_promotions_forced_total").increment(1);
            tracing::warn!(
                kid = %forced.kid,
                missing = forced.missing,
                waited_secs = forced.waited_secs,
                "the next signing key signs although connected verifiers have not reported it \
                 (AUTH_KEY_PROMOTION_MAX_WAIT ran out); they refuse its tokens until they \
                 refetch the JWKS"
            );
        }
        tracing::info!(
            created = ?outcome.created,
            activated = ?outcome.activated,
            retired = ?outcome.retired,
            removed = ?outcome.removed,
            revoked = ?outcome.revoked,
            rescheduled = ?outcome.rescheduled,
            rotation = outcome.rotation.map(|k| k.as_str()),
            forced = outcome.forced.is_some(),
            "signing keys changed"
        );
        let installed = self.refresh(true).await;
        // Committed events are announced whatever happened to the reload.
        let outcome = applied.announce(self.revocations()).await;
        installed?;
        Ok(outcome)
    }

    /// The revocation feed key changes are announced on.
    pub(super) fn revocations(&self) -> &RevocationLog {
        &self.inner.storage.log
    }
}
