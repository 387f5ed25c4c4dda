//! The counts of active sessions through the running service: `GET /v1/admin/sessions/stats`
//! (role `admin` and scope `users:admin`), `auth-service sessions stats` (the binary, against the
//! same store) and the gauges `auth_sessions_active` / `auth_users_active` on the metrics
//! listener. On SQLite always; on PostgreSQL (`TEST_DATABASE_URL`) and Redis (`TEST_REDIS_URL`)
//! in the ignored runs.
//!
//! The metrics recorder is one per process: only `gauges_follow_the_store` runs the gauge
//! refresher (`AUTH_SESSION_STATS_INTERVAL`); every other service here has it off.

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use auth_service::config::Config;
use http::StatusCode;
use serde_json::Value;
use testkit::PgDatabase;
use testkit::auth::{
    TestAuth, cli, expect_tokens, own_redis_database, spawn_auth_with, test_config,
};
use testkit::eventually;

const PASSWORD: &str = "correct horse battery";

/// Where a service under test keeps its sessions.
enum Backend {
    Sqlite,
    Postgres(PgDatabase),
    /// A Redis logical database of the test's own: the counts are store-wide.
    Redis(String),
}

async fn spawn(backend: &Backend, stats_interval: Duration) -> TestAuth {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let mut config: Config = test_config(dir.path());
    config.session_stats_interval = stats_interval;
    match backend {
        Backend::Sqlite => {}
        Backend::Postgres(pg) => config.database_url = pg.url.clone(),
        Backend::Redis(url) => config.redis_url = Some(url.clone()),
    }
    spawn_auth_with(config, dir).await
}

/// A user with `roles` and `scopes`, logged in once (a session without a client); its token.
async fn logged_in(auth: &TestAuth, name: &str, roles: &str, scopes: &str) -> String {
    auth.create_user(name, PASSWORD, roles, scopes).await;
    auth.login(name, PASSWORD).await.access_token
}

