//! The command line, and the settings of one run resolved from it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{Parser, ValueEnum};

/// Defaults of a full run, and of a `--quick` smoke run.
pub const DEFAULT_CONNECTIONS: usize = 32;
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);
pub const DEFAULT_WARMUP: Duration = Duration::from_secs(2);
pub const DEFAULT_REVOCATIONS: u32 = 200;
pub const QUICK_DURATION: Duration = Duration::from_secs(1);
pub const QUICK_WARMUP: Duration = Duration::from_millis(500);
pub const QUICK_REVOCATIONS: u32 = 20;
/// Enough requests in flight to keep auth-service busy on a few cores.
pub const DEFAULT_ISSUANCE_CONNECTIONS: usize = 8;
/// How long `openssl speed` runs each of sign and verify (`-seconds`), and with `--quick`.
pub const OPENSSL_SECONDS: Duration = Duration::from_secs(3);
pub const QUICK_OPENSSL_SECONDS: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Load benchmark of the token platform: starts the real stack once per verifier mode and \
             measures throughput, latency, memory, revocation delay, session-store load and token \
             issuance.",
    long_about = "Load benchmark of the token platform.\n\n\
        For each selected mode, loadgen starts auth-service, orders-service and gateway as child \
        processes (the release binaries next to itself, or --bin-dir), each in a fresh temporary \
        data directory on free loopback ports, seeds a user and the verifiers' clients with the \
        auth-service CLI, runs the scenarios and stops the stack again (also on Ctrl-C).\n\n\
        The report (a Markdown table) goes to standard output; progress goes to standard error. \
        Every scenario of one invocation runs on the same machine with the same connection count; \
        with --repeat N the table shows the median of the N runs.\n\n\
        Mode `off` (the auth-off baseline of the targets) needs service binaries built with the \
        benchmark-only feature:\n\n    cargo build --release -p auth-service -p orders-service \
        -p gateway -p bench --features gateway/bench-auth-off,orders-service/bench-auth-off\n\n\
        Without it the services refuse AUTH_INSECURE_SKIP_VERIFY, and the mode is reported as \
        skipped.\n\n\
        `loadgen flood` (see `loadgen flood --help`) measures instead what a flood of bad client \
        credentials through the gateway costs legitimate logins and client_credentials grants."
)]
pub struct Args {
    /// Verifier modes to run, comma separated. Default: all: off, stateless,
    /// stateless-nocache, stateful, stateful-redis (only when a Redis URL is given) and hybrid.
    /// `off` is skipped, with a note saying how to build for it, when the service binaries lack
    /// the benchmark-only feature.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub modes: Vec<Mode>,

    /// Scenarios to run, comma separated. Default: all. `store-load` and `memory` are taken
    /// during the throughput run, so selecting either runs the throughput load too. `issuance`
    /// runs once per repeat on a stack of its own (POST /oauth/token at auth-service, and
    /// `openssl speed rsa2048` for reference).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub scenarios: Vec<Scenario>,

    /// Transports of the throughput scenario, comma separated: `http` (GET /v1/orders/{id}
    /// through the gateway) and `grpc` (GetOrder directly at orders-service). Default: both.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub transports: Vec<Transport>,

    /// Concurrent connections of the throughput load, each with one request in flight
    /// (HTTP/1.1 keep-alive at the gateway; one HTTP/2 connection each at orders-service). The
    /// memory target is stated for 256.
    #[arg(long, default_value_t = DEFAULT_CONNECTIONS)]
    pub connections: usize,

    /// Measured duration of each throughput run [default: 10s; 1s with --quick].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,

    /// Unmeasured load before each throughput run, so that connections are open, the verifiers'
    /// service tokens fetched and allocators warm [default: 2s; 500ms with --quick].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub warmup: Option<Duration>,

    /// Logouts measured per mode by the revocation scenario [default: 200; 20 with --quick].
    #[arg(long)]
    pub revocations: Option<u32>,

