//! The bounded Argon2 queue: with every permit running and `AUTH_ARGON2_MAX_WAITING`
//! verifications waiting, one more is answered 503 with `Retry-After` at once, never queued
//! until the request times out. The test holds the permits itself, so nothing is timed: a
//! request that queued instead would wait for as long as the test holds them.

use std::sync::Arc;
use std::time::Duration;

use auth_service::Config;
use auth_service::config::Argon2Config;
use testkit::auth::{TestAuth, spawn_auth_with, test_config};
use testkit::{PATIENCE, eventually};

const PASSWORD: &str = "correct horse battery";
const BUSY: &str = r#"{"error":"temporarily_unavailable","error_description":"the server is busy: try again later"}"#;

/// One Argon2 run at a time, one waiter.
async fn spawn_tiny() -> TestAuth {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let config = Config {
        argon2: Argon2Config {
            permits: 1,
            max_waiting: Some(1),
        },
        ..test_config(dir.path())
    };
    spawn_auth_with(config, dir).await
}

async fn send(auth: &TestAuth, form: &[(&str, &str)]) -> (u16, Option<String>, String) {
    let response = auth
        .http
        .post(auth.url("/oauth/token"))
        .form(form)
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("ASCII").to_owned());
    (status, retry_after, response.text().await.expect("body"))
}

#[tokio::test]
async fn with_the_queue_full_a_request_gets_503_at_once() {
    let auth = spawn_tiny().await;
    let secret = auth.create_client("svc", "orders:read", "").await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;

    // The one permit is busy; one client authentication waits for it.
    let running = auth.state.passwords.occupy().await.expect("the permit");
    let waiter = {
        let (http, url, secret) = (auth.http.clone(), auth.url("/oauth/token"), secret.clone());
        tokio::spawn(async move {
            let form = [
                ("grant_type", "client_credentials"),
                ("client_id", "svc"),
                ("client_secret", secret.as_str()),
            ];
            http.post(url)
                .form(&form)
                .send()
                .await
                .expect("sent")
                .status()
        })
    };
    eventually("one verification waits", PATIENCE, || {
        std::future::ready(auth.state.passwords.waiting() == 1)
    })
    .await;

    // The queue is full: a client authentication and a login are refused at once. (Were they
    // queued, they would wait as long as the test holds the permit: the guard turns that into
    // a failure instead of a hang.)
    for form in [
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", "other"),
            ("client_secret", "whatever"),
        ],
        vec![
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
        ],
    ] {
        let answer = tokio::time::timeout(Duration::from_secs(30), send(&auth, &form))
            .await
            .expect("answered while the permit is held, not queued");
        assert_eq!(answer, (503, Some("1".to_owned()), BUSY.to_owned()));
    }
    assert_eq!(auth.state.passwords.verifications(), 0, "nothing ran");
    let metrics = auth.metrics().await;
    assert!(metrics.contains("auth_argon2_refused_total"), "{metrics}");
    assert!(metrics.contains("auth_argon2_waiting"), "{metrics}");

    // The permit is free again: the waiter goes through, and so does the login that was
    // refused (its attempt counted neither as a failure nor as a success).
    drop(running);
    assert_eq!(waiter.await.expect("task"), 200);
    auth.login("alice", PASSWORD).await;
}
