//! The JWKS client against a real (scriptable) HTTP endpoint: readiness, single-flight refetch
//! on unknown `kid`s, keeping the last good key set when the issuer misbehaves, and never
//! following key URLs found in tokens.

use std::time::{Duration, Instant};

use authn::jwks::{JwksClient, JwksConfig};
use authn::verifier::{Keys, Verifier};
use authn::{AuthError, RejectReason};
use axum::http::StatusCode;
use serde_json::json;
use testkit::{JwksServer, PATIENCE, TestIssuer, eventually};

fn remote_verifier(issuer: &TestIssuer, server: &JwksServer, min_refetch: Duration) -> Verifier {
    let config = JwksConfig {
        min_refetch_interval: min_refetch,
        refresh_interval: Duration::from_secs(3600),
        timeout: Duration::from_millis(500),
        ..JwksConfig::new(server.url())
    };
    Verifier::new(
        Keys::remote(JwksClient::start(config).unwrap()),
        issuer.policy(),
    )
}

#[tokio::test]
async fn a_verifier_is_ready_only_once_keys_are_loaded() {
    let issuer = TestIssuer::new();
    let server = JwksServer::start(StatusCode::SERVICE_UNAVAILABLE, String::new()).await;
    let verifier = remote_verifier(&issuer, &server, Duration::from_millis(50));
    eventually("the first fetch failed", PATIENCE, || {
        std::future::ready(server.hits() >= 1)
    })
    .await;
    assert!(!verifier.is_ready());
    let token = issuer.user_token("alice", "orders:read", &[]);
    assert_eq!(
        verifier.verify(&token).await.unwrap_err(),
        AuthError::Unavailable
    );

    server.respond(
        StatusCode::OK,
        serde_json::to_string(&issuer.jwks()).unwrap(),
    );
    eventually("keys are loaded", PATIENCE, || {
        std::future::ready(verifier.is_ready())
    })
    .await;
    assert_eq!(verifier.verify(&token).await.unwrap().sub(), "alice");
}

#[tokio::test]
async fn an_unknown_kid_flood_causes_at_most_one_fetch() {
    let issuer = TestIssuer::new();
    let server = issuer.serve_jwks().await;
    let verifier = remote_verifier(&issuer, &server, Duration::from_secs(60));
    eventually("keys are loaded", PATIENCE, || {
        std::future::ready(verifier.is_ready())
    })
    .await;
    let before = server.hits();

    let mut tasks = Vec::new();
    for i in 0..10_000 {
        let verifier = verifier.clone();
        let mut header = issuer.header();
        header["kid"] = json!(format!("random-{i}"));
        let token = issuer.forge(
            &header.to_string(),
            &serde_json::to_string(&issuer.claims("x", "", &[])).unwrap(),
        );
        tasks.push(tokio::spawn(async move { verifier.verify(&token).await }));
    }
    for task in tasks {
        assert_eq!(
            task.await.unwrap().unwrap_err(),
            AuthError::Unauthenticated(RejectReason::UnknownKey)
        );
    }
    assert!(
        server.hits() - before <= 1,
        "{} fetches",
        server.hits() - before
    );
    // One after another as well: each of these would fetch if only concurrent callers were
    // coalesced, or if nothing but the issuer's slowness held the flood above back (10,000
    // simultaneous fetches mostly time out before they reach the server).
    for i in 0..200 {
        let mut header = issuer.header();
        header["kid"] = json!(format!("one-after-another-{i}"));
        let token = issuer.forge(
            &header.to_string(),
            &serde_json::to_string(&issuer.claims("x", "", &[])).unwrap(),
        );
        assert_eq!(
            verifier.verify(&token).await.unwrap_err(),
            AuthError::Unauthenticated(RejectReason::UnknownKey)
        );
    }
    assert!(
        server.hits() - before <= 1,
        "{} fetches",
        server.hits() - before
    );
    let valid = issuer.user_token("alice", "orders:read", &[]);
    assert!(verifier.verify(&valid).await.is_ok());
}

