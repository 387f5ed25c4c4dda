//! The repository, on every backend: each test runs on a fresh SQLite file and, when
//! `TEST_DATABASE_URL` names a PostgreSQL server (CI: `postgres://postgres@127.0.0.1:5432/test`),
//! again in a PostgreSQL database of its own, created for the test and dropped after it.

use orders_service::domain::{NewOrder, OrderId, PageRequest, Status};
use orders_service::repo::{OrderRepository, Scope};
use sqlx::AnyPool;

/// A migrated database and the repository over it.
struct Backend {
    pool: AnyPool,
    repo: OrderRepository,
}

async fn open(url: &str) -> Backend {
    let pool = platform::db::connect(url, 4).await.expect("database opens");
    orders_service::app::MIGRATOR
        .run(&pool)
        .await
        .expect("migrations apply");
    Backend {
        repo: OrderRepository::new(pool.clone()),
        pool,
    }
}

/// Generates, for each scenario, a test on SQLite and one on PostgreSQL.
macro_rules! on_every_backend {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $scenario() {
                    let dir = tempfile::tempdir().expect("temp dir");
                    let backend =
                        super::open(&format!("sqlite://{}/orders.db", dir.path().display())).await;
                    super::$scenario(backend.repo.clone()).await;
                    backend.pool.close().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                #[ignore = "needs TEST_DATABASE_URL (PostgreSQL): run with -- --include-ignored"]
                async fn $scenario() {
                    let db = testkit::PgDatabase::create("orders_test").await;
                    let backend = super::open(&db.url).await;
                    super::$scenario(backend.repo.clone()).await;
                    backend.pool.close().await;
                    db.drop().await;
                }
            )*
        }
    };
}

on_every_backend!(
    create_get_cancel,
    list_is_newest_first_and_keyset_paged,
    of_two_concurrent_cancels_exactly_one_wins,
    text_is_stored_exactly,
    the_database_answers_pings,
);

fn new_order(item: &str) -> NewOrder {
    NewOrder::parse(item, 1).unwrap()
}

async fn create_get_cancel(repo: OrderRepository) {
    let order = repo.create("alice", new_order("book"), 100).await.unwrap();
    assert_eq!(repo.get(order.id).await.unwrap(), Some(order.clone()));

    let cancelled = repo.cancel(order.id, 200).await.unwrap().unwrap();
    assert_eq!(cancelled.status, Status::Cancelled);
    assert_eq!(cancelled.cancelled_at, Some(200));
    assert_eq!(repo.get(order.id).await.unwrap(), Some(cancelled));
    assert_eq!(repo.cancel(order.id, 300).await.unwrap(), None);
    assert_eq!(repo.cancel(OrderId::generate(), 300).await.unwrap(), None);
    assert_eq!(repo.get(OrderId::generate()).await.unwrap(), None);
}

async fn list_is_newest_first_and_keyset_paged(repo: OrderRepository) {
    let mut created = Vec::new();
    // Several orders share a second: the id breaks the tie.
    for (i, at) in [10, 10, 10, 11, 12, 12, 13].into_iter().enumerate() {
        created.push(
            repo.create("alice", new_order(&format!("item {i}")), at)
                .await
                .unwrap(),
        );
    }
    repo.create("bob", new_order("other"), 11).await.unwrap();
    created.reverse();

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = repo
            .list(Scope::Owner("alice"), PageRequest { size: 3, after })
            .await
            .unwrap();
        assert!(page.orders.len() <= 3);
        seen.extend(page.orders);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, created);

    let all = repo
        .list(
            Scope::All,
            PageRequest {
                size: 100,
                after: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(all.orders.len(), 8);
    assert_eq!(all.next, None);
}

async fn of_two_concurrent_cancels_exactly_one_wins(repo: OrderRepository) {
    for _ in 0..5 {
        let order = repo.create("alice", new_order("book"), 100).await.unwrap();
        let (a, b) = tokio::join!(repo.cancel(order.id, 200), repo.cancel(order.id, 201));
        let winners = [a.unwrap(), b.unwrap()].into_iter().flatten().count();
        assert_eq!(winners, 1);
    }
}

async fn text_is_stored_exactly(repo: OrderRepository) {
    let long = "é".repeat(orders_service::domain::MAX_ITEM_CHARS);
    for item in [
        "Grüße, 世界 🌍",
        "it's \"quoted\"; -- not SQL",
        long.as_str(),
    ] {
        let order = repo
            .create("user with spaces", new_order(item), 1)
            .await
            .unwrap();
        let stored = repo.get(order.id).await.unwrap().unwrap();
        assert_eq!(stored.item, item);
        assert_eq!(stored.owner, "user with spaces");
    }
}

async fn the_database_answers_pings(repo: OrderRepository) {
    repo.ping().await.unwrap();
}
