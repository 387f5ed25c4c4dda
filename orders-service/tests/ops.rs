//! The operations listener: liveness, readiness (database and keys), metrics.

mod common;

use std::time::Duration;

use axum::http::StatusCode as AxumStatus;
use common::{Issuer, READ_WRITE, eventually, spawn_orders, spawn_orders_with};
use reqwest::StatusCode;
use shared::testing::JwksServer;

#[tokio::test]
async fn readyz_turns_ready_once_the_jwks_is_loaded() {
    let issuer = Issuer::start().await;
    // The issuer is not serving keys yet.
    let jwks = JwksServer::start(AxumStatus::SERVICE_UNAVAILABLE, String::new()).await;
    let mut auth = issuer.issuer.verifier_config(&jwks.url());
    auth.jwks_min_refetch_interval = Duration::from_millis(100);
    let orders = spawn_orders_with(auth).await;

    assert_eq!(orders.get_http("/healthz").await.status(), StatusCode::OK);
    eventually("a first JWKS fetch", || async { jwks.hits() >= 1 }).await;
    let not_ready = orders.get_http("/readyz").await;
    assert_eq!(not_ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = not_ready.json().await.unwrap();
    assert_eq!(body["checks"]["jwks"], false);
    assert_eq!(body["checks"]["database"], true);

    jwks.respond(
        AxumStatus::OK,
        serde_json::to_string(&issuer.issuer.jwks()).unwrap(),
    );
    eventually("orders-service ready", || async {
        orders.readyz().await == StatusCode::OK
    })
    .await;
}

#[tokio::test]
async fn metrics_count_requests_by_rpc_and_code() {
    let issuer = Issuer::start().await;
    let orders = spawn_orders(&issuer).await;
    let alice = orders.with_token(issuer.user("alice", READ_WRITE));
    alice.create("book", 1).await.unwrap();
    alice.get("not-a-uuid").await.unwrap_err();

    // The recorder is installed by telemetry set-up; tests install it as `main` would.
    shared::telemetry::prometheus();
    alice.create("book", 1).await.unwrap();
    alice.get("not-a-uuid").await.unwrap_err();

    let metrics = orders.get_http("/metrics").await;
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("orders_requests_total"), "{text}");
    assert!(text.contains(r#"rpc="CreateOrder""#), "{text}");
    assert!(text.contains(r#"code="INVALID_ARGUMENT""#), "{text}");
}

#[tokio::test]
async fn run_returns_once_shutdown_is_signalled() {
    let issuer = Issuer::start().await;
    let data = tempfile::tempdir().unwrap();
    let app = orders_service::App::build(orders_service::Config {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}/orders.db", data.path().display()),
        auth: issuer.verifier_config(),
        ..orders_service::Config::default()
    })
    .await
    .unwrap();
    let http_addr = app.http_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run(async move {
        let _ = stopped.await;
    }));
    let health = reqwest::get(format!("http://{http_addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("drained before the deadline")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert!(
        reqwest::get(format!("http://{http_addr}/healthz"))
            .await
            .is_err(),
        "the listener is closed"
    );
}
