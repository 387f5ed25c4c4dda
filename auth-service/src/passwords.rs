//! Argon2id hashing of passwords and client secrets.
//!
//! Argon2 is deliberately slow and memory hungry (19 MiB per hash with the crate defaults), so
//! it runs on the blocking pool behind a semaphore (`AUTH_ARGON2_PERMITS` runs at once): a burst
//! of logins queues instead of exhausting memory or starving the async workers.
//!
//! The queue of verifications is bounded (`AUTH_ARGON2_MAX_WAITING`): when that many already
//! wait, one more is refused at once ([`PasswordError::Busy`], answered 503 with `Retry-After`)
//! instead of waiting behind them up to the request timeout, so a flood that outruns the
//! throttles costs the others a short wait or a fast refusal, never a deadline. The waiting room
//! is only for verifications with a clean record ([`Priority`]): a suspect one (failures on its
//! throttle counters, or a caller that keeps coming back before its `Retry-After`) runs only if
//! a permit is free at that moment, else it is refused at once. A flood spread over many
//! addresses and random names, which the throttles cannot stop (each address and name is new),
//! thus takes only the Argon2 capacity nobody waits for: a permit set free goes to the first
//! clean waiter (tokio's semaphore is fair), never to a suspect caller. Hashing (creating
//! a user or a client, an operator's act) always waits. `auth_argon2_waiting` is the queue's
//! depth, `auth_argon2_refused_total` counts refusals, `auth_argon2_verifications_total` the
//! verifications run.
//!
//! Client secrets, unlike passwords, are 256-bit random values presented on every
//! `client_credentials` request by services that ask for a token again and again; Argon2 on each
//! of them caps token issuance far below what signing allows (issue 7). So a client secret that
//! Argon2 accepted is remembered for a short while ([`Passwords::verify_client_secret`]).
//! Passwords are never remembered: every login attempt pays Argon2, as the login throttle
//! expects.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, password_hash};
use aws_lc_rs::hmac;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};

use crate::config::{ARGON2_MEMORY_PER_RUN, Argon2Config, PermitsReason};

/// Client secrets remembered as verified, at most. Every registered client takes one entry per
/// secret in use (a wrong secret never takes one), so this covers far more clients than a
/// platform registers; beyond it the least used are verified with Argon2 again.
pub const CLIENT_SECRET_CACHE_CAPACITY: u64 = 1024;

/// How long a verified client secret is remembered. Nothing needs it to be short for
/// correctness (a changed secret hash misses at once, see `VerifiedSecrets`); it bounds how
/// long the memory of a secret outlives its use.
pub const CLIENT_SECRET_CACHE_TTL: Duration = Duration::from_secs(60);

/// How long a caller refused with [`PasswordError::Busy`] is asked to wait (`Retry-After`): a
/// full queue drains in well under a second.
pub const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A password or client secret in memory: [`secrecy::SecretString`], whose `Debug` never shows
/// the value and whose buffer is zeroed when dropped. Read it with [`ExposeSecret`].
pub use secrecy::{ExposeSecret, SecretString};

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
    /// Every permit runs and the waiting room is full: refused without waiting.
    #[error("too many Argon2 verifications are waiting")]
    Busy,
}

/// Whether a verification may wait for a permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Priority {
    /// Nothing failed lately for this caller: it may wait in the queue.
    #[default]
    Clean,
    /// Failures on record for its address or name, or a caller that ignores `Retry-After`:
    /// it runs if a permit is free at once, and is refused otherwise.
    Suspect,
}

/// The Argon2id hasher shared by every request.
#[derive(Clone)]
pub struct Passwords {
    /// A hash of a random password, verified against when the user or client does not exist so
    /// that "unknown" and "wrong secret" cost the same time.
    dummy_hash: Arc<str>,
    permits: Arc<Semaphore>,
    /// Verifications waiting for a permit now, and how many may.
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    verified_secrets: Arc<VerifiedSecrets>,
    /// Argon2 verifications run, dummy ones included (see [`Passwords::verifications`]).
    verifications: Arc<std::sync::atomic::AtomicU64>,
}

