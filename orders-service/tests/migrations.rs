//! Schema migrations across releases: `DATABASE_MIGRATE` (default true) applies them at start;
//! `false` only checks, and refuses to start while a migration of this release is missing;
//! either way a database migrated by the next release (one more migration) still serves this
//! one, so `kubectl rollout undo` works. On SQLite, and on PostgreSQL with `TEST_DATABASE_URL`.

use std::path::Path;

use orders_service::app::MIGRATOR;
use orders_service::cli::{Cli, Command};
use reqwest::StatusCode;
use testkit::migrations::{self, NEXT_RELEASE_VERSION, Release};
use testkit::orders::{spawn_orders_config, test_config};
use testkit::{Issuer, PgDatabase, READ_WRITE, eventually};

fn migrations_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
}

fn embedded_versions() -> Vec<i64> {
    MIGRATOR.iter().map(|m| m.version).collect()
}

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}/orders.db", dir.path().display())
}

fn config(url: &str, issuer: &Issuer, migrate: bool) -> orders_service::Config {
    orders_service::Config {
        database_migrate: migrate,
        ..test_config(url.to_owned(), issuer.verifier_config())
    }
}

/// Why the service refuses to start with `config`.
async fn refusal(config: orders_service::Config, why: &str) -> String {
    match orders_service::App::build(config).await {
        Ok(_) => panic!("{why}: the service started"),
        Err(error) => error.to_string(),
    }
}

/// The next release migrated the database; this release starts on it, with and without
/// migrating, serves orders, and its `migrate` command accepts the schema too.
async fn this_release_serves_the_next_release_s_schema(url: &str) {
    let issuer = Issuer::start().await;
    migrations::apply(migrations_dir(), Release::Next, url).await;

    for migrate in [false, true] {
        let orders =
            spawn_orders_config(config(url, &issuer, migrate), tempfile::tempdir().unwrap()).await;
        eventually("orders-service ready", testkit::PATIENCE, || async {
            orders.readyz().await == StatusCode::OK
        })
        .await;
        let alice = orders.with_token(issuer.user("alice", READ_WRITE));
        alice.create("book", 1).await.expect("an order is placed");
        drop(orders);
    }

    let cli = Cli {
        config: config(url, &issuer, false),
        command: Some(Command::Migrate),
    };
    orders_service::cli::run(cli, std::future::pending())
        .await
        .expect("migrate tolerates the newer migration");
    let mut expected = embedded_versions();
    expected.push(NEXT_RELEASE_VERSION);
    assert_eq!(migrations::applied_versions(url).await, expected);
}

/// Nothing migrated the database, or an older release did: with `DATABASE_MIGRATE=false` this
/// release refuses to start and says which migration is missing and what to run.
async fn a_missing_migration_refuses_to_start_without_migrating(url: &str) {
    let issuer = Issuer::start().await;
    platform::db::connect(url, 1)
        .await
        .expect("connects")
        .close()
        .await;
    let error = refusal(config(url, &issuer, false), "no schema").await;
    assert!(error.contains("run `orders-service migrate`"), "{error}");

    // The previous release had no migration at all (this service has one): its schema is an
    // empty migrations table.
    migrations::apply(migrations_dir(), Release::Previous, url).await;
    let newest = *embedded_versions().last().expect("a migration");
    let error = refusal(config(url, &issuer, false), "a missing migration").await;
    assert!(error.contains(&format!("migration {newest}")), "{error}");
    assert!(error.contains("run `orders-service migrate`"), "{error}");
    assert!(error.contains("DATABASE_MIGRATE=false"), "{error}");

    let cli = Cli {
        config: config(url, &issuer, false),
        command: Some(Command::Migrate),
    };
    orders_service::cli::run(cli, std::future::pending())
        .await
        .expect("migrate applies it whatever DATABASE_MIGRATE says");
    orders_service::App::build(config(url, &issuer, false))
        .await
        .expect("starts once migrated");
}

#[tokio::test]
async fn by_default_a_fresh_sqlite_database_is_migrated_at_start() {
    let issuer = Issuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    let config = test_config(url.clone(), issuer.verifier_config());
    assert!(config.database_migrate, "DATABASE_MIGRATE defaults to true");
    let orders = spawn_orders_config(config, tempfile::tempdir().unwrap()).await;
    let alice = orders.with_token(issuer.user("alice", READ_WRITE));
    alice.create("book", 1).await.expect("an order is placed");
    drop(orders);
    assert_eq!(
        migrations::applied_versions(&url).await,
        embedded_versions()
    );
}

#[tokio::test]
async fn this_release_serves_the_next_release_s_schema_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    this_release_serves_the_next_release_s_schema(&sqlite_url(&dir)).await;
}

#[tokio::test]
async fn a_missing_migration_refuses_to_start_without_migrating_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    a_missing_migration_refuses_to_start_without_migrating(&sqlite_url(&dir)).await;
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL (PostgreSQL): run with -- --include-ignored"]
async fn this_release_serves_the_next_release_s_schema_on_postgres() {
    let db = PgDatabase::create("orders_test").await;
    this_release_serves_the_next_release_s_schema(&db.url).await;
    db.drop().await;
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL (PostgreSQL): run with -- --include-ignored"]
async fn a_missing_migration_refuses_to_start_without_migrating_on_postgres() {
    let db = PgDatabase::create("orders_test").await;
    a_missing_migration_refuses_to_start_without_migrating(&db.url).await;
    db.drop().await;
}
