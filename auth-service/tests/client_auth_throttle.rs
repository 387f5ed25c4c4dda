//! Client authentication throttling (class 22, issue "Nothing lost, nothing let in"): failed
//! client authentications at `/oauth/token`, `/oauth/revoke` and `/oauth/introspect` are counted
//! per client id (registered or not) and per client address, and checked *before* Argon2, so a
//! flood of bad credentials costs a bounded number of Argon2 runs; the password grant checks the
//! login throttle before the client's Argon2. Counted (`Passwords::verifications`), never timed.

use std::sync::Arc;
use std::time::Duration;

use auth_service::Config;
use auth_service::config::{ClientAuthThrottleConfig, LoginThrottleConfig};
use platform::client_addr::TrustedProxies;
use testkit::auth::{TestAuth, spawn_auth, spawn_auth_with, test_config};
use testkit::logs::ProcessLogs;

const PASSWORD: &str = "correct horse battery";
const WRONG: &str = "not the secret";
const CLIENT_THROTTLED: &str = r#"{"error":"temporarily_unavailable","error_description":"too many failed client authentications: try again later"}"#;
const BAD_CLIENT: &str =
    r#"{"error":"invalid_client","error_description":"client authentication failed"}"#;
const BUSY: &str = r#"{"error":"temporarily_unavailable","error_description":"the server is busy: try again later"}"#;
const LOGIN_THROTTLED: &str =
    r#"{"error":"invalid_grant","error_description":"too many failed logins: try again later"}"#;

/// The answer to a request: status, `Retry-After`, body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: String,
}

impl Answer {
    async fn of(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().expect("ASCII").parse().expect("whole seconds"));
        let body = response.text().await.expect("body");
        Self {
            status,
            retry_after,
            body,
        }
    }

    /// What tells answers apart for a caller: the status, the body, and whether there is a
    /// `Retry-After` (its value depends on the time).
    fn shape(&self) -> (u16, String, bool) {
        (self.status, self.body.clone(), self.retry_after.is_some())
    }
}

/// `grant_type=client_credentials` with the credentials in the body (`client_secret_post`),
/// optionally as coming from `forwarded_for` through a trusted proxy.
async fn client_credentials(
    auth: &TestAuth,
    id: &str,
    secret: &str,
    forwarded_for: Option<&str>,
) -> Answer {
    let mut request = auth.http.post(auth.url("/oauth/token")).form(&[
        ("grant_type", "client_credentials"),
        ("client_id", id),
        ("client_secret", secret),
    ]);
    if let Some(address) = forwarded_for {
        request = request.header("x-forwarded-for", address);
    }
    Answer::of(request.send().await.expect("token request sent")).await
}

/// An auth-service whose client-authentication throttle locks a client id after three failures
/// (no delays, no address scope, a long lock), behind a trusted proxy on loopback so that each
/// request names its client address in `X-Forwarded-For`, and reading client rows on every
/// request.
async fn spawn_locking_after_three() -> TestAuth {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let config = Config {
        client_auth_throttle: ClientAuthThrottleConfig {
            throttle_after: 0,
            lock_after: 3,
            address_throttle_after: 0,
            address_lock_after: 0,
            lock_duration: Duration::from_secs(300),
            ..ClientAuthThrottleConfig::default()
        },
        trusted_proxies: TrustedProxies::parse("127.0.0.1/32").expect("networks"),
        client_cache_ttl: Duration::ZERO,
        ..test_config(dir.path())
    };
    spawn_auth_with(config, dir).await
}

/// Fails `times` client authentications of `id` from `address`.
async fn fail_as(auth: &TestAuth, id: &str, address: &str, times: usize) {
    for _ in 0..times {
        let answer = client_credentials(auth, id, WRONG, Some(address)).await;
        assert_eq!((answer.status, answer.body.as_str()), (401, BAD_CLIENT));
    }
}

/// `burst` concurrent `client_credentials` requests of `id` with a wrong secret.
async fn burst_of_bad_secrets(auth: &TestAuth, id: &str, burst: usize) -> Vec<Answer> {
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..burst {
        let (http, url, id) = (auth.http.clone(), auth.url("/oauth/token"), id.to_owned());
        requests.spawn(async move {
            let form = [
                ("grant_type", "client_credentials"),
                ("client_id", id.as_str()),
                ("client_secret", WRONG),
            ];
            Answer::of(http.post(url).form(&form).send().await.expect("sent")).await
        });
    }
    requests.join_all().await
}

