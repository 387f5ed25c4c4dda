//! `loadgen flood`: what a flood of bad client credentials through the gateway costs everyone
//! else (issue "Nothing lost, nothing let in").
//!
//! One stack, two phases, each a warm-up then a measured window:
//!
//! 1. **quiet**: the probes alone;
//! 2. **flood**: the probes while `--flood-connections` connections (one request in flight each)
//!    send `grant_type=client_credentials` with a wrong secret through the gateway, as client
//!    `gateway` (the verifier's own id) or a new unknown id per request, from
//!    `--flood-addresses` client addresses.
//!
//! The probes, each through the gateway from an address of its own:
//!
//! - a **login** (password grant, one Argon2 run each), one request after the other;
//! - a **`client_credentials` grant whose secret is remembered** (Argon2 accepted it within the
//!   last minute: a client asking for tokens again and again), one after the other;
//! - a **first `client_credentials` authentication** (a client registered for the run and never
//!   seen before, so Argon2 runs and the throttle decides: what a verifier's service-token
//!   renewal costs), `--fresh-clients` of them paced over the window.
//!
//! A probe refused with 503 or 429 waits a second (the issuer's `Retry-After` for a full Argon2
//! queue) before its next request, as a well-behaved client does; refusals count as errors.
//!
//! The gateway and auth-service trust loopback as their proxy (`GATEWAY_TRUSTED_PROXIES`,
//! `AUTH_TRUSTED_PROXIES`), so the `X-Forwarded-For` loadgen sends names each caller's address
//! at the issuer, as an ingress controller's would. The issuer's access tokens live
//! `--token-ttl` (short), so that the verifiers renew their own service tokens during the run;
//! their renewals are read from their `/metrics`, the issuer's Argon2 runs and refusals from
//! its own. Timing is never part of the test suite: this is a benchmark, run by hand.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use http::header::CONTENT_TYPE;
use http::{Method, Request};
use http_body_util::Full;
use hyper::body::Bytes;

use crate::cli::Mode;
use crate::client::{Api, HttpConnection, form_encode};
use crate::load::{LoadResult, Recorder, Running, WorkerResult, http_outcome};
use crate::machine::Machine;
use crate::progress::Progress;
use crate::report::fmt_duration;
use crate::stack::{Binaries, CLIENT_ID, Stack, StackOptions, USERNAME, binaries_dir};
use crate::store::{Sample, Sources, sum};

const FORM: &str = "application/x-www-form-urlencoded";
const TOKEN_PATH: &str = "/oauth/token";
/// Documentation ranges (RFC 5737): the attackers', and one address per probe.
const ATTACKER_NETWORK: &str = "198.51.100";
const LOGIN_ADDRESS: &str = "203.0.113.10";
const REMEMBERED_ADDRESS: &str = "203.0.113.11";
const FRESH_ADDRESS: &str = "203.0.113.12";
/// How long a probe waits after a 503 or 429: the issuer's `Retry-After` for a full queue.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Waits [`RETRY_AFTER`] after a 503 or 429, as the answer asks.
async fn honour_retry_after(outcome: &Result<(), (String, bool)>) {
    if matches!(outcome, Err((kind, false)) if kind == "HTTP 503" || kind == "HTTP 429") {
        tokio::time::sleep(RETRY_AFTER).await;
    }
}

/// `loadgen flood`'s options.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "loadgen flood",
    version,
    about = "What a flood of bad client credentials through the gateway costs legitimate logins \
             and client_credentials grants: the same probes without and with the flood, on one \
             stack (auth-service, orders-service and gateway as child processes)."
)]
pub struct FloodArgs {
    /// Concurrent connections of the flood, each with one bad client authentication in flight,
    /// through the gateway.
    #[arg(long, default_value_t = 200)]
    pub flood_connections: usize,

    /// Client addresses the flood comes from (`X-Forwarded-For`, 198.51.100.0/24 and on): 1 is
    /// one attacker; more is a botnet, each address with a budget of its own.
    #[arg(long, default_value_t = 1)]
    pub flood_addresses: usize,

    /// The client id the flood fails as: `gateway` (the verifier's own, whose renewals must
    /// not suffer), any other id, or `random` for a new unknown id per request.
    #[arg(long, default_value = "gateway")]
    pub flood_client_id: String,

