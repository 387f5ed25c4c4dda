//! `SessionService.WatchRevocations`: the feed of `hybrid` verifiers. Retained events after the
//! caller's sequence, in order, then a heartbeat, then live events; never an event twice or out
//! of order, across reconnects and issuer restarts.

use std::sync::Arc;
use std::time::Duration;

use auth_service::config::RevocationConfig;
use auth_service::sessions::EndReason;
use auth_service::sessions::revocation::Target;
use proto::auth::v1::revocation_event::Target as PbTarget;
use proto::auth::v1::{RevocationEvent, SessionsEnded, UserDisabled, WatchRevocationsRequest};
use tempfile::TempDir;
use testkit::auth::{Said, TestAuth, sid_of, spawn_auth_with, test_config};
use testkit::eventually;
use tonic::Code;

const PASSWORD: &str = "correct horse battery";

/// An issuer with quick heartbeats, in `dir`.
fn quick_config(dir: &TempDir) -> auth_service::Config {
    auth_service::Config {
        revocation: RevocationConfig {
            heartbeat: Duration::from_millis(100),
            ..RevocationConfig::default()
        },
        ..test_config(dir.path())
    }
}

async fn spawn_quick() -> TestAuth {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    spawn_auth_with(quick_config(&dir), dir).await
}

async fn logout(auth: &TestAuth, access_token: &str) {
    let response = auth
        .http
        .post(auth.url("/v1/logout"))
        .bearer_auth(access_token)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 204);
}

fn sessions_ended(event: &RevocationEvent) -> &SessionsEnded {
    match event.target.as_ref().expect("a target") {
        PbTarget::SessionsEnded(ended) => ended,
        other => panic!("expected SessionsEnded, got {other:?}"),
    }
}

fn sequences(events: &[RevocationEvent]) -> Vec<u64> {
    events.iter().map(|e| e.sequence).collect()
}

/// Appends `n` events straight to the log (as any session end would).
async fn append_events(auth: &TestAuth, n: usize) -> Vec<u64> {
    let mut appended = Vec::with_capacity(n);
    for i in 0..n {
        let target = Target::SessionsEnded {
            session_ids: vec![format!("sid-{i}")],
            user_id: "someone".into(),
            reason: EndReason::Logout,
        };
        appended.push(
            auth.state
                .revocations
                .append(&target, authn::unix_now())
                .await
                .expect("appended"),
        );
    }
    appended
}

#[tokio::test]
async fn backlog_then_heartbeat_then_live_events_in_order() {
    let auth = spawn_quick().await;
    let user = auth
        .create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let verifier = auth.verifier_token().await;
    let first = auth.login("alice", PASSWORD).await;
    let second = auth.login("alice", PASSWORD).await;
    logout(&auth, &first.access_token).await;
    logout(&auth, &second.access_token).await;

    let mut watcher = auth.watch(&verifier, 0).await;
    let (backlog, head) = watcher.until_heartbeat().await;
    assert_eq!(sequences(&backlog), [1, 2]);
    assert_eq!(head, 2);
    for (event, token) in backlog.iter().zip([&first, &second]) {
        let ended = sessions_ended(event);
        assert_eq!(ended.session_ids, [sid_of(&token.access_token)]);
        assert_eq!(ended.user_id, user.id);
        assert_eq!(ended.reason, "logout");
        // Kept until every token it covers has expired: access-token lifetime + a minute.
        assert_eq!(event.expires_at - event.occurred_at, 300 + 60);
        assert!((event.occurred_at - authn::unix_now()).abs() < 60);
    }

    // Live: logout-all is one event naming every session; disabling adds UserDisabled.
    let a = auth.login("alice", PASSWORD).await;
    let b = auth.login("alice", PASSWORD).await;
    let response = auth
        .http
        .post(auth.url("/v1/logout-all"))
        .bearer_auth(&a.access_token)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 204);
    let event = watcher.next_event().await;
    assert_eq!(event.sequence, 3);
    let ended = sessions_ended(&event);
    let mut expected = vec![sid_of(&a.access_token), sid_of(&b.access_token)];
    expected.sort();
    assert_eq!(ended.session_ids, expected);
    assert_eq!(ended.reason, "logout_all");

    let c = auth.login("alice", PASSWORD).await;
    auth.disable_user(&user.id).await;
    let disabled = watcher.next_event().await;
    assert_eq!(disabled.sequence, 4);
    assert_eq!(
        disabled.target,
        Some(PbTarget::UserDisabled(UserDisabled {
            user_id: user.id.clone()
        }))
    );
    let ended = watcher.next_event().await;
    assert_eq!(ended.sequence, 5);
    assert_eq!(
        sessions_ended(&ended).session_ids,
        [sid_of(&c.access_token)]
    );
    assert_eq!(sessions_ended(&ended).reason, "user_disabled");

    // Heartbeats keep coming, with the head and a moving clock.
    let mut beats = Vec::new();
    while beats.len() < 3 {
        if let Said::Heartbeat {
            head_sequence,
            sent_at_ms,
        } = watcher.next().await
        {
            assert_eq!(head_sequence, 5);
            beats.push(sent_at_ms);
        }
    }
    assert!(beats.windows(2).all(|w| w[0] <= w[1]), "{beats:?}");
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("fits");
    assert!((now_ms - beats[2]).abs() < 10_000);
}

