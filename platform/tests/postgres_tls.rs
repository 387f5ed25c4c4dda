//! PostgreSQL over TLS through the platform's pool ([`platform::db::connect`]): the server's
//! certificate is checked against the CA in `sslrootcert` and its name against the URL's host
//! with `sslmode=verify-full`, in the `DATABASE_URL` itself. Against a PostgreSQL cluster of the
//! test's own with `ssl=on` and a certificate for `localhost` from a CA of its own
//! ([`testkit::tls`]).

use sqlx::AnyPool;
use testkit::tls::{TestPki, TlsPostgres};

/// Whether the pool's connection is encrypted, as the server sees it.
async fn encrypted(pool: &AnyPool) -> bool {
    sqlx::query_scalar::<_, bool>("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(pool)
        .await
        .expect("pg_stat_ssl")
}

async fn refused(url: &str) -> String {
    match platform::db::connect(url, 1).await {
        Ok(_) => panic!("{url} connected"),
        Err(error) => error.to_string(),
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL's initdb and pg_ctl: run with -- --include-ignored"]
async fn verify_full_connects_with_the_ca_and_refuses_a_wrong_ca_or_name() {
    let pki = TestPki::new(&["localhost"]);
    let stranger = TestPki::new(&["localhost"]);
    let postgres = TlsPostgres::start(&pki);
    let ca = pki.ca_file.display();

    // The right CA and name: connected, and encrypted.
    let url = postgres.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let pool = platform::db::connect(&url, 1)
        .await
        .expect("verify-full connects");
    assert!(encrypted(&pool).await, "the connection uses TLS");
    pool.close().await;

    // A certificate from another CA: refused, by the certificate check.
    let error = refused(&postgres.url(
        "localhost",
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            stranger.ca_file.display()
        ),
    ))
    .await;
    assert!(error.contains("UnknownIssuer"), "{error}");
    // No CA given: the public roots (webpki-roots) do not know the test CA either.
    let error = refused(&postgres.url("localhost", "sslmode=verify-full")).await;
    assert!(error.contains("UnknownIssuer"), "{error}");

    // The right CA, another name (the certificate names localhost, not 127.0.0.1): refused.
    let error = refused(&postgres.url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await;
    assert!(error.contains("not valid for name"), "{error}");
    // verify-ca checks the chain; with the right name it connects too. (With another name it
    // would not: sqlx 0.8 with rustls checks the name in verify-ca as well, upstream
    // launchbadge/sqlx#3793, so verify-ca is no weaker than verify-full here.)
    let pool = platform::db::connect(
        &postgres.url("localhost", &format!("sslmode=verify-ca&sslrootcert={ca}")),
        1,
    )
    .await
    .expect("verify-ca connects");
    assert!(encrypted(&pool).await);
    pool.close().await;

    // `PGSSLMODE`/`PGSSLROOTCERT` are not needed: the URL says it all. And a plain connection
    // is still possible when the URL asks for none (the server's pg_hba allows it here).
    let pool = platform::db::connect(&postgres.url("localhost", "sslmode=disable"), 1)
        .await
        .expect("sslmode=disable connects");
    assert!(!encrypted(&pool).await);
    pool.close().await;
}
