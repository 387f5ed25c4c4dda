//! OrderService behaviour for a caller with the right scopes: the happy path, validation and
//! pagination.

use std::collections::HashSet;

use proto::orders::v1::OrderStatus;
use testkit::orders::{assert_code, spawn_orders};
use testkit::{Issuer, READ_WRITE};
use tonic::Code;

#[tokio::test]
async fn create_get_list_cancel() {
    let issuer = Issuer::start().await;
    let orders = spawn_orders(&issuer).await;
    let alice = orders.with_token(issuer.user("alice", READ_WRITE));

    let before = authn::unix_now();
    let order = alice.create("  a book  ", 2).await.unwrap();
    assert!(uuid_like(&order.id), "{}", order.id);
    assert_eq!(order.owner, "alice");
    assert_eq!(order.item, "a book", "the item is stored trimmed");
    assert_eq!(order.quantity, 2);
    assert_eq!(order.status(), OrderStatus::Placed);
    assert!(order.created_at >= before && order.created_at <= authn::unix_now());
    assert_eq!(order.cancelled_at, 0);

    assert_eq!(alice.get(&order.id).await.unwrap(), order);
    assert_eq!(
        alice.get(&order.id.to_uppercase()).await.unwrap(),
        order,
        "ids are case-insensitive"
    );

    let second = alice.create("a pen", 1).await.unwrap();
    let listed = alice.list_page(0, "").await.unwrap();
    assert_eq!(
        listed.orders,
        vec![second.clone(), order.clone()],
        "newest first"
    );
    assert_eq!(listed.next_page_token, "");

    let cancelled = alice.cancel(&order.id).await.unwrap();
    assert_eq!(cancelled.status(), OrderStatus::Cancelled);
    assert!(cancelled.cancelled_at >= order.created_at);
    assert_eq!(cancelled.item, order.item);
    assert_eq!(alice.get(&order.id).await.unwrap(), cancelled);

    assert_code(alice.cancel(&order.id).await, Code::FailedPrecondition);
    assert_eq!(
        alice.get(&second.id).await.unwrap().status(),
        OrderStatus::Placed
    );
}

#[tokio::test]
async fn unknown_ids_are_not_found() {
    let issuer = Issuer::start().await;
    let orders = spawn_orders(&issuer).await;
    let alice = orders.with_token(issuer.user("alice", READ_WRITE));
    let unknown = "0190a0a0-0000-7000-8000-000000000000";

    assert_code(alice.get(unknown).await, Code::NotFound);
    assert_code(alice.cancel(unknown).await, Code::NotFound);
}

#[tokio::test]
async fn every_invalid_argument_is_refused() {
    let issuer = Issuer::start().await;
    let orders = spawn_orders(&issuer).await;
    let alice = orders.with_token(issuer.user("alice", READ_WRITE));

    // Item: blank, or over 200 characters once trimmed.
    assert_code(alice.create("", 1).await, Code::InvalidArgument);
    assert_code(alice.create("   \t ", 1).await, Code::InvalidArgument);
    assert_code(
        alice.create(&"x".repeat(201), 1).await,
        Code::InvalidArgument,
    );
    assert!(
        alice
            .create(&format!(" {} ", "x".repeat(200)), 1)
            .await
            .is_ok()
    );

    // Quantity: 1 to 1000.
    for quantity in [0, -1, 1001, i32::MIN, i32::MAX] {
        assert_code(alice.create("book", quantity).await, Code::InvalidArgument);
    }
    assert!(alice.create("book", 1000).await.is_ok());

    // Ids: UUIDs only.
    for id in ["", "42", "not-a-uuid", "../etc/passwd", "' OR '1'='1"] {
        assert_code(alice.get(id).await, Code::InvalidArgument);
        assert_code(alice.cancel(id).await, Code::InvalidArgument);
    }

    // Pages: at most 100 per page, and only tokens the service issued.
    assert_code(alice.list_page(101, "").await, Code::InvalidArgument);
    assert!(alice.list_page(100, "").await.is_ok());
    for token in ["garbage", "!!!!", "AAAA", &"A".repeat(500)] {
        assert_code(alice.list_page(10, token).await, Code::InvalidArgument);
    }

    // Nothing invalid was stored.
    assert_eq!(alice.list_all(100).await.unwrap().len(), 2);
}

#[tokio::test]
async fn pagination_walks_every_order_once() {
    let issuer = Issuer::start().await;
    let orders = spawn_orders(&issuer).await;
    let alice = orders.with_token(issuer.user("alice", READ_WRITE));
    let bob = orders.with_token(issuer.user("bob", READ_WRITE));

    let mut created = Vec::new();
    for i in 0..23 {
        created.push(alice.create(&format!("item {i}"), 1).await.unwrap().id);
        if i % 5 == 0 {
            bob.create("noise", 1).await.unwrap();
        }
    }
    created.reverse();

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = alice.list_page(5, &token).await.unwrap();
        assert!(page.orders.len() <= 5);
        pages += 1;
        seen.extend(page.orders.into_iter().map(|order| order.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 5);
    assert_eq!(seen, created, "every order once, newest first");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 23);

    // A page size that divides the total leaves no empty trailing page.
    let exact = alice.list_page(23, "").await.unwrap();
    assert_eq!(exact.orders.len(), 23);
    assert_eq!(exact.next_page_token, "");

    // Orders placed while paging do not shift the pages already handed out.
    let first = alice.list_page(10, "").await.unwrap();
    alice.create("late", 1).await.unwrap();
    let second = alice.list_page(10, &first.next_page_token).await.unwrap();
    assert_eq!(second.orders[0].id, created[10]);
}

fn uuid_like(id: &str) -> bool {
    id.len() == 36
        && id
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c) || c == '-')
}
