//! The operator commands, run as the real binary against the same data directory as a server.

use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::Arc;

use testkit::auth::{cli, keys_dir, output_with_stdin, spawn_auth, spawn_auth_with, test_config};
use tokio::process::Command;

/// Runs `auth-service <args>` with its state in `dir`, feeding `stdin`.
async fn auth_cli(dir: &Path, args: &[&str], stdin: &str) -> Output {
    output_with_stdin(
        cli(env!("CARGO_BIN_EXE_auth-service"), dir).args(args),
        stdin,
    )
    .await
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn user_add_on_a_fresh_data_dir_then_log_in() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let output = auth_cli(
        dir.path(),
        &[
            "user",
            "add",
            "--username",
            "bob",
            "--roles",
            "admin,user",
            "--scopes",
            "orders:read orders:write",
            "--password-stdin",
        ],
        "s3cret-password\n",
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("created user bob"),
        "{}",
        stdout(&output)
    );

    let auth = spawn_auth_with(test_config(dir.path()), Arc::clone(&dir)).await;
    // The trailing newline was not part of the password.
    let tokens = auth.login("bob", "s3cret-password").await;
    let principal = auth
        .jwks_verifier()
        .await
        .verify(&tokens.access_token)
        .await
        .expect("valid");
    assert_eq!(principal.claims().roles, ["admin", "user"]);
    assert_eq!(tokens.scope.as_deref(), Some("orders:read orders:write"));
}

#[tokio::test]
async fn user_add_next_to_a_running_server_and_refusals() {
    let auth = spawn_auth().await;
    let args = [
        "user",
        "add",
        "--username",
        "carol",
        "--scopes",
        "orders:read",
        "--password-stdin",
    ];
    let output = auth_cli(auth.dir(), &args, "a-long-password\n").await;
    assert!(output.status.success(), "{}", stderr(&output));
    auth.login("carol", "a-long-password").await;

    let duplicate = auth_cli(auth.dir(), &args, "another-password\n").await;
    assert!(!duplicate.status.success());
    assert!(
        stderr(&duplicate).contains("already exists"),
        "{}",
        stderr(&duplicate)
    );
    // The original password still works: nothing was overwritten.
    auth.login("carol", "a-long-password").await;

    let short = auth_cli(
        auth.dir(),
        &["user", "add", "--username", "dave", "--password-stdin"],
        "short\n",
    )
    .await;
    assert!(!short.status.success());
    assert!(stderr(&short).contains("password"), "{}", stderr(&short));

    let empty = auth_cli(
        auth.dir(),
        &["user", "add", "--username", "dave", "--password-stdin"],
        "\n",
    )
    .await;
    assert!(!empty.status.success());

    let bad_name = auth_cli(
        auth.dir(),
        &[
            "user",
            "add",
            "--username",
            "dave smith",
            "--password-stdin",
        ],
        "a-long-password\n",
    )
    .await;
    assert!(!bad_name.status.success());
    assert!(
        stderr(&bad_name).contains("username"),
        "{}",
        stderr(&bad_name)
    );

    let no_stdin_flag = auth_cli(
        auth.dir(),
        &["user", "add", "--username", "dave"],
        "a-long-password\n",
    )
    .await;
    assert!(!no_stdin_flag.status.success());
}

