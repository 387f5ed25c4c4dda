//! The fault suite: nothing lost, nothing let in, while things break.
//!
//! Two auth-service replicas share PostgreSQL and Redis; gateway and orders-service verify in
//! `hybrid` mode with the Redis store as their stateful fallback. Every connection to the
//! replicas, to PostgreSQL and to Redis goes through a [`TcpProxy`] the suite controls. Virtual
//! users sign in, refresh, read, write, log out and log out everywhere for the whole run, while
//! faults follow a schedule: a replica killed and restarted, PostgreSQL and Redis unreachable,
//! every revocation stream cut, a key rotation, an emergency key revocation, and the database
//! put back to an earlier copy.
//!
//! What it records, and what must hold:
//! - requests by operation and outcome (reported);
//! - tokens accepted after their logout plus the bound (must be 0), probed at the gateway
//!   (HTTP) and at orders-service (gRPC);
//! - orders acknowledged with 201 and missing at the end (must be 0);
//! - refresh tokens accepted a second time (must be 0);
//! - the time each fault took to recover from (a sign-in and a read through the gateway work
//!   again), reported.
//!
//! `FAULTS_HOLD` (default 3 s) is how long each fault lasts and `FAULTS_SETTLE` (default 3 s)
//! the traffic between faults; docs/RELIABILITY.md has the long run and its table.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use auth_service::passwords::ExposeSecret as _;
use auth_service::scope::{ScopeSet, parse_roles};
use auth_service::users::{self, NewUser};
use authn::config::{AuthMode, VerifierConfig};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use testkit::auth::CrashableAuth;
use testkit::gateway::{Gateway, start_gateway};
use testkit::orders::{Orders, spawn_orders_config, test_config as orders_config};
use testkit::{PATIENCE, PgDatabase, TcpProxy, eventually, test_redis_url};
use tokio::sync::Mutex;

const ISSUER: &str = "https://auth.faults.test";
const PASSWORD: &str = "correct horse battery staple";
const USERS: usize = 4;
/// `AUTH_MAX_STALENESS` of the verifiers.
const MAX_STALENESS: Duration = Duration::from_secs(2);
/// How long after an acknowledged logout a verifier may still accept the token: the
/// staleness bound plus the reconnect and fallback that follow it.
const REVOCATION_BOUND: Duration = Duration::from_secs(4);
/// The phase of taking the copy of the database the last fault restores.
const SNAPSHOT: &str = "copy of the database taken (PostgreSQL closed meanwhile)";

fn setting(name: &str, default: Duration) -> Duration {
    std::env::var(name)
        .ok()
        .and_then(|value| humantime::parse_duration(&value).ok())
        .unwrap_or(default)
}

