//! Clients: the callers of the `client_credentials` grant, the authenticated client of a
//! `password` grant, and the clients of the authorization code flow, with their registered
//! redirect URIs ([`crate::redirect_uris`]). A *confidential* client has a secret; a *public*
//! one (a single-page or native app) has none and proves itself with PKCE alone.

use std::time::Duration;

use sqlx::AnyPool;

use crate::crypto;
use crate::db;
use crate::passwords::{PasswordError, Passwords, Priority, SecretString};
use crate::redirect_uris::{self, RedirectUriError};
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
    /// A public client: no secret, PKCE only.
    pub public: bool,
    /// Where the authorization endpoint may send its answers (compared as exact strings).
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout may send the browser back.
    pub post_logout_redirect_uris: Vec<String>,
}

impl Client {
    /// Whether `uri` is one of the client's redirect URIs, byte for byte.
    pub fn has_redirect_uri(&self, uri: &str) -> bool {
        redirect_uris::is_registered(&self.redirect_uris, uri)
    }

    /// Whether `uri` is one of the client's post-logout redirect URIs, byte for byte.
    pub fn has_post_logout_redirect_uri(&self, uri: &str) -> bool {
        redirect_uris::is_registered(&self.post_logout_redirect_uris, uri)
    }
}

/// A confidential client without redirect URIs: a service client ([`register`] for the rest).
#[derive(Clone, Debug)]
pub struct NewClient {
    pub id: String,
    pub scopes: ScopeSet,
    pub roles: Vec<String>,
}

/// Any client: [`NewClient`] plus its kind and its URIs.
#[derive(Clone, Debug, Default)]
pub struct Registration {
    pub id: String,
    pub scopes: ScopeSet,
    pub roles: Vec<String>,
    pub public: bool,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
}

