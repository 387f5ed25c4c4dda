//! `loadgen`: the load benchmark of the platform.
//!
//! For each verifier mode it starts the real services as child processes ([`stack`]), logs in a
//! few sessions, and measures:
//!
//! - throughput and latency of an authenticated `GET /v1/orders/{id}` through the gateway and of
//!   `GetOrder` directly at orders-service ([`load`]), also with authentication switched off
//!   (mode `off`, benchmark builds only) as the baseline,
//! - session-store load: lookups per request, counted at the issuer and in Redis ([`store`]),
//! - resident memory of each service, idle and at its peak under the load ([`memory`]),
//! - revocation delay: logout to first refusal at each verifier ([`revocation`]),
//!
//! and, on a stack of its own, token issuance at auth-service against `openssl speed`
//! ([`issuance`]); then prints a Markdown report ([`report`]) that ends with the verdict on
//! each target of issue 7 ([`targets`]). `loadgen flood` ([`flood`]) measures instead what a
//! flood of bad client credentials through the gateway costs legitimate logins and
//! `client_credentials` grants, and `loadgen token-size` ([`token_size`]) what a larger access
//! token costs per request at the gateway. Timing is never part of the test suite; the unit
//! tests here cover the pure parts (statistics, parsing, formatting).

pub mod cli;
pub mod client;
pub mod cpu;
pub mod cpubench;
pub mod flood;
pub mod issuance;
pub mod load;
pub mod machine;
pub mod memory;
pub mod openssl;
pub mod progress;
pub mod report;
pub mod revocation;
pub mod stack;
pub mod stats;
pub mod store;
pub mod targets;
pub mod token_size;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use proto::orders::v1::order_service_client::OrderServiceClient;

use crate::cli::{AUTH_OFF_BUILD_COMMAND, Mode, SKIP_VERIFY_ENV, Settings, Transport};
use crate::client::{Api, bearer_metadata, get_order, grpc_channel};
use crate::issuance::{Grant, GrantRun, IssuanceRun};
use crate::load::{Running, Target};
use crate::progress::Progress;
use crate::report::{Context, ModeRun, Results, TransportRun};
use crate::stack::{Binaries, CLIENT_ID, Stack, StackOptions, USERNAME};
use crate::store::{Snapshot, Sources, StoreLoad};

/// Share of the CPUs (percent) other processes may use for the machine to count as idle.
const IDLE_PERCENT: f64 = 10.0;

/// Measurements of one window at most, with `--wait-idle`.
const MAX_ATTEMPTS: u32 = 3;

/// How long a `hybrid` stack may take until its revocation feed is fresh at both verifiers.
const FEED_TIMEOUT: Duration = Duration::from_secs(10);

/// The outcome of a whole run.
#[derive(Debug)]
pub struct Outcome {
    /// The Markdown report of everything measured.
    pub report: String,
    /// Whether a mode failed (its failure is in the report; the other modes were measured).
    pub failed: bool,
}

/// Runs every selected mode `settings.repeat` times (modes interleaved, so drift of the machine
/// hits all modes alike) and returns the Markdown report. A mode that fails is reported as such
/// and the run goes on, so a long run is not lost to one failure.
pub async fn run(settings: Settings, command: String) -> anyhow::Result<Outcome> {
    let bin_dir = settings.bin_dir()?;
    let binaries = Binaries::in_dir(&bin_dir)?;
    let context = Context {
        command,
        machine: machine::Machine::detect(),
        bin_dir: bin_dir.display().to_string(),
        started: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    };
    let progress = Progress::start();
    let mut results = Results::default();
    let measures_modes = settings.throughput || settings.revocation;
    for repeat in 1..=settings.repeat {
        let numbered = |name: &str| {
            if settings.repeat > 1 {
                format!("{name} {repeat}/{}", settings.repeat)
            } else {
                name.to_owned()
            }
        };
        for &mode in settings.modes.iter().filter(|_| measures_modes) {
            if results.skipped.contains_key(&mode) {
                continue;
            }
            let label = numbered(mode.label());
            match run_mode(mode, &label, &settings, &binaries, &progress).await {
                Ok(run) => results.runs.push(run),
                Err(error) => {
                    if let Some(skipped) = error.downcast_ref::<ModeSkipped>() {
                        progress.note(&format!("{label}: skipped: {skipped}"));
                        results.skipped.insert(mode, skipped.to_string());
                        continue;
                    }
                    let failure = format!("mode {label} failed: {error:#}");
                    progress.note(&failure);
                    results.failures.push(failure);
                }
            }
        }
        if settings.issuance {
            let label = numbered("issuance");
            match run_issuance(&label, &settings, &binaries, &progress).await {
                Ok(run) => results.issuance.push(run),
                Err(error) => {
                    let failure = format!("{label} failed: {error:#}");
                    progress.note(&failure);
                    results.failures.push(failure);
                }
            }
        }
    }
    Ok(Outcome {
        report: report::render(&context, &settings, &results),
        failed: !results.failures.is_empty(),
    })
}

