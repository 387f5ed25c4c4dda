//! The bearer's sessions (`/v1/sessions`, `/v1/logout`, `/v1/logout-all`), user administration
//! (`/v1/admin/users/{id}/disable|enable`), and the per-user session cap.
//!
//! After every way a session ends, its old access token is refused by the issuer's own API (401)
//! and `CheckSession` answers inactive (class 16).

use std::sync::Arc;

use http::StatusCode;
use serde_json::Value;
use testkit::auth::{TestAuth, expect_error, sid_of, spawn_auth, spawn_auth_with, test_config};

const PASSWORD: &str = "correct horse battery";

async fn get_sessions(auth: &TestAuth, token: &str) -> reqwest::Response {
    auth.http
        .get(auth.url("/v1/sessions"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request sent")
}

async fn sessions_of(auth: &TestAuth, token: &str) -> Vec<Value> {
    let response = get_sessions(auth, token).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.expect("JSON list")
}

async fn post(auth: &TestAuth, path: &str, token: &str) -> StatusCode {
    auth.http
        .post(auth.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request sent")
        .status()
}

async fn delete_session(auth: &TestAuth, sid: &str, token: &str) -> StatusCode {
    auth.http
        .delete(auth.url(&format!("/v1/sessions/{sid}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("request sent")
        .status()
}

/// A login with a recognisable `User-Agent`.
async fn login_from(
    auth: &TestAuth,
    username: &str,
    user_agent: &str,
) -> testkit::auth::TokenResponse {
    let response = auth
        .http
        .post(auth.url("/oauth/token"))
        .header("user-agent", user_agent)
        .form(&[
            ("grant_type", "password"),
            ("username", username),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .expect("token request sent");
    testkit::auth::expect_tokens(response).await
}

/// The old token is refused by the issuer's API, and `CheckSession` says the session is over.
async fn assert_revoked(auth: &TestAuth, verifier_token: &str, access_token: &str) {
    let response = get_sessions(auth, access_token).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .expect("ASCII")
            .contains("invalid_token")
    );
    assert!(
        !auth
            .session_is_active(verifier_token, &sid_of(access_token))
            .await
    );
}

#[tokio::test]
async fn a_user_lists_its_active_sessions_with_where_they_come_from() {
    let auth = spawn_auth().await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    auth.create_user("bob", PASSWORD, "user", "orders:read")
        .await;
    let laptop = login_from(&auth, "alice", "laptop/1.0").await;
    let phone = login_from(&auth, "alice", "phone/2.0").await;
    login_from(&auth, "bob", "bob's browser").await;

    let sessions = sessions_of(&auth, &phone.access_token).await;
    assert_eq!(sessions.len(), 2, "only alice's sessions: {sessions:?}");
    let by_id = |sid: &str| {
        sessions
            .iter()
            .find(|s| s["id"] == sid)
            .unwrap_or_else(|| panic!("session {sid} listed"))
            .clone()
    };
    let current = by_id(&sid_of(&phone.access_token));
    assert_eq!(current["current"], true);
    assert_eq!(current["user_agent"], "phone/2.0");
    assert_eq!(current["ip"], "127.0.0.1");
    assert_eq!(current["client_id"], Value::Null);
    let created = current["created_at"].as_i64().expect("created_at");
    assert_eq!(current["last_seen_at"].as_i64(), Some(created));
    assert_eq!(
        current["expires_at"].as_i64(),
        Some(created + 14 * 24 * 3600)
    );
    let other = by_id(&sid_of(&laptop.access_token));
    assert_eq!(other["current"], false);
    assert_eq!(other["user_agent"], "laptop/1.0");

    // A refresh moves last_seen_at (never backwards) and keeps the session.
    let refreshed = auth
        .refresh(laptop.refresh_token.as_deref().expect("refresh token"))
        .await;
    assert_eq!(
        sid_of(&refreshed.access_token),
        sid_of(&laptop.access_token)
    );
    let after = sessions_of(&auth, &refreshed.access_token).await;
    let laptop_now = after
        .iter()
        .find(|s| s["current"] == true)
        .expect("current session");
    assert!(laptop_now["last_seen_at"].as_i64() >= other["last_seen_at"].as_i64());
}

#[tokio::test]
async fn every_session_route_requires_a_valid_user_token() {
    let auth = spawn_auth().await;
    for (method, path) in [
        (reqwest::Method::GET, "/v1/sessions"),
        (reqwest::Method::DELETE, "/v1/sessions/abc"),
        (reqwest::Method::POST, "/v1/logout"),
        (reqwest::Method::POST, "/v1/logout-all"),
        (reqwest::Method::POST, "/v1/admin/users/abc/disable"),
        (reqwest::Method::POST, "/v1/admin/users/abc/enable"),
    ] {
        let response = auth
            .http
            .request(method.clone(), auth.url(path))
            .send()
            .await
            .expect("request sent");
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
        assert_eq!(response.headers()["www-authenticate"], "Bearer");

        let response = auth
            .http
            .request(method.clone(), auth.url(path))
            .bearer_auth("not.a.token")
            .send()
            .await
            .expect("request sent");
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
    }

    // A token signed by another key is refused, whatever it claims.
    let forger = testkit::TestIssuer::new();
    let mut claims = forger.claims("someone", "", &["admin"]);
    claims.iss = testkit::auth::TEST_ISSUER.to_owned();
    claims.sid = Some("whatever".into());
    let response = get_sessions(&auth, &forger.token(&claims)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // A service token has no session: the user routes are not for it.
    let secret = auth.create_client("svc", "orders:read", "").await;
    let service = auth.client_token("svc", &secret).await.access_token;
    let response = get_sessions(&auth, &service).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        post(&auth, "/v1/logout", &service).await,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn logout_ends_only_the_current_session() {
    let auth = spawn_auth().await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let verifier = auth.verifier_token().await;
    let here = auth.login("alice", PASSWORD).await;
    let elsewhere = auth.login("alice", PASSWORD).await;

    assert_eq!(
        post(&auth, "/v1/logout", &here.access_token).await,
        StatusCode::NO_CONTENT
    );
    assert_revoked(&auth, &verifier, &here.access_token).await;
    // Its refresh token died with it.
    let (status, body) = expect_error(
        auth.post_token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", here.refresh_token.as_deref().expect("rt")),
        ])
        .await,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // The other device is untouched.
    let left = sessions_of(&auth, &elsewhere.access_token).await;
    assert_eq!(left.len(), 1);
    assert!(
        auth.session_is_active(&verifier, &sid_of(&elsewhere.access_token))
            .await
    );
}

#[tokio::test]
async fn logout_all_ends_every_session_of_the_user_and_no_one_elses() {
    let auth = spawn_auth().await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    auth.create_user("bob", PASSWORD, "user", "orders:read")
        .await;
    let verifier = auth.verifier_token().await;
    let devices = [
        auth.login("alice", PASSWORD).await,
        auth.login("alice", PASSWORD).await,
        auth.login("alice", PASSWORD).await,
    ];
    let bob = auth.login("bob", PASSWORD).await;

    assert_eq!(
        post(&auth, "/v1/logout-all", &devices[1].access_token).await,
        StatusCode::NO_CONTENT
    );
    for device in &devices {
        assert_revoked(&auth, &verifier, &device.access_token).await;
    }
    assert_eq!(sessions_of(&auth, &bob.access_token).await.len(), 1);

    // A new login works and starts from a clean slate.
    let again = auth.login("alice", PASSWORD).await;
    assert_eq!(sessions_of(&auth, &again.access_token).await.len(), 1);
}

#[tokio::test]
async fn a_user_may_end_one_of_its_own_sessions_but_not_another_users() {
    let auth = spawn_auth().await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    auth.create_user("bob", PASSWORD, "user", "orders:read")
        .await;
    let verifier = auth.verifier_token().await;
    let phone = auth.login("alice", PASSWORD).await;
    let laptop = auth.login("alice", PASSWORD).await;
    let bob = auth.login("bob", PASSWORD).await;

    // Bob's session is as unknown to alice as a made-up id.
    for sid in [
        sid_of(&bob.access_token),
        "no-such-session".to_owned(),
        "x".repeat(500),
    ] {
        assert_eq!(
            delete_session(&auth, &sid, &laptop.access_token).await,
            StatusCode::NOT_FOUND
        );
    }
    assert!(
        auth.session_is_active(&verifier, &sid_of(&bob.access_token))
            .await
    );

    assert_eq!(
        delete_session(&auth, &sid_of(&phone.access_token), &laptop.access_token).await,
        StatusCode::NO_CONTENT
    );
    assert_revoked(&auth, &verifier, &phone.access_token).await;
    // An ended session is gone: deleting it again is a 404.
    assert_eq!(
        delete_session(&auth, &sid_of(&phone.access_token), &laptop.access_token).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(sessions_of(&auth, &laptop.access_token).await.len(), 1);
}

#[tokio::test]
async fn an_admin_disables_a_user_and_enables_it_again() {
    let auth = spawn_auth().await;
    auth.create_user("root", PASSWORD, "admin,user", "orders:read users:admin")
        .await;
    let alice = auth
        .create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let mallory = auth
        .create_user("mallory", PASSWORD, "user", "orders:read")
        .await;
    let verifier = auth.verifier_token().await;
    let admin = auth.login("root", PASSWORD).await.access_token;
    let alice_sessions = [
        auth.login("alice", PASSWORD).await,
        auth.login("alice", PASSWORD).await,
    ];
    let mallory_token = auth.login("mallory", PASSWORD).await.access_token;

    // Only admins.
    let path = format!("/v1/admin/users/{}/disable", alice.id);
    assert_eq!(
        post(&auth, &path, &mallory_token).await,
        StatusCode::FORBIDDEN
    );
    let body: Value = auth
        .http
        .post(auth.url(&path))
        .bearer_auth(&mallory_token)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    assert_eq!(body["error"], "forbidden");
    assert!(
        auth.session_is_active(&verifier, &sid_of(&alice_sessions[0].access_token))
            .await
    );

    assert_eq!(
        post(&auth, "/v1/admin/users/no-such-user/disable", &admin).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(post(&auth, &path, &admin).await, StatusCode::NO_CONTENT);
    for session in &alice_sessions {
        assert_revoked(&auth, &verifier, &session.access_token).await;
        let (status, body) = expect_error(
            auth.post_token(&[
                ("grant_type", "refresh_token"),
                (
                    "refresh_token",
                    session.refresh_token.as_deref().expect("rt"),
                ),
            ])
            .await,
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
    }
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
        (400, Some("invalid_grant"))
    );
    // Disabling again is harmless.
    assert_eq!(post(&auth, &path, &admin).await, StatusCode::NO_CONTENT);
    // Mallory was not affected.
    assert_eq!(
        get_sessions(&auth, &mallory_token).await.status(),
        StatusCode::OK
    );

    let enable = format!("/v1/admin/users/{}/enable", alice.id);
    assert_eq!(
        post(&auth, &enable, &mallory_token).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(&auth, "/v1/admin/users/no-such-user/enable", &admin).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(post(&auth, &enable, &admin).await, StatusCode::NO_CONTENT);
    let back = auth.login("alice", PASSWORD).await;
    assert_eq!(sessions_of(&auth, &back.access_token).await.len(), 1);
    // The old sessions stay ended.
    assert_revoked(&auth, &verifier, &alice_sessions[0].access_token).await;
    let _ = mallory;
}

#[tokio::test]
async fn the_session_cap_ends_the_oldest_sessions() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let config = auth_service::Config {
        max_sessions_per_user: 2,
        ..test_config(dir.path())
    };
    let auth = spawn_auth_with(config, dir).await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    auth.create_user("bob", PASSWORD, "user", "orders:read")
        .await;
    let verifier = auth.verifier_token().await;
    let bob = auth.login("bob", PASSWORD).await;
    let first = auth.login("alice", PASSWORD).await;
    let second = auth.login("alice", PASSWORD).await;
    let third = auth.login("alice", PASSWORD).await;

    assert_revoked(&auth, &verifier, &first.access_token).await;
    let listed: Vec<String> = sessions_of(&auth, &third.access_token)
        .await
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(
        listed,
        [sid_of(&third.access_token), sid_of(&second.access_token)],
        "newest first, the oldest gone"
    );
    let fourth = auth.login("alice", PASSWORD).await;
    assert_revoked(&auth, &verifier, &second.access_token).await;
    assert_eq!(sessions_of(&auth, &fourth.access_token).await.len(), 2);
    // Per user: bob's session is untouched.
    assert!(
        auth.session_is_active(&verifier, &sid_of(&bob.access_token))
            .await
    );

    let reasons: Vec<String> =
        sqlx::query_scalar("SELECT ended_reason FROM sessions WHERE ended_reason IS NOT NULL")
            .fetch_all(&auth.state.pool)
            .await
            .expect("query");
    assert_eq!(reasons, ["session_cap", "session_cap"]);
}

#[tokio::test]
async fn session_ends_are_counted_by_reason() {
    let auth = spawn_auth().await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let token = auth.login("alice", PASSWORD).await.access_token;
    assert_eq!(
        post(&auth, "/v1/logout", &token).await,
        StatusCode::NO_CONTENT
    );
    let metrics = auth.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("auth_sessions_ended_total{reason=\"logout\"}")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("auth_revocation_events_total{kind=\"sessions_ended\"}")),
        "{metrics}"
    );
}
