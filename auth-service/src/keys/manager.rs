//! The key manager: the loaded key set, the changes to it, and the background task that runs
//! the schedule on every replica.
//!
//! Every change (a scheduled step, a manual rotation, a revocation) is one transaction that
//! first takes the row lock of `signing_key_lock`, then re-reads the key set and plans the
//! change on what it read. Two replicas that decide to rotate at the same moment therefore run
//! one after the other, and the second finds the work done: a transaction-level lock rather
//! than a leader lease, so there is no lease to expire under a slow replica and no fencing to
//! get wrong. The lock row's `version` changes with every commit; replicas compare it every
//! `AUTH_KEY_RELOAD_INTERVAL` (one tiny query) and on every `KeyRevoked` event of the
//! revocation feed, and reload the set when it moved.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use authn::jwk::{JwkSet, KeySet};
use authn::sign::Signer;
use authn::verifier::LocalKeys;
use axum::body::Bytes;
use http::HeaderValue;
use sqlx::AnyPool;
use tokio::sync::{Mutex, broadcast, watch};
use tokio::task::JoinHandle;

use super::database;
use super::files::FileStore;
use super::schedule::{self, KeyInfo, KeyState, KeyTiming, Outcome, PlanError};
use super::{KeyStore, KeyStoreError};
use crate::config::{Config, KeyStoreKind};
use crate::revocation::{RevocationLog, Target};

/// The key that signs now, replaced when the active key changes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ActiveSigner(Arc<RwLock<Arc<Signer>>>);

impl ActiveSigner {
    fn new(signer: Arc<Signer>) -> Self {
        Self(Arc::new(RwLock::new(signer)))
    }

    pub fn get(&self) -> Arc<Signer> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set(&self, signer: Arc<Signer>) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = signer;
    }
}

/// The JWKS document as served: bytes, their `ETag`, and the `Cache-Control` header.
#[derive(Debug, Clone)]
pub struct PublishedJwks {
    pub body: Bytes,
    /// A strong validator: the base64url SHA-256 of the body, quoted.
    pub etag: HeaderValue,
    pub cache_control: HeaderValue,
}

impl PublishedJwks {
    fn new(jwks: &JwkSet, timing: &KeyTiming) -> Self {
        let body = serde_json::to_vec(jwks).expect("BUG: a JWKS always serializes");
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body);
        let etag = HeaderValue::from_str(&format!("\"{}\"", authn::jws::b64_encode(digest)))
            .expect("BUG: an ETag is ASCII");
        let cache_control = HeaderValue::from_str(&format!(
            "public, max-age={}",
            timing.jwks_max_age.as_secs()
        ))
        .expect("BUG: a Cache-Control value is ASCII");
        Self {
            body: Bytes::from(body),
            etag,
            cache_control,
        }
    }

    /// Whether an `If-None-Match` header value names this document (weak comparison, RFC 9110
    /// §13.1.2).
    pub fn matches(&self, if_none_match: &HeaderValue) -> bool {
        let Ok(value) = if_none_match.to_str() else {
            return false;
        };
        let ours = self.etag.to_str().unwrap_or_default();
        value
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == ours)
    }
}

/// The key set as loaded by this replica.
struct Snapshot {
    keys: Vec<KeyInfo>,
    /// Private keys of the published keys, by `kid`.
    signers: HashMap<String, Arc<Signer>>,
    active: Arc<Signer>,
    jwks: Arc<PublishedJwks>,
    key_set: JwkSet,
    /// The lock row's version this was read at (`None`: a mounted directory, re-read each time).
    version: Option<i64>,
}

impl Snapshot {
    fn build(
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
        // Published: the active key first, then the pending ones, then the retired ones.
        let mut published: Vec<&KeyInfo> = keys.iter().filter(|k| k.state.is_published()).collect();
        published.sort_by_key(|k| {
            let rank = match k.state {
                KeyState::Active => 0,
                KeyState::Next => 1,
                KeyState::Retired | KeyState::Revoked => 2,
            };
            (rank, std::cmp::Reverse(k.activates_at))
        });
        let key_set = JwkSet::from_keys(
            published
                .iter()
                .filter_map(|k| signers.get(&k.kid))
                .map(|s| s.public_jwk()),
        );
        Ok(Self {
            jwks: Arc::new(PublishedJwks::new(&key_set, timing)),
            key_set,
            keys,
            signers,
            active,
            version,
        })
    }

    fn same_keys(&self, other: &Snapshot) -> bool {
        self.keys == other.keys && self.jwks.etag == other.jwks.etag
    }

