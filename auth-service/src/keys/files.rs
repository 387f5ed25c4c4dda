//! Signing keys as PKCS#8 PEM files in `AUTH_KEYS_DIR`.
//!
//! - [`FileStore`] (`AUTH_KEY_STORE=files`): keys the service generates and rotates itself, one
//!   file per key (mode 0600, in a directory of mode 0700), their states in `keys.json`. The
//!   first key of a directory is `signing-key.pem`, what earlier versions created; a directory
//!   holding only that file (an upgrade, or a first start) is read as one active key dated by
//!   the file, and `keys.json` appears with the second key.
//! - [`MountedStore`] (`AUTH_KEY_STORE=mounted`): files the operator manages (a Kubernetes
//!   Secret), read-only: `signing-key.pem` signs, `next*.pem` are published ahead of their
//!   turn, every other `*.pem` is published for verification only.
//! - [`load_or_create`]: the single-key start-up of earlier versions, kept for tools and tests.

use std::collections::HashMap;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use authn::sign::Signer;
use serde::{Deserialize, Serialize};

use super::schedule::{KeyInfo, KeyState};
use super::{KeyStoreError, io_error};

/// File name of the first (or the operator's active) signing key inside the keys directory.
pub const SIGNING_KEY_FILE: &str = "signing-key.pem";
/// The states of the keys of a [`FileStore`].
pub const METADATA_FILE: &str = "keys.json";

/// Loads the signing key from `dir/signing-key.pem`, or generates and stores one if there is
/// none yet.
///
/// Safe against concurrent first starts: the key is written to a private temporary file and then
/// hard-linked into place, which fails if the file already exists; the loser drops its key and
/// loads the winner's.
pub async fn load_or_create(dir: &Path) -> Result<Signer, KeyStoreError> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || load_or_create_blocking(&dir)).await?
}

fn load_or_create_blocking(dir: &Path) -> Result<Signer, KeyStoreError> {
    let path = dir.join(SIGNING_KEY_FILE);
    if let Some(signer) = load(&path)? {
        tracing::info!(kid = signer.kid(), path = %path.display(), "loaded signing key");
        return Ok(signer);
    }
    create_dir(dir)?;
    let signer = Signer::generate().map_err(KeyStoreError::Generate)?;
    match install(dir, SIGNING_KEY_FILE, &signer) {
        Ok(()) => {
            tracing::info!(kid = signer.kid(), path = %path.display(), "generated signing key");
            Ok(signer)
        }
        Err(KeyStoreError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
            let signer = load(&path)?.ok_or_else(|| KeyStoreError::Io {
                action: "signing key vanished while starting:",
                path: path.clone(),
                source: io::Error::from(io::ErrorKind::NotFound),
            })?;
            tracing::info!(kid = signer.kid(), path = %path.display(), "loaded signing key created concurrently");
            Ok(signer)
        }
        Err(e) => Err(e),
    }
}

fn create_dir(dir: &Path) -> Result<(), KeyStoreError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error("cannot create key directory", dir))
}

/// Writes `signer` to `dir/name` (mode 0600) through a temporary file hard-linked into place:
/// fails with `AlreadyExists` rather than replace a key.
fn install(dir: &Path, name: &str, signer: &Signer) -> Result<(), KeyStoreError> {
    let path = dir.join(name);
    let pem = signer.to_pkcs8_pem().map_err(KeyStoreError::Generate)?;
    let tmp = dir.join(format!(".{name}.{}.tmp", crate::crypto::random_id()));
    let written = write_private(&tmp, pem.as_bytes());
    let linked = written.and_then(|()| {
        fs::hard_link(&tmp, &path).map_err(|source| KeyStoreError::Io {
            action: "cannot install signing key at",
            path: path.clone(),
            source,
        })
    });
    // The temporary name is only ever a second link (or a partial file): always remove it.
    let _ = fs::remove_file(&tmp);
    linked?;
    sync_dir(dir);
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(dir_file) = fs::File::open(dir) {
        let _ = dir_file.sync_all();
    }
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), KeyStoreError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error("cannot create", path))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(io_error("cannot write", path))
}

