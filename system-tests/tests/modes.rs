//! The three verifier modes end to end: what happens to an access token after its session ends,
//! at the gateway (HTTP) and at orders-service (gRPC), each verifying on its own.
//!
//! - `stateless`: the token keeps working until it expires. That is the documented trade-off,
//!   asserted here so that nobody mistakes it for a bug.
//! - `stateful`: refused by the very next request.
//! - `hybrid`: refused once the revocation event has been pushed, within a bound.

use std::time::Duration;

use authn::claims::AccessClaims;
use authn::config::AuthMode;
use authn::jws::UnverifiedJws;
use reqwest::{Method, StatusCode};
use testkit::eventually;
use testkit::stack::{Options, Stack};
use tonic::Code;

/// The ways a session ends.
#[derive(Debug, Clone, Copy)]
enum Revocation {
    Logout,
    LogoutAll,
    DeleteSession,
    DisableUser,
}

const ALL: [Revocation; 4] = [
    Revocation::Logout,
    Revocation::LogoutAll,
    Revocation::DeleteSession,
    Revocation::DisableUser,
];

fn sid(token: &str) -> String {
    let claims: AccessClaims = UnverifiedJws::parse(token).unwrap().payload().unwrap();
    claims.sid.expect("user tokens carry a sid")
}

/// A user with a live token, and that token's session ended by `how`. Returns the token.
async fn revoked_token(stack: &Stack, username: &str, how: Revocation) -> String {
    let user_id = stack
        .add_user(username, "user", "orders:read orders:write")
        .await;
    let token = stack.token(username, None).await;
    assert_eq!(stack.gateway_status(&token).await, StatusCode::OK);
    assert_eq!(stack.orders_code(&token).await, Code::Ok);

    let response = match how {
        Revocation::Logout => {
            stack
                .http
                .post(stack.url("/v1/logout"))
                .bearer_auth(&token)
                .send()
                .await
        }
        Revocation::LogoutAll => {
            let other_device = stack.token(username, None).await;
            stack
                .http
                .post(stack.url("/v1/logout-all"))
                .bearer_auth(&other_device)
                .send()
                .await
        }
        Revocation::DeleteSession => {
            let other_device = stack.token(username, None).await;
            stack
                .http
                .delete(stack.url(&format!("/v1/sessions/{}", sid(&token))))
                .bearer_auth(&other_device)
                .send()
                .await
        }
        Revocation::DisableUser => {
            let admin = format!("admin-of-{username}");
            stack
                .add_user(&admin, "admin,user", "orders:read orders:write")
                .await;
            let admin_token = stack.token(&admin, None).await;
            stack
                .http
                .post(stack.auth_url(&format!("/v1/admin/users/{user_id}/disable")))
                .bearer_auth(&admin_token)
                .send()
                .await
        }
    }
    .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "{how:?}");
    token
}

/// `stateless`: signature and claims only, so an ended session's token is accepted until it
/// expires (5 minutes by default). Short access tokens are the only bound.
#[tokio::test]
async fn stateless_accepts_a_revoked_token_until_it_expires() {
    let stack = Stack::start(Options::default()).await;
    for (i, how) in ALL.into_iter().enumerate() {
        let token = revoked_token(&stack, &format!("user{i}"), how).await;
        assert_eq!(
            stack.gateway_status(&token).await,
            StatusCode::OK,
            "{how:?}"
        );
        assert_eq!(stack.orders_code(&token).await, Code::Ok, "{how:?}");
    }
}

async fn assert_refused_at_once(stack: &Stack) {
    for (i, how) in ALL.into_iter().enumerate() {
        let token = revoked_token(stack, &format!("user{i}"), how).await;
        assert_eq!(
            stack.gateway_status(&token).await,
            StatusCode::UNAUTHORIZED,
            "{how:?}"
        );
        assert_eq!(
            stack.orders_code(&token).await,
            Code::Unauthenticated,
            "{how:?}"
        );
    }
}

/// `stateful` over gRPC: the next request after the session ended is refused.
#[tokio::test]
async fn stateful_refuses_a_revoked_token_at_once() {
    let stack = Stack::start(Options {
        mode: AuthMode::Stateful,
        ..Options::default()
    })
    .await;
    assert_refused_at_once(&stack).await;
}

/// `stateful` reading the shared Redis session store directly.
#[tokio::test]
#[ignore = "needs TEST_REDIS_URL (Redis): run with -- --include-ignored"]
async fn stateful_with_the_redis_store_refuses_a_revoked_token_at_once() {
    let redis_url = testkit::test_redis_url();
    let stack = Stack::start(Options {
        mode: AuthMode::Stateful,
        redis_url: Some(redis_url),
        ..Options::default()
    })
    .await;
    assert_refused_at_once(&stack).await;
}

/// `hybrid`: refused at both verifiers once the event has been pushed; the observed delays are
/// printed (the benchmark measures their distribution).
#[tokio::test]
async fn hybrid_refuses_a_revoked_token_within_the_push_bound() {
    let stack = Stack::start(Options {
        mode: AuthMode::Hybrid,
        ..Options::default()
    })
    .await;
    for (i, how) in ALL.into_iter().enumerate() {
        let token = revoked_token(&stack, &format!("user{i}"), how).await;
        let at_gateway = eventually("the gateway refuses", Duration::from_secs(2), || async {
            stack.gateway_status(&token).await == StatusCode::UNAUTHORIZED
        })
        .await;
        let at_orders = eventually("orders-service refuses", Duration::from_secs(2), || async {
            stack.orders_code(&token).await == Code::Unauthenticated
        })
        .await;
        eprintln!("hybrid {how:?}: refused after {at_gateway:?} (gateway), {at_orders:?} (orders)");
    }
}

