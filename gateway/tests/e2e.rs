//! The whole system end to end: the real auth-service, orders-service and gateway, in-process
//! on port 0, talking real HTTP and gRPC. The verifiers know nothing but the issuer's JWKS URL.

mod stack;

use auth_service::scope::ScopeSet;
use proto::orders::v1 as pb;
use reqwest::StatusCode;
use serde_json::{Value, json};
use stack::{ISSUER, Options, Stack};
use tonic::Code;

async fn spawn_stack() -> Stack {
    Stack::start(Options::default()).await
}

#[tokio::test]
async fn a_user_logs_in_through_the_gateway_and_manages_orders_over_http_and_grpc() {
    let stack = spawn_stack().await;
    let alice_id = stack
        .add_user("alice", "user", "orders:read orders:write")
        .await;

    let login = stack.login("alice", None).await;
    assert_eq!(login["token_type"], "Bearer");
    assert_eq!(login["expires_in"], 300);
    assert!(login["refresh_token"].is_string());
    let token = login["access_token"].as_str().unwrap();

    // HTTP at the gateway, which calls orders-service over gRPC with the same token.
    let (status, order) = stack
        .rest(
            reqwest::Method::POST,
            "/v1/orders",
            token,
            Some(json!({"item": "coffee beans", "quantity": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["owner"], alice_id.as_str());
    assert_eq!(order["status"], "placed");
    let id = order["id"].as_str().unwrap();

    let (status, list) = stack
        .rest(reqwest::Method::GET, "/v1/orders", token, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["orders"].as_array().unwrap().len(), 1);
    assert_eq!(list["orders"][0]["id"], id);

    let (status, fetched) = stack
        .rest(
            reqwest::Method::GET,
            &format!("/v1/orders/{id}"),
            token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched["item"], "coffee beans");

    // The same token straight to orders-service over gRPC.
    let mut grpc = stack.grpc(token).await;
    assert_eq!(grpc.get(id).await.unwrap().item, "coffee beans");
    let created = grpc.create("tea", 1).await.unwrap();
    assert_eq!(created.owner, alice_id);
    assert_eq!(grpc.list().await.unwrap().len(), 2);

    let (status, cancelled) = stack
        .rest(
            reqwest::Method::POST,
            &format!("/v1/orders/{id}/cancel"),
            token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(
        grpc.get(id).await.unwrap().status,
        pb::OrderStatus::Cancelled as i32
    );
}

#[tokio::test]
async fn users_see_only_their_own_orders_and_admins_see_all() {
    let stack = spawn_stack().await;
    stack
        .add_user("alice", "user", "orders:read orders:write")
        .await;
    stack
        .add_user("bob", "user", "orders:read orders:write")
        .await;
    stack
        .add_user("root", "admin,user", "orders:read orders:write")
        .await;
    let alice = stack.token("alice", None).await;
    let bob = stack.token("bob", None).await;
    let admin = stack.token("root", None).await;

    let (_, order) = stack
        .rest(
            reqwest::Method::POST,
            "/v1/orders",
            &alice,
            Some(json!({"item": "book", "quantity": 1})),
        )
        .await;
    let id = order["id"].as_str().unwrap();
    let path = format!("/v1/orders/{id}");

    // Bob: not found, over HTTP and over gRPC, and not in his list; he cannot cancel it.
    let (status, body) = stack.rest(reqwest::Method::GET, &path, &bob, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "not_found");
    assert_eq!(
        stack.grpc(&bob).await.get(id).await.unwrap_err().code(),
        Code::NotFound
    );
    assert!(stack.grpc(&bob).await.list().await.unwrap().is_empty());
    let (status, _) = stack
        .rest(reqwest::Method::POST, &format!("{path}/cancel"), &bob, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The admin: sees it, lists it, can cancel it.
    let (status, body) = stack.rest(reqwest::Method::GET, &path, &admin, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], id);
    assert_eq!(stack.grpc(&admin).await.get(id).await.unwrap().id, id);
    assert_eq!(stack.grpc(&admin).await.list().await.unwrap().len(), 1);
    let (status, body) = stack
        .rest(
            reqwest::Method::POST,
            &format!("{path}/cancel"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "cancelled");
}

#[tokio::test]
async fn a_token_without_orders_write_cannot_create() {
    let stack = spawn_stack().await;
    stack
        .add_user("reader", "user", "orders:read orders:write")
        .await;
    let read_only = stack.token("reader", Some("orders:read")).await;

    let response = stack
        .http
        .post(stack.url("/v1/orders"))
        .bearer_auth(&read_only)
        .json(&json!({"item": "tea", "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "insufficient_scope");

    let status = stack
        .grpc(&read_only)
        .await
        .create("tea", 1)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // Reading is still allowed.
    let (status, _) = stack
        .rest(reqwest::Method::GET, "/v1/orders", &read_only, None)
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn bad_tokens_are_refused_at_the_gateway_and_at_orders_service() {
    let stack = spawn_stack().await;
    stack
        .add_user("alice", "user", "orders:read orders:write")
        .await;
    let token = stack.token("alice", None).await;
    let mut tampered = token.clone().into_bytes();
    let middle = token.find('.').unwrap() + 5;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let forged_elsewhere = shared::testing::TestIssuer::new().user_token(
        "alice",
        "orders:read orders:write",
        &["admin"],
    );

    for bad in [tampered.as_str(), forged_elsewhere.as_str(), "not-a-token"] {
        let response = stack
            .http
            .get(stack.url("/v1/orders"))
            .bearer_auth(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
        let body = response.text().await.unwrap();
        assert!(!body.contains(bad), "the body must not echo the token");
        assert_eq!(
            stack.grpc(bad).await.list().await.unwrap_err().code(),
            Code::Unauthenticated
        );
    }
    let response = stack
        .http
        .get(stack.url("/v1/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
}

#[tokio::test]
async fn refresh_and_service_tokens_work_through_the_gateway() {
    let stack = spawn_stack().await;
    stack
        .add_user("alice", "user", "orders:read orders:write")
        .await;
    let login = stack.login("alice", None).await;
    let refresh = login["refresh_token"].as_str().unwrap();

    let response = stack
        .http
        .post(stack.url("/oauth/token"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let renewed: Value = response.json().await.unwrap();
    assert_ne!(renewed["refresh_token"], login["refresh_token"]);
    let (status, _) = stack
        .rest(
            reqwest::Method::GET,
            "/v1/orders",
            renewed["access_token"].as_str().unwrap(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (_, secret) = auth_service::clients::create(
        &stack.auth_state.pool,
        &stack.auth_state.passwords,
        auth_service::clients::NewClient {
            id: "reporting".into(),
            scopes: ScopeSet::parse("orders:read").unwrap(),
            roles: Vec::new(),
        },
    )
    .await
    .unwrap();
    let response = stack
        .http
        .post(stack.url("/oauth/token"))
        .basic_auth("reporting", Some(secret.expose()))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let service: Value = response.json().await.unwrap();
    assert!(service.get("refresh_token").is_none());
    let service_token = service["access_token"].as_str().unwrap();
    let (status, body) = stack
        .rest(reqwest::Method::GET, "/v1/orders", service_token, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = stack
        .rest(
            reqwest::Method::POST,
            "/v1/orders",
            service_token,
            Some(json!({"item": "x", "quantity": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_issuer_documents_are_forwarded_by_the_gateway() {
    let stack = spawn_stack().await;
    let response = stack
        .http
        .get(stack.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    let jwks: Value = response.json().await.unwrap();
    assert_eq!(jwks["keys"][0]["alg"], "RS256");
    assert!(jwks["keys"][0].get("d").is_none(), "no private material");

    let discovery: Value = stack
        .http
        .get(stack.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], ISSUER);
    assert_eq!(
        discovery["jwks_uri"],
        format!("{ISSUER}/.well-known/jwks.json")
    );
}
