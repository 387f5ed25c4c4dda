//! What a snapshot of the session counts costs on PostgreSQL with a million sessions: the
//! measurement of docs/MODES.md ("Counting active sessions"). Ignored by default; on a
//! database of its own (dropped afterwards):
//!
//! ```text
//! TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo test -p auth-service --test session_stats_scale -- --ignored --nocapture
//! ```
//!
//! `STATS_SESSIONS` (default 1,000,000) and `STATS_USERS` (default 100,000) change the size.
//! The counts are checked against what was inserted, so a run that measures also proves them
//! right at that size.

use std::time::{Duration, Instant};

use auth_service::sessions::revocation::RevocationLog;
use auth_service::sessions::{SessionStats, SessionStore as _, SqlStore};
use testkit::PgDatabase;

const CLIENTS: i64 = 4;
/// Sessions began over the last ten days.
const SPREAD_SECS: i64 = 10 * 86_400;
const RUNS: usize = 11;

fn env_size(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace(['_', ','], "").parse().ok())
        .unwrap_or(default)
}

/// The counts the generated rows must give: row `g` (1-based) belongs to user `1 + g % users`,
/// client `g % 4` (none for 0), has a browser's `User-Agent` as real rows do, began `g % SPREAD_SECS` seconds before `now`, and is revoked
/// when `g % 10 == 0`, expired when `g % 10 == 5`, active otherwise.
fn expected(now: i64, sessions: i64, users: i64) -> Expected {
    let first_day = now.div_euclid(86_400) - 6;
    let mut active = 0;
    let mut seen_users = vec![false; usize::try_from(users).unwrap()];
    let mut clients = [0u64; CLIENTS as usize];
    let mut days = [0u64; 7];
    let mut earlier = 0;
    for g in 1..=sessions {
        if g % 10 == 0 || g % 10 == 5 {
            continue;
        }
        active += 1;
        seen_users[usize::try_from(g % users).unwrap()] = true;
        clients[usize::try_from(g % CLIENTS).unwrap()] += 1;
        let day = (now - g % SPREAD_SECS).div_euclid(86_400);
        match usize::try_from(day - first_day) {
            Ok(i) if i < 7 => days[i] += 1,
            _ => earlier += 1,
        }
    }
    let mut by_client: Vec<(Option<String>, u64)> = (1..CLIENTS)
        .map(|c| {
            (
                Some(format!("client{c}")),
                clients[usize::try_from(c).unwrap()],
            )
        })
        .collect();
    by_client.push((None, clients[0]));
    let users = seen_users.iter().filter(|s| **s).count() as u64;
    Expected {
        active,
        users,
        by_client,
        by_day: days.to_vec(),
        earlier,
    }
}

/// The counts a snapshot must give.
struct Expected {
    active: u64,
    users: u64,
    by_client: Vec<(Option<String>, u64)>,
    by_day: Vec<u64>,
    earlier: u64,
}

async fn timed_snapshots(store: &SqlStore, now: i64, runs: usize) -> (Vec<Duration>, SessionStats) {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let started = Instant::now();
        let stats = store.stats(now).await.expect("stats");
        times.push(started.elapsed());
        last = Some(stats);
    }
    times.sort();
    (times, last.expect("at least one run"))
}

fn summary(times: &[Duration]) -> String {
    format!(
        "median {:.1} ms (min {:.1}, max {:.1}, {} runs)",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        times.len()
    )
}

