//! The `SessionStore` contract, one test body run against every backend: SQL on SQLite (always),
//! SQL on PostgreSQL (`TEST_DATABASE_URL`), and Redis (`TEST_REDIS_URL`, with SQLite for the
//! revocation log). Without those variables the corresponding runs are skipped with a note.

use std::time::Duration;

use auth_service::sessions::revocation::{Event, RedisFanout, RevocationLog, Target};
use auth_service::sessions::{
    self, EndReason, NewSession, RedisStore, Session, SessionStore, SqlStore,
};
use redis::AsyncCommands as _;
use sqlx::AnyPool;
use tempfile::TempDir;
use testkit::PgDatabase;
use testkit::auth::own_redis_database;
use testkit::eventually;
use testkit::test_redis_url;

const ACCESS_TTL: Duration = Duration::from_secs(300);

/// A migrated database: SQLite in a temporary directory, or a PostgreSQL test database.
struct Db {
    pool: AnyPool,
    _dir: Option<TempDir>,
    pg: Option<PgDatabase>,
}

impl Db {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = testkit::auth::database_url(dir.path());
        let pool = auth_service::db::connect_and_migrate(&url, 5)
            .await
            .expect("database");
        Self {
            pool,
            _dir: Some(dir),
            pg: None,
        }
    }

    async fn postgres() -> Self {
        let pg = PgDatabase::create("auth_test").await;
        let pool = auth_service::db::connect_and_migrate(&pg.url, 10)
            .await
            .expect("database");
        Self {
            pool,
            _dir: None,
            pg: Some(pg),
        }
    }

    async fn close(self) {
        self.pool.close().await;
        if let Some(pg) = self.pg {
            pg.drop().await;
        }
    }

    /// A user row (sessions reference users in SQL), with a fresh random id.
    async fn user(&self) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, roles, scopes, disabled_at, \
             created_at) VALUES ($1, $2, 'x', 'user', '', NULL, 0)",
        )
        .bind(&id)
        .bind(format!("u-{}", uuid::Uuid::new_v4().simple()))
        .execute(&self.pool)
        .await
        .expect("user inserted");
        id
    }
}

fn session_of(user_id: &str, lifetime_secs: i64) -> Session {
    sessions::new_session(
        NewSession {
            user_id: user_id.to_owned(),
            client_id: Some("web".into()),
            scope: None,
            user_agent: Some("test-agent/1.0".into()),
            ip: Some("203.0.113.9".into()),
            lifetime_secs,
        },
        authn::unix_now(),
    )
}

async fn events_since(log: &RevocationLog, after: u64) -> Vec<Event> {
    log.read_after(after, 1_000).await.expect("events")
}

fn ended(event: &Event) -> (Vec<String>, String, EndReason) {
    match &event.target {
        Target::SessionsEnded {
            session_ids,
            user_id,
            reason,
        } => (session_ids.clone(), user_id.clone(), *reason),
        other => panic!("expected SessionsEnded, got {other:?}"),
    }
}

