//! The same store on PostgreSQL, and readiness through a database outage. Runs when
//! `TEST_DATABASE_URL` names a server where the user may create databases (e.g.
//! `postgres://postgres@127.0.0.1:5432/test`); each test gets a database of its own, dropped at
//! the end. Without the variable these tests pass without doing anything (and say so), so a
//! machine without PostgreSQL still runs the rest of the suite.

use std::sync::Arc;

use auth_service::users::{self, CreateUserError, NewUser};
use std::time::Duration;

use proto::auth::v1::revocation_event::Target;
use testkit::PgDatabase;
use testkit::auth::{TestAuth, expect_error, spawn_auth_with, test_config};
use testkit::eventually;

const PASSWORD: &str = "correct horse battery";

async fn spawn_on_postgres(db: &PgDatabase) -> TestAuth {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let config = auth_service::Config {
        database_url: db.url.clone(),
        ..test_config(dir.path())
    };
    spawn_auth_with(config, dir).await
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL (PostgreSQL): run with -- --include-ignored"]
async fn login_refresh_clients_and_sessions_on_postgres() {
    let db = PgDatabase::create("auth_test").await;
    let auth = spawn_on_postgres(&db).await;
    let user = auth
        .create_user("alice", PASSWORD, "user", "orders:read orders:write")
        .await;
    let duplicate = users::create(
        &auth.state.pool,
        &auth.state.passwords,
        NewUser {
            username: "alice".into(),
            password: PASSWORD.to_owned().into(),
            roles: vec![],
            scopes: Default::default(),
        },
    )
    .await;
    assert!(matches!(duplicate, Err(CreateUserError::Duplicate(_))));

    let login = auth.login("alice", PASSWORD).await;
    let verifier = auth.jwks_verifier().await;
    let principal = verifier.verify(&login.access_token).await.expect("valid");
    assert_eq!(principal.sub(), user.id);
    let sid = principal.sid().expect("sid").to_owned();

    let first = login.refresh_token.expect("refresh token");
    let second = auth.refresh(&first).await;
    let (status, body) = expect_error(
        auth.post_token(&[("grant_type", "refresh_token"), ("refresh_token", &first)])
            .await,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(second.refresh_token.is_some());

    // The reuse of `first` ended the session; a new login gets a new one.
    let token = auth.verifier_token().await;
    assert!(!auth.session_is_active(&token, &sid).await);
    let again = auth.login("alice", PASSWORD).await;
    let sid = testkit::auth::sid_of(&again.access_token);
    assert!(auth.session_is_active(&token, &sid).await);
    let response = auth
        .http
        .get(auth.url("/v1/sessions"))
        .bearer_auth(&again.access_token)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);

    auth.disable_user(&user.id).await;
    assert!(!auth.session_is_active(&token, &sid).await);
    let mut watcher = auth.watch(&token, 0).await;
    let (events, head) = watcher.until_heartbeat().await;
    let kinds: Vec<_> = events
        .iter()
        .map(|e| match e.target.as_ref().expect("target") {
            Target::SessionsEnded(ended) => ended.reason.clone(),
            Target::UserDisabled(_) => "user_disabled event".to_owned(),
            Target::KeyRevoked(_) => "key".to_owned(),
            Target::UserChanged(_) => "user_changed event".to_owned(),
            Target::KeyAdded(_) => "key_added event".to_owned(),
        })
        .collect();
    assert_eq!(
        kinds,
        ["refresh_reuse", "user_disabled event", "user_disabled"]
    );
    assert_eq!(head, 3);

    auth.stop().await;
    db.drop().await;
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL (PostgreSQL): run with -- --include-ignored"]
async fn of_two_concurrent_refreshes_exactly_one_wins_on_postgres() {
    let db = PgDatabase::create("auth_test").await;
    let auth = spawn_on_postgres(&db).await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    for _ in 0..5 {
        let refresh_token = auth
            .login("alice", PASSWORD)
            .await
            .refresh_token
            .expect("refresh token");
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
        ];
        let (a, b) = tokio::join!(auth.post_token(&form), auth.post_token(&form));
        let mut statuses = [a.status().as_u16(), b.status().as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 400]);
    }
    auth.stop().await;
    db.drop().await;
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL (PostgreSQL): run with -- --include-ignored"]
async fn a_lost_database_makes_readyz_fail_until_it_is_back() {
    let db = PgDatabase::create("auth_test").await;
    let auth = spawn_on_postgres(&db).await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let (status, body) = auth.readyz().await;
    assert_eq!(status, 200, "{body}");
    auth.login("alice", PASSWORD).await;

    // Every connection cut, new ones refused.
    db.go_away().await;
    eventually(
        "readyz reports the database down",
        Duration::from_secs(10),
        || async {
            let (status, body) = auth.readyz().await;
            status == 503 && body["checks"]["database"] == false
        },
    )
    .await;
    // Logins fail as the server's fault, with the RFC 6749 body, not as a crash.
    let (status, body) = expect_error(
        auth.post_token(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .await,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (500, Some("server_error"))
    );
    assert_eq!(
        auth.http
            .get(auth.url("/healthz"))
            .send()
            .await
            .expect("sent")
            .status(),
        200,
        "alive, only not ready: no restart wanted"
    );

    // No restart: the pool reconnects on its own.
    db.come_back().await;
    eventually(
        "auth-service ready again",
        Duration::from_secs(10),
        || async { auth.readyz().await.0 == 200 },
    )
    .await;
    auth.login("alice", PASSWORD).await;

    auth.stop().await;
    db.drop().await;
}
