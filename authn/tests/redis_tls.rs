//! `stateful` verifiers reading the session store over TLS: `REDIS_URL=rediss://...` with
//! `REDIS_CA_FILE` (what the gateway and orders-service configure through
//! [`VerifierConfig`]). The server's certificate is checked against that CA and its name
//! against the URL's host; a wrong CA, a wrong name, no CA for a private one and the
//! `#insecure` fragment all fail closed. Against a `redis-server` of the test's own that
//! speaks TLS only, with a certificate for `localhost` from a CA of its own ([`testkit::tls`]).

use std::time::Duration;

use authn::config::{AuthMode, ConfigError, VerifierConfig};
use authn::session::redis::client;
use authn::session::{RedisSessionLookup, SessionLookup as _, redis_session_key};
use testkit::Issuer;
use testkit::tls::{TestPki, TlsRedis};

const TIMEOUT: Duration = Duration::from_secs(2);

/// The error of a lookup through a TLS connection that must not be made.
async fn refused(url: &str, ca_file: Option<&std::path::Path>) -> String {
    let lookup = RedisSessionLookup::new(url, ca_file, TIMEOUT).expect("configured");
    match lookup.is_active("any").await {
        Ok(active) => panic!("{url} answered {active}"),
        Err(error) => error.0,
    }
}

#[tokio::test]
#[ignore = "needs redis-server built with TLS: run with -- --include-ignored"]
async fn stateful_lookups_over_tls_check_the_ca_and_the_name() {
    let pki = TestPki::new(&["localhost"]);
    let stranger = TestPki::new(&["localhost"]);
    let redis = TlsRedis::start(&pki);
    let url = redis.url("localhost");

    // A stateful verifier configured as a service is, through REDIS_URL and REDIS_CA_FILE.
    let issuer = Issuer::start().await;
    let config = VerifierConfig {
        mode: AuthMode::Stateful,
        redis_url: Some(url.clone()),
        redis_ca_file: Some(pki.ca_file.clone()),
        ..issuer.verifier_config()
    };
    let verifier = config
        .build_verifier()
        .expect("a stateful verifier over TLS");
    let claims = issuer.issuer.claims("alice", "orders:read", &["user"]);
    let sid = claims.sid.clone().expect("a session id");
    let token = issuer.issuer.token(&claims);
    assert!(
        verifier.verify(&token).await.is_err(),
        "no session in the store yet"
    );
    let mut conn = client(&url, Some(&pki.ca_file))
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("TLS connection");
    let () = redis::cmd("SET")
        .arg(redis_session_key(&sid))
        .arg("{}")
        .query_async(&mut conn)
        .await
        .expect("SET");
    let principal = verifier
        .verify(&token)
        .await
        .expect("the session is active");
    assert_eq!(principal.sub(), "alice");

    // A certificate of another CA, or none given (the public roots know no test CA).
    let error = refused(&url, Some(&stranger.ca_file)).await;
    assert!(error.contains("UnknownIssuer"), "{error}");
    let error = refused(&url, None).await;
    assert!(error.contains("UnknownIssuer"), "{error}");
    // The right CA, another name: the certificate names localhost, not 127.0.0.1.
    let error = refused(&redis.url("127.0.0.1"), Some(&pki.ca_file)).await;
    assert!(error.contains("not valid for name"), "{error}");
    // Skipping the check is not built in.
    let error = refused(&format!("{url}/#insecure"), None).await;
    assert!(error.contains("insecure"), "{error}");
    // A plain connection to the TLS port gets no answer.
    assert!(
        !refused(&format!("redis://localhost:{}", redis.port), None)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_redis_ca_file_must_hold_a_certificate_and_go_with_rediss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").expect("write");
    let config = |url: &str| VerifierConfig {
        mode: AuthMode::Stateful,
        redis_url: Some(url.to_owned()),
        redis_ca_file: Some(empty.clone()),
        ..VerifierConfig::default()
    };
    for (url, expected) in [
        ("rediss://localhost:6380", "no certificate"),
        ("redis://localhost:6379", "rediss://"),
    ] {
        match config(url).build_verifier() {
            Err(ConfigError::Lookup(error)) => assert!(error.0.contains(expected), "{error}"),
            other => panic!("{url}: {:?}", other.map(|_| "a verifier")),
        }
    }
}