#[tokio::test]
async fn client_add_prints_a_secret_that_works_with_client_credentials() {
    let auth = spawn_auth().await;
    let output = auth_cli(
        auth.dir(),
        &[
            "client",
            "add",
            "--id",
            "orders-service",
            "--scopes",
            "sessions:check",
        ],
        "",
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let secret = stdout(&output).trim().to_owned();
    assert_eq!(secret.len(), 43, "256-bit base64url secret, got {secret:?}");

    let tokens = auth.client_token("orders-service", &secret).await;
    assert_eq!(tokens.scope.as_deref(), Some("sessions:check"));

    let duplicate = auth_cli(auth.dir(), &["client", "add", "--id", "orders-service"], "").await;
    assert!(!duplicate.status.success());
    assert!(
        stdout(&duplicate).is_empty(),
        "no secret printed on failure"
    );
}

/// A public client of the code flow: registered with its redirect URIs, no secret printed, and
/// no secret (not even an empty one) ever authenticates it at the token endpoint.
#[tokio::test]
async fn client_add_public_prints_no_secret_and_keeps_its_redirect_uris() {
    let auth = spawn_auth().await;
    let output = auth_cli(
        auth.dir(),
        &[
            "client",
            "add",
            "--id",
            "spa",
            "--public",
            "--scopes",
            "openid orders:read",
            "--redirect-uri",
            "https://app.example.com/callback",
            "--redirect-uri",
            "http://localhost:3000/callback",
            "--post-logout-redirect-uri",
            "https://app.example.com/",
        ],
        "",
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).is_empty(), "no secret: {}", stdout(&output));
    assert!(
        stderr(&output).contains("public client spa"),
        "{}",
        stderr(&output)
    );

    let client = auth_service::clients::find(&auth.state.pool, "spa")
        .await
        .expect("lookup")
        .expect("registered");
    assert!(client.public);
    assert_eq!(
        client.redirect_uris,
        [
            "https://app.example.com/callback",
            "http://localhost:3000/callback"
        ]
    );
    assert_eq!(
        client.post_logout_redirect_uris,
        ["https://app.example.com/"]
    );

    for secret in ["", "x"] {
        let response = reqwest::Client::new()
            .post(auth.url("/oauth/token"))
            .basic_auth("spa", Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("token endpoint answers");
        assert_eq!(response.status(), 401, "secret {secret:?}");
    }
}

/// Each invalid URI is refused with its reason, before the data directory is even created.
#[tokio::test]
async fn client_add_refuses_unsafe_redirect_uris_with_a_clear_error() {
    let cases: [(&[&str], &str); 6] = [
        (
            &["--redirect-uri", "http://app.example.com/cb"],
            "must use https",
        ),
        (
            &["--redirect-uri", "https://app.example.com/cb#x"],
            "fragment",
        ),
        (&["--redirect-uri", "/callback"], "not an absolute URI"),
        (
            &["--redirect-uri", "https://u:p@app.example.com/cb"],
            "user name",
        ),
        (
            &["--post-logout-redirect-uri", "javascript:alert(1)"],
            "post-logout redirect URI",
        ),
        (&["--public"], "at least one redirect URI"),
    ];
    for (extra, reason) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut args = vec!["client", "add", "--id", "web"];
        args.extend_from_slice(extra);
        let output = auth_cli(dir.path(), &args, "").await;
        assert!(!output.status.success(), "{extra:?} accepted");
        assert!(stdout(&output).is_empty(), "{extra:?}: nothing on stdout");
        assert!(
            stderr(&output).contains(reason),
            "{extra:?}: {}",
            stderr(&output)
        );
        assert!(
            !dir.path().join("auth.db").exists(),
            "{extra:?}: no database created"
        );
    }
}

#[tokio::test]
async fn user_disable_next_to_a_running_server_ends_its_sessions_and_tells_watchers() {
    let auth = spawn_auth().await;
    let user = auth
        .create_user("erin", "a-long-password", "user", "orders:read")
        .await;
    let verifier = auth.verifier_token().await;
    let login = auth.login("erin", "a-long-password").await;
    let sid = testkit::auth::sid_of(&login.access_token);
    let mut watcher = auth.watch(&verifier, 0).await;
    let _ = watcher.until_heartbeat().await;

    let output = auth_cli(auth.dir(), &["user", "disable", "--username", "erin"], "").await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("disabled user erin")
            && stdout(&output).contains("1 session(s) ended"),
        "{}",
        stdout(&output)
    );
    assert!(!auth.session_is_active(&verifier, &sid).await);
    let (status, body) = testkit::auth::expect_error(
        auth.post_token(&[
            ("grant_type", "password"),
            ("username", "erin"),
            ("password", "a-long-password"),
        ])
        .await,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // Written by another process: the server's poll of the table delivers the events.
    let disabled = watcher.next_event().await;
    assert_eq!(
        disabled.target,
        Some(proto::auth::v1::revocation_event::Target::UserDisabled(
            proto::auth::v1::UserDisabled {
                user_id: user.id.clone()
            }
        ))
    );
    assert_eq!(watcher.next_event().await.sequence, disabled.sequence + 1);

    let output = auth_cli(auth.dir(), &["user", "enable", "--username", "erin"], "").await;
    assert!(output.status.success(), "{}", stderr(&output));
    auth.login("erin", "a-long-password").await;
    assert!(
        !auth.session_is_active(&verifier, &sid).await,
        "old sessions stay ended"
    );

    let unknown = auth_cli(auth.dir(), &["user", "disable", "--username", "nobody"], "").await;
    assert!(!unknown.status.success());
    assert!(stderr(&unknown).contains("no user"), "{}", stderr(&unknown));
}

