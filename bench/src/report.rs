//! The results of a run, aggregated over repeats (medians), as Markdown.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::cli::{Mode, Settings, Transport};
use crate::cpu::CpuUsage;
use crate::load::LoadResult;
use crate::machine::Machine;
use crate::revocation::{Ending, RevocationResult, VerifierDelays};
use crate::stats::{median, median_duration};
use crate::store::StoreLoad;

/// Everything measured on one stack (one mode, one repeat).
#[derive(Debug, Clone)]
pub struct ModeRun {
    pub mode: Mode,
    pub throughput: BTreeMap<Transport, TransportRun>,
    pub revocation: Option<RevocationResult>,
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
pub fn render(
    context: &Context,
    settings: &Settings,
    runs: &[ModeRun],
    failures: &[String],
) -> String {
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
            "**{} mode run(s) failed and are missing from the figures below:**\n",
            failures.len()
        );
        for failure in failures {
            // The first line says what failed; the services' log lines follow, indented.
            let _ = writeln!(out, "```text\n{failure}\n```");
        }
        let _ = writeln!(out);
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

    let _ = writeln!(
        out,
        "| mode | transport | req/s | p50 | p99 | errors | revocation p50 / p99 (gateway, orders) | lookups/request |"
    );
    let _ = writeln!(out, "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |");
    let mut any_inexact = false;
    for &mode in &settings.modes {
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
    let _ = writeln!(out);
    if any_inexact {
        let _ = writeln!(
            out,
            "† The issuer exports no `CheckSession` counter: counted with `auth_verify_total`, the \
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
    if !details.is_empty() {
        let _ = writeln!(out, "Details:\n");
        for line in details {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(out);
    }
    out
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
        let text = render(&context, &settings, &runs, &[]);
        assert!(!text.contains("failed"), "{text}");
        let failed = render(
            &context,
            &settings,
            &runs,
            &["mode hybrid failed: disk full".into()],
        );
        assert!(failed.contains("**1 mode run(s) failed"), "{failed}");
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
            text.contains("† The issuer exports no `CheckSession` counter"),
            "{text}"
        );
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
