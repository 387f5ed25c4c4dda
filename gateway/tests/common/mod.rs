//! Test set-up: an issuer serving its JWKS, the real orders-service and the real gateway on
//! port 0, and a stub HTTP server standing in for the auth-service.
#![allow(dead_code)] // each test crate uses part of this module

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authn::config::VerifierConfig;
use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use testkit::{JwksServer, TestIssuer};

pub const READ: &str = "orders:read";
pub const WRITE: &str = "orders:write";
pub const READ_WRITE: &str = "orders:read orders:write";

/// A token issuer whose JWKS is served over HTTP, as the real auth-service does.
pub struct Issuer {
    pub issuer: TestIssuer,
    pub jwks: JwksServer,
}

impl Issuer {
    pub async fn start() -> Self {
        let issuer = TestIssuer::new();
        let jwks = issuer.serve_jwks().await;
        Self { issuer, jwks }
    }

    /// A valid token of a plain user.
    pub fn user(&self, sub: &str, scope: &str) -> String {
        self.issuer.user_token(sub, scope, &["user"])
    }

    /// A valid token of an administrator.
    pub fn admin(&self, sub: &str, scope: &str) -> String {
        self.issuer.user_token(sub, scope, &["admin"])
    }

    pub fn verifier_config(&self) -> VerifierConfig {
        self.issuer.verifier_config(&self.jwks.url())
    }
}

/// A running orders-service; stopped when dropped.
pub struct Orders {
    pub grpc_addr: SocketAddr,
    _data: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Orders {
    /// Where the gateway reaches it (`ORDERS_GRPC_URL`).
    pub fn url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }
}

/// Starts the real orders-service (the library, in-process) trusting `issuer`.
pub async fn spawn_orders(issuer: &Issuer) -> Orders {
    let data = tempfile::tempdir().expect("temp dir");
    let config = orders_service::Config {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}/orders.db", data.path().display()),
        auth: issuer.verifier_config(),
        ..orders_service::Config::default()
    };
    let app = orders_service::App::build(config)
        .await
        .expect("orders-service builds");
    let grpc_addr = app.grpc_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run(async move {
        let _ = stopped.await;
    }));
    Orders {
        grpc_addr,
        _data: data,
        _stop: stop,
    }
}

/// A running gateway; stopped when dropped.
pub struct Gateway {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Where the gateway sends what it does not answer itself.
pub struct Upstreams {
    /// `ORDERS_GRPC_URL`.
    pub orders: String,
    /// `AUTH_HTTP_URL`.
    pub auth: String,
}

/// Starts the real gateway trusting `issuer`, and waits until it is ready.
pub async fn spawn_gateway(issuer: &Issuer, upstreams: Upstreams) -> Gateway {
    let gateway = start_gateway(gateway::Config {
        orders_grpc_url: upstreams.orders,
        auth_http_url: upstreams.auth,
        auth: issuer.verifier_config(),
        ..gateway::Config::default()
    })
    .await;
    eventually("gateway ready", || async {
        gateway.get("/readyz").send().await.unwrap().status() == StatusCode::OK
    })
    .await;
    gateway
}

/// Starts the real gateway with `config` on port 0, without waiting for readiness.
pub async fn start_gateway(config: gateway::Config) -> Gateway {
    let config = gateway::Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..config
    };
    let app = gateway::App::build(config).await.expect("gateway builds");
    let addr = app.gateway_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run(async move {
        let _ = stopped.await;
    }));
    Gateway {
        addr,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        _stop: stop,
    }
}

impl Gateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path))
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path))
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path))
    }
}

/// A request as the stub auth-service received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Stands in for the auth-service: records every request and answers 201 with a fixed body,
/// some end-to-end headers and some hop-by-hop ones (which the gateway must not pass back).
pub struct StubAuth {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

pub const STUB_BODY: &str = r#"{"stub":"auth-service"}"#;

impl StubAuth {
    pub async fn start() -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let record = received.clone();
        let handler = move |request: Request| {
            let record = record.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
                record.lock().unwrap().push(Received {
                    method: parts.method,
                    path: parts.uri.path().to_owned(),
                    query: parts.uri.query().map(str::to_owned),
                    headers: parts.headers,
                    body,
                });
                (
                    StatusCode::CREATED,
                    [
                        ("content-type", "application/json"),
                        ("x-upstream", "stub"),
                        ("set-cookie", "__Host-refresh=r; Path=/; Secure; HttpOnly"),
                        ("cache-control", "no-store"),
                        ("connection", "x-upstream-private"),
                        ("x-upstream-private", "hop"),
                        ("keep-alive", "timeout=5"),
                        ("proxy-authenticate", "Basic"),
                    ],
                    STUB_BODY,
                )
                    .into_response()
            }
        };
        let router = axum::Router::new().fallback(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self {
            addr,
            received,
            task,
        }
    }

    /// `AUTH_HTTP_URL` for the gateway.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The one request received so far.
    pub fn only_request(&self) -> Received {
        let received = self.received();
        assert_eq!(received.len(), 1, "{received:#?}");
        received.into_iter().next().unwrap()
    }
}

impl Drop for StubAuth {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A URL where nothing listens (a port bound, then released).
pub async fn unreachable_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// Issuer, orders-service, stub auth-service and gateway, wired together.
pub struct Stack {
    pub issuer: Issuer,
    pub orders: Orders,
    pub auth: StubAuth,
    pub gateway: Gateway,
}

pub async fn spawn_stack() -> Stack {
    let issuer = Issuer::start().await;
    let orders = spawn_orders(&issuer).await;
    let auth = StubAuth::start().await;
    let gateway = spawn_gateway(
        &issuer,
        Upstreams {
            orders: orders.url(),
            auth: auth.url(),
        },
    )
    .await;
    Stack {
        issuer,
        orders,
        auth,
        gateway,
    }
}

/// Polls `condition` until it holds, failing the test after a deadline.
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The status and JSON body of a response.
pub async fn json(response: reqwest::Response) -> (StatusCode, serde_json::Value) {
    let status = response.status();
    let body = response.json().await.expect("a JSON body");
    (status, body)
}