    /// How long one revocation may take to be refused by a verifier before it counts as missed.
    /// A mode stops measuring revocations at its first miss when no verifier has ever refused
    /// (`stateless` accepts the token until it expires).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub revocation_deadline: Duration,

    /// Concurrent connections of the issuance scenario (HTTP/1.1 keep-alive at auth-service,
    /// one token request in flight each).
    #[arg(long, default_value_t = DEFAULT_ISSUANCE_CONNECTIONS)]
    pub issuance_connections: usize,

    /// Logged-in sessions the throughput load spreads its requests over.
    #[arg(long, default_value_t = 8)]
    pub sessions: usize,

    /// Run everything N times (modes interleaved) and report medians.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,

    /// A short smoke run: 1s of load after 500ms of warm-up, 20 revocations per mode.
    #[arg(long)]
    pub quick: bool,

    /// Redis for the `stateful-redis` mode, given to auth-service and both verifiers as
    /// `REDIS_URL`; its `INFO commandstats` counts the lookups.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Where auth-service, orders-service and gateway are [default: the directory of loadgen,
    /// normally target/release].
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,

    /// For a shared machine: before each measurement, wait up to this long until processes
    /// outside the benchmark have used at most 10% of the CPUs for 3 s, and measure a throughput
    /// window again (3 attempts at most, the least disturbed kept) when they took more during
    /// it. 0 does neither. The report gives the share other processes took either way.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub wait_idle: Duration,

    /// Extra `KEY=VALUE` environment for both verifiers (gateway, orders-service), after
    /// loadgen's own; repeatable. For measuring a knob, e.g. `AUTH_SESSION_CACHE_TTL=1s`.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub verifier_env: Vec<(String, String)>,

    /// `RUST_LOG` of the services (their logs go to files in their temporary directory).
    #[arg(long, default_value = "info")]
    pub service_log: String,

    /// Give the route the throughput load calls its own freshness level, whatever the mode:
    /// `AUTH_ROUTE_POLICY` of `GET /v1/orders/{id}` at the gateway and of `GetOrder` at
    /// orders-service. `pushed` starts in mode `hybrid` only (the other modes' runs fail).
    #[arg(long, value_enum)]
    pub route_level: Option<RouteLevel>,
}

/// A freshness level of `AUTH_ROUTE_POLICY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RouteLevel {
    Token,
    Pushed,
    Live,
}

impl RouteLevel {
    pub const fn as_str(self) -> &'static str {
        match self {
            RouteLevel::Token => "token",
            RouteLevel::Pushed => "pushed",
            RouteLevel::Live => "live",
        }
    }

    /// `AUTH_ROUTE_POLICY` of the gateway: the route of the HTTP throughput load.
    pub fn gateway_policy(self) -> String {
        format!("GET /v1/orders/{{id}}={}", self.as_str())
    }

    /// `AUTH_ROUTE_POLICY` of orders-service: the method of the gRPC throughput load (and the
    /// one the gateway calls for the HTTP load).
    pub fn orders_policy(self) -> String {
        format!("/orders.v1.OrderService/GetOrder={}", self.as_str())
    }
}

/// A verifier configuration under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Mode {
    /// Authentication switched off (`AUTH_INSECURE_SKIP_VERIFY=true` on both verifiers, which
    /// only binaries built with the benchmark-only feature `bench-auth-off` accept): the
    /// baseline the targets compare the authenticated route with.
    Off,
    /// `AUTH_MODE=stateless`: signature and claims only.
    Stateless,
    /// `stateless` without the verified-token cache (`AUTH_TOKEN_CACHE_SIZE=0`): every request
    /// pays an RSA verification at each verifier.
    StatelessNocache,
    /// `AUTH_MODE=stateful`, sessions asked of the issuer over gRPC (`CheckSession`).
    Stateful,
    /// `AUTH_MODE=stateful` with `REDIS_URL`: sessions read from Redis (`EXISTS`).
    StatefulRedis,
    /// `AUTH_MODE=hybrid`: in-memory revocation set fed by `WatchRevocations`.
    Hybrid,
}

