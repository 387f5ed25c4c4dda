//! Schema migrations across releases: `DATABASE_MIGRATE` (default true) applies them at start;
//! `false` only checks, and refuses to start while a migration of this release is missing;
//! either way a database migrated by the next release (one more migration) still serves this
//! one, so `kubectl rollout undo` works. On SQLite, and on PostgreSQL with `TEST_DATABASE_URL`.

use std::path::Path;
use std::sync::Arc;

use auth_service::db::MIGRATOR;
use testkit::PgDatabase;
use testkit::auth::{spawn_auth_with, test_config};
use testkit::migrations::{self, NEXT_RELEASE_VERSION, Release};

const PASSWORD: &str = "correct horse battery";

fn migrations_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
}

fn embedded_versions() -> Vec<i64> {
    MIGRATOR.iter().map(|m| m.version).collect()
}

/// A configuration on `database_url` (SQLite in `dir` when `None`).
fn config(dir: &Path, database_url: Option<&str>, migrate: bool) -> auth_service::Config {
    let base = test_config(dir);
    auth_service::Config {
        database_url: database_url.map_or(base.database_url.clone(), str::to_owned),
        database_migrate: migrate,
        ..base
    }
}

/// The next release migrated the database; this release starts on it, with and without
/// migrating, serves logins, and its `migrate` accepts the schema too.
async fn this_release_serves_the_next_release_s_schema(database_url: Option<&str>) {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let url = config(dir.path(), database_url, true).database_url;
    migrations::apply(migrations_dir(), Release::Next, &url).await;

    let auth = spawn_auth_with(config(dir.path(), database_url, false), dir.clone()).await;
    let (status, body) = auth.readyz().await;
    assert_eq!(status, 200, "{body}");
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    auth.login("alice", PASSWORD).await;
    auth.stop().await;

    // Migrate-on-serve, and the `migrate` command, find nothing to do and leave the newer
    // migration alone.
    let auth = spawn_auth_with(config(dir.path(), database_url, true), dir.clone()).await;
    auth.login("alice", PASSWORD).await;
    auth.stop().await;
    auth_service::db::connect_and_migrate(&url, 1)
        .await
        .expect("migrate tolerates the newer migration")
        .close()
        .await;
    let mut expected = embedded_versions();
    expected.push(NEXT_RELEASE_VERSION);
    assert_eq!(migrations::applied_versions(&url).await, expected);
}

/// The previous release migrated the database, or nothing did: with `DATABASE_MIGRATE=false`
/// this release refuses to start and says which migration is missing and what to run.
async fn a_missing_migration_refuses_to_start_without_migrating(database_url: Option<&str>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = config(dir.path(), database_url, false).database_url;

    // Nothing applied at all: not even the migrations table.
    platform::db::connect(&url, 1)
        .await
        .expect("connects")
        .close()
        .await;
    let error = auth_service::App::build(config(dir.path(), database_url, false))
        .await
        .expect_err("no schema: refused")
        .to_string();
    assert!(error.contains("run `auth-service migrate`"), "{error}");

    migrations::apply(migrations_dir(), Release::Previous, &url).await;
    let newest = *embedded_versions().last().expect("a migration");
    let error = auth_service::App::build(config(dir.path(), database_url, false))
        .await
        .expect_err("a missing migration: refused")
        .to_string();
    assert!(error.contains(&format!("migration {newest}")), "{error}");
    assert!(error.contains("run `auth-service migrate`"), "{error}");
    assert!(error.contains("DATABASE_MIGRATE=false"), "{error}");
    assert!(
        !migrations::applied_versions(&url).await.contains(&newest),
        "nothing was migrated"
    );

    // The operator runs the migration; the same configuration starts.
    auth_service::db::connect_and_migrate(&url, 1)
        .await
        .expect("migrates")
        .close()
        .await;
    auth_service::App::build(config(dir.path(), database_url, false))
        .await
        .expect("starts once migrated");
}

#[tokio::test]
async fn by_default_a_fresh_sqlite_database_is_migrated_at_start() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let config = test_config(dir.path());
    assert!(config.database_migrate, "DATABASE_MIGRATE defaults to true");
    let url = config.database_url.clone();
    let auth = spawn_auth_with(config, dir.clone()).await;
    auth.create_user("alice", PASSWORD, "user", "").await;
    auth.stop().await;
    assert_eq!(
        migrations::applied_versions(&url).await,
        embedded_versions()
    );
}

#[tokio::test]
async fn this_release_serves_the_next_release_s_schema_on_sqlite() {
    this_release_serves_the_next_release_s_schema(None).await;
}

#[tokio::test]
async fn a_missing_migration_refuses_to_start_without_migrating_on_sqlite() {
    a_missing_migration_refuses_to_start_without_migrating(None).await;
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL (PostgreSQL): run with -- --include-ignored"]
async fn this_release_serves_the_next_release_s_schema_on_postgres() {
    let db = PgDatabase::create("auth_test").await;
    this_release_serves_the_next_release_s_schema(Some(&db.url)).await;
    db.drop().await;
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL (PostgreSQL): run with -- --include-ignored"]
async fn a_missing_migration_refuses_to_start_without_migrating_on_postgres() {
    let db = PgDatabase::create("auth_test").await;
    a_missing_migration_refuses_to_start_without_migrating(Some(&db.url)).await;
    db.drop().await;
}
