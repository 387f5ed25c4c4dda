//! Who may call what: authentication of every call, scopes per RPC, owner isolation, admins.

use authn::claims::Audience;
use proto::orders::v1::OrderStatus;
use testkit::orders::{assert_code, spawn_orders};
use testkit::{Issuer, READ, READ_WRITE, WRITE};
use tonic::Code;

const SOME_ID: &str = "0190a0a0-0000-7000-8000-000000000000";

#[tokio::test]
async fn a_user_sees_and_cancels_only_its_own_orders() {
    let issuer = Issuer::start().await;
    let orders = spawn_orders(&issuer).await;
    let alice = orders.with_token(issuer.user("alice", READ_WRITE));
    let bob = orders.with_token(issuer.user("bob", READ_WRITE));

    let order = alice.create("book", 1).await.unwrap();
    bob.create("pen", 1).await.unwrap();

    // Someone else's order answers exactly like an unknown one.
    let hidden = bob.get(&order.id).await.unwrap_err();
    let unknown = bob.get(SOME_ID).await.unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    assert_eq!(hidden.message(), unknown.message());
    assert_code(bob.cancel(&order.id).await, Code::NotFound);

    let bobs = bob.list_all(100).await.unwrap();
    assert_eq!(bobs.len(), 1);
    assert!(bobs.iter().all(|o| o.owner == "bob"));

    // Bob's attempt changed nothing.
    assert_eq!(
        alice.get(&order.id).await.unwrap().status(),
        OrderStatus::Placed
    );
    // Even once cancelled, the order stays hidden from Bob (no FAILED_PRECONDITION leak).
    alice.cancel(&order.id).await.unwrap();
    assert_code(bob.cancel(&order.id).await, Code::NotFound);
}

#[tokio::test]
async fn an_admin_sees_and_cancels_every_order() {
    let issuer = Issuer::start().await;
    let orders = spawn_orders(&issuer).await;
    let alice = orders.with_token(issuer.user("alice", READ_WRITE));
    let bob = orders.with_token(issuer.user("bob", READ_WRITE));
    let admin = orders.with_token(issuer.admin("root", READ_WRITE));

    let alices = alice.create("book", 1).await.unwrap();
    let bobs = bob.create("pen", 1).await.unwrap();

    assert_eq!(admin.get(&alices.id).await.unwrap(), alices);
    let all = admin.list_all(1).await.unwrap();
    assert_eq!(all, vec![bobs.clone(), alices.clone()]);

    let cancelled = admin.cancel(&bobs.id).await.unwrap();
    assert_eq!(cancelled.status(), OrderStatus::Cancelled);
    assert_eq!(
        cancelled.owner, "bob",
        "cancelling does not change the owner"
    );
    assert_eq!(bob.get(&bobs.id).await.unwrap(), cancelled);

    // The admin's own list shows everyone's orders; a user's list is still only its own.
    assert_eq!(alice.list_all(100).await.unwrap(), vec![alices]);
}

#[tokio::test]
async fn a_role_that_merely_looks_like_admin_is_a_user() {
    let issuer = Issuer::start().await;
    let orders = spawn_orders(&issuer).await;
    let alice = orders.with_token(issuer.user("alice", READ_WRITE));
    let eve = orders.with_token(issuer.issuer.user_token(
        "eve",
        READ_WRITE,
        &["Admin", "administrator"],
    ));
    let order = alice.create("book", 1).await.unwrap();

    assert_code(eve.get(&order.id).await, Code::NotFound);
    assert!(eve.list_all(100).await.unwrap().is_empty());
}