impl Mode {
    pub const ALL: [Mode; 6] = [
        Mode::Off,
        Mode::Stateless,
        Mode::StatelessNocache,
        Mode::Stateful,
        Mode::StatefulRedis,
        Mode::Hybrid,
    ];

    /// The value of `AUTH_MODE`.
    pub const fn auth_mode(self) -> &'static str {
        match self {
            Mode::Off | Mode::Stateless | Mode::StatelessNocache => "stateless",
            Mode::Stateful | Mode::StatefulRedis => "stateful",
            Mode::Hybrid => "hybrid",
        }
    }

    pub const fn uses_redis(self) -> bool {
        matches!(self, Mode::StatefulRedis)
    }

    /// What both verifiers get besides `AUTH_MODE` to be in this mode.
    pub const fn verifier_env(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Mode::Off => &[(SKIP_VERIFY_ENV, "true")],
            Mode::StatelessNocache => &[("AUTH_TOKEN_CACHE_SIZE", "0")],
            Mode::Stateless | Mode::Stateful | Mode::StatefulRedis | Mode::Hybrid => &[],
        }
    }

    /// Whether revocation delay means anything here: not without authentication, and the
    /// cache makes no difference to it (`stateless` shows what stateless does).
    pub const fn measures_revocation(self) -> bool {
        !matches!(self, Mode::Off | Mode::StatelessNocache)
    }

    /// The name in the report.
    pub const fn label(self) -> &'static str {
        match self {
            Mode::Off => "auth off",
            Mode::Stateless => "stateless",
            Mode::StatelessNocache => "stateless, no cache",
            Mode::Stateful => "stateful",
            Mode::StatefulRedis => "stateful+Redis",
            Mode::Hybrid => "hybrid",
        }
    }
}

/// The verifiers' benchmark-only setting that switches token verification off.
pub const SKIP_VERIFY_ENV: &str = "AUTH_INSECURE_SKIP_VERIFY";

/// How to build service binaries that accept [`SKIP_VERIFY_ENV`] (mode `off`). Never deploy
/// what it builds.
pub const AUTH_OFF_BUILD_COMMAND: &str = "cargo build --release -p auth-service -p orders-service \
     -p gateway -p bench --features gateway/bench-auth-off,orders-service/bench-auth-off";

/// A measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    Throughput,
    Revocation,
    StoreLoad,
    /// Resident memory of each service, idle and at its peak during the throughput load.
    Memory,
    /// Token issuance at auth-service (`client_credentials`, `refresh_token`).
    Issuance,
}

/// Where the throughput load goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Transport {
    /// `GET /v1/orders/{id}` at the gateway (which calls orders-service over gRPC).
    Http,
    /// `orders.v1.OrderService/GetOrder` at orders-service.
    Grpc,
}

impl Transport {
    pub const fn label(self) -> &'static str {
        match self {
            Transport::Http => "HTTP → gateway",
            Transport::Grpc => "gRPC → orders",
        }
    }
}

/// Everything one run does, with defaults and `--quick` applied.
#[derive(Debug, Clone)]
pub struct Settings {
    pub modes: Vec<Mode>,
    pub throughput: bool,
    pub store_load: bool,
    pub memory: bool,
    pub revocation: bool,
    pub issuance: bool,
    pub issuance_connections: usize,
    /// `-seconds` of `openssl speed`.
    pub openssl_seconds: Duration,
    pub transports: Vec<Transport>,
    pub connections: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub revocations: u32,
    pub revocation_deadline: Duration,
    pub sessions: usize,
    pub repeat: usize,
    pub redis_url: Option<String>,
    pub bin_dir: Option<PathBuf>,
    pub wait_idle: Duration,
    pub verifier_env: Vec<(String, String)>,
    pub service_log: String,
    pub route_level: Option<RouteLevel>,
}