/// Class 17: reusing a rotated refresh token ends the session, so every access token of it is
/// refused by `stateful` verifiers.
#[tokio::test]
async fn refresh_token_reuse_revokes_the_session_everywhere() {
    let stack = Stack::start(Options {
        mode: AuthMode::Stateful,
        ..Options::default()
    })
    .await;
    stack.add_user("alice", "user", "orders:read").await;
    let login = stack.login("alice", None).await;
    let first_refresh = login["refresh_token"].as_str().unwrap();
    let refresh = |token: String| {
        let stack = &stack;
        async move {
            stack
                .http
                .post(stack.url("/oauth/token"))
                .form(&[("grant_type", "refresh_token"), ("refresh_token", &token)])
                .send()
                .await
                .unwrap()
        }
    };
    let rotated = refresh(first_refresh.to_owned()).await;
    assert_eq!(rotated.status(), StatusCode::OK);
    let rotated: serde_json::Value = rotated.json().await.unwrap();
    let current = rotated["access_token"].as_str().unwrap();
    assert_eq!(stack.gateway_status(current).await, StatusCode::OK);

    let reuse = refresh(first_refresh.to_owned()).await;
    assert_eq!(reuse.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = reuse.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");

    for token in [login["access_token"].as_str().unwrap(), current] {
        assert_eq!(stack.gateway_status(token).await, StatusCode::UNAUTHORIZED);
        assert_eq!(stack.orders_code(token).await, Code::Unauthenticated);
    }
    let latest = refresh(rotated["refresh_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(
        latest.status(),
        StatusCode::BAD_REQUEST,
        "the family is revoked"
    );
}

/// Class 18: `stateful` with its session store unreachable fails closed with 503 /
/// `UNAVAILABLE`; never open.
#[tokio::test]
async fn stateful_fails_closed_when_the_session_store_is_unreachable() {
    let stack = Stack::start(Options {
        mode: AuthMode::Stateful,
        verifier_redis_url: Some("redis://127.0.0.1:1".into()),
        ..Options::default()
    })
    .await;
    stack.add_user("alice", "user", "orders:read").await;
    let token = stack.token("alice", None).await;
    let (status, body) = stack.rest(Method::GET, "/v1/orders", &token, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert_eq!(stack.orders_code(&token).await, Code::Unavailable);
}

/// Class 18: `stateless` keeps working while the issuer is down (keys are cached).
#[tokio::test]
async fn stateless_keeps_working_while_the_issuer_is_down() {
    let mut stack = Stack::start(Options::default()).await;
    stack.add_user("alice", "user", "orders:read").await;
    let token = stack.token("alice", None).await;
    stack.stop_auth().await;
    assert_eq!(stack.gateway_status(&token).await, StatusCode::OK);
    assert_eq!(stack.orders_code(&token).await, Code::Ok);
}

/// Class 18 and the feed's resumption: with the issuer down past `AUTH_MAX_STALENESS`, a
/// `hybrid` verifier falls back to `stateful` checks, which fail too, so it fails closed; once
/// the issuer is back (same database, new process) the feed reconnects, resumes from its last
/// sequence, and a revocation made right after the restart is applied.
#[tokio::test]
async fn hybrid_fails_closed_while_the_issuer_is_gone_and_resumes_after_a_restart() {
    let mut stack = Stack::start(Options {
        mode: AuthMode::Hybrid,
        max_staleness: Duration::from_millis(500),
        ..Options::default()
    })
    .await;
    stack.add_user("alice", "user", "orders:read").await;
    let token = stack.token("alice", None).await;
    let revoked_before = revoked_token(&stack, "bob", Revocation::Logout).await;
    eventually(
        "the revocation reached the gateway",
        Duration::from_secs(2),
        || async { stack.gateway_status(&revoked_before).await == StatusCode::UNAUTHORIZED },
    )
    .await;

    stack.stop_auth().await;
    eventually(
        "the gateway fails closed",
        Duration::from_secs(5),
        || async { stack.gateway_status(&token).await == StatusCode::SERVICE_UNAVAILABLE },
    )
    .await;
    eventually(
        "orders-service fails closed",
        Duration::from_secs(5),
        || async { stack.orders_code(&token).await == Code::Unavailable },
    )
    .await;

    stack.restart_auth().await;
    // Ended while the verifiers may still be reconnecting: the event reaches them in the
    // backlog of the resumed stream.
    let revoked_after = revoked_token(&stack, "carol", Revocation::Logout).await;
    for refused in [&revoked_before, &revoked_after] {
        eventually("the gateway refuses", Duration::from_secs(5), || async {
            stack.gateway_status(refused).await == StatusCode::UNAUTHORIZED
        })
        .await;
        eventually("orders-service refuses", Duration::from_secs(5), || async {
            stack.orders_code(refused).await == Code::Unauthenticated
        })
        .await;
    }
    assert_eq!(stack.gateway_status(&token).await, StatusCode::OK);
    assert_eq!(stack.orders_code(&token).await, Code::Ok);
}