    /// The published keys as a verifier ingests them; our own keys must pass the same policy.
    fn verifying_keys(&self) -> Result<KeySet, KeyStoreError> {
        let (key_set, dropped) = KeySet::from_jwks(&self.key_set);
        match dropped.first() {
            Some(dropped) => Err(KeyStoreError::OwnKey(dropped.reason.to_string())),
            None => Ok(key_set),
        }
    }

    fn record_metrics(&self) {
        for state in KeyState::ALL {
            let count = self.keys.iter().filter(|k| k.state == state).count();
            #[allow(clippy::cast_precision_loss)]
            metrics::gauge!("auth_signing_keys", "state" => state.as_str()).set(count as f64);
        }
    }
}

/// What does not change while serving.
struct Core {
    pool: AnyPool,
    store: KeyStore,
    timing: KeyTiming,
    log: RevocationLog,
}

async fn generate() -> Result<Arc<Signer>, KeyStoreError> {
    let signer = tokio::task::spawn_blocking(Signer::generate)
        .await?
        .map_err(KeyStoreError::Generate)?;
    Ok(Arc::new(signer))
}

impl Core {
    async fn version(&self) -> Result<Option<i64>, KeyStoreError> {
        match self.store {
            KeyStore::Mounted(_) => Ok(None),
            KeyStore::Database(_) | KeyStore::Files(_) => {
                Ok(Some(database::version(&self.pool).await?))
            }
        }
    }

    /// Reads the whole key set, reusing the already parsed private keys of `previous`.
    async fn load(&self, previous: Option<&Snapshot>) -> Result<Snapshot, KeyStoreError> {
        let version = self.version().await?;
        let (keys, signers) = match &self.store {
            KeyStore::Mounted(mounted) => {
                let scanned = mounted.scan().await?;
                let signers = scanned
                    .iter()
                    .map(|(k, s)| (k.kid.clone(), s.clone()))
                    .collect();
                (scanned.into_iter().map(|(k, _)| k).collect(), signers)
            }
            KeyStore::Database(_) | KeyStore::Files(_) => {
                let keys = self.records().await?;
                let mut signers = HashMap::new();
                for key in keys.iter().filter(|k| k.state.is_published()) {
                    let cached = previous.and_then(|p| p.signers.get(&key.kid)).cloned();
                    let signer = match cached {
                        Some(signer) => signer,
                        None => Arc::new(self.signer(&key.kid).await?),
                    };
                    signers.insert(key.kid.clone(), signer);
                }
                (keys, signers)
            }
        };
        Snapshot::build(keys, signers, version, &self.timing)
    }

    async fn signer(&self, kid: &str) -> Result<Signer, KeyStoreError> {
        match &self.store {
            KeyStore::Database(db) => db.signer(&self.pool, kid).await,
            KeyStore::Files(files) => files.signer(kid).await,
            KeyStore::Mounted(_) => Err(KeyStoreError::ReadOnly),
        }
    }

    /// The keys' metadata, outside any transaction.
    async fn records(&self) -> Result<Vec<KeyInfo>, KeyStoreError> {
        match &self.store {
            KeyStore::Database(_) => database::records(&mut *self.pool.acquire().await?).await,
            KeyStore::Files(files) => files.records().await,
            KeyStore::Mounted(mounted) => {
                Ok(mounted.scan().await?.into_iter().map(|(k, _)| k).collect())
            }
        }
    }

    async fn records_in(
        &self,
        conn: &mut sqlx::AnyConnection,
    ) -> Result<Vec<KeyInfo>, KeyStoreError> {
        match &self.store {
            KeyStore::Database(_) => database::records(conn).await,
            KeyStore::Files(files) => files.records().await,
            KeyStore::Mounted(_) => Err(KeyStoreError::ReadOnly),
        }
    }

