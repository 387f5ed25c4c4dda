//! The gateway's own endpoints: liveness, readiness, metrics, and unknown routes.

use std::time::Duration;

use axum::http::StatusCode;
use testkit::JwksServer;
use testkit::gateway::{json, spawn_stack, start_gateway};
use testkit::{Issuer, READ, eventually, unreachable_url};

#[tokio::test]
async fn readyz_waits_for_the_jwks() {
    let issuer = Issuer::start().await;
    let jwks = JwksServer::start(StatusCode::SERVICE_UNAVAILABLE, String::new()).await;
    let mut auth = issuer.issuer.verifier_config(&jwks.url());
    auth.jwks_min_refetch_interval = Duration::from_millis(100);
    let gateway = start_gateway(gateway::Config {
        orders_grpc_url: unreachable_url().await,
        auth_http_url: unreachable_url().await,
        auth,
        ..gateway::Config::default()
    })
    .await;

    let health = gateway.get("/healthz").send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    eventually("a first JWKS fetch", testkit::PATIENCE, || async {
        jwks.hits() >= 1
    })
    .await;
    let (status, body) = json(gateway.get("/readyz").send().await.unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "not_ready");

    jwks.respond(
        StatusCode::OK,
        serde_json::to_string(&issuer.issuer.jwks()).unwrap(),
    );
    eventually("gateway ready", testkit::PATIENCE, || async {
        gateway.get("/readyz").send().await.unwrap().status() == StatusCode::OK
    })
    .await;
}

#[tokio::test]
async fn metrics_count_requests_by_route() {
    platform::telemetry::prometheus();
    let stack = spawn_stack().await;
    let token = stack.issuer.user("alice", READ);
    let response = stack
        .gateway
        .get("/v1/orders")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let metrics = stack.gateway.get_metrics().send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    // The public port routes every path (the web app lives at `/`), never the metrics.
    let public = stack.gateway.get("/metrics").send().await.unwrap();
    assert_ne!(public.status(), StatusCode::OK);
    let public = public.text().await.unwrap();
    assert!(!public.contains("gateway_requests_total"), "{public}");
    assert!(text.contains("gateway_requests_total"), "{text}");
    assert!(text.contains(r#"route="/v1/orders""#), "{text}");
    assert!(!text.contains(&token), "metrics never carry a token");
}

#[tokio::test]
async fn unknown_routes_are_404_json() {
    let stack = spawn_stack().await;
    let (status, body) = json(stack.gateway.get("/nope").send().await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
}

#[tokio::test]
async fn run_returns_once_shutdown_is_signalled() {
    let issuer = Issuer::start().await;
    let app = gateway::App::build(gateway::Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        orders_grpc_url: unreachable_url().await,
        auth_http_url: unreachable_url().await,
        auth: issuer.verifier_config(),
        ..gateway::Config::default()
    })
    .await
    .unwrap();
    let addr = app.gateway_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run(async move {
        let _ = stopped.await;
    }));
    let health = reqwest::get(format!("http://{addr}/healthz"))
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
        reqwest::get(format!("http://{addr}/healthz"))
            .await
            .is_err()
    );
}
