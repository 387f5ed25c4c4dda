//! Other releases' schemas, for the rollback tests: a service's migrations directory copied as
//! the previous release shipped it (without its newest migration) or as the next release will
//! (with one more), as a [`Migrator`] to apply to a test database before starting the release
//! under test.

use std::path::Path;

use sqlx::AnyPool;
use sqlx::migrate::Migrator;
use tempfile::TempDir;

/// The version of the migration [`Release::Next`] adds: later than any the services ship.
pub const NEXT_RELEASE_VERSION: i64 = 99_990_101_000_001;

/// What the next release's migration does: purely additive, as the rollback rule requires
/// (docs/OPERATIONS.md, "Schema migrations"), and valid on SQLite and PostgreSQL.
const NEXT_RELEASE_SQL: &str =
    "CREATE TABLE next_release_feature (id BIGINT PRIMARY KEY, note TEXT NOT NULL);\n";

/// Which release's migrations to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The release before this one: every migration but the newest.
    Previous,
    /// The release after this one: every migration, then [`NEXT_RELEASE_VERSION`].
    Next,
}

/// The migrations of `release`, from `dir` (a service's `migrations/`). Keep the [`TempDir`] as
/// long as the [`Migrator`] is used.
pub async fn migrator(dir: &Path, release: Release) -> (TempDir, Migrator) {
    let copy = tempfile::tempdir().expect("tempdir");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("the migrations directory")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
        .collect();
    files.sort();
    if release == Release::Previous {
        files.pop().expect("at least one migration");
    }
    for file in &files {
        let name = file.file_name().expect("a file name");
        std::fs::copy(file, copy.path().join(name)).expect("copy a migration");
    }
    if release == Release::Next {
        std::fs::write(
            copy.path()
                .join(format!("{NEXT_RELEASE_VERSION}_next_release_feature.sql")),
            NEXT_RELEASE_SQL,
        )
        .expect("write the next release's migration");
    }
    let migrator = Migrator::new(copy.path())
        .await
        .expect("the copied migrations resolve");
    (copy, migrator)
}

/// Applies `release`'s migrations of `dir` to the database at `url`, as that release's
/// `migrate` command would.
pub async fn apply(dir: &Path, release: Release, url: &str) {
    let (_copy, migrator) = migrator(dir, release).await;
    let pool: AnyPool = platform::db::connect(url, 1).await.expect("connects");
    migrator
        .run(&pool)
        .await
        .unwrap_or_else(|e| panic!("{release:?} release's migrations apply: {e}"));
    pool.close().await;
}

/// The versions recorded in `_sqlx_migrations` of the database at `url`, oldest first.
pub async fn applied_versions(url: &str) -> Vec<i64> {
    let pool: AnyPool = platform::db::connect(url, 1).await.expect("connects");
    let versions = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&pool)
        .await
        .expect("the migrations table");
    pool.close().await;
    versions
}
