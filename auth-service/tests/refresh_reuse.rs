//! Refresh-token reuse detection (class 17): presenting an already-rotated refresh token fails
//! with `invalid_grant` and ends the whole session (the family), whoever presents it and however
//! soon after the rotation: there is no grace window.

use testkit::auth::{TestAuth, expect_error, sid_of, spawn_auth};

const PASSWORD: &str = "correct horse battery";

async fn refresh_error(auth: &TestAuth, refresh_token: &str) -> (u16, serde_json::Value) {
    expect_error(
        auth.post_token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .await,
    )
    .await
}

async fn reuse_count(auth: &TestAuth) -> f64 {
    let metrics = auth.metrics().await;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("auth_refresh_reuse_total "))
        .map_or(0.0, |value| value.trim().parse().expect("a number"))
}

#[tokio::test]
async fn reusing_a_rotated_refresh_token_ends_the_whole_session() {
    let auth = spawn_auth().await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let verifier = auth.verifier_token().await;
    let login = auth.login("alice", PASSWORD).await;
    let other_device = auth.login("alice", PASSWORD).await;
    let sid = sid_of(&login.access_token);
    let stolen = login.refresh_token.expect("refresh token");

    // The thief refreshes first; the victim's next refresh presents the rotated token.
    let thief = auth.refresh(&stolen).await;
    let thief_refresh = thief.refresh_token.expect("refresh token");
    let reuses_before = reuse_count(&auth).await;
    let (status, body) = refresh_error(&auth, &stolen).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // The whole family is over: the thief's current refresh token and access token too.
    let (status, body) = refresh_error(&auth, &thief_refresh).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(!auth.session_is_active(&verifier, &sid).await);
    let response = auth
        .http
        .get(auth.url("/v1/sessions"))
        .bearer_auth(&thief.access_token)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 401);
    assert!(reuse_count(&auth).await > reuses_before);
    let reason: Option<String> =
        sqlx::query_scalar("SELECT ended_reason FROM sessions WHERE id = $1")
            .bind(&sid)
            .fetch_one(&auth.state.pool)
            .await
            .expect("row");
    assert_eq!(reason.as_deref(), Some("refresh_reuse"));

    // Only that session: the user's other login goes on.
    assert!(
        auth.session_is_active(&verifier, &sid_of(&other_device.access_token))
            .await
    );
    auth.refresh(other_device.refresh_token.as_deref().expect("rt"))
        .await;
}

#[tokio::test]
async fn unknown_refresh_tokens_end_nothing() {
    let auth = spawn_auth().await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let verifier = auth.verifier_token().await;
    let login = auth.login("alice", PASSWORD).await;
    let (status, body) = refresh_error(&auth, "made-up-refresh-token").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(
        auth.session_is_active(&verifier, &sid_of(&login.access_token))
            .await
    );
}

/// Two concurrent refreshes with one token: exactly one wins. The loser presented a token that
/// had just been rotated, which is a reuse like any other (no grace window): the session ends,
/// and the winner's new tokens with it. Clients must not refresh one session concurrently.
#[tokio::test]
async fn of_two_concurrent_refreshes_one_wins_and_the_race_ends_the_session() {
    let auth = spawn_auth().await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let verifier = auth.verifier_token().await;
    for _ in 0..5 {
        let login = auth.login("alice", PASSWORD).await;
        let sid = sid_of(&login.access_token);
        let refresh_token = login.refresh_token.expect("refresh token");
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
        ];
        let (a, b) = tokio::join!(auth.post_token(&form), auth.post_token(&form));
        let mut statuses = [a.status().as_u16(), b.status().as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 400]);
        let (winner, loser) = if a.status() == 200 { (a, b) } else { (b, a) };
        let (_, body) = expect_error(loser).await;
        assert_eq!(body["error"], "invalid_grant");
        let winner = testkit::auth::expect_tokens(winner).await;

        assert!(!auth.session_is_active(&verifier, &sid).await);
        let (status, body) =
            refresh_error(&auth, winner.refresh_token.as_deref().expect("rt")).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
    }
}

/// A reuse right after the rotation (the "grace window" some issuers allow) ends the session
/// just the same.
#[tokio::test]
async fn there_is_no_grace_window_after_a_rotation() {
    let auth = spawn_auth().await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let verifier = auth.verifier_token().await;
    let login = auth.login("alice", PASSWORD).await;
    let first = login.refresh_token.expect("refresh token");
    let second = auth.refresh(&first).await;
    // Immediately, well within any grace window.
    let (status, _) = refresh_error(&auth, &first).await;
    assert_eq!(status, 400);
    assert!(
        !auth
            .session_is_active(&verifier, &sid_of(&second.access_token))
            .await
    );
}

/// Refreshes of many sessions at once, more than the pool has connections: none may wait for a
/// connection while holding another (a rotation used to ask the SQL session store for a second
/// connection inside its write transaction, so a full pool stalled until SQLite's busy timeout
/// and answered 500).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_beyond_the_pool_size_all_succeed() {
    const SESSIONS: usize = 8;
    const ROUNDS: usize = 4;
    let dir = std::sync::Arc::new(tempfile::tempdir().expect("tempdir"));
    let config = auth_service::Config {
        database_max_connections: 2,
        ..testkit::auth::test_config(dir.path())
    };
    let auth = std::sync::Arc::new(testkit::auth::spawn_auth_with(config, dir).await);
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let mut refresh_tokens = Vec::new();
    for _ in 0..SESSIONS {
        let login = auth.login("alice", PASSWORD).await;
        refresh_tokens.push(login.refresh_token.expect("refresh token"));
    }
    let chains: Vec<_> = refresh_tokens
        .into_iter()
        .map(|mut token| {
            let auth = auth.clone();
            tokio::spawn(async move {
                for _ in 0..ROUNDS {
                    let started = std::time::Instant::now();
                    let response = auth
                        .post_token(&[("grant_type", "refresh_token"), ("refresh_token", &token)])
                        .await;
                    assert_eq!(response.status(), 200, "after {:?}", started.elapsed());
                    let body: serde_json::Value = response.json().await.expect("json");
                    token = body["refresh_token"].as_str().expect("rotated").to_owned();
                }
            })
        })
        .collect();
    for chain in chains {
        chain.await.expect("every refresh chain succeeds");
    }
}
