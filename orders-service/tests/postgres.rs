//! The whole service on PostgreSQL: gRPC calls, the `migrate` command, and readiness through a
//! database outage. Runs when `TEST_DATABASE_URL` names a PostgreSQL server where the user may
//! create databases (CI: `postgres://postgres@127.0.0.1:5432/test`); each test gets a database
//! of its own. Without the variable these tests pass without doing anything (and say so).

use orders_service::cli::{Cli, Command};
use reqwest::StatusCode;
use testkit::PgDatabase;
use testkit::orders::{spawn_orders_config, test_config};
use testkit::{Issuer, READ_WRITE, eventually};
use tonic::Code;

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL (PostgreSQL): run with -- --include-ignored"]
async fn orders_are_served_from_postgres() {
    let db = PgDatabase::create("orders_test").await;
    let issuer = Issuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let orders =
        spawn_orders_config(test_config(db.url.clone(), issuer.verifier_config()), dir).await;
    eventually("orders-service ready", testkit::PATIENCE, || async {
        orders.readyz().await == StatusCode::OK
    })
    .await;

    let alice = orders.with_token(issuer.user("alice", READ_WRITE));
    let placed = alice.create("book", 2).await.unwrap();
    assert_eq!(alice.get(&placed.id).await.unwrap(), placed);
    assert_eq!(alice.list_all(10).await.unwrap(), vec![placed.clone()]);
    alice.cancel(&placed.id).await.unwrap();
    testkit::orders::assert_code(alice.cancel(&placed.id).await, Code::FailedPrecondition);

    drop(orders);
    db.drop().await;
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL (PostgreSQL): run with -- --include-ignored"]
async fn a_lost_database_makes_readyz_fail_until_it_is_back() {
    let db = PgDatabase::create("orders_test").await;
    let issuer = Issuer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let orders =
        spawn_orders_config(test_config(db.url.clone(), issuer.verifier_config()), dir).await;
    eventually("orders-service ready", testkit::PATIENCE, || async {
        orders.readyz().await == StatusCode::OK
    })
    .await;
    let alice = orders.with_token(issuer.user("alice", READ_WRITE));
    alice.create("before", 1).await.unwrap();

    // Every connection cut, new ones refused.
    db.go_away().await;
    eventually(
        "readyz reports the database down",
        testkit::PATIENCE,
        || async {
            let response = orders.get_http("/readyz").await;
            let status = response.status();
            let body: serde_json::Value = response.json().await.unwrap();
            status == StatusCode::SERVICE_UNAVAILABLE && body["checks"]["database"] == false
        },
    )
    .await;
    // Calls fail as retryable, not as a server bug.
    let failed = alice.create("during", 1).await.unwrap_err();
    assert_eq!(failed.code(), Code::Unavailable, "{failed:?}");

    // No restart: the pool reconnects on its own.
    db.come_back().await;
    eventually("orders-service ready again", testkit::PATIENCE, || async {
        orders.readyz().await == StatusCode::OK
    })
    .await;
    alice.create("after", 1).await.unwrap();
    let items: Vec<String> = alice
        .list_all(10)
        .await
        .unwrap()
        .into_iter()
        .map(|order| order.item)
        .collect();
    assert_eq!(items, ["after", "before"]);

    drop(orders);
    db.drop().await;
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL (PostgreSQL): run with -- --include-ignored"]
async fn migrate_prepares_a_postgres_database_and_exits() {
    let db = PgDatabase::create("orders_test").await;
    let config = test_config(db.url.clone(), Default::default());
    let cli = Cli {
        config,
        command: Some(Command::Migrate),
    };
    orders_service::cli::run(cli, std::future::pending())
        .await
        .expect("migrations apply");

    let pool = platform::db::connect(&db.url, 1).await.unwrap();
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM orders")
        .fetch_one(&pool)
        .await
        .expect("the orders table exists");
    assert_eq!(count, 0);
    // Applying them again is a no-op.
    orders_service::app::MIGRATOR.run(&pool).await.unwrap();
    pool.close().await;
    db.drop().await;
}
