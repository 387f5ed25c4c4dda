//! Argon2id hashing of passwords and client secrets.
//!
//! Argon2 is deliberately slow and memory hungry (19 MiB per hash with the crate defaults), so
//! it runs on the blocking pool behind a semaphore: a burst of logins queues instead of
//! exhausting memory or starving the async workers.

use std::fmt;
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, password_hash};
use tokio::sync::Semaphore;

/// A password or client secret in memory. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(***)")
    }
}

impl From<String> for SecretString {
    fn from(secret: String) -> Self {
        Self(secret)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("argon2: {0}")]
    Argon2(password_hash::Error),
    #[error("stored password hash is malformed: {0}")]
    MalformedHash(password_hash::Error),
    #[error("password hashing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("password hasher is shut down")]
    Closed,
}

/// The Argon2id hasher shared by every request.
#[derive(Clone)]
pub struct Passwords {
    /// A hash of a random password, verified against when the user or client does not exist so
    /// that "unknown" and "wrong secret" cost the same time.
    dummy_hash: Arc<str>,
    permits: Arc<Semaphore>,
}

impl fmt::Debug for Passwords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Passwords")
            .field("available_permits", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl Passwords {
    /// Prepares the hasher, computing the dummy hash once.
    pub async fn new() -> Result<Self, PasswordError> {
        let parallelism = std::thread::available_parallelism().map_or(2, |n| n.get());
        let permits = Arc::new(Semaphore::new(parallelism.max(2)));
        let dummy = SecretString::new(crate::crypto::random_secret());
        let dummy_hash = hash_blocking(&permits, dummy).await?;
        Ok(Self {
            dummy_hash: dummy_hash.into(),
            permits,
        })
    }

    /// An Argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`) with a random salt.
    pub async fn hash(&self, secret: &SecretString) -> Result<String, PasswordError> {
        hash_blocking(&self.permits, secret.clone()).await
    }

    /// Whether `candidate` matches `stored`. With `stored = None` (unknown user or client) it
    /// verifies against the dummy hash and answers `false`, taking the same time.
    pub async fn verify(
        &self,
        stored: Option<&str>,
        candidate: &SecretString,
    ) -> Result<bool, PasswordError> {
        let known = stored.is_some();
        let hash = stored.map_or_else(|| self.dummy_hash.to_string(), str::to_owned);
        let candidate = candidate.clone();
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Closed)?;
        let matches = tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&hash).map_err(PasswordError::MalformedHash)?;
            match Argon2::default().verify_password(candidate.expose().as_bytes(), &parsed) {
                Ok(()) => Ok(true),
                Err(password_hash::Error::Password) => Ok(false),
                Err(e) => Err(PasswordError::Argon2(e)),
            }
        })
        .await??;
        Ok(known && matches)
    }
}

async fn hash_blocking(permits: &Semaphore, secret: SecretString) -> Result<String, PasswordError> {
    let _permit = permits.acquire().await.map_err(|_| PasswordError::Closed)?;
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        aws_lc_rs::rand::fill(&mut salt).expect("BUG: the system random generator failed");
        let salt = SaltString::encode_b64(&salt).map_err(PasswordError::Argon2)?;
        Argon2::default()
            .hash_password(secret.expose().as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(PasswordError::Argon2)
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_with_argon2id_and_verifies() {
        let passwords = Passwords::new().await.expect("hasher");
        let secret = SecretString::new("correct horse battery staple");
        let hash = passwords.hash(&secret).await.expect("hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(
            passwords
                .verify(Some(&hash), &secret)
                .await
                .expect("verify")
        );
        let wrong = SecretString::new("wrong");
        assert!(!passwords.verify(Some(&hash), &wrong).await.expect("verify"));
        assert!(!passwords.verify(None, &secret).await.expect("verify"));
    }

    #[test]
    fn secret_debug_is_redacted() {
        let secret = SecretString::new("hunter22");
        assert!(!format!("{secret:?}").contains("hunter22"));
    }
}