#[tokio::test]
async fn a_new_kid_is_fetched_once_the_interval_allows() {
    let old = TestIssuer::new();
    let new = TestIssuer::new();
    let server = old.serve_jwks().await;
    let verifier = remote_verifier(&old, &server, Duration::from_millis(200));
    eventually("keys are loaded", PATIENCE, || {
        std::future::ready(verifier.is_ready())
    })
    .await;

    let both =
        authn::jwk::JwkSet::from_keys([old.signer().public_jwk(), new.signer().public_jwk()]);
    server.respond(StatusCode::OK, serde_json::to_string(&both).unwrap());
    let token = new.user_token("bob", "orders:read", &[]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match verifier.verify(&token).await {
            Ok(principal) => {
                assert_eq!(principal.sub(), "bob");
                break;
            }
            Err(error) => {
                assert_eq!(error, AuthError::Unauthenticated(RejectReason::UnknownKey));
                assert!(
                    Instant::now() < deadline,
                    "the rotated key was never fetched"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert!(verifier.verify(&old.user_token("a", "", &[])).await.is_ok());
}

#[tokio::test]
async fn the_last_good_key_set_survives_a_misbehaving_issuer() {
    let issuer = TestIssuer::new();
    let server = issuer.serve_jwks().await;
    let verifier = remote_verifier(&issuer, &server, Duration::from_millis(20));
    eventually("keys are loaded", PATIENCE, || {
        std::future::ready(verifier.is_ready())
    })
    .await;
    let token = issuer.user_token("alice", "orders:read", &[]);
    let unknown = {
        let mut header = issuer.header();
        header["kid"] = json!("not-there");
        issuer.forge(
            &header.to_string(),
            &serde_json::to_string(&issuer.claims("x", "", &[])).unwrap(),
        )
    };
    let weak = r#"{"keys":[{"kty":"RSA","kid":"weak","n":"AQAB","e":"AQAB"}]}"#;
    // Slow: longer than the client's timeout (500 ms), then fast again with the errors below.
    server.delay(Duration::from_secs(2));
    let hits = server.hits();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.hits() == hits {
        assert!(Instant::now() < deadline, "no refetch happened");
        let _ = verifier.verify(&unknown).await;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        verifier.verify(&token).await.unwrap().sub(),
        "alice",
        "slow issuer"
    );
    server.delay(Duration::ZERO);
    let huge = format!(r#"{{"keys":[],"pad":"{}"}}"#, "x".repeat(10 * 1024 * 1024));
    for (status, body) in [
        (StatusCode::NOT_FOUND, "not found".to_owned()),
        (StatusCode::INTERNAL_SERVER_ERROR, String::new()),
        (StatusCode::OK, "{}".to_owned()),
        (StatusCode::OK, r#"{"keys":null}"#.to_owned()),
        (StatusCode::OK, r#"{"keys":[]}"#.to_owned()),
        (StatusCode::OK, "{not json".to_owned()),
        (StatusCode::OK, weak.to_owned()),
        (StatusCode::OK, huge),
    ] {
        server.respond(status, body);
        let hits = server.hits();
        // An unknown kid asks for a refetch; wait until the misbehaving answer was fetched.
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.hits() == hits {
            assert!(Instant::now() < deadline, "no refetch happened");
            let _ = verifier.verify(&unknown).await;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(verifier.is_ready(), "{status}");
        assert_eq!(
            verifier.verify(&token).await.unwrap().sub(),
            "alice",
            "{status}"
        );
    }
}

#[tokio::test]
async fn key_urls_in_tokens_are_never_fetched() {
    let issuer = TestIssuer::new();
    let server = issuer.serve_jwks().await;
    let sink = JwksServer::start(
        StatusCode::OK,
        serde_json::to_string(&TestIssuer::new().jwks()).unwrap(),
    )
    .await;
    let verifier = remote_verifier(&issuer, &server, Duration::from_millis(10));
    eventually("keys are loaded", PATIENCE, || {
        std::future::ready(verifier.is_ready())
    })
    .await;
    for member in ["jku", "x5u"] {
        let mut header = issuer.header();
        header[member] = json!(sink.url());
        header["kid"] = json!("attacker");
        let token = issuer.forge(
            &header.to_string(),
            &serde_json::to_string(&issuer.claims("x", "", &[])).unwrap(),
        );
        assert!(verifier.verify(&token).await.is_err());
    }
    assert_eq!(sink.hits(), 0);
}

fn background_verifier(issuer: &TestIssuer, server: &JwksServer) -> (Verifier, JwksClient) {
    let config = JwksConfig {
        min_refetch_interval: Duration::from_millis(200),
        refresh_interval: Duration::from_secs(3600),
        ..JwksConfig::new(server.url())
    };
    let client = JwksClient::start(config).unwrap();
    (
        Verifier::new(Keys::remote(client.clone()), issuer.policy()),
        client,
    )
}

/// The background refresh follows the issuer's `max-age` (here 1 s, far below the 1 h
/// `refresh_interval`), and refetches conditionally: an unchanged set costs a 304.
#[tokio::test]
async fn background_refresh_follows_max_age_and_revalidates() {
    let issuer = TestIssuer::new();
    let server = issuer.serve_jwks().await;
    server.cache_control(Some("public, max-age=1"));
    server.etag(Some("\"v1\""));
    let (verifier, client) = background_verifier(&issuer, &server);
    eventually("keys are loaded", PATIENCE, || {
        std::future::ready(verifier.is_ready())
    })
    .await;
    assert_eq!(client.next_refresh_in(), Duration::from_secs(1));
    eventually("a revalidation answered 304", PATIENCE, || {
        std::future::ready(server.not_modified() >= 2)
    })
    .await;
    assert!(
        verifier
            .verify(&issuer.user_token("a", "", &[]))
            .await
            .is_ok()
    );
    assert!(
        client.age().unwrap() < Duration::from_secs(2),
        "a 304 renews the set's age"
    );
}

/// `no-cache` (or `max-age=0`) cannot make the client fetch on every request: the refresh is
/// bounded below by `min_refetch_interval`.
#[tokio::test]
async fn no_cache_is_bounded_by_the_minimum_interval() {
    let issuer = TestIssuer::new();
    let server = issuer.serve_jwks().await;
    server.cache_control(Some("no-cache"));
    let (verifier, client) = background_verifier(&issuer, &server);
    eventually("keys are loaded", PATIENCE, || {
        std::future::ready(verifier.is_ready())
    })
    .await;
    assert_eq!(client.next_refresh_in(), Duration::from_millis(200));
    let token = issuer.user_token("a", "", &[]);
    let before = server.hits();
    for _ in 0..500 {
        assert!(verifier.verify(&token).await.is_ok());
    }
    assert!(
        server.hits() - before <= 2,
        "{} fetches for 500 verifications",
        server.hits() - before
    );
}

#[tokio::test]
async fn an_announced_key_is_fetched_past_the_minimum_interval_one_fetch_at_a_time() {
    let old = TestIssuer::new();
    let new = TestIssuer::new();
    let server = old.serve_jwks().await;
    let config = JwksConfig {
        min_refetch_interval: Duration::from_secs(600),
        refresh_interval: Duration::from_secs(600),
        timeout: Duration::from_millis(500),
        ..JwksConfig::new(server.url())
    };
    let client = JwksClient::start(config).unwrap();
    let mut changes = client.changes();
    eventually("keys are loaded", PATIENCE, || {
        std::future::ready(client.is_ready())
    })
    .await;
    let old_kid = old.signer().kid().to_owned();
    let new_kid = new.signer().kid().to_owned();
    assert_eq!(client.kids(), std::slice::from_ref(&old_kid));
    let before = server.hits();

    // The issuer publishes a key: an unknown kid would wait ten minutes for the next fetch.
    let both =
        authn::jwk::JwkSet::from_keys([old.signer().public_jwk(), new.signer().public_jwk()]);
    server.respond(StatusCode::OK, serde_json::to_string(&both).unwrap());
    client.refresh().await;
    assert!(!client.has(&new_kid));
    assert_eq!(
        server.hits(),
        before,
        "the minimum interval holds for others"
    );

    // Announced (`KeyAdded`), many times at once: fetched now, in one fetch.
    changes.borrow_and_update();
    let announced: Vec<_> = (0..20)
        .map(|_| {
            let (client, kid) = (client.clone(), new_kid.clone());
            tokio::spawn(async move { client.fetch_until_holds(&kid).await })
        })
        .collect();
    for task in announced {
        assert!(task.await.unwrap());
    }
    assert!(client.has(&new_kid));
    let mut kids = vec![old_kid, new_kid.clone()];
    kids.sort();
    assert_eq!(client.kids(), kids);
    assert!(
        changes.has_changed().unwrap(),
        "the change is announced to the key reporter"
    );
    assert_eq!(
        server.hits() - before,
        1,
        "one fetch for twenty announcements"
    );
    // A key already held costs nothing.
    let hits = server.hits();
    assert!(client.fetch_until_holds(&new_kid).await);
    assert_eq!(server.hits(), hits);
}
