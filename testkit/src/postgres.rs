//! A PostgreSQL database of its own for one test, so that suites running against the real
//! server (`TEST_DATABASE_URL`) never collide.

use sqlx::Executor as _;

/// A database created for one test on the server `TEST_DATABASE_URL` names (its user must be
/// allowed to create databases: `postgres://postgres@127.0.0.1:5432/test` in CI); dropped by
/// [`PgDatabase::drop`].
#[derive(Debug)]
pub struct PgDatabase {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    /// A fresh database named `{prefix}_{uuid}`. The tests that call this are
    /// `#[ignore = "needs TEST_DATABASE_URL ..."]`, so they show as ignored in a plain
    /// `cargo test`; run with `-- --include-ignored` and without `TEST_DATABASE_URL`, they fail
    /// here saying so, rather than pass without having run.
    pub async fn create(prefix: &str) -> Self {
        let admin_url = match std::env::var("TEST_DATABASE_URL") {
            Ok(url) if url.starts_with("postgres") => url,
            Ok(url) => panic!("TEST_DATABASE_URL={url:?} names no PostgreSQL server"),
            Err(_) => panic!(
                "TEST_DATABASE_URL is not set: this test needs a PostgreSQL server \
                 (TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test)"
            ),
        };
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let (base, _) = admin_url
            .rsplit_once('/')
            .expect("TEST_DATABASE_URL has a database path");
        let url = format!("{base}/{name}");
        let db = Self {
            admin_url,
            name,
            url,
        };
        db.admin(&format!("CREATE DATABASE {}", db.name)).await;
        db
    }

    /// Runs one statement as the administrator, on the administration database.
    pub async fn admin(&self, sql: &str) {
        let admin = platform::db::connect(&self.admin_url, 1)
            .await
            .expect("TEST_DATABASE_URL connects");
        admin.execute(sql).await.expect(sql);
        admin.close().await;
    }

    /// Cuts every connection to this database and refuses new ones, as an outage would.
    pub async fn go_away(&self) {
        self.admin(&format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS false",
            self.name
        ))
        .await;
        self.admin(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{}' AND pid <> pg_backend_pid()",
            self.name
        ))
        .await;
    }

    /// Accepts connections again.
    pub async fn come_back(&self) {
        self.admin(&format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
            self.name
        ))
        .await;
    }

    pub async fn drop(self) {
        self.admin(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .await;
    }
}
