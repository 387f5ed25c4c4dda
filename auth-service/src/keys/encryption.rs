//! Encryption of private signing keys at rest: AES-256-GCM under the key of
//! `AUTH_KEY_ENCRYPTION_KEY` (or the file `AUTH_KEY_ENCRYPTION_KEY_FILE`), with the `kid` as
//! associated data, so a ciphertext moved to another row does not decrypt.
//!
//! Stored form: `v1:` followed by base64url(nonce || ciphertext || tag). Nonces are random
//! (96 bits): a key is encrypted once per rotation, far below the 2^32 messages where random
//! nonces would start to matter.

use std::fmt;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// Prefix of the stored form; another scheme would get another version.
const VERSION: &str = "v1:";
/// Length of an AES-256 key.
pub const KEY_LEN: usize = 32;

/// Why the encryption key could not be read, or a private key not decrypted. Never carries key
/// material.
#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    #[error(
        "AUTH_KEY_ENCRYPTION_KEY must be {KEY_LEN} bytes encoded in base64 (`openssl rand -base64 32`)"
    )]
    BadKey,
    #[error("set AUTH_KEY_ENCRYPTION_KEY or AUTH_KEY_ENCRYPTION_KEY_FILE, not both")]
    Both,
    #[error("cannot read AUTH_KEY_ENCRYPTION_KEY_FILE {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the encryption failed")]
    Seal,
    #[error("the stored private key is not in the `v1:` encrypted form")]
    Format,
    /// The tag did not verify: another encryption key, or a ciphertext of another `kid`.
    #[error("the private key does not decrypt with the configured encryption key")]
    WrongKey,
}

/// The AES-256-GCM key protecting private keys at rest.
pub struct EncryptionKey {
    key: RandomizedNonceKey,
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey(<redacted>)")
    }
}

impl EncryptionKey {
    /// The key from its base64 text (standard or URL-safe alphabet, padding optional,
    /// surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> Result<Self, EncryptionError> {
        let text = text.trim();
        let bytes = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
            .map_err(|_| EncryptionError::BadKey)?;
        Self::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EncryptionError> {
        if bytes.len() != KEY_LEN {
            return Err(EncryptionError::BadKey);
        }
        let key =
            RandomizedNonceKey::new(&AES_256_GCM, bytes).map_err(|_| EncryptionError::BadKey)?;
        Ok(Self { key })
    }

    /// The configured key: from the environment value or from the file, `None` if neither is
    /// set.
    pub fn from_config(
        value: Option<&str>,
        file: Option<&Path>,
    ) -> Result<Option<Self>, EncryptionError> {
        match (value.filter(|v| !v.is_empty()), file) {
            (Some(_), Some(_)) => Err(EncryptionError::Both),
            (Some(value), None) => Self::from_base64(value).map(Some),
            (None, Some(path)) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| EncryptionError::File {
                        path: path.to_owned(),
                        source,
                    })?;
                Self::from_base64(&text).map(Some)
            }
            (None, None) => Ok(None),
        }
    }

    /// Encrypts `plaintext` bound to `kid`.
    pub fn seal(&self, kid: &str, plaintext: &[u8]) -> Result<String, EncryptionError> {
        let mut in_out = plaintext.to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(kid.as_bytes()), &mut in_out)
            .map_err(|_| EncryptionError::Seal)?;
        let mut stored = Vec::with_capacity(NONCE_LEN + in_out.len());
        stored.extend_from_slice(nonce.as_ref());
        stored.extend_from_slice(&in_out);
        Ok(format!("{VERSION}{}", URL_SAFE_NO_PAD.encode(stored)))
    }

    /// Decrypts what [`EncryptionKey::seal`] produced for `kid`.
    pub fn open(&self, kid: &str, stored: &str) -> Result<Vec<u8>, EncryptionError> {
        let encoded = stored
            .strip_prefix(VERSION)
            .ok_or(EncryptionError::Format)?;
        let mut bytes = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| EncryptionError::Format)?;
        if bytes.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(EncryptionError::Format);
        }
        let mut ciphertext = bytes.split_off(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(&bytes).map_err(|_| EncryptionError::Format)?;
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut ciphertext)
            .map_err(|_| EncryptionError::WrongKey)?;
        Ok(plaintext.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> EncryptionKey {
        EncryptionKey::from_bytes(&[byte; KEY_LEN]).unwrap()
    }

    #[test]
    fn round_trip_bound_to_the_kid() {
        let sealed = key(1).seal("kid-a", b"private").unwrap();
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("private"));
        assert_eq!(key(1).open("kid-a", &sealed).unwrap(), b"private");
        assert!(matches!(
            key(2).open("kid-a", &sealed),
            Err(EncryptionError::WrongKey)
        ));
        assert!(matches!(
            key(1).open("kid-b", &sealed),
            Err(EncryptionError::WrongKey)
        ));
        assert!(matches!(
            key(1).open("kid-a", "-----BEGIN PRIVATE KEY-----"),
            Err(EncryptionError::Format)
        ));
        // Random nonces: the same plaintext never encrypts the same way twice.
        assert_ne!(sealed, key(1).seal("kid-a", b"private").unwrap());
    }

    #[test]
    fn the_key_is_32_bytes_of_base64() {
        let text = STANDARD.encode([7u8; 32]);
        assert!(EncryptionKey::from_base64(&format!("  {text}\n")).is_ok());
        assert!(EncryptionKey::from_base64(&URL_SAFE_NO_PAD.encode([7u8; 32])).is_ok());
        assert!(matches!(
            EncryptionKey::from_base64(&STANDARD.encode([7u8; 16])),
            Err(EncryptionError::BadKey)
        ));
        assert!(matches!(
            EncryptionKey::from_base64("not base64!"),
            Err(EncryptionError::BadKey)
        ));
        assert!(matches!(
            EncryptionKey::from_config(Some(&text), Some(Path::new("/x"))),
            Err(EncryptionError::Both)
        ));
        assert!(EncryptionKey::from_config(None, None).unwrap().is_none());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kek");
        std::fs::write(&file, format!("{text}\n")).unwrap();
        assert!(
            EncryptionKey::from_config(None, Some(&file))
                .unwrap()
                .is_some()
        );
        let err = EncryptionKey::from_config(None, Some(&dir.path().join("missing"))).unwrap_err();
        assert!(err.to_string().contains("AUTH_KEY_ENCRYPTION_KEY_FILE"));
    }
}
