//! The real orders-service on port 0 with its own SQLite file, and gRPC callers holding a
//! token (feature `orders`).

use std::net::SocketAddr;
use std::time::Duration;

use authn::config::VerifierConfig;
use orders_service::{App, Config, RunError};
use proto::orders::v1::order_service_client::OrderServiceClient;
use proto::orders::v1::{
    CancelOrderRequest, CreateOrderRequest, GetOrderRequest, ListOrdersRequest, ListOrdersResponse,
    Order,
};
use tokio::task::JoinHandle;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

use crate::{Issuer, PATIENCE, eventually};

/// A running orders-service; stopped when dropped.
pub struct Orders {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    channel: Channel,
    http: reqwest::Client,
    _data: tempfile::TempDir,
    stop: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    running: tokio::sync::Mutex<Option<JoinHandle<Result<(), RunError>>>>,
}

/// Starts orders-service trusting `issuer`, and waits until it is ready.
pub async fn spawn_orders(issuer: &Issuer) -> Orders {
    let orders = spawn_orders_with(issuer.verifier_config()).await;
    eventually("orders-service ready", PATIENCE, || async {
        orders.readyz().await == reqwest::StatusCode::OK
    })
    .await;
    orders
}

/// Starts orders-service with this verifier configuration, without waiting for readiness.
pub async fn spawn_orders_with(auth: VerifierConfig) -> Orders {
    let data = tempfile::tempdir().expect("temp dir");
    let config = test_config(
        format!("sqlite://{}/orders.db", data.path().display()),
        auth,
    );
    spawn_orders_config(config, data).await
}

/// The configuration tests start orders-service with: any free ports, no shutdown delay.
pub fn test_config(database_url: String, auth: VerifierConfig) -> Config {
    Config {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        database_url,
        shutdown_delay: Duration::ZERO,
        auth,
        ..Config::default()
    }
}

/// Starts orders-service with `config` (keeping `data` alive as long as it runs), without
/// waiting for readiness.
pub async fn spawn_orders_config(config: Config, data: tempfile::TempDir) -> Orders {
    let app = App::build(config).await.expect("orders-service builds");
    let (grpc_addr, http_addr) = (app.grpc_addr(), app.http_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run(async move {
        let _ = stopped.await;
    }));
    let channel = Endpoint::from_shared(format!("http://{grpc_addr}"))
        .unwrap()
        .connect_lazy();
    Orders {
        grpc_addr,
        http_addr,
        channel,
        http: reqwest::Client::new(),
        _data: data,
        stop: std::sync::Mutex::new(Some(stop)),
        running: tokio::sync::Mutex::new(Some(running)),
    }
}

impl Orders {
    /// Where the gateway reaches it (`ORDERS_GRPC_URL`).
    pub fn url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// Sends the shutdown signal (SIGTERM, in production).
    pub fn stop(&self) {
        if let Some(stop) = self.stop.lock().unwrap().take() {
            let _ = stop.send(());
        }
    }

    /// Waits until the service has shut down, with what `App::run` returned.
    pub async fn stopped(&self) -> Result<(), RunError> {
        let running = self.running.lock().await.take().expect("awaited once");
        running.await.expect("the service task ends")
    }

    /// A caller presenting `token` (any string: valid, forged or garbage).
    pub fn with_token(&self, token: impl Into<String>) -> Caller {
        Caller {
            client: OrderServiceClient::new(self.channel.clone()),
            token: Some(token.into()),
        }
    }

    /// A caller presenting no token at all.
    pub fn anonymous(&self) -> Caller {
        Caller {
            client: OrderServiceClient::new(self.channel.clone()),
            token: None,
        }
    }

    pub async fn get_http(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("http://{}{path}", self.http_addr))
            .send()
            .await
            .expect("ops endpoint answers")
    }

    pub async fn readyz(&self) -> reqwest::StatusCode {
        self.get_http("/readyz").await.status()
    }
}

/// One caller of the gRPC API.
#[derive(Clone)]
pub struct Caller {
    client: OrderServiceClient<Channel>,
    token: Option<String>,
}

impl Caller {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            let value = format!("Bearer {token}").parse().expect("ASCII token");
            request.metadata_mut().insert("authorization", value);
        }
        request
    }

    pub async fn create(&self, item: &str, quantity: i32) -> Result<Order, Status> {
        let message = CreateOrderRequest {
            item: item.to_owned(),
            quantity,
        };
        let request = self.request(message);
        Ok(self
            .client
            .clone()
            .create_order(request)
            .await?
            .into_inner())
    }

    pub async fn get(&self, id: &str) -> Result<Order, Status> {
        let request = self.request(GetOrderRequest { id: id.to_owned() });
        Ok(self.client.clone().get_order(request).await?.into_inner())
    }

    pub async fn list_page(
        &self,
        page_size: u32,
        page_token: &str,
    ) -> Result<ListOrdersResponse, Status> {
        let request = self.request(ListOrdersRequest {
            page_size,
            page_token: page_token.to_owned(),
        });
        Ok(self.client.clone().list_orders(request).await?.into_inner())
    }

    /// Every order the caller can see, walking all pages.
    pub async fn list_all(&self, page_size: u32) -> Result<Vec<Order>, Status> {
        let mut orders = Vec::new();
        let mut token = String::new();
        loop {
            let page = self.list_page(page_size, &token).await?;
            orders.extend(page.orders);
            if page.next_page_token.is_empty() {
                return Ok(orders);
            }
            token = page.next_page_token;
        }
    }

    pub async fn cancel(&self, id: &str) -> Result<Order, Status> {
        let request = self.request(CancelOrderRequest { id: id.to_owned() });
        Ok(self
            .client
            .clone()
            .cancel_order(request)
            .await?
            .into_inner())
    }
}

/// Asserts that `result` failed with `code`.
#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(result: Result<T, Status>, code: tonic::Code) {
    match result {
        Ok(value) => panic!("expected {code:?}, got Ok({value:?})"),
        Err(status) => assert_eq!(status.code(), code, "{status:?}"),
    }
}