/// The contract every backend meets.
async fn store_contract(store: &dyn SessionStore, log: &RevocationLog, db: &Db) {
    let alice = db.user().await;
    let bob = db.user().await;

    // Create, read, list.
    let first = session_of(&alice, 3_600);
    store.create(&first).await.expect("created");
    store
        .create(&first)
        .await
        .expect("creating twice is harmless");
    assert!(store.is_active(&first.id).await.expect("checked"));
    let read = store.get(&first.id).await.expect("read").expect("active");
    assert_eq!(read, first);
    let mut second = session_of(&alice, 7_200);
    // Later than the first even if both began in the same millisecond.
    second.created_at_ms = first.created_at_ms + 1;
    store.create(&second).await.expect("created");
    let bobs = session_of(&bob, 3_600);
    store.create(&bobs).await.expect("created");
    let listed = store.list_active_for_user(&alice).await.expect("listed");
    assert_eq!(
        listed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        [first.id.as_str(), second.id.as_str()],
        "oldest first, only alice's"
    );

    // Unknown sessions are simply inactive.
    assert!(!store.is_active("no-such-session").await.expect("checked"));
    assert_eq!(store.get("no-such-session").await.expect("read"), None);
    assert!(
        store
            .list_active_for_user("no-such-user")
            .await
            .expect("listed")
            .is_empty()
    );

    // Touch moves last_seen_at of active sessions only.
    let later = first.last_seen_at + 42;
    store.touch(&first.id, later).await.expect("touched");
    assert_eq!(
        store
            .get(&first.id)
            .await
            .expect("read")
            .expect("active")
            .last_seen_at,
        later
    );
    store
        .touch("no-such-session", later)
        .await
        .expect("touching nothing is fine");

    // End one: an event with its id, user and reason; idempotent.
    let head = log.head().await.expect("head");
    assert!(
        store
            .end(&first.id, EndReason::Logout)
            .await
            .expect("ended")
    );
    assert!(
        !store
            .end(&first.id, EndReason::Logout)
            .await
            .expect("again")
    );
    assert!(
        !store
            .end("no-such-session", EndReason::Revoked)
            .await
            .expect("unknown")
    );
    assert!(!store.is_active(&first.id).await.expect("checked"));
    assert_eq!(store.get(&first.id).await.expect("read"), None);
    store.touch(&first.id, later + 1).await.expect("touch");
    assert!(
        !store
            .is_active(&first.id)
            .await
            .expect("touch does not revive")
    );
    let events = events_since(log, head).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].sequence, head + 1);
    assert_eq!(
        ended(&events[0]),
        (vec![first.id.clone()], alice.clone(), EndReason::Logout)
    );
    assert_eq!(
        events[0].expires_at - events[0].occurred_at,
        300 + auth_service::sessions::revocation::RETENTION_MARGIN_SECS
    );

    // End all of a user's: one event listing every session ended, nobody else's.
    let third = session_of(&alice, 3_600);
    store.create(&third).await.expect("created");
    let head = log.head().await.expect("head");
    let mut expected = vec![second.id.clone(), third.id.clone()];
    expected.sort();
    assert_eq!(
        store
            .end_all_for_user(&alice, EndReason::LogoutAll)
            .await
            .expect("ended"),
        expected
    );
    assert!(
        store
            .end_all_for_user(&alice, EndReason::LogoutAll)
            .await
            .expect("again")
            .is_empty()
    );
    assert!(
        store
            .list_active_for_user(&alice)
            .await
            .expect("listed")
            .is_empty()
    );
    assert!(store.is_active(&bobs.id).await.expect("checked"));
    let events = events_since(log, head).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        ended(&events[0]),
        (expected, alice.clone(), EndReason::LogoutAll)
    );

    // A session past its end is inactive everywhere, and ending it is no event.
    let mut expired = session_of(&alice, 3_600);
    expired.expires_at = authn::unix_now() - 1;
    store.create(&expired).await.expect("created");
    assert!(!store.is_active(&expired.id).await.expect("checked"));
    assert_eq!(store.get(&expired.id).await.expect("read"), None);
    assert!(
        store
            .list_active_for_user(&alice)
            .await
            .expect("listed")
            .is_empty()
    );
    let head = log.head().await.expect("head");
    assert!(
        !store
            .end(&expired.id, EndReason::Logout)
            .await
            .expect("end")
    );
    assert_eq!(log.head().await.expect("head"), head);

    // The session cap ends the oldest, never the one just created.
    let carol = db.user().await;
    let mut created = Vec::new();
    for i in 0..4 {
        let mut session = session_of(&carol, 3_600);
        // Distinct creation instants, so "oldest" is well defined.
        session.created_at_ms = session.created_at * 1_000 + i;
        store.create(&session).await.expect("created");
        created.push(session.id);
    }
    let newest = created[3].clone();
    let capped = sessions::enforce_cap(store, &carol, 2, &newest)
        .await
        .expect("capped");
    assert_eq!(capped, created[..2]);
    let left: Vec<String> = store
        .list_active_for_user(&carol)
        .await
        .expect("listed")
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(left, created[2..]);
    assert!(
        sessions::enforce_cap(store, &carol, 0, &newest)
            .await
            .expect("unlimited")
            .is_empty()
    );

    // A change of the user's roles or scopes: the store reports its time (for `CheckSession`),
    // once, with the event in the log; the same values again change nothing.
    let dave = db.user().await;
    assert_eq!(store.user_changed_at(&dave).await.expect("read"), None);
    let head = log.head().await.expect("head");
    let change = |scopes: &str| auth_service::accounts::GrantChange {
        roles: None,
        scopes: Some(auth_service::scope::ScopeSet::parse(scopes).expect("scopes")),
    };
    let changed =
        auth_service::accounts::change_user(&db.pool, store, log, &dave, change("orders:read"))
            .await
            .expect("changed")
            .expect("the user exists");
    let at = changed.claims_changed_at.expect("the time of the change");
    assert_eq!(store.user_changed_at(&dave).await.expect("read"), Some(at));
    let events = events_since(log, head).await;
    assert_eq!(
        events
            .iter()
            .map(|e| (&e.target, e.occurred_at))
            .collect::<Vec<_>>(),
        [(
            &Target::UserChanged {
                user_id: dave.clone()
            },
            at
        )]
    );
    auth_service::accounts::change_user(&db.pool, store, log, &dave, change("orders:read"))
        .await
        .expect("unchanged")
        .expect("the user exists");
    assert_eq!(log.head().await.expect("head"), head + 1, "no second event");
    assert!(
        auth_service::accounts::change_user(&db.pool, store, log, "nobody", change(""))
            .await
            .expect("looked up")
            .is_none()
    );

    store.ping().await.expect("the store answers");
}

