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

/// How often [`report_pool_usage`] samples a pool by default: a few samples per scrape.
pub const POOL_REPORT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Publishes the pool's usage every `interval`, for as long as the returned guard lives and the
/// pool is open: `db_pool_connections{state="idle"|"in_use"}` (open connections) and
/// `db_pool_max` (the configured ceiling). `in_use` at `db_pool_max` means requests are queueing
/// for a connection.
///
/// Sampled rather than computed at scrape time because the `metrics` facade has no collection
/// callback; one sample every few seconds costs nothing.
pub fn report_pool_usage(pool: &AnyPool, interval: std::time::Duration) -> PoolReporter {
    let pool = pool.clone();
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !pool.is_closed() {
            ticks.tick().await;
            record_pool_usage(&pool);
        }
    });
    PoolReporter { task }
}

/// Records the pool's usage once (what [`report_pool_usage`] does on every tick).
pub fn record_pool_usage(pool: &AnyPool) {
    let open = pool.size();
    let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX).min(open);
    metrics::gauge!("db_pool_connections", "state" => "idle").set(f64::from(idle));
    metrics::gauge!("db_pool_connections", "state" => "in_use").set(f64::from(open - idle));
    metrics::gauge!("db_pool_max").set(f64::from(pool.options().get_max_connections()));
}

/// Stops the reporting of [`report_pool_usage`] when dropped.
#[derive(Debug)]
pub struct PoolReporter {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PoolReporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}
