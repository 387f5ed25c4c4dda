//! The throttles counted in Redis (`REDIS_URL`): replicas sharing one Redis share one budget,
//! so N replicas behind a balancer do not give an attacker N times the guesses; and while Redis
//! does not answer, each replica counts in its own memory (neither open nor closed). Needs
//! `TEST_REDIS_URL`.

use std::net::SocketAddr;
use std::sync::Arc;

use auth_service::Config;
use auth_service::config::{ClientAuthThrottleConfig, LoginThrottleConfig};
use testkit::auth::{TestAuth, spawn_auth_with, test_config};
use testkit::logs::ProcessLogs;
use testkit::{TcpProxy, test_redis_url};

const WRONG: &str = "not the password";

/// An auth-service of its own (own SQLite, own keys) on the Redis at `redis_url`, both throttles
/// locking after three failures and nothing else.
async fn replica(redis_url: &str) -> TestAuth {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let config = Config {
        redis_url: Some(redis_url.to_owned()),
        login_throttle: LoginThrottleConfig {
            throttle_after: 0,
            lock_after: 3,
            address_throttle_after: 0,
            address_lock_after: 0,
            ..LoginThrottleConfig::default()
        },
        client_auth_throttle: ClientAuthThrottleConfig {
            throttle_after: 0,
            lock_after: 3,
            address_throttle_after: 0,
            address_lock_after: 0,
            ..ClientAuthThrottleConfig::default()
        },
        ..test_config(dir.path())
    };
    spawn_auth_with(config, dir).await
}

async fn login_status(auth: &TestAuth, username: &str) -> u16 {
    auth.post_token(&[
        ("grant_type", "password"),
        ("username", username),
        ("password", WRONG),
    ])
    .await
    .status()
    .as_u16()
}

async fn client_status(auth: &TestAuth, client_id: &str) -> u16 {
    auth.post_token(&[
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("client_secret", WRONG),
    ])
    .await
    .status()
    .as_u16()
}

/// A name no earlier run has used: the counters live in Redis across runs.
fn fresh(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
#[ignore = "needs TEST_REDIS_URL (Redis): run with -- --include-ignored"]
async fn two_replicas_on_one_redis_share_the_login_budget() {
    let url = test_redis_url();
    let (a, b) = (replica(&url).await, replica(&url).await);
    let username = fresh("nobody");
    assert_eq!(login_status(&a, &username).await, 400);
    assert_eq!(login_status(&a, &username).await, 400);
    assert_eq!(login_status(&b, &username).await, 400, "the third failure");
    // Locked at both replicas: two failures at one and one at the other made three.
    assert_eq!(login_status(&b, &username).await, 429);
    assert_eq!(login_status(&a, &username).await, 429);
}

#[tokio::test]
#[ignore = "needs TEST_REDIS_URL (Redis): run with -- --include-ignored"]
async fn two_replicas_on_one_redis_share_the_client_authentication_budget() {
    let url = test_redis_url();
    let (a, b) = (replica(&url).await, replica(&url).await);
    let client_id = fresh("ghost");
    assert_eq!(client_status(&a, &client_id).await, 401);
    assert_eq!(client_status(&b, &client_id).await, 401);
    assert_eq!(
        client_status(&a, &client_id).await,
        401,
        "the third failure"
    );
    let before = (
        a.state.passwords.verifications(),
        b.state.passwords.verifications(),
    );
    assert_eq!(client_status(&b, &client_id).await, 429);
    assert_eq!(client_status(&a, &client_id).await, 429);
    assert_eq!(
        (
            a.state.passwords.verifications(),
            b.state.passwords.verifications()
        ),
        before,
        "refused without Argon2 at both"
    );
}

/// Redis stops answering (behind a proxy that refuses): the throttle counts in the replica's
/// memory, with a warning, and still locks; it is not switched off, and logins are not all
/// refused either.
#[tokio::test]
#[ignore = "needs TEST_REDIS_URL (Redis): run with -- --include-ignored"]
async fn without_redis_the_throttle_counts_in_memory() {
    let logs = ProcessLogs::install("info");
    let url = test_redis_url();
    let upstream: SocketAddr = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .expect("host:port")
        .parse()
        .expect("TEST_REDIS_URL is redis://IP:PORT");
    let proxy = TcpProxy::start(vec![upstream]).await;
    let auth = replica(&proxy.url("redis", "")).await;
    let username = fresh("nobody");
    assert_eq!(
        login_status(&auth, &username).await,
        400,
        "counted in Redis"
    );

    proxy.refuse();
    assert_eq!(login_status(&auth, &username).await, 400);
    assert_eq!(login_status(&auth, &username).await, 400);
    assert_eq!(login_status(&auth, &username).await, 400);
    assert_eq!(
        login_status(&auth, &username).await,
        429,
        "three failures counted in memory lock"
    );
    let client_id = fresh("ghost");
    for _ in 0..3 {
        assert_eq!(client_status(&auth, &client_id).await, 401);
    }
    assert_eq!(client_status(&auth, &client_id).await, 429);
    assert!(
        logs.text().contains("Redis does not answer the throttles"),
        "the fallback is logged"
    );
    assert!(
        auth.metrics().await.contains("auth_throttle_fallback 1"),
        "and shown"
    );
}