/// A mode these service binaries cannot run: `off` without the benchmark-only feature.
#[derive(Debug)]
struct ModeSkipped(String);

impl std::fmt::Display for ModeSkipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ModeSkipped {}

/// Whether a failed start of mode `off` is the services refusing [`SKIP_VERIFY_ENV`] because
/// they were built without the benchmark-only feature (their error names it).
fn lacks_auth_off_feature(mode: Mode, start_error: &anyhow::Error) -> bool {
    mode == Mode::Off && format!("{start_error:#}").contains("bench-auth-off")
}

/// What the report says when mode `off` cannot run.
fn auth_off_unsupported(bin_dir: &str) -> String {
    format!(
        "the services in {bin_dir} were built without the benchmark-only feature \
         `bench-auth-off`, so they refuse {SKIP_VERIFY_ENV}. For the auth-off baseline, build \
         them with it (never deploy what this builds):\n\n    {AUTH_OFF_BUILD_COMMAND}\n"
    )
}

/// The logged-in sessions and the order the load reads.
struct Fixture {
    tokens: Vec<String>,
    order_id: String,
}

impl Fixture {
    async fn prepare(stack: &Stack, sessions: usize) -> anyhow::Result<Self> {
        let mut api = Api::new(stack.addrs.gateway);
        let mut tokens = Vec::with_capacity(sessions);
        for _ in 0..sessions {
            tokens.push(api.login(USERNAME, &stack.password).await?);
        }
        let order_id = api.create_order(&tokens[0]).await?;
        Ok(Self { tokens, order_id })
    }
}

async fn run_mode(
    mode: Mode,
    label: &str,
    settings: &Settings,
    binaries: &Binaries,
    progress: &Progress,
) -> anyhow::Result<ModeRun> {
    progress.note(&format!(
        "{label}: starting auth-service, orders-service and gateway (AUTH_MODE={}{})",
        mode.auth_mode(),
        if mode.uses_redis() { ", REDIS_URL" } else { "" }
    ));
    let redis_url = settings.redis_url.clone().filter(|_| mode.uses_redis());
    let mut stack = match Stack::start(
        binaries,
        &StackOptions {
            mode,
            redis_url: redis_url.clone(),
            log_level: settings.service_log.clone(),
            verifier_env: settings.verifier_env.clone(),
            auth_env: Vec::new(),
            route_level: settings.route_level,
        },
    )
    .await
    {
        Ok(stack) => stack,
        Err(error) if lacks_auth_off_feature(mode, &error) => {
            let dir = binaries.gateway.parent().unwrap_or(&binaries.gateway);
            return Err(ModeSkipped(auth_off_unsupported(&dir.display().to_string())).into());
        }
        Err(error) => return Err(error),
    };
    match measure(
        mode,
        label,
        settings,
        progress,
        &stack,
        redis_url.as_deref(),
    )
    .await
    {
        Ok(mut run) => {
            run.notes.extend(stack.stop());
            Ok(run)
        }
        // The services' own words are what explains a failure.
        Err(error) => Err(error.context(format!(
            "the end of the services' logs:\n{}",
            stack.log_tails(20)
        ))),
    }
}

