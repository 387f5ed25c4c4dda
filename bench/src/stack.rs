//! The platform as child processes: auth-service, orders-service and gateway from the release
//! binaries, each on free loopback ports, sharing one fresh temporary directory, seeded with the
//! auth-service CLI. Dropping a [`Stack`] stops all three (SIGTERM, then a bounded wait, then
//! SIGKILL), so a failed start, a panic or Ctrl-C never leaves a service behind.

use std::fs::File;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use http::StatusCode;
use rustix::process::{Pid, Signal, kill_process};

use crate::cli::{Mode, RouteLevel};
use crate::client::{HttpConnection, get};

/// How to build what loadgen starts.
pub const BUILD_COMMAND: &str =
    "cargo build --release -p auth-service -p orders-service -p gateway -p bench";

/// How long a service may take to answer `/readyz` with 200.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a service may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The services' names, also their data directories' names.
const AUTH: &str = "auth-service";
const ORDERS: &str = "orders-service";
const GATEWAY: &str = "gateway";

/// The seeded user whose sessions carry the load.
pub const USERNAME: &str = "loadgen";
/// The seeded client of the issuance scenario's `client_credentials` grant.
pub const CLIENT_ID: &str = "loadgen";

/// The three service binaries.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub auth: PathBuf,
    pub orders: PathBuf,
    pub gateway: PathBuf,
}

/// The directory of the service binaries: `given` (`--bin-dir`), or the one loadgen itself was
/// built into.
pub fn binaries_dir(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = given {
        return Ok(dir.to_owned());
    }
    let exe = std::env::current_exe().context("cannot locate the loadgen executable")?;
    exe.parent()
        .map(PathBuf::from)
        .context("the loadgen executable has no parent directory")
}

impl Binaries {
    /// The binaries in `dir`, or an error saying how to build them.
    pub fn in_dir(dir: &Path) -> anyhow::Result<Self> {
        // Absolute: each service runs in its own data directory.
        let dir = &std::path::absolute(dir)
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        let binaries = Self {
            auth: dir.join(AUTH),
            orders: dir.join(ORDERS),
            gateway: dir.join(GATEWAY),
        };
        let missing: Vec<String> = [&binaries.auth, &binaries.orders, &binaries.gateway]
            .into_iter()
            .filter(|path| !path.is_file())
            .map(|path| path.display().to_string())
            .collect();
        if !missing.is_empty() {
            bail!(
                "missing {}: loadgen starts the service binaries found next to itself (or in \
                 --bin-dir). Build them first, from the workspace root:\n\n    {BUILD_COMMAND}\n",
                missing.join(", ")
            );
        }
        Ok(binaries)
    }
}

/// What differs between stacks.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub mode: Mode,
    /// Given as `REDIS_URL` to all three services when the mode uses Redis.
    pub redis_url: Option<String>,
    /// `RUST_LOG` of the services.
    pub log_level: String,
    /// Extra environment of both verifiers, applied last.
    pub verifier_env: Vec<(String, String)>,
    /// Extra environment of auth-service (server and CLI), applied last.
    pub auth_env: Vec<(String, String)>,
    /// The freshness level of the throughput route at both verifiers (`AUTH_ROUTE_POLICY`).
    pub route_level: Option<RouteLevel>,
}

/// A running service.
struct Service {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

/// The addresses of a running stack.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    pub auth_http: SocketAddr,
    pub auth_grpc: SocketAddr,
    /// The issuer's metrics listener (`AUTH_METRICS_ADDR`).
    pub auth_metrics: SocketAddr,
    pub orders_grpc: SocketAddr,
    /// orders-service's operations listener: health and metrics.
    pub orders_http: SocketAddr,
    pub gateway: SocketAddr,
    /// The gateway's metrics listener (`GATEWAY_METRICS_ADDR`).
    pub gateway_metrics: SocketAddr,
}

/// The running platform. Stopped when dropped.
pub struct Stack {
    pub addrs: Addresses,
    /// The seeded user's password (the username is [`USERNAME`]).
    pub password: String,
    /// The secret of the seeded client [`CLIENT_ID`] (scope `orders:read`).
    pub client_secret: String,
    services: Vec<Service>,
    options: StackOptions,
    // Dropped after the services are stopped (fields drop after `Drop::drop`).
    dir: tempfile::TempDir,
}

