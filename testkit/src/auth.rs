//! The real auth-service, in process, on port 0, with its SQLite database and signing key in a
//! temporary directory (feature `auth`):
//!
//! ```ignore
//! let auth = testkit::auth::spawn_auth().await;
//! auth.create_user("alice", "correct horse", "user", "orders:read").await;
//! let tokens = auth.login("alice", "correct horse").await;
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use auth_service::app::ServeError;
use auth_service::clients::{self, NewClient};
use auth_service::passwords::ExposeSecret as _;
use auth_service::scope::{ScopeSet, parse_roles};
use auth_service::users::{self, NewUser, User};
use auth_service::{App, AppState, Config};
use authn::jwk::{JwkSet, KeySet};
use authn::verifier::{Keys, Policy, Verifier};
use proto::auth::v1::session_service_client::SessionServiceClient;
use proto::auth::v1::{
    CheckSessionRequest, Reset, RevocationEvent, WatchRevocationsRequest, WatchRevocationsResponse,
    watch_revocations_response::Message,
};
use serde::Deserialize;
use std::time::Duration;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// The `iss` of every token the test issuer signs.
pub const TEST_ISSUER: &str = "http://auth.test";
/// The `aud` of every token the test issuer signs (the default of `AUTH_AUDIENCE`).
pub const TEST_AUDIENCE: &str = "orders";

/// A running auth-service.
pub struct TestAuth {
    /// `http://127.0.0.1:<port>`
    pub http_url: String,
    /// `http://127.0.0.1:<port>` of the gRPC listener.
    pub grpc_url: String,
    /// `http://127.0.0.1:<port>` of the metrics listener.
    pub metrics_url: String,
    pub config: Config,
    /// Database pool and password hasher of the running service, for direct set-up.
    pub state: AppState,
    /// The key id of the signing key.
    pub kid: String,
    pub http: reqwest::Client,
    dir: Arc<TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), ServeError>>>,
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Clone, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    pub scope: Option<String>,
    pub refresh_token: Option<String>,
}

/// The configuration of a test instance whose state lives in `dir`: any free ports, no shutdown
/// delay.
pub fn test_config(dir: &Path) -> Config {
    Config {
        http_addr: "127.0.0.1:0".parse().expect("address"),
        grpc_addr: "127.0.0.1:0".parse().expect("address"),
        metrics_addr: "127.0.0.1:0".parse().expect("address"),
        database_url: database_url(dir),
        keys_dir: keys_dir(dir),
        issuer: TEST_ISSUER.to_owned(),
        audience: TEST_AUDIENCE.to_owned(),
        // Tests stop their servers at once; the readiness-first delay has tests of its own.
        shutdown_delay: Duration::ZERO,
        ..Config::default()
    }
}

pub fn database_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("auth.db").display())
}

pub fn keys_dir(dir: &Path) -> PathBuf {
    dir.join("keys")
}

/// The operator command `binary` (the calling suite's `env!("CARGO_BIN_EXE_auth-service")`) on
/// the state in `dir`, with nothing from the test run's environment but `PATH` and no standard
/// input: the caller adds the arguments (and any other variable), then runs it.
pub fn cli(binary: &str, dir: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(binary);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url(dir))
        .env("AUTH_KEYS_DIR", keys_dir(dir))
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null());
    command
}

/// Runs `command` with `stdin` on its standard input; its output.
pub async fn output_with_stdin(
    command: &mut tokio::process::Command,
    stdin: &str,
) -> std::process::Output {
    use tokio::io::AsyncWriteExt as _;
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the command starts");
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin.as_bytes())
        .await
        .expect("stdin written");
    drop(pipe);
    child.wait_with_output().await.expect("the command exits")
}

/// `TEST_REDIS_URL` on logical database `index`, emptied first: for a suite whose counts are
/// store-wide (the other suites' sessions share database 0). Each caller takes its own index.
pub async fn own_redis_database(index: u8) -> String {
    let url = crate::test_redis_url();
    let base = url.trim_end_matches('/');
    let base = match base.rsplit_once('/') {
        Some((head, db)) if !head.ends_with('/') && db.parse::<u8>().is_ok() => head,
        _ => base,
    };
    let url = format!("{base}/{index}");
    let client = redis::Client::open(url.as_str()).expect("Redis URL");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis connects");
    let () = redis::cmd("FLUSHDB")
        .query_async(&mut conn)
        .await
        .expect("FLUSHDB");
    url
}

