//! Service clients: the callers of the `client_credentials` grant, and optionally the
//! authenticated client of a `password` grant.

use std::time::Duration;

use sqlx::AnyPool;

use crate::crypto;
use crate::db;
use crate::passwords::{PasswordError, Passwords, Priority, SecretString};
use crate::scope::{self, ScopeSet};
use crate::users::{self, LookupError};

/// A registered client. Its secret is only stored as an Argon2id hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    /// The `sub` and `client_id` of its tokens.
    pub id: String,
    pub scopes: ScopeSet,
    pub roles: Vec<String>,
    pub created_at: i64,
}

#[derive(Clone, Debug)]
pub struct NewClient {
    pub id: String,
    pub scopes: ScopeSet,
    pub roles: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateClientError {
    #[error("invalid client id: 1-64 characters of [A-Za-z0-9._@-]")]
    InvalidId,
    #[error("a client with id {0:?} already exists")]
    Duplicate(String),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("database error: {0}")]
    Db(#[source] sqlx::Error),
}

/// Client ids follow the username rules: 1-64 characters of `[A-Za-z0-9._@-]` (so never a `:`,
/// which HTTP Basic could not carry unencoded).
pub fn validate_client_id(id: &str) -> bool {
    users::validate_username(id).is_ok()
}

/// Registers a client with a fresh 256-bit secret, returned once and stored only as a hash.
pub async fn create(
    pool: &AnyPool,
    passwords: &Passwords,
    new: NewClient,
) -> Result<(Client, SecretString), CreateClientError> {
    if !validate_client_id(&new.id) {
        return Err(CreateClientError::InvalidId);
    }
    let secret = SecretString::from(crypto::random_secret());
    let secret_hash = passwords.hash(&secret).await?;
    let client = Client {
        id: new.id,
        scopes: new.scopes,
        roles: new.roles,
        created_at: db::now(),
    };
    sqlx::query(
        "INSERT INTO clients (id, secret_hash, scopes, roles, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&client.id)
    .bind(&secret_hash)
    .bind(client.scopes.to_string())
    .bind(scope::roles_to_string(&client.roles))
    .bind(client.created_at)
    .execute(pool)
    .await
    .map_err(|e| {
        if db::is_unique_violation(&e) {
            CreateClientError::Duplicate(client.id.clone())
        } else {
            CreateClientError::Db(e)
        }
    })?;
    Ok((client, secret))
}

#[derive(sqlx::FromRow)]
struct ClientRow {
    id: String,
    secret_hash: String,
    scopes: String,
    roles: String,
    created_at: i64,
}

impl ClientRow {
    fn into_client(self) -> Result<(Client, String), LookupError> {
        let roles = scope::parse_roles(&self.roles)
            .map_err(|e| LookupError::Corrupt(format!("client {}: {e}", self.id)))?;
        let scopes = ScopeSet::parse(&self.scopes)
            .map_err(|e| LookupError::Corrupt(format!("client {}: {e}", self.id)))?;
        Ok((
            Client {
                id: self.id,
                scopes,
                roles,
                created_at: self.created_at,
            },
            self.secret_hash,
        ))
    }
}

async fn find_with_hash(pool: &AnyPool, id: &str) -> Result<Option<(Client, String)>, LookupError> {
    let row: Option<ClientRow> = sqlx::query_as(
        "SELECT id, secret_hash, scopes, roles, created_at FROM clients WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.map(ClientRow::into_client).transpose()
}

pub async fn find(pool: &AnyPool, id: &str) -> Result<Option<Client>, LookupError> {
    Ok(find_with_hash(pool, id).await?.map(|(client, _)| client))
}

/// Client rows kept at most: registered clients are a handful of services.
const CLIENT_ROW_CAPACITY: u64 = 1024;

/// The client rows the token endpoint authenticates against, each reused for a few seconds
/// after it was read, so that a service asking for tokens again and again costs no query per
/// request: on SQLite a query is a round trip to the driver's thread, about a third of a
/// `client_credentials` grant's CPU before this. Only rows that exist are kept (an unknown id
/// is looked up every time, so a spray of ids cannot fill the cache), and a client changed or
/// removed in the database, by any process, is seen within the TTL (`AUTH_CLIENT_CACHE_TTL`, 5 s):
/// far less than the lifetime of the access tokens it already holds.
#[derive(Clone)]
pub struct ClientRows {
    pool: AnyPool,
    /// `None` with a TTL of zero: every request reads the row.
    recent: Option<moka::sync::Cache<String, (Client, String)>>,
}

impl std::fmt::Debug for ClientRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The cached rows carry secret hashes: never printed.
        f.debug_struct("ClientRows").finish_non_exhaustive()
    }
}

impl ClientRows {
    pub fn new(pool: AnyPool, ttl: Duration) -> Self {
        let recent = (!ttl.is_zero()).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(CLIENT_ROW_CAPACITY)
                .time_to_live(ttl)
                .build()
        });
        Self { pool, recent }
    }

    /// The client `id` and its secret hash, from memory if read within the TTL.
    async fn find_with_hash(&self, id: &str) -> Result<Option<(Client, String)>, LookupError> {
        if let Some(row) = self.recent.as_ref().and_then(|recent| recent.get(id)) {
            return Ok(Some(row));
        }
        let found = find_with_hash(&self.pool, id).await?;
        if let (Some(recent), Some(row)) = (&self.recent, &found) {
            recent.insert(id.to_owned(), row.clone());
        }
        Ok(found)
    }

    /// The client `id`, from memory if read within the TTL (how a `WatchRevocations` stream
    /// learns that its client was removed or lost its scope).
    pub async fn find(&self, id: &str) -> Result<Option<Client>, LookupError> {
        Ok(self.find_with_hash(id).await?.map(|(client, _)| client))
    }
}