/// With the documented defaults (a client id is delayed after 5 failures and locked after 10),
/// a burst of 40 concurrent bad client authentications runs Argon2 at most 10 times, for a
/// registered client as for an unknown one (each on an issuer of its own, so that both come
/// from an address with a clean record); every other request is refused unchecked with
/// `Retry-After` and a generic body: 429 by the throttle, or 503 once the address has failures
/// on record and every Argon2 permit is busy (a suspect caller does not wait). The same for
/// both.
#[tokio::test]
async fn bad_client_authentications_beyond_the_throttle_cost_no_argon2_run() {
    let ghost = format!("ghost-{}", uuid::Uuid::new_v4().simple());
    let mut shapes = Vec::new();
    for id in ["svc", ghost.as_str()] {
        let auth = spawn_auth().await;
        auth.create_client("svc", "orders:read", "").await;
        let before = auth.state.passwords.verifications();
        let answers = burst_of_bad_secrets(&auth, id, 40).await;
        let verified = auth.state.passwords.verifications() - before;
        let checked = answers.iter().filter(|a| a.status == 401).count();
        assert!(
            verified <= 10,
            "{id}: {verified} Argon2 runs for 40 bad secrets (at most the lock threshold, 10)"
        );
        assert_eq!(
            checked as u64, verified,
            "{id}: one Argon2 run per checked request, none for a refused one: {answers:?}"
        );
        for answer in &answers {
            match answer.status {
                401 => assert_eq!(
                    (answer.body.as_str(), answer.retry_after),
                    (BAD_CLIENT, None)
                ),
                429 => {
                    assert_eq!(answer.body, CLIENT_THROTTLED);
                    assert!(answer.retry_after.is_some_and(|s| s >= 1), "{answer:?}");
                }
                503 => assert_eq!((answer.body.as_str(), answer.retry_after), (BUSY, Some(1))),
                other => panic!("{id}: unexpected status {other}: {answer:?}"),
            }
        }
        assert!(
            answers.iter().any(|a| a.status == 429),
            "{id}: the throttle refused: {answers:?}"
        );
        let mut distinct: Vec<_> = answers
            .iter()
            .filter(|a| a.status != 503)
            .map(Answer::shape)
            .collect();
        distinct.sort();
        distinct.dedup();
        shapes.push(distinct);
    }
    assert_eq!(
        shapes[0], shapes[1],
        "a registered and an unknown client alike"
    );
}

/// In the password grant the login throttle is checked before the client's credentials: a
/// throttled login costs no Argon2 run at all, whatever client credentials it carries.
#[tokio::test]
async fn the_password_grant_checks_the_login_throttle_before_any_argon2() {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let config = Config {
        login_throttle: LoginThrottleConfig {
            throttle_after: 0,
            lock_after: 3,
            address_throttle_after: 0,
            address_lock_after: 0,
            ..LoginThrottleConfig::default()
        },
        ..test_config(dir.path())
    };
    let auth = spawn_auth_with(config, dir).await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let secret = auth.create_client("web", "orders:read", "").await;
    for _ in 0..3 {
        let response = auth
            .post_token(&[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", WRONG),
            ])
            .await;
        assert_eq!(response.status(), 400);
    }

    // Locked. A login through a client, with a wrong client secret and with the right one (never
    // verified before, so not remembered either), is refused by the login throttle unchecked.
    for client_secret in [WRONG, secret.as_str()] {
        let before = auth.state.passwords.verifications();
        let response = auth
            .http
            .post(auth.url("/oauth/token"))
            .basic_auth("web", Some(client_secret))
            .form(&[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", PASSWORD),
            ])
            .send()
            .await
            .expect("token request sent");
        let answer = Answer::of(response).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (429, LOGIN_THROTTLED),
            "{answer:?}"
        );
        assert_eq!(
            auth.state.passwords.verifications(),
            before,
            "no Argon2 run, neither for the client secret nor for the password"
        );
    }
}