/// Starts an auth-service on a fresh temporary directory.
pub async fn spawn_auth() -> TestAuth {
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    spawn_auth_with(test_config(dir.path()), dir).await
}

/// Starts an auth-service with `config`, keeping `dir` alive as long as the service.
pub async fn spawn_auth_with(config: Config, dir: Arc<TempDir>) -> TestAuth {
    // Install the process-wide metrics recorder before anything is counted.
    platform::telemetry::prometheus();
    let app = App::build(config.clone())
        .await
        .expect("auth-service builds");
    let http_url = format!("http://{}", app.http_addr());
    let grpc_url = format!("http://{}", app.grpc_addr());
    let metrics_url = format!("http://{}", app.metrics_addr());
    let state = app.state().clone();
    let kid = app.kid().to_owned();
    let (shutdown, stop) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async {
        let _ = stop.await;
    }));
    TestAuth {
        http_url,
        grpc_url,
        metrics_url,
        config,
        state,
        kid,
        // The platform's client builder: reqwest with aws-lc-rs as its TLS provider.
        http: platform::http::client_builder()
            .build()
            .expect("HTTP client"),
        dir,
        shutdown: Some(shutdown),
        server: Some(server),
    }
}

impl TestAuth {
    /// The temporary directory holding the database and the keys.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn shared_dir(&self) -> Arc<TempDir> {
        Arc::clone(&self.dir)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.http_url)
    }

    pub fn jwks_url(&self) -> String {
        self.url("/.well-known/jwks.json")
    }

    /// Creates a user directly in the database (what `auth-service user add` does).
    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
        roles: &str,
        scopes: &str,
    ) -> User {
        users::create(
            &self.state.pool,
            &self.state.passwords,
            NewUser {
                username: username.to_owned(),
                password: password.to_owned().into(),
                roles: parse_roles(roles).expect("roles"),
                scopes: ScopeSet::parse(scopes).expect("scopes"),
            },
        )
        .await
        .expect("user created")
    }

    /// Registers a client and returns its secret (what `auth-service client add` does).
    pub async fn create_client(&self, id: &str, scopes: &str, roles: &str) -> String {
        let (_, secret) = clients::create(
            &self.state.pool,
            &self.state.passwords,
            NewClient {
                id: id.to_owned(),
                scopes: ScopeSet::parse(scopes).expect("scopes"),
                roles: parse_roles(roles).expect("roles"),
            },
        )
        .await
        .expect("client created");
        secret.expose_secret().to_owned()
    }

    /// `POST /oauth/token` with a form body.
    pub async fn post_token(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(self.url("/oauth/token"))
            .form(form)
            .send()
            .await
            .expect("token request sent")
    }

    /// A password login that must succeed.
    pub async fn login(&self, username: &str, password: &str) -> TokenResponse {
        let response = self
            .post_token(&[
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
            ])
            .await;
        expect_tokens(response).await
    }

    /// A refresh that must succeed.
    pub async fn refresh(&self, refresh_token: &str) -> TokenResponse {
        let response = self
            .post_token(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ])
            .await;
        expect_tokens(response).await
    }

    /// A `client_credentials` token (HTTP Basic) that must succeed.
    pub async fn client_token(&self, id: &str, secret: &str) -> TokenResponse {
        let response = self
            .http
            .post(self.url("/oauth/token"))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("token request sent");
        expect_tokens(response).await
    }

    /// The Prometheus text of `/metrics`, from the metrics listener.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.metrics_url))
            .send()
            .await
            .expect("sent")
            .text()
            .await
            .expect("text")
    }

    pub async fn fetch_jwks(&self) -> JwkSet {
        self.http
            .get(self.jwks_url())
            .send()
            .await
            .expect("JWKS request sent")
            .json()
            .await
            .expect("JWKS is JSON")
    }

    /// A verifier fed only with the served JWKS, as a resource service would be.
    pub async fn jwks_verifier(&self) -> Verifier {
        let (keys, dropped) = KeySet::from_jwks(&self.fetch_jwks().await);
        assert!(
            dropped.is_empty(),
            "the issuer publishes a refused key: {dropped:?}"
        );
        Verifier::new(Keys::fixed(keys), Policy::new(TEST_ISSUER, TEST_AUDIENCE))
    }

    pub async fn grpc_client(&self) -> SessionServiceClient<Channel> {
        SessionServiceClient::connect(self.grpc_url.clone())
            .await
            .expect("gRPC connects")
    }

    /// Disables a user the way the admin endpoint does (flag, events, sessions ended).
    pub async fn disable_user(&self, user_id: &str) {
        auth_service::accounts::disable_user(
            &self.state.pool,
            self.state.sessions.as_ref(),
            &self.state.revocations,
            user_id,
        )
        .await
        .expect("user disabled")
        .expect("the user exists");
    }

    /// A `client_credentials` token with scope `sessions:check`, as a verifier has (a client
    /// with a fresh random id is registered for it).
    pub async fn verifier_token(&self) -> String {
        let id = format!("verifier-{}", uuid::Uuid::new_v4().simple());
        let secret = self.create_client(&id, "sessions:check", "").await;
        self.client_token(&id, &secret).await.access_token
    }

    /// `CheckSession(sid)` with `token`; panics on an RPC error.
    pub async fn session_is_active(&self, token: &str, sid: &str) -> bool {
        let mut request = tonic::Request::new(CheckSessionRequest {
            sid: sid.to_owned(),
        });
        authn::grpc::with_bearer(&mut request, token).expect("bearer metadata");
        self.grpc_client()
            .await
            .check_session(request)
            .await
            .expect("CheckSession answers")
            .into_inner()
            .active
    }

    /// Opens `WatchRevocations(after_sequence)` with `token`.
    pub async fn watch(&self, token: &str, after_sequence: u64) -> Watcher {
        self.watch_from(
            token,
            WatchRevocationsRequest {
                after_sequence,
                ..WatchRevocationsRequest::default()
            },
        )
        .await
    }

    /// Opens `WatchRevocations` with `token` and a whole resume request (sequence, epoch,
    /// fingerprint).
    pub async fn watch_from(&self, token: &str, resume: WatchRevocationsRequest) -> Watcher {
        watch_revocations(&self.grpc_url, token, resume).await
    }

    /// Sends the shutdown signal (SIGTERM, in production) without waiting for the drain;
    /// [`TestAuth::stop`] then waits for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// `GET /readyz`: the status and the JSON body.
    pub async fn readyz(&self) -> (reqwest::StatusCode, serde_json::Value) {
        let response = self
            .http
            .get(self.url("/readyz"))
            .send()
            .await
            .expect("readyz answers");
        let status = response.status();
        (status, response.json().await.expect("readyz body is JSON"))
    }

    /// Stops the service and waits until it has drained.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }
}

