//! Users: the resource owners of the `password` grant.

use sqlx::{Any, AnyPool};

use crate::db;
use crate::passwords::{ExposeSecret as _, PasswordError, Passwords, Priority, SecretString};
use crate::scope::{self, ScopeSet};

/// Shortest accepted password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest accepted password, in characters (Argon2 accepts more; nobody needs more).
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// A user as the token endpoint sees it. The password hash stays in the database layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// UUID v4: the `sub` of the user's tokens.
    pub id: String,
    pub username: String,
    pub roles: Vec<String>,
    pub scopes: ScopeSet,
    pub disabled_at: Option<i64>,
    pub created_at: i64,
    /// When an administrator last changed the roles or scopes: tokens issued at or before it
    /// carry stale claims and are refused by the verifiers that know it.
    pub claims_changed_at: Option<i64>,
}

impl User {
    pub fn is_disabled(&self) -> bool {
        self.disabled_at.is_some()
    }
}

/// What [`create`] needs.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub username: String,
    pub password: SecretString,
    pub roles: Vec<String>,
    pub scopes: ScopeSet,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error(transparent)]
    InvalidUsername(#[from] InvalidUsername),
    #[error(
        "the password must have between {MIN_PASSWORD_CHARS} and {MAX_PASSWORD_CHARS} characters"
    )]
    WeakPassword,
    #[error("a user named {0:?} already exists")]
    Duplicate(String),
    #[error(transparent)]
    TooManyGrants(#[from] scope::GrantsTooLarge),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("database error: {0}")]
    Db(#[source] sqlx::Error),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid username: 1-64 characters of [A-Za-z0-9._@-]")]
pub struct InvalidUsername;

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("stored row is invalid: {0}")]
    Corrupt(String),
}

/// The outcome of [`authenticate`]. `Invalid` covers both an unknown user and a wrong password,
/// which callers must not tell apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    Valid(User),
    Disabled(User),
    Invalid,
}

/// A username (and a client id, see [`crate::clients`]) is 1-64 characters of `[A-Za-z0-9._@-]`.
pub fn validate_username(username: &str) -> Result<(), InvalidUsername> {
    let valid = (1..=64).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'));
    if valid { Ok(()) } else { Err(InvalidUsername) }
}

fn validate_password(password: &SecretString) -> Result<(), CreateUserError> {
    let chars = password.expose_secret().chars().count();
    if (MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars) {
        Ok(())
    } else {
        Err(CreateUserError::WeakPassword)
    }
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    username: String,
    password_hash: String,
    roles: String,
    scopes: String,
    disabled_at: Option<i64>,
    created_at: i64,
    claims_changed_at: Option<i64>,
}

impl UserRow {
    fn into_user(self) -> Result<(User, String), LookupError> {
        let roles = scope::parse_roles(&self.roles)
            .map_err(|e| LookupError::Corrupt(format!("user {}: {e}", self.id)))?;
        let scopes = ScopeSet::parse(&self.scopes)
            .map_err(|e| LookupError::Corrupt(format!("user {}: {e}", self.id)))?;
        Ok((
            User {
                id: self.id,
                username: self.username,
                roles,
                scopes,
                disabled_at: self.disabled_at,
                created_at: self.created_at,
                claims_changed_at: self.claims_changed_at,
            },
            self.password_hash,
        ))
    }
}

const SELECT_USER: &str = "SELECT id, username, password_hash, roles, scopes, disabled_at, \
                           created_at, claims_changed_at FROM users";

/// Creates a user with an Argon2id hash of its password.
pub async fn create(
    pool: &AnyPool,
    passwords: &Passwords,
    new: NewUser,
) -> Result<User, CreateUserError> {
    validate_username(&new.username)?;
    validate_password(&new.password)?;
    scope::check_grants(&new.roles, &new.scopes)?;
    let password_hash = passwords.hash(&new.password).await?;
    let user = User {
        id: uuid::Uuid::new_v4().to_string(),
        username: new.username,
        roles: new.roles,
        scopes: new.scopes,
        disabled_at: None,
        created_at: db::now(),
        claims_changed_at: None,
    };
    sqlx::query(
        "INSERT INTO users (id, username, password_hash, roles, scopes, disabled_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, NULL, $6)",
    )
    .bind(&user.id)
    .bind(&user.username)
    .bind(&password_hash)
    .bind(scope::roles_to_string(&user.roles))
    .bind(user.scopes.to_string())
    .bind(user.created_at)
    .execute(pool)
    .await
    .map_err(|e| {
        if db::is_unique_violation(&e) {
            CreateUserError::Duplicate(user.username.clone())
        } else {
            CreateUserError::Db(e)
        }
    })?;
    Ok(user)
}

