//! Signing keys: their lifecycle (`next` → `active` → `retired` → removed, or `revoked`), where
//! they are stored, and the [`KeyManager`] that runs the schedule, serves the JWKS and hands the
//! active key to the token issuer. `docs/KEYS.md` explains the timing rules and the runbook.
//!
//! - [`settings`]: what the keys take from the service configuration ([`KeySettings`]).
//! - [`schedule`]: the lifecycle as pure functions of the key list and the time.
//! - Stores ([`KeyStore`], `AUTH_KEY_STORE`): the database with private keys encrypted at rest
//!   ([`database`], [`encryption`]); PEM files the service manages ([`files::FileStore`]); PEM
//!   files the operator mounts, read-only ([`files::MountedStore`]).
//! - `storage`: reads the set from the store and applies every change to it under the
//!   database lock (one replica at a time).
//! - [`publication`]: the JWKS document as served (body, `ETag`, `Cache-Control: max-age`).
//! - [`KeyManager`]: the facade: the loaded set, the active signer, reloads, rotation and
//!   revocation; its background task (`task`) runs the schedule on every replica.
//! - [`listing`]: the key set as the admin API and the command line show it.
//! - [`verifiers`]: which keys the verifiers hold (their `ReportKeys` calls, in the database):
//!   a due `next` key waits until every connected verifier holds it.

pub mod database;
pub mod encryption;
pub mod files;
pub mod listing;
mod manager;
pub mod publication;
pub mod schedule;
pub mod settings;
mod snapshot;
mod storage;
mod task;
pub mod verifiers;

use std::io;
use std::path::{Path, PathBuf};

use authn::jwk::KeyError;

pub use files::{SIGNING_KEY_FILE, load_or_create};
pub use listing::{KeyListing, ListedKey};
pub use manager::{ActiveSigner, KeyManager};
pub use publication::PublishedJwks;
pub use schedule::{KeyInfo, KeyState, KeyTiming, Outcome, RotationKind};
pub use settings::KeySettings;
pub use verifiers::{Coverage, KeyCoverage, VerifierReports};

use crate::config::KeyStoreKind;
use database::DbStore;
use encryption::EncryptionError;
use files::{FileStore, MountedStore};
use schedule::{PlanError, TimingError};

/// Why the signing keys could not be loaded, stored or changed. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("signing key {path} is unusable: {source}")]
    Invalid {
        path: PathBuf,
        #[source]
        source: KeyError,
    },
    #[error("cannot generate a signing key: {0}")]
    Generate(#[source] KeyError),
    #[error("key store task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("key metadata {path} is unreadable: {reason}")]
    Metadata { path: PathBuf, reason: String },
    #[error("signing key {0} is listed but its private key is missing")]
    Missing(String),
    #[error("{path} does not hold the key {kid} it is listed as")]
    KidMismatch { kid: String, path: PathBuf },
    #[error(
        "no active signing key: {0} is missing (a mounted key directory needs the signing key under that name)"
    )]
    NoActiveKey(PathBuf),
    #[error("signing keys in the database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Encryption(EncryptionError),
    #[error(
        "cannot decrypt signing key {kid}: {source}. Is AUTH_KEY_ENCRYPTION_KEY the key these keys were encrypted with? (docs/KEYS.md, \"Restoring from backup\")"
    )]
    Decrypt {
        kid: String,
        #[source]
        source: EncryptionError,
    },
    #[error("signing key {kid} is corrupt: {reason}")]
    Corrupt { kid: String, reason: String },
    #[error(
        "AUTH_KEY_STORE=database needs AUTH_KEY_ENCRYPTION_KEY or AUTH_KEY_ENCRYPTION_KEY_FILE: private keys are never stored in the clear"
    )]
    NeedsEncryptionKey,
    #[error(
        "the database holds signing keys but AUTH_KEY_STORE resolved to `{0}` (is AUTH_KEY_ENCRYPTION_KEY missing?); refusing to start with another key set than the other replicas"
    )]
    KeysInDatabase(&'static str),
    #[error(transparent)]
    Timing(#[from] TimingError),
    #[error(
        "the signing keys are mounted read-only (AUTH_KEY_STORE=mounted): rotate or revoke them by replacing the files (docs/KEYS.md)"
    )]
    ReadOnly,
    #[error("no such signing key")]
    UnknownKey,
    #[error("the key set has no active key")]
    NoActive,
    #[error("a published signing key does not pass the verification key policy: {0}")]
    OwnKey(String),
    #[error(
        "a next key ({next}) is already published and would be promoted, not a {requested} key: revoke it first, or rotate without --alg"
    )]
    NextKeyAlgorithm {
        next: authn::jwk::Algorithm,
        requested: authn::jwk::Algorithm,
    },
}

impl From<PlanError> for KeyStoreError {
    fn from(error: PlanError) -> Self {
        match error {
            PlanError::UnknownKey => KeyStoreError::UnknownKey,
            // NeedKey never leaves the manager; treat it like a missing active key otherwise.
            PlanError::NoActiveKey | PlanError::NeedKey => KeyStoreError::NoActive,
        }
    }
}

pub(crate) fn io_error(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(io::Error) -> KeyStoreError {
    let path = path.to_owned();
    move |source| KeyStoreError::Io {
        action,
        path,
        source,
    }
}

/// Where the keys live, resolved from `AUTH_KEY_STORE`.
#[derive(Debug, Clone)]
pub enum KeyStore {
    Database(DbStore),
    Files(FileStore),
    Mounted(MountedStore),
}

impl KeyStore {
    /// The store `settings` ask for. `auto`: the database when an encryption key is configured,
    /// else `mounted` when `AUTH_KEYS_DIR` exists but cannot be written (a Secret), else
    /// `files`.
    pub fn from_settings(settings: &KeySettings) -> Result<Self, KeyStoreError> {
        let encryption = settings
            .encryption_key()
            .map_err(KeyStoreError::Encryption)?;
        let dir = &settings.dir;
        let kind = match (settings.store, &encryption) {
            (KeyStoreKind::Auto, Some(_)) => KeyStoreKind::Database,
            (KeyStoreKind::Auto, None) if !files::is_writable(dir)? => KeyStoreKind::Mounted,
            (KeyStoreKind::Auto, None) => KeyStoreKind::Files,
            (kind, _) => kind,
        };
        Ok(match (kind, encryption) {
            (KeyStoreKind::Database, Some(key)) => KeyStore::Database(DbStore::new(key)),
            (KeyStoreKind::Database, None) => return Err(KeyStoreError::NeedsEncryptionKey),
            (KeyStoreKind::Mounted, _) => KeyStore::Mounted(MountedStore::new(dir)),
            (KeyStoreKind::Files | KeyStoreKind::Auto, _) => KeyStore::Files(FileStore::new(dir)),
        })
    }

    pub fn kind(&self) -> KeyStoreKind {
        match self {
            KeyStore::Database(_) => KeyStoreKind::Database,
            KeyStore::Files(_) => KeyStoreKind::Files,
            KeyStore::Mounted(_) => KeyStoreKind::Mounted,
        }
    }

    /// Whether the service may change the key set (rotate, revoke).
    pub fn is_writable(&self) -> bool {
        !matches!(self, KeyStore::Mounted(_))
    }
}
