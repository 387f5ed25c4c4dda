//! The attack catalog of SECURITY-TESTS.md (classes 1-6, 8-15) against the real gateway over
//! HTTP: every forged token gets 401 with a generic body that does not echo it, and causes no
//! outbound request (no fetch of an attacker's URL, no JWKS fetch beyond one refetch for
//! unknown `kid`s per interval).

use authn::jwk::Algorithm;
use axum::http::StatusCode;
use reqwest::header::{AUTHORIZATION, COOKIE, HeaderValue};
use testkit::Issuer;
use testkit::attacks::catalog;
use testkit::gateway::{Upstreams, spawn_gateway};
use testkit::orders::spawn_orders;
use testkit::{JwksServer, TestIssuer};

#[tokio::test]
async fn every_forged_token_gets_401_without_outbound_requests() {
    every_forged_token_gets_401(Algorithm::Rs256).await;
}

#[tokio::test]
async fn every_forged_token_gets_401_from_an_es256_issuer() {
    every_forged_token_gets_401(Algorithm::Es256).await;
}

#[tokio::test]
async fn every_forged_token_gets_401_from_an_eddsa_issuer() {
    every_forged_token_gets_401(Algorithm::EdDsa).await;
}

/// The catalog against a gateway whose issuer signs with `alg`.
async fn every_forged_token_gets_401(alg: Algorithm) {
    let issuer = Issuer::start_with(alg).await;
    let orders = spawn_orders(&issuer).await;
    let gateway = spawn_gateway(
        &issuer,
        Upstreams {
            orders: orders.url(),
            auth: "http://127.0.0.1:9".into(),
        },
    )
    .await;
    let sink = JwksServer::start(StatusCode::OK, "{}".into()).await;
    let attacker = TestIssuer::new();
    let valid = issuer.user("alice", "orders:read");
    assert_eq!(
        gateway
            .get("/v1/orders")
            .bearer_auth(&valid)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let jwks_fetches = issuer.jwks.hits();

    let mut sent = 0;
    for attack in catalog(&issuer.issuer, &attacker, &sink.url()) {
        let Ok(value) = HeaderValue::from_str(&format!("Bearer {}", attack.token)) else {
            // Control characters cannot travel in an HTTP header at all.
            continue;
        };
        let response = gateway
            .get("/v1/orders")
            .header(AUTHORIZATION, value)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let challenge = response.headers().get("www-authenticate").cloned();
        let body = response.text().await.unwrap();
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "class {} {}: {body}",
            attack.class,
            attack.name
        );
        assert!(
            challenge.is_some_and(|c| c.to_str().unwrap().contains("invalid_token")),
            "class {} {}",
            attack.class,
            attack.name
        );
        assert!(
            !body.contains(&attack.token),
            "class {} {}: body echoes the token",
            attack.class,
            attack.name
        );
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON error body");
        assert_eq!(json["error"], "invalid_token");
        sent += 1;
    }
    assert!(sent > 150, "only {sent} attacks were sent");
    assert_eq!(sink.hits(), 0, "a URL from a token was fetched");
    assert!(
        issuer.jwks.hits() <= jwks_fetches + 1,
        "{} JWKS fetches for unknown kids",
        issuer.jwks.hits() - jwks_fetches
    );
    // The defence refused the attacks, not a broken gateway.
    assert_eq!(
        gateway
            .get("/v1/orders")
            .bearer_auth(&valid)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

/// Class 14: a 64 KB `Authorization` header is refused early (401 here; 431 if a proxy in
/// front cuts it first), and so is a cookie of that size.
#[tokio::test]
async fn oversized_credentials_are_refused() {
    let issuer = Issuer::start().await;
    let orders = spawn_orders(&issuer).await;
    let gateway = spawn_gateway(
        &issuer,
        Upstreams {
            orders: orders.url(),
            auth: "http://127.0.0.1:9".into(),
        },
    )
    .await;
    let huge = "a".repeat(64 * 1024);
    let by_header = gateway
        .get("/v1/orders")
        .bearer_auth(&huge)
        .send()
        .await
        .unwrap();
    assert!(matches!(
        by_header.status(),
        StatusCode::UNAUTHORIZED | StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    ));
    let by_cookie = gateway
        .get("/v1/orders")
        .header(COOKIE, format!("__Host-access_token={huge}"))
        .send()
        .await
        .unwrap();
    assert!(matches!(
        by_cookie.status(),
        StatusCode::UNAUTHORIZED | StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    ));
}

/// Class 15: two tokens in one request are refused, even when both are valid: a header and a
/// cookie, or two `Authorization` headers.
#[tokio::test]
async fn two_tokens_in_one_request_are_refused() {
    let issuer = Issuer::start().await;
    let orders = spawn_orders(&issuer).await;
    let gateway = spawn_gateway(
        &issuer,
        Upstreams {
            orders: orders.url(),
            auth: "http://127.0.0.1:9".into(),
        },
    )
    .await;
    let alice = issuer.user("alice", "orders:read");
    let admin = issuer.admin("root", "orders:read");

    let header_and_cookie = gateway
        .get("/v1/orders")
        .bearer_auth(&alice)
        .header(COOKIE, format!("__Host-access_token={admin}"))
        .send()
        .await
        .unwrap();
    assert_eq!(header_and_cookie.status(), StatusCode::UNAUTHORIZED);

    let two_headers = gateway
        .get("/v1/orders")
        .header(AUTHORIZATION, format!("Bearer {alice}"))
        .header(AUTHORIZATION, format!("Bearer {admin}"))
        .send()
        .await
        .unwrap();
    assert_eq!(two_headers.status(), StatusCode::UNAUTHORIZED);

    let two_cookies = gateway
        .get("/v1/orders")
        .header(
            COOKIE,
            format!("__Host-access_token={alice}; __Host-access_token={admin}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(two_cookies.status(), StatusCode::UNAUTHORIZED);

    let one_cookie = gateway
        .get("/v1/orders")
        .header(COOKIE, format!("__Host-access_token={alice}"))
        .send()
        .await
        .unwrap();
    assert_eq!(one_cookie.status(), StatusCode::OK);
}
