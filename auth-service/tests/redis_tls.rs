//! The issuer's Redis session store over TLS: `REDIS_URL=rediss://...` with `REDIS_CA_FILE`.
//! Sessions are written to and ended in a Redis that speaks TLS only; a server whose
//! certificate is not from the configured CA, or not for the URL's host, keeps the issuer from
//! starting (it needs its store). Against a `redis-server` of the test's own with a certificate
//! for `localhost` from a CA of its own ([`testkit::tls`]).

use std::sync::Arc;

use auth_service::sessions;
use authn::session::redis_session_key;
use testkit::auth::{sid_of, spawn_auth_with, test_config};
use testkit::tls::{TestPki, TlsRedis};

const PASSWORD: &str = "correct horse battery";

#[tokio::test]
#[ignore = "needs redis-server built with TLS: run with -- --include-ignored"]
async fn sessions_live_in_a_redis_reached_over_tls() {
    let pki = TestPki::new(&["localhost"]);
    let redis = TlsRedis::start(&pki);
    let url = redis.url("localhost");
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let config = auth_service::Config {
        redis_url: Some(url.clone()),
        redis_ca_file: Some(pki.ca_file.clone()),
        ..test_config(dir.path())
    };
    let auth = spawn_auth_with(config, dir).await;
    assert_eq!(auth.state.sessions.backend(), "redis");
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let login = auth.login("alice", PASSWORD).await;
    let sid = sid_of(&login.access_token);

    // The record is in that Redis, read over a TLS connection of our own.
    let (_, mut conn) = sessions::redis::connect(&url, Some(&pki.ca_file))
        .await
        .expect("TLS connection");
    let exists: bool = redis::cmd("EXISTS")
        .arg(redis_session_key(&sid))
        .query_async(&mut conn)
        .await
        .expect("EXISTS");
    assert!(exists, "the session is stored in the TLS Redis");

    let response = auth
        .http
        .post(auth.url("/v1/logout"))
        .bearer_auth(&login.access_token)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 204);
    let exists: bool = redis::cmd("EXISTS")
        .arg(redis_session_key(&sid))
        .query_async(&mut conn)
        .await
        .expect("EXISTS");
    assert!(!exists, "the logout ended it there");
    auth.stop().await;
}

#[tokio::test]
#[ignore = "needs redis-server built with TLS: run with -- --include-ignored"]
async fn the_issuer_refuses_to_start_on_a_redis_it_cannot_verify() {
    let pki = TestPki::new(&["localhost"]);
    let stranger = TestPki::new(&["localhost"]);
    let redis = TlsRedis::start(&pki);
    let dir = tempfile::tempdir().expect("tempdir");
    for (url, ca_file, expected) in [
        (
            redis.url("localhost"),
            Some(&stranger.ca_file),
            "UnknownIssuer",
        ),
        (redis.url("localhost"), None, "UnknownIssuer"),
        (
            redis.url("127.0.0.1"),
            Some(&pki.ca_file),
            "not valid for name",
        ),
    ] {
        let config = auth_service::Config {
            redis_url: Some(url.clone()),
            redis_ca_file: ca_file.cloned(),
            ..test_config(dir.path())
        };
        match auth_service::App::build(config).await {
            Err(auth_service::BuildError::Redis(error)) => {
                assert!(error.to_string().contains(expected), "{url}: {error}");
            }
            Err(other) => panic!("{url}: {other}"),
            Ok(_) => panic!("{url}: the issuer started"),
        }
    }
}