/// Everything the suite runs and breaks.
struct World {
    db: PgDatabase,
    pg: TcpProxy,
    redis: TcpProxy,
    auth_http: TcpProxy,
    auth_grpc: TcpProxy,
    auth_config: auth_service::Config,
    replicas: Mutex<Vec<CrashableAuth>>,
    orders: Orders,
    gateway: Gateway,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl World {
    async fn start() -> Self {
        let db = PgDatabase::create("faults").await;
        let pg = TcpProxy::start(vec![pg_addr(&db.url)]).await;
        let redis = TcpProxy::start(vec![redis_addr(&test_redis_url())]).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let database_url = format!("postgres://postgres@{}/{}", pg.addr(), db.name);
        let auth_config = auth_service::Config {
            http_addr: "127.0.0.1:0".parse().unwrap(),
            grpc_addr: "127.0.0.1:0".parse().unwrap(),
            metrics_addr: "127.0.0.1:0".parse().unwrap(),
            database_url: database_url.clone(),
            redis_url: Some(redis.url("redis", "")),
            keys_dir: dir.path().join("keys"),
            issuer: ISSUER.into(),
            shutdown_delay: Duration::ZERO,
            ..auth_service::Config::default()
        };
        let secrets = seed(&database_url).await;
        let replicas = vec![
            CrashableAuth::start(auth_config.clone()).await,
            CrashableAuth::start(auth_config.clone()).await,
        ];
        let auth_http = TcpProxy::start(replicas.iter().map(|r| r.http_addr).collect()).await;
        let auth_grpc = TcpProxy::start(replicas.iter().map(|r| r.grpc_addr).collect()).await;
        let http = platform::http::client_builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();

        let verifier = |client: &str, secret: String| VerifierConfig {
            issuer: ISSUER.into(),
            audience: "orders".into(),
            jwks_url: auth_http.url("http", "/.well-known/jwks.json"),
            mode: AuthMode::Hybrid,
            grpc_url: auth_grpc.url("http", ""),
            token_url: auth_http.url("http", "/oauth/token"),
            client_id: Some(client.into()),
            client_secret: Some(SecretString::from(secret)),
            redis_url: Some(redis.url("redis", "")),
            max_staleness: MAX_STALENESS,
            ..VerifierConfig::default()
        };
        let orders_dir = tempfile::tempdir().expect("temp dir");
        let orders = spawn_orders_config(
            orders_config(
                format!("sqlite://{}/orders.db", orders_dir.path().display()),
                verifier("orders", secrets["orders"].clone()),
            ),
            orders_dir,
        )
        .await;
        let gateway = start_gateway(gateway::Config {
            auth_http_url: auth_http.url("http", ""),
            orders_grpc_url: orders.url(),
            auth: verifier("gateway", secrets["gateway"].clone()),
            ..gateway::Config::default()
        })
        .await;
        let world = Self {
            db,
            pg,
            redis,
            auth_http,
            auth_grpc,
            auth_config,
            replicas: Mutex::new(replicas),
            orders,
            gateway,
            http,
            _dir: dir,
        };
        eventually("gateway and orders-service are ready", PATIENCE, || async {
            world.ready("/readyz").await && world.orders.readyz().await == StatusCode::OK
        })
        .await;
        world
    }

    async fn ready(&self, path: &str) -> bool {
        matches!(self.http.get(self.gateway.url(path)).send().await, Ok(r) if r.status().is_success())
    }
}

fn pg_addr(url: &str) -> std::net::SocketAddr {
    let host = url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next());
    let host = host.expect("TEST_DATABASE_URL has user@host:port/db");
    tokio_lookup(host)
}

fn redis_addr(url: &str) -> std::net::SocketAddr {
    let host = url.trim_start_matches("redis://").trim_end_matches('/');
    tokio_lookup(host)
}

fn tokio_lookup(host: &str) -> std::net::SocketAddr {
    use std::net::ToSocketAddrs as _;
    host.to_socket_addrs()
        .expect("resolvable")
        .find(std::net::SocketAddr::is_ipv4)
        .expect("an IPv4 address")
}

/// Users, and the verifiers' clients (whose secrets it returns), in the database the replicas
/// will open.
async fn seed(database_url: &str) -> BTreeMap<&'static str, String> {
    let pool = auth_service::db::connect_and_migrate(database_url, 2)
        .await
        .expect("database");
    let passwords = auth_service::passwords::Passwords::new()
        .await
        .expect("hasher");
    let mut accounts = vec![(
        "admin".to_owned(),
        "admin",
        "orders:read orders:write keys:admin users:admin",
    )];
    accounts.extend((0..USERS).map(|i| (format!("user{i}"), "user", "orders:read orders:write")));
    for (username, roles, scopes) in accounts {
        users::create(
            &pool,
            &passwords,
            NewUser {
                username,
                password: PASSWORD.to_owned().into(),
                roles: parse_roles(roles).unwrap(),
                scopes: ScopeSet::parse(scopes).unwrap(),
            },
        )
        .await
        .expect("user created");
    }
    let mut secrets = BTreeMap::new();
    for id in ["orders", "gateway"] {
        let (_, secret) = auth_service::clients::create(
            &pool,
            &passwords,
            auth_service::clients::NewClient {
                id: id.into(),
                scopes: ScopeSet::parse("sessions:check").unwrap(),
                roles: Vec::new(),
            },
        )
        .await
        .expect("client created");
        secrets.insert(id, secret.expose_secret().to_owned());
    }
    pool.close().await;
    secrets
}

