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
                .add_user(&admin, "admin,user", "orders:read orders:write users:admin")
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

/// The issuer's database put back to an earlier copy while the `hybrid` verifiers run: its
/// event numbers start again below the verifiers' positions. A logout made after the restore
/// must still reach both verifiers within the push bound, and what they learnt before the
/// restore (a logout the restored database no longer knows) still stands.
#[tokio::test]
async fn hybrid_refuses_a_logout_made_after_the_issuers_database_is_restored() {
    let mut stack = Stack::start(Options {
        mode: AuthMode::Hybrid,
        ..Options::default()
    })
    .await;
    stack.add_user("alice", "user", "orders:read").await;
    stack.add_user("carol", "user", "orders:read").await;
    let carol = stack.token("carol", None).await;
    let backup = stack.backup_auth_db("backup.db").await;

    // After the backup: revocations the restored database will not have.
    stack.logout(&carol).await;
    for i in 0..3 {
        revoked_token(&stack, &format!("after-backup-{i}"), Revocation::Logout).await;
    }
    eventually(
        "both verifiers refuse carol",
        Duration::from_secs(2),
        || async {
            stack.gateway_status(&carol).await == StatusCode::UNAUTHORIZED
                && stack.orders_code(&carol).await == Code::Unauthenticated
        },
    )
    .await;

    stack.restore_auth_db(&backup).await;
    let alice = stack.token("alice", None).await;
    eventually(
        "alice's token is accepted",
        Duration::from_secs(5),
        || async {
            stack.gateway_status(&alice).await == StatusCode::OK
                && stack.orders_code(&alice).await == Code::Ok
        },
    )
    .await;
    stack.logout(&alice).await;
    let at_gateway = eventually("the gateway refuses", Duration::from_secs(2), || async {
        stack.gateway_status(&alice).await == StatusCode::UNAUTHORIZED
    })
    .await;
    let at_orders = eventually("orders-service refuses", Duration::from_secs(2), || async {
        stack.orders_code(&alice).await == Code::Unauthenticated
    })
    .await;
    eprintln!("after the restore: refused after {at_gateway:?} (gateway), {at_orders:?} (orders)");
    // The restored database has carol's session active again; the verifiers remember it ended.
    assert_eq!(stack.gateway_status(&carol).await, StatusCode::UNAUTHORIZED);
    assert_eq!(stack.orders_code(&carol).await, Code::Unauthenticated);
}

/// A `hybrid` verifier's feed across a restore of the issuer's database, message by message:
/// the restored issuer resets it when it reconnects, and from that reset until the heartbeat
/// after the backlog the feed is stale (requests go to the fallback, or fail closed), never
/// fresh on a position the issuer does not have. What it learnt before stays.
#[tokio::test]
async fn a_feed_reset_by_a_restored_issuer_is_stale_until_it_has_caught_up() {
    use authn::claims::{AccessClaims, Audience};
    use authn::revocation::RevocationFeed;
    use authn::{AuthError, RejectReason};
    use proto::auth::v1::watch_revocations_response::Message;
    use testkit::auth::watch_revocations;

    let mut stack = Stack::start(Options {
        mode: AuthMode::Hybrid,
        ..Options::default()
    })
    .await;
    let token = stack.service_token("watcher").await;
    stack.add_user("carol", "user", "orders:read").await;
    let carol = stack.token("carol", None).await;
    let feed = RevocationFeed::new(Duration::from_secs(5), None);
    let mut watcher = watch_revocations(&stack.auth_grpc, &token, feed.resume_request()).await;
    while !feed.is_fresh() {
        feed.receive(watcher.next_message().await);
    }
    let backup = stack.backup_auth_db("backup.db").await;
    stack.logout(&carol).await;
    for i in 0..3 {
        revoked_token(&stack, &format!("after-backup-{i}"), Revocation::Logout).await;
    }
    let head = stack.auth_state.revocations.head().await.unwrap();
    while feed.last_sequence() < head {
        feed.receive(watcher.next_message().await);
    }
    drop(watcher);

    stack.restore_auth_db(&backup).await;
    let restored_head = stack.auth_state.revocations.head().await.unwrap();
    assert!(restored_head < head, "{restored_head} < {head}");
    let mut watcher = watch_revocations(&stack.auth_grpc, &token, feed.resume_request()).await;
    let first = watcher.next_message().await;
    assert!(
        matches!(&first, Message::Reset(reset) if reset.reason == "behind"),
        "{first:?}"
    );
    feed.receive(first);
    assert!(!feed.is_fresh(), "mid-reset: stale");
    assert_eq!((feed.last_sequence(), feed.resets()), (0, 1));
    loop {
        let message = watcher.next_message().await;
        let heartbeat = matches!(message, Message::Heartbeat(_));
        feed.receive(message);
        if heartbeat {
            break;
        }
        assert!(
            !feed.is_fresh(),
            "stale until the backlog is through: {feed:?}"
        );
    }
    assert!(feed.is_fresh());
    assert_eq!(feed.last_sequence(), restored_head);

    // Carol's logout is not in the restored database; the feed still refuses her token.
    let claims: AccessClaims = UnverifiedJws::parse(&carol).unwrap().payload().unwrap();
    assert_eq!(claims.aud, Audience::One("orders".into()));
    assert_eq!(
        feed.check("kid", &claims).await,
        Err(AuthError::Unauthenticated(RejectReason::Revoked))
    );
}