/// Every selected scenario, on a running stack.
async fn measure(
    mode: Mode,
    label: &str,
    settings: &Settings,
    progress: &Progress,
    stack: &Stack,
    redis_url: Option<&str>,
) -> anyhow::Result<ModeRun> {
    let fixture = Fixture::prepare(stack, settings.sessions)
        .await
        .context("logging in and creating the order the load reads")?;
    let mut run = ModeRun::new(mode);
    if mode == Mode::Hybrid && !wait_for_fresh_feed(stack, &fixture).await? {
        run.notes.push(format!(
            "the revocation feed was not fresh at both verifiers within {FEED_TIMEOUT:?} of start \
             (requests go to the stateful fallback while it is stale)"
        ));
    }

    let services = stack.pids();
    if settings.memory {
        // Started, seeded, logged in: what the services hold before any load.
        run.idle_memory = memory::idle(&services);
    }
    let mut processes = services.clone();
    processes.push(("loadgen".to_owned(), std::process::id()));
    let scope = Scope {
        stack,
        fixture: &fixture,
        settings,
        progress,
        label,
    };

    if settings.throughput {
        let mut sources = Sources::new(
            stack.addrs.auth_metrics,
            vec![stack.addrs.gateway_metrics, stack.addrs.orders_http],
            redis_url,
        )
        .await?;
        if let Some(pid) = sources.local_redis_pid().await {
            processes.push(("redis-server".to_owned(), pid));
        }
        for &transport in &settings.transports {
            let result = scope
                .least_disturbed_throughput(transport, &mut sources, &processes, &mut run.notes)
                .await
                .with_context(|| format!("throughput over {}", transport.label()))?;
            run.throughput.insert(transport, result);
        }
    }

    if settings.revocation && mode.measures_revocation() {
        wait_idle(settings, &processes, progress, &mut run.notes).await;
        let result = revocation::run(
            stack,
            &fixture.order_id,
            settings.revocations,
            settings.revocation_deadline,
            progress,
            &format!("{label} revocation"),
        )
        .await
        .context("revocation delay")?;
        run.revocation = Some(result);
    }
    Ok(run)
}

/// What the measurements of one mode share.
struct Scope<'a> {
    stack: &'a Stack,
    fixture: &'a Fixture,
    settings: &'a Settings,
    progress: &'a Progress,
    label: &'a str,
}

impl Scope<'_> {
    /// [`Scope::throughput`]; with `--wait-idle`, after waiting for an idle machine, and
    /// measured again (up to [`MAX_ATTEMPTS`] in all) while processes outside the benchmark
    /// took more than [`IDLE_PERCENT`] of the CPUs during the window. Keeps the least disturbed.
    async fn least_disturbed_throughput(
        &self,
        transport: Transport,
        sources: &mut Sources,
        processes: &[(String, u32)],
        notes: &mut Vec<String>,
    ) -> anyhow::Result<TransportRun> {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let disturbance =
            |run: &TransportRun| run.cpu.as_ref().map_or(0.0, |cpu| cpu.others_percent(cpus));
        let mut best: Option<TransportRun> = None;
        for attempt in 1..=MAX_ATTEMPTS {
            wait_idle(self.settings, processes, self.progress, notes).await;
            let run = self.throughput(transport, sources, processes).await?;
            let others = disturbance(&run);
            if best.as_ref().is_none_or(|b| others < disturbance(b)) {
                best = Some(run);
            }
            if self.settings.wait_idle.is_zero() || others <= IDLE_PERCENT {
                break;
            }
            if attempt < MAX_ATTEMPTS {
                self.progress.note(&format!(
                    "other processes took {others:.0}% of the CPUs during the window; measuring again"
                ));
            } else {
                notes.push(format!(
                    "{}: other processes took at least {:.0}% of the CPUs in each of \
                     {MAX_ATTEMPTS} attempts; the least disturbed is reported",
                    transport.label(),
                    best.as_ref().map_or(0.0, disturbance)
                ));
            }
        }
        Ok(best.expect("BUG: at least one attempt ran"))
    }

    /// Warm-up, then the measured window; store load and CPU use read around the window.
    async fn throughput(
        &self,
        transport: Transport,
        sources: &mut Sources,
        processes: &[(String, u32)],
    ) -> anyhow::Result<TransportRun> {
        let (settings, progress, label) = (self.settings, self.progress, self.label);
        let target = Target {
            transport,
            addr: match transport {
                Transport::Http => self.stack.addrs.gateway,
                Transport::Grpc => self.stack.addrs.orders_grpc,
            },
            order_id: self.fixture.order_id.clone(),
            tokens: self.fixture.tokens.clone(),
        };
        let services: Vec<(String, u32)> = self.stack.pids();
        let peaks_reset = settings.memory && memory::start_load(&services);
        let mut running = Running::start(&target, settings.connections).await?;
        let completed = running.completed();
        progress.track(
            format!("{label} {} warm-up", transport.label()),
            completed.clone(),
            "requests",
        );
        tokio::time::sleep(settings.warmup).await;
        let before: Option<Snapshot> = if settings.store_load {
            Some(sources.snapshot().await?)
        } else {
            None
        };
        let completed_before = completed.load(Ordering::SeqCst);
        let cpu_before = cpu::sample(processes);
        running.measure();
        progress.track(
            format!("{label} {}", transport.label()),
            completed.clone(),
            "requests",
        );
        tokio::time::sleep(settings.duration).await;
        let load = running.finish().await?;
        let cpu = cpu_before
            .zip(cpu::sample(processes))
            .map(|(before, after)| cpu::between(&before, &after));
        let memory = settings
            .memory
            .then(|| memory::end_load(&services, peaks_reset));
        progress.done();
        let store = match before {
            Some(before) => {
                let after = sources.snapshot().await?;
                let requests = completed.load(Ordering::SeqCst) - completed_before;
                Some(StoreLoad::between(&before, &after, requests))
            }
            None => None,
        };
        Ok(TransportRun {
            load,
            store,
            cpu,
            memory,
        })
    }
}