    /// Measured window of each phase.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// Unmeasured load before each window (the flood reaches its steady state: throttles
    /// engaged, Argon2 queue full or not).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,

    /// First client authentications per phase (clients registered for the run, paced over the
    /// window); their p99 is that of this many samples.
    #[arg(long, default_value_t = 40)]
    pub fresh_clients: usize,

    /// `AUTH_ACCESS_TOKEN_TTL` of the issuer: short, so that the verifiers renew their service
    /// tokens (halfway through it) during the phases.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub token_ttl: Duration,

    /// Verifier mode of the gateway and orders-service.
    #[arg(long, value_enum, default_value = "stateful")]
    pub mode: Mode,

    /// Where auth-service, orders-service and gateway are [default: the directory of loadgen].
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,

    /// `RUST_LOG` of the services.
    #[arg(long, default_value = "info")]
    pub service_log: String,
}

impl FloodArgs {
    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.flood_connections > 0 && self.flood_addresses > 0 && self.fresh_clients > 0,
            "--flood-connections, --flood-addresses and --fresh-clients must be at least 1"
        );
        anyhow::ensure!(
            self.flood_addresses <= 65_536,
            "--flood-addresses: at most 65536"
        );
        anyhow::ensure!(
            !self.duration.is_zero(),
            "--duration must be longer than zero"
        );
        anyhow::ensure!(
            self.mode != Mode::StatefulRedis,
            "--mode stateful-redis is not supported here"
        );
        Ok(())
    }
}

/// A legitimate caller measured in both phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Probe {
    Login,
    Remembered,
    FirstAuthentication,
}

impl Probe {
    pub const ALL: [Probe; 3] = [Probe::Login, Probe::Remembered, Probe::FirstAuthentication];

    pub const fn label(self) -> &'static str {
        match self {
            Probe::Login => "login (password grant: Argon2)",
            Probe::Remembered => "`client_credentials`, secret remembered (no Argon2)",
            Probe::FirstAuthentication => {
                "`client_credentials`, first authentication (Argon2, throttle)"
            }
        }
    }
}

/// What one phase measured.
#[derive(Debug, Clone, Default)]
pub struct Phase {
    pub probes: BTreeMap<Probe, LoadResult>,
    /// The flood's requests in the window (none in the quiet phase).
    pub flood: Option<LoadResult>,
    /// Argon2 verifications at the issuer in the window.
    pub argon2_runs: f64,
    /// Verifications refused by the full Argon2 queue (503) in the window.
    pub argon2_refused: f64,
    /// Client authentications refused unchecked by the throttle in the window.
    pub throttled: f64,
    /// The verifiers' service-token renewals during the phase (warm-up included): ok, failed.
    pub renewals: (f64, f64),
}

/// The whole run.
#[derive(Debug, Clone)]
pub struct FloodRun {
    pub quiet: Phase,
    pub flood: Phase,
    pub notes: Vec<String>,
}

/// Runs both phases on one stack and returns the Markdown report.
pub async fn run(args: FloodArgs, command: String) -> anyhow::Result<String> {
    args.validate()?;
    let bin_dir = binaries_dir(args.bin_dir.as_deref())?;
    let binaries = Binaries::in_dir(&bin_dir)?;
    let started = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let progress = Progress::start();
    progress.note(&format!(
        "flood: starting auth-service, orders-service and gateway (AUTH_MODE={})",
        args.mode.auth_mode()
    ));
    let mut stack = Stack::start(
        &binaries,
        &StackOptions {
            mode: args.mode,
            redis_url: None,
            log_level: args.service_log.clone(),
            verifier_env: vec![("GATEWAY_TRUSTED_PROXIES".into(), "127.0.0.1/32".into())],
            auth_env: vec![
                ("AUTH_TRUSTED_PROXIES".into(), "127.0.0.1/32".into()),
                (
                    "AUTH_ACCESS_TOKEN_TTL".into(),
                    humantime::format_duration(args.token_ttl).to_string(),
                ),
            ],
            route_level: None,
        },
    )
    .await?;
    let result = measure(&args, &binaries, &stack, &progress).await;
    let mut run = match result {
        Ok(run) => run,
        Err(error) => {
            return Err(error.context(format!(
                "the end of the services' logs:\n{}",
                stack.log_tails(20)
            )));
        }
    };
    run.notes.extend(stack.stop());
    Ok(render(
        &Header {
            command,
            machine: Machine::detect().describe(),
            started,
            bin_dir: bin_dir.display().to_string(),
        },
        &args,
        &run,
    ))
}

