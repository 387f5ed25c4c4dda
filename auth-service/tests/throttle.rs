//! Login throttling (class 22): repeated failed password logins are delayed, then locked, per
//! account (known or unknown alike) and per client address; a success clears the account.
//! Durations are configured short; waits are polls with generous deadlines.

use std::sync::Arc;
use std::time::Duration;

use auth_service::Config;
use auth_service::config::LoginThrottleConfig;
use platform::client_addr::TrustedProxies;
use testkit::auth::{TestAuth, spawn_auth_with, test_config};
use testkit::logs::ProcessLogs;

const PASSWORD: &str = "correct horse battery";
const WRONG: &str = "not the password";
const BAD_CREDENTIALS: &str =
    r#"{"error":"invalid_grant","error_description":"invalid username or password"}"#;
const THROTTLED: &str =
    r#"{"error":"invalid_grant","error_description":"too many failed logins: try again later"}"#;
/// How long a test polls for a delay or a lock to pass.
const DEADLINE: Duration = Duration::from_secs(20);

/// An auth-service whose throttle is configured by `configure`; both scopes start switched off
/// so that each test turns on exactly what it exercises.
async fn spawn(configure: impl FnOnce(&mut Config)) -> TestAuth {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let mut config = Config {
        login_throttle: LoginThrottleConfig {
            throttle_after: 0,
            lock_after: 0,
            address_throttle_after: 0,
            address_lock_after: 0,
            lock_duration: Duration::from_secs(300),
            ..LoginThrottleConfig::default()
        },
        ..test_config(dir.path())
    };
    configure(&mut config);
    spawn_auth_with(config, dir).await
}

/// The answer to a password login: status, `Retry-After`, body.
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: String,
}

impl Answer {
    fn is_throttled(&self) -> bool {
        self.status == 429
    }

    /// Only the throttled answer carries a `Retry-After`, of at most `max` seconds.
    fn assert_throttled(&self, max: u64) {
        assert_eq!(
            (self.status, self.body.as_str()),
            (429, THROTTLED),
            "{self:?}"
        );
        let retry_after = self.retry_after.expect("Retry-After on a 429");
        assert!((1..=max).contains(&retry_after), "{self:?}");
    }

    fn assert_bad_credentials(&self) {
        assert_eq!(
            (self.status, self.body.as_str(), self.retry_after),
            (400, BAD_CREDENTIALS, None)
        );
    }
}

async fn login(
    auth: &TestAuth,
    username: &str,
    password: &str,
    forwarded_for: Option<&str>,
) -> Answer {
    let mut request = auth.http.post(auth.url("/oauth/token")).form(&[
        ("grant_type", "password"),
        ("username", username),
        ("password", password),
    ]);
    if let Some(address) = forwarded_for {
        request = request.header("x-forwarded-for", address);
    }
    let response = request.send().await.expect("token request sent");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("ASCII").parse().expect("whole seconds"));
    let body = response.text().await.expect("body");
    Answer {
        status,
        retry_after,
        body,
    }
}