#[tokio::test]
async fn a_reconnecting_watcher_misses_nothing_and_sees_nothing_twice() {
    let auth = spawn_quick().await;
    let verifier = auth.verifier_token().await;
    append_events(&auth, 5).await;

    let mut watcher = auth.watch(&verifier, 0).await;
    let (events, head) = watcher.until_heartbeat().await;
    assert_eq!(sequences(&events), [1, 2, 3, 4, 5]);
    assert_eq!(head, 5);
    drop(watcher);

    // Events appended while disconnected come with the backlog after the last one applied.
    append_events(&auth, 3).await;
    let mut watcher = auth.watch(&verifier, 3).await;
    let (events, head) = watcher.until_heartbeat().await;
    assert_eq!(sequences(&events), [4, 5, 6, 7, 8]);
    assert_eq!(head, 8);
    let mut watcher = auth.watch(&verifier, 8).await;
    let (events, head) = watcher.until_heartbeat().await;
    assert!(events.is_empty());
    assert_eq!(head, 8);
    append_events(&auth, 1).await;
    assert_eq!(watcher.next_event().await.sequence, 9);

    // A watcher "ahead" of the log (another deployment's sequence) still gets new events.
    let mut confused = auth.watch(&verifier, 1_000).await;
    let (events, head) = confused.until_heartbeat().await;
    assert!(events.is_empty());
    assert_eq!(head, 9);
    append_events(&auth, 1).await;
    assert_eq!(confused.next_event().await.sequence, 10);
}

#[tokio::test]
async fn a_long_backlog_and_a_lagging_watcher_still_get_every_event_once_in_order() {
    let auth = spawn_quick().await;
    let verifier = auth.verifier_token().await;
    // More than one page of backlog.
    append_events(&auth, 1_100).await;
    let mut watcher = auth.watch(&verifier, 0).await;
    let (events, head) = watcher.until_heartbeat().await;
    assert_eq!(sequences(&events), (1..=1_100).collect::<Vec<_>>());
    assert_eq!(head, 1_100);

    // Now more live events than the live buffer holds, while the watcher does not read.
    append_events(&auth, 1_500).await;
    let mut received = Vec::new();
    while received.len() < 1_500 {
        received.push(watcher.next_event().await.sequence);
    }
    assert_eq!(received, (1_101..=2_600).collect::<Vec<_>>());
    let (events, head) = watcher.until_heartbeat().await;
    assert!(
        events.is_empty(),
        "nothing repeated: {:?}",
        sequences(&events)
    );
    assert_eq!(head, 2_600);
}