async fn measure(
    args: &FloodArgs,
    binaries: &Binaries,
    stack: &Stack,
    progress: &Progress,
) -> anyhow::Result<FloodRun> {
    let gateway = stack.addrs.gateway;
    progress.note(&format!(
        "flood: registering {} fresh clients",
        2 * args.fresh_clients
    ));
    let mut fresh = Vec::with_capacity(2 * args.fresh_clients);
    for i in 0..2 * args.fresh_clients {
        let id = format!("fresh-{i}");
        let secret = stack.add_client(binaries, &id, "orders:read").await?;
        fresh.push((id, secret));
    }
    // Both verifiers fetch their service tokens (stateful: on their first session check), so
    // that they renew them in the background from now on.
    let mut api = Api::new(gateway);
    let token = api.login(USERNAME, &stack.password).await?;
    api.create_order(&token)
        .await
        .context("an order through both verifiers")?;

    let mut sources = Sources::new(
        stack.addrs.auth_metrics,
        vec![stack.addrs.gateway_metrics, stack.addrs.orders_http],
        None,
    )
    .await?;
    let setup = Setup {
        gateway,
        password: stack.password.clone(),
        client_secret: stack.client_secret.clone(),
    };
    let second_half = fresh.split_off(args.fresh_clients);
    let quiet = phase(args, &setup, fresh, false, &mut sources, progress).await?;
    let flood = phase(args, &setup, second_half, true, &mut sources, progress).await?;
    Ok(FloodRun {
        quiet,
        flood,
        notes: Vec::new(),
    })
}

/// What the probes need.
struct Setup {
    gateway: SocketAddr,
    password: String,
    client_secret: String,
}

async fn phase(
    args: &FloodArgs,
    setup: &Setup,
    fresh: Vec<(String, String)>,
    with_flood: bool,
    sources: &mut Sources,
    progress: &Progress,
) -> anyhow::Result<Phase> {
    let name = if with_flood { "flood" } else { "quiet" };
    let phase_start = sources.snapshot().await?;
    let mut flood = with_flood.then(|| start_flood(args, setup.gateway));
    if let Some(flood) = &flood {
        progress.track(
            format!("{name}: flood warm-up"),
            flood.completed(),
            "bad authentications",
        );
    }
    let mut login = Running::without_workers();
    let recorder = login.recorder();
    login.spawn(login_probe(setup.gateway, setup.password.clone(), recorder));
    let mut remembered = Running::without_workers();
    let recorder = remembered.recorder();
    remembered.spawn(remembered_probe(
        setup.gateway,
        setup.client_secret.clone(),
        recorder,
    ));
    tokio::time::sleep(args.warmup).await;

    let before = sources.snapshot().await?;
    let mut first = Running::without_workers();
    let recorder = first.recorder();
    let pace = args.duration / u32::try_from(fresh.len()).unwrap_or(u32::MAX);
    first.spawn(first_authentication_probe(
        setup.gateway,
        fresh,
        pace,
        recorder,
    ));
    for running in [&mut login, &mut remembered, &mut first] {
        running.measure();
    }
    if let Some(flood) = &mut flood {
        flood.measure();
    }
    progress.track(format!("{name}: measuring"), login.completed(), "logins");
    tokio::time::sleep(args.duration).await;
    let mut probes = BTreeMap::new();
    probes.insert(Probe::Login, login.finish().await?);
    probes.insert(Probe::Remembered, remembered.finish().await?);
    probes.insert(Probe::FirstAuthentication, first.finish().await?);
    let flood = match flood {
        Some(flood) => Some(flood.finish().await?),
        None => None,
    };
    let after = sources.snapshot().await?;
    progress.done();
    let delta = |name: &str| sum(&after.issuer, name) - sum(&before.issuer, name);
    Ok(Phase {
        probes,
        flood,
        argon2_runs: delta("auth_argon2_verifications_total"),
        argon2_refused: delta("auth_argon2_refused_total"),
        throttled: delta("auth_client_auth_throttled_total"),
        renewals: (
            renewals(&after.verifiers, "ok") - renewals(&phase_start.verifiers, "ok"),
            renewals(&after.verifiers, "failed") - renewals(&phase_start.verifiers, "failed"),
        ),
    })
}

