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
            ..
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

    // A watcher "ahead" of the log (another deployment's, or a log restored from a backup) is
    // reset, gets every retained event from the start, then new events.
    let mut confused = auth.watch(&verifier, 1_000).await;
    let reset = expect_reset(&mut confused).await;
    assert_eq!((reset.reason.as_str(), reset.head_sequence), ("behind", 9));
    let (events, head) = confused.until_heartbeat().await;
    assert_eq!(sequences(&events), (1..=9).collect::<Vec<_>>());
    assert_eq!(head, 9);
    append_events(&auth, 1).await;
    assert_eq!(confused.next_event().await.sequence, 10);
}

async fn expect_reset(watcher: &mut testkit::auth::Watcher) -> proto::auth::v1::Reset {
    match watcher.next().await {
        Said::Reset(reset) => reset,
        other => panic!("expected a reset, got {other:?}"),
    }
}

/// The backlog up to the next heartbeat, with that heartbeat's head and epoch.
async fn backlog(watcher: &mut testkit::auth::Watcher) -> (Vec<RevocationEvent>, u64, String) {
    let mut events = Vec::new();
    loop {
        match watcher.next().await {
            Said::Event(event) => events.push(event),
            Said::Heartbeat {
                head_sequence,
                log_epoch,
                ..
            } => return (events, head_sequence, log_epoch),
            Said::Reset(reset) => panic!("unexpected reset {reset:?}"),
        }
    }
}

fn resume(after: &RevocationEvent, epoch: &str) -> WatchRevocationsRequest {
    WatchRevocationsRequest {
        after_sequence: after.sequence,
        log_epoch: epoch.to_owned(),
        after_fingerprint: after.fingerprint.clone(),
    }
}

/// A watcher resumes with its sequence, the log's epoch and the fingerprint of the event it
/// applied last: the issuer resumes it when all three are in its log, and resets it (then sends
/// every retained event) when the epoch differs, the sequence is above its head, or its event
/// with that sequence is another one.
#[tokio::test]
async fn a_watcher_is_resumed_only_where_its_position_is_in_the_log() {
    let auth = spawn_quick().await;
    let verifier = auth.verifier_token().await;
    append_events(&auth, 5).await;
    let mut watcher = auth.watch(&verifier, 0).await;
    let (events, head, epoch) = backlog(&mut watcher).await;
    assert_eq!((events.len(), head), (5, 5));
    assert_eq!(epoch.len(), 22, "a random epoch: {epoch:?}");
    let fingerprints: std::collections::HashSet<_> =
        events.iter().map(|e| e.fingerprint.clone()).collect();
    assert_eq!(fingerprints.len(), 5, "every event has its own fingerprint");
    assert!(fingerprints.iter().all(|f| f.len() == 22));

    // Where it left off: resumed.
    let mut resumed = auth.watch_from(&verifier, resume(&events[2], &epoch)).await;
    let (rest, head, _) = backlog(&mut resumed).await;
    assert_eq!((sequences(&rest), head), (vec![4, 5], 5));

    // Another event under that number, another epoch, a position above the head: reset.
    let mut other = events[2].clone();
    other.fingerprint = "another-event-entirely".into();
    let mut above = events[4].clone();
    above.sequence = 6;
    for (request, reason) in [
        (resume(&other, &epoch), "diverged"),
        (resume(&events[2], "another-epoch"), "epoch"),
        (resume(&above, &epoch), "behind"),
    ] {
        let mut reset = auth.watch_from(&verifier, request).await;
        let said = expect_reset(&mut reset).await;
        assert_eq!(said.reason, reason);
        assert_eq!(
            (said.log_epoch.as_str(), said.head_sequence),
            (epoch.as_str(), 5)
        );
        let (all, head, _) = backlog(&mut reset).await;
        assert_eq!(
            (sequences(&all), head),
            (vec![1, 2, 3, 4, 5], 5),
            "{reason}"
        );
    }
}