impl fmt::Debug for Passwords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Passwords")
            .field("available_permits", &self.permits.available_permits())
            .field("waiting", &self.waiting())
            .field("max_waiting", &self.max_waiting)
            .finish_non_exhaustive()
    }
}

impl Passwords {
    /// Prepares the hasher with the default limits (one run per CPU, 8 waiters per run),
    /// computing the dummy hash once.
    pub async fn new() -> Result<Self, PasswordError> {
        Self::with_limits(&Argon2Config::default()).await
    }

    /// Prepares the hasher with `config`'s permits and waiting room.
    pub async fn with_limits(config: &Argon2Config) -> Result<Self, PasswordError> {
        let chosen = config.permits_in_effect();
        match chosen.reason {
            PermitsReason::Configured => {
                tracing::info!(
                    permits = chosen.permits,
                    "Argon2 permits: AUTH_ARGON2_PERMITS"
                );
            }
            PermitsReason::Cpus => tracing::info!(
                permits = chosen.permits,
                "Argon2 permits: one per CPU (at least two), within the memory limit if any"
            ),
            PermitsReason::MemoryLimit { limit_bytes } => tracing::info!(
                permits = chosen.permits,
                memory_limit_bytes = limit_bytes,
                per_run_bytes = ARGON2_MEMORY_PER_RUN,
                "Argon2 permits: fewer than the CPUs, so that the runs fit in the cgroup memory \
                 limit after its headroom"
            ),
        }
        let permits = Arc::new(Semaphore::new(chosen.permits));
        let dummy = SecretString::from(crate::crypto::random_secret());
        let dummy_hash = hash_blocking(&permits, dummy).await?;
        Ok(Self {
            dummy_hash: dummy_hash.into(),
            permits,
            waiting: Arc::default(),
            max_waiting: config.effective_max_waiting(),
            verified_secrets: Arc::new(VerifiedSecrets::new(
                CLIENT_SECRET_CACHE_CAPACITY,
                CLIENT_SECRET_CACHE_TTL,
            )),
            verifications: Arc::default(),
        })
    }

    /// How many Argon2 verifications this hasher has run, those against the dummy hash
    /// included: an unknown user must cost exactly what a wrong password costs, one.
    pub fn verifications(&self) -> u64 {
        self.verifications
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Verifications waiting for a permit now (the `auth_argon2_waiting` of this hasher).
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Takes one Argon2 permit until the guard is dropped, as a running verification would:
    /// for tests that need a busy hasher, and for nothing else.
    pub async fn occupy(&self) -> Result<OwnedSemaphorePermit, PasswordError> {
        Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| PasswordError::Closed)
    }

    /// A permit for a verification: at once if one is free, else after waiting in the bounded
    /// queue (clean callers only); [`PasswordError::Busy`] at once when it is full, or for a
    /// suspect caller when no permit is free.
    async fn permit_to_verify(
        &self,
        priority: Priority,
    ) -> Result<SemaphorePermit<'_>, PasswordError> {
        // Tokio's semaphore is fair: with waiters queued, a released permit goes to the first of
        // them, so a newcomer never overtakes the queue here.
        if let Ok(permit) = self.permits.try_acquire() {
            return Ok(permit);
        }
        let room = match priority {
            Priority::Clean => self.max_waiting,
            Priority::Suspect => 0,
        };
        let joined = self
            .waiting
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |waiting| {
                (waiting < room).then_some(waiting + 1)
            });
        if joined.is_err() {
            metrics::counter!("auth_argon2_refused_total").increment(1);
            return Err(PasswordError::Busy);
        }
        let _waiting = Waiting::join(&self.waiting);
        self.permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Closed)
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
        self.verify_as(stored, candidate, Priority::Clean).await
    }

    /// [`Passwords::verify`], waiting for a permit only if `priority` allows.
    pub async fn verify_as(
        &self,
        stored: Option<&str>,
        candidate: &SecretString,
        priority: Priority,
    ) -> Result<bool, PasswordError> {
        let known = stored.is_some();
        let hash = stored.map_or_else(|| self.dummy_hash.to_string(), str::to_owned);
        let candidate = candidate.clone();
        let verifications = self.verifications.clone();
        let _permit = self.permit_to_verify(priority).await?;
        let matches = tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&hash).map_err(PasswordError::MalformedHash)?;
            verifications.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            metrics::counter!("auth_argon2_verifications_total").increment(1);
            match Argon2::default().verify_password(candidate.expose_secret().as_bytes(), &parsed) {
                Ok(()) => Ok(true),
                Err(password_hash::Error::Password) => Ok(false),
                Err(e) => Err(PasswordError::Argon2(e)),
            }
        })
        .await??;
        Ok(known && matches)
    }
}

