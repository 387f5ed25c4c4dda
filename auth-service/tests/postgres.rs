//! The same store on PostgreSQL. Runs when `TEST_DATABASE_URL` names a server where the user may
//! create databases (e.g. `postgres://postgres@127.0.0.1:5432/test`); each test gets a database
//! of its own, dropped at the end. Without the variable these tests pass without doing anything
//! (and say so), so a machine without PostgreSQL still runs the rest of the suite.

mod common;

use std::sync::Arc;

use auth_service::users::{self, CreateUserError, NewUser};
use common::{TestAuth, expect_error, spawn_auth_with, test_config};
use proto::auth::v1::CheckSessionRequest;
use sqlx::Executor as _;

const PASSWORD: &str = "correct horse battery";

struct PgDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDatabase {
    async fn create() -> Option<Self> {
        let admin_url = match std::env::var("TEST_DATABASE_URL") {
            Ok(url) if url.starts_with("postgres") => url,
            _ => {
                eprintln!("TEST_DATABASE_URL names no PostgreSQL server: PostgreSQL tests skipped");
                return None;
            }
        };
        let name = format!("auth_test_{}", uuid::Uuid::new_v4().simple());
        let (base, _) = admin_url
            .rsplit_once('/')
            .expect("TEST_DATABASE_URL has a database path");
        let url = format!("{base}/{name}");
        let admin = shared::db::connect(&admin_url, 1)
            .await
            .expect("TEST_DATABASE_URL connects");
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("test database created");
        admin.close().await;
        Some(Self {
            admin_url,
            name,
            url,
        })
    }

    async fn drop(self) {
        let admin = shared::db::connect(&self.admin_url, 1)
            .await
            .expect("TEST_DATABASE_URL connects");
        admin
            .execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name).as_str())
            .await
            .expect("test database dropped");
    }
}

async fn spawn_on_postgres(db: &PgDatabase) -> TestAuth {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let config = auth_service::Config {
        database_url: db.url.clone(),
        ..test_config(dir.path())
    };
    spawn_auth_with(config, dir).await
}

#[tokio::test]
async fn login_refresh_clients_and_sessions_on_postgres() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
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

    let secret = auth.create_client("gateway", "sessions:check", "").await;
    let token = auth.client_token("gateway", &secret).await.access_token;
    let mut request = tonic::Request::new(CheckSessionRequest { sid: sid.clone() });
    shared::grpc::with_bearer(&mut request, &token).expect("bearer");
    let checked = auth
        .grpc_client()
        .await
        .check_session(request)
        .await
        .expect("checked")
        .into_inner();
    assert!(checked.active);

    users::set_disabled(&auth.state.pool, &user.id, true)
        .await
        .expect("disabled");
    let mut request = tonic::Request::new(CheckSessionRequest { sid });
    shared::grpc::with_bearer(&mut request, &token).expect("bearer");
    let checked = auth
        .grpc_client()
        .await
        .check_session(request)
        .await
        .expect("checked")
        .into_inner();
    assert!(!checked.active);

    auth.stop().await;
    db.drop().await;
}

#[tokio::test]
async fn of_two_concurrent_refreshes_exactly_one_wins_on_postgres() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
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
