//! Signing keys in the database (`AUTH_KEY_STORE=database`), shared by every replica: the table
//! `signing_keys`, private keys encrypted with [`EncryptionKey`], and the one-row
//! `signing_key_lock` whose row lock serializes every change of the key set.

use std::sync::Arc;

use authn::sign::Signer;
use sqlx::{AnyConnection, AnyPool};

use super::KeyStoreError;
use super::encryption::EncryptionKey;
use super::schedule::{KeyInfo, KeyState};

#[derive(sqlx::FromRow)]
struct Row {
    kid: String,
    state: String,
    created_at: i64,
    activates_at: i64,
    retired_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl Row {
    fn into_info(self) -> Result<KeyInfo, KeyStoreError> {
        let state = KeyState::parse(&self.state).ok_or_else(|| KeyStoreError::Corrupt {
            kid: self.kid.clone(),
            reason: format!("unknown state {:?}", self.state),
        })?;
        Ok(KeyInfo {
            kid: self.kid,
            state,
            created_at: self.created_at,
            activates_at: self.activates_at,
            retired_at: self.retired_at,
            revoked_at: self.revoked_at,
        })
    }
}

/// Takes the key-set lock for the rest of the transaction on `conn`, and bumps the version
/// replicas compare to notice a change. As the first write of the transaction it is also what
/// makes SQLite take its write lock before anything is read (no stale snapshot to upgrade).
pub async fn lock(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE signing_key_lock SET version = version + 1 WHERE id = 1")
        .execute(conn)
        .await?;
    Ok(())
}

/// The version of the key set: it changes with every committed change.
pub async fn version(pool: &AnyPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT version FROM signing_key_lock WHERE id = 1")
        .fetch_one(pool)
        .await
}

/// How many keys the table holds.
pub async fn count(pool: &AnyPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM signing_keys")
        .fetch_one(pool)
        .await
}

/// The keys' metadata, in activation order.
pub async fn records(conn: &mut AnyConnection) -> Result<Vec<KeyInfo>, KeyStoreError> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT kid, state, created_at, activates_at, retired_at, revoked_at FROM signing_keys \
         ORDER BY activates_at, kid",
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(Row::into_info).collect()
}

/// The private keys of the table, readable with the encryption key only.
#[derive(Debug, Clone)]
pub struct DbStore {
    encryption: Arc<EncryptionKey>,
}

impl DbStore {
    pub fn new(encryption: EncryptionKey) -> Self {
        Self {
            encryption: Arc::new(encryption),
        }
    }

    /// Decrypts and parses the private key of `kid`.
    pub async fn signer(&self, pool: &AnyPool, kid: &str) -> Result<Signer, KeyStoreError> {
        let stored: Option<String> =
            sqlx::query_scalar("SELECT private_key FROM signing_keys WHERE kid = $1")
                .bind(kid)
                .fetch_optional(pool)
                .await?;
        let stored = stored
            .filter(|s| !s.is_empty())
            .ok_or_else(|| KeyStoreError::Missing(kid.to_owned()))?;
        let der = self
            .encryption
            .open(kid, &stored)
            .map_err(|source| KeyStoreError::Decrypt {
                kid: kid.to_owned(),
                source,
            })?;
        let signer = Signer::from_pkcs8_der(&der).map_err(|e| KeyStoreError::Corrupt {
            kid: kid.to_owned(),
            reason: e.to_string(),
        })?;
        if signer.kid() != kid {
            return Err(KeyStoreError::Corrupt {
                kid: kid.to_owned(),
                reason: "the private key belongs to another kid".to_owned(),
            });
        }
        Ok(signer)
    }

    fn seal(&self, signer: &Signer) -> Result<String, KeyStoreError> {
        let pem = signer.to_pkcs8_pem().map_err(KeyStoreError::Generate)?;
        let der =
            pem::parse(pem).map_err(|_| KeyStoreError::Generate(authn::jwk::KeyError::Pem))?;
        self.encryption
            .seal(signer.kid(), der.contents())
            .map_err(KeyStoreError::Encryption)
    }

    /// Turns `before` into `after` inside the caller's locked transaction. New keys come from
    /// `fresh`; a revoked key's private key is erased at once.
    pub async fn persist(
        &self,
        conn: &mut AnyConnection,
        before: &[KeyInfo],
        after: &[KeyInfo],
        fresh: &[Arc<Signer>],
    ) -> Result<(), KeyStoreError> {
        for old in before {
            if !after.iter().any(|k| k.kid == old.kid) {
                sqlx::query("DELETE FROM signing_keys WHERE kid = $1")
                    .bind(&old.kid)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        for key in after {
            match before.iter().find(|k| k.kid == key.kid) {
                Some(old) if old == key => {}
                Some(_) => {
                    sqlx::query(
                        "UPDATE signing_keys SET state = $1, activates_at = $2, retired_at = $3, \
                         revoked_at = $4 WHERE kid = $5",
                    )
                    .bind(key.state.as_str())
                    .bind(key.activates_at)
                    .bind(key.retired_at)
                    .bind(key.revoked_at)
                    .bind(&key.kid)
                    .execute(&mut *conn)
                    .await?;
                    if key.state == KeyState::Revoked {
                        // A revoked key may have leaked: nothing may sign with it again.
                        sqlx::query("UPDATE signing_keys SET private_key = '' WHERE kid = $1")
                            .bind(&key.kid)
                            .execute(&mut *conn)
                            .await?;
                    }
                }
                None => {
                    let signer = fresh
                        .iter()
                        .find(|s| s.kid() == key.kid)
                        .ok_or_else(|| KeyStoreError::Missing(key.kid.clone()))?;
                    let sealed = if key.state == KeyState::Revoked {
                        String::new()
                    } else {
                        self.seal(signer)?
                    };
                    sqlx::query(
                        "INSERT INTO signing_keys (kid, state, private_key, created_at, \
                         activates_at, retired_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(&key.kid)
                    .bind(key.state.as_str())
                    .bind(sealed)
                    .bind(key.created_at)
                    .bind(key.activates_at)
                    .bind(key.retired_at)
                    .bind(key.revoked_at)
                    .execute(&mut *conn)
                    .await?;
                }
            }
        }
        Ok(())
    }
}
