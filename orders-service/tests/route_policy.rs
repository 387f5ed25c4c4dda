//! `AUTH_ROUTE_POLICY` at orders-service: a method named in the policy is checked at its level,
//! the others follow `AUTH_MODE`; a policy the service cannot honour stops it at start, naming
//! the entry at fault.

use std::process::Command;
use std::time::Duration;

use authn::RoutePolicy;
use authn::config::{AuthMode, VerifierConfig};
use proto::orders::v1::OrderStatus;
use secrecy::SecretString;
use testkit::auth::{TEST_AUDIENCE, TEST_ISSUER, TestAuth, spawn_auth};
use testkit::orders::spawn_orders_with;
use testkit::{PATIENCE, eventually};
use tonic::Code;

const PASSWORD: &str = "correct horse battery staple";

/// orders-service trusting `auth`, with its own client at the issuer (scope `sessions:check`),
/// in `mode` with `policy`.
async fn verifier_of(auth: &TestAuth, mode: AuthMode, policy: &str) -> VerifierConfig {
    let secret = auth.create_client("orders", "sessions:check", "").await;
    VerifierConfig {
        issuer: TEST_ISSUER.into(),
        audience: TEST_AUDIENCE.into(),
        jwks_url: auth.jwks_url(),
        grpc_url: auth.grpc_url.clone(),
        token_url: auth.url("/oauth/token"),
        client_id: Some("orders".into()),
        client_secret: Some(SecretString::from(secret)),
        mode,
        route_policy: RoutePolicy::parse(policy).unwrap(),
        ..VerifierConfig::default()
    }
}

#[tokio::test]
async fn stateless_with_live_cancel_a_logged_out_token_lists_orders_but_cancels_none() {
    let auth = spawn_auth().await;
    auth.create_user("alice", PASSWORD, "user", "orders:read orders:write")
        .await;
    let config = verifier_of(
        &auth,
        AuthMode::Stateless,
        "/orders.v1.OrderService/CancelOrder=live",
    )
    .await;
    let orders = spawn_orders_with(config).await;
    eventually("orders-service ready", PATIENCE, || async {
        orders.readyz().await == reqwest::StatusCode::OK
    })
    .await;

    let token = auth.login("alice", PASSWORD).await.access_token;
    let alice = orders.with_token(&token);
    let first = alice.create("book", 1).await.unwrap();
    let second = alice.create("pen", 2).await.unwrap();
    assert_eq!(
        alice.cancel(&first.id).await.unwrap().status(),
        OrderStatus::Cancelled,
        "a live session cancels"
    );

    let logout = auth
        .http
        .post(auth.url("/v1/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), reqwest::StatusCode::NO_CONTENT);

    // The other methods follow the mode: the token stands until it expires.
    assert_eq!(alice.list_all(10).await.unwrap().len(), 2);
    assert_eq!(alice.get(&second.id).await.unwrap(), second);
    assert!(alice.create("cup", 1).await.is_ok());
    // CancelOrder asks the issuer now.
    let refused = alice.cancel(&second.id).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert_eq!(
        refused.message(),
        "the access token is missing, malformed, expired or revoked"
    );
    assert_eq!(
        alice.get(&second.id).await.unwrap().status(),
        OrderStatus::Placed
    );

    // A new session of the same user cancels at once.
    let again = orders.with_token(auth.login("alice", PASSWORD).await.access_token);
    assert_eq!(
        again.cancel(&second.id).await.unwrap().status(),
        OrderStatus::Cancelled
    );
}

/// Runs the orders-service binary with `AUTH_ROUTE_POLICY=policy` (and `extra`), and returns
/// what it wrote to standard error; it must have refused to start.
fn refused_start(policy: &str, extra: &[(&str, &str)]) -> String {
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_orders-service"));
    command
        .env_clear()
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/orders.db", data.path().display()),
        )
        .env("ORDERS_GRPC_ADDR", "127.0.0.1:0")
        .env("ORDERS_HTTP_ADDR", "127.0.0.1:0")
        .env("AUTH_ROUTE_POLICY", policy)
        .env("RUST_LOG", "off");
    command.envs(extra.iter().copied());
    let output = wait_with_deadline(command);
    assert!(!output.status.success(), "{policy}: it started");
    String::from_utf8(output.stderr).unwrap()
}

/// A service that wrongly started would serve until killed: give it a deadline.
fn wait_with_deadline(mut command: Command) -> std::process::Output {
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("orders-service runs");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_policy_the_service_cannot_honour_stops_it_at_start() {
    let credentials = [
        ("AUTH_CLIENT_ID", "orders"),
        ("AUTH_CLIENT_SECRET", "secret"),
    ];
    // A method it does not serve (the gateway's route, or a misspelt method).
    let stderr = refused_start("/orders.v1.OrderService/CancelOrders=live", &credentials);
    assert!(
        stderr.contains(
            "AUTH_ROUTE_POLICY entry \"/orders.v1.OrderService/CancelOrders=live\": this \
             service has no such route; its routes: /orders.v1.OrderService/CreateOrder, \
             /orders.v1.OrderService/GetOrder, /orders.v1.OrderService/ListOrders, \
             /orders.v1.OrderService/CancelOrder"
        ),
        "{stderr}"
    );
    let stderr = refused_start("POST /v1/orders/{id}/cancel=live", &credentials);
    assert!(
        stderr.contains("this service has no such route"),
        "{stderr}"
    );

    // A level that does not exist: refused while the command line is read.
    let stderr = refused_start("/orders.v1.OrderService/CancelOrder=fresh", &credentials);
    assert!(
        stderr.contains(
            "AUTH_ROUTE_POLICY entry \"/orders.v1.OrderService/CancelOrder=fresh\": unknown \
             level \"fresh\" (expected token, pushed or live)"
        ),
        "{stderr}"
    );

    // `live` with no way to ask: neither REDIS_URL nor client credentials.
    let stderr = refused_start("/orders.v1.OrderService/CancelOrder=live", &[]);
    assert!(
        stderr.contains(
            "AUTH_ROUTE_POLICY entry \"/orders.v1.OrderService/CancelOrder=live\": `live` \
             needs a session lookup and this verifier has none"
        ),
        "{stderr}"
    );

    // `pushed` outside hybrid mode.
    let stderr = refused_start("/orders.v1.OrderService/ListOrders=pushed", &credentials);
    assert!(
        stderr.contains(
            "`pushed` needs the issuer's revocation feed, which runs with AUTH_MODE=hybrid only"
        ),
        "{stderr}"
    );
}
