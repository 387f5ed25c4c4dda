//! The operations listener: liveness, readiness (database, keys, shutdown), metrics; and the
//! readiness-first graceful shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use authn::jwk::JwkSet;
use axum::http::StatusCode as AxumStatus;
use reqwest::StatusCode;
use testkit::JwksServer;
use testkit::orders::{spawn_orders, spawn_orders_config, spawn_orders_with, test_config};
use testkit::{Issuer, READ_WRITE, eventually};

#[tokio::test]
async fn readyz_turns_ready_once_the_jwks_is_loaded() {
    let issuer = Issuer::start().await;
    // The issuer is not serving keys yet.
    let jwks = JwksServer::start(AxumStatus::SERVICE_UNAVAILABLE, String::new()).await;
    let mut auth = issuer.issuer.verifier_config(&jwks.url());
    auth.jwks_min_refetch_interval = Duration::from_millis(100);
    let orders = spawn_orders_with(auth).await;

    assert_eq!(orders.get_http("/healthz").await.status(), StatusCode::OK);
    eventually("a first JWKS fetch", testkit::PATIENCE, || async {
        jwks.hits() >= 1
    })
    .await;
    let not_ready = orders.get_http("/readyz").await;
    assert_eq!(not_ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = not_ready.json().await.unwrap();
    assert_eq!(body["checks"]["jwks"], false);
    assert_eq!(body["checks"]["database"], true);

    jwks.respond(
        AxumStatus::OK,
        serde_json::to_string(&issuer.issuer.jwks()).unwrap(),
    );
    eventually("orders-service ready", testkit::PATIENCE, || async {
        orders.readyz().await == StatusCode::OK
    })
    .await;
}

#[tokio::test]
async fn metrics_count_and_time_every_call_by_rpc_and_code() {
    // The recorder is installed by telemetry set-up; tests install it as `main` would.
    platform::telemetry::prometheus();
    let issuer = Issuer::start().await;
    let orders = spawn_orders(&issuer).await;
    let alice = orders.with_token(issuer.user("alice", READ_WRITE));
    alice.create("book", 1).await.unwrap();
    alice.get("not-a-uuid").await.unwrap_err();
    // Refused by the authentication layer, before any handler: counted all the same.
    orders.anonymous().get("not-a-uuid").await.unwrap_err();

    let metrics = orders.get_http("/metrics").await;
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    for expected in [
        r#"orders_requests_total{rpc="CreateOrder",code="OK"}"#,
        r#"orders_requests_total{rpc="GetOrder",code="INVALID_ARGUMENT"}"#,
        r#"orders_requests_total{rpc="GetOrder",code="UNAUTHENTICATED"}"#,
        // A histogram with buckets (aggregatable across pods), not a summary.
        r#"orders_request_duration_seconds_bucket{rpc="CreateOrder",code="OK",le="0.1"}"#,
        r#"orders_http_requests_total{method="GET",route="/readyz",status="200"}"#,
        "orders_http_request_duration_seconds_bucket",
        r#"db_pool_connections{state="idle"}"#,
        r#"db_pool_connections{state="in_use"}"#,
        "db_pool_max",
    ] {
        assert!(text.contains(expected), "{expected} missing in\n{text}");
    }
    assert!(!text.contains("quantile="), "no summaries: {text}");
}

#[tokio::test]
async fn calls_to_undeclared_methods_do_not_mint_metric_labels() {
    platform::telemetry::prometheus();
    let issuer = Issuer::start().await;
    let orders = spawn_orders(&issuer).await;
    let mut client = tonic::client::Grpc::new(
        tonic::transport::Endpoint::from_shared(format!("http://{}", orders.grpc_addr))
            .unwrap()
            .connect_lazy(),
    );
    client.ready().await.unwrap();
    let path = "/orders.v1.OrderService/NoSuchMethodA1b2C3"
        .parse()
        .unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let refused = client
        .unary(tonic::Request::new(()), path, codec)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    let text = orders.get_http("/metrics").await.text().await.unwrap();
    assert!(!text.contains("NoSuchMethodA1b2C3"), "{text}");
    assert!(
        text.contains(r#"orders_requests_total{rpc="unknown",code="UNAUTHENTICATED"}"#),
        "{text}"
    );
}

#[tokio::test]
async fn run_returns_once_shutdown_is_signalled() {
    let issuer = Issuer::start().await;
    let data = tempfile::tempdir().unwrap();
    let app = orders_service::App::build(test_config(
        format!("sqlite://{}/orders.db", data.path().display()),
        issuer.verifier_config(),
    ))
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

/// A JWKS endpoint that serves `first` once, then holds every later request until
/// [`GatedJwks::open`], and answers them with `then`: an RPC signed by a key only in `then`
/// waits (inside the service, in flight) for as long as the test wants.
struct GatedJwks {
    url: String,
    hits: Arc<AtomicUsize>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl GatedJwks {
    async fn start(first: JwkSet, then: JwkSet) -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let handler = {
            let (hits, gate) = (hits.clone(), gate.clone());
            move || {
                let (hits, gate) = (hits.clone(), gate.clone());
                let (first, then) = (first.clone(), then.clone());
                async move {
                    if hits.fetch_add(1, Ordering::SeqCst) == 0 {
                        return axum::Json(first);
                    }
                    let _open = gate.acquire().await;
                    axum::Json(then)
                }
            }
        };
        let router = axum::Router::new().fallback(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { url, hits, gate }
    }

    fn open(&self) {
        self.gate.add_permits(1000);
    }
}

#[tokio::test]
async fn shutdown_turns_readiness_off_first_then_drains_in_flight_calls() {
    let issuer = Issuer::start().await;
    let rotated = testkit::TestIssuer::new();
    let jwks = GatedJwks::start(
        issuer.issuer.jwks(),
        JwkSet::from_keys([
            issuer.issuer.signer().public_jwk(),
            rotated.signer().public_jwk(),
        ]),
    )
    .await;
    let mut auth = issuer.issuer.verifier_config(&jwks.url);
    auth.jwks_min_refetch_interval = Duration::ZERO;
    auth.jwks_timeout = Duration::from_secs(60);
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(
        format!("sqlite://{}/orders.db", data.path().display()),
        auth,
    );
    // Long enough to look at the service while it drains; the test never waits it out idly.
    config.shutdown_delay = Duration::from_millis(500);
    let orders = spawn_orders_config(config, data).await;
    eventually("orders-service ready", testkit::PATIENCE, || async {
        orders.readyz().await == StatusCode::OK
    })
    .await;

    // A call signed by a key the service has not fetched yet: it waits for the JWKS.
    let caller = orders.with_token(rotated.user_token("alice", READ_WRITE, &["user"]));
    let in_flight = tokio::spawn(async move { caller.create("in flight", 1).await });
    eventually("the call is in flight", testkit::PATIENCE, || async {
        jwks.hits.load(Ordering::SeqCst) >= 2
    })
    .await;

    orders.stop();
    eventually("readiness off", testkit::PATIENCE, || async {
        orders.readyz().await == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    let body: serde_json::Value = orders.get_http("/readyz").await.json().await.unwrap();
    assert_eq!(body["status"], "shutting_down");
    // Not ready, yet still serving: the listeners stay open for the delay.
    assert_eq!(orders.get_http("/healthz").await.status(), StatusCode::OK);
    assert!(
        tokio::net::TcpStream::connect(orders.grpc_addr)
            .await
            .is_ok(),
        "the gRPC listener is still open while readiness is off"
    );

    eventually("the gRPC listener closes", testkit::PATIENCE, || async {
        tokio::net::TcpStream::connect(orders.grpc_addr)
            .await
            .is_err()
    })
    .await;
    assert!(!in_flight.is_finished(), "still waiting for its keys");

    jwks.open();
    let order = in_flight
        .await
        .unwrap()
        .expect("the in-flight call completes");
    assert_eq!(order.item, "in flight");
    let result = tokio::time::timeout(Duration::from_secs(10), orders.stopped())
        .await
        .expect("drained before the deadline");
    assert!(result.is_ok(), "{result:?}");
}