/// The log goes back under open streams (what a restore or a failover does to the table: the
/// last events gone, the counter lower, new events numbered again from there). The tailer
/// notices, writes a new epoch, and every open stream resets its watcher and delivers the log
/// again; a watcher resuming with the old epoch is reset too.
#[tokio::test]
async fn a_log_that_goes_back_under_open_streams_resets_them_with_a_new_epoch() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let quick = quick_config(&dir);
    let config = auth_service::Config {
        revocation: RevocationConfig {
            poll_interval: Duration::from_millis(100),
            ..quick.revocation
        },
        ..quick
    };
    let auth = spawn_auth_with(config, dir).await;
    let verifier = auth.verifier_token().await;
    append_events(&auth, 5).await;
    let mut watcher = auth.watch(&verifier, 0).await;
    let (before, _, epoch) = backlog(&mut watcher).await;

    // Back to 3, and two new events numbered 4 and 5 in the same transaction: the head is
    // where it was, only the events tell.
    let log = &auth.state.revocations;
    let mut tx = auth.state.pool.begin().await.expect("begin");
    sqlx::query("DELETE FROM revocation_events WHERE sequence > 3")
        .execute(&mut *tx)
        .await
        .expect("delete");
    sqlx::query("UPDATE revocation_sequence SET last_sequence = 3 WHERE id = 1")
        .execute(&mut *tx)
        .await
        .expect("rewind");
    let mut appended = Vec::new();
    for user in ["x", "y"] {
        let target = Target::UserDisabled {
            user_id: user.into(),
        };
        appended.push(
            log.append_in(&mut tx, &target, authn::unix_now())
                .await
                .expect("append"),
        );
    }
    tx.commit().await.expect("commit");
    for appended in appended {
        log.announce(appended).await;
    }

    let reset = loop {
        match watcher.next().await {
            Said::Reset(reset) => break reset,
            Said::Heartbeat { .. } => {}
            Said::Event(event) => panic!("an event of the new history before the reset: {event:?}"),
        }
    };
    assert_eq!(reset.reason, "restored");
    assert_ne!(reset.log_epoch, epoch, "a new epoch");
    let (after, head, new_epoch) = backlog(&mut watcher).await;
    assert_eq!((sequences(&after), head), (vec![1, 2, 3, 4, 5], 5));
    assert_eq!(new_epoch, reset.log_epoch);
    assert_eq!(after[..3], before[..3]);
    assert_ne!(after[3].fingerprint, before[3].fingerprint);
    assert_eq!(
        log.position().await.expect("position").epoch,
        new_epoch,
        "the new epoch is in the database, for the other replicas"
    );

    // A watcher that followed the old history is reset at once.
    let mut late = auth.watch_from(&verifier, resume(&before[4], &epoch)).await;
    assert_eq!(expect_reset(&mut late).await.reason, "epoch");
    // The head did not go down: the tailer told the histories apart by the event at its tail.
    let metrics = auth.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("auth_revocation_log_resets_total{reason=\"diverged\"}")),
        "{metrics}"
    );
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
    // Expired events are deleted by the purge (sessions/purge.rs).
    let config = auth_service::Config {
        purge: auth_service::config::PurgeConfig {
            interval: Duration::from_millis(50),
            ..quick.purge
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
    let request = || tonic::Request::new(WatchRevocationsRequest::default());

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

/// An issuer with quick heartbeats whose access tokens live `ttl`, and whose client rows are
/// re-read at every use.
async fn spawn_with_token_ttl(ttl: Duration) -> TestAuth {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let config = auth_service::Config {
        access_token_ttl: ttl,
        client_cache_ttl: Duration::ZERO,
        ..quick_config(&dir)
    };
    spawn_auth_with(config, dir).await
}

/// A stream is authorized for as long as the token that opened it: it ends with
/// `UNAUTHENTICATED` when that token expires, not when the connection happens to drop.
#[tokio::test]
async fn a_stream_ends_when_the_token_that_opened_it_expires() {
    let auth = spawn_with_token_ttl(Duration::from_secs(3)).await;
    let token = auth.verifier_token().await;
    let exp = testkit::auth::claims_of(&token)["exp"]
        .as_i64()
        .expect("exp");
    let mut watcher = auth.watch(&token, 0).await;
    let _ = watcher.until_heartbeat().await;
    let status = watcher
        .end_within(Duration::from_secs(10))
        .await
        .expect_err("the stream ends with an error");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let now = authn::unix_now();
    assert!(now >= exp, "not before the token expired ({now} < {exp})");
    assert!(
        now <= exp + 2,
        "soon after the token expired ({now} > {exp} + 2)"
    );
}

/// A stream ends when its client is removed (`UNAUTHENTICATED`) or loses `sessions:check`
/// (`PERMISSION_DENIED`), although the token that opened it has not expired.
#[tokio::test]
async fn a_stream_ends_when_its_client_is_removed_or_loses_its_scope() {
    let auth = spawn_with_token_ttl(Duration::from_secs(300)).await;
    for (id, change, code) in [
        (
            "removed",
            "DELETE FROM clients WHERE id = 'removed'",
            Code::Unauthenticated,
        ),
        (
            "demoted",
            "UPDATE clients SET scopes = 'orders:read' WHERE id = 'demoted'",
            Code::PermissionDenied,
        ),
    ] {
        let secret = auth.create_client(id, "sessions:check", "").await;
        let token = auth.client_token(id, &secret).await.access_token;
        let mut watcher = auth.watch(&token, 0).await;
        let _ = watcher.until_heartbeat().await;
        sqlx::query(change)
            .execute(&auth.state.pool)
            .await
            .expect("client changed");
        let status = watcher
            .end_within(Duration::from_secs(5))
            .await
            .expect_err("the stream ends with an error");
        assert_eq!(status.code(), code, "{id}: {status:?}");
    }
}

/// The `hybrid` verifier's feed, whose stream the issuer ends every time its token expires:
/// it gets a fresh token, resumes from its last sequence at once (fresh throughout), and misses
/// no event appended meanwhile.
#[tokio::test]
async fn a_verifier_whose_token_expires_reconnects_and_misses_nothing() {
    use authn::claims::AccessClaims;
    use authn::revocation::{FeedConfig, RevocationFeed};
    use authn::service_token::ServiceToken;
    use authn::{AuthError, RejectReason};

    let auth = spawn_with_token_ttl(Duration::from_secs(2)).await;
    let secret = auth.create_client("gateway", "sessions:check", "").await;
    let token = ServiceToken::new(
        auth.url("/oauth/token"),
        "gateway",
        secret.into(),
        Duration::from_secs(5),
    )
    .expect("service token");
    let feed = RevocationFeed::start(FeedConfig {
        grpc_url: auth.grpc_url.clone(),
        token: Arc::new(token),
        max_staleness: Duration::from_secs(1),
        fallback: None,
        jwks: None,
    })
    .expect("feed starts");
    eventually("the feed is fresh", Duration::from_secs(10), || async {
        feed.is_fresh()
    })
    .await;

    // Three token lifetimes of events, one every 100 ms.
    let mut last = 0;
    for i in 0..60 {
        let target = Target::SessionsEnded {
            session_ids: vec![format!("renewal-{i}")],
            user_id: "someone".into(),
            reason: EndReason::Logout,
        };
        last = auth
            .state
            .revocations
            .append(&target, authn::unix_now())
            .await
            .expect("appended");
        assert!(feed.is_fresh(), "stale after {i} events: {feed:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually(
        "the feed has applied every event",
        Duration::from_secs(10),
        || async { feed.last_sequence() == last },
    )
    .await;
    let now = authn::unix_now();
    for i in 0..60 {
        let claims = AccessClaims {
            iss: "i".into(),
            sub: "someone".into(),
            aud: "a".into(),
            exp: now + 60,
            iat: now,
            nbf: None,
            jti: "j".into(),
            scope: None,
            roles: vec![],
            sid: Some(format!("renewal-{i}")),
            client_id: None,
        };
        assert_eq!(
            feed.check("kid", &claims).await,
            Err(AuthError::Unauthenticated(RejectReason::Revoked)),
            "renewal-{i} was missed"
        );
    }
}