/// The verifiers' service-token renewals with `outcome`, both paths.
fn renewals(samples: &[Sample], outcome: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == "auth_service_token_renewals_total")
        .filter(|s| s.labels.iter().any(|(k, v)| k == "outcome" && v == outcome))
        .map(|s| s.value)
        .sum()
}

/// `POST /oauth/token` with `form`, as coming from `address` through a trusted proxy.
fn token_request(form: &[(&str, &str)], address: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(Method::POST)
        .uri(TOKEN_PATH)
        .header(CONTENT_TYPE, FORM)
        .header("x-forwarded-for", address)
        .body(Full::new(Bytes::from(form_encode(form))))
        .expect("BUG: a static path and valid headers make a valid request")
}

/// The address of flood connection `i` of `addresses`: 198.51.100.x, then 198.51.101.x, ...
fn attacker_address(i: usize, addresses: usize) -> String {
    let n = i % addresses;
    let (high, low) = (n / 256, n % 256);
    if high == 0 {
        format!("{ATTACKER_NETWORK}.{low}")
    } else {
        format!("198.{}.{}.{low}", 51 + high / 256, 100 + high % 256)
    }
}

fn start_flood(args: &FloodArgs, gateway: SocketAddr) -> Running {
    let mut running = Running::without_workers();
    for i in 0..args.flood_connections {
        let recorder = running.recorder();
        let address = attacker_address(i, args.flood_addresses);
        let client_id = args.flood_client_id.clone();
        running.spawn(flood_worker(gateway, address, client_id, recorder));
    }
    running
}

async fn flood_worker(
    gateway: SocketAddr,
    address: String,
    client_id: String,
    mut recorder: Recorder,
) -> WorkerResult {
    let mut connection = HttpConnection::new(gateway);
    while recorder.running() {
        let id = if client_id == "random" {
            format!("x-{}", uuid::Uuid::new_v4().simple())
        } else {
            client_id.clone()
        };
        let started = Instant::now();
        let request = token_request(
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", "not-the-secret"),
            ],
            &address,
        );
        let (outcome, _) = http_outcome(connection.send(request).await);
        recorder.complete(started, outcome).await;
    }
    recorder.finish()
}

async fn login_probe(
    gateway: SocketAddr,
    password: String,
    mut recorder: Recorder,
) -> WorkerResult {
    let mut connection = HttpConnection::new(gateway);
    while recorder.running() {
        let started = Instant::now();
        let request = token_request(
            &[
                ("grant_type", "password"),
                ("username", USERNAME),
                ("password", &password),
            ],
            LOGIN_ADDRESS,
        );
        let (outcome, _) = http_outcome(connection.send(request).await);
        let refused = outcome.clone();
        recorder.complete(started, outcome).await;
        honour_retry_after(&refused).await;
    }
    recorder.finish()
}

async fn remembered_probe(
    gateway: SocketAddr,
    secret: String,
    mut recorder: Recorder,
) -> WorkerResult {
    let mut connection = HttpConnection::new(gateway);
    while recorder.running() {
        let started = Instant::now();
        let request = token_request(
            &[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("client_secret", &secret),
            ],
            REMEMBERED_ADDRESS,
        );
        let (outcome, _) = http_outcome(connection.send(request).await);
        let refused = outcome.clone();
        recorder.complete(started, outcome).await;
        honour_retry_after(&refused).await;
    }
    recorder.finish()
}

