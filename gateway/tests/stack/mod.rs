//! The whole platform in one test process: the real auth-service, orders-service and gateway on
//! port 0, the verifiers configured in a chosen mode, talking real HTTP and gRPC.
#![allow(dead_code)] // each test binary uses part of this module

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use auth_service::scope::{ScopeSet, parse_roles};
use auth_service::users::{self, NewUser};
use proto::orders::v1 as pb;
use proto::orders::v1::order_service_client::OrderServiceClient;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shared::config::{AuthMode, VerifierConfig};
use shared::service_token::Secret;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const ISSUER: &str = "https://auth.e2e.test";
pub const AUDIENCE: &str = "orders";
pub const PASSWORD: &str = "correct horse battery staple";

/// How the stack is put together.
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: AuthMode,
    /// Given to auth-service (session store and fan-out) and to the verifiers (stateful lookups).
    pub redis_url: Option<String>,
    /// Given to the verifiers only (to simulate an unreachable store).
    pub verifier_redis_url: Option<String>,
    pub max_staleness: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            mode: AuthMode::Stateless,
            redis_url: None,
            verifier_redis_url: None,
            max_staleness: Duration::from_secs(5),
        }
    }
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// The three services. Stopped when dropped (their tasks end with the test runtime).
pub struct Stack {
    pub options: Options,
    pub gateway: String,
    pub orders_grpc: String,
    pub auth_http: String,
    pub auth_state: auth_service::AppState,
    pub http: reqwest::Client,
    auth_config: auth_service::Config,
    auth: Option<Running>,
    _services: Vec<Running>,
    data: tempfile::TempDir,
}

