//! REST over the orders service, through the gateway: the happy path, authentication at the
//! edge, authorization, and JSON errors.

use axum::http::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use testkit::gateway::{Upstreams, json, spawn_gateway, spawn_stack};
use testkit::orders::spawn_orders;
use testkit::{Issuer, READ, READ_WRITE, WRITE, unreachable_url};

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn create_list_get_cancel() {
    let stack = spawn_stack().await;
    let gateway = &stack.gateway;
    let alice = bearer(&stack.issuer.user("alice", READ_WRITE));

    let created = gateway
        .post("/v1/orders")
        .header(AUTHORIZATION, &alice)
        .json(&json!({ "item": "a book", "quantity": 2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created.headers()[LOCATION].to_str().unwrap().to_owned();
    let (_, order) = json(created).await;
    let id = order["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/orders/{id}"));
    assert_eq!(order["owner"], "alice");
    assert_eq!(order["item"], "a book");
    assert_eq!(order["quantity"], 2);
    assert_eq!(order["status"], "placed");
    assert!(order["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(order.get("cancelled_at").is_none());

    let (status, fetched) = json(
        gateway
            .get(&location)
            .header(AUTHORIZATION, &alice)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, order);

    let (status, list) = json(
        gateway
            .get("/v1/orders")
            .header(AUTHORIZATION, &alice)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list, json!({ "orders": [order], "next_page_token": null }));

    let (status, cancelled) = json(
        gateway
            .post(&format!("/v1/orders/{id}/cancel"))
            .header(AUTHORIZATION, &alice)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled["cancelled_at"].is_string());

    let (status, again) = json(
        gateway
            .post(&format!("/v1/orders/{id}/cancel"))
            .header(AUTHORIZATION, &alice)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(again["error"], "conflict");
}

#[tokio::test]
async fn list_pages_through_the_gateway() {
    let stack = spawn_stack().await;
    let gateway = &stack.gateway;
    let alice = bearer(&stack.issuer.user("alice", READ_WRITE));
    for i in 0..5 {
        let response = gateway
            .post("/v1/orders")
            .header(AUTHORIZATION, &alice)
            .json(&json!({ "item": format!("item {i}"), "quantity": 1 }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }

    let mut items = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut query = vec![("page_size", "2".to_owned())];
        if let Some(token) = &token {
            query.push(("page_token", token.clone()));
        }
        let (status, page) = json(
            gateway
                .get("/v1/orders")
                .query(&query)
                .header(AUTHORIZATION, &alice)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        for order in page["orders"].as_array().unwrap() {
            items.push(order["item"].as_str().unwrap().to_owned());
        }
        match page["next_page_token"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(items, ["item 4", "item 3", "item 2", "item 1", "item 0"]);
}

#[tokio::test]
async fn a_token_in_the_host_cookie_is_accepted() {
    let stack = spawn_stack().await;
    let token = stack.issuer.user("alice", READ_WRITE);
    let response = stack
        .gateway
        .get("/v1/orders")
        .header(COOKIE, format!("theme=dark; __Host-access_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_bearer_header_and_a_cookie_at_once_are_refused() {
    let stack = spawn_stack().await;
    let token = stack.issuer.user("alice", READ_WRITE);
    let response = stack
        .gateway
        .get("/v1/orders")
        .header(AUTHORIZATION, bearer(&token))
        .header(COOKIE, format!("__Host-access_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key(WWW_AUTHENTICATE));
}

#[tokio::test]
async fn missing_or_invalid_tokens_get_401_with_a_challenge() {
    let stack = spawn_stack().await;
    let gateway = &stack.gateway;
    let mut expired = stack.issuer.issuer.claims("alice", READ_WRITE, &["user"]);
    expired.iat -= 3600;
    expired.nbf = Some(expired.iat);
    expired.exp = authn::unix_now() - 600;
    let expired = stack.issuer.issuer.token(&expired);

    let missing = gateway.get("/v1/orders").send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    let challenge = missing.headers()[WWW_AUTHENTICATE].to_str().unwrap();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    let (_, body) = json(missing).await;
    assert!(body["error"].is_string());

    for token in ["garbage", "a.b.c", expired.as_str()] {
        let response = gateway
            .post("/v1/orders")
            .header(AUTHORIZATION, bearer(token))
            .json(&json!({ "item": "book", "quantity": 1 }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{token}");
        let challenge = response.headers()[WWW_AUTHENTICATE].to_str().unwrap();
        assert!(
            challenge.starts_with(r#"Bearer error="invalid_token""#),
            "{challenge}"
        );
        let text = response.text().await.unwrap();
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["error"], "invalid_token");
        assert!(!text.contains(token), "the token is never echoed");
    }
}

#[tokio::test]
async fn the_orders_service_verifies_the_token_again() {
    // The gateway trusts one issuer, the orders service another: a token good at the edge is
    // still refused behind it, and the refusal reaches the client as a 401.
    let edge_issuer = Issuer::start().await;
    let service_issuer = Issuer::start().await;
    let orders = spawn_orders(&service_issuer).await;
    let gateway = spawn_gateway(
        &edge_issuer,
        Upstreams {
            orders: orders.url(),
            auth: unreachable_url().await,
        },
    )
    .await;
    let response = gateway
        .get("/v1/orders")
        .header(AUTHORIZATION, bearer(&edge_issuer.user("alice", READ)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()[WWW_AUTHENTICATE],
        r#"Bearer error="invalid_token""#
    );
    let (_, body) = json(response).await;
    assert_eq!(body["error"], "invalid_token");
}

#[tokio::test]
async fn a_missing_scope_is_403_insufficient_scope() {
    let stack = spawn_stack().await;
    let gateway = &stack.gateway;
    let read_only = bearer(&stack.issuer.user("alice", READ));
    let write_only = bearer(&stack.issuer.user("alice", WRITE));

    let cases = [
        (
            gateway
                .post("/v1/orders")
                .header(AUTHORIZATION, &read_only)
                .json(&json!({ "item": "book", "quantity": 1 })),
            "orders:write",
        ),
        (
            gateway.get("/v1/orders").header(AUTHORIZATION, &write_only),
            "orders:read",
        ),
        (
            gateway
                .get("/v1/orders/0190a0a0-0000-7000-8000-000000000000")
                .header(AUTHORIZATION, &write_only),
            "orders:read",
        ),
        (
            gateway
                .post("/v1/orders/0190a0a0-0000-7000-8000-000000000000/cancel")
                .header(AUTHORIZATION, &read_only),
            "orders:write",
        ),
    ];
    for (request, scope) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let challenge = response.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            challenge.contains(r#"error="insufficient_scope""#),
            "{challenge}"
        );
        assert!(challenge.contains(scope), "{challenge}");
        let (_, body) = json(response).await;
        assert_eq!(body["error"], "insufficient_scope");
    }
}

#[tokio::test]
async fn unknown_and_other_users_orders_are_404() {
    let stack = spawn_stack().await;
    let gateway = &stack.gateway;
    let alice = bearer(&stack.issuer.user("alice", READ_WRITE));
    let bob = bearer(&stack.issuer.user("bob", READ_WRITE));

    let (_, order) = json(
        gateway
            .post("/v1/orders")
            .header(AUTHORIZATION, &alice)
            .json(&json!({ "item": "book", "quantity": 1 }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let id = order["id"].as_str().unwrap();

    for path in [
        format!("/v1/orders/{id}"),
        "/v1/orders/0190a0a0-0000-7000-8000-000000000000".to_owned(),
    ] {
        let (status, body) = json(
            gateway
                .get(&path)
                .header(AUTHORIZATION, &bob)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body["error"], "not_found");
    }
    let (status, _) = json(
        gateway
            .post(&format!("/v1/orders/{id}/cancel"))
            .header(AUTHORIZATION, &bob)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_requests_are_400_json() {
    let stack = spawn_stack().await;
    let gateway = &stack.gateway;
    let alice = bearer(&stack.issuer.user("alice", READ_WRITE));

    let bodies = [
        "{not json",
        r#"{"item": "book"}"#,
        r#"{"item": "book", "quantity": "two"}"#,
        r#"{"item": "book", "quantity": 99999999999}"#,
        r#"[1, 2]"#,
    ];
    for body in bodies {
        let (status, error) = json(
            gateway
                .post("/v1/orders")
                .header(AUTHORIZATION, &alice)
                .header(CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error["error"], "invalid_request", "{body}");
        assert!(!error.to_string().contains("two"), "the body is not echoed");
    }

    for (item, quantity) in [("book", 0), ("book", 1001), ("book", -5), ("   ", 1)] {
        let (status, error) = json(
            gateway
                .post("/v1/orders")
                .header(AUTHORIZATION, &alice)
                .json(&json!({ "item": item, "quantity": quantity }))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{item:?} x {quantity}");
        assert_eq!(error["error"], "invalid_request");
        assert!(error["error_description"].is_string());
    }

    let no_content_type = gateway
        .post("/v1/orders")
        .header(AUTHORIZATION, &alice)
        .body(r#"{"item": "book", "quantity": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(no_content_type.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let too_large = gateway
        .post("/v1/orders")
        .header(AUTHORIZATION, &alice)
        .json(&json!({ "item": "x".repeat(100 * 1024), "quantity": 1 }))
        .send()
        .await
        .unwrap();
    let (status, error) = json(too_large).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error["error"], "payload_too_large");

    for query in [
        "page_size=abc",
        "page_size=-1",
        "page_size=101",
        "page_token=garbage",
    ] {
        let (status, error) = json(
            gateway
                .get(&format!("/v1/orders?{query}"))
                .header(AUTHORIZATION, &alice)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(error["error"], "invalid_request");
    }

    let (status, _) = json(
        gateway
            .get("/v1/orders/not-a-uuid")
            .header(AUTHORIZATION, &alice)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn orders_service_down_is_503() {
    let issuer = Issuer::start().await;
    let gateway = spawn_gateway(
        &issuer,
        Upstreams {
            orders: unreachable_url().await,
            auth: unreachable_url().await,
        },
    )
    .await;
    let (status, body) = json(
        gateway
            .get("/v1/orders")
            .header(AUTHORIZATION, bearer(&issuer.user("alice", READ)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"], "service_unavailable");
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let stack = spawn_stack().await;
    let gateway = &stack.gateway;

    let generated = gateway.get("/v1/orders").send().await.unwrap();
    assert!(!generated.headers()["x-request-id"].is_empty());

    let kept = gateway
        .get("/healthz")
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers()["x-request-id"], "trace-me-42");
}

/// `ORDERS_GRPC_URL` with a host name (as a headless Service in Kubernetes) goes through the
/// resolving, balancing channel.
#[tokio::test]
async fn orders_service_is_reached_by_host_name() {
    let issuer = Issuer::start().await;
    let orders = spawn_orders(&issuer).await;
    let by_name = orders.url().replace("127.0.0.1", "localhost");
    let gateway = spawn_gateway(
        &issuer,
        Upstreams {
            orders: by_name,
            auth: "http://127.0.0.1:9".into(),
        },
    )
    .await;
    let token = issuer.user("alice", READ_WRITE);
    let created = gateway
        .post("/v1/orders")
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .json(&json!({"item": "tea", "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
}
