//! Readiness-first graceful shutdown: on the signal `/readyz` turns 503 while the listener keeps
//! serving for `GATEWAY_SHUTDOWN_DELAY` (Kubernetes withdraws the endpoint meanwhile); then the
//! listener closes and in-flight requests finish within `GATEWAY_SHUTDOWN_GRACE`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use testkit::{Issuer, eventually, unreachable_url};

/// An auth-service stand-in that holds every request until [`GatedUpstream::open`].
struct GatedUpstream {
    url: String,
    arrived: Arc<AtomicUsize>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl GatedUpstream {
    async fn start() -> Self {
        let arrived = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let handler = {
            let (arrived, gate) = (arrived.clone(), gate.clone());
            move || {
                let (arrived, gate) = (arrived.clone(), gate.clone());
                async move {
                    arrived.fetch_add(1, Ordering::SeqCst);
                    let _open = gate.acquire().await;
                    "answered after the gate opened"
                }
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(
            async move { axum::serve(listener, axum::Router::new().fallback(handler)).await },
        );
        Self { url, arrived, gate }
    }

    fn open(&self) {
        self.gate.add_permits(1000);
    }
}

#[tokio::test]
async fn readiness_turns_off_before_the_listener_closes_and_in_flight_requests_complete() {
    let issuer = Issuer::start().await;
    let upstream = GatedUpstream::start().await;
    let app = gateway::App::build(gateway::Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        auth_http_url: upstream.url.clone(),
        orders_grpc_url: unreachable_url().await,
        auth: issuer.verifier_config(),
        // Long enough to look at the gateway while it drains; the test never waits it out idly.
        shutdown_delay: Duration::from_millis(500),
        ..gateway::Config::default()
    })
    .await
    .unwrap();
    let addr = app.gateway_addr();
    let url = |path: &str| format!("http://{addr}{path}");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run(async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    eventually("gateway ready", testkit::PATIENCE, || async {
        http.get(url("/readyz")).send().await.unwrap().status() == StatusCode::OK
    })
    .await;

    // A proxied request, held by the upstream: in flight for as long as the test wants.
    let in_flight = tokio::spawn(reqwest::Client::new().post(url("/oauth/token")).send());
    eventually("the request is in flight", testkit::PATIENCE, || async {
        upstream.arrived.load(Ordering::SeqCst) == 1
    })
    .await;

    stop.send(()).unwrap();
    eventually("readiness off", testkit::PATIENCE, || async {
        http.get(url("/readyz")).send().await.unwrap().status() == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    let body: serde_json::Value = http
        .get(url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "shutting_down");
    // Not ready, still serving, new connections included.
    let fresh = reqwest::Client::new()
        .get(url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), StatusCode::OK);

    eventually("the listener closes", testkit::PATIENCE, || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(!in_flight.is_finished(), "the upstream still holds it");

    upstream.open();
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.text().await.unwrap(),
        "answered after the gate opened"
    );
    let result = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("drained before the deadline")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}