impl Stack {
    /// Seeds a fresh data directory, starts auth-service, waits until it is ready, then starts
    /// orders-service and the gateway and waits until both are ready.
    pub async fn start(binaries: &Binaries, options: &StackOptions) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("loadgen-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let [
            auth_http,
            auth_grpc,
            auth_metrics,
            orders_grpc,
            orders_http,
            gateway,
            gateway_metrics,
        ] = free_ports()?;
        let addrs = Addresses {
            auth_http,
            auth_grpc,
            auth_metrics,
            orders_grpc,
            orders_http,
            gateway,
            gateway_metrics,
        };
        let password = uuid::Uuid::new_v4().simple().to_string();
        let mut stack = Self {
            addrs,
            password,
            client_secret: String::new(),
            services: Vec::new(),
            options: options.clone(),
            dir,
        };
        let env = Env::new(stack.dir.path(), &addrs, options);
        for name in [AUTH, ORDERS, GATEWAY] {
            std::fs::create_dir(env.home(name))?;
        }

        let secrets = stack
            .seed(binaries)
            .await
            .context("seeding auth-service with its CLI")?;
        stack.client_secret = secrets.loadgen;

        stack.spawn(AUTH, &binaries.auth, &env.auth(), &env)?;
        stack.wait_ready(AUTH, addrs.auth_http).await?;
        stack.spawn(ORDERS, &binaries.orders, &env.orders(&secrets.orders), &env)?;
        stack.spawn(
            GATEWAY,
            &binaries.gateway,
            &env.gateway(&secrets.gateway),
            &env,
        )?;
        stack.wait_ready(ORDERS, addrs.orders_http).await?;
        stack.wait_ready(GATEWAY, addrs.gateway).await?;
        Ok(stack)
    }

    async fn seed(&self, binaries: &Binaries) -> anyhow::Result<ClientSecrets> {
        self.add_user(binaries, USERNAME, &self.password).await?;
        // The verifiers' own clients, for `stateful` lookups over gRPC and the `hybrid` stream;
        // and the issuance scenario's.
        let mut secrets = Vec::new();
        for (id, scopes) in [
            ("gateway", "sessions:check"),
            ("orders", "sessions:check"),
            (CLIENT_ID, "orders:read"),
        ] {
            secrets.push(self.add_client(binaries, id, scopes).await?);
        }
        let [gateway, orders, loadgen] =
            <[String; 3]>::try_from(secrets).expect("BUG: one secret per client above");
        Ok(ClientSecrets {
            gateway,
            orders,
            loadgen,
        })
    }

    /// Runs the operator command `auth-service <args>` next to the running service, with its
    /// configuration, `stdin` on its standard input; returns its standard output.
    pub async fn operator(
        &self,
        binaries: &Binaries,
        args: &[&str],
        stdin: Option<&str>,
    ) -> anyhow::Result<String> {
        let env = Env::new(self.dir.path(), &self.addrs, &self.options);
        self.auth_cli(binaries, &env, args, stdin).await
    }

    /// Adds the user `username` with role `user` and scopes `orders:read orders:write` (the
    /// auth-service CLI, next to the running service).
    pub async fn add_user(
        &self,
        binaries: &Binaries,
        username: &str,
        password: &str,
    ) -> anyhow::Result<()> {
        self.operator(
            binaries,
            &[
                "user",
                "add",
                "--username",
                username,
                "--roles",
                "user",
                "--scopes",
                "orders:read orders:write",
                "--password-stdin",
            ],
            Some(&format!("{password}\n")),
        )
        .await?;
        Ok(())
    }

    /// Registers the client `id` with `scopes` (the auth-service CLI, next to the running
    /// service); returns its secret.
    pub async fn add_client(
        &self,
        binaries: &Binaries,
        id: &str,
        scopes: &str,
    ) -> anyhow::Result<String> {
        let out = self
            .operator(
                binaries,
                &["client", "add", "--id", id, "--scopes", scopes],
                None,
            )
            .await?;
        printed_secret(&out, id)
    }

    /// Runs `auth-service <args>` with the issuer's configuration; returns its standard output.
    async fn auth_cli(
        &self,
        binaries: &Binaries,
        env: &Env,
        args: &[&str],
        stdin: Option<&str>,
    ) -> anyhow::Result<String> {
        let mut command = env.command(&binaries.auth, AUTH, &env.auth());
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = tokio::process::Command::from(command)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {}", binaries.auth.display()))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            use tokio::io::AsyncWriteExt as _;
            pipe.write_all(input.as_bytes()).await?;
        }
        drop(child.stdin.take());
        let output = child.wait_with_output().await?;
        if !output.status.success() {
            bail!(
                "`auth-service {}` failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn spawn(
        &mut self,
        name: &'static str,
        binary: &Path,
        vars: &[(&'static str, String)],
        env: &Env,
    ) -> anyhow::Result<()> {
        let log = self.dir.path().join(format!("{name}.log"));
        let out = File::create(&log)?;
        let mut command = env.command(binary, name, vars);
        command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        self.services.push(Service { name, child, log });
        Ok(())
    }

    /// Polls `GET /readyz` until 200; fails early, with the end of its log, if a service exits.
    async fn wait_ready(&mut self, name: &str, addr: SocketAddr) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut connection = HttpConnection::new(addr);
        loop {
            for service in &mut self.services {
                if let Some(status) = service.child.try_wait()? {
                    bail!(
                        "{} exited ({status}) while starting; the end of its log:\n{}",
                        service.name,
                        log_tail(&service.log, 30)
                    );
                }
            }
            let last = match connection.send(get("/readyz", None)).await {
                Ok(response) if response.status == StatusCode::OK => return Ok(()),
                Ok(response) => format!("{}", response.status),
                Err(error) => format!("{error:#}"),
            };
            if Instant::now() > deadline {
                let log = self
                    .services
                    .iter()
                    .find(|s| s.name == name)
                    .map(|s| log_tail(&s.log, 30))
                    .unwrap_or_default();
                bail!(
                    "{name} did not become ready at http://{addr}/readyz within {READY_TIMEOUT:?} \
                     (last answer: {last}); the end of its log:\n{log}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last `lines` lines of each service's log.
    pub fn log_tails(&self, lines: usize) -> String {
        self.services
            .iter()
            .map(|s| format!("  {}:\n{}", s.name, log_tail(&s.log, lines)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The services' names and process ids.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.services
            .iter()
            .map(|s| (s.name.to_owned(), s.child.id()))
            .collect()
    }

    /// Stops every service: SIGTERM to all, then waits up to `STOP_TIMEOUT` and kills what is
    /// left. Returns the services that had to be killed or did not exit cleanly.
    pub fn stop(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for service in self.services.iter().rev() {
            // Fails only if the process is gone already, which is what we want.
            let _ = kill_process(Pid::from_child(&service.child), Signal::TERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for mut service in self.services.drain(..).rev() {
            loop {
                match service.child.try_wait() {
                    Ok(Some(status)) => {
                        if !status.success() {
                            problems.push(format!("{} exited with {status}", service.name));
                        }
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Ok(None) | Err(_) => {
                        let _ = service.child.kill();
                        let _ = service.child.wait();
                        problems.push(format!(
                            "{} did not stop within {STOP_TIMEOUT:?} of SIGTERM; killed",
                            service.name
                        ));
                        break;
                    }
                }
            }
        }
        problems
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for problem in self.stop() {
            let _ = writeln!(std::io::stderr(), "loadgen: {problem}");
        }
    }
}

/// The secret `client add --id {id}` printed: its last non-empty line.
fn printed_secret(out: &str, id: &str) -> anyhow::Result<String> {
    Ok(out
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .with_context(|| format!("`client add --id {id}` printed no secret"))?
        .to_owned())
}

/// The verifiers' client secrets, printed by `client add` while seeding.
#[derive(Debug)]
struct ClientSecrets {
    gateway: String,
    orders: String,
    loadgen: String,
}

/// Variables of the platform that must not leak from loadgen's own environment into a service.
fn is_platform_variable(name: &str) -> bool {
    [
        "AUTH_",
        "ORDERS_",
        "GATEWAY_",
        "DATABASE_",
        "REDIS_",
        "DEMO_",
    ]
    .iter()
    .any(|prefix| name.starts_with(prefix))
        || matches!(name, "LOG_FORMAT" | "RUST_LOG")
}

/// The environment of each service.
struct Env {
    dir: PathBuf,
    addrs: Addresses,
    options: StackOptions,
}

impl Env {
    fn new(dir: &Path, addrs: &Addresses, options: &StackOptions) -> Self {
        Self {
            dir: dir.to_owned(),
            addrs: *addrs,
            options: options.clone(),
        }
    }

    /// The data directory of the service `name` (its working directory, so that any default
    /// `./data` lands there too).
    fn home(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `binary` in its own data directory, with loadgen's environment minus the platform's
    /// variables, plus `vars`.
    fn command(&self, binary: &Path, name: &str, vars: &[(&'static str, String)]) -> Command {
        let mut command = Command::new(binary);
        command.current_dir(self.home(name));
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(is_platform_variable) {
                command.env_remove(name);
            }
        }
        command.env("RUST_LOG", &self.options.log_level);
        command.envs(vars.iter().map(|(k, v)| (k, v)));
        if name == AUTH {
            command.envs(self.options.auth_env.iter().map(|(k, v)| (k, v)));
        } else {
            command.envs(self.options.verifier_env.iter().map(|(k, v)| (k, v)));
        }
        command
    }

    fn issuer(&self) -> String {
        format!("http://{}", self.addrs.auth_http)
    }

    fn redis(&self) -> Option<(&'static str, String)> {
        self.options
            .redis_url
            .clone()
            .filter(|_| self.options.mode.uses_redis())
            .map(|url| ("REDIS_URL", url))
    }

    fn sqlite(&self, service: &str, file: &str) -> String {
        format!("sqlite://{}", self.home(service).join(file).display())
    }

    fn auth(&self) -> Vec<(&'static str, String)> {
        let mut vars = vec![
            ("AUTH_HTTP_ADDR", self.addrs.auth_http.to_string()),
            ("AUTH_GRPC_ADDR", self.addrs.auth_grpc.to_string()),
            ("AUTH_METRICS_ADDR", self.addrs.auth_metrics.to_string()),
            ("AUTH_ISSUER", self.issuer()),
            ("DATABASE_URL", self.sqlite(AUTH, "auth.db")),
            (
                "AUTH_KEYS_DIR",
                self.home(AUTH).join("keys").display().to_string(),
            ),
        ];
        vars.extend(self.redis());
        vars
    }

    fn verifier(&self, client_id: &str, secret: &str) -> Vec<(&'static str, String)> {
        let issuer = self.issuer();
        let mut vars = vec![
            ("AUTH_MODE", self.options.mode.auth_mode().to_owned()),
            ("AUTH_JWKS_URL", format!("{issuer}/.well-known/jwks.json")),
            ("AUTH_TOKEN_URL", format!("{issuer}/oauth/token")),
            ("AUTH_GRPC_URL", format!("http://{}", self.addrs.auth_grpc)),
            ("AUTH_CLIENT_ID", client_id.to_owned()),
            ("AUTH_CLIENT_SECRET", secret.to_owned()),
            ("AUTH_ISSUER", issuer),
        ];
        vars.extend(
            self.options
                .mode
                .verifier_env()
                .iter()
                .map(|(name, value)| (*name, (*value).to_owned())),
        );
        vars.extend(self.redis());
        vars
    }

    fn orders(&self, secret: &str) -> Vec<(&'static str, String)> {
        let mut vars = self.verifier("orders", secret);
        vars.extend([
            ("ORDERS_GRPC_ADDR", self.addrs.orders_grpc.to_string()),
            ("ORDERS_HTTP_ADDR", self.addrs.orders_http.to_string()),
            ("DATABASE_URL", self.sqlite(ORDERS, "orders.db")),
        ]);
        vars.extend(
            (self.options.route_level).map(|level| ("AUTH_ROUTE_POLICY", level.orders_policy())),
        );
        vars
    }

    fn gateway(&self, secret: &str) -> Vec<(&'static str, String)> {
        let mut vars = self.verifier("gateway", secret);
        vars.extend([
            ("GATEWAY_ADDR", self.addrs.gateway.to_string()),
            (
                "GATEWAY_METRICS_ADDR",
                self.addrs.gateway_metrics.to_string(),
            ),
            ("AUTH_HTTP_URL", self.issuer()),
            (
                "ORDERS_GRPC_URL",
                format!("http://{}", self.addrs.orders_grpc),
            ),
        ]);
        vars.extend(
            (self.options.route_level).map(|level| ("AUTH_ROUTE_POLICY", level.gateway_policy())),
        );
        vars
    }
}

/// `N` distinct free loopback ports: all bound at once (so they differ), then released for the
/// services to bind. Another process could take one in between; the start then fails clearly.
fn free_ports<const N: usize>() -> anyhow::Result<[SocketAddr; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot find free loopback ports")?;
    let addrs = listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(addrs.try_into().expect("BUG: N listeners give N addresses"))
}

/// The last `lines` lines of a log file, indented.
fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|line| format!("    {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_variables_are_not_inherited() {
        for name in [
            "AUTH_MODE",
            "REDIS_URL",
            "DATABASE_URL",
            "ORDERS_GRPC_URL",
            "GATEWAY_ADDR",
            "RUST_LOG",
            "LOG_FORMAT",
        ] {
            assert!(is_platform_variable(name), "{name}");
        }
        for name in ["PATH", "HOME", "TMPDIR", "RUST_BACKTRACE"] {
            assert!(!is_platform_variable(name), "{name}");
        }
    }

    #[test]
    fn ports_are_distinct() {
        let ports: [SocketAddr; 7] = free_ports().unwrap();
        let mut unique: Vec<u16> = ports.iter().map(SocketAddr::port).collect();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 7);
    }

    /// Every listener on one address: for tests of the environment, which start nothing.
    fn one_address() -> Addresses {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        Addresses {
            auth_http: addr,
            auth_grpc: addr,
            auth_metrics: addr,
            orders_grpc: addr,
            orders_http: addr,
            gateway: addr,
            gateway_metrics: addr,
        }
    }

    #[test]
    fn missing_binaries_say_how_to_build_them() {
        let dir = tempfile::tempdir().unwrap();
        let error = Binaries::in_dir(dir.path()).unwrap_err().to_string();
        assert!(error.contains(BUILD_COMMAND), "{error}");
        assert!(error.contains("auth-service"), "{error}");
    }

    #[test]
    fn redis_only_for_the_redis_mode() {
        let addrs = Addresses {
            auth_http: "127.0.0.1:1".parse().unwrap(),
            auth_grpc: "127.0.0.1:2".parse().unwrap(),
            auth_metrics: "127.0.0.1:6".parse().unwrap(),
            orders_grpc: "127.0.0.1:3".parse().unwrap(),
            orders_http: "127.0.0.1:4".parse().unwrap(),
            gateway: "127.0.0.1:5".parse().unwrap(),
            gateway_metrics: "127.0.0.1:7".parse().unwrap(),
        };
        let env = |mode| {
            Env::new(
                Path::new("/tmp/x"),
                &addrs,
                &StackOptions {
                    mode,
                    redis_url: Some("redis://r".into()),
                    log_level: "info".into(),
                    verifier_env: vec![],
                    auth_env: vec![],
                    route_level: None,
                },
            )
        };
        let has_redis = |vars: Vec<(&str, String)>| vars.iter().any(|(k, _)| *k == "REDIS_URL");
        assert!(!has_redis(env(Mode::Hybrid).gateway("s")));
        assert!(has_redis(env(Mode::StatefulRedis).gateway("s")));
        assert!(has_redis(env(Mode::StatefulRedis).auth()));
        let orders = env(Mode::Stateful).orders("secret");
        let get = |k: &str| orders.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        assert_eq!(get("AUTH_MODE").as_deref(), Some("stateful"));
        assert_eq!(get("AUTH_CLIENT_ID").as_deref(), Some("orders"));
        assert_eq!(get("AUTH_GRPC_URL").as_deref(), Some("http://127.0.0.1:2"));
        assert_eq!(
            get("AUTH_JWKS_URL").as_deref(),
            Some("http://127.0.0.1:1/.well-known/jwks.json")
        );
        assert_eq!(
            get("DATABASE_URL").as_deref(),
            Some("sqlite:///tmp/x/orders-service/orders.db")
        );
        assert_eq!(get("AUTH_INSECURE_SKIP_VERIFY"), None);

        let off = env(Mode::Off);
        for vars in [off.gateway("s"), off.orders("s")] {
            let get = |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
            assert_eq!(get("AUTH_INSECURE_SKIP_VERIFY").as_deref(), Some("true"));
            assert_eq!(get("AUTH_MODE").as_deref(), Some("stateless"));
        }
        assert!(
            !off.auth()
                .iter()
                .any(|(k, _)| k.starts_with("AUTH_INSECURE")),
            "the issuer is not a verifier"
        );
        let nocache = env(Mode::StatelessNocache).gateway("s");
        assert!(nocache.contains(&("AUTH_TOKEN_CACHE_SIZE", "0".to_owned())));
    }

    #[test]
    fn a_route_level_gives_each_verifier_the_policy_of_its_own_route() {
        let options = StackOptions {
            mode: Mode::Stateless,
            redis_url: None,
            log_level: "warn".into(),
            verifier_env: vec![],
            auth_env: vec![],
            route_level: Some(RouteLevel::Live),
        };
        let addrs = one_address();
        let env = Env::new(Path::new("/tmp/x"), &addrs, &options);
        let policy = |vars: Vec<(&'static str, String)>| {
            vars.into_iter()
                .find(|(k, _)| *k == "AUTH_ROUTE_POLICY")
                .map(|(_, v)| v)
        };
        assert_eq!(
            policy(env.gateway("s")).as_deref(),
            Some("GET /v1/orders/{id}=live")
        );
        assert_eq!(
            policy(env.orders("s")).as_deref(),
            Some("/orders.v1.OrderService/GetOrder=live")
        );
        assert_eq!(policy(env.auth()), None);
        let none = Env::new(
            Path::new("/tmp/x"),
            &addrs,
            &StackOptions {
                route_level: None,
                ..options
            },
        );
        assert_eq!(policy(none.gateway("s")), None);
        assert_eq!(policy(none.orders("s")), None);
    }

    #[test]
    fn extra_verifier_environment_reaches_the_verifiers_only() {
        let env = Env::new(
            Path::new("/tmp/x"),
            &one_address(),
            &StackOptions {
                mode: Mode::Stateless,
                redis_url: None,
                log_level: "warn".into(),
                verifier_env: vec![("AUTH_TOKEN_CACHE_SIZE".into(), "0".into())],
                auth_env: vec![("AUTH_TRUSTED_PROXIES".into(), "127.0.0.1/32".into())],
                route_level: Some(RouteLevel::Live),
            },
        );
        let value = |name: &str| {
            let command = env.command(Path::new("/bin/true"), name, &[]);
            let found = command
                .get_envs()
                .find(|(k, _)| *k == "AUTH_TOKEN_CACHE_SIZE")
                .and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()));
            (found, command.get_current_dir().map(Path::to_path_buf))
        };
        assert_eq!(
            value(GATEWAY),
            (Some("0".into()), Some(PathBuf::from("/tmp/x/gateway")))
        );
        assert_eq!(value(ORDERS).0.as_deref(), Some("0"));
        assert_eq!(value(AUTH).0, None);
        let proxies = |name: &str| {
            env.command(Path::new("/bin/true"), name, &[])
                .get_envs()
                .any(|(k, _)| k == "AUTH_TRUSTED_PROXIES")
        };
        assert!(proxies(AUTH), "the issuer's own environment");
        assert!(!proxies(GATEWAY));
    }
}