impl Settings {
    pub fn resolve(args: Args) -> anyhow::Result<Self> {
        if args.connections == 0
            || args.sessions == 0
            || args.repeat == 0
            || args.issuance_connections == 0
        {
            bail!(
                "--connections, --issuance-connections, --sessions and --repeat must be at least 1"
            );
        }
        let redis_url = args.redis_url.filter(|url| !url.is_empty());
        let modes = if args.modes.is_empty() {
            Mode::ALL
                .into_iter()
                .filter(|mode| !mode.uses_redis() || redis_url.is_some())
                .collect()
        } else {
            let mut modes = args.modes;
            modes.sort();
            modes.dedup();
            modes
        };
        if modes.iter().any(|mode| mode.uses_redis()) && redis_url.is_none() {
            bail!("mode stateful-redis needs --redis-url (or REDIS_URL)");
        }
        let all = args.scenarios.is_empty();
        let has = |scenario| all || args.scenarios.contains(&scenario);
        let store_load = has(Scenario::StoreLoad);
        let memory = has(Scenario::Memory);
        let mut transports = if args.transports.is_empty() {
            vec![Transport::Http, Transport::Grpc]
        } else {
            args.transports
        };
        transports.sort();
        transports.dedup();
        let (duration, warmup, revocations, openssl_seconds) = if args.quick {
            (
                QUICK_DURATION,
                QUICK_WARMUP,
                QUICK_REVOCATIONS,
                QUICK_OPENSSL_SECONDS,
            )
        } else {
            (
                DEFAULT_DURATION,
                DEFAULT_WARMUP,
                DEFAULT_REVOCATIONS,
                OPENSSL_SECONDS,
            )
        };
        let duration = args.duration.unwrap_or(duration);
        if duration.is_zero() {
            bail!("--duration must be longer than zero");
        }
        Ok(Self {
            modes,
            throughput: has(Scenario::Throughput) || store_load || memory,
            store_load,
            memory,
            revocation: has(Scenario::Revocation),
            issuance: has(Scenario::Issuance),
            issuance_connections: args.issuance_connections,
            openssl_seconds,
            transports,
            connections: args.connections,
            duration,
            warmup: args.warmup.unwrap_or(warmup),
            revocations: args.revocations.unwrap_or(revocations),
            revocation_deadline: args.revocation_deadline,
            sessions: args.sessions,
            repeat: args.repeat,
            redis_url,
            bin_dir: args.bin_dir,
            wait_idle: args.wait_idle,
            verifier_env: args.verifier_env,
            service_log: args.service_log,
            route_level: args.route_level,
        })
    }

    /// The directory holding the service binaries.
    pub fn bin_dir(&self) -> anyhow::Result<PathBuf> {
        crate::stack::binaries_dir(self.bin_dir.as_deref())
    }
}

fn parse_key_value(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got `{arg}`")),
    }
}