/// A password login of `name` through the client `client` (a session of that client).
async fn login_through(auth: &TestAuth, client: &str, secret: &str, name: &str) -> String {
    let response = auth
        .http
        .post(auth.url("/oauth/token"))
        .basic_auth(client, Some(secret))
        .form(&[
            ("grant_type", "password"),
            ("username", name),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .expect("token request sent");
    expect_tokens(response).await.access_token
}

async fn get_stats(auth: &TestAuth, token: Option<&str>) -> (StatusCode, Value) {
    let mut request = auth.http.get(auth.url("/v1/admin/sessions/stats"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("sent");
    let status = response.status();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn logout(auth: &TestAuth, path: &str, token: &str) {
    let response = auth
        .http
        .post(auth.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("sent");
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
}

/// `auth-service sessions stats <args>` on the service's store.
async fn stats_cli(auth: &TestAuth, args: &[&str]) -> Output {
    let mut command = cli(env!("CARGO_BIN_EXE_auth-service"), auth.dir());
    command
        .args(["sessions", "stats"])
        .args(args)
        .env("DATABASE_URL", &auth.config.database_url);
    if let Some(redis) = &auth.config.redis_url {
        command.env("REDIS_URL", redis);
    }
    command.output().await.expect("auth-service runs")
}

fn without_time(mut stats: Value) -> Value {
    stats.as_object_mut().expect("an object").remove("at");
    stats
}

fn day_counts(stats: &Value) -> Vec<u64> {
    stats["by_day"]
        .as_array()
        .expect("by_day")
        .iter()
        .map(|d| d["started"].as_u64().expect("started"))
        .collect()
}

/// The whole story on one backend: who may read the counts, what they say as sessions begin
/// and end, and the CLI saying the same.
async fn counts_through_the_api_and_the_cli(backend: Backend) {
    let auth = spawn(&backend, Duration::ZERO).await;
    let root = logged_in(&auth, "root", "admin,user", "orders:read users:admin").await;
    let secret = auth.create_client("web-app", "orders:read", "").await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let alice_web = login_through(&auth, "web-app", &secret, "alice").await;
    let alice_direct = auth.login("alice", PASSWORD).await.access_token;
    let bob = logged_in(&auth, "bob", "user", "orders:read").await;
    login_through(&auth, "web-app", &secret, "bob").await;

    let (status, stats) = get_stats(&auth, Some(&root)).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["active_sessions"], 5, "{stats}");
    assert_eq!(stats["active_users"], 3, "root, alice, bob");
    assert_eq!(
        stats["by_client"],
        serde_json::json!([
            {"client_id": "web-app", "sessions": 2},
            {"client_id": null, "sessions": 3},
        ])
    );
    assert_eq!(day_counts(&stats), [0, 0, 0, 0, 0, 0, 5], "all began today");
    assert_eq!(stats["started_earlier"], 0);
    let today = &stats["by_day"][6]["day"];
    let at = stats["at"].as_i64().expect("at");
    let expected_day = auth_service::sessions::stats::day_name(at.div_euclid(86_400));
    assert_eq!(today, &Value::String(expected_day));

    // The CLI reads the same store: the same numbers, as JSON and as a table.
    let output = stats_cli(&auth, &["--json"]).await;
    assert!(output.status.success(), "{output:?}");
    let from_cli: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(without_time(from_cli), without_time(stats));
    let output = stats_cli(&auth, &[]).await;
    assert!(output.status.success(), "{output:?}");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.contains("active sessions  5\n"), "{table}");
    assert!(table.contains("active users     3\n"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("web-app") && l.ends_with(" 2")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("(none)") && l.ends_with(" 3")),
        "{table}"
    );

    // A logout ends one session; alice still has another. Bob's logout-all takes him out.
    logout(&auth, "/v1/logout", &alice_direct).await;
    let (_, stats) = get_stats(&auth, Some(&root)).await;
    assert_eq!(
        (&stats["active_sessions"], &stats["active_users"]),
        (&4.into(), &3.into())
    );
    logout(&auth, "/v1/logout-all", &bob).await;
    let (_, stats) = get_stats(&auth, Some(&root)).await;
    assert_eq!(
        (&stats["active_sessions"], &stats["active_users"]),
        (&2.into(), &2.into())
    );
    assert_eq!(
        stats["by_client"],
        serde_json::json!([
            {"client_id": "web-app", "sessions": 1},
            {"client_id": null, "sessions": 1},
        ])
    );

    // Role admin and scope users:admin, in the same token.
    let (status, _) = get_stats(&auth, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = get_stats(&auth, Some(&alice_web)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "not an admin: {body}");
    let narrowed = expect_tokens(
        auth.post_token(&[
            ("grant_type", "password"),
            ("username", "root"),
            ("password", PASSWORD),
            ("scope", "orders:read"),
        ])
        .await,
    )
    .await
    .access_token;
    let (status, body) = get_stats(&auth, Some(&narrowed)).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "admin without users:admin: {body}"
    );
    assert_eq!(body["error"], "insufficient_scope", "{body}");

    auth.stop().await;
    if let Backend::Postgres(pg) = backend {
        pg.drop().await;
    }
}

#[tokio::test]
async fn counts_through_the_api_and_the_cli_on_sqlite() {
    counts_through_the_api_and_the_cli(Backend::Sqlite).await;
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL (PostgreSQL): run with -- --include-ignored"]
async fn counts_through_the_api_and_the_cli_on_postgres() {
    let pg = PgDatabase::create("auth_stats").await;
    counts_through_the_api_and_the_cli(Backend::Postgres(pg)).await;
}

#[tokio::test]
#[ignore = "needs TEST_REDIS_URL (Redis): run with -- --include-ignored"]
async fn counts_through_the_api_and_the_cli_on_redis() {
    let url = own_redis_database(14).await;
    counts_through_the_api_and_the_cli(Backend::Redis(url)).await;
}

/// The value of an unlabelled gauge in a Prometheus text.
fn gauge(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (metric, value) = line.split_once(' ')?;
        (metric == name).then(|| value.trim().parse().ok())?
    })
}

/// The gauges are recomputed from the store in the background and read from the metrics
/// listener; a scrape never queries the store.
#[tokio::test]
async fn gauges_follow_the_store() {
    let auth = spawn(&Backend::Sqlite, Duration::from_millis(100)).await;
    let alice = logged_in(&auth, "alice", "user", "orders:read").await;
    auth.login("alice", PASSWORD).await;
    logged_in(&auth, "bob", "user", "orders:read").await;
    let until = |sessions: f64, users: f64| {
        let auth = &auth;
        async move {
            eventually(
                &format!("auth_sessions_active {sessions} and auth_users_active {users}"),
                Duration::from_secs(20),
                || async {
                    let metrics = auth.metrics().await;
                    gauge(&metrics, "auth_sessions_active") == Some(sessions)
                        && gauge(&metrics, "auth_users_active") == Some(users)
                },
            )
            .await;
        }
    };
    until(3.0, 2.0).await;
    let metrics = auth.metrics().await;
    assert!(metrics.contains("# HELP auth_sessions_active"), "{metrics}");
    assert!(gauge(&metrics, "auth_session_stats_timestamp_seconds").is_some());
    logout(&auth, "/v1/logout-all", &alice).await;
    until(1.0, 1.0).await;
    auth.stop().await;
}