#[tokio::test]
async fn user_list_and_update_next_to_a_running_server_tell_watchers_and_keep_the_session() {
    let auth = spawn_auth().await;
    let user = auth
        .create_user(
            "frank",
            "a-long-password",
            "user",
            "orders:read orders:write",
        )
        .await;
    let verifier = auth.verifier_token().await;
    let login = auth.login("frank", "a-long-password").await;
    let sid = testkit::auth::sid_of(&login.access_token);
    let mut watcher = auth.watch(&verifier, 0).await;
    let _ = watcher.until_heartbeat().await;

    let output = auth_cli(auth.dir(), &["user", "list"], "").await;
    assert!(output.status.success(), "{}", stderr(&output));
    let listed = stdout(&output);
    let line = listed
        .lines()
        .find(|line| line.contains("frank"))
        .unwrap_or_else(|| panic!("frank is listed: {listed}"));
    for field in [
        user.id.as_str(),
        "enabled",
        "user",
        "orders:read orders:write",
    ] {
        assert!(line.contains(field), "{field} in {line:?}");
    }

    let output = auth_cli(
        auth.dir(),
        &[
            "user",
            "update",
            "--username",
            "frank",
            "--roles",
            "user,auditor",
            "--scopes",
            "orders:read",
        ],
        "",
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("updated user frank")
            && stdout(&output).contains("roles [auditor user] and scopes [orders:read]"),
        "{}",
        stdout(&output)
    );
    // Written by another process: the server's poll of the table delivers the event.
    let changed = watcher.next_event().await;
    assert_eq!(
        changed.target,
        Some(proto::auth::v1::revocation_event::Target::UserChanged(
            proto::auth::v1::UserChanged {
                user_id: user.id.clone()
            }
        ))
    );
    assert!(
        auth.session_is_active(&verifier, &sid).await,
        "the session stands"
    );
    let refreshed = auth
        .refresh(login.refresh_token.as_deref().expect("refresh token"))
        .await;
    let claims = testkit::auth::claims_of(&refreshed.access_token);
    assert_eq!(claims["roles"], serde_json::json!(["auditor", "user"]));
    assert_eq!(claims["scope"], "orders:read");
    assert_eq!(claims["sid"], sid.as_str());

    // The same values again: nothing changes.
    let output = auth_cli(
        auth.dir(),
        &[
            "user",
            "update",
            "--username",
            "frank",
            "--scopes",
            "orders:read",
        ],
        "",
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("unchanged user frank"),
        "{}",
        stdout(&output)
    );

    for (args, says) in [
        (
            &["user", "update", "--username", "frank"][..],
            "nothing to change",
        ),
        (
            &["user", "update", "--username", "frank", "--roles", "a/b"][..],
            "invalid roles",
        ),
        (
            &["user", "update", "--username", "frank", "--scopes", "\\"][..],
            "invalid scope",
        ),
        (
            &["user", "update", "--username", "nobody", "--roles", "user"][..],
            "no user",
        ),
    ] {
        let output = auth_cli(auth.dir(), args, "").await;
        assert!(!output.status.success(), "{args:?}");
        assert!(
            stderr(&output).contains(says),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

/// Runs `auth-service migrate` against `database_url`, with nothing else configured.
async fn migrate(database_url: &str, keys_dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_auth-service"))
        .arg("migrate")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("AUTH_KEYS_DIR", keys_dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("auth-service runs")
}

/// The schema is complete: every embedded migration applied, the tables there and empty, and
/// no signing key made (`migrate` touches nothing but the schema).
async fn assert_migrated(database_url: &str) {
    let pool = platform::db::connect(database_url, 1)
        .await
        .expect("connects");
    let (applied,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = TRUE")
            .fetch_one(&pool)
            .await
            .expect("the migrations table exists");
    let embedded = auth_service::db::MIGRATOR.iter().count();
    assert_eq!(usize::try_from(applied).unwrap(), embedded);
    for table in [
        "users",
        "clients",
        "sessions",
        "revocation_events",
        "signing_keys",
    ] {
        let (rows,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| panic!("table {table}: {e}"));
        assert_eq!(rows, 0, "{table}");
    }
    pool.close().await;
}

#[tokio::test]
async fn migrate_prepares_a_fresh_sqlite_database_and_exits() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    // In a directory that does not exist yet, as on a fresh volume.
    let url = format!("sqlite://{}/fresh/auth.db", dir.path().display());
    let keys = keys_dir(dir.path());
    for _ in 0..2 {
        // Twice: the second run finds nothing to do.
        let output = migrate(&url, &keys).await;
        assert!(output.status.success(), "{}", stderr(&output));
        assert!(
            stdout(&output).contains("database schema is up to date"),
            "{}",
            stdout(&output)
        );
    }
    assert_migrated(&url).await;
    assert!(!keys.exists(), "migrate made no signing key");

    // A server starts on the migrated database.
    let config = auth_service::Config {
        database_url: url,
        ..test_config(dir.path())
    };
    let auth = spawn_auth_with(config, dir).await;
    auth.create_user("frank", "a-long-password", "user", "")
        .await;
    auth.login("frank", "a-long-password").await;
    auth.stop().await;
}

#[tokio::test]
#[ignore = "needs TEST_DATABASE_URL (PostgreSQL): run with -- --include-ignored"]
async fn migrate_prepares_a_postgres_database_and_exits() {
    let db = testkit::PgDatabase::create("auth_test").await;
    let dir = tempfile::tempdir().expect("tempdir");
    for _ in 0..2 {
        let output = migrate(&db.url, &keys_dir(dir.path())).await;
        assert!(output.status.success(), "{}", stderr(&output));
    }
    assert_migrated(&db.url).await;
    db.drop().await;
}

#[tokio::test]
async fn a_migration_failure_is_an_error_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = migrate("nonsense://nowhere", &keys_dir(dir.path())).await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("cannot connect to the database"),
        "{}",
        stderr(&output)
    );
    assert!(stdout(&output).is_empty(), "{}", stdout(&output));
}
