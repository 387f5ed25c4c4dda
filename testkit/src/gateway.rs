//! The real gateway on port 0, and a stub HTTP server standing in for the auth-service
//! (feature `gateway`); with the real orders-service behind it (features `gateway` and
//! `orders`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;

#[cfg(feature = "orders")]
use crate::orders::{Orders, spawn_orders};
use crate::{Issuer, PATIENCE, eventually};

/// A running gateway; stopped when dropped.
pub struct Gateway {
    pub addr: SocketAddr,
    /// Where its `GET /metrics` listens.
    pub metrics_addr: SocketAddr,
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
    eventually("gateway ready", PATIENCE, || async {
        gateway.get("/readyz").send().await.unwrap().status() == StatusCode::OK
    })
    .await;
    gateway
}

/// Starts the real gateway with `config` on port 0, without waiting for readiness.
pub async fn start_gateway(config: gateway::Config) -> Gateway {
    let config = gateway::Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        ..config
    };
    let app = gateway::App::build(config).await.expect("gateway builds");
    let (addr, metrics_addr) = (app.gateway_addr(), app.metrics_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run(async move {
        let _ = stopped.await;
    }));
    Gateway {
        addr,
        metrics_addr,
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

    /// `GET /metrics` on the metrics listener.
    pub fn get_metrics(&self) -> reqwest::RequestBuilder {
        self.http
            .get(format!("http://{}/metrics", self.metrics_addr))
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

/// Issuer, orders-service, stub auth-service and gateway, wired together.
#[cfg(feature = "orders")]
pub struct Stack {
    pub issuer: Issuer,
    pub orders: Orders,
    pub auth: StubAuth,
    pub gateway: Gateway,
}

#[cfg(feature = "orders")]
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

/// The status and JSON body of a response.
pub async fn json(response: reqwest::Response) -> (StatusCode, serde_json::Value) {
    let status = response.status();
    let body = response.json().await.expect("a JSON body");
    (status, body)
}