    async fn persist_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        before: &[KeyInfo],
        after: &[KeyInfo],
        fresh: &[Arc<Signer>],
    ) -> Result<(), KeyStoreError> {
        match &self.store {
            KeyStore::Database(db) => db.persist(conn, before, after, fresh).await,
            KeyStore::Files(files) => files.persist(after.to_vec(), fresh.first().cloned()).await,
            KeyStore::Mounted(_) => Err(KeyStoreError::ReadOnly),
        }
    }

    /// Applies `plan` to the key set under the lock. `hint` (this replica's view) tells whether
    /// a new key will be needed, so it is generated before the lock is taken; if the set moved
    /// meanwhile and a key is needed after all, the lock is released while one is generated.
    async fn mutate<F>(&self, now: i64, hint: &[KeyInfo], plan: F) -> Result<Outcome, KeyStoreError>
    where
        F: Fn(&mut Vec<KeyInfo>, Option<&str>) -> Result<Outcome, PlanError>,
    {
        if !self.store.is_writable() {
            return Err(KeyStoreError::ReadOnly);
        }
        let mut fresh = None;
        if plan(&mut hint.to_vec(), None) == Err(PlanError::NeedKey) {
            fresh = Some(generate().await?);
        }
        loop {
            let mut tx = self.pool.begin().await?;
            database::lock(&mut tx).await?;
            let before = self.records_in(&mut tx).await?;
            let mut after = before.clone();
            let outcome = match plan(&mut after, fresh.as_ref().map(|s| s.kid())) {
                Ok(outcome) => outcome,
                Err(PlanError::NeedKey) => {
                    tx.rollback().await?;
                    fresh = Some(generate().await?);
                    continue;
                }
                Err(error) => {
                    tx.rollback().await?;
                    return Err(error.into());
                }
            };
            if after == before {
                tx.rollback().await?;
                return Ok(outcome);
            }
            let fresh: Vec<_> = fresh.into_iter().collect();
            self.persist_in(&mut tx, &before, &after, &fresh).await?;
            let appended = match &outcome.revoked {
                Some(kid) => {
                    let target = Target::KeyRevoked { kid: kid.clone() };
                    Some(self.log.append_in(&mut tx, &target, now).await?)
                }
                None => None,
            };
            tx.commit().await?;
            if let Some(appended) = appended {
                self.log.announce(appended).await;
            }
            return Ok(outcome);
        }
    }

    /// Checks the store against the database, and moves keys of earlier deployments into the
    /// database on its first start with an encryption key.
    async fn prepare(&self, keys_dir: &std::path::Path) -> Result<(), KeyStoreError> {
        let in_database = database::count(&self.pool).await?;
        match &self.store {
            KeyStore::Files(_) | KeyStore::Mounted(_) if in_database > 0 => {
                Err(KeyStoreError::KeysInDatabase(self.store.kind().as_str()))
            }
            KeyStore::Database(_) if in_database == 0 => self.import(keys_dir).await,
            _ => Ok(()),
        }
    }

    /// Imports the keys of `dir` (`keys.json`, or a lone `signing-key.pem`), with their states,
    /// so tokens signed before the move keep verifying and the `kid` does not change.
    async fn import(&self, dir: &std::path::Path) -> Result<(), KeyStoreError> {
        let files = FileStore::new(dir);
        if !files.has_keys() {
            return Ok(());
        }
        let keys: Vec<KeyInfo> = files
            .records()
            .await?
            .into_iter()
            .filter(|k| k.state.is_published())
            .collect();
        let mut signers = Vec::with_capacity(keys.len());
        for key in &keys {
            signers.push(Arc::new(files.signer(&key.kid).await?));
        }
        let mut tx = self.pool.begin().await?;
        database::lock(&mut tx).await?;
        if !database::records(&mut tx).await?.is_empty() {
            // Another replica imported them first.
            return Ok(());
        }
        self.persist_in(&mut tx, &[], &keys, &signers).await?;
        tx.commit().await?;
        tracing::info!(
            dir = %dir.display(),
            keys = keys.len(),
            "imported the signing keys of the key directory into the database; the files are no longer read"
        );
        Ok(())
    }
}

/// The signing keys of this issuer. Cheap to clone.
#[derive(Clone)]
pub struct KeyManager {
    inner: Arc<Inner>,
}

struct Inner {
    core: Core,
    current: RwLock<Arc<Snapshot>>,
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

/// One key as listed by the admin API and the command line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ListedKey {
    #[serde(flatten)]
    pub info: KeyInfo,
    /// When a retired or revoked key leaves the set.
    pub removed_at: Option<i64>,
}

