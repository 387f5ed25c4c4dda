//! Service clients: the callers of the `client_credentials` grant, and optionally the
//! authenticated client of a `password` grant.

use sqlx::AnyPool;

use crate::crypto;
use crate::db;
use crate::passwords::{PasswordError, Passwords, SecretString};
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
    let secret = SecretString::new(crypto::random_secret());
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

/// Checks a client id and secret; `None` when either is wrong (indistinguishable, and an unknown
/// id costs a dummy hash verification like a wrong secret does). The row is read on every call,
/// so changes take effect at once; a secret Argon2 accepted for the current hash recently is not
/// hashed again (see [`Passwords::verify_client_secret`]).
pub async fn authenticate(
    pool: &AnyPool,
    passwords: &Passwords,
    id: &str,
    secret: &SecretString,
) -> Result<Option<Client>, LookupError> {
    let found = if validate_client_id(id) {
        find_with_hash(pool, id).await?
    } else {
        None
    };
    let (client, hash) = match found {
        Some((client, hash)) => (Some(client), Some(hash)),
        None => (None, None),
    };
    let matches = passwords
        .verify_client_secret(hash.as_deref(), secret)
        .await?;
    Ok(client.filter(|_| matches))
}
