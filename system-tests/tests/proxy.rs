//! The reverse proxy to the auth-service.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use testkit::gateway::{
    STUB_BODY, StubAuth, Upstreams, json, spawn_gateway, spawn_stack, start_gateway,
};
use testkit::{Issuer, unreachable_url};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[tokio::test]
async fn method_path_query_body_and_headers_are_forwarded() {
    let stack = spawn_stack().await;

    let response = stack
        .gateway
        .post("/oauth/token?audience=orders&x=%20y")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", "Basic Y2xpZW50OnNlY3JldA==")
        .header("cookie", "__Host-refresh=r1")
        .header("x-request-id", "req-7")
        .header("x-custom", "kept")
        .body("grant_type=password&username=alice")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["x-upstream"], "stub");
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(
        response.headers()["set-cookie"],
        "__Host-refresh=r; Path=/; Secure; HttpOnly"
    );
    assert_eq!(response.text().await.unwrap(), STUB_BODY);

    let received = stack.auth.only_request();
    assert_eq!(received.method, Method::POST);
    assert_eq!(received.path, "/oauth/token");
    assert_eq!(received.query.as_deref(), Some("audience=orders&x=%20y"));
    assert_eq!(received.body, "grant_type=password&username=alice");
    assert_eq!(
        received.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        received.headers["authorization"],
        "Basic Y2xpZW50OnNlY3JldA=="
    );
    assert_eq!(received.headers["cookie"], "__Host-refresh=r1");
    assert_eq!(received.headers["x-custom"], "kept");
    assert_eq!(received.headers["x-request-id"], "req-7");
    assert_eq!(received.headers["x-forwarded-proto"], "http");
    assert_eq!(
        received.headers["x-forwarded-host"],
        stack.gateway.addr.to_string()
    );
}