impl Drop for TestAuth {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// An auth-service running on a runtime of its own, on a thread of its own, so that a test can
/// kill it the way SIGKILL kills a process: [`CrashableAuth::crash`] drops the runtime, and with
/// it every task, connection and stream of the service at once, without any shutdown.
pub struct CrashableAuth {
    pub http_addr: std::net::SocketAddr,
    pub grpc_addr: std::net::SocketAddr,
    crash: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CrashableAuth {
    /// Builds and starts auth-service with `config` on a new runtime; returns once it listens.
    pub async fn start(config: Config) -> Self {
        let (started, addresses) = oneshot::channel();
        let (crash, crashed) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let app = App::build(config).await.expect("auth-service builds");
                let _ = started.send((app.http_addr(), app.grpc_addr()));
                // Never signalled: the service runs until its runtime is dropped.
                tokio::spawn(app.run(std::future::pending::<()>()));
            });
            // Blocks this thread (not a runtime worker) until the crash or the drop.
            let _ = crashed.recv();
            runtime.shutdown_background();
        });
        let (http_addr, grpc_addr) = addresses.await.expect("auth-service started");
        Self {
            http_addr,
            grpc_addr,
            crash: Some(crash),
            thread: Some(thread),
        }
    }

    /// Kills the service: every task ends where it is, every socket closes.
    pub fn crash(&mut self) {
        drop(self.crash.take());
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the service thread ends");
        }
    }
}

impl Drop for CrashableAuth {
    fn drop(&mut self) {
        self.crash();
    }
}

/// The tokens of a 200 response; panics with the body otherwise.
pub async fn expect_tokens(response: reqwest::Response) -> TokenResponse {
    let status = response.status();
    let body = response.text().await.expect("body");
    assert_eq!(status, 200, "token request failed: {body}");
    serde_json::from_str(&body).expect("token response JSON")
}