/// The client `id` if `secret` is its secret. An unknown or malformed id costs an Argon2
/// verification against a dummy hash, like a wrong secret.
pub async fn authenticate(
    clients: &ClientRows,
    passwords: &Passwords,
    id: &str,
    secret: &SecretString,
) -> Result<Option<Client>, LookupError> {
    let presented = Presented::look_up(clients, id).await?;
    if let Some(client) = presented.remembered(passwords, secret) {
        return Ok(Some(client));
    }
    presented.verify(passwords, secret, Priority::Clean).await
}

/// A client id as presented, looked up: the first half of [`authenticate`], so that a caller
/// can decide between the two halves (the client-authentication throttle sits between them).
#[derive(Debug)]
pub struct Presented {
    /// The client and its secret hash; `None` for an unknown or malformed id.
    found: Option<(Client, String)>,
}

impl Presented {
    /// Looks `id` up (its row reused for `AUTH_CLIENT_CACHE_TTL`); an invalid id is not looked
    /// up and is unknown.
    pub async fn look_up(clients: &ClientRows, id: &str) -> Result<Self, LookupError> {
        let found = if validate_client_id(id) {
            clients.find_with_hash(id).await?
        } else {
            None
        };
        Ok(Self { found })
    }

    /// The registered client, if the id is one (whatever the secret).
    pub fn client(&self) -> Option<&Client> {
        self.found.as_ref().map(|(client, _)| client)
    }

    /// The client, if `secret` is one Argon2 accepted for it within the last minute: no Argon2.
    pub fn remembered(&self, passwords: &Passwords, secret: &SecretString) -> Option<Client> {
        let (client, hash) = self.found.as_ref()?;
        passwords
            .is_remembered_client_secret(hash, secret)
            .then(|| client.clone())
    }

    /// The client if `secret` is its secret: one Argon2 verification, against a dummy hash for
    /// an unknown id (waiting for Argon2 only if `priority` allows).
    pub async fn verify(
        self,
        passwords: &Passwords,
        secret: &SecretString,
        priority: Priority,
    ) -> Result<Option<Client>, LookupError> {
        let (client, hash) = match self.found {
            Some((client, hash)) => (Some(client), Some(hash)),
            None => (None, None),
        };
        let matches = passwords
            .verify_client_secret(hash.as_deref(), secret, priority)
            .await?;
        Ok(client.filter(|_| matches))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pool(dir: &tempfile::TempDir) -> AnyPool {
        let url = format!("sqlite://{}", dir.path().join("auth.db").display());
        db::connect_and_migrate(&url, 2).await.expect("database")
    }

    /// A row read once is reused until its TTL runs out, then read again: a client removed from
    /// the database (by any process) stops authenticating within the TTL.
    #[tokio::test]
    async fn rows_are_reused_for_their_ttl_and_no_longer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = pool(&dir).await;
        let passwords = Passwords::new().await.expect("passwords");
        let new = NewClient {
            id: "gateway".into(),
            scopes: ScopeSet::parse("sessions:check").expect("scopes"),
            roles: Vec::new(),
        };
        let (client, secret) = create(&pool, &passwords, new).await.expect("created");
        let ttl = Duration::from_millis(300);
        let rows = ClientRows::new(pool.clone(), ttl);
        let found = authenticate(&rows, &passwords, "gateway", &secret).await;
        assert_eq!(found.expect("lookup"), Some(client.clone()));

        sqlx::query("DELETE FROM clients WHERE id = 'gateway'")
            .execute(&pool)
            .await
            .expect("deleted");
        let found = authenticate(&rows, &passwords, "gateway", &secret).await;
        assert_eq!(found.expect("lookup"), Some(client), "within the TTL");
        tokio::time::sleep(ttl + Duration::from_millis(100)).await;
        let found = authenticate(&rows, &passwords, "gateway", &secret).await;
        assert_eq!(found.expect("lookup"), None, "after the TTL");

        // A wrong secret never authenticates, from memory or not.
        let wrong = SecretString::from("not the secret".to_owned());
        assert_eq!(
            authenticate(&rows, &passwords, "gateway", &wrong)
                .await
                .expect("lookup"),
            None
        );
    }
}
