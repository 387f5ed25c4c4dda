//! Storage: reading the key set from its store, and every change to it.
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
use std::sync::Arc;

use authn::jwk::Algorithm;
use authn::sign::Signer;
use sqlx::AnyPool;

use super::database;
use super::files::FileStore;
use super::schedule::{self, KeyInfo, KeyTiming, Outcome, PlanError};
use super::settings::KeySettings;
use super::snapshot::Snapshot;
use super::verifiers::{self, VerifierReports};
use super::{KeyStore, KeyStoreError};
use crate::sessions::revocation::{Appended, RevocationLog, Target};

/// A change applied to the key set: what it did, and the events it appended to the revocation
/// feed (`KeyRevoked`, `KeyAdded`), committed with it, to announce once this replica serves the
/// new set ([`Applied::announce`]): a verifier told of a new key fetches the JWKS at once.
#[derive(Debug)]
#[must_use = "announce the events once the new set is installed"]
pub(super) struct Applied {
    pub(super) outcome: Outcome,
    events: Vec<Appended>,
}

impl Applied {
    pub(super) async fn announce(self, log: &RevocationLog) -> Outcome {
        for event in self.events {
            log.announce(event).await;
        }
        self.outcome
    }
}

/// The key store and what does not change while serving.
pub(super) struct Storage {
    pool: AnyPool,
    pub(super) store: KeyStore,
    pub(super) timing: KeyTiming,
    pub(super) log: RevocationLog,
    /// What the verifiers reported they hold: a due `next` key waits for them.
    pub(super) reports: VerifierReports,
    /// `AUTH_SIGNING_ALG`: the algorithm of the keys generated without an explicit one.
    pub(super) signing_alg: Algorithm,
}

impl Storage {
    /// Opens the key store of `settings` (see [`KeyStore::from_settings`]), checks it against
    /// the database (importing the keys of `AUTH_KEYS_DIR` on a first `database` start), and
    /// catches up with the schedule, creating the first key of an empty store.
    pub(super) async fn open(
        pool: AnyPool,
        settings: &KeySettings,
        log: RevocationLog,
    ) -> Result<Self, KeyStoreError> {
        let timing = settings.timing()?;
        if timing.jwks_max_age < settings.jwks_max_age {
            tracing::info!(
                configured = ?settings.jwks_max_age,
                served = ?timing.jwks_max_age,
                prepublish = ?timing.prepublish,
                "JWKS max-age capped so that verifiers see a next key before it signs"
            );
        }
        let store = KeyStore::from_settings(settings)?;
        let storage = Self {
            reports: VerifierReports::new(pool.clone(), settings.verifier_report_ttl),
            pool,
            store,
            timing,
            log,
            signing_alg: settings.signing_alg,
        };
        storage.prepare(&settings.dir).await?;
        if storage.store.is_writable() {
            // Catch up with the schedule (and create the first key of an empty store) before
            // serving; most starts find nothing to do and take no lock.
            let timing = storage.timing;
            let now = crate::db::now();
            let stored = storage.records().await?;
            let coverage = storage.reports.coverage(verifiers::now_ms()).await?;
            if !schedule::tick(&mut stored.clone(), now, &timing, &coverage, None)
                .is_ok_and(|o| o.is_empty())
            {
                storage
                    .mutate(now, &stored, |keys, fresh| {
                        schedule::tick(keys, now, &timing, &coverage, fresh)
                    })
                    .await?
                    .announce(&storage.log)
                    .await;
            }
        }
        Ok(storage)
    }

    pub(super) async fn version(&self) -> Result<Option<i64>, KeyStoreError> {
        match self.store {
            KeyStore::Mounted(_) => Ok(None),
            KeyStore::Database(_) | KeyStore::Files(_) => {
                Ok(Some(database::version(&self.pool).await?))
            }
        }
    }

    /// Reads the whole key set, reusing the already parsed private keys of `previous`.
    pub(super) async fn load(
        &self,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, KeyStoreError> {
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
    pub(super) async fn records(&self) -> Result<Vec<KeyInfo>, KeyStoreError> {
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
    pub(super) async fn mutate<F>(
        &self,
        now: i64,
        hint: &[KeyInfo],
        plan: F,
    ) -> Result<Applied, KeyStoreError>
    where
        F: Fn(&mut Vec<KeyInfo>, Option<&str>) -> Result<Outcome, PlanError>,
    {
        self.mutate_as(self.signing_alg, now, hint, plan).await
    }

    /// [`Storage::mutate`], generating a key of `alg` if one is needed.
    pub(super) async fn mutate_as<F>(
        &self,
        alg: Algorithm,
        now: i64,
        hint: &[KeyInfo],
        plan: F,
    ) -> Result<Applied, KeyStoreError>
    where
        F: Fn(&mut Vec<KeyInfo>, Option<&str>) -> Result<Outcome, PlanError>,
    {
        if !self.store.is_writable() {
            return Err(KeyStoreError::ReadOnly);
        }
        let mut fresh = None;
        if plan(&mut hint.to_vec(), None) == Err(PlanError::NeedKey) {
            fresh = Some(generate(alg).await?);
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
                    fresh = Some(generate(alg).await?);
                    continue;
                }
                Err(error) => {
                    tx.rollback().await?;
                    return Err(error.into());
                }
            };
            if after == before {
                tx.rollback().await?;
                return Ok(Applied {
                    outcome,
                    events: Vec::new(),
                });
            }
            let fresh: Vec<_> = fresh.into_iter().collect();
            self.persist_in(&mut tx, &before, &after, &fresh).await?;
            // A revoked key for `hybrid` verifiers to refuse; a published one for them to fetch
            // at once (not the first key of an empty set: nobody verifies anything yet).
            let revoked = outcome
                .revoked
                .iter()
                .map(|kid| Target::KeyRevoked { kid: kid.clone() });
            let had_keys = before.iter().any(|k| k.state.is_published());
            let added = outcome
                .created
                .iter()
                .filter(|_| had_keys)
                .map(|kid| Target::KeyAdded { kid: kid.clone() });
            let mut events = Vec::new();
            for target in revoked.chain(added) {
                events.push(self.log.append_in(&mut tx, &target, now).await?);
            }
            tx.commit().await?;
            return Ok(Applied { outcome, events });
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

async fn generate(alg: Algorithm) -> Result<Arc<Signer>, KeyStoreError> {
    let signer = tokio::task::spawn_blocking(move || Signer::generate_for(alg))
        .await?
        .map_err(KeyStoreError::Generate)?;
    Ok(Arc::new(signer))
}
