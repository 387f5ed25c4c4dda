//! The signing key on disk: generated on first start, loaded on every later one.
//!
//! The key lives in `$AUTH_KEYS_DIR/signing-key.pem` (PKCS#8 PEM, mode 0600, in a directory
//! created with mode 0700), so that a restart keeps the `kid` and every token issued before it
//! still verifies. A Kubernetes Secret mounted at that path is loaded the same way.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use shared::jwk::KeyError;
use shared::jws::Signer;

/// File name of the signing key inside the keys directory.
pub const SIGNING_KEY_FILE: &str = "signing-key.pem";

/// Why the signing key could not be loaded or created. Never carries key material.
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
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> KeyStoreError {
    let path = path.to_owned();
    move |source| KeyStoreError::Io {
        action,
        path,
        source,
    }
}

/// Loads the signing key from `dir`, or generates and stores one if there is none yet.
///
/// Safe against concurrent first starts (two replicas, or a CLI command next to the server):
/// the key is written to a private temporary file and then hard-linked into place, which fails
/// if the file already exists; the loser drops its key and loads the winner's.
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
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error("cannot create key directory", dir))?;

    let signer = Signer::generate().map_err(KeyStoreError::Generate)?;
    let pem = signer.to_pkcs8_pem().map_err(KeyStoreError::Generate)?;
    let tmp = dir.join(format!(
        ".{SIGNING_KEY_FILE}.{}.tmp",
        crate::crypto::random_id()
    ));
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
    match linked {
        Ok(()) => {
            if let Ok(dir_file) = fs::File::open(dir) {
                let _ = dir_file.sync_all();
            }
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
}
