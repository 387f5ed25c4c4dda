//! The database: connection, embedded migrations, and the clock the rows are stamped with.

use sqlx::AnyPool;
use sqlx::migrate::Migrator;

/// The schema, embedded at compile time from `auth-service/migrations/`.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("cannot apply the database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Connects (creating a missing SQLite file and its directory) and applies pending migrations.
pub async fn connect_and_migrate(url: &str, max_connections: u32) -> Result<AnyPool, DbError> {
    let pool = platform::db::connect(url, max_connections)
        .await
        .map_err(DbError::Connect)?;
    MIGRATOR.run(&pool).await?;
    Ok(pool)
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    authn::unix_now()
}

/// Whether `err` is a unique-constraint violation (a duplicate username or client id).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}