/// What the run saw.
#[derive(Default)]
struct Record {
    outcomes: BTreeMap<(&'static str, String), u64>,
    acknowledged_orders: Vec<(String, String)>,
    /// Each acknowledged end of a session.
    logged_out: Vec<Ended>,
    /// The fault in force, or the traffic after it.
    phase: &'static str,
    refresh_reused: u64,
    /// Each ended session's token a verifier accepted after the bound.
    let_in: Vec<LetIn>,
    recoveries: Vec<(&'static str, Duration)>,
    /// Failed user requests by phase.
    failures: BTreeMap<&'static str, Failures>,
}

/// A session's end the issuer acknowledged: its last access token, when, during which phase,
/// and how (`logout`, `logout-all`, or a replayed refresh token).
#[derive(Clone)]
struct Ended {
    token: String,
    at: Instant,
    phase: &'static str,
    how: &'static str,
}

/// An ended session's token accepted after the bound: which verifier, the end, how long after
/// it, and the token's header and claims (to tell why).
#[derive(Debug)]
#[allow(dead_code)] // Read through `Debug`, in the failure message.
struct LetIn {
    verifier: &'static str,
    phase: &'static str,
    how: &'static str,
    after: Duration,
    token: String,
}

/// A token's header and claims, decoded without verification: for failure messages only.
fn peek(token: &str) -> String {
    use base64::Engine as _;
    token
        .split('.')
        .take(2)
        .map(|part| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_else(|_| "(not base64url)".into())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// User requests that failed during a phase: 401 for a session that was not ended; 502, 503,
/// 504, timeouts or cut connections (a dependency is down: retry later); and 500, which is never
/// the right answer to a fault (a client cannot tell it from a bug, and does not retry).
#[derive(Default, Clone, Copy)]
struct Failures {
    refused: u64,
    unavailable: u64,
    internal: u64,
}

impl Record {
    fn count(&mut self, operation: &'static str, outcome: impl Into<String>) {
        let outcome = outcome.into();
        let expected_refusal = operation.starts_with("probe") || operation == "replayed refresh";
        if !expected_refusal {
            let tally = self.failures.entry(self.phase).or_default();
            match outcome.as_str() {
                "401" => tally.refused += 1,
                "timeout" | "connection error" => tally.unavailable += 1,
                "500" => tally.internal += 1,
                status if status.starts_with('5') => tally.unavailable += 1,
                _ => {}
            }
        }
        *self.outcomes.entry((operation, outcome)).or_default() += 1;
    }
}

type Shared = Arc<Mutex<Record>>;

fn outcome(result: &Result<reqwest::Response, reqwest::Error>) -> String {
    match result {
        Ok(response) => response.status().as_u16().to_string(),
        Err(error) if error.is_timeout() => "timeout".into(),
        Err(_) => "connection error".into(),
    }
}

/// One virtual user, in rounds until `stop`: sign in; write, read and refresh (rotating the
/// refresh token) a few times; then end the session one of three ways, each acknowledged by the
/// issuer: replaying the previous refresh token (reuse detection ends the whole family: the
/// replay must be refused, and so must the session's access token from then on), logging out,
/// or logging out everywhere. Each acknowledged end puts the last access token on the list the
/// probe checks after the bound.
async fn user_loop(world: Arc<World>, user: usize, record: Shared, stop: Arc<AtomicBool>) {
    let username = format!("user{user}");
    let mut round = 0u64;
    while !stop.load(Ordering::SeqCst) {
        round += 1;
        let Some(tokens) = sign_in(&world, &username, &record).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut access = text(&tokens["access_token"]);
        let mut refresh = text(&tokens["refresh_token"]);
        let mut previous_refresh = None;
        for step in 0..3u64 {
            let item = format!("{username}-{round}-{step}");
            write_and_read(&world, &access, &item, &record).await;
            let renewed = world
                .http
                .post(world.gateway.url("/oauth/token"))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.as_str()),
                ])
                .send()
                .await;
            record.lock().await.count("refresh", outcome(&renewed));
            if let Ok(response) = renewed
                && response.status() == StatusCode::OK
                && let Ok(body) = response.json::<Value>().await
            {
                previous_refresh = Some(std::mem::replace(
                    &mut refresh,
                    text(&body["refresh_token"]),
                ));
                access = text(&body["access_token"]);
            }
        }
        let how = match (round % 3, &previous_refresh) {
            (0, Some(_)) => "replayed refresh",
            (1, _) => "logout-all",
            _ => "logout",
        };
        let ended = match (round % 3, previous_refresh) {
            (0, Some(old)) => {
                let replay = world
                    .http
                    .post(world.gateway.url("/oauth/token"))
                    .form(&[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", old.as_str()),
                    ])
                    .send()
                    .await;
                let mut record = record.lock().await;
                record.count("replayed refresh", outcome(&replay));
                match replay {
                    Ok(response) if response.status() == StatusCode::OK => {
                        record.refresh_reused += 1;
                        false
                    }
                    Ok(response) => response.status() == StatusCode::BAD_REQUEST,
                    Err(_) => false,
                }
            }
            (1, _) => end_session(&world, "/v1/logout-all", &access, "logout-all", &record).await,
            _ => end_session(&world, "/v1/logout", &access, "logout", &record).await,
        };
        if ended {
            let mut record = record.lock().await;
            let phase = record.phase;
            record.logged_out.push(Ended {
                token: access,
                at: Instant::now(),
                phase,
                how,
            });
        }
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// Creates an order (remembered when acknowledged with 201) and lists the caller's orders.
async fn write_and_read(world: &World, access: &str, item: &str, record: &Shared) {
    let created = world
        .http
        .post(world.gateway.url("/v1/orders"))
        .bearer_auth(access)
        .json(&json!({"item": item, "quantity": 1}))
        .send()
        .await;
    let status = outcome(&created);
    if let Ok(response) = created
        && response.status() == StatusCode::CREATED
        && let Ok(body) = response.json::<Value>().await
    {
        record
            .lock()
            .await
            .acknowledged_orders
            .push((access.to_owned(), text(&body["id"])));
    }
    record.lock().await.count("create order", status);
    let listed = world
        .http
        .get(world.gateway.url("/v1/orders"))
        .bearer_auth(access)
        .send()
        .await;
    record.lock().await.count("list orders", outcome(&listed));
}

/// Logs out (this session or every session); whether the issuer acknowledged it (204).
async fn end_session(
    world: &World,
    path: &str,
    access: &str,
    operation: &'static str,
    record: &Shared,
) -> bool {
    let ended = world
        .http
        .post(world.gateway.url(path))
        .bearer_auth(access)
        .send()
        .await;
    record.lock().await.count(operation, outcome(&ended));
    ended.is_ok_and(|r| r.status() == StatusCode::NO_CONTENT)
}

async fn sign_in(world: &World, username: &str, record: &Shared) -> Option<Value> {
    let response = world
        .http
        .post(world.gateway.url("/oauth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", username),
            ("password", PASSWORD),
        ])
        .send()
        .await;
    record.lock().await.count("sign in", outcome(&response));
    let response = response.ok().filter(|r| r.status() == StatusCode::OK)?;
    response.json().await.ok()
}

/// Probes every token logged out more than the bound ago, once, at both verifiers: any
/// acceptance is a revoked token let in.
async fn probe_loop(world: Arc<World>, record: Shared, stop: Arc<AtomicBool>) {
    let mut probed = 0;
    while !stop.load(Ordering::SeqCst) {
        let due: Vec<Ended> = {
            let record = record.lock().await;
            let ready = record.logged_out[probed..]
                .iter()
                .take_while(|ended| ended.at.elapsed() >= REVOCATION_BOUND)
                .cloned()
                .collect::<Vec<_>>();
            probed += ready.len();
            ready
        };
        for ended in due {
            probe(&world, &ended, &record).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn probe(world: &World, ended: &Ended, record: &Shared) {
    let token = ended.token.as_str();
    let at_gateway = world
        .http
        .get(world.gateway.url("/v1/orders"))
        .bearer_auth(token)
        .send()
        .await;
    let at_orders = world.orders.with_token(token).list_page(1, "").await;
    let mut record = record.lock().await;
    record.count("probe revoked (gateway)", outcome(&at_gateway));
    record.count(
        "probe revoked (orders gRPC)",
        match &at_orders {
            Ok(_) => "OK".to_owned(),
            Err(status) => format!("{:?}", status.code()),
        },
    );
    let let_in = |verifier| LetIn {
        verifier,
        phase: ended.phase,
        how: ended.how,
        after: ended.at.elapsed(),
        token: peek(token),
    };
    if at_gateway.is_ok_and(|r| r.status().is_success()) {
        record.let_in.push(let_in("gateway"));
    }
    if at_orders.is_ok() {
        record.let_in.push(let_in("orders-service"));
    }
}

/// Until a sign-in and a read through the gateway work again.
async fn recovered(world: &World) -> Duration {
    let record: Shared = Arc::default();
    eventually("the system recovers", Duration::from_secs(60), || async {
        let Some(tokens) = sign_in(world, "admin", &record).await else {
            return false;
        };
        let token = tokens["access_token"].as_str().unwrap_or_default();
        world
            .http
            .get(world.gateway.url("/v1/orders"))
            .bearer_auth(token)
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await
}

async fn admin_token(world: &World) -> String {
    let record: Shared = Arc::default();
    let tokens = sign_in(world, "admin", &record)
        .await
        .expect("the admin signs in");
    tokens["access_token"].as_str().unwrap().to_owned()
}

/// One fault of the schedule: break something, hold, repair.
#[derive(Debug, Clone, Copy)]
enum Fault {
    ReplicaKilled,
    PostgresDown,
    RedisDown,
    StreamsCut,
    KeyRotated,
    KeyRevoked,
    DatabaseRestored,
}

impl Fault {
    const SCHEDULE: [Fault; 7] = [
        Fault::ReplicaKilled,
        Fault::PostgresDown,
        Fault::RedisDown,
        Fault::StreamsCut,
        Fault::KeyRotated,
        Fault::KeyRevoked,
        Fault::DatabaseRestored,
    ];

    const fn name(self) -> &'static str {
        match self {
            Fault::ReplicaKilled => "one auth-service replica killed, restarted after the hold",
            Fault::PostgresDown => "PostgreSQL unreachable for the hold",
            Fault::RedisDown => "Redis unreachable for the hold",
            Fault::StreamsCut => "every revocation stream cut",
            Fault::KeyRotated => "signing key rotated at once",
            Fault::KeyRevoked => "the previous signing key revoked (emergency)",
            Fault::DatabaseRestored => "the database put back to the copy taken at the start",
        }
    }
}

impl World {
    async fn inject(&self, fault: Fault, hold: Duration) {
        match fault {
            Fault::ReplicaKilled => {
                self.replicas.lock().await[0].crash();
                tokio::time::sleep(hold).await;
                let restarted = CrashableAuth::start(self.auth_config.clone()).await;
                let mut replicas = self.replicas.lock().await;
                replicas[0] = restarted;
                self.auth_http
                    .set_upstreams(replicas.iter().map(|r| r.http_addr).collect());
                self.auth_grpc
                    .set_upstreams(replicas.iter().map(|r| r.grpc_addr).collect());
            }
            Fault::PostgresDown => {
                self.pg.refuse();
                tokio::time::sleep(hold).await;
                self.pg.restore();
            }
            Fault::RedisDown => {
                self.redis.refuse();
                tokio::time::sleep(hold).await;
                self.redis.restore();
            }
            Fault::StreamsCut => self.auth_grpc.cut(),
            Fault::KeyRotated => {
                let admin = admin_token(self).await;
                let response = self
                    .http
                    .post(
                        self.auth_http
                            .url("http", "/v1/admin/keys/rotate?immediate=true"),
                    )
                    .bearer_auth(admin)
                    .send()
                    .await
                    .expect("rotation answered");
                assert_eq!(response.status(), StatusCode::OK, "key rotation");
            }
            Fault::KeyRevoked => {
                let admin = admin_token(self).await;
                let listing: Value = self
                    .http
                    .get(self.auth_http.url("http", "/v1/admin/keys"))
                    .bearer_auth(&admin)
                    .send()
                    .await
                    .expect("key listing")
                    .json()
                    .await
                    .expect("JSON listing");
                let retired = listing["keys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|key| key["state"] == "retired")
                    .and_then(|key| key["kid"].as_str())
                    .expect("a retired key after the rotation")
                    .to_owned();
                let response = self
                    .http
                    .post(
                        self.auth_http
                            .url("http", &format!("/v1/admin/keys/{retired}/revoke")),
                    )
                    .bearer_auth(&admin)
                    .send()
                    .await
                    .expect("revocation answered");
                assert_eq!(response.status(), StatusCode::OK, "key revocation");
            }
            Fault::DatabaseRestored => self.restore_snapshot().await,
        }
    }

    fn snapshot_name(&self) -> String {
        format!("{}_snapshot", self.db.name)
    }

    /// A copy of the database as it is now. PostgreSQL copies a database only while nobody is
    /// connected to it, so this is a brief outage of its own.
    async fn take_snapshot(&self) {
        self.pg.refuse();
        self.db.go_away().await;
        self.db
            .admin(&format!(
                "CREATE DATABASE {} TEMPLATE {}",
                self.snapshot_name(),
                self.db.name
            ))
            .await;
        self.db.come_back().await;
        self.pg.restore();
    }

    /// The database replaced by the snapshot, as a restore from backup does: everything written
    /// since (sessions' refresh families, revocation events, key rows) is gone.
    async fn restore_snapshot(&self) {
        self.pg.refuse();
        self.db.go_away().await;
        self.db
            .admin(&format!("DROP DATABASE {} WITH (FORCE)", self.db.name))
            .await;
        self.db
            .admin(&format!(
                "CREATE DATABASE {} TEMPLATE {}",
                self.db.name,
                self.snapshot_name()
            ))
            .await;
        self.pg.restore();
    }

    /// Every order an administrator sees, by id.
    async fn all_orders(&self) -> std::collections::BTreeSet<String> {
        let admin = admin_token(self).await;
        self.orders
            .with_token(admin)
            .list_all(100)
            .await
            .expect("the administrator lists every order")
            .into_iter()
            .map(|order| order.id)
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs TEST_DATABASE_URL and TEST_REDIS_URL: run with -- --include-ignored"]
async fn nothing_is_lost_and_nothing_let_in_under_faults() {
    // The services' errors, to name the cause of any 500.
    let logs = testkit::logs::ProcessLogs::install("error");
    let hold = setting("FAULTS_HOLD", Duration::from_secs(3));
    let settle = setting("FAULTS_SETTLE", Duration::from_secs(3));
    let world = Arc::new(World::start().await);
    let record: Shared = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for user in 0..USERS {
        tasks.spawn(user_loop(
            Arc::clone(&world),
            user,
            record.clone(),
            stop.clone(),
        ));
    }
    tasks.spawn(probe_loop(Arc::clone(&world), record.clone(), stop.clone()));
    let started = Instant::now();

    record.lock().await.phase = "steady load";
    tokio::time::sleep(settle).await;
    record.lock().await.phase = SNAPSHOT;
    world.take_snapshot().await;
    for fault in Fault::SCHEDULE {
        tokio::time::sleep(settle).await;
        eprintln!("fault: {}", fault.name());
        record.lock().await.phase = fault.name();
        world.inject(fault, hold).await;
        let took = recovered(&world).await;
        record.lock().await.recoveries.push((fault.name(), took));
    }
    tokio::time::sleep(settle).await;
    stop.store(true, Ordering::SeqCst);
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();

    // The tokens logged out last, once their bound has passed too.
    tokio::time::sleep(REVOCATION_BOUND).await;
    // Every token whose probe the stop may have overtaken: those ended within two bounds.
    let last: Vec<Ended> = {
        let mut record = record.lock().await;
        record.phase = "final probe";
        let recent = record
            .logged_out
            .iter()
            .filter(|ended| ended.at.elapsed() < REVOCATION_BOUND * 2)
            .cloned();
        recent.collect()
    };
    for ended in &last {
        probe(&world, ended, &record).await;
    }

    let present = world.all_orders().await;
    let record = record.lock().await;
    let missing: Vec<&String> = record
        .acknowledged_orders
        .iter()
        .map(|(_, id)| id)
        .filter(|id| !present.contains(*id))
        .collect();
    let report = report(&record, elapsed, missing.len());
    eprintln!("{report}");
    if let Ok(path) = std::env::var("FAULTS_REPORT") {
        std::fs::write(&path, &report).expect("report written");
    }
    assert!(
        record.let_in.is_empty(),
        "revoked tokens let in: {:#?}",
        record.let_in
    );
    assert!(
        missing.is_empty(),
        "acknowledged orders missing: {missing:?}"
    );
    assert_eq!(record.refresh_reused, 0, "refresh tokens accepted twice");
    let internal: u64 = record.failures.values().map(|f| f.internal).sum();
    if internal > 0 {
        let mut errors: Vec<String> = logs.lines();
        errors.sort();
        errors.dedup();
        errors.truncate(20);
        panic!(
            "{internal} requests answered 500 where a fault means 503; the services logged:\n{}",
            errors.join("\n")
        );
    }
    assert!(
        !record.acknowledged_orders.is_empty() && !record.logged_out.is_empty(),
        "the load did some work"
    );
}

fn report(record: &Record, elapsed: Duration, missing: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "| operation | outcome | count |\n| --- | --- | ---: |");
    for ((operation, outcome), count) in &record.outcomes {
        let _ = writeln!(out, "| {operation} | {outcome} | {count} |");
    }
    let _ = writeln!(
        out,
        "\n| fault (and the traffic after it) | recovered in | 502/503/504, timeouts | 500 | 401 on live sessions | revoked tokens let in |\n| --- | ---: | ---: | ---: | ---: | ---: |"
    );
    for (fault, took) in &record.recoveries {
        let let_in = record
            .let_in
            .iter()
            .filter(|let_in| let_in.phase == *fault)
            .count();
        let failures = record.failures.get(fault).copied().unwrap_or_default();
        let _ = writeln!(
            out,
            "| {fault} | {:.2} s | {} | {} | {} | {let_in} |",
            took.as_secs_f64(),
            failures.unavailable,
            failures.internal,
            failures.refused,
        );
    }
    let steady = record
        .failures
        .get("steady load")
        .copied()
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "| (steady load, before the first fault) | | {} | {} | {} | {} |",
        steady.unavailable,
        steady.internal,
        steady.refused,
        record
            .let_in
            .iter()
            .filter(|let_in| let_in.phase == "steady load")
            .count(),
    );
    let _ = writeln!(
        out,
        "\nrun: {:.0} s, {} users; acknowledged orders {}, missing {missing}; logouts {}, \
         revoked tokens let in after {} s: {}; refresh tokens accepted twice: {}",
        elapsed.as_secs_f64(),
        USERS,
        record.acknowledged_orders.len(),
        record.logged_out.len(),
        REVOCATION_BOUND.as_secs(),
        record.let_in.len(),
        record.refresh_reused,
    );
    out
}
