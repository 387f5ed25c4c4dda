//! Class 24 and issue hardening: secrets never leave. A whole session of use (logins, a failed
//! login, refreshes, a service token, orders, a revocation) runs through the real stack with
//! every log line of every service captured at debug level; then the captured logs, each
//! service's `/metrics` and every response body are searched for the passwords, the client
//! secret, the refresh tokens, the access tokens and the private key.

use auth_service::passwords::ExposeSecret as _;
use reqwest::Method;
use serde_json::{Value, json};
use testkit::logs::ProcessLogs;
use testkit::stack::{Options, PASSWORD, Stack};

#[tokio::test]
async fn no_secret_reaches_a_log_line_a_metric_or_a_response() {
    let logs = ProcessLogs::install(
        "debug,hyper=info,h2=info,tower=info,reqwest=info,sqlx=info,tonic=info",
    );
    platform::telemetry::prometheus();

    let stack = Stack::start(Options::default()).await;
    stack
        .add_user("alice", "user", "orders:read orders:write")
        .await;
    let mut bodies = Vec::new();
    let mut secrets = vec![PASSWORD.to_owned()];

    let wrong_password = "not-the-password-but-also-secret";
    secrets.push(wrong_password.to_owned());
    let failed = stack
        .http
        .post(stack.url("/oauth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", wrong_password),
        ])
        .send()
        .await
        .unwrap();
    bodies.push(failed.text().await.unwrap());

    let login = stack.login("alice", None).await;
    bodies.push(login.to_string());
    let access = login["access_token"].as_str().unwrap().to_owned();
    let refresh = login["refresh_token"].as_str().unwrap().to_owned();
    secrets.push(refresh.clone());

    let refreshed = stack
        .http
        .post(stack.url("/oauth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let refreshed: Value = refreshed.json().await.unwrap();
    secrets.push(refreshed["refresh_token"].as_str().unwrap().to_owned());
    // Reuse of the rotated token: refused, and the session ends.
    let reuse = stack
        .http
        .post(stack.url("/oauth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
        ])
        .send()
        .await
        .unwrap();
    bodies.push(reuse.text().await.unwrap());

    let (_, client_secret) = auth_service::clients::create(
        &stack.auth_state.pool,
        &stack.auth_state.passwords,
        auth_service::clients::NewClient {
            id: "reporting".into(),
            scopes: auth_service::scope::ScopeSet::parse("orders:read").unwrap(),
            roles: Vec::new(),
        },
    )
    .await
    .unwrap();
    secrets.push(client_secret.expose_secret().to_owned());
    let wrong_secret = "wrong-client-secret-value";
    secrets.push(wrong_secret.to_owned());
    for secret in [client_secret.expose_secret(), wrong_secret] {
        let response = stack
            .http
            .post(stack.url("/oauth/token"))
            .basic_auth("reporting", Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        bodies.push(response.text().await.unwrap());
    }

    let (_, order) = stack
        .rest(
            Method::POST,
            "/v1/orders",
            &access,
            Some(json!({"item": "tea", "quantity": 1})),
        )
        .await;
    bodies.push(order.to_string());
    let forged = format!("{access}x");
    let (_, refused) = stack.rest(Method::GET, "/v1/orders", &forged, None).await;
    bodies.push(refused.to_string());

    let metrics = stack
        .http
        .get(&stack.auth_metrics)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let key_pem = std::fs::read_dir(stack.data_dir().join("keys"))
        .unwrap()
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
        .collect::<Vec<_>>();
    assert!(!key_pem.is_empty());
    for pem in &key_pem {
        // Any 40-character line of the base64 body would betray the key.
        for line in pem.lines().filter(|l| !l.starts_with("-----")) {
            secrets.push(line.chars().take(40).collect());
        }
    }

    let logs = logs.text();
    assert!(logs.contains("auth_service"), "the logs were captured");
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret is in the logs: {secret:.12}…"
        );
        assert!(
            !metrics.contains(secret.as_str()),
            "a secret is in the metrics"
        );
    }
    // Access tokens are credentials too: not in logs or metrics either.
    for token in [&access, &forged] {
        assert!(
            !logs.contains(token.as_str()),
            "an access token is in the logs"
        );
        assert!(!metrics.contains(token.as_str()));
    }
    for body in &bodies {
        for secret in &secrets[..2] {
            assert!(
                !body.contains(secret.as_str()),
                "a password is echoed: {body}"
            );
        }
        assert!(!body.contains(&forged), "a refused token is echoed: {body}");
        for pem in &key_pem {
            assert!(!body.contains(pem.lines().nth(1).unwrap()));
        }
    }
}
