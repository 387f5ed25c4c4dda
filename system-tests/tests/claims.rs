//! Fresh claims: an administrator changes a user's scopes (`PATCH /v1/admin/users/{id}`), and
//! the user's older access tokens, at the gateway (HTTP) and at orders-service (gRPC):
//!
//! - `stateful`: refused by the very next request, as stale (`invalid_token`, "the user's claims
//!   changed; refresh the token");
//! - `hybrid`: refused once the `UserChanged` event has been pushed, within a bound;
//! - `stateless`: accepted, old rights included, until they expire (the documented trade-off).
//!
//! In every mode the session and its refresh token stand: a refresh returns a token of the same
//! session with the new claims, which both verifiers accept and judge by the new scopes.

use std::time::Duration;

use authn::CLAIMS_CHANGED_DESCRIPTION;
use authn::config::AuthMode;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::auth::claims_of;
use testkit::eventually;
use testkit::stack::{Options, Stack};
use tonic::Code;

/// Within this the push reaches both verifiers (it takes about a millisecond on one machine).
const PUSH_BOUND: Duration = Duration::from_secs(2);

/// Alice, signed in with `orders:read orders:write`, and what the test needs of her.
struct Alice {
    id: String,
    access: String,
    refresh: String,
}

async fn alice(stack: &Stack) -> Alice {
    let id = stack
        .add_user("alice", "user", "orders:read orders:write")
        .await;
    let login = stack.login("alice", None).await;
    let access = login["access_token"].as_str().unwrap().to_owned();
    stack.create_order(&access).await;
    assert_eq!(stack.orders_code(&access).await, Code::Ok);
    Alice {
        id,
        access,
        refresh: login["refresh_token"].as_str().unwrap().to_owned(),
    }
}

/// An administrator takes `orders:write` away from `user_id`.
async fn take_write_away(stack: &Stack, user_id: &str) {
    stack.add_user("root", "admin,user", "users:admin").await;
    let admin = stack.token("root", None).await;
    stack.change_scopes(&admin, user_id, "orders:read").await;
}

/// The gateway's answer to `GET /v1/orders`, if it is the stale-claims refusal.
async fn gateway_says_stale(stack: &Stack, token: &str) -> bool {
    let response = stack
        .http
        .get(stack.url("/v1/orders"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status != StatusCode::UNAUTHORIZED {
        return false;
    }
    assert_eq!(body["error"], "invalid_token", "{body}");
    assert_eq!(
        body["error_description"], CLAIMS_CHANGED_DESCRIPTION,
        "{body}"
    );
    assert!(
        challenge.is_some_and(|c| c.starts_with(r#"Bearer error="invalid_token""#)),
        "RFC 6750 challenge"
    );
    true
}

/// orders-service's answer to `ListOrders`, if it is the stale-claims refusal.
async fn orders_says_stale(stack: &Stack, token: &str) -> bool {
    match stack.grpc(token).await.list().await {
        Err(status) if status.code() == Code::Unauthenticated => {
            assert_eq!(status.message(), CLAIMS_CHANGED_DESCRIPTION);
            true
        }
        _ => false,
    }
}

/// The refresh the client does on that refusal: same session, new claims, judged by them.
async fn refresh_gets_the_new_claims(stack: &Stack, alice: &Alice) {
    let response = stack
        .http
        .post(stack.url("/oauth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", alice.refresh.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the refresh token stands"
    );
    let tokens: Value = response.json().await.unwrap();
    let token = tokens["access_token"].as_str().unwrap();
    let (old, new) = (claims_of(&alice.access), claims_of(token));
    assert_eq!(new["sid"], old["sid"], "the same session");
    assert_eq!(new["scope"], "orders:read");

    assert_eq!(stack.gateway_status(token).await, StatusCode::OK);
    assert_eq!(stack.orders_code(token).await, Code::Ok);
    let (status, body) = stack
        .rest(
            Method::POST,
            "/v1/orders",
            token,
            Some(json!({"item": "tea", "quantity": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "insufficient_scope");
    let created = stack.grpc(token).await.create("tea", 1).await;
    assert_eq!(created.unwrap_err().code(), Code::PermissionDenied);
}

/// `stateful`: `CheckSession` reports the user's last change with the session, so the next
/// request with an older token is refused at both verifiers.
#[tokio::test]
async fn stateful_refuses_a_changed_users_older_token_at_the_next_request() {
    let stack = Stack::start(Options {
        mode: AuthMode::Stateful,
        ..Options::default()
    })
    .await;
    let alice = alice(&stack).await;
    take_write_away(&stack, &alice.id).await;
    assert!(gateway_says_stale(&stack, &alice.access).await);
    assert!(orders_says_stale(&stack, &alice.access).await);
    refresh_gets_the_new_claims(&stack, &alice).await;
}

/// `stateful` reading the shared Redis session store: the issuer writes the time of the change
/// next to the sessions, and the verifiers read it with the session, in one round trip.
#[tokio::test]
#[ignore = "needs TEST_REDIS_URL (Redis): run with -- --include-ignored"]
async fn stateful_with_the_redis_store_refuses_a_changed_users_older_token_at_once() {
    let stack = Stack::start(Options {
        mode: AuthMode::Stateful,
        redis_url: Some(testkit::test_redis_url()),
        ..Options::default()
    })
    .await;
    let alice = alice(&stack).await;
    take_write_away(&stack, &alice.id).await;
    assert!(gateway_says_stale(&stack, &alice.access).await);
    assert!(orders_says_stale(&stack, &alice.access).await);
    refresh_gets_the_new_claims(&stack, &alice).await;
}

/// `hybrid`: refused once the `UserChanged` event has been pushed to each verifier.
#[tokio::test]
async fn hybrid_refuses_a_changed_users_older_token_within_the_push_bound() {
    let stack = Stack::start(Options {
        mode: AuthMode::Hybrid,
        ..Options::default()
    })
    .await;
    let alice = alice(&stack).await;
    take_write_away(&stack, &alice.id).await;
    let at_gateway = eventually("the gateway refuses as stale", PUSH_BOUND, || {
        gateway_says_stale(&stack, &alice.access)
    })
    .await;
    let at_orders = eventually("orders-service refuses as stale", PUSH_BOUND, || {
        orders_says_stale(&stack, &alice.access)
    })
    .await;
    eprintln!("hybrid: refused after {at_gateway:?} (gateway), {at_orders:?} (orders)");
    refresh_gets_the_new_claims(&stack, &alice).await;
}

/// `stateless`: nothing tells the verifiers; the older token keeps its old rights until it
/// expires. A refresh gets the new claims all the same.
#[tokio::test]
async fn stateless_accepts_a_changed_users_older_token_until_it_expires() {
    let stack = Stack::start(Options::default()).await;
    let alice = alice(&stack).await;
    take_write_away(&stack, &alice.id).await;
    assert_eq!(stack.gateway_status(&alice.access).await, StatusCode::OK);
    assert_eq!(stack.orders_code(&alice.access).await, Code::Ok);
    stack.create_order(&alice.access).await;
    refresh_gets_the_new_claims(&stack, &alice).await;
}