/// The command line as typed, quoted for a POSIX shell.
pub fn command_line(args: impl IntoIterator<Item = String>) -> String {
    args.into_iter()
        .map(|arg| shell_quote(&arg))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@+%".contains(&b));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    fn settings(args: &[&str]) -> anyhow::Result<Settings> {
        let mut argv = vec!["loadgen"];
        argv.extend_from_slice(args);
        Settings::resolve(Args::try_parse_from(argv)?)
    }

    #[test]
    fn cli_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults_run_everything_except_redis_without_a_url() {
        let s = settings(&["--redis-url", ""]).unwrap();
        assert_eq!(
            s.modes,
            [
                Mode::Off,
                Mode::Stateless,
                Mode::StatelessNocache,
                Mode::Stateful,
                Mode::Hybrid
            ]
        );
        assert!(s.throughput && s.revocation && s.store_load && s.memory && s.issuance);
        assert_eq!(s.issuance_connections, DEFAULT_ISSUANCE_CONNECTIONS);
        assert_eq!(s.openssl_seconds, OPENSSL_SECONDS);
        assert_eq!(s.transports, [Transport::Http, Transport::Grpc]);
        assert_eq!(s.duration, DEFAULT_DURATION);
        assert_eq!(s.warmup, DEFAULT_WARMUP);
        assert_eq!(s.revocations, DEFAULT_REVOCATIONS);
        assert_eq!(s.connections, 32);

        let s = settings(&["--redis-url", "redis://127.0.0.1:6379"]).unwrap();
        assert_eq!(s.modes, Mode::ALL);
    }

    #[test]
    fn quick_shortens_what_was_not_given() {
        let s = settings(&["--quick", "--revocations", "5"]).unwrap();
        assert_eq!(s.duration, QUICK_DURATION);
        assert_eq!(s.warmup, QUICK_WARMUP);
        assert_eq!(s.revocations, 5);
        assert_eq!(s.openssl_seconds, QUICK_OPENSSL_SECONDS);
    }

    #[test]
    fn selections() {
        let s = settings(&["--modes", "hybrid,stateless", "--scenarios", "revocation"]).unwrap();
        assert_eq!(s.modes, [Mode::Stateless, Mode::Hybrid]);
        assert!(s.revocation && !s.throughput && !s.store_load && !s.memory && !s.issuance);
        let s = settings(&["--modes", "off,stateless-nocache", "--scenarios", "memory"]).unwrap();
        assert_eq!(s.modes, [Mode::Off, Mode::StatelessNocache]);
        assert!(s.throughput && s.memory && !s.store_load && !s.revocation && !s.issuance);
        let s = settings(&["--scenarios", "issuance"]).unwrap();
        assert!(s.issuance && !s.throughput && !s.revocation);
        let s = settings(&["--scenarios", "store-load", "--transports", "grpc"]).unwrap();
        assert!(s.throughput && s.store_load && !s.revocation);
        assert_eq!(s.transports, [Transport::Grpc]);
        assert!(settings(&["--modes", "stateful-redis", "--redis-url", ""]).is_err());
        assert!(settings(&["--connections", "0"]).is_err());
        assert!(settings(&["--modes", "trusting"]).is_err());
        let s = settings(&[
            "--verifier-env",
            "AUTH_SESSION_CACHE_TTL=1s",
            "--verifier-env",
            "A=b=c",
        ])
        .unwrap();
        assert_eq!(
            s.verifier_env,
            [
                ("AUTH_SESSION_CACHE_TTL".to_owned(), "1s".to_owned()),
                ("A".to_owned(), "b=c".to_owned())
            ]
        );
        assert!(settings(&["--verifier-env", "novalue"]).is_err());
        assert!(settings(&["--verifier-env", "=x"]).is_err());
    }

    #[test]
    fn modes_set_up_their_verifiers() {
        assert_eq!(Mode::Off.auth_mode(), "stateless");
        assert_eq!(
            Mode::Off.verifier_env(),
            [("AUTH_INSECURE_SKIP_VERIFY", "true")]
        );
        assert_eq!(
            Mode::StatelessNocache.verifier_env(),
            [("AUTH_TOKEN_CACHE_SIZE", "0")]
        );
        assert!(Mode::Hybrid.verifier_env().is_empty());
        assert!(!Mode::Off.measures_revocation() && !Mode::StatelessNocache.measures_revocation());
        assert!(Mode::Stateless.measures_revocation());
        assert!(AUTH_OFF_BUILD_COMMAND.contains("gateway/bench-auth-off"));
        assert!(AUTH_OFF_BUILD_COMMAND.contains("orders-service/bench-auth-off"));
    }

    #[test]
    fn command_lines_are_quoted_for_the_shell() {
        let line = command_line(
            [
                "target/release/loadgen",
                "--redis-url",
                "redis://127.0.0.1:6379",
                "it's",
                "",
            ]
            .map(String::from),
        );
        assert_eq!(
            line,
            r"target/release/loadgen --redis-url redis://127.0.0.1:6379 'it'\''s' ''"
        );
    }
}
