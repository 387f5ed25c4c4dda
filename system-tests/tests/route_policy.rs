//! A freshness level per route (`AUTH_ROUTE_POLICY`), end to end: a route named in the policy
//! is checked at its level by each verifier on its own, every other route follows `AUTH_MODE`.
//!
//! - `stateless` with cancel at `live`: a logged-out token still lists orders (until it
//!   expires) but cancels none, at the gateway over HTTP and at orders-service over gRPC.
//! - `stateful` with listing at `token`: the logged-out token lists without a lookup, and is
//!   refused everywhere else.

use authn::RoutePolicy;
use authn::config::AuthMode;
use proto::orders::v1::OrderStatus;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use testkit::stack::{Options, Stack};
use tonic::Code;

const GATEWAY_CANCEL_LIVE: &str = "POST /v1/orders/{id}/cancel=live";
const ORDERS_CANCEL_LIVE: &str = "/orders.v1.OrderService/CancelOrder=live";

fn policy(text: &str) -> RoutePolicy {
    RoutePolicy::parse(text).unwrap()
}

async fn cancel(stack: &Stack, token: &str, id: &str) -> (StatusCode, Value) {
    stack
        .rest(
            Method::POST,
            &format!("/v1/orders/{id}/cancel"),
            token,
            None,
        )
        .await
}

#[tokio::test]
async fn stateless_with_live_cancel_a_logged_out_token_lists_orders_but_cancels_none() {
    let stack = Stack::start(Options {
        gateway_route_policy: policy(GATEWAY_CANCEL_LIVE),
        orders_route_policy: policy(ORDERS_CANCEL_LIVE),
        ..Options::default()
    })
    .await;
    stack
        .add_user("alice", "user", "orders:read orders:write")
        .await;
    let alice = stack.token("alice", None).await;
    let first = stack.create_order(&alice).await;
    let second = stack.create_order(&alice).await;
    let (status, body) = cancel(&stack, &alice, &first).await;
    assert_eq!(status, StatusCode::OK, "a live session cancels: {body}");
    assert_eq!(body["status"], "cancelled");

    stack.logout(&alice).await;

    // The routes without a rule follow the mode: the token stands until it expires.
    assert_eq!(stack.gateway_status(&alice).await, StatusCode::OK);
    let (status, _) = stack
        .rest(Method::GET, &format!("/v1/orders/{second}"), &alice, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut grpc = stack.grpc(&alice).await;
    assert_eq!(grpc.list().await.unwrap().len(), 2);
    assert!(grpc.get(&second).await.is_ok());

    // Cancel asks the issuer now, at both verifiers.
    let (status, body) = cancel(&stack, &alice, &second).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_token");
    assert_eq!(
        grpc.cancel(&second).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    // Nothing was cancelled, and a new session cancels at once.
    let again = stack.token("alice", None).await;
    let (_, order) = stack
        .rest(Method::GET, &format!("/v1/orders/{second}"), &again, None)
        .await;
    assert_eq!(order["status"], "placed");
    assert_eq!(cancel(&stack, &again, &second).await.0, StatusCode::OK);
}

/// Each verifier applies its own policy: with the rule at the gateway alone, the gateway
/// refuses by itself; with the rule at orders-service alone, orders-service does, and the
/// gateway passes its refusal on as a 401.
#[tokio::test]
async fn each_verifier_checks_the_level_its_own_policy_gives() {
    for (gateway, orders) in [(GATEWAY_CANCEL_LIVE, ""), ("", ORDERS_CANCEL_LIVE)] {
        let stack = Stack::start(Options {
            gateway_route_policy: policy(gateway),
            orders_route_policy: policy(orders),
            ..Options::default()
        })
        .await;
        stack
            .add_user("bob", "user", "orders:read orders:write")
            .await;
        let bob = stack.token("bob", None).await;
        let order = stack.create_order(&bob).await;
        stack.logout(&bob).await;

        let (status, body) = cancel(&stack, &bob, &order).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{gateway:?} {orders:?}: {body}"
        );
        let direct = stack.grpc(&bob).await.cancel(&order).await;
        if orders.is_empty() {
            // orders-service follows its mode (stateless): only the gateway refused.
            assert_eq!(direct.unwrap().status(), OrderStatus::Cancelled);
        } else {
            assert_eq!(direct.unwrap_err().code(), Code::Unauthenticated);
        }
    }
}

#[tokio::test]
async fn stateful_with_token_listing_lists_without_a_lookup_and_refuses_the_rest() {
    let stack = Stack::start(Options {
        mode: AuthMode::Stateful,
        gateway_route_policy: policy("GET /v1/orders=token"),
        orders_route_policy: policy("/orders.v1.OrderService/ListOrders=token"),
        ..Options::default()
    })
    .await;
    stack
        .add_user("carol", "user", "orders:read orders:write")
        .await;
    let carol = stack.token("carol", None).await;
    let order = stack.create_order(&carol).await;
    stack.logout(&carol).await;

    assert_eq!(stack.gateway_status(&carol).await, StatusCode::OK);
    assert_eq!(stack.orders_code(&carol).await, Code::Ok);
    let (status, _) = stack
        .rest(Method::GET, &format!("/v1/orders/{order}"), &carol, None)
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the mode's lookup elsewhere"
    );
    assert_eq!(
        cancel(&stack, &carol, &order).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        stack
            .grpc(&carol)
            .await
            .get(&order)
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
}