#[tokio::test]
async fn every_auth_route_is_forwarded() {
    let stack = spawn_stack().await;
    let routes = [
        (Method::GET, "/.well-known/jwks.json"),
        (Method::GET, "/.well-known/openid-configuration"),
        (Method::POST, "/oauth/revoke"),
        (Method::POST, "/oauth/introspect"),
        (Method::GET, "/v1/sessions"),
        (Method::DELETE, "/v1/sessions/abc123"),
        (Method::POST, "/v1/logout"),
        (Method::POST, "/v1/logout-all"),
    ];
    for (method, path) in &routes {
        let response = stack
            .gateway
            .request(method.clone(), path)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "{method} {path}");
    }
    let received: Vec<_> = stack
        .auth
        .received()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect();
    let expected: Vec<_> = routes
        .iter()
        .map(|(m, p)| (m.clone(), (*p).to_owned()))
        .collect();
    assert_eq!(received, expected);

    // Other routes are not forwarded.
    for path in [
        "/v1/admin/users",
        "/v1/sessionsx",
        "/v1/logout-everything",
        "/oauth",
    ] {
        let response = stack.gateway.get(path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(stack.auth.received().len(), routes.len());
}

#[tokio::test]
async fn hop_by_hop_headers_are_dropped_both_ways() {
    let stack = spawn_stack().await;
    let hop_by_hop_request = |url: String| {
        reqwest::Client::new()
            .post(url)
            .header("connection", "x-client-private")
            .header("x-client-private", "hop")
            .header("keep-alive", "timeout=5")
            .header("proxy-authorization", "Basic eDp5")
            .header("te", "trailers")
            .header("upgrade", "websocket")
            .header("x-end-to-end", "yes")
            .body("body")
    };

    // Sanity: sent directly, the stub does see these headers, so what follows is meaningful.
    let direct_response = hop_by_hop_request(format!("{}/oauth/token", stack.auth.url()))
        .send()
        .await
        .unwrap();
    for name in ["x-upstream-private", "keep-alive", "proxy-authenticate"] {
        assert!(
            direct_response.headers().contains_key(name),
            "stub sends {name}"
        );
    }
    let direct = stack.auth.only_request();
    assert_eq!(direct.headers["x-client-private"], "hop");
    assert_eq!(direct.headers["proxy-authorization"], "Basic eDp5");

    let response = hop_by_hop_request(stack.gateway.url("/oauth/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    for name in ["x-upstream-private", "keep-alive", "proxy-authenticate"] {
        assert!(
            !response.headers().contains_key(name),
            "response kept {name}"
        );
    }
    assert_eq!(response.headers()["x-upstream"], "stub");

    let received = stack.auth.received().pop().unwrap();
    for name in [
        "x-client-private",
        "keep-alive",
        "proxy-authorization",
        "te",
        "upgrade",
    ] {
        assert!(!received.headers.contains_key(name), "request kept {name}");
    }
    assert_eq!(received.headers["x-end-to-end"], "yes");
    assert_eq!(received.body, "body");
}

#[tokio::test]
async fn x_forwarded_for_is_the_peer_address_whatever_the_client_says() {
    let stack = spawn_stack().await;
    stack
        .gateway
        .get("/.well-known/jwks.json")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("forwarded", "for=6.6.6.6")
        .header("x-real-ip", "6.6.6.6")
        .send()
        .await
        .unwrap();
    let received = stack.auth.only_request();
    let forwarded_for: Vec<_> = received.headers.get_all("x-forwarded-for").iter().collect();
    assert_eq!(forwarded_for, ["127.0.0.1"]);
    assert_eq!(received.headers["x-forwarded-proto"], "http");
    assert!(!received.headers.contains_key("forwarded"));
    assert!(!received.headers.contains_key("x-real-ip"));
}

/// Behind a trusted proxy (an ingress controller; here the loopback peer) the client is the
/// entry that proxy appended, and it alone is forwarded: entries further left, which the
/// client could have written, never reach the auth-service.
#[tokio::test]
async fn behind_a_trusted_proxy_the_address_it_forwarded_is_the_client() {
    let issuer = Issuer::start().await;
    let auth = StubAuth::start().await;
    let gateway = start_gateway(gateway::Config {
        auth_http_url: auth.url(),
        orders_grpc_url: unreachable_url().await,
        auth: issuer.verifier_config(),
        trusted_proxies: platform::client_addr::TrustedProxies::parse("127.0.0.0/8").unwrap(),
        ..gateway::Config::default()
    })
    .await;
    gateway
        .get("/.well-known/jwks.json")
        .header("x-forwarded-for", "6.6.6.6, 198.51.100.4")
        .send()
        .await
        .unwrap();
    let received = auth.only_request();
    let forwarded_for: Vec<_> = received.headers.get_all("x-forwarded-for").iter().collect();
    assert_eq!(forwarded_for, ["198.51.100.4"]);
}

#[tokio::test]
async fn a_request_id_is_sent_upstream_even_when_the_client_sent_none() {
    let stack = spawn_stack().await;
    let response = stack.gateway.get("/v1/sessions").send().await.unwrap();
    let echoed = response.headers()["x-request-id"].clone();
    let received = stack.auth.only_request();
    assert_eq!(received.headers["x-request-id"], echoed);
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let stack = spawn_stack().await;
    let response = stack
        .gateway
        .post("/oauth/token")
        .body(vec![b'a'; 65 * 1024])
        .send()
        .await
        .unwrap();
    let (status, body) = json(response).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"], "payload_too_large");
    assert!(stack.auth.received().is_empty());
}

#[tokio::test]
async fn dot_segments_cannot_escape_the_forwarded_routes() {
    let stack = spawn_stack().await;
    // A raw request: HTTP clients would normalise these paths before sending.
    for path in ["/oauth/../v1/admin/users", "/oauth/%2e%2e/v1/admin/users"] {
        let mut stream = tokio::net::TcpStream::connect(stack.gateway.addr)
            .await
            .unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 400"), "{path}: {response}");
    }
    assert!(stack.auth.received().is_empty());
}

#[tokio::test]
async fn an_unreachable_auth_service_is_502() {
    let issuer = Issuer::start().await;
    let gateway = spawn_gateway(
        &issuer,
        Upstreams {
            orders: unreachable_url().await,
            auth: unreachable_url().await,
        },
    )
    .await;
    let (status, body) = json(gateway.post("/oauth/token").send().await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["error"], "bad_gateway");
}

#[tokio::test]
async fn a_silent_auth_service_is_504() {
    let issuer = Issuer::start().await;
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let _hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    let gateway = start_gateway(gateway::Config {
        orders_grpc_url: unreachable_url().await,
        auth_http_url: silent_url,
        request_timeout: Duration::from_millis(300),
        auth: issuer.verifier_config(),
        ..gateway::Config::default()
    })
    .await;
    let (status, body) = json(gateway.post("/oauth/token").send().await.unwrap()).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(body["error"], "gateway_timeout");
}
