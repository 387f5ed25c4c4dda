//! The results of a run, aggregated over repeats (medians), as Markdown.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::cli::{Mode, Settings, Transport};
use crate::cpu::CpuUsage;
use crate::issuance::{Grant, IssuanceRun};
use crate::load::LoadResult;
use crate::machine::Machine;
use crate::memory::{LoadPeaks, MB, fmt_mb};
use crate::revocation::{Ending, RevocationResult, VerifierDelays};
use crate::stats::{median, median_duration};
use crate::store::StoreLoad;
use crate::targets::{Goal, fmt_plain_ratio};

/// Everything measured on one stack (one mode, one repeat).
#[derive(Debug, Clone)]
pub struct ModeRun {
    pub mode: Mode,
    pub throughput: BTreeMap<Transport, TransportRun>,
    pub revocation: Option<RevocationResult>,
    /// RSS of each service before any load, in bytes (with the memory scenario).
    pub idle_memory: BTreeMap<String, u64>,
    /// Things the reader must know (a feed that never became fresh, a service that had to be
    /// killed).
    pub notes: Vec<String>,
}

impl ModeRun {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            throughput: BTreeMap::new(),
            revocation: None,
            idle_memory: BTreeMap::new(),
            notes: Vec::new(),
        }
    }
}

/// One throughput run.
#[derive(Debug, Clone)]
pub struct TransportRun {
    pub load: LoadResult,
    pub store: Option<StoreLoad>,
    pub cpu: Option<CpuUsage>,
    /// The services' peak RSS during this load (with the memory scenario).
    pub memory: Option<LoadPeaks>,
}

/// Everything a run produced.
#[derive(Debug, Clone, Default)]
pub struct Results {
    /// One per mode and repeat.
    pub runs: Vec<ModeRun>,
    /// Why a mode or the issuance scenario failed, one per failure.
    pub failures: Vec<String>,
    /// Modes these binaries cannot run, and why (`off` without the benchmark-only feature).
    pub skipped: BTreeMap<Mode, String>,
    /// One per repeat.
    pub issuance: Vec<IssuanceRun>,
}

/// What the report says about how it was made.
#[derive(Debug, Clone)]
pub struct Context {
    pub command: String,
    pub machine: Machine,
    pub bin_dir: String,
    pub started: String,
}

/// Medians over repeats of one (mode, transport).
#[derive(Debug, Clone, Default)]
struct TransportSummary {
    rps: f64,
    /// Lowest and highest req/s over the repeats.
    rps_range: (f64, f64),
    runs: usize,
    p50: Option<Duration>,
    p99: Option<Duration>,
    requests: u64,
    errors: BTreeMap<String, u64>,
    lookups: Option<f64>,
    lookup_source: Option<(String, bool)>,
    redis_commands: Option<f64>,
    fallback_checks: f64,
    cpu: Option<CpuSummary>,
}

/// Medians over repeats of where the CPU went.
#[derive(Debug, Clone, Default)]
struct CpuSummary {
    /// CPU µs per request, per watched process.
    per_request: BTreeMap<String, f64>,
    /// CPU µs per request of every other process.
    others_per_request: f64,
    /// Share of all CPUs busy, and busy outside the watched processes, in percent.
    busy_percent: f64,
    others_percent: f64,
}

impl CpuSummary {
    /// CPU µs per request of the services, Redis and loadgen together.
    fn ours(&self) -> f64 {
        self.per_request.values().sum()
    }
}