/// One first authentication every `pace`, each by a client never seen before.
async fn first_authentication_probe(
    gateway: SocketAddr,
    clients: Vec<(String, String)>,
    pace: Duration,
    mut recorder: Recorder,
) -> WorkerResult {
    let mut connection = HttpConnection::new(gateway);
    let mut next = Instant::now();
    for (id, secret) in clients {
        if !recorder.running() {
            break;
        }
        tokio::time::sleep_until(next.into()).await;
        next += pace;
        let started = Instant::now();
        let request = token_request(
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", &secret),
            ],
            FRESH_ADDRESS,
        );
        let (outcome, _) = http_outcome(connection.send(request).await);
        if matches!(&outcome, Err((kind, false)) if kind == "HTTP 503" || kind == "HTTP 429") {
            next = next.max(Instant::now() + RETRY_AFTER);
        }
        recorder.complete(started, outcome).await;
    }
    recorder.finish()
}

/// What the report says about how it was made.
#[derive(Debug, Clone)]
pub struct Header {
    pub command: String,
    pub machine: String,
    pub started: String,
    pub bin_dir: String,
}

/// The Markdown report.
pub fn render(header: &Header, args: &FloodArgs, run: &FloodRun) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## loadgen flood results\n");
    let _ = writeln!(out, "- Command: `{}`", header.command);
    let _ = writeln!(out, "- Machine: {}", header.machine);
    let _ = writeln!(out, "- Started: {}", header.started);
    let flooder = match args.flood_client_id.as_str() {
        "random" => "a new unknown client id per request".to_owned(),
        id => format!("client id `{id}`"),
    };
    let _ = writeln!(
        out,
        "- Flood: {} connections (one request in flight each) of `client_credentials` with a \
         wrong secret as {flooder}, through the gateway, from {} client address(es)",
        args.flood_connections, args.flood_addresses
    );
    let _ = writeln!(
        out,
        "- Each phase: {} warm-up + {} measured; probes through the gateway, each from an \
         address of its own; {} first authentications per phase, paced",
        humantime::format_duration(args.warmup),
        humantime::format_duration(args.duration),
        args.fresh_clients,
    );
    let _ = writeln!(
        out,
        "- Services: `AUTH_MODE={}`, `AUTH_ACCESS_TOKEN_TTL={}`, loopback trusted as proxy, \
         `RUST_LOG={}`, otherwise their defaults; binaries from `{}`\n",
        args.mode.auth_mode(),
        humantime::format_duration(args.token_ttl),
        args.service_log,
        header.bin_dir,
    );

    let _ = writeln!(
        out,
        "| probe | phase | requests | errors | p50 | p99 | max |\n| --- | --- | ---: | ---: | \
         ---: | ---: | ---: |"
    );
    for probe in Probe::ALL {
        for (name, phase) in [("quiet", &run.quiet), ("flood", &run.flood)] {
            let Some(load) = phase.probes.get(&probe) else {
                continue;
            };
            let latency = |q: f64| load.latencies.quantile(q).map_or("–".into(), fmt_duration);
            let _ = writeln!(
                out,
                "| {} | {name} | {} | {} | {} | {} | {} |",
                probe.label(),
                load.requests,
                fmt_errors(load),
                latency(0.5),
                latency(0.99),
                load.latencies.max().map_or("–".into(), fmt_duration),
            );
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| in the measured window | quiet | flood |\n| --- | ---: | ---: |"
    );
    let flood_rate = run.flood.flood.as_ref().map_or("–".into(), |load| {
        format!("{:.0}", load.requests_per_second())
    });
    let flood_answers = run.flood.flood.as_ref().map_or("–".into(), fmt_answers);
    let _ = writeln!(out, "| flood requests per second | – | {flood_rate} |");
    let _ = writeln!(out, "| flood answers | – | {flood_answers} |");
    let row = |label: &str, f: &dyn Fn(&Phase) -> String| {
        format!("| {label} | {} | {} |", f(&run.quiet), f(&run.flood))
    };
    let _ = writeln!(
        out,
        "{}",
        row("Argon2 verifications at the issuer", &|p| format!(
            "{:.0}",
            p.argon2_runs
        ))
    );
    let _ = writeln!(
        out,
        "{}",
        row(
            "client authentications refused unchecked (429)",
            &|p| format!("{:.0}", p.throttled)
        )
    );
    let _ = writeln!(
        out,
        "{}",
        row(
            "verifications refused by the full Argon2 queue (503)",
            &|p| { format!("{:.0}", p.argon2_refused) }
        )
    );
    let _ = writeln!(
        out,
        "{}",
        row(
            "verifiers' service-token renewals, ok / failed (whole phase)",
            &|p| format!("{:.0} / {:.0}", p.renewals.0, p.renewals.1)
        )
    );
    let _ = writeln!(out);
    if !run.notes.is_empty() {
        let _ = writeln!(out, "Notes:\n");
        for note in &run.notes {
            let _ = writeln!(out, "- {note}");
        }
        let _ = writeln!(out);
    }
    out
}

