//! Database connections for the services that store data: SQLite by default (a file, nothing to
//! install), PostgreSQL when the URL says `postgres://`. One code path through sqlx's `Any`
//! driver; queries use `$1`-style placeholders, which both engines accept.

use std::path::Path;
use std::str::FromStr as _;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::MigrateDatabase as _;
use sqlx::{Any, AnyPool, Executor as _};

/// Connects a pool to `url`. For SQLite, creates the file and its directory if missing and puts
/// the database in WAL mode, so command-line tools can write while a server reads.
pub async fn connect(url: &str, max_connections: u32) -> Result<AnyPool, sqlx::Error> {
    install_default_drivers();
    let sqlite = url.starts_with("sqlite:");
    if sqlite {
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?;
        if let Some(parent) = Path::new(options.get_filename()).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(sqlx::Error::Io)?;
        }
        if !url.contains(":memory:") && !Any::database_exists(url).await? {
            Any::create_database(url).await?;
        }
    }
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if sqlite {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; \
                         PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await
}

/// Whether the database answers (for `/readyz`).
pub async fn ping(pool: &AnyPool) -> bool {
    sqlx::query("SELECT 1").execute(pool).await.is_ok()
}
