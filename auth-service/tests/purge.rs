//! The purge of expired rows (`sessions::purge`): families (a session's row and its refresh
//! tokens) go once the session's absolute end is `AUTH_PURGE_GRACE` behind, revocation events
//! once they expire; nothing that can still matter goes (a rotated refresh token stays
//! recognisable as a reuse until it expires, the session ended or not); every statement deletes
//! at most one batch. On SQLite, and on PostgreSQL with `TEST_DATABASE_URL`.
//!
//! The purge takes the time as a parameter, so these tests purge "later" instead of waiting.

use std::sync::Arc;
use std::time::Duration;

use auth_service::config::PurgeConfig;
use auth_service::sessions::purge::{Purged, Purger};
use auth_service::sessions::refresh_tokens::{self, RotateError};
use auth_service::sessions::revocation::Target;
use auth_service::sessions::{EndReason, NewSession, create_family, new_session};
use testkit::PgDatabase;
use testkit::auth::{TestAuth, sid_of, spawn_auth_with, test_config};
use testkit::eventually;
use testkit::logs::CapturedLogs;

const PASSWORD: &str = "correct horse battery";

/// An issuer whose own purge never runs (the tests run it), on SQLite or on `database_url`.
async fn spawn(database_url: Option<&str>) -> TestAuth {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let mut config = test_config(dir.path());
    config.purge.interval = Duration::ZERO;
    if let Some(url) = database_url {
        config.database_url = url.to_owned();
    }
    spawn_auth_with(config, dir).await
}

fn purger(auth: &TestAuth, batch: u32, grace_secs: i64) -> Purger {
    Purger::new(
        auth.state.pool.clone(),
        auth.state.revocations.clone(),
        PurgeConfig {
            interval: Duration::ZERO,
            batch,
            grace: Duration::from_secs(grace_secs.try_into().expect("a positive grace")),
            pause: Duration::ZERO,
        },
    )
}

/// Writes `n` families of `user_id` begun at `now`, ending `lifetime_secs` later, as a login
/// does; returns each family's (session id, first refresh token).
async fn families(
    auth: &TestAuth,
    user_id: &str,
    n: usize,
    lifetime_secs: i64,
    now: i64,
) -> Vec<(String, String)> {
    let mut made = Vec::with_capacity(n);
    for _ in 0..n {
        let session = new_session(
            NewSession {
                user_id: user_id.to_owned(),
                lifetime_secs,
                ..NewSession::default()
            },
            now,
        );
        let token = create_family(&auth.state.pool, &session, now)
            .await
            .expect("family written");
        made.push((session.id, token));
    }
    made
}

async fn session_ids(auth: &TestAuth) -> Vec<String> {
    sqlx::query_scalar("SELECT id FROM sessions ORDER BY id")
        .fetch_all(&auth.state.pool)
        .await
        .expect("query")
}

async fn count(auth: &TestAuth, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(&auth.state.pool)
        .await
        .expect("count")
}

/// The retention rules, on whichever database `auth` runs.
async fn purges_what_expired_and_keeps_what_matters(auth: &TestAuth) {
    let user = auth
        .create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let now = authn::unix_now();
    let grace = 60;
    // A: rotated once, then logged out; B: untouched; both end at now + 100. C ends later.
    let mut short = families(auth, &user.id, 2, 100, now).await;
    let (b_sid, _) = short.pop().expect("B");
    let (a_sid, a_first) = short.pop().expect("A");
    let rotation = refresh_tokens::begin_rotation(&auth.state.pool, &a_first, now)
        .await
        .expect("rotation");
    rotation.commit().await.expect("rotated");
    assert!(
        auth.state
            .sessions
            .end(&a_sid, EndReason::Logout)
            .await
            .expect("ended")
    );
    let (c_sid, _) = families(auth, &user.id, 1, 1_000, now)
        .await
        .pop()
        .expect("C");
    // An event that expired long ago (its session's tokens are long gone too), and A's logout
    // event, which expires after the access-token lifetime.
    let old = Target::UserDisabled {
        user_id: "someone".into(),
    };
    auth.state
        .revocations
        .append(&old, now - 10_000)
        .await
        .expect("appended");
    assert_eq!(count(auth, "revocation_events").await, 2);
    assert_eq!(count(auth, "refresh_tokens").await, 4);

    let purge = purger(auth, 1_000, grace);
    let purged = purge.run(now, None).await.expect("purge");
    assert_eq!(
        (
            purged.refresh_tokens,
            purged.sessions,
            purged.revocation_events
        ),
        (0, 0, 1),
        "only the old event has expired"
    );
    assert_eq!(count(auth, "revocation_events").await, 1);

    // A ended, but its rotated token has not expired: presenting it is still a reuse.
    let reused = refresh_tokens::begin_rotation(&auth.state.pool, &a_first, now + 99).await;
    assert!(
        matches!(reused, Err(RotateError::Reused { ref session_id }) if *session_id == a_sid),
        "{reused:?}"
    );

    // At the end of A and B, and until the grace has passed, both families stay (and A's logout
    // event, kept for the access-token lifetime and a margin, 360 s).
    let purged = purge.run(now + 100 + grace - 1, None).await.expect("purge");
    assert_eq!(
        purged,
        Purged {
            batches: 3,
            ..Purged::default()
        }
    );
    assert_eq!(session_ids(auth).await.len(), 3);
    assert_eq!(count(auth, "refresh_tokens").await, 4);

    // Then they go, tokens and rows; C stays.
    let purged = purge.run(now + 100 + grace, None).await.expect("purge");
    assert_eq!(
        (
            purged.refresh_tokens,
            purged.sessions,
            purged.revocation_events
        ),
        (3, 2, 0),
        "A's two tokens and B's one, then both rows"
    );
    assert_eq!(session_ids(auth).await, std::slice::from_ref(&c_sid));
    let left: Vec<String> = sqlx::query_scalar("SELECT session_id FROM refresh_tokens")
        .fetch_all(&auth.state.pool)
        .await
        .expect("query");
    assert_eq!(left, std::slice::from_ref(&c_sid));
    assert!(!session_ids(auth).await.contains(&b_sid));

    // Purging again finds nothing: a purge is idempotent.
    let purged = purge.run(now + 100 + grace, None).await.expect("purge");
    assert_eq!(purged.total(), 0);
    assert_eq!(purged.batches, 3, "one short batch per table");

    // C goes at its own end, and A's logout event has expired by then.
    let purged = purge.run(now + 1_000 + grace, None).await.expect("purge");
    assert_eq!(
        (
            purged.refresh_tokens,
            purged.sessions,
            purged.revocation_events
        ),
        (1, 1, 1)
    );
    assert_eq!(count(auth, "sessions").await, 0);
    assert_eq!(count(auth, "revocation_events").await, 0);
}