#[tokio::test]
async fn sequences_survive_a_restart_and_a_verifier_resumes_from_its_last_one() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let auth = spawn_auth_with(quick_config(&dir), Arc::clone(&dir)).await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let verifier = auth.verifier_token().await;
    let mut watcher = auth.watch(&verifier, 0).await;
    let _ = watcher.until_heartbeat().await;
    let first = auth.login("alice", PASSWORD).await;
    logout(&auth, &first.access_token).await;
    let applied = watcher.next_event().await.sequence;
    assert_eq!(applied, 1);

    // Revocations happen after the verifier lost its stream, just before the issuer restarts.
    drop(watcher);
    let missed = [
        auth.login("alice", PASSWORD).await,
        auth.login("alice", PASSWORD).await,
    ];
    for login in &missed {
        logout(&auth, &login.access_token).await;
    }
    auth.stop().await;

    let auth = spawn_auth_with(quick_config(&dir), dir).await;
    let mut watcher = auth.watch(&verifier, applied).await;
    let (events, head) = watcher.until_heartbeat().await;
    assert_eq!(sequences(&events), [2, 3]);
    assert_eq!(head, 3);
    for (event, login) in events.iter().zip(&missed) {
        assert_eq!(
            sessions_ended(event).session_ids,
            [sid_of(&login.access_token)]
        );
    }
    // Numbering goes on where it was.
    let next = auth.login("alice", PASSWORD).await;
    logout(&auth, &next.access_token).await;
    assert_eq!(watcher.next_event().await.sequence, 4);
}

#[tokio::test]
async fn expired_events_are_pruned_and_live_ones_kept() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let quick = quick_config(&dir);
    let config = auth_service::Config {
        revocation: RevocationConfig {
            prune_interval: Duration::from_millis(50),
            ..quick.revocation
        },
        ..quick
    };
    let auth = spawn_auth_with(config, dir).await;
    let verifier = auth.verifier_token().await;
    let long_ago = authn::unix_now() - 3_600;
    let old = Target::UserDisabled {
        user_id: "gone".into(),
    };
    auth.state
        .revocations
        .append(&old, long_ago)
        .await
        .expect("appended");
    append_events(&auth, 1).await;

    eventually(
        "the expired event is pruned",
        Duration::from_secs(10),
        || async {
            let left: Vec<i64> = sqlx::query_scalar("SELECT sequence FROM revocation_events")
                .fetch_all(&auth.state.pool)
                .await
                .expect("query");
            left == [2]
        },
    )
    .await;
    let mut watcher = auth.watch(&verifier, 0).await;
    let (events, head) = watcher.until_heartbeat().await;
    assert_eq!(sequences(&events), [2]);
    assert_eq!(head, 2, "the head counts pruned events");

    // Pruning never frees a number.
    assert_eq!(append_events(&auth, 1).await, [3]);
    assert_eq!(
        auth.state
            .revocations
            .prune(authn::unix_now())
            .await
            .expect("prune"),
        0
    );
    let far_future = authn::unix_now() + 300 + 61;
    assert_eq!(
        auth.state
            .revocations
            .prune(far_future)
            .await
            .expect("prune"),
        2
    );
}

#[tokio::test]
async fn watchers_need_a_token_with_scope_sessions_check() {
    let auth = spawn_quick().await;
    let request = || tonic::Request::new(WatchRevocationsRequest { after_sequence: 0 });

    let status = auth
        .grpc_client()
        .await
        .watch_revocations(request())
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);

    let secret = auth.create_client("reporting", "orders:read", "").await;
    let token = auth.client_token("reporting", &secret).await.access_token;
    let mut without_scope = request();
    authn::grpc::with_bearer(&mut without_scope, &token).expect("bearer");
    let status = auth
        .grpc_client()
        .await
        .watch_revocations(without_scope)
        .await
        .expect_err("no scope");
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn shutting_down_ends_open_streams_instead_of_waiting_for_them() {
    let auth = spawn_quick().await;
    let verifier = auth.verifier_token().await;
    let mut watcher = auth.watch(&verifier, 0).await;
    let _ = watcher.until_heartbeat().await;
    let gauge = |metrics: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("auth_revocation_watchers "))
            .map(|v| v.trim().parse::<f64>().expect("number"))
    };
    let metrics = auth.metrics().await;
    assert!(gauge(&metrics).is_some_and(|open| open >= 1.0), "{metrics}");

    // Far below the 20 s drain deadline.
    tokio::time::timeout(Duration::from_secs(5), auth.stop())
        .await
        .expect("the server stops promptly with a stream open");
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match watcher.stream.message().await {
                Ok(Some(_)) => {}
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    })
    .await
    .expect("the stream ends");
    assert!(end, "the stream ended cleanly");
}