/// The key at `path`, `None` if there is no such file.
fn load(path: &Path) -> Result<Option<Signer>, KeyStoreError> {
    let pem = match fs::read_to_string(path) {
        Ok(pem) => pem,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("cannot read", path)(e)),
    };
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), mode = format!("{:o}", meta.permissions().mode() & 0o777), "signing key is readable by group or others; it should be 0600");
    }
    Signer::from_pkcs8_pem(&pem)
        .map(Some)
        .map_err(|source| KeyStoreError::Invalid {
            path: path.to_owned(),
            source,
        })
}

/// The modification time of `path` in Unix seconds (0 if unknown).
fn mtime(path: &Path) -> i64 {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// Whether the service can write in `dir`: false for a read-only mount (a Kubernetes Secret)
/// or a directory it may not write. A missing directory counts as writable (it is created).
pub fn is_writable(dir: &Path) -> Result<bool, KeyStoreError> {
    if !dir.exists() {
        return Ok(true);
    }
    let probe = dir.join(format!(".write-probe-{}", crate::crypto::random_id()));
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&probe)
    {
        Ok(_) => {
            let _ = fs::remove_file(&probe);
            Ok(true)
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::PermissionDenied
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(io_error("cannot probe", dir)(e)),
    }
}

/// One key of `keys.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FileEntry {
    #[serde(flatten)]
    info: KeyInfo,
    /// The PEM file, relative to the directory.
    file: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Metadata {
    keys: Vec<FileEntry>,
}

/// Keys the service manages as files in one directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The keys' metadata.
    pub async fn records(&self) -> Result<Vec<KeyInfo>, KeyStoreError> {
        let store = self.clone();
        let entries = tokio::task::spawn_blocking(move || store.entries()).await??;
        Ok(entries.into_iter().map(|e| e.info).collect())
    }

    /// Whether the directory holds any key (metadata or the single key of earlier versions).
    pub fn has_keys(&self) -> bool {
        self.dir.join(METADATA_FILE).exists() || self.dir.join(SIGNING_KEY_FILE).exists()
    }

    /// The private key of `kid`.
    pub async fn signer(&self, kid: &str) -> Result<Signer, KeyStoreError> {
        let store = self.clone();
        let kid = kid.to_owned();
        tokio::task::spawn_blocking(move || {
            let entry = store
                .entries()?
                .into_iter()
                .find(|e| e.info.kid == kid)
                .ok_or_else(|| KeyStoreError::Missing(kid.clone()))?;
            let path = store.dir.join(&entry.file);
            let signer = load(&path)?.ok_or_else(|| KeyStoreError::Missing(kid.clone()))?;
            if signer.kid() != kid {
                return Err(KeyStoreError::KidMismatch { kid, path });
            }
            Ok(signer)
        })
        .await?
    }

    fn entries(&self) -> Result<Vec<FileEntry>, KeyStoreError> {
        let path = self.dir.join(METADATA_FILE);
        match fs::read(&path) {
            Ok(json) => {
                let metadata: Metadata =
                    serde_json::from_slice(&json).map_err(|e| KeyStoreError::Metadata {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                Ok(metadata.keys)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Earlier versions kept one key and no metadata: it is the active key.
                let legacy = self.dir.join(SIGNING_KEY_FILE);
                Ok(load(&legacy)?
                    .map(|signer| {
                        let at = mtime(&legacy);
                        FileEntry {
                            info: KeyInfo {
                                kid: signer.kid().to_owned(),
                                state: KeyState::Active,
                                created_at: at,
                                activates_at: at,
                                retired_at: None,
                                revoked_at: None,
                            },
                            file: SIGNING_KEY_FILE.to_owned(),
                        }
                    })
                    .into_iter()
                    .collect())
            }
            Err(e) => Err(io_error("cannot read", &path)(e)),
        }
    }

    /// Stores `after` as the key set: writes the new key's file, then `keys.json` (atomically,
    /// by rename), then deletes the files of removed and revoked keys. A crash in between leaves
    /// at worst an unreferenced file, never a referenced file missing.
    pub async fn persist(
        &self,
        after: Vec<KeyInfo>,
        fresh: Option<Arc<Signer>>,
    ) -> Result<(), KeyStoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.persist_blocking(&after, fresh.as_deref()))
            .await?
    }

    fn persist_blocking(
        &self,
        after: &[KeyInfo],
        fresh: Option<&Signer>,
    ) -> Result<(), KeyStoreError> {
        let before = self.entries()?;
        let files: HashMap<&str, &str> = before
            .iter()
            .map(|e| (e.info.kid.as_str(), e.file.as_str()))
            .collect();
        create_dir(&self.dir)?;
        let mut entries = Vec::with_capacity(after.len());
        for info in after {
            let file = match files.get(info.kid.as_str()) {
                Some(file) => (*file).to_owned(),
                None => {
                    let signer = fresh
                        .filter(|s| s.kid() == info.kid)
                        .ok_or_else(|| KeyStoreError::Missing(info.kid.clone()))?;
                    let name = if before.is_empty() && !self.dir.join(SIGNING_KEY_FILE).exists() {
                        SIGNING_KEY_FILE.to_owned()
                    } else {
                        format!("{}.pem", info.kid)
                    };
                    match install(&self.dir, &name, signer) {
                        Ok(()) => {}
                        // A file left by an interrupted earlier attempt: the same kid is the
                        // same key.
                        Err(KeyStoreError::Io { source, .. })
                            if source.kind() == io::ErrorKind::AlreadyExists
                                && load(&self.dir.join(&name))?
                                    .is_some_and(|s| s.kid() == info.kid) => {}
                        Err(e) => return Err(e),
                    }
                    name
                }
            };
            entries.push(FileEntry {
                info: info.clone(),
                file,
            });
        }
        // A lone active `signing-key.pem` is the layout of earlier versions, which reads back
        // as the same key set without metadata: keep it (a downgrade, or a tool that reads that
        // file, still works); `keys.json` appears with the second key.
        let lone_key = matches!(entries.as_slice(), [only]
            if only.file == SIGNING_KEY_FILE && only.info.state == KeyState::Active);
        if !lone_key || self.dir.join(METADATA_FILE).exists() {
            self.write_metadata(&Metadata { keys: entries })?;
        }
        for entry in &before {
            let gone = after
                .iter()
                .find(|k| k.kid == entry.info.kid)
                .is_none_or(|k| k.state == KeyState::Revoked);
            if gone {
                let path = self.dir.join(&entry.file);
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error("cannot delete", &path)(e)),
                }
            }
        }
        sync_dir(&self.dir);
        Ok(())
    }

    fn write_metadata(&self, metadata: &Metadata) -> Result<(), KeyStoreError> {
        let path = self.dir.join(METADATA_FILE);
        let tmp = self.dir.join(format!(
            ".{METADATA_FILE}.{}.tmp",
            crate::crypto::random_id()
        ));
        let json = serde_json::to_vec_pretty(metadata).expect("BUG: key metadata serializes");
        let written = write_private(&tmp, &json)
            .and_then(|()| fs::rename(&tmp, &path).map_err(io_error("cannot replace", &path)));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }
}

