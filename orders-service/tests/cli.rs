//! The binary's `migrate` command: applies the migrations to `DATABASE_URL` and exits, for a
//! Kubernetes Job run before a rollout.

use std::process::Command;

#[tokio::test]
async fn migrate_creates_the_schema_and_exits() {
    let data = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/fresh/orders.db", data.path().display());
    for _ in 0..2 {
        // Twice: the second run finds nothing to do.
        let output = Command::new(env!("CARGO_BIN_EXE_orders-service"))
            .arg("migrate")
            .env("DATABASE_URL", &url)
            .env("RUST_LOG", "info")
            .output()
            .expect("orders-service runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let pool = platform::db::connect(&url, 1).await.unwrap();
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM orders")
        .fetch_one(&pool)
        .await
        .expect("the orders table exists");
    assert_eq!(count, 0);
}

#[test]
fn a_migration_failure_is_an_error_exit() {
    let output = Command::new(env!("CARGO_BIN_EXE_orders-service"))
        .arg("migrate")
        .env("DATABASE_URL", "nonsense://nowhere")
        .output()
        .expect("orders-service runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot open the database"));
}
