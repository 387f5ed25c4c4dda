//! The whole system end to end: the real auth-service, orders-service and gateway, in-process
//! on port 0, talking real HTTP and gRPC. The verifiers know nothing but the issuer's JWKS URL.

use std::time::{Duration, Instant};

use auth_service::scope::{ScopeSet, parse_roles};
use auth_service::users::{self, NewUser};
use proto::orders::v1 as pb;
use proto::orders::v1::order_service_client::OrderServiceClient;
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::config::VerifierConfig;
use tokio::sync::oneshot;
use tonic::Code;

const ISSUER: &str = "https://auth.e2e.test";
const AUDIENCE: &str = "orders";
const PASSWORD: &str = "correct horse battery staple";

/// The three services, stopped when dropped.
struct Stack {
    gateway: String,
    orders_grpc: String,
    auth: auth_service::AppState,
    http: reqwest::Client,
    _data: tempfile::TempDir,
    _stops: Vec<oneshot::Sender<()>>,
}

fn stop_signal(stops: &mut Vec<oneshot::Sender<()>>) -> impl Future<Output = ()> + Send + 'static {
    let (stop, stopped) = oneshot::channel::<()>();
    stops.push(stop);
    async move {
        let _ = stopped.await;
    }
}

async fn spawn_stack() -> Stack {
    let data = tempfile::tempdir().expect("temp dir");
    let dir = data.path();
    let mut stops = Vec::new();
    let any_port = "127.0.0.1:0".parse().unwrap();

    let auth = auth_service::App::build(auth_service::Config {
        http_addr: any_port,
        grpc_addr: any_port,
        database_url: format!("sqlite://{}/auth.db", dir.display()),
        keys_dir: dir.join("keys"),
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        ..auth_service::Config::default()
    })
    .await
    .expect("auth-service builds");
    let auth_url = format!("http://{}", auth.http_addr());
    let auth_state = auth.state().clone();
    tokio::spawn(auth.run(stop_signal(&mut stops)));

    let verifier = VerifierConfig {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        jwks_url: format!("{auth_url}/.well-known/jwks.json"),
        ..VerifierConfig::default()
    };
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
    tokio::spawn(orders.run(stop_signal(&mut stops)));

    let gateway = gateway::App::build(gateway::Config {
        addr: any_port,
        auth_http_url: auth_url,
        orders_grpc_url: orders_grpc.clone(),
        auth: verifier,
        ..gateway::Config::default()
    })
    .await
    .expect("gateway builds");
    let gateway_url = format!("http://{}", gateway.gateway_addr());
    tokio::spawn(gateway.run(stop_signal(&mut stops)));

    let http = shared::http::client_builder().build().unwrap();
    let stack = Stack {
        gateway: gateway_url,
        orders_grpc,
        auth: auth_state,
        http,
        _data: data,
        _stops: stops,
    };
    for ready in [orders_ready, stack.url("/readyz")] {
        stack.eventually_ok(&ready).await;
    }
    stack
}