impl Passwords {
    /// [`Passwords::verify`] for a client secret, remembering for [`CLIENT_SECRET_CACHE_TTL`]
    /// the pairs of stored hash and secret that Argon2 accepted, so a client asking for tokens
    /// again and again pays Argon2 once a minute instead of on every request.
    ///
    /// Only a match is remembered: a wrong secret is verified with Argon2 every time, at the
    /// same cost as before. The entry is keyed by the stored hash, so a client whose secret
    /// changed (a new hash) or that is gone (`None`) is never answered from memory once the
    /// caller has read its row again (`clients::ClientRows`: within `AUTH_CLIENT_CACHE_TTL`).
    pub async fn verify_client_secret(
        &self,
        stored: Option<&str>,
        candidate: &SecretString,
        priority: Priority,
    ) -> Result<bool, PasswordError> {
        let Some(stored_hash) = stored else {
            return self.verify_as(None, candidate, priority).await;
        };
        let entry = self.verified_secrets.entry(stored_hash, candidate);
        if self.verified_secrets.contains(&entry) {
            return Ok(true);
        }
        let matches = self.verify_as(stored, candidate, priority).await?;
        if matches {
            self.verified_secrets.insert(entry);
        }
        Ok(matches)
    }

    /// Whether `candidate` is a secret Argon2 accepted for `stored_hash` within
    /// [`CLIENT_SECRET_CACHE_TTL`]: an HMAC, no Argon2. Such a secret is exactly right, so it is
    /// accepted even while the client-authentication throttle refuses unchecked attempts.
    pub fn is_remembered_client_secret(&self, stored_hash: &str, candidate: &SecretString) -> bool {
        self.verified_secrets
            .contains(&self.verified_secrets.entry(stored_hash, candidate))
    }

    /// Client secrets remembered as verified now (for tests and diagnostics).
    pub fn remembered_client_secrets(&self) -> u64 {
        self.verified_secrets.len()
    }
}

/// A place in the queue, already counted in `waiting`: counted out, and the gauge lowered, when
/// dropped (the permit came, or the request went away).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn join(waiting: &'a AtomicUsize) -> Self {
        metrics::gauge!("auth_argon2_waiting").increment(1.0);
        Self(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!("auth_argon2_waiting").decrement(1.0);
    }
}

/// Describes the hasher's metrics (called once at start-up).
pub fn describe_metrics() {
    metrics::describe_counter!(
        "auth_argon2_verifications_total",
        "Argon2 verifications run (passwords and client secrets, dummy hashes included)"
    );
    metrics::describe_gauge!(
        "auth_argon2_waiting",
        "Argon2 verifications waiting for a free permit (bounded by AUTH_ARGON2_MAX_WAITING)"
    );
    metrics::describe_counter!(
        "auth_argon2_refused_total",
        "Argon2 verifications refused at once (503) because AUTH_ARGON2_MAX_WAITING already waited"
    );
}

/// The memory of [`Passwords::verify_client_secret`]: which (stored hash, presented secret)
/// pairs Argon2 accepted, bounded in size and time.
///
/// An entry is `HMAC-SHA256(key, len(stored) || stored || secret)` with a random key made at
/// start that never leaves the process: neither the secret nor anything that could be checked
/// against it without the key is kept, and entries are useless to another process. Keying by
/// the stored hash (random salt, unique per client and per secret) rather than by client id
/// means nothing has to be invalidated: a rotated secret, or a client removed and added again,
/// has another stored hash and so misses, in this process and in every replica, whoever changed
/// the row (the CLI, another replica, an operator's SQL).
struct VerifiedSecrets {
    key: hmac::Key,
    entries: moka::sync::Cache<[u8; 32], ()>,
}

