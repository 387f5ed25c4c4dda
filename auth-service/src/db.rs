//! The database: connection, embedded migrations, and the clock the rows are stamped with.

use std::sync::LazyLock;

use platform::schema::{SchemaError, SchemaMode};
use sqlx::AnyPool;
use sqlx::migrate::Migrator;

use crate::config::Config;

/// The schema, embedded at compile time from `auth-service/migrations/`. It tolerates applied
/// migrations it does not know, so that after a release adds one the previous release still
/// starts (`kubectl rollout undo`); `platform::schema` logs them.
pub static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator
});

/// How an operator applies the migrations, named in the error of a server that finds them
/// missing.
pub const MIGRATE_COMMAND: &str = "auth-service migrate";

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error(transparent)]
    Schema(#[from] SchemaError),
}

/// Connects (creating a missing SQLite file and its directory) and applies pending migrations.
pub async fn connect_and_migrate(url: &str, max_connections: u32) -> Result<AnyPool, DbError> {
    connect(url, max_connections, SchemaMode::Migrate).await
}

/// Connects (creating a missing SQLite file and its directory), then applies the pending
/// migrations or, with [`SchemaMode::Check`] (`DATABASE_MIGRATE=false`), checks that they are
/// all applied and refuses otherwise.
pub async fn connect(
    url: &str,
    max_connections: u32,
    mode: SchemaMode,
) -> Result<AnyPool, DbError> {
    let pool = platform::db::connect(url, max_connections)
        .await
        .map_err(DbError::Connect)?;
    if let Err(error) = platform::schema::prepare(&pool, &MIGRATOR, mode, MIGRATE_COMMAND).await {
        pool.close().await;
        return Err(error.into());
    }
    Ok(pool)
}

/// The database of `config`, migrated or checked as `DATABASE_MIGRATE` says: what the server
/// and the operator commands other than `migrate` open.
pub async fn open(config: &Config) -> Result<AnyPool, DbError> {
    connect(
        &config.database_url,
        config.database_max_connections,
        SchemaMode::from_flag(config.database_migrate),
    )
    .await
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    authn::unix_now()
}

/// Whether `err` is a unique-constraint violation (a duplicate username or client id).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}