/// A client id locked by failures does not lock out another client, even from the same address;
/// the locked one is refused unchecked, the right secret included.
#[tokio::test]
async fn a_throttled_client_id_does_not_block_another_client() {
    let auth = spawn_locking_after_three().await;
    let svc = auth.create_client("svc", "orders:read", "").await;
    let other = auth.create_client("other", "orders:read", "").await;
    let here = "203.0.113.5";
    fail_as(&auth, "svc", here, 3).await;

    let before = auth.state.passwords.verifications();
    let refused = client_credentials(&auth, "svc", &svc, Some(here)).await;
    assert_eq!(
        (refused.status, refused.body.as_str()),
        (429, CLIENT_THROTTLED)
    );
    assert_eq!(
        auth.state.passwords.verifications(),
        before,
        "no Argon2 run"
    );

    let answer = client_credentials(&auth, "other", &other, Some(here)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

/// The endpoints that authenticate clients besides the token endpoint are throttled alike.
#[tokio::test]
async fn revocation_and_introspection_are_throttled_alike() {
    let auth = spawn_locking_after_three().await;
    let svc = auth.create_client("svc", "orders:read", "").await;
    fail_as(&auth, "svc", "203.0.113.5", 3).await;
    for path in ["/oauth/introspect", "/oauth/revoke"] {
        let before = auth.state.passwords.verifications();
        let response = auth
            .http
            .post(auth.url(path))
            .basic_auth("svc", Some(&svc))
            .header("x-forwarded-for", "203.0.113.5")
            .form(&[("token", "whatever")])
            .send()
            .await
            .expect("sent");
        let answer = Answer::of(response).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (429, CLIENT_THROTTLED),
            "{path}"
        );
        assert!(answer.retry_after.is_some());
        assert_eq!(auth.state.passwords.verifications(), before, "{path}");
    }
}

/// A client whose id is locked by someone else keeps authenticating from the addresses it
/// authenticated from before (its recognised addresses), and with a secret verified within the
/// last minute from anywhere; from a new address an unverified secret waits for the lock.
#[tokio::test]
async fn a_locked_client_id_keeps_working_from_its_recognised_address() {
    let logs = ProcessLogs::install("info");
    let auth = spawn_locking_after_three().await;
    let secret = auth.create_client("gateway", "sessions:check", "").await;
    let home = "192.0.2.10";
    let answer = client_credentials(&auth, "gateway", &secret, Some(home)).await;
    assert_eq!(answer.status, 200, "{answer:?}");

    // Someone elsewhere fails as `gateway` until its id is locked.
    fail_as(&auth, "gateway", "198.51.100.66", 3).await;
    let locked = client_credentials(&auth, "gateway", WRONG, Some("198.51.100.66")).await;
    assert_eq!(locked.status, 429);

    // The secret verified a moment ago is remembered: accepted anywhere, no Argon2.
    let before = auth.state.passwords.verifications();
    let answer = client_credentials(&auth, "gateway", &secret, Some("192.0.2.77")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(auth.state.passwords.verifications(), before);

    // The secret rotates (a new hash: nothing remembered). From an address the client never
    // used it is refused unchecked; from home it is checked with Argon2 and accepted.
    let rotated = "a-rotated-secret-of-the-gateway";
    let hash = auth
        .state
        .passwords
        .hash(&rotated.to_owned().into())
        .await
        .expect("hash");
    sqlx::query("UPDATE clients SET secret_hash = $1 WHERE id = 'gateway'")
        .bind(hash)
        .execute(&auth.state.pool)
        .await
        .expect("rotated");
    let before = auth.state.passwords.verifications();
    let answer = client_credentials(&auth, "gateway", rotated, Some("192.0.2.99")).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (429, CLIENT_THROTTLED)
    );
    assert_eq!(auth.state.passwords.verifications(), before);
    let answer = client_credentials(&auth, "gateway", rotated, Some(home)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(auth.state.passwords.verifications(), before + 1);
    // Like a login's, a success clears the client id's count: the new address gets through.
    let answer = client_credentials(&auth, "gateway", rotated, Some("192.0.2.99")).await;
    assert_eq!(answer.status, 200, "{answer:?}");

    // Counted, and audited by client id, once.
    let metrics = auth.metrics().await;
    for series in [
        r#"auth_client_auth_throttled_total{scope="client",action="locked"}"#,
        r#"auth_client_auth_lockouts_total{scope="client"}"#,
    ] {
        assert!(metrics.contains(series), "{series} missing from {metrics}");
    }
    let audit: Vec<_> = logs
        .lines()
        .into_iter()
        .filter(|line| line.contains("client_auth_locked") && line.contains("gateway"))
        .collect();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert!(audit[0].contains(r#"scope="client""#), "{audit:?}");
    assert!(!audit[0].contains(WRONG), "{audit:?}");
}

/// The lock of an unknown client id is audited without the id (it is whatever the caller
/// sent), and answers like a registered one.
#[tokio::test]
async fn an_unknown_client_id_is_locked_like_a_registered_one_and_not_named() {
    let logs = ProcessLogs::install("info");
    let auth = spawn_locking_after_three().await;
    auth.create_client("svc", "orders:read", "").await;
    let ghost = format!("ghost-{}", uuid::Uuid::new_v4().simple());
    let mut transcripts = Vec::new();
    for id in ["svc", ghost.as_str()] {
        let mut transcript = Vec::new();
        for _ in 0..5 {
            let answer = client_credentials(&auth, id, WRONG, Some("203.0.113.9")).await;
            transcript.push(answer.shape());
        }
        transcripts.push(transcript);
    }
    assert_eq!(transcripts[0], transcripts[1]);
    assert_eq!(
        transcripts[0][3],
        (429, CLIENT_THROTTLED.to_owned(), true),
        "{transcripts:?}"
    );
    let text = logs.text();
    assert!(!text.contains(&ghost), "the unknown id is never logged");
    assert!(
        text.lines()
            .any(|line| line.contains("client_auth_locked") && !line.contains("client_id")),
        "the unknown id's lock is audited without an id"
    );
}