impl From<NewClient> for Registration {
    fn from(new: NewClient) -> Self {
        Self {
            id: new.id,
            scopes: new.scopes,
            roles: new.roles,
            ..Self::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CreateClientError {
    #[error("invalid client id: 1-64 characters of [A-Za-z0-9._@-]")]
    InvalidId,
    #[error("a client with id {0:?} already exists")]
    Duplicate(String),
    #[error("redirect URI {uri:?} {reason}")]
    RedirectUri {
        uri: String,
        #[source]
        reason: RedirectUriError,
    },
    #[error("post-logout redirect URI {uri:?} {reason}")]
    PostLogoutRedirectUri {
        uri: String,
        #[source]
        reason: RedirectUriError,
    },
    #[error("a public client needs at least one redirect URI (it has no other use)")]
    PublicWithoutRedirectUri,
    #[error(transparent)]
    TooManyGrants(#[from] crate::scope::GrantsTooLarge),
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

/// Registers a confidential client with a fresh 256-bit secret, returned once and stored only as
/// a hash.
pub async fn create(
    pool: &AnyPool,
    passwords: &Passwords,
    new: NewClient,
) -> Result<(Client, SecretString), CreateClientError> {
    let (client, secret) = register(pool, passwords, new.into()).await?;
    let secret = secret.expect("BUG: a confidential client always gets a secret");
    Ok((client, secret))
}

/// Checks a registration: the id, every URI ([`redirect_uris::validate`]), and that a public
/// client has somewhere to send its codes.
pub fn validate_registration(new: &Registration) -> Result<(), CreateClientError> {
    if !validate_client_id(&new.id) {
        return Err(CreateClientError::InvalidId);
    }
    crate::scope::check_grants(&new.roles, &new.scopes)?;
    for uri in &new.redirect_uris {
        redirect_uris::validate(uri).map_err(|reason| CreateClientError::RedirectUri {
            uri: uri.clone(),
            reason,
        })?;
    }
    for uri in &new.post_logout_redirect_uris {
        redirect_uris::validate(uri).map_err(|reason| {
            CreateClientError::PostLogoutRedirectUri {
                uri: uri.clone(),
                reason,
            }
        })?;
    }
    if new.public && new.redirect_uris.is_empty() {
        return Err(CreateClientError::PublicWithoutRedirectUri);
    }
    Ok(())
}

/// Registers a client: a confidential one with a fresh 256-bit secret, returned once and stored
/// only as a hash; a public one with none (its `secret_hash` is empty).
pub async fn register(
    pool: &AnyPool,
    passwords: &Passwords,
    new: Registration,
) -> Result<(Client, Option<SecretString>), CreateClientError> {
    validate_registration(&new)?;
    let (secret, secret_hash) = if new.public {
        (None, String::new())
    } else {
        let secret = SecretString::from(crypto::random_secret());
        let hash = passwords.hash(&secret).await?;
        (Some(secret), hash)
    };
    let mut redirect_uris = new.redirect_uris;
    redirect_uris.dedup();
    let mut post_logout_redirect_uris = new.post_logout_redirect_uris;
    post_logout_redirect_uris.dedup();
    let client = Client {
        id: new.id,
        scopes: new.scopes,
        roles: new.roles,
        created_at: db::now(),
        public: new.public,
        redirect_uris,
        post_logout_redirect_uris,
    };
    sqlx::query(
        "INSERT INTO clients (id, secret_hash, scopes, roles, created_at, redirect_uris, \
         post_logout_redirect_uris, client_type) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&client.id)
    .bind(&secret_hash)
    .bind(client.scopes.to_string())
    .bind(scope::roles_to_string(&client.roles))
    .bind(client.created_at)
    .bind(redirect_uris::join(&client.redirect_uris))
    .bind(redirect_uris::join(&client.post_logout_redirect_uris))
    .bind(if client.public { PUBLIC } else { CONFIDENTIAL })
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

/// `clients.client_type` of a client without a secret.
const PUBLIC: &str = "public";
/// `clients.client_type` of a client with a secret.
const CONFIDENTIAL: &str = "confidential";

#[derive(sqlx::FromRow)]
struct ClientRow {
    id: String,
    secret_hash: String,
    scopes: String,
    roles: String,
    created_at: i64,
    redirect_uris: String,
    post_logout_redirect_uris: String,
    client_type: String,
}

/// A client and its secret hash (`None` for a public client, which has no secret).
type ClientWithHash = (Client, Option<String>);

impl ClientRow {
    fn into_client(self) -> Result<ClientWithHash, LookupError> {
        let corrupt =
            |e: &dyn std::fmt::Display| LookupError::Corrupt(format!("client {}: {e}", self.id));
        let roles = scope::parse_roles(&self.roles).map_err(|e| corrupt(&e))?;
        let scopes = ScopeSet::parse(&self.scopes).map_err(|e| corrupt(&e))?;
        let public = match self.client_type.as_str() {
            PUBLIC => true,
            CONFIDENTIAL => false,
            other => return Err(corrupt(&format!("unknown client type {other:?}"))),
        };
        let hash = (!public).then_some(self.secret_hash);
        Ok((
            Client {
                id: self.id,
                scopes,
                roles,
                created_at: self.created_at,
                public,
                redirect_uris: redirect_uris::split(&self.redirect_uris),
                post_logout_redirect_uris: redirect_uris::split(&self.post_logout_redirect_uris),
            },
            hash,
        ))
    }
}

async fn find_with_hash(pool: &AnyPool, id: &str) -> Result<Option<ClientWithHash>, LookupError> {
    let row: Option<ClientRow> = sqlx::query_as(
        "SELECT id, secret_hash, scopes, roles, created_at, redirect_uris, \
         post_logout_redirect_uris, client_type FROM clients WHERE id = $1",
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
    recent: Option<moka::sync::Cache<String, ClientWithHash>>,
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
    async fn find_with_hash(&self, id: &str) -> Result<Option<ClientWithHash>, LookupError> {
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
    found: Option<ClientWithHash>,
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
            .is_remembered_client_secret(hash.as_deref()?, secret)
            .then(|| client.clone())
    }

    /// The client if `secret` is its secret: one Argon2 verification, against a dummy hash for
    /// an unknown id or a public client, which has no secret and so never authenticates with
    /// one (waiting for Argon2 only if `priority` allows).
    pub async fn verify(
        self,
        passwords: &Passwords,
        secret: &SecretString,
        priority: Priority,
    ) -> Result<Option<Client>, LookupError> {
        let (client, hash) = match self.found {
            Some((client, hash)) => (Some(client), hash),
            None => (None, None),
        };
        let matches = passwords
            .verify_client_secret(hash.as_deref(), secret, priority)
            .await?;
        Ok(client.filter(|client| matches && !client.public))
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

    /// A public client is stored with its URIs, and no secret ever authenticates it: not an
    /// empty one, not the empty hash it is stored with.
    #[tokio::test]
    async fn a_public_client_keeps_its_uris_and_never_authenticates_with_a_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = pool(&dir).await;
        let passwords = Passwords::new().await.expect("passwords");
        let registration = Registration {
            id: "spa".into(),
            scopes: ScopeSet::parse("openid orders:read").expect("scopes"),
            public: true,
            redirect_uris: vec![
                "https://app.example.com/cb".into(),
                "http://localhost:3000/cb".into(),
            ],
            post_logout_redirect_uris: vec!["https://app.example.com/".into()],
            ..Registration::default()
        };
        let (client, secret) = register(&pool, &passwords, registration)
            .await
            .expect("registered");
        assert!(secret.is_none(), "a public client has no secret");
        let rows = ClientRows::new(pool.clone(), Duration::ZERO);
        let found = rows.find("spa").await.expect("lookup").expect("found");
        assert_eq!(found, client);
        assert!(found.public);
        assert!(found.has_redirect_uri("http://localhost:3000/cb"));
        assert!(!found.has_redirect_uri("http://localhost:3000/cb/"));
        assert!(found.has_post_logout_redirect_uri("https://app.example.com/"));
        for candidate in ["", "anything"] {
            let candidate = SecretString::from(candidate.to_owned());
            let found = authenticate(&rows, &passwords, "spa", &candidate).await;
            assert_eq!(found.expect("lookup"), None);
        }
    }

    #[tokio::test]
    async fn registrations_with_bad_uris_are_refused_before_anything_is_stored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = pool(&dir).await;
        let passwords = Passwords::new().await.expect("passwords");
        let refused = |registration: Registration| {
            let (pool, passwords) = (pool.clone(), passwords.clone());
            async move {
                register(&pool, &passwords, registration)
                    .await
                    .expect_err("refused")
                    .to_string()
            }
        };
        let error = refused(Registration {
            id: "web".into(),
            redirect_uris: vec!["http://web.example.com/cb".into()],
            ..Registration::default()
        })
        .await;
        assert!(
            error.contains("http://web.example.com/cb") && error.contains("https"),
            "{error}"
        );
        let error = refused(Registration {
            id: "web".into(),
            post_logout_redirect_uris: vec!["https://web.example.com/#x".into()],
            ..Registration::default()
        })
        .await;
        assert!(error.starts_with("post-logout redirect URI"), "{error}");
        let error = refused(Registration {
            id: "web".into(),
            public: true,
            ..Registration::default()
        })
        .await;
        assert!(error.contains("at least one redirect URI"), "{error}");
        assert_eq!(find(&pool, "web").await.expect("lookup"), None);
    }
}