impl VerifiedSecrets {
    fn new(capacity: u64, ttl: Duration) -> Self {
        let mut key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut key).expect("BUG: the system random generator failed");
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
            entries: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
        }
    }

    fn entry(&self, stored_hash: &str, secret: &SecretString) -> [u8; 32] {
        let mut context = hmac::Context::with_key(&self.key);
        // Length-prefixed, so no other (stored, secret) split gives the same input.
        context.update(
            &u64::try_from(stored_hash.len())
                .unwrap_or(u64::MAX)
                .to_be_bytes(),
        );
        context.update(stored_hash.as_bytes());
        context.update(secret.expose_secret().as_bytes());
        let mut entry = [0u8; 32];
        entry.copy_from_slice(context.sign().as_ref());
        entry
    }

    fn contains(&self, entry: &[u8; 32]) -> bool {
        self.entries.contains_key(entry)
    }

    fn insert(&self, entry: [u8; 32]) {
        self.entries.insert(entry, ());
    }

    fn len(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }
}

async fn hash_blocking(permits: &Semaphore, secret: SecretString) -> Result<String, PasswordError> {
    let _permit = permits.acquire().await.map_err(|_| PasswordError::Closed)?;
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        aws_lc_rs::rand::fill(&mut salt).expect("BUG: the system random generator failed");
        let salt = SaltString::encode_b64(&salt).map_err(PasswordError::Argon2)?;
        Argon2::default()
            .hash_password(secret.expose_secret().as_bytes(), &salt)
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
        let secret = SecretString::from("correct horse battery staple");
        let hash = passwords.hash(&secret).await.expect("hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(
            passwords
                .verify(Some(&hash), &secret)
                .await
                .expect("verify")
        );
        let wrong = SecretString::from("wrong");
        assert!(!passwords.verify(Some(&hash), &wrong).await.expect("verify"));
        assert!(!passwords.verify(None, &secret).await.expect("verify"));
    }

    #[tokio::test]
    async fn only_accepted_client_secrets_are_remembered_and_only_for_their_hash() {
        let passwords = Passwords::new().await.expect("hasher");
        let secret = SecretString::from(crate::crypto::random_secret());
        let hash = passwords.hash(&secret).await.expect("hash");
        let wrong = SecretString::from("wrong");

        assert!(
            !passwords
                .verify_client_secret(Some(&hash), &wrong, Priority::Clean)
                .await
                .unwrap()
        );
        assert!(
            !passwords
                .verify_client_secret(None, &secret, Priority::Clean)
                .await
                .unwrap()
        );
        assert_eq!(
            passwords.remembered_client_secrets(),
            0,
            "no failure is kept"
        );

        for _ in 0..2 {
            assert!(
                passwords
                    .verify_client_secret(Some(&hash), &secret, Priority::Clean)
                    .await
                    .unwrap()
            );
        }
        assert_eq!(passwords.remembered_client_secrets(), 1);
        assert!(
            !passwords
                .verify_client_secret(Some(&hash), &wrong, Priority::Clean)
                .await
                .unwrap(),
            "a remembered secret lets no other secret through"
        );

        // The secret rotated: the row holds the hash of another secret. The old secret is
        // checked against the new hash (and fails) although it is remembered for the old one.
        let rotated = passwords
            .hash(&SecretString::from(crate::crypto::random_secret()))
            .await
            .expect("hash");
        assert!(
            !passwords
                .verify_client_secret(Some(&rotated), &secret, Priority::Clean)
                .await
                .unwrap()
        );
        // The client removed: no hash, no memory consulted.
        assert!(
            !passwords
                .verify_client_secret(None, &secret, Priority::Clean)
                .await
                .unwrap()
        );
    }

    #[test]
    fn remembered_secrets_expire_and_are_keyed_by_hash_and_secret() {
        let memory = VerifiedSecrets::new(10, Duration::from_millis(50));
        let secret = SecretString::from("s");
        let entry = memory.entry("$argon2id$a", &secret);
        assert_ne!(entry, memory.entry("$argon2id$b", &secret));
        assert_ne!(entry, memory.entry("$argon2id$a", &SecretString::from("t")));
        // The split between hash and secret is part of the input.
        assert_ne!(
            memory.entry("ab", &SecretString::from("c")),
            memory.entry("a", &SecretString::from("bc"))
        );
        assert_ne!(
            entry,
            VerifiedSecrets::new(10, Duration::from_secs(1)).entry("$argon2id$a", &secret),
            "the key is random per process"
        );
        memory.insert(entry);
        assert!(memory.contains(&entry));
        std::thread::sleep(Duration::from_millis(80));
        assert!(!memory.contains(&entry));
    }

    /// `verification`, which must be answered while the test holds every permit: were it queued,
    /// it would wait as long as the test holds them, so a generous guard turns that into a
    /// failure instead of a hang (no timing is asserted).
    async fn at_once<T>(verification: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(30), verification)
            .await
            .expect("answered while every permit is held, not queued")
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_a_freed_permit_goes_to_the_waiter() {
        let passwords = Passwords::with_limits(&Argon2Config {
            permits: 1,
            max_waiting: Some(1),
        })
        .await
        .expect("hasher");
        let secret = SecretString::from("correct horse battery staple");
        let hash = passwords.hash(&secret).await.expect("hash");
        let running = passwords.occupy().await.expect("the one permit");

        let waiter = {
            let (passwords, hash, secret) = (passwords.clone(), hash.clone(), secret.clone());
            tokio::spawn(async move { passwords.verify(Some(&hash), &secret).await })
        };
        while passwords.waiting() < 1 {
            tokio::task::yield_now().await;
        }
        let refused = at_once(passwords.verify(Some(&hash), &secret)).await;
        assert!(matches!(refused, Err(PasswordError::Busy)), "{refused:?}");
        assert_eq!(passwords.verifications(), 0, "nothing ran");

        drop(running);
        assert!(waiter.await.expect("task").expect("verified"));
        assert_eq!(passwords.waiting(), 0);
        // No waiting room at all: busy means refused.
        let none = Passwords::with_limits(&Argon2Config {
            permits: 1,
            max_waiting: Some(0),
        })
        .await
        .expect("hasher");
        let _running = none.occupy().await.expect("permit");
        assert!(matches!(
            at_once(none.verify(None, &secret)).await,
            Err(PasswordError::Busy)
        ));
    }

    #[tokio::test]
    async fn a_suspect_verification_never_waits() {
        let passwords = Passwords::with_limits(&Argon2Config {
            permits: 1,
            max_waiting: Some(2),
        })
        .await
        .expect("hasher");
        let secret = SecretString::from("correct horse battery staple");
        // A free permit: a suspect verification runs.
        assert!(
            !passwords
                .verify_as(None, &secret, Priority::Suspect)
                .await
                .expect("ran")
        );
        // Every permit busy and the queue empty: a suspect one is refused, a clean one waits.
        let running = passwords.occupy().await.expect("the one permit");
        assert!(matches!(
            at_once(passwords.verify_as(None, &secret, Priority::Suspect)).await,
            Err(PasswordError::Busy)
        ));
        let clean = {
            let (passwords, secret) = (passwords.clone(), secret.clone());
            tokio::spawn(async move { passwords.verify(None, &secret).await })
        };
        while passwords.waiting() < 1 {
            tokio::task::yield_now().await;
        }
        drop(running);
        assert!(!clean.await.expect("task").expect("verified"));
        assert_eq!(passwords.verifications(), 2);
    }

    #[test]
    fn secret_debug_is_redacted() {
        let secret = SecretString::from("hunter22");
        assert!(!format!("{secret:?}").contains("hunter22"));
    }
}