/// The issuance scenario on a stack of its own (`stateless`; the verifiers stay idle), then
/// `openssl speed rsa2048` with the stack stopped.
async fn run_issuance(
    label: &str,
    settings: &Settings,
    binaries: &Binaries,
    progress: &Progress,
) -> anyhow::Result<IssuanceRun> {
    progress.note(&format!(
        "{label}: starting auth-service, orders-service and gateway"
    ));
    let mut stack = Stack::start(
        binaries,
        &StackOptions {
            mode: Mode::Stateless,
            redis_url: None,
            log_level: settings.service_log.clone(),
            verifier_env: Vec::new(),
            auth_env: Vec::new(),
            route_level: None,
        },
    )
    .await?;
    let setup = issuance::Setup {
        auth: stack.addrs.auth_http,
        client_id: CLIENT_ID.to_owned(),
        client_secret: stack.client_secret.clone(),
        username: USERNAME.to_owned(),
        password: stack.password.clone(),
    };
    let mut processes = stack.pids();
    processes.push(("loadgen".to_owned(), std::process::id()));
    let mut notes = Vec::new();
    let mut grants = std::collections::BTreeMap::new();
    for grant in Grant::ALL {
        wait_idle(settings, &processes, progress, &mut notes).await;
        let run = issue(grant, label, &setup, settings, progress, &processes)
            .await
            .with_context(|| format!("issuing with {}", grant.label()))
            .map_err(|error| {
                error.context(format!(
                    "the end of the services' logs:\n{}",
                    stack.log_tails(20)
                ))
            })?;
        grants.insert(grant, run);
    }
    notes.extend(stack.stop());
    drop(stack);

    // On the quiet machine, one core, as the issue measured it.
    wait_idle(settings, &[], progress, &mut notes).await;
    progress.note(&format!(
        "{label}: openssl speed -seconds {} rsa2048",
        settings.openssl_seconds.as_secs()
    ));
    let seconds = settings.openssl_seconds;
    let openssl = tokio::task::spawn_blocking(move || openssl::measure(seconds))
        .await?
        .map_err(|error| format!("{error:#}"));
    if let Err(why) = &openssl {
        progress.note(&format!("{label}: openssl not measured: {why}"));
    }
    Ok(IssuanceRun {
        grants,
        openssl,
        notes,
    })
}