#[allow(clippy::cast_precision_loss)]
fn summarize_cpu(runs: &[&TransportRun], cpus: usize) -> Option<CpuSummary> {
    let usable: Vec<(&CpuUsage, f64)> = runs
        .iter()
        .filter_map(|r| Some((r.cpu.as_ref()?, r.load.requests as f64)))
        .filter(|(cpu, requests)| *requests > 0.0 && !cpu.window.is_zero())
        .collect();
    if usable.is_empty() {
        return None;
    }
    let capacity = |cpu: &CpuUsage| cpu.window.as_secs_f64() * cpus.max(1) as f64;
    let mut names: Vec<&str> = usable
        .iter()
        .flat_map(|(cpu, _)| cpu.processes.iter().map(|(n, _)| n.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    let per_request = names
        .into_iter()
        .filter_map(|name| {
            let value = median(usable.iter().filter_map(|(cpu, requests)| {
                let (_, seconds) = cpu.processes.iter().find(|(n, _)| n == name)?;
                Some(seconds * 1e6 / requests)
            }))?;
            Some((name.to_owned(), value))
        })
        .collect();
    Some(CpuSummary {
        per_request,
        others_per_request: median(usable.iter().map(|(c, r)| c.others() * 1e6 / r)).unwrap_or(0.0),
        busy_percent: median(usable.iter().map(|(c, _)| c.busy / capacity(c) * 100.0))
            .unwrap_or(0.0),
        others_percent: median(usable.iter().map(|(c, _)| c.others() / capacity(c) * 100.0))
            .unwrap_or(0.0),
    })
}

fn summarize_transport(runs: &[&TransportRun], cpus: usize) -> TransportSummary {
    let mut errors = BTreeMap::new();
    for run in runs {
        for (kind, n) in &run.load.errors {
            *errors.entry(kind.clone()).or_default() += n;
        }
    }
    let stores: Vec<&StoreLoad> = runs.iter().filter_map(|r| r.store.as_ref()).collect();
    #[allow(clippy::cast_precision_loss)]
    let redis_commands = median(stores.iter().filter_map(|s| {
        let commands = s.redis_commands?;
        (s.requests > 0).then(|| commands as f64 / s.requests as f64)
    }));
    TransportSummary {
        rps: median(runs.iter().map(|r| r.load.requests_per_second())).unwrap_or(0.0),
        rps_range: runs
            .iter()
            .map(|r| r.load.requests_per_second())
            .fold((f64::INFINITY, 0.0), |(lo, hi), x| (lo.min(x), hi.max(x))),
        runs: runs.len(),
        p50: median_duration(runs.iter().filter_map(|r| r.load.latencies.quantile(0.5))),
        p99: median_duration(runs.iter().filter_map(|r| r.load.latencies.quantile(0.99))),
        requests: runs.iter().map(|r| r.load.requests).sum(),
        errors,
        lookups: median(stores.iter().filter_map(|s| s.per_request())),
        lookup_source: stores.first().map(|s| {
            let source = if s.redis_exists.is_some() {
                "Redis EXISTS".to_owned()
            } else if s.issuer_lookups.exact {
                format!("CheckSession: `{}`", s.issuer_lookups.source)
            } else {
                format!("`{}`", s.issuer_lookups.source)
            };
            (source, s.issuer_lookups.exact || s.redis_exists.is_some())
        }),
        redis_commands,
        fallback_checks: stores.iter().map(|s| s.fallback_checks).sum(),
        cpu: summarize_cpu(runs, cpus),
    }
}

/// Revocations at one verifier, over repeats.
#[derive(Debug, Clone, Default)]
struct VerifierSummary {
    p50: Option<Duration>,
    p99: Option<Duration>,
    max: Option<Duration>,
    refused: u32,
    missed: u32,
    unexpected: BTreeMap<String, u64>,
}

fn summarize_verifier(runs: &[&VerifierDelays]) -> VerifierSummary {
    let mut unexpected = BTreeMap::new();
    for run in runs {
        for (kind, n) in &run.unexpected {
            *unexpected.entry(kind.clone()).or_default() += n;
        }
    }
    VerifierSummary {
        p50: median_duration(runs.iter().filter_map(|r| r.delays.quantile(0.5))),
        p99: median_duration(runs.iter().filter_map(|r| r.delays.quantile(0.99))),
        max: runs.iter().filter_map(|r| r.delays.max()).max(),
        refused: runs.iter().map(|r| r.refused).sum(),
        missed: runs.iter().map(|r| r.missed).sum(),
        unexpected,
    }
}

#[derive(Debug, Clone)]
struct RevocationSummary {
    attempted: u32,
    gateway: VerifierSummary,
    orders: VerifierSummary,
    endings: Vec<Ending>,
}

fn summarize_revocation(runs: &[&RevocationResult]) -> Option<RevocationSummary> {
    if runs.is_empty() {
        return None;
    }
    let mut endings: Vec<Ending> = runs.iter().map(|r| r.ending.clone()).collect();
    endings.dedup();
    Some(RevocationSummary {
        attempted: runs.iter().map(|r| r.attempted).sum(),
        gateway: summarize_verifier(&runs.iter().map(|r| &r.gateway).collect::<Vec<_>>()),
        orders: summarize_verifier(&runs.iter().map(|r| &r.orders).collect::<Vec<_>>()),
        endings,
    })
}

/// `850 µs`, `1.24 ms`, `12.5 ms`, `1.20 s`.
pub fn fmt_duration(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 1000.0 {
        format!("{micros:.0} µs")
    } else if micros < 10_000.0 {
        format!("{:.2} ms", micros / 1000.0)
    } else if micros < 1_000_000.0 {
        format!("{:.1} ms", micros / 1000.0)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

fn fmt_opt_duration(d: Option<Duration>) -> String {
    d.map_or_else(|| "–".to_owned(), fmt_duration)
}

/// A rate with thousands separators: `12,345`.
pub fn fmt_rate(rate: f64) -> String {
    // Rounded and clamped to what a u64 holds, so the cast is exact.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let whole = rate.round().clamp(0.0, 1e15) as u64;
    let digits = whole.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `0.93 (−7.0%)`.
pub fn fmt_ratio(ratio: f64) -> String {
    let percent = (ratio - 1.0) * 100.0;
    let sign = if percent < 0.0 { "−" } else { "+" };
    format!("{ratio:.2} ({sign}{:.1}%)", percent.abs())
}

fn fmt_errors(errors: &BTreeMap<String, u64>) -> String {
    errors
        .iter()
        .map(|(kind, n)| format!("{kind} × {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn revocation_cell(
    mode: Mode,
    summary: Option<&RevocationSummary>,
    transport: Transport,
    deadline: Duration,
) -> String {
    if !mode.measures_revocation() {
        return "– (not measured in this mode)".to_owned();
    }
    let Some(summary) = summary else {
        return "not run".to_owned();
    };
    let verifier = match transport {
        Transport::Http => &summary.gateway,
        Transport::Grpc => &summary.orders,
    };
    if verifier.refused == 0 {
        if let Some(Ending::LogoutFailed(why)) = summary
            .endings
            .iter()
            .find(|e| matches!(e, Ending::LogoutFailed(_)))
        {
            return format!("not measured ({why})");
        }
        if verifier.missed == 0 {
            return "not measured".to_owned();
        }
        return if mode == Mode::Stateless {
            "never (accepted until expiry)".to_owned()
        } else {
            format!("never within {}", humantime::format_duration(deadline))
        };
    }
    let mut cell = format!(
        "{} / {}",
        fmt_opt_duration(verifier.p50),
        fmt_opt_duration(verifier.p99)
    );
    if verifier.missed > 0 {
        let _ = write!(cell, " ({} missed)", verifier.missed);
    }
    cell
}

fn lookups_cell(summary: &TransportSummary) -> String {
    match (&summary.lookups, &summary.lookup_source) {
        (Some(per_request), Some((source, exact))) => {
            let mark = if *exact { "" } else { " †" };
            if *per_request < 0.005 {
                format!("{per_request:.2}{mark}")
            } else {
                format!("{per_request:.2} ({source}){mark}")
            }
        }
        _ => "–".to_owned(),
    }
}

/// The whole report.
pub fn render(context: &Context, settings: &Settings, results: &Results) -> String {
    let (runs, failures) = (&results.runs, &results.failures);
    let mut out = String::new();
    let repeat_note = if settings.repeat > 1 {
        format!(" (medians of {} runs)", settings.repeat)
    } else {
        String::new()
    };
    let _ = writeln!(out, "## loadgen results{repeat_note}\n");
    if settings.repeat > 1 {
        let _ = writeln!(
            out,
            "Each req/s is the median of the runs (lowest–highest in parentheses); latencies, \
             lookups and CPU figures are medians too; errors are summed.\n"
        );
    }
    let _ = writeln!(out, "- Command: `{}`", context.command);
    let _ = writeln!(out, "- Machine: {}", context.machine.describe());
    let _ = writeln!(out, "- Started: {}", context.started);
    if settings.throughput {
        let _ = writeln!(
            out,
            "- Load: {} connections (one request in flight each), {} warm-up + {} measured per \
             transport, spread over {} logged-in sessions",
            settings.connections,
            humantime::format_duration(settings.warmup),
            humantime::format_duration(settings.duration),
            settings.sessions,
        );
    }
    if settings.revocation {
        let _ = writeln!(
            out,
            "- Revocations: up to {} per mode, deadline {} each",
            settings.revocations,
            humantime::format_duration(settings.revocation_deadline),
        );
    }
    let extra: String = settings
        .verifier_env
        .iter()
        .map(|(k, v)| format!(", verifiers with `{k}={v}`"))
        .collect();
    let _ = writeln!(
        out,
        "- Services: `RUST_LOG={}`{extra}, otherwise their defaults; binaries from `{}`",
        settings.service_log, context.bin_dir,
    );
    let _ = writeln!(out);

    if !failures.is_empty() {
        let _ = writeln!(
            out,
            "**{} run(s) failed and are missing from the figures below:**\n",
            failures.len()
        );
        for failure in failures {
            // The first line says what failed; the services' log lines follow, indented.
            let _ = writeln!(out, "```text\n{failure}\n```");
        }
        let _ = writeln!(out);
    }
    for (mode, why) in &results.skipped {
        let _ = writeln!(out, "**Mode {} skipped:** {why}\n", mode.label());
    }

    let by_mode = |mode: Mode| runs.iter().filter(move |r| r.mode == mode);
    let transport_summary = |mode: Mode, transport: Transport| {
        let selected: Vec<&TransportRun> = by_mode(mode)
            .filter_map(|r| r.throughput.get(&transport))
            .collect();
        (!selected.is_empty()).then(|| summarize_transport(&selected, context.machine.cpus))
    };
    let revocation_summary = |mode: Mode| {
        summarize_revocation(
            &by_mode(mode)
                .filter_map(|r| r.revocation.as_ref())
                .collect::<Vec<_>>(),
        )
    };
    let rows: Vec<Transport> = if settings.throughput {
        settings.transports.clone()
    } else {
        vec![Transport::Http, Transport::Grpc]
    };

    let mut any_inexact = false;
    let mode_rows: &[Mode] = if settings.throughput || settings.revocation {
        let _ = writeln!(
            out,
            "| mode | transport | req/s | p50 | p99 | errors | revocation p50 / p99 (gateway, orders) | lookups/request |"
        );
        let _ = writeln!(out, "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |");
        &settings.modes
    } else {
        &[]
    };
    for &mode in mode_rows {
        let revocation = revocation_summary(mode);
        for &transport in &rows {
            let summary = transport_summary(mode, transport);
            let (rps, p50, p99, errors, lookups) = match &summary {
                Some(s) => {
                    any_inexact |= s.lookup_source.as_ref().is_some_and(|(_, exact)| !exact);
                    (
                        if s.runs > 1 {
                            format!(
                                "{} ({}–{})",
                                fmt_rate(s.rps),
                                fmt_rate(s.rps_range.0),
                                fmt_rate(s.rps_range.1)
                            )
                        } else {
                            fmt_rate(s.rps)
                        },
                        fmt_opt_duration(s.p50),
                        fmt_opt_duration(s.p99),
                        s.errors.values().sum::<u64>().to_string(),
                        lookups_cell(s),
                    )
                }
                None => ("–".into(), "–".into(), "–".into(), "–".into(), "–".into()),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {rps} | {p50} | {p99} | {errors} | {} | {lookups} |",
                mode.label(),
                transport.label(),
                revocation_cell(
                    mode,
                    revocation.as_ref(),
                    transport,
                    settings.revocation_deadline
                ),
            );
        }
    }
    if !mode_rows.is_empty() {
        let _ = writeln!(out);
    }
    if any_inexact {
        let _ = writeln!(
            out,
            "† No `CheckSession` series at the issuer (a request counter labelled with it appears \
             with the first call): counted with `auth_verify_total`, the \
             issuer's bearer verifications (one per `CheckSession` call, each carrying the \
             verifier's service token; also counts logins' and logouts' bearer checks, none of \
             which happen during the throughput run).\n"
        );
    }

    // Ratios against stateless.
    if settings.throughput && settings.modes.contains(&Mode::Stateless) {
        let mut lines = Vec::new();
        for &mode in settings.modes.iter().filter(|m| **m != Mode::Stateless) {
            let parts: Vec<String> = settings
                .transports
                .iter()
                .filter_map(|&t| {
                    let base = transport_summary(Mode::Stateless, t)?;
                    let this = transport_summary(mode, t)?;
                    if base.rps <= 0.0 {
                        return None;
                    }
                    let mut part = format!("{} {}", t.label(), fmt_ratio(this.rps / base.rps));
                    if let (Some(b), Some(c)) = (&base.cpu, &this.cpu)
                        && b.ours() > 0.0
                    {
                        let _ = write!(
                            part,
                            ", CPU per request {:.2}× (throughput at equal CPU {})",
                            c.ours() / b.ours(),
                            fmt_ratio(b.ours() / c.ours())
                        );
                    }
                    Some(part)
                })
                .collect();
            if !parts.is_empty() {
                lines.push(format!(
                    "- {} / stateless: {}",
                    mode.label(),
                    parts.join("; ")
                ));
            }
        }
        if !lines.is_empty() {
            let _ = writeln!(
                out,
                "Throughput relative to stateless (req/s ratio; and from the CPU per request of \
                 the services, Redis and loadgen together, which other processes on the machine \
                 disturb less):\n"
            );
            for line in lines {
                let _ = writeln!(out, "{line}");
            }
            let _ = writeln!(out);
        }
    }

    // Where the CPU went.
    let mut cpu_rows = Vec::new();
    let mut worst_others: f64 = 0.0;
    for &mode in &settings.modes {
        for &transport in &settings.transports {
            let Some(cpu) = transport_summary(mode, transport).and_then(|s| s.cpu) else {
                continue;
            };
            worst_others = worst_others.max(cpu.others_percent);
            let cell = |name: &str| {
                cpu.per_request
                    .get(name)
                    .map_or_else(|| "–".to_owned(), |us| format!("{us:.0}"))
            };
            cpu_rows.push(format!(
                "| {} | {} | {} | {} | {} | {} | {} | **{:.0}** | {:.0} ({:.0}%) | {:.0}% |",
                mode.label(),
                transport.label(),
                cell("gateway"),
                cell("orders-service"),
                cell("auth-service"),
                cell("redis-server"),
                cell("loadgen"),
                cpu.ours(),
                cpu.others_per_request,
                cpu.others_percent,
                cpu.busy_percent,
            ));
        }
    }
    if !cpu_rows.is_empty() {
        let _ = writeln!(
            out,
            "CPU time per request in the measured window, µs (from `/proc`; everything shares the \
             machine's {} CPUs):\n",
            context.machine.cpus
        );
        let _ = writeln!(
            out,
            "| mode | transport | gateway | orders-service | auth-service | redis-server | loadgen | together | other processes (share of CPUs) | all CPUs busy |"
        );
        let _ = writeln!(
            out,
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for row in cpu_rows {
            let _ = writeln!(out, "{row}");
        }
        let _ = writeln!(out);
        if worst_others > 5.0 {
            let _ = writeln!(
                out,
                "**Disturbed:** processes outside the benchmark used up to {worst_others:.0}% of \
                 the CPUs during a measured window; rerun on an idle machine.\n"
            );
        }
    }

    // Revocation details.
    if settings.revocation {
        let _ = writeln!(
            out,
            "Revocation delay (logout response → first refusal, including that request's latency):\n"
        );
        let _ = writeln!(
            out,
            "| mode | verifier | refused / attempted | p50 | p99 | max | other answers while polling |"
        );
        let _ = writeln!(out, "| --- | --- | ---: | ---: | ---: | ---: | --- |");
        for &mode in &settings.modes {
            let Some(summary) = revocation_summary(mode) else {
                continue;
            };
            for (name, v) in [
                ("gateway", &summary.gateway),
                ("orders-service", &summary.orders),
            ] {
                let other = fmt_errors(&v.unexpected);
                let _ = writeln!(
                    out,
                    "| {} | {name} | {} / {} | {} | {} | {} | {} |",
                    mode.label(),
                    v.refused,
                    summary.attempted,
                    fmt_opt_duration(v.p50),
                    fmt_opt_duration(v.p99),
                    fmt_opt_duration(v.max),
                    if other.is_empty() { "–" } else { &other },
                );
            }
        }
        let _ = writeln!(out);
        let mut endings = Vec::new();
        for &mode in &settings.modes {
            if let Some(summary) = revocation_summary(mode) {
                for ending in &summary.endings {
                    let text = match ending {
                        Ending::Completed => continue,
                        Ending::NeverRefused => format!(
                            "stopped after the first revocation still accepted at the deadline \
                             ({} attempted)",
                            summary.attempted
                        ),
                        Ending::TooManyMisses => "stopped after 3 missed deadlines".to_owned(),
                        Ending::LogoutFailed(why) => {
                            format!("stopped: {why} after {} revocations", summary.attempted)
                        }
                    };
                    endings.push(format!("- {}: {text}", mode.label()));
                }
            }
        }
        for line in endings {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out);
    }

    if settings.memory {
        render_memory(&mut out, settings, runs);
    }
    if settings.issuance {
        render_issuance(&mut out, settings, &results.issuance);
    }

    // Errors, store-load details and notes: nothing hidden.
    let mut details = Vec::new();
    for &mode in &settings.modes {
        for &transport in &settings.transports {
            let Some(s) = transport_summary(mode, transport) else {
                continue;
            };
            let label = format!("{}, {}", mode.label(), transport.label());
            if !s.errors.is_empty() {
                details.push(format!(
                    "- {label}: {} errors of {} requests: {}",
                    s.errors.values().sum::<u64>(),
                    s.requests,
                    fmt_errors(&s.errors)
                ));
            }
            if let Some(commands) = s.redis_commands {
                details.push(format!(
                    "- {label}: {commands:.2} Redis commands per request in all (every client of \
                     this Redis server counts)"
                ));
            }
            if s.fallback_checks > 0.0 {
                details.push(format!(
                    "- {label}: {} requests checked through the stateful fallback (revocation \
                     feed stale)",
                    fmt_rate(s.fallback_checks)
                ));
            }
        }
        for run in by_mode(mode) {
            for note in &run.notes {
                details.push(format!("- {}: {note}", mode.label()));
            }
        }
    }
    for run in &results.issuance {
        for note in &run.notes {
            details.push(format!("- issuance: {note}"));
        }
    }
    if !details.is_empty() {
        let _ = writeln!(out, "Details:\n");
        for line in details {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out);
    }

    render_targets(&mut out, settings, results, &transport_summary);
    out
}

/// The services whose memory is reported, in report order.
const SERVICES: [&str; 3] = ["gateway", "orders-service", "auth-service"];

/// The target memory figures are stated for.
const MEMORY_TARGET_CONNECTIONS: usize = 256;

/// Medians over repeats of one mode's memory, in bytes, per service.
#[derive(Debug, Clone, Default, PartialEq)]
struct MemorySummary {
    idle: BTreeMap<String, u64>,
    /// The highest peak over the transports of a run, median over runs.
    peak: BTreeMap<String, u64>,
    /// Whether a peak is one since start (its reset was refused).
    since_start: bool,
}

#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
fn summarize_memory(runs: &[&ModeRun]) -> MemorySummary {
    let median_bytes =
        |values: Vec<u64>| median(values.into_iter().map(|b| b as f64)).map(|b| b.round() as u64);
    let mut summary = MemorySummary::default();
    for name in SERVICES {
        let idle: Vec<u64> = runs
            .iter()
            .filter_map(|r| r.idle_memory.get(name).copied())
            .collect();
        if let Some(idle) = median_bytes(idle) {
            summary.idle.insert(name.to_owned(), idle);
        }
        let peaks: Vec<u64> = runs
            .iter()
            .filter_map(|r| {
                r.throughput
                    .values()
                    .filter_map(|t| t.memory.as_ref()?.peaks.get(name).copied())
                    .max()
            })
            .collect();
        if let Some(peak) = median_bytes(peaks) {
            summary.peak.insert(name.to_owned(), peak);
        }
    }
    summary.since_start = runs
        .iter()
        .flat_map(|r| r.throughput.values())
        .any(|t| t.memory.as_ref().is_some_and(|m| !m.reset));
    summary
}

fn memory_by_mode(settings: &Settings, runs: &[ModeRun]) -> Vec<(Mode, MemorySummary)> {
    settings
        .modes
        .iter()
        .filter_map(|&mode| {
            let selected: Vec<&ModeRun> = runs.iter().filter(|r| r.mode == mode).collect();
            let summary = summarize_memory(&selected);
            (!summary.idle.is_empty() || !summary.peak.is_empty()).then_some((mode, summary))
        })
        .collect()
}

fn render_memory(out: &mut String, settings: &Settings, runs: &[ModeRun]) {
    let rows = memory_by_mode(settings, runs);
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "Resident memory (RSS; MB = 10^6 bytes) of each service: idle after start, seeding and \
         log-ins, before any load; and the peak during the throughput load at {} connections \
         (`VmHWM` of `/proc/<pid>/status`, reset before each load; highest of the transports):\n",
        settings.connections
    );
    let header: String = SERVICES
        .iter()
        .map(|s| format!(" {s} idle | {s} peak |"))
        .collect();
    let _ = writeln!(out, "| mode |{header}");
    let _ = writeln!(out, "| --- |{}", " ---: |".repeat(2 * SERVICES.len()));
    let mut since_start = false;
    for (mode, summary) in &rows {
        since_start |= summary.since_start;
        let mark = if summary.since_start { " *" } else { "" };
        let cells: String = SERVICES
            .iter()
            .map(|&name| {
                let cell =
                    |bytes: Option<&u64>| bytes.map_or_else(|| "–".to_owned(), |b| fmt_mb(*b));
                format!(
                    " {} | {}{mark} |",
                    cell(summary.idle.get(name)),
                    cell(summary.peak.get(name))
                )
            })
            .collect();
        let _ = writeln!(out, "| {} |{cells}", mode.label());
    }
    let _ = writeln!(out);
    if since_start {
        let _ = writeln!(
            out,
            "\\* The kernel refused resetting the peak (`/proc/<pid>/clear_refs`): peak since the \
             service started.\n"
        );
    }
}

/// Medians over repeats of one grant.
#[derive(Debug, Clone, Default)]
struct GrantSummary {
    tokens_per_second: f64,
    range: (f64, f64),
    runs: usize,
    p50: Option<Duration>,
    p99: Option<Duration>,
    requests: u64,
    errors: BTreeMap<String, u64>,
    /// Tokens per CPU-second of auth-service.
    per_cpu_second: Option<f64>,
}

fn summarize_grant(runs: &[IssuanceRun], grant: Grant) -> Option<GrantSummary> {
    let selected: Vec<_> = runs.iter().filter_map(|r| r.grants.get(&grant)).collect();
    if selected.is_empty() {
        return None;
    }
    let mut errors = BTreeMap::new();
    for run in &selected {
        for (kind, n) in &run.load.errors {
            *errors.entry(kind.clone()).or_default() += n;
        }
    }
    Some(GrantSummary {
        tokens_per_second: median(selected.iter().map(|r| r.tokens_per_second())).unwrap_or(0.0),
        range: selected
            .iter()
            .map(|r| r.tokens_per_second())
            .fold((f64::INFINITY, 0.0), |(lo, hi), x| (lo.min(x), hi.max(x))),
        runs: selected.len(),
        p50: median_duration(
            selected
                .iter()
                .filter_map(|r| r.load.latencies.quantile(0.5)),
        ),
        p99: median_duration(
            selected
                .iter()
                .filter_map(|r| r.load.latencies.quantile(0.99)),
        ),
        requests: selected.iter().map(|r| r.load.requests).sum(),
        errors,
        per_cpu_second: median(selected.iter().filter_map(|r| r.tokens_per_cpu_second())),
    })
}

/// Medians of `openssl speed rsa2048` (sign/s, verify/s) over the repeats, or why not measured.
fn summarize_openssl(runs: &[IssuanceRun]) -> Result<(f64, f64), String> {
    let measured: Vec<_> = runs
        .iter()
        .filter_map(|r| r.openssl.as_ref().ok())
        .collect();
    match (
        median(measured.iter().map(|s| s.sign_per_sec)),
        median(measured.iter().map(|s| s.verify_per_sec)),
    ) {
        (Some(sign), Some(verify)) => Ok((sign, verify)),
        _ => Err(runs
            .iter()
            .find_map(|r| r.openssl.as_ref().err().cloned())
            .unwrap_or_else(|| "not run".to_owned())),
    }
}

fn render_issuance(out: &mut String, settings: &Settings, runs: &[IssuanceRun]) {
    if runs.is_empty() {
        return;
    }
    let openssl = summarize_openssl(runs);
    let _ = writeln!(
        out,
        "Token issuance: `POST /oauth/token` straight at auth-service, {} connections (one \
         request in flight each), {} warm-up + {} measured per grant; the issuer's CPU from \
         `/proc`; against `openssl speed -seconds {} rsa2048` (one core) in the same run:\n",
        settings.issuance_connections,
        humantime::format_duration(settings.warmup),
        humantime::format_duration(settings.duration),
        settings.openssl_seconds.as_secs(),
    );
    let _ = writeln!(
        out,
        "| grant | tokens/s | p50 | p99 | errors | auth-service CPU per token | tokens per auth-service CPU-second | that / openssl sign/s |"
    );
    let _ = writeln!(
        out,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for grant in Grant::ALL {
        let Some(g) = summarize_grant(runs, grant) else {
            continue;
        };
        let rate = if g.runs > 1 {
            format!(
                "{} ({}–{})",
                fmt_rate(g.tokens_per_second),
                fmt_rate(g.range.0),
                fmt_rate(g.range.1)
            )
        } else {
            fmt_rate(g.tokens_per_second)
        };
        let cpu_per_token = g.per_cpu_second.map_or_else(
            || "–".to_owned(),
            |r| fmt_duration(Duration::from_secs_f64(1.0 / r)),
        );
        let per_core = g.per_cpu_second.map_or_else(|| "–".to_owned(), fmt_rate);
        let ratio = match (g.per_cpu_second, &openssl) {
            (Some(rate), Ok((sign, _))) if *sign > 0.0 => fmt_plain_ratio(rate / sign),
            _ => "–".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {rate} | {} | {} | {} | {cpu_per_token} | {per_core} | {ratio} |",
            grant.label(),
            fmt_opt_duration(g.p50),
            fmt_opt_duration(g.p99),
            g.errors.values().sum::<u64>(),
        );
    }
    let _ = writeln!(out);
    match &openssl {
        Ok((sign, verify)) => {
            let _ = writeln!(
                out,
                "- `openssl speed rsa2048`, one core: {} sign/s, {} verify/s",
                fmt_rate(*sign),
                fmt_rate(*verify)
            );
        }
        Err(why) => {
            let _ = writeln!(out, "- `openssl speed rsa2048`: not measured ({why})");
        }
    }
    for grant in Grant::ALL {
        if let Some(g) = summarize_grant(runs, grant)
            && !g.errors.is_empty()
        {
            let _ = writeln!(
                out,
                "- {}: {} errors of {} requests: {}",
                grant.label(),
                g.errors.values().sum::<u64>(),
                g.requests,
                fmt_errors(&g.errors)
            );
        }
    }
    let _ = writeln!(out);
}

/// One line of the targets table.
struct TargetRow {
    what: String,
    /// The measured value and how it was formed, or why it is missing.
    measured: Result<(f64, String), String>,
    goal: Goal,
    goal_text: String,
    /// Said after the verdict (a connection count differing from the target's).
    remark: Option<String>,
}

/// The verdict on every target of issue 7 this run measured, and the ratios without a target.
fn render_targets(
    out: &mut String,
    settings: &Settings,
    results: &Results,
    transport_summary: &dyn Fn(Mode, Transport) -> Option<TransportSummary>,
) {
    let mut rows: Vec<TargetRow> = Vec::new();
    let mut reference: Vec<String> = Vec::new();
    let why_missing = |mode: Mode| {
        if results.skipped.contains_key(&mode) {
            format!("not measured: mode {} skipped (see above)", mode.label())
        } else if settings.modes.contains(&mode) {
            format!("not measured: mode {} has no result", mode.label())
        } else {
            format!("not measured: add mode {} (`--modes`)", mode.label())
        }
    };
    let ratio = |mode: Mode, base: Mode, transport: Transport| -> Result<(f64, String), String> {
        let this = transport_summary(mode, transport).ok_or_else(|| why_missing(mode))?;
        let base_summary = transport_summary(base, transport).ok_or_else(|| why_missing(base))?;
        if base_summary.rps <= 0.0 {
            return Err(format!("not measured: no {} throughput", base.label()));
        }
        Ok((
            this.rps / base_summary.rps,
            format!(
                "{} ({} / {} req/s)",
                fmt_plain_ratio(this.rps / base_summary.rps),
                fmt_rate(this.rps),
                fmt_rate(base_summary.rps)
            ),
        ))
    };

    if settings.throughput {
        let http = Transport::Http;
        if settings.transports.contains(&http) {
            rows.push(TargetRow {
                what:
                    "authenticated (`stateless`, verified-token cache) / auth off, HTTP → gateway"
                        .to_owned(),
                measured: ratio(Mode::Stateless, Mode::Off, http),
                goal: Goal::AtLeast(0.80),
                goal_text: "≥ 0.80".to_owned(),
                remark: None,
            });
        }
        for &transport in &settings.transports {
            rows.push(TargetRow {
                what: format!("hybrid / stateless, {}", transport.label()),
                measured: ratio(Mode::Hybrid, Mode::Stateless, transport),
                goal: Goal::AtLeast(0.90),
                goal_text: "≥ 0.90 (within 10%)".to_owned(),
                remark: None,
            });
        }
        for &transport in &settings.transports {
            let pairs = [
                (
                    Mode::Stateless,
                    Mode::StatelessNocache,
                    "with / without the verified-token cache (stateless)",
                ),
                (
                    Mode::StatelessNocache,
                    Mode::Off,
                    "stateless without the cache / auth off",
                ),
            ];
            for (mode, base, what) in pairs {
                if transport == Transport::Http && base == Mode::Off && mode == Mode::Stateless {
                    continue;
                }
                if let Ok((_, text)) = ratio(mode, base, transport) {
                    reference.push(format!("- {what}, {}: {text}", transport.label()));
                }
            }
            if transport == Transport::Grpc
                && let Ok((_, text)) = ratio(Mode::Stateless, Mode::Off, transport)
            {
                reference.push(format!(
                    "- authenticated (`stateless`, cache) / auth off, {}: {text}",
                    transport.label()
                ));
            }
        }
    }

    if settings.memory {
        let by_mode = memory_by_mode(settings, &results.runs);
        let worst = |name: &str, pick: fn(&MemorySummary) -> &BTreeMap<String, u64>| {
            by_mode
                .iter()
                .filter_map(|(mode, summary)| Some((*mode, *pick(summary).get(name)?)))
                .max_by_key(|(_, bytes)| *bytes)
        };
        let mb = |bytes: f64| format!("{:.0} MB", bytes / MB);
        #[allow(clippy::cast_precision_loss)]
        let measured = |found: Option<(Mode, u64)>| {
            found
                .map(|(mode, bytes)| {
                    (
                        bytes as f64,
                        format!("{} ({})", fmt_mb(bytes), mode.label()),
                    )
                })
                .ok_or_else(|| "not measured".to_owned())
        };
        for name in SERVICES {
            let goal = Goal::Below(30.0 * MB);
            rows.push(TargetRow {
                what: format!("memory idle, {name} (highest mode)"),
                measured: measured(worst(name, |s| &s.idle)),
                goal,
                goal_text: goal.describe(mb),
                remark: None,
            });
        }
        for name in SERVICES {
            let goal = Goal::Below(150.0 * MB);
            rows.push(TargetRow {
                what: format!(
                    "memory peak under load at {} connections, {name} (highest mode)",
                    settings.connections
                ),
                measured: measured(worst(name, |s| &s.peak)),
                goal,
                goal_text: format!(
                    "{} at {MEMORY_TARGET_CONNECTIONS} connections",
                    goal.describe(mb)
                ),
                remark: (settings.connections != MEMORY_TARGET_CONNECTIONS).then(|| {
                    format!(
                        "measured at {} connections, the target is for \
                         {MEMORY_TARGET_CONNECTIONS}: rerun with `--connections \
                         {MEMORY_TARGET_CONNECTIONS}`",
                        settings.connections
                    )
                }),
            });
        }
    }

    if settings.issuance && !results.issuance.is_empty() {
        let openssl = summarize_openssl(&results.issuance);
        for grant in Grant::ALL {
            let per_cpu = summarize_grant(&results.issuance, grant).and_then(|g| g.per_cpu_second);
            let measured = match (per_cpu, &openssl) {
                (Some(rate), Ok((sign, _))) if *sign > 0.0 => Ok((
                    rate / sign,
                    format!(
                        "{} ({} tokens per CPU-second / {} signs per second)",
                        fmt_plain_ratio(rate / sign),
                        fmt_rate(rate),
                        fmt_rate(*sign)
                    ),
                )),
                (_, Err(why)) => Err(format!("not measured: openssl: {why}")),
                _ => Err("not measured: no tokens or no CPU figure".to_owned()),
            };
            rows.push(TargetRow {
                what: format!(
                    "issuance `{}` per core / `openssl speed rsa2048` sign per core",
                    grant.label()
                ),
                measured,
                goal: Goal::AtLeast(0.80),
                goal_text: "≥ 0.80".to_owned(),
                remark: None,
            });
        }
    }

    if rows.is_empty() {
        return;
    }
    let medians = if settings.repeat > 1 {
        format!(", from the medians of {} runs", settings.repeat)
    } else {
        String::new()
    };
    let _ = writeln!(out, "### Targets\n");
    let _ = writeln!(out, "Measured side by side in this run{medians}.\n");
    let _ = writeln!(out, "| target | measured | goal | verdict |");
    let _ = writeln!(out, "| --- | --- | --- | --- |");
    for row in rows {
        let (measured, verdict) = match &row.measured {
            Ok((value, text)) => (text.clone(), row.goal.judge(*value).describe()),
            Err(why) => (why.clone(), "–".to_owned()),
        };
        let remark = row.remark.map(|r| format!("; {r}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "| {} | {measured} | {} | {verdict}{remark} |",
            row.what, row.goal_text
        );
    }
    let _ = writeln!(out);
    if !reference.is_empty() {
        let _ = writeln!(out, "Without a target, for reference:\n");
        for line in reference {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Args, Settings};
    use crate::stats::Latencies;
    use crate::store::LookupCount;
    use clap::Parser as _;

    #[test]
    fn durations_rates_and_ratios() {
        assert_eq!(fmt_duration(Duration::from_micros(850)), "850 µs");
        assert_eq!(fmt_duration(Duration::from_micros(1240)), "1.24 ms");
        assert_eq!(fmt_duration(Duration::from_micros(12_460)), "12.5 ms");
        assert_eq!(fmt_duration(Duration::from_millis(1200)), "1.20 s");
        assert_eq!(fmt_rate(0.0), "0");
        assert_eq!(fmt_rate(999.4), "999");
        assert_eq!(fmt_rate(12_345.6), "12,346");
        assert_eq!(fmt_rate(1_234_567.0), "1,234,567");
        assert_eq!(fmt_ratio(0.93), "0.93 (−7.0%)");
        assert_eq!(fmt_ratio(1.0), "1.00 (+0.0%)");
    }

    fn load(rps: u64, ms: &[u64], errors: &[(&str, u64)]) -> LoadResult {
        let mut latencies = Latencies::default();
        for &m in ms {
            latencies.record(Duration::from_millis(m));
        }
        LoadResult {
            requests: rps,
            errors: errors.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect(),
            latencies,
            window: Duration::from_secs(1),
        }
    }

    fn store(calls: f64, requests: u64) -> StoreLoad {
        StoreLoad {
            requests,
            issuer_lookups: LookupCount {
                calls,
                source: "auth_verify_total".into(),
                exact: false,
            },
            redis_exists: None,
            redis_commands: None,
            fallback_checks: 0.0,
        }
    }

    fn delays(ms: &[u64], missed: u32) -> VerifierDelays {
        let mut v = VerifierDelays::default();
        for &m in ms {
            v.delays.record(Duration::from_millis(m));
            v.refused += 1;
        }
        v.missed = missed;
        v
    }

    #[test]
    fn the_table_shows_medians_errors_revocations_and_ratios() {
        let settings = Settings::resolve(
            Args::try_parse_from([
                "loadgen",
                "--modes",
                "stateless,stateful",
                "--repeat",
                "3",
                "--redis-url",
                "",
            ])
            .unwrap(),
        )
        .unwrap();
        let mut runs = Vec::new();
        for (i, rps) in [1000_u64, 1200, 1100].into_iter().enumerate() {
            let mut stateless = ModeRun::new(Mode::Stateless);
            stateless.throughput.insert(
                Transport::Http,
                TransportRun {
                    load: load(rps, &[1, 1, 2], &[]),
                    store: Some(store(0.0, rps)),
                    cpu: Some(CpuUsage {
                        window: Duration::from_secs(1),
                        busy: 1.0,
                        processes: vec![("gateway".into(), 0.5), ("loadgen".into(), 0.1)],
                    }),
                    memory: None,
                },
            );
            stateless.revocation = Some(RevocationResult {
                attempted: 1,
                gateway: delays(&[], 1),
                orders: delays(&[], 1),
                ending: Ending::NeverRefused,
            });
            runs.push(stateless);
            let mut stateful = ModeRun::new(Mode::Stateful);
            let errors: &[(&str, u64)] = if i == 0 { &[("HTTP 503", 2)] } else { &[] };
            stateful.throughput.insert(
                Transport::Http,
                TransportRun {
                    load: load(rps / 2, &[3, 3, 4], errors),
                    store: Some(store(2.0 * (rps / 2) as f64, rps / 2)),
                    cpu: Some(CpuUsage {
                        window: Duration::from_secs(1),
                        busy: 2.0,
                        processes: vec![("gateway".into(), 1.0), ("loadgen".into(), 0.1)],
                    }),
                    memory: None,
                },
            );
            stateful.revocation = Some(RevocationResult {
                attempted: 2,
                gateway: delays(&[1, 2], 0),
                orders: delays(&[1, 1], 0),
                ending: Ending::Completed,
            });
            runs.push(stateful);
        }
        let context = Context {
            command: "target/release/loadgen --repeat 3".into(),
            machine: Machine {
                cpus: 2,
                cpu_model: "Test CPU".into(),
                memory: None,
                kernel: None,
            },
            bin_dir: "target/release".into(),
            started: "2025-01-01T00:00:00Z".into(),
        };
        let results = Results {
            runs,
            ..Results::default()
        };
        let text = render(&context, &settings, &results);
        assert!(!text.contains("failed"), "{text}");
        let failed = render(
            &context,
            &settings,
            &Results {
                failures: vec!["mode hybrid failed: disk full".into()],
                ..results.clone()
            },
        );
        assert!(failed.contains("**1 run(s) failed"), "{failed}");
        assert!(failed.contains("mode hybrid failed: disk full"), "{failed}");
        assert!(text.contains("(medians of 3 runs)"), "{text}");
        assert!(
            text.contains("`target/release/loadgen --repeat 3`"),
            "{text}"
        );
        assert!(text.contains("2 CPUs (`nproc`), Test CPU"), "{text}");
        assert!(
            text.contains(
                "| stateless | HTTP → gateway | 1,100 (1,000–1,200) | 1.00 ms | 2.00 ms | 0 | never (accepted until expiry) | 0.00 † |"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "| stateful | HTTP → gateway | 550 (500–600) | 3.00 ms | 4.00 ms | 2 | 1.00 ms / 2.00 ms | 2.00 (`auth_verify_total`) † |"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "| stateless | gRPC → orders | – | – | – | – | never (accepted until expiry) | – |"
            ),
            "{text}"
        );
        assert!(
            text.contains("- stateful / stateless: HTTP → gateway 0.50 (−50.0%)"),
            "{text}"
        );
        assert!(
            text.contains("| stateful | gateway | 6 / 6 | 1.00 ms | 2.00 ms | 2.00 ms | – |"),
            "{text}"
        );
        assert!(
            text.contains("- stateful, HTTP → gateway: 2 errors of 1650 requests: HTTP 503 × 2"),
            "{text}"
        );
        assert!(
            text.contains("† No `CheckSession` series at the issuer"),
            "{text}"
        );
    }

    fn context() -> Context {
        Context {
            command: "loadgen".into(),
            machine: Machine {
                cpus: 2,
                cpu_model: "Test CPU".into(),
                memory: None,
                kernel: None,
            },
            bin_dir: "target/release".into(),
            started: "2025-01-01T00:00:00Z".into(),
        }
    }

    /// A throughput run of `rps` requests in one second, with the services' peak memory.
    fn measured(rps: u64, peaks_mb: &[(&str, u64)]) -> TransportRun {
        TransportRun {
            load: load(rps, &[1], &[]),
            store: None,
            cpu: None,
            memory: Some(LoadPeaks {
                peaks: peaks_mb
                    .iter()
                    .map(|(name, mb)| ((*name).to_owned(), mb * 1_000_000))
                    .collect(),
                reset: true,
            }),
        }
    }

    fn mode_run(mode: Mode, http: u64, grpc: u64, idle_mb: u64, peak_mb: u64) -> ModeRun {
        let mut run = ModeRun::new(mode);
        run.throughput.insert(
            Transport::Http,
            measured(
                http,
                &[("gateway", peak_mb), ("orders-service", peak_mb / 2)],
            ),
        );
        run.throughput.insert(
            Transport::Grpc,
            measured(grpc, &[("gateway", 1), ("orders-service", peak_mb)]),
        );
        run.idle_memory = [
            ("gateway".to_owned(), idle_mb * 1_000_000),
            ("orders-service".to_owned(), 11_000_000),
            ("auth-service".to_owned(), 12_000_000),
        ]
        .into_iter()
        .collect();
        run
    }

    fn grant_run(tokens: u64, auth_cpu: f64) -> crate::issuance::GrantRun {
        crate::issuance::GrantRun {
            load: load(tokens, &[2, 3], &[]),
            cpu: Some(CpuUsage {
                window: Duration::from_secs(1),
                busy: 1.5,
                processes: vec![("auth-service".into(), auth_cpu)],
            }),
        }
    }

    #[test]
    fn targets_memory_and_issuance() {
        let settings = Settings::resolve(
            Args::try_parse_from([
                "loadgen",
                "--modes",
                "off,stateless,stateless-nocache,hybrid",
                "--redis-url",
                "",
            ])
            .unwrap(),
        )
        .unwrap();
        let results = Results {
            runs: vec![
                mode_run(Mode::Off, 10_000, 20_000, 9, 40),
                mode_run(Mode::Stateless, 8_500, 17_000, 10, 42),
                mode_run(Mode::StatelessNocache, 5_000, 9_000, 10, 41),
                mode_run(Mode::Hybrid, 7_000, 16_000, 31, 160),
            ],
            issuance: vec![IssuanceRun {
                grants: [
                    (Grant::ClientCredentials, grant_run(3_000, 1.0)),
                    (Grant::RefreshToken, grant_run(1_000, 0.4)),
                ]
                .into_iter()
                .collect(),
                openssl: Ok(crate::openssl::RsaSpeed {
                    sign_per_sec: 3_200.0,
                    verify_per_sec: 60_000.0,
                }),
                notes: vec!["other processes were busy".into()],
            }],
            ..Results::default()
        };
        let text = render(&context(), &settings, &results);
        let has = |line: &str| assert!(text.contains(line), "missing {line:?} in:\n{text}");
        has("| auth off | HTTP → gateway | 10,000 |");
        has(
            "| auth off | gRPC → orders | 20,000 | 1.00 ms | 1.00 ms | 0 | – (not measured in this mode) | – |",
        );
        // Memory: idle, and the highest peak of the two transports.
        has(
            "| gateway idle | gateway peak | orders-service idle | orders-service peak | auth-service idle | auth-service peak |",
        );
        has("| hybrid | 31.0 MB | 160.0 MB | 11.0 MB | 160.0 MB | 12.0 MB | – |");
        has("peak during the throughput load at 32 connections");
        // Issuance: 3,000 tokens on 1 CPU-second against 3,200 signatures per second.
        has("| client_credentials | 3,000 | 2.00 ms | 3.00 ms | 0 | 333 µs | 3,000 | 0.94 |");
        has("| refresh_token | 1,000 | 2.00 ms | 3.00 ms | 0 | 400 µs | 2,500 | 0.78 |");
        has("- `openssl speed rsa2048`, one core: 3,200 sign/s, 60,000 verify/s");
        has("- issuance: other processes were busy");
        // The targets, each with its verdict.
        has("### Targets");
        has(
            "| authenticated (`stateless`, verified-token cache) / auth off, HTTP → gateway | 0.85 (8,500 / 10,000 req/s) | ≥ 0.80 | pass (6.2% to spare) |",
        );
        has(
            "| hybrid / stateless, HTTP → gateway | 0.82 (7,000 / 8,500 req/s) | ≥ 0.90 (within 10%) | **miss** (8.5% short) |",
        );
        has(
            "| hybrid / stateless, gRPC → orders | 0.94 (16,000 / 17,000 req/s) | ≥ 0.90 (within 10%) | pass (4.6% to spare) |",
        );
        has(
            "| memory idle, gateway (highest mode) | 31.0 MB (hybrid) | < 30 MB | **miss** (3.3% over) |",
        );
        has(
            "| memory idle, orders-service (highest mode) | 11.0 MB (hybrid) | < 30 MB | pass (63.3% to spare) |",
        );
        has(
            "| memory peak under load at 32 connections, orders-service (highest mode) | 160.0 MB (hybrid) | < 150 MB at 256 connections | **miss** (6.7% over); measured at 32 connections, the target is for 256: rerun with `--connections 256` |",
        );
        has(
            "| memory peak under load at 32 connections, auth-service (highest mode) | not measured | < 150 MB at 256 connections | –; measured at 32",
        );
        has(
            "| issuance `client_credentials` per core / `openssl speed rsa2048` sign per core | 0.94 (3,000 tokens per CPU-second / 3,200 signs per second) | ≥ 0.80 | pass (17.2% to spare) |",
        );
        has(
            "| issuance `refresh_token` per core / `openssl speed rsa2048` sign per core | 0.78 (2,500 tokens per CPU-second / 3,200 signs per second) | ≥ 0.80 | **miss** (2.3% short) |",
        );
        has(
            "- with / without the verified-token cache (stateless), HTTP → gateway: 1.70 (8,500 / 5,000 req/s)",
        );
        has("- stateless without the cache / auth off, gRPC → orders: 0.45 (9,000 / 20,000 req/s)");
        has(
            "- authenticated (`stateless`, cache) / auth off, gRPC → orders: 0.85 (17,000 / 20,000 req/s)",
        );
    }

    #[test]
    fn a_skipped_auth_off_mode_and_a_missing_openssl_are_explained() {
        let settings = Settings::resolve(
            Args::try_parse_from([
                "loadgen",
                "--modes",
                "off,stateless",
                "--connections",
                "256",
                "--redis-url",
                "",
            ])
            .unwrap(),
        )
        .unwrap();
        let results = Results {
            runs: vec![mode_run(Mode::Stateless, 8_500, 17_000, 10, 42)],
            skipped: [(Mode::Off, "built without bench-auth-off".to_owned())]
                .into_iter()
                .collect(),
            issuance: vec![IssuanceRun {
                grants: [(Grant::ClientCredentials, grant_run(3_000, 1.0))]
                    .into_iter()
                    .collect(),
                openssl: Err("cannot run `openssl speed`".into()),
                notes: vec![],
            }],
            ..Results::default()
        };
        let text = render(&context(), &settings, &results);
        let has = |line: &str| assert!(text.contains(line), "missing {line:?} in:\n{text}");
        has("**Mode auth off skipped:** built without bench-auth-off");
        has(
            "| authenticated (`stateless`, verified-token cache) / auth off, HTTP → gateway | not measured: mode auth off skipped (see above) | ≥ 0.80 | – |",
        );
        has(
            "| hybrid / stateless, HTTP → gateway | not measured: add mode hybrid (`--modes`) | ≥ 0.90 (within 10%) | – |",
        );
        has(
            "| memory peak under load at 256 connections, gateway (highest mode) | 42.0 MB (stateless) | < 150 MB at 256 connections | pass (72.0% to spare) |",
        );
        has("- `openssl speed rsa2048`: not measured (cannot run `openssl speed`)");
        has(
            "| issuance `client_credentials` per core / `openssl speed rsa2048` sign per core | not measured: openssl: cannot run `openssl speed` | ≥ 0.80 | – |",
        );
        has("| client_credentials | 3,000 | 2.00 ms | 3.00 ms | 0 | 333 µs | 3,000 | – |");
    }

    #[test]
    fn a_missing_logout_endpoint_is_reported_as_such() {
        let summary = RevocationSummary {
            attempted: 0,
            gateway: VerifierSummary::default(),
            orders: VerifierSummary::default(),
            endings: vec![Ending::LogoutFailed(
                "POST /v1/logout answered 404 Not Found".into(),
            )],
        };
        assert_eq!(
            revocation_cell(
                Mode::Hybrid,
                Some(&summary),
                Transport::Grpc,
                Duration::from_secs(5)
            ),
            "not measured (POST /v1/logout answered 404 Not Found)"
        );
    }
}