/// Retries a login while it is throttled; returns the first answer that is not.
async fn login_once_allowed(auth: &TestAuth, username: &str, password: &str) -> Answer {
    let start = tokio::time::Instant::now();
    loop {
        let answer = login(auth, username, password, None).await;
        if !answer.is_throttled() {
            return answer;
        }
        assert!(start.elapsed() < DEADLINE, "still throttled: {answer:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn repeated_failures_are_delayed_then_locked_and_the_lock_holds_against_the_right_password() {
    let logs = ProcessLogs::install("info");
    let auth = spawn(|c| {
        c.login_throttle.throttle_after = 2;
        c.login_throttle.lock_after = 4;
        // Far longer than a password check, so the next request certainly comes before it ends.
        c.login_throttle.base_delay = Duration::from_secs(2);
        c.login_throttle.max_delay = Duration::from_secs(2);
        c.login_throttle.lock_duration = Duration::from_secs(3);
    })
    .await;
    let alice = auth
        .create_user("alice", PASSWORD, "user", "orders:read")
        .await;

    for _ in 0..2 {
        login(&auth, "alice", WRONG, None)
            .await
            .assert_bad_credentials();
    }
    // Delayed: refused without a look at the password, the right one included.
    login(&auth, "alice", PASSWORD, None)
        .await
        .assert_throttled(2);
    // Once the delay has passed, the password is checked again: two more failures lock.
    login_once_allowed(&auth, "alice", WRONG)
        .await
        .assert_bad_credentials();
    login_once_allowed(&auth, "alice", WRONG)
        .await
        .assert_bad_credentials();
    let locked = login(&auth, "alice", PASSWORD, None).await;
    locked.assert_throttled(3);

    // The right password is refused for as long as the lock lasts, then accepted.
    let start = tokio::time::Instant::now();
    let tokens = loop {
        let answer = login(&auth, "alice", PASSWORD, None).await;
        if answer.status == 200 {
            break answer;
        }
        answer.assert_throttled(3);
        assert!(start.elapsed() < DEADLINE, "the lock never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(tokens.body.contains("access_token"), "{tokens:?}");

    let metrics = auth.metrics().await;
    for series in [
        r#"auth_login_throttled_total{scope="account",action="delayed"}"#,
        r#"auth_login_throttled_total{scope="account",action="locked"}"#,
        r#"auth_login_lockouts_total{scope="account"}"#,
    ] {
        assert!(metrics.contains(series), "{series} missing from {metrics}");
    }
    assert!(!metrics.contains("alice"), "no username in a metric");

    // The lock is an audit event naming the user by id, never by name or password.
    let audit: Vec<_> = logs
        .lines()
        .into_iter()
        .filter(|line| line.contains("login_locked") && line.contains(&alice.id))
        .collect();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert!(audit[0].contains(r#"scope="account""#), "{audit:?}");
    for secret in [WRONG, PASSWORD, "alice"] {
        assert!(!audit[0].contains(secret), "{secret:?} logged: {audit:?}");
    }
}

#[tokio::test]
async fn an_unknown_user_is_throttled_exactly_like_a_known_one() {
    let auth = spawn(|c| {
        c.login_throttle.throttle_after = 2;
        c.login_throttle.lock_after = 3;
        c.login_throttle.base_delay = Duration::from_secs(60);
        c.login_throttle.max_delay = Duration::from_secs(60);
    })
    .await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let mallory = auth
        .create_user("mallory", PASSWORD, "user", "orders:read")
        .await;
    auth.disable_user(&mallory.id).await;

    let mut transcripts = Vec::new();
    // A known user with a wrong password, an unknown user, a disabled user with its password.
    for (username, password) in [
        ("alice", WRONG),
        ("nobody", PASSWORD),
        ("mallory", PASSWORD),
    ] {
        let mut transcript = Vec::new();
        for _ in 0..4 {
            let answer = login(&auth, username, password, None).await;
            transcript.push((answer.status, answer.body, answer.retry_after.is_some()));
        }
        transcripts.push(transcript);
    }
    assert_eq!(
        transcripts[0],
        [
            (400, BAD_CREDENTIALS.to_owned(), false),
            (400, BAD_CREDENTIALS.to_owned(), false),
            (429, THROTTLED.to_owned(), true),
            (429, THROTTLED.to_owned(), true),
        ]
    );
    assert_eq!(transcripts[1], transcripts[0], "unknown user");
    assert_eq!(transcripts[2], transcripts[0], "disabled user");
}

#[tokio::test]
async fn a_burst_of_concurrent_guesses_cannot_outrun_the_lock() {
    let auth = spawn(|c| c.login_throttle.lock_after = 3).await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (http, url) = (auth.http.clone(), auth.url("/oauth/token"));
        burst.spawn(async move {
            let form = [
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", WRONG),
            ];
            let response = http.post(url).form(&form).send().await.expect("sent");
            response.status().as_u16()
        });
    }
    let statuses = burst.join_all().await;
    let checked = statuses.iter().filter(|s| **s == 400).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((checked, refused), (3, 17), "{statuses:?}");
}

#[tokio::test]
async fn a_successful_login_clears_the_account_counter() {
    let auth = spawn(|c| c.login_throttle.lock_after = 3).await;
    auth.create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    for _ in 0..3 {
        for _ in 0..2 {
            login(&auth, "alice", WRONG, None)
                .await
                .assert_bad_credentials();
        }
        // Without the reset the third round's second failure would have locked long ago.
        auth.login("alice", PASSWORD).await;
    }
    // Three failures in a row do lock.
    for _ in 0..3 {
        login(&auth, "alice", WRONG, None)
            .await
            .assert_bad_credentials();
    }
    login(&auth, "alice", PASSWORD, None)
        .await
        .assert_throttled(300);
}

#[tokio::test]
async fn one_address_trying_many_usernames_is_locked_and_only_a_trusted_proxy_names_it() {
    let behind_proxy = spawn(|c| {
        c.login_throttle.address_lock_after = 5;
        c.trusted_proxies = TrustedProxies::parse("127.0.0.1/32").expect("networks");
    })
    .await;
    behind_proxy
        .create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    let attacker = Some("198.51.100.7");
    for i in 0..5 {
        login(&behind_proxy, &format!("user{i}"), WRONG, attacker)
            .await
            .assert_bad_credentials();
    }
    // Every account from that address, the right password included, is refused ...
    login(&behind_proxy, "alice", PASSWORD, attacker)
        .await
        .assert_throttled(300);
    login(&behind_proxy, "someone-else", WRONG, attacker)
        .await
        .assert_throttled(300);
    // ... while another client, and the proxy's own address, log in.
    let other = login(&behind_proxy, "alice", PASSWORD, Some("198.51.100.8")).await;
    assert_eq!(other.status, 200, "{other:?}");
    behind_proxy.login("alice", PASSWORD).await;
    let metrics = behind_proxy.metrics().await;
    for series in [
        r#"auth_login_throttled_total{scope="address",action="locked"}"#,
        r#"auth_login_lockouts_total{scope="address"}"#,
    ] {
        assert!(metrics.contains(series), "{series} missing from {metrics}");
    }
    assert!(!metrics.contains("198.51.100.7"), "no address in a metric");

    // Without a trusted proxy a client's X-Forwarded-For is ignored: changing it per request
    // does not escape its peer address's counter.
    let direct = spawn(|c| c.login_throttle.address_lock_after = 5).await;
    direct
        .create_user("alice", PASSWORD, "user", "orders:read")
        .await;
    for i in 0..5 {
        let forged = format!("203.0.113.{i}");
        login(&direct, &format!("user{i}"), WRONG, Some(&forged))
            .await
            .assert_bad_credentials();
    }
    login(&direct, "alice", PASSWORD, Some("203.0.113.99"))
        .await
        .assert_throttled(300);
}

#[tokio::test]
async fn the_default_configuration_throttles() {
    // No overrides: the documented defaults apply, delays after 5 failures and a lock after 10,
    // so the first refusal comes after the fifth failure and by the eleventh attempt at the latest.
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let auth = spawn_auth_with(test_config(dir.path()), dir).await;
    let mut failures = 0;
    let refused = loop {
        let answer = login(&auth, "nobody", WRONG, None).await;
        if answer.is_throttled() {
            break answer;
        }
        answer.assert_bad_credentials();
        failures += 1;
        assert!(failures <= 10, "ten failures and still no refusal");
    };
    assert!(failures >= 5, "refused after {failures} failures");
    refused.assert_throttled(15 * 60);
}