#[tokio::test]
async fn expired_families_and_events_are_purged_and_what_matters_stays() {
    let auth = spawn(None).await;
    purges_what_expired_and_keeps_what_matters(&auth).await;
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL (PostgreSQL): run with -- --include-ignored"]
async fn expired_families_and_events_are_purged_and_what_matters_stays_on_postgres() {
    let db = PgDatabase::create("auth_test").await;
    let auth = spawn(Some(&db.url)).await;
    purges_what_expired_and_keeps_what_matters(&auth).await;
    auth.stop().await;
    db.drop().await;
}

/// Rows deleted by the whole process so far, per table.
fn purged_rows(table: &str) -> f64 {
    let series = format!("auth_purged_rows_total{{table=\"{table}\"}} ");
    platform::telemetry::prometheus()
        .render()
        .lines()
        .find_map(|line| {
            line.strip_prefix(&series)
                .map(|v| v.trim().parse().expect("a number"))
        })
        .unwrap_or(0.0)
}

async fn deletes_in_bounded_batches(auth: &TestAuth) {
    let user = auth
        .create_user("bob", PASSWORD, "user", "orders:read")
        .await;
    let now = authn::unix_now();
    families(auth, &user.id, 25, 10, now).await;
    let later = now + 10 + 60;
    let purge = purger(auth, 10, 60);
    let before = (purged_rows("refresh_tokens"), purged_rows("sessions"));

    // Told to stop, a run ends after one batch of each table: no statement deletes more.
    let (_stop_tx, stop) = tokio::sync::watch::channel(true);
    let purged = purge.run(later, Some(&stop)).await.expect("purge");
    assert_eq!(
        purged,
        Purged {
            refresh_tokens: 10,
            sessions: 10,
            revocation_events: 0,
            batches: 3
        }
    );
    assert_eq!(count(auth, "refresh_tokens").await, 15);

    // Otherwise batch after batch until a short one: 10 + 5 of each, then no event.
    let purged = purge.run(later, None).await.expect("purge");
    assert_eq!(
        purged,
        Purged {
            refresh_tokens: 15,
            sessions: 15,
            revocation_events: 0,
            batches: 5
        }
    );
    assert_eq!(count(auth, "sessions").await, 0);

    // Counted per table (the recorder is the process's: other tests may add to it meanwhile).
    assert!(purged_rows("refresh_tokens") >= before.0 + 25.0);
    assert!(purged_rows("sessions") >= before.1 + 25.0);
    let metrics = platform::telemetry::prometheus().render();
    for gauge in [
        "auth_purge_last_run_timestamp_seconds ",
        "auth_purge_last_run_duration_seconds ",
    ] {
        assert!(metrics.contains(gauge), "{gauge} in {metrics}");
    }
}

#[tokio::test]
async fn deletes_in_bounded_batches_and_counts_them() {
    let auth = spawn(None).await;
    deletes_in_bounded_batches(&auth).await;
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL (PostgreSQL): run with -- --include-ignored"]
async fn deletes_in_bounded_batches_and_counts_them_on_postgres() {
    let db = PgDatabase::create("auth_test").await;
    let auth = spawn(Some(&db.url)).await;
    deletes_in_bounded_batches(&auth).await;
    auth.stop().await;
    db.drop().await;
}

/// The running service purges on its own, every `AUTH_PURGE_INTERVAL`, and says so.
#[tokio::test]
async fn the_service_purges_on_its_interval_and_logs_each_run() {
    let logs = CapturedLogs::default();
    let _guard = logs.install();
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let mut config = test_config(dir.path());
    // Sessions of a second, purged as soon as they end.
    config.refresh_token_ttl = Duration::from_secs(1);
    config.purge.interval = Duration::from_millis(100);
    config.purge.grace = Duration::ZERO;
    let auth = spawn_auth_with(config, dir).await;
    auth.create_user("carol", PASSWORD, "user", "orders:read")
        .await;
    let login = auth.login("carol", PASSWORD).await;
    let sid = sid_of(&login.access_token);
    assert!(session_ids(&auth).await.contains(&sid));

    // The run logs once it is done with every table.
    let purged_run = || {
        logs.with_message("purged expired rows")
            .into_iter()
            .find(|line| line["fields"]["sessions"] == 1)
    };
    eventually(
        "a run purged the ended session's family and said so",
        Duration::from_secs(10),
        || async { purged_run().is_some() },
    )
    .await;
    assert!(!session_ids(&auth).await.contains(&sid));
    assert_eq!(count(&auth, "refresh_tokens").await, 0);
    let line = purged_run().expect("the line");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["fields"]["refresh_tokens"], 1);
}
