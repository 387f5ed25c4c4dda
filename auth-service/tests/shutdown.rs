//! Readiness-first graceful shutdown: on the signal `/readyz` turns 503 while both listeners and
//! the open `WatchRevocations` streams keep serving for `AUTH_SHUTDOWN_DELAY` (Kubernetes
//! withdraws the endpoint meanwhile); then the listeners close, the streams end cleanly (so the
//! drain does not wait for them until `AUTH_SHUTDOWN_GRACE`), and `App::run` returns.

use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_service::config::RevocationConfig;
use platform::shutdown::Phase;
use reqwest::StatusCode;
use testkit::auth::{Said, spawn_auth_with, test_config};
use testkit::eventually;

const PASSWORD: &str = "correct horse battery";
/// Long enough to look at the service while it drains; the test never waits it out idly.
const DELAY: Duration = Duration::from_secs(3);

#[tokio::test]
async fn readiness_turns_off_first_then_the_listeners_close_and_revocation_streams_end() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let config = auth_service::Config {
        shutdown_delay: DELAY,
        revocation: RevocationConfig {
            heartbeat: Duration::from_millis(100),
            ..RevocationConfig::default()
        },
        ..test_config(dir.path())
    };
    let mut auth = spawn_auth_with(config, dir).await;
    let (status, body) = auth.readyz().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready");
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let verifier = auth.verifier_token().await;
    let mut watcher = auth.watch(&verifier, 0).await;
    let _ = watcher.until_heartbeat().await;
    let grpc_addr = auth
        .grpc_url
        .strip_prefix("http://")
        .expect("an http:// URL")
        .to_owned();

    auth.begin_shutdown();
    let signalled = Instant::now();
    eventually("readiness off", Duration::from_secs(5), || async {
        auth.readyz().await.0 == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    let (_, body) = auth.readyz().await;
    assert_eq!(body["status"], "shutting_down");
    assert_eq!(auth.state.lifecycle.phase(), Phase::Draining);

    // Not ready, yet still serving everything: new HTTP connections, logins, gRPC calls on a new
    // connection, and the open stream, which still carries heartbeats and live events.
    let fresh = reqwest::Client::new()
        .get(auth.url("/healthz"))
        .send()
        .await
        .expect("a new connection is accepted");
    assert_eq!(fresh.status(), StatusCode::OK);
    let login = auth.login("alice", PASSWORD).await;
    let sid = testkit::auth::sid_of(&login.access_token);
    assert!(auth.session_is_active(&verifier, &sid).await);
    assert!(matches!(watcher.next().await, Said::Heartbeat { .. }));
    let response = auth
        .http
        .post(auth.url("/v1/logout"))
        .bearer_auth(&login.access_token)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let ended = watcher.next_event().await;
    assert_eq!(ended.sequence, 1);
    assert!(
        signalled.elapsed() < DELAY,
        "the checks above ran within the delay (took {:?}); raise DELAY",
        signalled.elapsed()
    );

    // Then the stream ends by itself, cleanly, once the listeners close.
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match watcher.stream.message().await {
                Ok(Some(_)) => {}
                Ok(None) => return Ok(()),
                Err(status) => return Err(status),
            }
        }
    })
    .await
    .expect("the stream ends long before the drain deadline");
    assert!(end.is_ok(), "the stream ended with an error: {end:?}");
    assert!(
        signalled.elapsed() >= DELAY,
        "the stream outlived the shutdown delay"
    );
    assert_eq!(auth.state.lifecycle.phase(), Phase::Stopping);

    eventually(
        "the gRPC listener closes",
        Duration::from_secs(5),
        || async { tokio::net::TcpStream::connect(&grpc_addr).await.is_err() },
    )
    .await;
    let http_url = auth.http_url.clone();
    // Far below the 20 s drain deadline: nothing is left to wait for.
    tokio::time::timeout(Duration::from_secs(5), auth.stop())
        .await
        .expect("the server drains promptly");
    assert!(
        reqwest::get(format!("{http_url}/healthz")).await.is_err(),
        "the HTTP listener is closed"
    );
}