/// One grant: warm-up, then the measured window, with the CPU use of `processes` around it.
async fn issue(
    grant: Grant,
    label: &str,
    setup: &issuance::Setup,
    settings: &Settings,
    progress: &Progress,
    processes: &[(String, u32)],
) -> anyhow::Result<GrantRun> {
    let mut running = issuance::start(grant, setup, settings.issuance_connections).await?;
    let completed = running.completed();
    progress.track(
        format!("{label} {} warm-up", grant.label()),
        completed.clone(),
        "token requests",
    );
    tokio::time::sleep(settings.warmup).await;
    let cpu_before = cpu::sample(processes);
    running.measure();
    progress.track(
        format!("{label} {}", grant.label()),
        completed,
        "token requests",
    );
    tokio::time::sleep(settings.duration).await;
    let load = running.finish().await?;
    let cpu = cpu_before
        .zip(cpu::sample(processes))
        .map(|(before, after)| cpu::between(&before, &after));
    progress.done();
    Ok(GrantRun { load, cpu })
}

/// With `--wait-idle`: waits until the machine is idle but for `ours`; notes it if it never was.
async fn wait_idle(
    settings: &Settings,
    ours: &[(String, u32)],
    progress: &Progress,
    notes: &mut Vec<String>,
) {
    if settings.wait_idle.is_zero() {
        return;
    }
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let mut waited = false;
    let others = cpu::wait_idle(ours, cpus, IDLE_PERCENT, settings.wait_idle, |others| {
        if !waited {
            progress.note(&format!(
                "waiting for other processes to calm down ({others:.0}% of the CPUs busy)"
            ));
            waited = true;
        }
    })
    .await;
    if let Some(others) = others.filter(|o| *o > IDLE_PERCENT) {
        notes.push(format!(
            "the machine was not idle after waiting {} (other processes used {others:.0}% of \
             the CPUs); measured anyway",
            humantime::format_duration(settings.wait_idle)
        ));
    }
}

/// Waits until a request through the gateway causes no stale-feed fallback at either verifier
/// (`auth_revocation_feed_stale_checks_total` stays put), i.e. both `hybrid` feeds are fresh.
async fn wait_for_fresh_feed(stack: &Stack, fixture: &Fixture) -> anyhow::Result<bool> {
    const STALE: &str = "auth_revocation_feed_stale_checks_total";
    let deadline = Instant::now() + FEED_TIMEOUT;
    let mut sources = Sources::new(
        stack.addrs.auth_metrics,
        vec![stack.addrs.gateway_metrics, stack.addrs.orders_http],
        None,
    )
    .await?;
    let mut api = Api::new(stack.addrs.gateway);
    let mut orders = OrderServiceClient::new(grpc_channel(stack.addrs.orders_grpc).await?);
    let token = &fixture.tokens[0];
    let metadata = bearer_metadata(token)?;
    loop {
        let before = store::sum(&sources.snapshot().await?.verifiers, STALE);
        api.get_order(&fixture.order_id, token).await?;
        let _ = get_order(&mut orders, &fixture.order_id, &metadata).await;
        let after = store::sum(&sources.snapshot().await?.verifiers, STALE);
        if after <= before {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_without_the_feature_are_recognised_by_their_refusal() {
        let refused = anyhow::anyhow!(
            "gateway exited (exit status: 1) while starting; the end of its log:\n    Error: \
             starting gateway: AUTH_INSECURE_SKIP_VERIFY is set, but switching token \
             verification off exists only in benchmark builds (cargo feature bench-auth-off); \
             unset it"
        );
        assert!(lacks_auth_off_feature(Mode::Off, &refused));
        assert!(!lacks_auth_off_feature(Mode::Stateless, &refused));
        assert!(!lacks_auth_off_feature(
            Mode::Off,
            &anyhow::anyhow!("gateway did not become ready")
        ));
        let why = auth_off_unsupported("/opt/bin");
        assert!(
            why.contains("/opt/bin") && why.contains(AUTH_OFF_BUILD_COMMAND),
            "{why}"
        );
        assert!(!why.contains("  `"), "no stray indentation: {why}");
    }
}