#[tokio::test]
#[ignore = "a measurement: needs TEST_DATABASE_URL (PostgreSQL) and a minute; run with -- --ignored --nocapture"]
async fn stats_of_a_million_sessions_on_postgres() {
    let sessions = env_size("STATS_SESSIONS", 1_000_000);
    let users = env_size("STATS_USERS", 100_000);
    let pg = PgDatabase::create("auth_stats_scale").await;
    let pool = auth_service::db::connect_and_migrate(&pg.url, 5)
        .await
        .expect("database");
    let now = authn::unix_now();

    let started = Instant::now();
    sqlx::query(
        "INSERT INTO users (id, username, password_hash, roles, scopes, disabled_at, created_at) \
         SELECT 'u' || g, 'user' || g, 'x', 'user', '', NULL, 0 \
         FROM generate_series(0, $1 - 1) AS g",
    )
    .bind(users)
    .execute(&pool)
    .await
    .expect("users");
    sqlx::query(
        "INSERT INTO sessions (id, user_id, client_id, scope, created_at, created_at_ms, \
         last_seen_at, expires_at, revoked_at, user_agent, ip) \
         SELECT 's' || g, 'u' || (g % $2), \
                CASE WHEN g % 4 = 0 THEN NULL ELSE 'client' || (g % 4) END, NULL, \
                $3 - g % $4, ($3 - g % $4) * 1000, $3, \
                CASE WHEN g % 10 = 5 THEN $3 - 1 ELSE $3 + 86400 END, \
                CASE WHEN g % 10 = 0 THEN $3 - 1 ELSE NULL END, \
                'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0', \
                '203.0.113.' || (g % 250) \
         FROM generate_series(1, $1) AS g",
    )
    .bind(sessions)
    .bind(users)
    .bind(now)
    .bind(SPREAD_SECS)
    .execute(&pool)
    .await
    .expect("sessions");
    // What autovacuum does after a bulk load: statistics, and the visibility map that lets the
    // counts read the index alone.
    sqlx::query("VACUUM ANALYZE sessions")
        .execute(&pool)
        .await
        .expect("vacuum");
    eprintln!(
        "inserted {sessions} sessions of {users} users in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let log = RevocationLog::new(pool.clone(), Duration::from_secs(300), None)
        .await
        .expect("log");
    let store = SqlStore::new(pool.clone(), log);
    store.stats(now).await.expect("warm-up");
    let (times, stats) = timed_snapshots(&store, now, RUNS).await;

    let expected = expected(now, sessions, users);
    assert_eq!(stats.active_sessions, expected.active);
    assert_eq!(stats.active_users, expected.users);
    assert_eq!(
        stats
            .by_client
            .iter()
            .map(|c| (c.client_id.clone(), c.sessions))
            .collect::<Vec<_>>(),
        expected.by_client
    );
    assert_eq!(
        stats.by_day.iter().map(|d| d.started).collect::<Vec<_>>(),
        expected.by_day
    );
    assert_eq!(stats.started_earlier, expected.earlier);

    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN (ANALYZE, BUFFERS) SELECT client_id, \
         CASE WHEN created_at >= $2 THEN created_at / 86400 ELSE -1 END AS day, COUNT(*) \
         FROM sessions WHERE revoked_at IS NULL AND expires_at > $1 \
         GROUP BY client_id, CASE WHEN created_at >= $2 THEN created_at / 86400 ELSE -1 END",
    )
    .bind(now)
    .bind((now.div_euclid(86_400) - 6) * 86_400)
    .fetch_all(&pool)
    .await
    .expect("plan");
    eprintln!("the grouped count:\n{}", plan.join("\n"));
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN (ANALYZE, BUFFERS) SELECT COUNT(*) FROM (SELECT DISTINCT user_id FROM sessions \
         WHERE revoked_at IS NULL AND expires_at > $1) AS active_users",
    )
    .bind(now)
    .fetch_all(&pool)
    .await
    .expect("plan");
    eprintln!("the distinct count:\n{}", plan.join("\n"));
    eprintln!(
        "with sessions_active_idx: {} active sessions, {} active users: {}",
        stats.active_sessions,
        stats.active_users,
        summary(&times)
    );

    // The same without the index: what the migration saves.
    sqlx::query("DROP INDEX sessions_active_idx")
        .execute(&pool)
        .await
        .expect("drop index");
    sqlx::query("ANALYZE sessions")
        .execute(&pool)
        .await
        .expect("analyze");
    let (without, same) = timed_snapshots(&store, now, 5).await;
    assert_eq!(same, stats);
    eprintln!("without it: {}", summary(&without));

    pool.close().await;
    pg.drop().await;
}