/// `0`, or `HTTP 429 × 3, HTTP 503 × 1`.
fn fmt_errors(load: &LoadResult) -> String {
    if load.errors.is_empty() {
        return "0".to_owned();
    }
    load.errors
        .iter()
        .map(|(kind, n)| format!("{kind} × {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every answer of the flood by kind, successes included (there should be none).
fn fmt_answers(load: &LoadResult) -> String {
    let ok = load.requests.saturating_sub(load.error_count());
    let mut parts: Vec<String> = load
        .errors
        .iter()
        .map(|(kind, n)| format!("{kind} × {n}"))
        .collect();
    if ok > 0 {
        parts.push(format!("HTTP 200 × {ok}"));
    }
    if parts.is_empty() {
        "–".to_owned()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    fn args(argv: &[&str]) -> FloodArgs {
        let mut all = vec!["flood"];
        all.extend_from_slice(argv);
        FloodArgs::try_parse_from(all).expect("flags parse")
    }

    #[test]
    fn cli_definition_is_consistent() {
        FloodArgs::command().debug_assert();
    }

    #[test]
    fn defaults_and_validation() {
        let defaults = args(&[]);
        assert_eq!(defaults.flood_connections, 200);
        assert_eq!(defaults.flood_addresses, 1);
        assert_eq!(defaults.flood_client_id, "gateway");
        assert_eq!(defaults.mode, Mode::Stateful);
        assert!(defaults.validate().is_ok());
        assert!(args(&["--flood-connections", "0"]).validate().is_err());
        assert!(args(&["--duration", "0s"]).validate().is_err());
    }

    #[test]
    fn attacker_addresses_are_distinct_and_valid() {
        let addresses: std::collections::BTreeSet<String> =
            (0..1000).map(|i| attacker_address(i, 1000)).collect();
        assert_eq!(addresses.len(), 1000);
        for address in &addresses {
            address
                .parse::<std::net::Ipv4Addr>()
                .unwrap_or_else(|_| panic!("{address}"));
        }
        assert_eq!(attacker_address(0, 1), "198.51.100.0");
        assert_eq!(
            attacker_address(7, 1),
            "198.51.100.0",
            "one address for all"
        );
    }

    #[test]
    fn the_report_has_both_phases_of_every_probe() {
        let mut load = LoadResult {
            requests: 3,
            window: Duration::from_secs(1),
            ..LoadResult::default()
        };
        for ms in [10, 20, 30] {
            load.latencies.record(Duration::from_millis(ms));
        }
        let mut flood = load.clone();
        flood.requests = 100;
        flood.errors.insert("HTTP 429".into(), 90);
        flood.errors.insert("HTTP 401".into(), 10);
        let phase = |with_flood: bool| Phase {
            probes: Probe::ALL.into_iter().map(|p| (p, load.clone())).collect(),
            flood: with_flood.then(|| flood.clone()),
            argon2_runs: 12.0,
            argon2_refused: 0.0,
            throttled: 90.0,
            renewals: (2.0, 0.0),
        };
        let run = FloodRun {
            quiet: phase(false),
            flood: phase(true),
            notes: vec!["a note".into()],
        };
        let header = Header {
            command: "loadgen flood".into(),
            machine: "2 CPUs".into(),
            started: "now".into(),
            bin_dir: "/bin".into(),
        };
        let report = render(&header, &args(&[]), &run);
        assert_eq!(report.matches("| quiet | 3 |").count(), 3, "{report}");
        assert_eq!(report.matches("| flood | 3 |").count(), 3, "{report}");
        assert!(report.contains("| flood answers | – | HTTP 401 × 10, HTTP 429 × 90 |"));
        assert!(report.contains("| 2 / 0 | 2 / 0 |"), "{report}");
        assert!(report.contains("- a note"));
    }
}