#[tokio::test]
async fn sql_store_on_sqlite() {
    let db = Db::sqlite().await;
    let log = RevocationLog::new(db.pool.clone(), ACCESS_TTL, None)
        .await
        .expect("log");
    let store = SqlStore::new(db.pool.clone(), log.clone());
    store_contract(&store, &log, &db).await;
    db.close().await;
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL (PostgreSQL): run with -- --include-ignored"]
async fn sql_store_on_postgres() {
    let db = Db::postgres().await;
    let log = RevocationLog::new(db.pool.clone(), ACCESS_TTL, None)
        .await
        .expect("log");
    let store = SqlStore::new(db.pool.clone(), log.clone());
    store_contract(&store, &log, &db).await;
    db.close().await;
}

async fn open_redis_store(
    url: &str,
    db: &Db,
) -> (RedisStore, RevocationLog, redis::aio::ConnectionManager) {
    let (client, manager) = sessions::redis::connect(url, None)
        .await
        .expect("Redis connects");
    let log = RevocationLog::new(
        db.pool.clone(),
        ACCESS_TTL,
        Some(RedisFanout {
            client,
            publisher: manager.clone(),
        }),
    )
    .await
    .expect("log");
    (RedisStore::new(manager.clone(), log.clone()), log, manager)
}

#[tokio::test]
#[ignore = "needs TEST_REDIS_URL (Redis): run with -- --include-ignored"]
async fn redis_store_on_redis() {
    let url = test_redis_url();
    let db = Db::sqlite().await;
    let (store, log, _) = open_redis_store(&url, &db).await;
    store_contract(&store, &log, &db).await;
    db.close().await;
}

/// The key layout `stateful` verifiers read: `auth:session:{sid}` while the session is active,
/// expiring with it; `auth:user-sessions:{user_id}` listing the user's sessions.
#[tokio::test]
#[ignore = "needs TEST_REDIS_URL (Redis): run with -- --include-ignored"]
async fn redis_layout_is_what_verifiers_expect() {
    let url = test_redis_url();
    let db = Db::sqlite().await;
    let (store, _log, mut redis) = open_redis_store(&url, &db).await;
    let user = uuid::Uuid::new_v4().to_string();
    let session = session_of(&user, 3_600);
    store.create(&session).await.expect("created");

    let key = authn::session::redis_session_key(&session.id);
    assert_eq!(key, format!("auth:session:{}", session.id));
    let record: String = redis.get(&key).await.expect("GET");
    let record: serde_json::Value = serde_json::from_str(&record).expect("JSON");
    assert_eq!(record["user_id"], user.as_str());
    assert_eq!(record["expires_at"], session.expires_at);
    let ttl: i64 = redis.ttl(&key).await.expect("TTL");
    assert!((3_590..=3_600).contains(&ttl), "TTL {ttl}");
    let set = sessions::redis::user_sessions_key(&user);
    assert_eq!(set, format!("auth:user-sessions:{user}"));
    let members: Vec<String> = redis.smembers(&set).await.expect("SMEMBERS");
    assert_eq!(members, [session.id.as_str()]);
    let set_ttl: i64 = redis.ttl(&set).await.expect("TTL");
    assert!((3_590..=3_600).contains(&set_ttl), "set TTL {set_ttl}");
    // A longer session stretches the set's life; a shorter one does not shorten it.
    let longer = session_of(&user, 7_200);
    store.create(&longer).await.expect("created");
    let shorter = session_of(&user, 60);
    store.create(&shorter).await.expect("created");
    let set_ttl: i64 = redis.ttl(&set).await.expect("TTL");
    assert!((7_190..=7_200).contains(&set_ttl), "set TTL {set_ttl}");

    store
        .end(&session.id, EndReason::Logout)
        .await
        .expect("ended");
    assert!(!redis.exists::<_, bool>(&key).await.expect("EXISTS"));
    let members: Vec<String> = redis.smembers(&set).await.expect("SMEMBERS");
    assert!(!members.contains(&session.id));
    store
        .end_all_for_user(&user, EndReason::LogoutAll)
        .await
        .expect("ended");
    assert!(!redis.exists::<_, bool>(&set).await.expect("EXISTS"));

    // The time of a user's last change, beside the sessions, for one token lifetime and a
    // margin; a verifier reads it with the session in one round trip.
    store
        .record_user_change(&user, 1_234)
        .await
        .expect("written");
    let changed = authn::session::redis_user_changed_key(&user);
    assert_eq!(changed, format!("auth:user-changed:{user}"));
    let at: i64 = redis.get(&changed).await.expect("GET");
    assert_eq!(at, 1_234);
    let changed_ttl: i64 = redis.ttl(&changed).await.expect("TTL");
    assert!((350..=360).contains(&changed_ttl), "TTL {changed_ttl}");
    let live = session_of(&user, 3_600);
    store.create(&live).await.expect("created");
    let lookup = authn::session::RedisSessionLookup::new(&url, None, Duration::from_secs(2))
        .expect("lookup");
    use authn::session::SessionLookup as _;
    assert_eq!(
        lookup.status(&live.id, &user).await.expect("looked up"),
        authn::session::SessionStatus {
            active: true,
            user_changed_at: Some(1_234),
        }
    );
    assert_eq!(
        lookup
            .status("no-such-session", "no-such-user")
            .await
            .expect("looked up"),
        authn::session::SessionStatus::default()
    );
    store
        .end_all_for_user(&user, EndReason::LogoutAll)
        .await
        .expect("ended");

    // A session ends by itself at its expiry, and leaves the user's listing.
    let brief = session_of(&user, 1);
    store.create(&brief).await.expect("created");
    assert!(store.is_active(&brief.id).await.expect("checked"));
    eventually(
        "the session expires in Redis",
        Duration::from_secs(5),
        || async {
            !redis
                .clone()
                .exists::<_, bool>(authn::session::redis_session_key(&brief.id))
                .await
                .expect("EXISTS")
        },
    )
    .await;
    assert!(
        store
            .list_active_for_user(&user)
            .await
            .expect("listed")
            .is_empty()
    );
    db.close().await;
}

/// Concurrent writers: every reader of the table sees sequences without gaps, in commit order,
/// whatever the interleaving (the counter row serializes writers until they commit).
async fn concurrent_appends_commit_in_sequence_order(db: &Db) {
    let log = RevocationLog::new(db.pool.clone(), ACCESS_TTL, None)
        .await
        .expect("log");
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    let target = Target::KeyRevoked {
                        kid: format!("{w}-{i}"),
                    };
                    log.append(&target, authn::unix_now())
                        .await
                        .expect("appended");
                }
            })
        })
        .collect();
    let reader = {
        let log = log.clone();
        tokio::spawn(async move {
            let mut last = 0;
            while last < 200 {
                for event in log.read_after(last, 1_000).await.expect("read") {
                    assert_eq!(event.sequence, last + 1, "a gap or a reordering");
                    last = event.sequence;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    for writer in writers {
        writer.await.expect("writer");
    }
    tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("the reader sees all 200")
        .expect("reader");
    assert_eq!(log.head().await.expect("head"), 200);
}

#[tokio::test]
async fn concurrent_appends_on_sqlite() {
    let db = Db::sqlite().await;
    concurrent_appends_commit_in_sequence_order(&db).await;
    db.close().await;
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL (PostgreSQL): run with -- --include-ignored"]
async fn concurrent_appends_on_postgres() {
    let db = Db::postgres().await;
    concurrent_appends_commit_in_sequence_order(&db).await;
    db.close().await;
}

/// A session of `user` from `client` that began `days_ago` UTC days before today's first second
/// plus an hour, and ends `ends_in` seconds from now (negative: ended by expiry already).
fn session_begun(user: &str, client: Option<&str>, days_ago: i64, ends_in: i64) -> Session {
    let now = authn::unix_now();
    let today = now - now.rem_euclid(86_400);
    let created_at = (today - days_ago * 86_400 + 3_600).min(now);
    let mut session = session_of(user, 0);
    session.client_id = client.map(str::to_owned);
    session.created_at = created_at;
    session.created_at_ms = created_at * 1_000;
    session.last_seen_at = created_at;
    session.expires_at = now + ends_in;
    session
}

fn day_counts(stats: &sessions::SessionStats) -> Vec<u64> {
    stats.by_day.iter().map(|d| d.started).collect()
}

fn client_counts(stats: &sessions::SessionStats) -> Vec<(Option<&str>, u64)> {
    stats
        .by_client
        .iter()
        .map(|c| (c.client_id.as_deref(), c.sessions))
        .collect()
}

/// The counts every backend gives, store-wide: only active sessions, distinct users, by client,
/// by the UTC day each began (the last 7, oldest first) and the rest as earlier; logouts,
/// logout-all and expiry take sessions out.
async fn stats_contract(store: &dyn SessionStore, db: &Db) {
    let empty = store.stats(authn::unix_now()).await.expect("stats");
    assert_eq!((empty.active_sessions, empty.active_users), (0, 0));
    assert_eq!(day_counts(&empty), [0; 7]);
    assert!(empty.by_client.is_empty());

    let alice = db.user().await;
    let bob = db.user().await;
    let carol = db.user().await;
    let today = session_begun(&alice, Some("web"), 0, 3_600);
    let alices_old = session_begun(&alice, Some("web"), 6, 3_600);
    let alices_older = session_begun(&alice, None, 10, 3_600);
    let bobs = session_begun(&bob, Some("cli"), 2, 3_600);
    let bobs_second = session_begun(&bob, Some("web"), 0, 3_600);
    let carols_expired = session_begun(&carol, Some("web"), 1, -10);
    for session in [
        &today,
        &alices_old,
        &alices_older,
        &bobs,
        &bobs_second,
        &carols_expired,
    ] {
        store.create(session).await.expect("created");
    }

    let now = authn::unix_now();
    let stats = store.stats(now).await.expect("stats");
    assert_eq!(stats.at, now);
    assert_eq!(stats.active_sessions, 5, "carol's has expired");
    assert_eq!(stats.active_users, 2);
    assert_eq!(
        client_counts(&stats),
        [(Some("cli"), 1), (Some("web"), 3), (None, 1)]
    );
    assert_eq!(day_counts(&stats), [1, 0, 0, 0, 1, 0, 2]);
    assert_eq!(stats.started_earlier, 1, "alice's session of ten days ago");
    let today_name = sessions::stats::day_name(sessions::stats::day_of(now));
    assert_eq!(stats.by_day[6].day, today_name);

    // A logout takes one session out; the user stays while another of hers is active.
    assert!(
        store
            .end(&today.id, EndReason::Logout)
            .await
            .expect("ended")
    );
    let stats = store.stats(authn::unix_now()).await.expect("stats");
    assert_eq!((stats.active_sessions, stats.active_users), (4, 2));
    assert_eq!(day_counts(&stats), [1, 0, 0, 0, 1, 0, 1]);
    // Logout-all takes the user out.
    store
        .end_all_for_user(&bob, EndReason::LogoutAll)
        .await
        .expect("ended");
    let stats = store.stats(authn::unix_now()).await.expect("stats");
    assert_eq!((stats.active_sessions, stats.active_users), (2, 1));
    assert_eq!(client_counts(&stats), [(Some("web"), 1), (None, 1)]);
    assert_eq!(day_counts(&stats), [1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(stats.started_earlier, 1);
    // Ending the last one by its id leaves nothing.
    store
        .end(&alices_old.id, EndReason::Deleted)
        .await
        .expect("ended");
    store
        .end(&alices_older.id, EndReason::Deleted)
        .await
        .expect("ended");
    let stats = store.stats(authn::unix_now()).await.expect("stats");
    assert_eq!((stats.active_sessions, stats.active_users), (0, 0));
    assert!(stats.by_client.is_empty());
    assert_eq!(stats.started_earlier, 0);
}

#[tokio::test]
async fn stats_of_the_sql_store_on_sqlite() {
    let db = Db::sqlite().await;
    let log = RevocationLog::new(db.pool.clone(), ACCESS_TTL, None)
        .await
        .expect("log");
    stats_contract(&SqlStore::new(db.pool.clone(), log), &db).await;
    db.close().await;
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL (PostgreSQL): run with -- --include-ignored"]
async fn stats_of_the_sql_store_on_postgres() {
    let db = Db::postgres().await;
    let log = RevocationLog::new(db.pool.clone(), ACCESS_TTL, None)
        .await
        .expect("log");
    stats_contract(&SqlStore::new(db.pool.clone(), log), &db).await;
    db.close().await;
}

#[tokio::test]
#[ignore = "needs TEST_REDIS_URL (Redis): run with -- --include-ignored"]
async fn stats_of_the_redis_store_on_redis() {
    let url = own_redis_database(13).await;
    let db = Db::sqlite().await;
    let (store, _log, _) = open_redis_store(&url, &db).await;
    stats_contract(&store, &db).await;
    db.close().await;
}

/// Sessions written before the Redis index existed (by an earlier release: no `auth:stats:*`
/// keys) are counted once the first snapshot has indexed them.
#[tokio::test]
#[ignore = "needs TEST_REDIS_URL (Redis): run with -- --include-ignored"]
async fn redis_stats_index_the_sessions_of_an_earlier_release() {
    let url = own_redis_database(12).await;
    let db = Db::sqlite().await;
    let (store, _log, mut redis) = open_redis_store(&url, &db).await;
    let user = db.user().await;
    let sessions: Vec<Session> = (0..3).map(|_| session_of(&user, 3_600)).collect();
    for session in &sessions {
        store.create(session).await.expect("created");
    }
    // What an earlier release leaves: the sessions, no index.
    let stats_keys: Vec<String> = redis.keys("auth:stats:*").await.expect("KEYS");
    let _: () = redis.del(&stats_keys).await.expect("DEL");
    let stats = store.stats(authn::unix_now()).await.expect("stats");
    assert_eq!((stats.active_sessions, stats.active_users), (3, 1));
    assert_eq!(client_counts(&stats), [(Some("web"), 3)]);
    assert_eq!(stats.by_day[6].started, 3);
    // Once: a session deleted from the index now stays out of it.
    let _: () = redis
        .zrem("auth:stats:sessions", &sessions[0].id)
        .await
        .expect("ZREM");
    let stats = store.stats(authn::unix_now()).await.expect("stats");
    assert_eq!(stats.active_sessions, 2);
    db.close().await;
}
