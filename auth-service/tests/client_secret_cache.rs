//! The verified-client-secret cache of `client_credentials` (issue 7): a secret Argon2 accepted
//! is not hashed again for a while, but it is tied to the client's row as last read, so a secret
//! rotated, a client changed or removed takes effect as soon as the row is read again (here on
//! the next request: `AUTH_CLIENT_CACHE_TTL=0`; its default reuse of rows for 5 s is tested in
//! `src/clients.rs`), and a wrong secret is never answered from the cache.

use auth_service::passwords::SecretString;
use testkit::auth::{expect_error, expect_tokens, spawn_auth_with, test_config};

/// `client_credentials` for `id` with `secret` in the body: the HTTP status and the granted
/// scope.
async fn grant(auth: &testkit::auth::TestAuth, id: &str, secret: &str) -> (u16, Option<String>) {
    let response = auth
        .post_token(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ])
        .await;
    if response.status() == 200 {
        (200, expect_tokens(response).await.scope)
    } else {
        let (status, body) = expect_error(response).await;
        assert_eq!(body["error"], "invalid_client", "{body}");
        (status, None)
    }
}

async fn sql(auth: &testkit::auth::TestAuth, statement: &str, binds: &[&str]) {
    let mut query = sqlx::query(statement);
    for value in binds {
        query = query.bind(*value);
    }
    let done = query.execute(&auth.state.pool).await.expect("statement");
    assert_eq!(done.rows_affected(), 1, "{statement}");
}

#[tokio::test]
async fn a_cached_client_secret_never_outlives_a_change_of_the_client() {
    let dir = std::sync::Arc::new(tempfile::tempdir().expect("tempdir"));
    let config = auth_service::Config {
        client_cache_ttl: std::time::Duration::ZERO,
        ..test_config(dir.path())
    };
    let auth = spawn_auth_with(config, dir).await;
    let passwords = &auth.state.passwords;
    let secret = auth.create_client("svc", "orders:read", "service").await;
    assert_eq!(passwords.remembered_client_secrets(), 0);

    // A wrong secret is refused, and leaves nothing behind.
    assert_eq!(grant(&auth, "svc", "wrong").await, (401, None));
    assert_eq!(passwords.remembered_client_secrets(), 0);

    // The right one is remembered after its first Argon2 check, and keeps working.
    for _ in 0..3 {
        assert_eq!(
            grant(&auth, "svc", &secret).await,
            (200, Some("orders:read".into()))
        );
    }
    assert_eq!(passwords.remembered_client_secrets(), 1);

    // While it is remembered, another secret still gets nothing from the cache.
    let (almost, last) = secret.split_at(secret.len() - 1);
    let near_miss = format!("{almost}{}", if last == "A" { "B" } else { "A" });
    for wrong in ["wrong", near_miss.as_str(), "", &format!("{secret} ")] {
        assert_eq!(grant(&auth, "svc", wrong).await.0, 401, "{wrong:?}");
    }
    assert_eq!(grant(&auth, "other", &secret).await.0, 401);
    assert_eq!(passwords.remembered_client_secrets(), 1);

    // The client changed (here its scopes, by SQL as another process would): the next token
    // says so, the cached secret still being good.
    sql(
        &auth,
        "UPDATE clients SET scopes = $1 WHERE id = $2",
        &["orders:read orders:write", "svc"],
    )
    .await;
    assert_eq!(
        grant(&auth, "svc", &secret).await,
        (200, Some("orders:read orders:write".into()))
    );

    // The secret rotated (a new hash in the row, written by anyone): the old secret, cached a
    // moment ago, is refused at once; the new one works.
    let rotated = "a-new-secret-of-the-svc-client";
    let rotated_hash = passwords
        .hash(&SecretString::from(rotated))
        .await
        .expect("hash");
    sql(
        &auth,
        "UPDATE clients SET secret_hash = $1 WHERE id = $2",
        &[&rotated_hash, "svc"],
    )
    .await;
    assert_eq!(grant(&auth, "svc", &secret).await, (401, None));
    assert_eq!(grant(&auth, "svc", rotated).await.0, 200);
    assert_eq!(grant(&auth, "svc", rotated).await.0, 200);

    // The client removed: neither secret gets a token, cached or not.
    sql(&auth, "DELETE FROM clients WHERE id = $1", &["svc"]).await;
    assert_eq!(grant(&auth, "svc", rotated).await, (401, None));
    assert_eq!(grant(&auth, "svc", &secret).await, (401, None));

    // Registered again under the same id: a fresh secret, and the old ones are refused.
    let again = auth.create_client("svc", "orders:read", "service").await;
    assert_eq!(grant(&auth, "svc", &again).await.0, 200);
    assert_eq!(grant(&auth, "svc", rotated).await.0, 401);
    assert_eq!(grant(&auth, "svc", &secret).await.0, 401);
}
