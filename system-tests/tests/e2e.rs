//! The whole system end to end: the real auth-service, orders-service and gateway, in-process
//! on port 0, talking real HTTP and gRPC. The verifiers know nothing but the issuer's JWKS URL.

use auth_service::passwords::ExposeSecret as _;
use auth_service::scope::ScopeSet;
use proto::orders::v1 as pb;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::stack::{ISSUER, Options, Stack};
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
    let forged_elsewhere =
        testkit::TestIssuer::new().user_token("alice", "orders:read orders:write", &["admin"]);

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
        .basic_auth("reporting", Some(secret.expose_secret()))
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

fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn cookie_pair(set_cookie: &str) -> &str {
    set_cookie.split(';').next().unwrap()
}

/// Browsers: tokens travel in `HttpOnly; Secure; SameSite=Strict` cookies, and a cross-site
/// state-changing request carrying them is refused (CSRF), while the same request from the
/// site itself, or a read, goes through.
#[tokio::test]
async fn browsers_use_cookies_and_cross_site_requests_are_refused() {
    let stack = spawn_stack().await;
    stack
        .add_user("alice", "user", "orders:read orders:write")
        .await;
    let form = [
        ("username", "alice"),
        ("password", testkit::stack::PASSWORD),
    ];

    let cross_site_login = stack
        .http
        .post(stack.url("/v1/cookie/login"))
        .header("sec-fetch-site", "cross-site")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site_login.status(), StatusCode::FORBIDDEN);

    let login = stack
        .http
        .post(stack.url("/v1/cookie/login"))
        .header("sec-fetch-site", "same-origin")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::NO_CONTENT);
    let cookies = set_cookies(&login);
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    for cookie in &cookies {
        for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
            assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
        }
    }
    let jar = cookies
        .iter()
        .map(|c| cookie_pair(c))
        .collect::<Vec<_>>()
        .join("; ");
    let order = json!({"item": "tea", "quantity": 1});

    let same_site = stack
        .http
        .post(stack.url("/v1/orders"))
        .header("cookie", &jar)
        .header("sec-fetch-site", "same-origin")
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_eq!(same_site.status(), StatusCode::CREATED);

    let host = stack.gateway.trim_start_matches("http://").to_owned();
    for (name, value) in [
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
        ("origin", "https://evil.example"),
    ] {
        let forged = stack
            .http
            .post(stack.url("/v1/orders"))
            .header("cookie", &jar)
            .header(name, value)
            .json(&order)
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), StatusCode::FORBIDDEN, "{name}: {value}");
        let body: Value = forged.json().await.unwrap();
        assert_eq!(body["error"], "cross_site_request");
    }
    let same_origin = stack
        .http
        .post(stack.url("/v1/orders"))
        .header("cookie", &jar)
        .header("origin", format!("http://{host}"))
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_eq!(same_origin.status(), StatusCode::CREATED);
    let cross_site_read = stack
        .http
        .get(stack.url("/v1/orders"))
        .header("cookie", &jar)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(
        cross_site_read.status(),
        StatusCode::OK,
        "reads are not state changes"
    );

    let refreshed = stack
        .http
        .post(stack.url("/v1/cookie/refresh"))
        .header("cookie", &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), StatusCode::NO_CONTENT);
    let renewed = set_cookies(&refreshed);
    assert_eq!(renewed.len(), 2);
    assert_ne!(
        cookie_pair(&renewed[1]),
        cookie_pair(&cookies[1]),
        "the refresh token rotated"
    );

    let logout = stack
        .http
        .post(stack.url("/v1/cookie/logout"))
        .header(
            "cookie",
            renewed
                .iter()
                .map(|c| cookie_pair(c))
                .collect::<Vec<_>>()
                .join("; "),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    for cleared in set_cookies(&logout) {
        assert!(cleared.contains("Max-Age=0"), "{cleared}");
    }
}
