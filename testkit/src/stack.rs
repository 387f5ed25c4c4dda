//! The whole platform in one test process: the real auth-service, orders-service and gateway on
//! port 0, the verifiers configured in a chosen mode, talking real HTTP and gRPC (features
//! `auth`, `orders` and `gateway`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auth_service::passwords::ExposeSecret as _;
use auth_service::scope::{ScopeSet, parse_roles};
use auth_service::users::{self, NewUser};
use authn::RoutePolicy;
use authn::config::{AuthMode, VerifierConfig};
use proto::orders::v1 as pb;
use proto::orders::v1::order_service_client::OrderServiceClient;
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::eventually;

pub const ISSUER: &str = "https://auth.e2e.test";
pub const AUDIENCE: &str = "orders";
pub const PASSWORD: &str = "correct horse battery staple";
/// The gateway's external URL with [`Options::web`]: browsers' redirects name it, and a test
/// maps it onto the gateway's real address.
pub const WEB_PUBLIC_URL: &str = "https://shop.test";
/// The gateway's browser client at the issuer, with [`Options::web`].
pub const WEB_CLIENT_ID: &str = "web";

/// How the stack is put together.
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: AuthMode,
    /// Given to auth-service (session store and fan-out) and to the verifiers (stateful lookups).
    pub redis_url: Option<String>,
    /// Given to the verifiers only (to simulate an unreachable store).
    pub verifier_redis_url: Option<String>,
    pub max_staleness: Duration,
    /// The verifiers' `AUTH_JWKS_REFRESH_INTERVAL` (default: the verifier's default).
    pub jwks_refresh_interval: Option<Duration>,
    /// The verifiers' `AUTH_JWKS_MIN_REFETCH_INTERVAL` (default: the verifier's default).
    pub jwks_min_refetch_interval: Option<Duration>,
    /// Route each verifier's JWKS fetches through a [`JwksTap`], so a test can wait until both
    /// hold the issuer's current key set ([`Stack::wait_for_current_jwks`]).
    pub jwks_taps: bool,
    /// Route orders-service's gRPC calls to the issuer (its revocation feed, key reports and
    /// session lookups) through a [`crate::TcpProxy`] the test can cut
    /// ([`Stack::orders_feed_proxy`]).
    pub orders_feed_proxy: bool,
    /// auth-service's `AUTH_VERIFIER_REPORT_TTL` (default: the service's default).
    pub verifier_report_ttl: Option<Duration>,
    /// Register the gateway's browser client ([`WEB_CLIENT_ID`], redirect URI
    /// `{WEB_PUBLIC_URL}/callback`, scopes `openid orders:read orders:write`) and turn the
    /// gateway's browser sign-in on with it.
    pub web: bool,
    /// The gateway's external URL with [`Options::web`] (default [`WEB_PUBLIC_URL`]): a real
    /// browser needs one that reaches the gateway, such as a [`crate::TcpProxy`] in front of it.
    pub web_public_url: Option<String>,
    /// auth-service's `AUTH_ACCESS_TOKEN_TTL` (default: the service's default).
    pub access_token_ttl: Option<Duration>,
    /// auth-service's `AUTH_SIGNING_ALG` (default: RS256).
    pub signing_alg: Option<authn::jwk::Algorithm>,
    /// The gateway's `AUTH_ROUTE_POLICY` (default: none, every route follows the mode).
    pub gateway_route_policy: RoutePolicy,
    /// orders-service's `AUTH_ROUTE_POLICY` (default: none).
    pub orders_route_policy: RoutePolicy,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            mode: AuthMode::Stateless,
            redis_url: None,
            verifier_redis_url: None,
            max_staleness: Duration::from_secs(5),
            jwks_refresh_interval: None,
            jwks_min_refetch_interval: None,
            jwks_taps: false,
            orders_feed_proxy: false,
            verifier_report_ttl: None,
            web: false,
            web_public_url: None,
            access_token_ttl: None,
            signing_alg: None,
            gateway_route_policy: RoutePolicy::default(),
            orders_route_policy: RoutePolicy::default(),
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
    /// auth-service's gRPC endpoint (`SessionService`).
    pub auth_grpc: String,
    /// `GET /metrics` of auth-service, on its metrics listener.
    pub auth_metrics: String,
    /// `GET /metrics` of the gateway, on its metrics listener.
    pub gateway_metrics: String,
    pub auth_state: auth_service::AppState,
    pub http: reqwest::Client,
    /// The JWKS taps of the gateway and of orders-service, with [`Options::jwks_taps`].
    pub jwks_taps: Vec<JwksTap>,
    /// The proxy between orders-service and the issuer's gRPC, with
    /// [`Options::orders_feed_proxy`].
    pub orders_feed_proxy: Option<crate::TcpProxy>,
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

        let mut auth_config = auth_service::Config {
            http_addr: any_port,
            grpc_addr: any_port,
            metrics_addr: any_port,
            database_url: format!("sqlite://{}/auth.db", dir.display()),
            keys_dir: dir.join("keys"),
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            redis_url: options.redis_url.clone(),
            // `stop_auth` is an outage: no readiness-first delay before the listeners close.
            shutdown_delay: Duration::ZERO,
            ..auth_service::Config::default()
        };
        if let Some(ttl) = options.access_token_ttl {
            auth_config.access_token_ttl = ttl;
        }
        if let Some(alg) = options.signing_alg {
            auth_config.keys.signing_alg = alg;
        }
        if let Some(ttl) = options.verifier_report_ttl {
            auth_config.keys.verifier_report_ttl = ttl;
        }
        let auth = auth_service::App::build(auth_config.clone())
            .await
            .expect("auth-service builds");
        let auth_http = format!("http://{}", auth.http_addr());
        let auth_grpc = format!("http://{}", auth.grpc_addr());
        let auth_metrics = format!("http://{}/metrics", auth.metrics_addr());
        // A restart binds the same ports, so the verifiers' configuration stays valid.
        let auth_config = auth_service::Config {
            http_addr: auth.http_addr(),
            grpc_addr: auth.grpc_addr(),
            metrics_addr: auth.metrics_addr(),
            ..auth_config
        };
        let auth_state = auth.state().clone();
        let auth_running = run(|stopped| auth.run(stopped));

        let mut verifier = VerifierConfig {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            jwks_url: format!("{auth_http}/.well-known/jwks.json"),
            mode: options.mode,
            grpc_url: auth_grpc.clone(),
            token_url: format!("{auth_http}/oauth/token"),
            redis_url: options
                .verifier_redis_url
                .clone()
                .or(options.redis_url.clone()),
            max_staleness: options.max_staleness,
            ..VerifierConfig::default()
        };
        if let Some(interval) = options.jwks_refresh_interval {
            verifier.jwks_refresh_interval = interval;
        }
        if let Some(interval) = options.jwks_min_refetch_interval {
            verifier.jwks_min_refetch_interval = interval;
        }
        let jwks_url = verifier.jwks_url.clone();
        let mut jwks_taps = Vec::new();
        let mut services = Vec::new();

        let orders_secret = create_client(&auth_state, "orders", "sessions:check").await;
        verifier.client_id = Some("orders".into());
        verifier.client_secret = Some(SecretString::from(orders_secret));
        if options.jwks_taps {
            let tap = JwksTap::start(&jwks_url).await;
            verifier.jwks_url = tap.url();
            jwks_taps.push(tap);
        }
        let orders_feed_proxy = if options.orders_feed_proxy {
            let proxy = crate::TcpProxy::start(vec![auth_config.grpc_addr]).await;
            verifier.grpc_url = proxy.url("http", "");
            Some(proxy)
        } else {
            None
        };
        let orders = orders_service::App::build(orders_service::Config {
            grpc_addr: any_port,
            http_addr: any_port,
            database_url: format!("sqlite://{}/orders.db", dir.display()),
            auth: VerifierConfig {
                route_policy: options.orders_route_policy.clone(),
                ..verifier.clone()
            },
            ..orders_service::Config::default()
        })
        .await
        .expect("orders-service builds");
        let orders_grpc = format!("http://{}", orders.grpc_addr());
        let orders_ready = format!("http://{}/readyz", orders.http_addr());
        services.push(run(|stopped| orders.run(stopped)));
        verifier.grpc_url = auth_grpc.clone();

        let gateway_secret = create_client(&auth_state, "gateway", "sessions:check").await;
        verifier.client_id = Some("gateway".into());
        verifier.client_secret = Some(SecretString::from(gateway_secret));
        if options.jwks_taps {
            let tap = JwksTap::start(&jwks_url).await;
            verifier.jwks_url = tap.url();
            jwks_taps.push(tap);
        }
        let (public_url, client_id, client_secret) = if options.web {
            let public_url = options
                .web_public_url
                .clone()
                .unwrap_or_else(|| WEB_PUBLIC_URL.to_owned());
            let secret = create_web_client(&auth_state, &public_url).await;
            (
                Some(public_url),
                Some(WEB_CLIENT_ID.to_owned()),
                Some(SecretString::from(secret)),
            )
        } else {
            (None, None, None)
        };
        let gateway = gateway::App::build(gateway::Config {
            addr: any_port,
            metrics_addr: any_port,
            auth_http_url: auth_http.clone(),
            orders_grpc_url: orders_grpc.clone(),
            auth: VerifierConfig {
                route_policy: options.gateway_route_policy.clone(),
                ..verifier
            },
            public_url,
            client_id,
            client_secret,
            ..gateway::Config::default()
        })
        .await
        .expect("gateway builds");
        let gateway_url = format!("http://{}", gateway.gateway_addr());
        let gateway_metrics = format!("http://{}/metrics", gateway.metrics_addr());
        services.push(run(|stopped| gateway.run(stopped)));

        let stack = Stack {
            options,
            gateway: gateway_url,
            orders_grpc,
            auth_http,
            auth_grpc,
            auth_metrics,
            gateway_metrics,
            auth_state,
            http: platform::http::client_builder().build().unwrap(),
            jwks_taps,
            orders_feed_proxy,
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

    /// Waits until every verifier's last JWKS fetch returned the document auth-service serves
    /// now (needs [`Options::jwks_taps`]): from then on both verifiers know every published key.
    pub async fn wait_for_current_jwks(&self, within: Duration) -> Duration {
        assert!(!self.jwks_taps.is_empty(), "start the stack with jwks_taps");
        let current = self
            .auth_state
            .keys
            .jwks()
            .etag
            .to_str()
            .unwrap()
            .to_owned();
        eventually("every verifier holds the current JWKS", within, || async {
            self.jwks_taps
                .iter()
                .all(|tap| tap.last_etag().as_deref() == Some(current.as_str()))
        })
        .await
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

    /// Registers a client `id` with scope `sessions:check` and returns a `client_credentials`
    /// token of it: what a verifier presents to watch revocations.
    pub async fn service_token(&self, id: &str) -> String {
        let secret = create_client(&self.auth_state, id, "sessions:check").await;
        let response = self
            .http
            .post(self.auth_url("/oauth/token"))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// The issuer's SQLite database file.
    pub fn auth_db_path(&self) -> std::path::PathBuf {
        self.data_dir().join("auth.db")
    }

    /// A consistent copy of the issuer's database, taken while it runs (SQLite `VACUUM INTO`),
    /// as a backup would be; returns its path.
    pub async fn backup_auth_db(&self, name: &str) -> std::path::PathBuf {
        let path = self.data_dir().join(name);
        sqlx::query(&format!("VACUUM INTO '{}'", path.display()))
            .execute(&self.auth_state.pool)
            .await
            .expect("VACUUM INTO");
        path
    }

    /// Restores the issuer's database from `backup` the way an operator would: auth-service
    /// stopped, the file (and its WAL) replaced, auth-service started again. The verifiers keep
    /// running throughout.
    pub async fn restore_auth_db(&mut self, backup: &std::path::Path) {
        self.stop_auth().await;
        let db = self.auth_db_path();
        for suffix in ["-wal", "-shm"] {
            let mut side = db.clone().into_os_string();
            side.push(suffix);
            let _ = std::fs::remove_file(side);
        }
        std::fs::copy(backup, &db).expect("backup copied over the database");
        self.restart_auth().await;
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

    /// An administrator (`admin_token`: role `admin`, scope `users:admin`) sets the scopes of
    /// `user_id` at the issuer's admin API.
    pub async fn change_scopes(&self, admin_token: &str, user_id: &str, scopes: &str) {
        let response = self
            .http
            .patch(self.auth_url(&format!("/v1/admin/users/{user_id}")))
            .bearer_auth(admin_token)
            .json(&json!({ "scopes": scopes }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    /// Logs `token`'s session out (`POST /v1/logout` through the gateway).
    pub async fn logout(&self, token: &str) {
        let response = self
            .http
            .post(self.url("/v1/logout"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
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
    secret.expose_secret().to_owned()
}

/// Registers the gateway's browser client, as `auth-service client add --id web --redirect-uri
/// ... --post-logout-redirect-uri ... --scopes "openid orders:read orders:write"` does; returns
/// its secret.
async fn create_web_client(auth: &auth_service::AppState, public_url: &str) -> String {
    let (_, secret) = auth_service::clients::register(
        &auth.pool,
        &auth.passwords,
        auth_service::clients::Registration {
            id: WEB_CLIENT_ID.into(),
            scopes: ScopeSet::parse("openid orders:read orders:write").unwrap(),
            redirect_uris: vec![format!("{public_url}/callback")],
            post_logout_redirect_uris: vec![format!("{public_url}/")],
            ..auth_service::clients::Registration::default()
        },
    )
    .await
    .expect("web client registered");
    secret
        .expect("a confidential client has a secret")
        .expose_secret()
        .to_owned()
}

/// A gRPC client of orders-service calling with one token.
pub struct OrdersAs {
    client: OrderServiceClient<tonic::transport::Channel>,
    token: String,
}

impl OrdersAs {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        authn::grpc::with_bearer(&mut request, &self.token).unwrap();
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

    pub async fn cancel(&mut self, id: &str) -> Result<pb::Order, tonic::Status> {
        let request = self.request(pb::CancelOrderRequest { id: id.into() });
        self.client
            .cancel_order(request)
            .await
            .map(tonic::Response::into_inner)
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

/// A transparent proxy in front of the issuer's JWKS for one verifier. It forwards each fetch
/// (with its `If-None-Match`) and answers with the issuer's status, validators and body,
/// remembering the `ETag` of the last document it handed out: once that is the issuer's current
/// one, the verifier behind the tap holds the current key set.
pub struct JwksTap {
    addr: SocketAddr,
    last_etag: Arc<Mutex<Option<String>>>,
    fetches: Arc<AtomicUsize>,
    _server: JoinHandle<()>,
}

impl JwksTap {
    pub async fn start(upstream: &str) -> JwksTap {
        use axum::http::{HeaderMap, StatusCode as AxumStatus};
        use axum::response::IntoResponse;

        let last_etag = Arc::new(Mutex::new(None::<String>));
        let fetches = Arc::new(AtomicUsize::new(0));
        let client = platform::http::client_builder().build().unwrap();
        let upstream = upstream.to_owned();
        let handler = {
            let last_etag = last_etag.clone();
            let fetches = fetches.clone();
            move |headers: HeaderMap| {
                let (client, upstream) = (client.clone(), upstream.clone());
                let (last_etag, fetches) = (last_etag.clone(), fetches.clone());
                async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    let mut request = client.get(&upstream);
                    if let Some(tag) = headers.get("if-none-match") {
                        request = request.header("if-none-match", tag.as_bytes());
                    }
                    let Ok(response) = request.send().await else {
                        return AxumStatus::BAD_GATEWAY.into_response();
                    };
                    let status = AxumStatus::from_u16(response.status().as_u16()).unwrap();
                    let mut out = HeaderMap::new();
                    for name in ["etag", "cache-control", "content-type"] {
                        if let Some(value) = response.headers().get(name) {
                            out.insert(name, value.as_bytes().try_into().unwrap());
                        }
                    }
                    let body = response.bytes().await.unwrap_or_default();
                    if status.is_success() || status == AxumStatus::NOT_MODIFIED {
                        *last_etag.lock().unwrap() = out
                            .get("etag")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                    }
                    (status, out, body).into_response()
                }
            }
        };
        let router = axum::Router::new().route("/jwks.json", axum::routing::get(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        JwksTap {
            addr,
            last_etag,
            fetches,
            _server: server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    /// The `ETag` of the last document (200 or 304) this tap handed its verifier.
    pub fn last_etag(&self) -> Option<String> {
        self.last_etag.lock().unwrap().clone()
    }

    /// Fetches made through this tap.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}
