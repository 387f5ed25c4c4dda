//! Several issuer replicas on one database: a revocation made at one replica reaches the
//! `WatchRevocations` streams of the others, through Redis at once, or by polling the table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_service::config::RevocationConfig;
use testkit::PgDatabase;
use testkit::auth::{TestAuth, sid_of, spawn_auth_with, test_config};
use testkit::test_redis_url;

const PASSWORD: &str = "correct horse battery";

async fn logout(auth: &TestAuth, access_token: &str) {
    let response = auth
        .http
        .post(auth.url("/v1/logout"))
        .bearer_auth(access_token)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 204);
}

/// Logs in at `b`, watches at `a`, logs out at `b`: the event reaches `a`'s stream within
/// `deadline`, and both replicas agree the session is over.
async fn a_logout_at_b_reaches_watchers_of_a(a: &TestAuth, b: &TestAuth, deadline: Duration) {
    b.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let verifier = a.verifier_token().await;
    let login = b.login("alice", PASSWORD).await;
    let sid = sid_of(&login.access_token);
    assert!(
        a.session_is_active(&verifier, &sid).await,
        "a sees b's session"
    );

    let mut watcher = a.watch(&verifier, 0).await;
    let (_, head) = watcher.until_heartbeat().await;
    let started = Instant::now();
    logout(b, &login.access_token).await;
    let event = tokio::time::timeout(deadline, watcher.next_event())
        .await
        .expect("the revocation reaches the other replica in time");
    let elapsed = started.elapsed();
    eprintln!("revocation at one replica seen at the other after {elapsed:?}");
    assert_eq!(event.sequence, head + 1);
    match event.target {
        Some(proto::auth::v1::revocation_event::Target::SessionsEnded(ended)) => {
            assert_eq!(ended.session_ids, [sid.as_str()]);
        }
        other => panic!("unexpected event {other:?}"),
    }
    assert!(!a.session_is_active(&verifier, &sid).await);
    assert!(!b.session_is_active(&verifier, &sid).await);
}

/// Without Redis (SQLite shared by two processes, or the CLI next to a server), the table poll
/// carries the event.
#[tokio::test]
async fn without_redis_the_poll_carries_events_between_replicas() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let config = auth_service::Config {
        revocation: RevocationConfig {
            heartbeat: Duration::from_millis(100),
            poll_interval: Duration::from_millis(100),
            ..RevocationConfig::default()
        },
        ..test_config(dir.path())
    };
    let a = spawn_auth_with(config.clone(), Arc::clone(&dir)).await;
    let b = spawn_auth_with(config, dir).await;
    a_logout_at_b_reaches_watchers_of_a(&a, &b, Duration::from_secs(5)).await;
}

/// PostgreSQL and Redis shared by two replicas (`TEST_DATABASE_URL` and `TEST_REDIS_URL`). The
/// poll is slowed to a minute, so only the Redis notification can deliver within the deadline.
#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL and TEST_REDIS_URL: run with -- --include-ignored"]
async fn with_postgres_and_redis_a_logout_at_one_replica_is_pushed_by_the_other() {
    let redis_url = test_redis_url();
    let db = PgDatabase::create("auth_test").await;
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let config = auth_service::Config {
        database_url: db.url.clone(),
        redis_url: Some(redis_url),
        revocation: RevocationConfig {
            heartbeat: Duration::from_millis(100),
            poll_interval: Duration::from_secs(60),
            ..RevocationConfig::default()
        },
        ..test_config(dir.path())
    };
    let a = spawn_auth_with(config.clone(), Arc::clone(&dir)).await;
    let b = spawn_auth_with(config, dir).await;
    a_logout_at_b_reaches_watchers_of_a(&a, &b, Duration::from_secs(1)).await;

    // Sessions live in Redis: a session made at one replica is listed and ended at the other.
    let login = a.login("alice", PASSWORD).await;
    let listed: Vec<serde_json::Value> = b
        .http
        .get(b.url("/v1/sessions"))
        .bearer_auth(&login.access_token)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], sid_of(&login.access_token).as_str());
    a.stop().await;
    b.stop().await;
    db.drop().await;
}