/// The status and RFC 6749 error body of a refused token request.
pub async fn expect_error(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let body = response.text().await.expect("body");
    assert_ne!(status, 200, "expected an error, got {body}");
    let json: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("error body is not JSON: {body:?}"));
    assert!(json["error"].is_string(), "no `error` member: {body}");
    (status, json)
}

/// The `sid` claim of an access token of this issuer (read without verification).
pub fn sid_of(access_token: &str) -> String {
    claims_of(access_token)["sid"]
        .as_str()
        .expect("a user token has a sid")
        .to_owned()
}

/// The payload of a JWS, unverified: for tests that need a claim of a token they just got.
pub fn claims_of(access_token: &str) -> serde_json::Value {
    let payload = access_token.split('.').nth(1).expect("JWS payload");
    let bytes = authn::base64url::decode(payload).expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON payload")
}

/// Opens `WatchRevocations` at the issuer `grpc_url` with `token` and `resume`.
pub async fn watch_revocations(
    grpc_url: &str,
    token: &str,
    resume: WatchRevocationsRequest,
) -> Watcher {
    let mut request = tonic::Request::new(resume);
    authn::grpc::with_bearer(&mut request, token).expect("bearer metadata");
    let stream = SessionServiceClient::connect(grpc_url.to_owned())
        .await
        .expect("gRPC connects")
        .watch_revocations(request)
        .await
        .expect("WatchRevocations opens")
        .into_inner();
    Watcher { stream }
}

/// An open `WatchRevocations` stream.
pub struct Watcher {
    pub stream: tonic::Streaming<WatchRevocationsResponse>,
}

/// What a stream said next.
#[derive(Debug, Clone, PartialEq)]
pub enum Said {
    Event(RevocationEvent),
    Heartbeat {
        head_sequence: u64,
        sent_at_ms: i64,
        log_epoch: String,
    },
    Reset(Reset),
}

impl Said {
    pub fn event(self) -> RevocationEvent {
        match self {
            Said::Event(event) => event,
            other => panic!("expected an event, got {other:?}"),
        }
    }
}

/// How long a test waits for the next message of a stream before failing.
pub const STREAM_DEADLINE: Duration = Duration::from_secs(10);

impl Watcher {
    /// The next message as sent; panics after [`STREAM_DEADLINE`], on an error or on the end.
    pub async fn next_message(&mut self) -> Message {
        let message = tokio::time::timeout(STREAM_DEADLINE, self.stream.message())
            .await
            .expect("a message within the deadline")
            .expect("the stream is healthy")
            .expect("the stream goes on");
        message.message.expect("a message has content")
    }

    /// The next message; panics after [`STREAM_DEADLINE`], on an error or on the end.
    pub async fn next(&mut self) -> Said {
        match self.next_message().await {
            Message::Event(event) => Said::Event(event),
            Message::Heartbeat(h) => Said::Heartbeat {
                head_sequence: h.head_sequence,
                sent_at_ms: h.sent_at_ms,
                log_epoch: h.log_epoch,
            },
            Message::Reset(reset) => Said::Reset(reset),
        }
    }

    /// The next event, skipping heartbeats.
    pub async fn next_event(&mut self) -> RevocationEvent {
        loop {
            if let Said::Event(event) = self.next().await {
                return event;
            }
        }
    }

    /// Reads until the stream ends: `Ok` for a clean end, the status it ended with otherwise;
    /// panics if it is still open after `within`.
    pub async fn end_within(&mut self, within: Duration) -> Result<(), tonic::Status> {
        tokio::time::timeout(within, async {
            loop {
                match self.stream.message().await {
                    Ok(Some(_)) => {}
                    Ok(None) => return Ok(()),
                    Err(status) => return Err(status),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the stream is still open after {within:?}"))
    }

    /// Every event up to the next heartbeat, and that heartbeat's head; panics on a reset.
    pub async fn until_heartbeat(&mut self) -> (Vec<RevocationEvent>, u64) {
        let mut events = Vec::new();
        loop {
            match self.next().await {
                Said::Event(event) => events.push(event),
                Said::Heartbeat { head_sequence, .. } => return (events, head_sequence),
                Said::Reset(reset) => panic!("unexpected reset {reset:?} after {events:?}"),
            }
        }
    }
}
