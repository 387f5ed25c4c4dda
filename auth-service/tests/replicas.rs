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

/// A `hybrid` verifier's feed on replica `a`, with `a` fresh; `a`'s heartbeats every 100 ms.
async fn fresh_feed_on(a: &TestAuth) -> authn::revocation::RevocationFeed {
    use authn::revocation::{FeedConfig, RevocationFeed};
    use authn::service_token::ServiceToken;

    let secret = a.create_client("gateway", "sessions:check", "").await;
    let token = ServiceToken::new(
        a.url("/oauth/token"),
        "gateway",
        secret.into(),
        Duration::from_secs(5),
    )
    .expect("service token");
    let feed = RevocationFeed::start(FeedConfig {
        grpc_url: a.grpc_url.clone(),
        token: Arc::new(token),
        max_staleness: Duration::from_millis(500),
        fallback: None,
        jwks: None,
    })
    .expect("feed starts");
    testkit::eventually("the feed is fresh", Duration::from_secs(10), || async {
        feed.is_fresh()
    })
    .await;
    feed
}

/// While `b` goes on writing events, the verifier connected to `a` (which cannot read them)
/// must not be fresh: within a few heartbeats it is stale, and stays so.
async fn a_verifier_of_a_replica_blind_to_the_log_goes_stale(
    feed: &authn::revocation::RevocationFeed,
    b: &TestAuth,
) {
    let target = auth_service::sessions::revocation::Target::UserDisabled {
        user_id: "someone".into(),
    };
    let writes = async {
        for _ in 0..30 {
            b.state
                .revocations
                .append(&target, authn::unix_now())
                .await
                .expect("b appends");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let watch = async {
        testkit::eventually(
            "the feed of the blind replica goes stale",
            Duration::from_secs(3),
            || async { !feed.is_fresh() },
        )
        .await;
        let stale_since = Instant::now();
        while stale_since.elapsed() < Duration::from_secs(2) {
            assert!(
                !feed.is_fresh(),
                "fresh again from a blind replica: {feed:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::join!(writes, watch);
}

/// One replica loses its database (its pool closed) while another keeps writing to the same
/// SQLite file: the first must stop vouching for its streams.
#[tokio::test]
async fn a_replica_that_cannot_read_the_log_stops_heartbeating() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let config = auth_service::Config {
        revocation: RevocationConfig {
            heartbeat: Duration::from_millis(100),
            poll_interval: Duration::from_millis(100),
        },
        ..test_config(dir.path())
    };
    let a = spawn_auth_with(config.clone(), Arc::clone(&dir)).await;
    let b = spawn_auth_with(config, dir).await;
    let feed = fresh_feed_on(&a).await;

    a.state.pool.close().await;
    a_verifier_of_a_replica_blind_to_the_log_goes_stale(&feed, &b).await;
}

/// The same on PostgreSQL, the first replica's connections going through a proxy that is then
/// cut and refuses new ones (a lost network path to the database).
#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL: run with -- --include-ignored"]
async fn with_postgres_a_replica_cut_from_the_database_stops_heartbeating() {
    let db = PgDatabase::create("auth_test").await;
    let upstream = {
        let url = reqwest::Url::parse(&db.url).expect("TEST_DATABASE_URL is a URL");
        let host = url.host_str().expect("a host").to_owned();
        let port = url.port().unwrap_or(5432);
        tokio::net::lookup_host((host, port))
            .await
            .expect("resolves")
            .next()
            .expect("an address")
    };
    let proxy = testkit::TcpProxy::start(vec![upstream]).await;
    let proxied_url = {
        let mut url = reqwest::Url::parse(&db.url).expect("URL");
        url.set_host(Some("127.0.0.1")).expect("host");
        url.set_port(Some(proxy.addr().port())).expect("port");
        url.to_string()
    };
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let config = auth_service::Config {
        database_url: db.url.clone(),
        revocation: RevocationConfig {
            heartbeat: Duration::from_millis(100),
            poll_interval: Duration::from_millis(100),
        },
        ..test_config(dir.path())
    };
    let a = spawn_auth_with(
        auth_service::Config {
            database_url: proxied_url,
            ..config.clone()
        },
        Arc::clone(&dir),
    )
    .await;
    let b = spawn_auth_with(config, dir).await;
    let feed = fresh_feed_on(&a).await;

    proxy.refuse();
    a_verifier_of_a_replica_blind_to_the_log_goes_stale(&feed, &b).await;

    drop(feed);
    a.stop().await;
    b.stop().await;
    db.drop().await;
}