impl KeyManager {
    /// Opens the key store of `config` (see [`KeyStore::from_config`]), creates the first key
    /// of an empty store, and loads the set. Fails when the store cannot be read: a wrong
    /// encryption key, a corrupt file, a mounted directory without `signing-key.pem`.
    pub async fn open(
        pool: AnyPool,
        config: &Config,
        log: RevocationLog,
    ) -> Result<Self, KeyStoreError> {
        let timing = KeyTiming::new(
            config.key_rotation_interval,
            config.key_prepublish,
            config.key_reload_interval,
            config.jwks_max_age,
            config.access_token_ttl,
        )?;
        if timing.jwks_max_age < config.jwks_max_age {
            tracing::info!(
                configured = ?config.jwks_max_age,
                served = ?timing.jwks_max_age,
                prepublish = ?timing.prepublish,
                "JWKS max-age capped so that verifiers see a next key before it signs"
            );
        }
        let store = KeyStore::from_config(config)?;
        let core = Core {
            pool,
            store,
            timing,
            log,
        };
        core.prepare(&config.keys_dir).await?;
        if core.store.is_writable() {
            // Catch up with the schedule (and create the first key of an empty store) before
            // serving; most starts find nothing to do and take no lock.
            let timing = core.timing;
            let now = crate::db::now();
            let stored = core.records().await?;
            if !schedule::tick(&mut stored.clone(), now, &timing, None).is_ok_and(|o| o.is_empty())
            {
                core.mutate(now, &stored, |keys, fresh| {
                    schedule::tick(keys, now, &timing, fresh)
                })
                .await?;
            }
        }
        let snapshot = core.load(None).await?;
        tracing::info!(
            store = core.store.kind().as_str(),
            kid = snapshot.active.kid(),
            keys = snapshot.keys.len(),
            "signing keys loaded"
        );
        let key_set = snapshot.verifying_keys()?;
        snapshot.record_metrics();
        Ok(Self {
            inner: Arc::new(Inner {
                signer: ActiveSigner::new(snapshot.active.clone()),
                local: LocalKeys::new(key_set),
                current: RwLock::new(Arc::new(snapshot)),
                core,
                reloading: Mutex::new(()),
            }),
        })
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.inner
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
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

    /// [`KeyManager::keys`] with their removal times.
    pub fn listed(&self) -> Vec<ListedKey> {
        let timing = self.inner.core.timing;
        self.keys()
            .into_iter()
            .map(|info| ListedKey {
                removed_at: timing.removal_at(&info),
                info,
            })
            .collect()
    }

    pub fn timing(&self) -> KeyTiming {
        self.inner.core.timing
    }

    pub fn store_kind(&self) -> KeyStoreKind {
        self.inner.core.store.kind()
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
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(snapshot);
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
            && self.inner.core.version().await? == Some(version)
        {
            return Ok(false);
        }
        let loaded = self.inner.core.load(Some(&current)).await?;
        let changed = !loaded.same_keys(&current);
        self.install(loaded)?;
        Ok(changed)
    }

    /// Runs the schedule at `now` (Unix seconds): catches up with the stored set, then, if a
    /// step is due (a key to publish, activate or remove), applies it under the lock. Safe to
    /// call from every replica at once; only one applies each step.
    pub async fn tick(&self, now: i64) -> Result<Outcome, KeyStoreError> {
        self.reload().await?;
        if !self.inner.core.store.is_writable() {
            return Ok(Outcome::default());
        }
        let timing = self.inner.core.timing;
        let hint = self.keys();
        if schedule::tick(&mut hint.clone(), now, &timing, None).is_ok_and(|o| o.is_empty()) {
            return Ok(Outcome::default());
        }
        let outcome = self
            .inner
            .core
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
        let timing = self.inner.core.timing;
        let outcome = self
            .inner
            .core
            .mutate(now, &self.keys(), |keys, fresh| {
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
            .core
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

    /// Runs the schedule every `AUTH_KEY_RELOAD_INTERVAL` and reloads at once on a `KeyRevoked`
    /// event, until `stop` turns true.
    pub fn spawn(&self, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        let manager = self.clone();
        let mut events = self.inner.core.log.subscribe();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(manager.inner.core.timing.reload_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut feed_open = true;
            loop {
                tokio::select! {
                    () = crate::revocation::stopped(&mut stop) => return,
                    _ = tick.tick() => {
                        if let Err(error) = manager.tick(crate::db::now()).await {
                            tracing::warn!(%error, "signing key schedule failed; retrying at the next interval");
                        }
                    }
                    event = events.recv(), if feed_open => {
                        let reload = match event {
                            Ok(event) => matches!(event.target, Target::KeyRevoked { .. }),
                            Err(broadcast::error::RecvError::Lagged(_)) => true,
                            Err(broadcast::error::RecvError::Closed) => {
                                feed_open = false;
                                false
                            }
                        };
                        if reload && let Err(error) = manager.reload().await {
                            tracing::warn!(%error, "cannot reload the signing keys after a key revocation");
                        }
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn if_none_match_uses_the_weak_comparison() {
        let timing = KeyTiming::new(
            Duration::ZERO,
            None,
            Duration::from_secs(10),
            Duration::from_secs(300),
            Duration::from_secs(300),
        )
        .unwrap();
        let jwks = PublishedJwks::new(&JwkSet::default(), &timing);
        let etag = jwks.etag.to_str().unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() == 45);
        assert_eq!(jwks.cache_control, "public, max-age=300");
        let header = |v: &str| HeaderValue::from_str(v).unwrap();
        assert!(jwks.matches(&header(&etag)));
        assert!(jwks.matches(&header(&format!("W/{etag}"))));
        assert!(jwks.matches(&header(&format!("\"other\", {etag}"))));
        assert!(jwks.matches(&header("*")));
        assert!(!jwks.matches(&header("\"other\"")));
        assert!(!jwks.matches(&header(etag.trim_matches('"'))));
    }
}