/// Keys the operator manages as files in a read-only directory (a mounted Secret).
#[derive(Debug, Clone)]
pub struct MountedStore {
    dir: PathBuf,
}

impl MountedStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every key of the directory with its state.
    pub async fn scan(&self) -> Result<Vec<(KeyInfo, Arc<Signer>)>, KeyStoreError> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || scan_blocking(&dir)).await?
    }
}

fn mounted_state(name: &str) -> KeyState {
    if name == SIGNING_KEY_FILE {
        KeyState::Active
    } else if name.starts_with("next") {
        KeyState::Next
    } else {
        KeyState::Retired
    }
}

fn scan_blocking(dir: &Path) -> Result<Vec<(KeyInfo, Arc<Signer>)>, KeyStoreError> {
    let entries = fs::read_dir(dir).map_err(io_error("cannot list", dir))?;
    let mut keys: Vec<(KeyInfo, Arc<Signer>)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error("cannot list", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Secret volumes hold `..data` and timestamped directories next to the visible links.
        if name.starts_with('.') || !name.ends_with(".pem") {
            continue;
        }
        let path = dir.join(&name);
        if !fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let Some(signer) = load(&path)? else { continue };
        let state = mounted_state(&name);
        let at = mtime(&path);
        match keys.iter_mut().find(|(k, _)| k.kid == signer.kid()) {
            // The same key under two names: the most advanced state wins.
            Some((info, _)) => {
                if state == KeyState::Active {
                    info.state = KeyState::Active;
                }
            }
            None => keys.push((
                KeyInfo {
                    kid: signer.kid().to_owned(),
                    state,
                    created_at: at,
                    activates_at: at,
                    retired_at: (state == KeyState::Retired).then_some(at),
                    revoked_at: None,
                },
                Arc::new(signer),
            )),
        }
    }
    if !keys.iter().any(|(k, _)| k.state == KeyState::Active) {
        return Err(KeyStoreError::NoActiveKey(dir.join(SIGNING_KEY_FILE)));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn creates_once_then_loads_the_same_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = dir.path().join("nested/keys");
        let first = load_or_create(&keys).await.expect("create");
        let second = load_or_create(&keys).await.expect("load");
        assert_eq!(first.kid(), second.kid());
        let file_mode = fs::metadata(keys.join(SIGNING_KEY_FILE))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(file_mode & 0o777, 0o600);
        let dir_mode = fs::metadata(&keys).expect("dir").permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let leftovers: Vec<_> = fs::read_dir(&keys)
            .expect("list")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers, [SIGNING_KEY_FILE]);
    }

    #[tokio::test]
    async fn racing_first_starts_agree_on_one_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let starts: Vec<_> = (0..4)
            .map(|_| {
                let dir = dir.path().to_owned();
                tokio::spawn(async move { load_or_create(&dir).await })
            })
            .collect();
        let mut kids = Vec::new();
        for start in starts {
            kids.push(start.await.expect("join").expect("key").kid().to_owned());
        }
        kids.dedup();
        assert_eq!(kids.len(), 1, "{kids:?}");
    }

    #[tokio::test]
    async fn a_corrupt_key_file_is_an_error_without_its_contents() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(SIGNING_KEY_FILE), "not a key SECRETSTUFF").expect("write");
        let err = load_or_create(dir.path()).await.expect_err("corrupt key");
        assert!(!err.to_string().contains("SECRETSTUFF"), "{err}");
    }

    fn info(kid: &str, state: KeyState) -> KeyInfo {
        KeyInfo {
            kid: kid.into(),
            state,
            created_at: 1,
            activates_at: 1,
            retired_at: None,
            revoked_at: None,
        }
    }

    #[tokio::test]
    async fn the_file_store_adopts_a_single_key_and_keeps_states_in_metadata() {
        let dir = tempfile::tempdir().expect("tempdir");
        let legacy = load_or_create(dir.path()).await.expect("legacy key");
        let store = FileStore::new(dir.path());
        let records = store.records().await.expect("records");
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].kid, legacy.kid());
        assert_eq!(records[0].state, KeyState::Active);

        let next = Arc::new(Signer::generate().expect("key"));
        let mut after = records.clone();
        after.push(info(next.kid(), KeyState::Next));
        store
            .persist(after.clone(), Some(next.clone()))
            .await
            .expect("persisted");
        assert_eq!(store.records().await.expect("records"), after);
        let next_file = dir.path().join(format!("{}.pem", next.kid()));
        assert_eq!(
            fs::metadata(&next_file).expect("file").permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(dir.path().join(METADATA_FILE))
                .expect("metadata")
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        assert_eq!(
            store.signer(next.kid()).await.expect("loads").kid(),
            next.kid()
        );

        // Revoking deletes the key file; removing drops it from the metadata too.
        after[0].state = KeyState::Revoked;
        store.persist(after.clone(), None).await.expect("revoked");
        assert!(!dir.path().join(SIGNING_KEY_FILE).exists());
        after.remove(0);
        store.persist(after.clone(), None).await.expect("removed");
        assert_eq!(store.records().await.expect("records"), after);
    }

    #[tokio::test]
    async fn a_mounted_directory_names_the_states() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str| {
            let signer = Signer::generate().expect("key");
            fs::write(dir.path().join(name), signer.to_pkcs8_pem().expect("pem")).expect("write");
            signer.kid().to_owned()
        };
        let store = MountedStore::new(dir.path());
        let next = write("next.pem");
        assert!(matches!(
            store.scan().await,
            Err(KeyStoreError::NoActiveKey(_))
        ));
        let active = write(SIGNING_KEY_FILE);
        let previous = write("previous.pem");
        fs::write(dir.path().join("README"), "not a key").expect("write");
        let mut states: Vec<_> = store
            .scan()
            .await
            .expect("scan")
            .into_iter()
            .map(|(k, _)| (k.kid, k.state))
            .collect();
        states.sort_by_key(|(_, s)| *s);
        assert_eq!(
            states,
            [
                (next, KeyState::Next),
                (active, KeyState::Active),
                (previous, KeyState::Retired)
            ]
        );
    }
}