#[tokio::test]
async fn each_rpc_needs_its_scope() {
    let issuer = Issuer::start().await;
    let orders = spawn_orders(&issuer).await;
    let owner = orders.with_token(issuer.user("alice", READ_WRITE));
    let order = owner.create("book", 1).await.unwrap();

    let read_only = orders.with_token(issuer.user("alice", READ));
    let write_only = orders.with_token(issuer.user("alice", WRITE));
    let no_scope = orders.with_token(issuer.user("alice", ""));
    // An admin still needs the scopes.
    let admin_no_scope = orders.with_token(issuer.admin("root", "profile"));

    assert_code(read_only.create("book", 1).await, Code::PermissionDenied);
    assert_code(read_only.cancel(&order.id).await, Code::PermissionDenied);
    assert_code(write_only.get(&order.id).await, Code::PermissionDenied);
    assert_code(write_only.list_page(10, "").await, Code::PermissionDenied);
    for caller in [&no_scope, &admin_no_scope] {
        assert_code(caller.create("book", 1).await, Code::PermissionDenied);
        assert_code(caller.get(&order.id).await, Code::PermissionDenied);
        assert_code(caller.list_page(10, "").await, Code::PermissionDenied);
        assert_code(caller.cancel(&order.id).await, Code::PermissionDenied);
    }

    // The scope is checked before anything else: arguments are not even looked at.
    assert_code(read_only.create("", 0).await, Code::PermissionDenied);
    // And nothing was done on the caller's behalf.
    assert_eq!(
        read_only.get(&order.id).await.unwrap().status(),
        OrderStatus::Placed
    );
    assert!(write_only.create("book", 1).await.is_ok());
}

#[tokio::test]
async fn calls_without_a_valid_token_are_unauthenticated() {
    let issuer = Issuer::start().await;
    let orders = spawn_orders(&issuer).await;

    let mut expired = issuer.issuer.claims("alice", READ_WRITE, &["user"]);
    expired.iat -= 3600;
    expired.nbf = Some(expired.iat);
    expired.exp = authn::unix_now() - 600;

    let mut other_audience = issuer.issuer.claims("alice", READ_WRITE, &["user"]);
    other_audience.aud = Audience::One("billing".to_owned());

    let mut other_issuer = issuer.issuer.claims("alice", READ_WRITE, &["user"]);
    other_issuer.iss = format!("{}/", other_issuer.iss);

    let stranger = testkit::TestIssuer::new();

    let valid = issuer.user("alice", READ_WRITE);
    let mut tampered = valid.clone();
    tampered.pop();

    let callers = [
        ("no token", orders.anonymous()),
        ("garbage", orders.with_token("garbage")),
        ("expired", orders.with_token(issuer.issuer.token(&expired))),
        (
            "wrong audience",
            orders.with_token(issuer.issuer.token(&other_audience)),
        ),
        (
            "wrong issuer",
            orders.with_token(issuer.issuer.token(&other_issuer)),
        ),
        (
            "unknown key",
            orders.with_token(stranger.user_token("alice", READ_WRITE, &[])),
        ),
        ("altered signature", orders.with_token(tampered)),
    ];
    for (what, caller) in callers {
        for result in [
            caller.create("book", 1).await.map(drop),
            caller.get(SOME_ID).await.map(drop),
            caller.list_page(10, "").await.map(drop),
            caller.cancel(SOME_ID).await.map(drop),
        ] {
            let status = result.expect_err(what);
            assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
            assert!(
                !status.message().contains("eyJ"),
                "never echoes a token: {status:?}"
            );
        }
    }

    // The valid token works, and nothing was created by the refused calls.
    let alice = orders.with_token(valid);
    assert!(alice.list_all(100).await.unwrap().is_empty());
}

#[tokio::test]
async fn two_authorization_entries_are_refused() {
    let issuer = Issuer::start().await;
    let orders = spawn_orders(&issuer).await;
    let token = issuer.user("alice", READ_WRITE);

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", orders.grpc_addr))
        .unwrap()
        .connect_lazy();
    let mut client = proto::orders::v1::order_service_client::OrderServiceClient::new(channel);
    let mut request = tonic::Request::new(proto::orders::v1::ListOrdersRequest::default());
    let value: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    request
        .metadata_mut()
        .append("authorization", value.clone());
    request.metadata_mut().append("authorization", value);
    let status = client.list_orders(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}