pub async fn find_by_id<'e, E>(executor: E, id: &str) -> Result<Option<User>, LookupError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let row: Option<UserRow> = sqlx::query_as(&format!("{SELECT_USER} WHERE id = $1"))
        .bind(id)
        .fetch_optional(executor)
        .await?;
    row.map(|r| r.into_user().map(|(user, _)| user)).transpose()
}

pub async fn find_by_username(pool: &AnyPool, username: &str) -> Result<Option<User>, LookupError> {
    Ok(find_with_hash(pool, username).await?.map(|(user, _)| user))
}

async fn find_with_hash(
    pool: &AnyPool,
    username: &str,
) -> Result<Option<(User, String)>, LookupError> {
    let row: Option<UserRow> = sqlx::query_as(&format!("{SELECT_USER} WHERE username = $1"))
        .bind(username)
        .fetch_optional(pool)
        .await?;
    row.map(UserRow::into_user).transpose()
}

/// Checks a username and password. An unknown or malformed username is verified against a dummy
/// hash, so it takes as long as a wrong password and gives the same answer. `priority`: whether
/// the check may wait for Argon2.
pub async fn authenticate(
    pool: &AnyPool,
    passwords: &Passwords,
    username: &str,
    password: &SecretString,
    priority: Priority,
) -> Result<Login, LookupError> {
    let found = if validate_username(username).is_ok() {
        find_with_hash(pool, username).await?
    } else {
        None
    };
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    let matches = passwords
        .verify_as(hash.as_deref(), password, priority)
        .await?;
    Ok(match user {
        Some(user) if matches && user.is_disabled() => Login::Disabled(user),
        Some(user) if matches => Login::Valid(user),
        _ => Login::Invalid,
    })
}

/// Every user, by username.
pub async fn list(pool: &AnyPool) -> Result<Vec<User>, LookupError> {
    let rows: Vec<UserRow> = sqlx::query_as(&format!("{SELECT_USER} ORDER BY username"))
        .fetch_all(pool)
        .await?;
    rows.into_iter()
        .map(|r| r.into_user().map(|(user, _)| user))
        .collect()
}

/// Replaces a user's roles and scopes inside the caller's transaction, recording `now` as the
/// time of the change; tokens issued from then on (including by refresh) carry the new values.
/// Only [`crate::accounts::change_user`] calls it, which also tells the verifiers. Returns
/// whether the user exists.
pub async fn set_grants(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    roles: &[String],
    scopes: &ScopeSet,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE users SET roles = $1, scopes = $2, claims_changed_at = $3 WHERE id = $4",
    )
    .bind(scope::roles_to_string(roles))
    .bind(scopes.to_string())
    .bind(now)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The time at which a token for a user whose claims changed at `changed_at` may be issued:
/// `iat` must be after the change, or the verifiers refuse the new token as they refuse the old
/// ones (times are whole seconds). Waits, at most a second, when the change happened this very
/// second; otherwise returns the current time at once.
pub async fn issue_time_after_change(changed_at: Option<i64>) -> i64 {
    loop {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let now = now_ms.div_euclid(1000);
        match changed_at {
            Some(changed_at) if now <= changed_at => {
                let wait = (changed_at + 1).saturating_mul(1000).saturating_sub(now_ms);
                let wait = u64::try_from(wait).unwrap_or(1).clamp(1, 1000);
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            }
            _ => return now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in [
            "alice",
            "a",
            "bob.smith@example.com",
            "x_y-z.9",
            &"a".repeat(64),
        ] {
            assert_eq!(validate_username(ok), Ok(()), "{ok:?}");
        }
        for bad in [
            "",
            &"a".repeat(65),
            "al ice",
            "alice:x",
            "ålice",
            "a/b",
            "a\0",
            "a\n",
            "a+b",
        ] {
            assert_eq!(validate_username(bad), Err(InvalidUsername), "{bad:?}");
        }
    }

    #[test]
    fn password_length_counts_characters() {
        assert!(validate_password(&SecretString::from("1234567")).is_err());
        assert!(validate_password(&SecretString::from("")).is_err());
        assert!(validate_password(&SecretString::from("12345678")).is_ok());
        assert!(validate_password(&SecretString::from("ééééééé")).is_err());
        assert!(validate_password(&SecretString::from("x".repeat(1025))).is_err());
    }
}