impl Stack {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway)
    }

    async fn eventually_ok(&self, url: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(response) = self.http.get(url).send().await
                && response.status().is_success()
            {
                return;
            }
            assert!(Instant::now() < deadline, "{url} never became ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn add_user(&self, username: &str, roles: &str, scopes: &str) -> String {
        users::create(
            &self.auth.pool,
            &self.auth.passwords,
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
    async fn login(&self, username: &str, scope: Option<&str>) -> Value {
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

    async fn token(&self, username: &str, scope: Option<&str>) -> String {
        self.login(username, scope).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn rest(
        &self,
        method: reqwest::Method,
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

    async fn grpc(&self, token: &str) -> OrdersAs {
        OrdersAs {
            client: OrderServiceClient::connect(self.orders_grpc.clone())
                .await
                .unwrap(),
            token: token.to_owned(),
        }
    }
}

/// A gRPC client of orders-service calling with one token.
struct OrdersAs {
    client: OrderServiceClient<tonic::transport::Channel>,
    token: String,
}

impl OrdersAs {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        shared::grpc::with_bearer(&mut request, &self.token).unwrap();
        request
    }

    async fn get(&mut self, id: &str) -> Result<pb::Order, tonic::Status> {
        let request = self.request(pb::GetOrderRequest { id: id.into() });
        self.client
            .get_order(request)
            .await
            .map(tonic::Response::into_inner)
    }

    async fn list(&mut self) -> Result<Vec<pb::Order>, tonic::Status> {
        let request = self.request(pb::ListOrdersRequest::default());
        self.client
            .list_orders(request)
            .await
            .map(|r| r.into_inner().orders)
    }

    async fn create(&mut self, item: &str, quantity: i32) -> Result<pb::Order, tonic::Status> {
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

#[tokio::test]
async fn a_user_logs_in_through_the_gateway_and_manages_orders_over_http_and_grpc() {
    let stack = spawn_stack().await;
    let alice_id = stack
        .add_user("alice", "user", "orders:read orders:write")
        .await;

    let login = stack.login("alice", None).await;
    assert_eq!(login["token_type"], "Bearer");
    assert_eq!(login["expires_in"], 300);
    assert!(login["refresh_token"].is_string());
    let token = login["access_token"].as_str().unwrap();

    // HTTP at the gateway, which calls orders-service over gRPC with the same token.
    let (status, order) = stack
        .rest(
            reqwest::Method::POST,
            "/v1/orders",
            token,
            Some(json!({"item": "coffee beans", "quantity": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["owner"], alice_id.as_str());
    assert_eq!(order["status"], "placed");
    let id = order["id"].as_str().unwrap();

    let (status, list) = stack
        .rest(reqwest::Method::GET, "/v1/orders", token, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["orders"].as_array().unwrap().len(), 1);
    assert_eq!(list["orders"][0]["id"], id);

    let (status, fetched) = stack
        .rest(
            reqwest::Method::GET,
            &format!("/v1/orders/{id}"),
            token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched["item"], "coffee beans");

    // The same token straight to orders-service over gRPC.
    let mut grpc = stack.grpc(token).await;
    assert_eq!(grpc.get(id).await.unwrap().item, "coffee beans");
    let created = grpc.create("tea", 1).await.unwrap();
    assert_eq!(created.owner, alice_id);
    assert_eq!(grpc.list().await.unwrap().len(), 2);

    let (status, cancelled) = stack
        .rest(
            reqwest::Method::POST,
            &format!("/v1/orders/{id}/cancel"),
            token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(
        grpc.get(id).await.unwrap().status,
        pb::OrderStatus::Cancelled as i32
    );
}

#[tokio::test]
async fn users_see_only_their_own_orders_and_admins_see_all() {
    let stack = spawn_stack().await;
    stack
        .add_user("alice", "user", "orders:read orders:write")
        .await;
    stack
        .add_user("bob", "user", "orders:read orders:write")
        .await;
    stack
        .add_user("root", "admin,user", "orders:read orders:write")
        .await;
    let alice = stack.token("alice", None).await;
    let bob = stack.token("bob", None).await;
    let admin = stack.token("root", None).await;

    let (_, order) = stack
        .rest(
            reqwest::Method::POST,
            "/v1/orders",
            &alice,
            Some(json!({"item": "book", "quantity": 1})),
        )
        .await;
    let id = order["id"].as_str().unwrap();
    let path = format!("/v1/orders/{id}");

    // Bob: not found, over HTTP and over gRPC, and not in his list; he cannot cancel it.
    let (status, body) = stack.rest(reqwest::Method::GET, &path, &bob, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "not_found");
    assert_eq!(
        stack.grpc(&bob).await.get(id).await.unwrap_err().code(),
        Code::NotFound
    );
    assert!(stack.grpc(&bob).await.list().await.unwrap().is_empty());
    let (status, _) = stack
        .rest(reqwest::Method::POST, &format!("{path}/cancel"), &bob, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The admin: sees it, lists it, can cancel it.
    let (status, body) = stack.rest(reqwest::Method::GET, &path, &admin, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], id);
    assert_eq!(stack.grpc(&admin).await.get(id).await.unwrap().id, id);
    assert_eq!(stack.grpc(&admin).await.list().await.unwrap().len(), 1);
    let (status, body) = stack
        .rest(
            reqwest::Method::POST,
            &format!("{path}/cancel"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "cancelled");
}

#[tokio::test]
async fn a_token_without_orders_write_cannot_create() {
    let stack = spawn_stack().await;
    stack
        .add_user("reader", "user", "orders:read orders:write")
        .await;
    let read_only = stack.token("reader", Some("orders:read")).await;

    let response = stack
        .http
        .post(stack.url("/v1/orders"))
        .bearer_auth(&read_only)
        .json(&json!({"item": "tea", "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "insufficient_scope");

    let status = stack
        .grpc(&read_only)
        .await
        .create("tea", 1)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // Reading is still allowed.
    let (status, _) = stack
        .rest(reqwest::Method::GET, "/v1/orders", &read_only, None)
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn bad_tokens_are_refused_at_the_gateway_and_at_orders_service() {
    let stack = spawn_stack().await;
    stack
        .add_user("alice", "user", "orders:read orders:write")
        .await;
    let token = stack.token("alice", None).await;
    let mut tampered = token.clone().into_bytes();
    let middle = token.find('.').unwrap() + 5;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let forged_elsewhere = shared::testing::TestIssuer::new().user_token(
        "alice",
        "orders:read orders:write",
        &["admin"],
    );

    for bad in [tampered.as_str(), forged_elsewhere.as_str(), "not-a-token"] {
        let response = stack
            .http
            .get(stack.url("/v1/orders"))
            .bearer_auth(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
        let body = response.text().await.unwrap();
        assert!(!body.contains(bad), "the body must not echo the token");
        assert_eq!(
            stack.grpc(bad).await.list().await.unwrap_err().code(),
            Code::Unauthenticated
        );
    }
    let response = stack
        .http
        .get(stack.url("/v1/orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
}

#[tokio::test]
async fn refresh_and_service_tokens_work_through_the_gateway() {
    let stack = spawn_stack().await;
    stack
        .add_user("alice", "user", "orders:read orders:write")
        .await;
    let login = stack.login("alice", None).await;
    let refresh = login["refresh_token"].as_str().unwrap();

    let response = stack
        .http
        .post(stack.url("/oauth/token"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let renewed: Value = response.json().await.unwrap();
    assert_ne!(renewed["refresh_token"], login["refresh_token"]);
    let (status, _) = stack
        .rest(
            reqwest::Method::GET,
            "/v1/orders",
            renewed["access_token"].as_str().unwrap(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (_, secret) = auth_service::clients::create(
        &stack.auth.pool,
        &stack.auth.passwords,
        auth_service::clients::NewClient {
            id: "reporting".into(),
            scopes: ScopeSet::parse("orders:read").unwrap(),
            roles: Vec::new(),
        },
    )
    .await
    .unwrap();
    let response = stack
        .http
        .post(stack.url("/oauth/token"))
        .basic_auth("reporting", Some(secret.expose()))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let service: Value = response.json().await.unwrap();
    assert!(service.get("refresh_token").is_none());
    let service_token = service["access_token"].as_str().unwrap();
    let (status, body) = stack
        .rest(reqwest::Method::GET, "/v1/orders", service_token, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = stack
        .rest(
            reqwest::Method::POST,
            "/v1/orders",
            service_token,
            Some(json!({"item": "x", "quantity": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_issuer_documents_are_forwarded_by_the_gateway() {
    let stack = spawn_stack().await;
    let response = stack
        .http
        .get(stack.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    let jwks: Value = response.json().await.unwrap();
    assert_eq!(jwks["keys"][0]["alg"], "RS256");
    assert!(jwks["keys"][0].get("d").is_none(), "no private material");

    let discovery: Value = stack
        .http
        .get(stack.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], ISSUER);
    assert_eq!(
        discovery["jwks_uri"],
        format!("{ISSUER}/.well-known/jwks.json")
    );
}