impl Stack {
    pub async fn start(options: Options) -> Stack {
        let data = tempfile::tempdir().expect("temp dir");
        let dir = data.path();
        let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();

        let auth_config = auth_service::Config {
            http_addr: any_port,
            grpc_addr: any_port,
            database_url: format!("sqlite://{}/auth.db", dir.display()),
            keys_dir: dir.join("keys"),
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            redis_url: options.redis_url.clone(),
            ..auth_service::Config::default()
        };
        let auth = auth_service::App::build(auth_config.clone())
            .await
            .expect("auth-service builds");
        let auth_http = format!("http://{}", auth.http_addr());
        let auth_grpc = format!("http://{}", auth.grpc_addr());
        // A restart binds the same ports, so the verifiers' configuration stays valid.
        let auth_config = auth_service::Config {
            http_addr: auth.http_addr(),
            grpc_addr: auth.grpc_addr(),
            ..auth_config
        };
        let auth_state = auth.state().clone();
        let auth_running = run(|stopped| auth.run(stopped));

        let mut verifier = VerifierConfig {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            jwks_url: format!("{auth_http}/.well-known/jwks.json"),
            mode: options.mode,
            grpc_url: auth_grpc,
            token_url: format!("{auth_http}/oauth/token"),
            redis_url: options
                .verifier_redis_url
                .clone()
                .or(options.redis_url.clone()),
            max_staleness: options.max_staleness,
            ..VerifierConfig::default()
        };
        let mut services = Vec::new();

        let orders_secret = create_client(&auth_state, "orders", "sessions:check").await;
        verifier.client_id = Some("orders".into());
        verifier.client_secret = Some(Secret::new(orders_secret));
        let orders = orders_service::App::build(orders_service::Config {
            grpc_addr: any_port,
            http_addr: any_port,
            database_url: format!("sqlite://{}/orders.db", dir.display()),
            auth: verifier.clone(),
            ..orders_service::Config::default()
        })
        .await
        .expect("orders-service builds");
        let orders_grpc = format!("http://{}", orders.grpc_addr());
        let orders_ready = format!("http://{}/readyz", orders.http_addr());
        services.push(run(|stopped| orders.run(stopped)));

        let gateway_secret = create_client(&auth_state, "gateway", "sessions:check").await;
        verifier.client_id = Some("gateway".into());
        verifier.client_secret = Some(Secret::new(gateway_secret));
        let gateway = gateway::App::build(gateway::Config {
            addr: any_port,
            auth_http_url: auth_http.clone(),
            orders_grpc_url: orders_grpc.clone(),
            auth: verifier,
            ..gateway::Config::default()
        })
        .await
        .expect("gateway builds");
        let gateway_url = format!("http://{}", gateway.gateway_addr());
        services.push(run(|stopped| gateway.run(stopped)));

        let stack = Stack {
            options,
            gateway: gateway_url,
            orders_grpc,
            auth_http,
            auth_state,
            http: shared::http::client_builder().build().unwrap(),
            auth_config,
            auth: Some(auth_running),
            _services: services,
            data,
        };
        stack.wait_ready(&orders_ready).await;
        stack.wait_ready(&stack.url("/readyz")).await;
        stack
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway)
    }

    /// The directory holding the services' databases and the signing keys.
    pub fn data_dir(&self) -> &std::path::Path {
        self.data.path()
    }

    pub fn auth_url(&self, path: &str) -> String {
        format!("{}{path}", self.auth_http)
    }

    async fn wait_ready(&self, url: &str) {
        eventually(
            &format!("{url} is ready"),
            Duration::from_secs(10),
            || async {
                matches!(self.http.get(url).send().await, Ok(r) if r.status().is_success())
            },
        )
        .await;
    }

    /// Stops auth-service (both listeners), as an outage.
    pub async fn stop_auth(&mut self) {
        if let Some(auth) = self.auth.take() {
            auth.stop().await;
        }
    }

    /// Starts auth-service again on the same ports and database.
    pub async fn restart_auth(&mut self) {
        self.stop_auth().await;
        let app = auth_service::App::build(self.auth_config.clone())
            .await
            .expect("auth-service restarts");
        self.auth_state = app.state().clone();
        self.auth = Some(run(|stopped| app.run(stopped)));
    }

    pub async fn add_user(&self, username: &str, roles: &str, scopes: &str) -> String {
        users::create(
            &self.auth_state.pool,
            &self.auth_state.passwords,
            NewUser {
                username: username.into(),
                password: PASSWORD.to_owned().into(),
                roles: parse_roles(roles).unwrap(),
                scopes: ScopeSet::parse(scopes).unwrap(),
            },
        )
        .await
        .expect("user created")
        .id
    }

    /// Logs in through the gateway's `/oauth/token` (forwarded to auth-service).
    pub async fn login(&self, username: &str, scope: Option<&str>) -> Value {
        let mut form = vec![
            ("grant_type", "password"),
            ("username", username),
            ("password", PASSWORD),
        ];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let response = self
            .http
            .post(self.url("/oauth/token"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["cache-control"], "no-store");
        response.json().await.unwrap()
    }

    pub async fn token(&self, username: &str, scope: Option<&str>) -> String {
        self.login(username, scope).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A JSON request to the gateway with a bearer token.
    pub async fn rest(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    pub async fn create_order(&self, token: &str) -> String {
        let (status, body) = self
            .rest(
                Method::POST,
                "/v1/orders",
                token,
                Some(json!({"item": "coffee beans", "quantity": 2})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// The status the gateway answers `GET /v1/orders` with this token.
    pub async fn gateway_status(&self, token: &str) -> StatusCode {
        self.rest(Method::GET, "/v1/orders", token, None).await.0
    }

    /// The gRPC code orders-service answers `ListOrders` with this token.
    pub async fn orders_code(&self, token: &str) -> tonic::Code {
        match self.grpc(token).await.list().await {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        }
    }

    pub async fn grpc(&self, token: &str) -> OrdersAs {
        OrdersAs {
            client: OrderServiceClient::connect(self.orders_grpc.clone())
                .await
                .unwrap(),
            token: token.to_owned(),
        }
    }
}

fn run<F, Fut, T>(serve: F) -> Running
where
    F: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let (stop, stopped) = oneshot::channel::<()>();
    let future = serve(Box::pin(async move {
        let _ = stopped.await;
    }));
    let task = tokio::spawn(async move {
        let _ = future.await;
    });
    Running { stop, task }
}

async fn create_client(auth: &auth_service::AppState, id: &str, scopes: &str) -> String {
    let (_, secret) = auth_service::clients::create(
        &auth.pool,
        &auth.passwords,
        auth_service::clients::NewClient {
            id: id.into(),
            scopes: ScopeSet::parse(scopes).unwrap(),
            roles: Vec::new(),
        },
    )
    .await
    .expect("client created");
    secret.expose().to_owned()
}

/// Polls `condition` until it holds, failing the test after `within`.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if condition().await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A gRPC client of orders-service calling with one token.
pub struct OrdersAs {
    client: OrderServiceClient<tonic::transport::Channel>,
    token: String,
}

impl OrdersAs {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        shared::grpc::with_bearer(&mut request, &self.token).unwrap();
        request
    }

    pub async fn get(&mut self, id: &str) -> Result<pb::Order, tonic::Status> {
        let request = self.request(pb::GetOrderRequest { id: id.into() });
        self.client
            .get_order(request)
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn list(&mut self) -> Result<Vec<pb::Order>, tonic::Status> {
        let request = self.request(pb::ListOrdersRequest::default());
        self.client
            .list_orders(request)
            .await
            .map(|r| r.into_inner().orders)
    }

    pub async fn create(&mut self, item: &str, quantity: i32) -> Result<pb::Order, tonic::Status> {
        let request = self.request(pb::CreateOrderRequest {
            item: item.into(),
            quantity,
        });
        self.client
            .create_order(request)
            .await
            .map(tonic::Response::into_inner)
    }
}
