//! Throughput, latency, session lookups and CPU of each (mode, transport), and the ratios
//! between modes.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cli::{Mode, Settings, Transport};
use crate::cpu::CpuUsage;
use crate::report::{ModeRun, TransportRun};
use crate::stats::{median, median_duration};
use crate::store::StoreLoad;

use super::sum_by_kind;

/// Share of the CPUs (percent) processes outside the benchmark may take in a measured window
/// before the report calls the run disturbed.
const DISTURBED_PERCENT: f64 = 5.0;

/// Medians over repeats of one (mode, transport).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransportSummary {
    pub rps: f64,
    /// Lowest and highest req/s over the repeats.
    pub rps_range: (f64, f64),
    pub runs: usize,
    pub p50: Option<Duration>,
    pub p99: Option<Duration>,
    /// Requests over all repeats.
    pub requests: u64,
    /// Errors over all repeats, by kind, and in all.
    pub errors: BTreeMap<String, u64>,
    pub error_count: u64,
    /// Session lookups per request.
    pub lookups: Option<f64>,
    /// What the lookups were counted with.
    pub lookup_source: Option<LookupSource>,
    /// All Redis commands per request, when Redis is in play.
    pub redis_commands: Option<f64>,
    /// Requests checked through the stateful fallback, over all repeats.
    pub fallback_checks: f64,
    pub cpu: Option<CpuSummary>,
}

/// What session lookups were counted with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupSource {
    /// Redis `EXISTS` calls.
    RedisExists,
    /// The issuer's `CheckSession` calls, from this metric.
    CheckSession(String),
    /// A stand-in for the issuer's `CheckSession` calls: this metric.
    StandIn(String),
}

impl LookupSource {
    /// Whether the lookups themselves were counted (not a stand-in).
    pub fn exact(&self) -> bool {
        !matches!(self, LookupSource::StandIn(_))
    }
}

/// Medians over repeats of where the CPU went.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuSummary {
    /// CPU µs per request, per watched process.
    pub per_request: BTreeMap<String, f64>,
    /// CPU µs per request of the services, Redis and loadgen together.
    pub together: f64,
    /// CPU µs per request of every other process.
    pub others_per_request: f64,
    /// Share of all CPUs busy, and busy outside the watched processes, in percent.
    pub busy_percent: f64,
    pub others_percent: f64,
}

/// The summaries of every (mode, transport) measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Throughputs(BTreeMap<(Mode, Transport), TransportSummary>);

impl Throughputs {
    /// The summary of `mode` on `transport`; `None` when it has no throughput run.
    pub fn get(&self, mode: Mode, transport: Transport) -> Option<&TransportSummary> {
        self.0.get(&(mode, transport))
    }
}

/// A mode's throughput relative to `stateless`, on each transport both measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ModeRatios {
    pub mode: Mode,
    pub transports: Vec<TransportRatio>,
}

/// A mode's throughput relative to `stateless` on one transport.
#[derive(Debug, Clone, PartialEq)]
pub struct TransportRatio {
    pub transport: Transport,
    /// req/s of the mode / req/s of `stateless`.
    pub throughput: f64,
    /// From the CPU per request, when both have CPU figures.
    pub cpu: Option<CpuRatio>,
}

/// CPU per request of the services, Redis and loadgen together, relative to `stateless`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuRatio {
    /// CPU per request of the mode / that of `stateless`.
    pub per_request: f64,
    /// Throughput at equal CPU: the inverse.
    pub equal_cpu_throughput: f64,
}

/// The throughput of a mode relative to a base mode's on the same transport.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThroughputRatio {
    /// `rps` / `base_rps`.
    pub ratio: f64,
    pub rps: f64,
    pub base_rps: f64,
}

/// Where the CPU went, per (mode, transport).
#[derive(Debug, Clone, PartialEq)]
pub struct CpuTable {
    /// CPUs of the machine, which everything shares.
    pub cpus: usize,
    pub rows: Vec<CpuRow>,
    /// The highest share of the CPUs (percent) other processes took in a measured window, when
    /// above [`DISTURBED_PERCENT`].
    pub disturbed: Option<f64>,
}

/// The CPU of one (mode, transport).
#[derive(Debug, Clone, PartialEq)]
pub struct CpuRow {
    pub mode: Mode,
    pub transport: Transport,
    pub cpu: CpuSummary,
}

/// Summarizes the runs of each (mode, transport), in the order of `runs`.
pub fn by_mode_and_transport(runs: &[ModeRun], cpus: usize) -> Throughputs {
    let mut selected: BTreeMap<(Mode, Transport), Vec<&TransportRun>> = BTreeMap::new();
    for run in runs {
        for (&transport, measured) in &run.throughput {
            selected
                .entry((run.mode, transport))
                .or_default()
                .push(measured);
        }
    }
    Throughputs(
        selected
            .into_iter()
            .map(|(key, runs)| (key, summarize_transport(&runs, cpus)))
            .collect(),
    )
}

/// Medians over the repeats of one (mode, transport); errors, requests and fallback checks
/// summed.
pub fn summarize_transport(runs: &[&TransportRun], cpus: usize) -> TransportSummary {
    let errors = sum_by_kind(runs.iter().map(|r| &r.load.errors));
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
        error_count: errors.values().sum(),
        errors,
        lookups: median(stores.iter().filter_map(|s| s.per_request())),
        lookup_source: stores.first().map(|s| lookup_source(s)),
        redis_commands,
        fallback_checks: stores.iter().map(|s| s.fallback_checks).sum(),
        cpu: summarize_cpu(runs, cpus),
    }
}

fn lookup_source(store: &StoreLoad) -> LookupSource {
    let source = &store.issuer_lookups.source;
    if store.redis_exists.is_some() {
        LookupSource::RedisExists
    } else if store.issuer_lookups.exact {
        LookupSource::CheckSession(source.clone())
    } else {
        LookupSource::StandIn(source.clone())
    }
}

/// Medians over the repeats with a CPU figure and requests; `None` without any.
#[allow(clippy::cast_precision_loss)]
pub fn summarize_cpu(runs: &[&TransportRun], cpus: usize) -> Option<CpuSummary> {
    let usable: Vec<(&CpuUsage, f64)> = runs
        .iter()
        .filter_map(|r| Some((r.cpu.as_ref()?, r.load.requests as f64)))
        .filter(|(cpu, requests)| *requests > 0.0 && !cpu.window.is_zero())
        .collect();
    if usable.is_empty() {
        return None;
    }
    let capacity = |cpu: &CpuUsage| cpu.window.as_secs_f64() * cpus.max(1) as f64;
    let per_request = per_process(&usable);
    Some(CpuSummary {
        together: per_request.values().sum(),
        per_request,
        others_per_request: median(usable.iter().map(|(c, r)| c.others() * 1e6 / r)).unwrap_or(0.0),
        busy_percent: median(usable.iter().map(|(c, _)| c.busy / capacity(c) * 100.0))
            .unwrap_or(0.0),
        others_percent: median(usable.iter().map(|(c, _)| c.others() / capacity(c) * 100.0))
            .unwrap_or(0.0),
    })
}

/// CPU µs per request of each watched process (median), from (CPU, requests) of each repeat.
fn per_process(usable: &[(&CpuUsage, f64)]) -> BTreeMap<String, f64> {
    let mut names: Vec<&str> = usable
        .iter()
        .flat_map(|(cpu, _)| cpu.processes.iter().map(|(n, _)| n.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let value = median(usable.iter().filter_map(|(cpu, requests)| {
                let (_, seconds) = cpu.processes.iter().find(|(n, _)| n == name)?;
                Some(seconds * 1e6 / requests)
            }))?;
            Some((name.to_owned(), value))
        })
        .collect()
}

/// The throughput of `mode` relative to `base` on `transport`; `None` without both or without
/// any throughput of `base`.
pub fn ratio(
    throughputs: &Throughputs,
    mode: Mode,
    base: Mode,
    transport: Transport,
) -> Option<ThroughputRatio> {
    let this = throughputs.get(mode, transport)?;
    let base = throughputs.get(base, transport)?;
    if base.rps <= 0.0 {
        return None;
    }
    Some(ThroughputRatio {
        ratio: this.rps / base.rps,
        rps: this.rps,
        base_rps: base.rps,
    })
}

/// Every other mode's throughput relative to `stateless`, when both ran the throughput load.
pub fn ratios(settings: &Settings, throughputs: &Throughputs) -> Vec<ModeRatios> {
    if !settings.throughput || !settings.modes.contains(&Mode::Stateless) {
        return Vec::new();
    }
    let against_stateless = |mode: Mode, transport: Transport| {
        let throughput = ratio(throughputs, mode, Mode::Stateless, transport)?;
        let cpu = match (
            &throughputs.get(Mode::Stateless, transport)?.cpu,
            &throughputs.get(mode, transport)?.cpu,
        ) {
            (Some(base), Some(this)) if base.together > 0.0 => Some(CpuRatio {
                per_request: this.together / base.together,
                equal_cpu_throughput: base.together / this.together,
            }),
            _ => None,
        };
        Some(TransportRatio {
            transport,
            throughput: throughput.ratio,
            cpu,
        })
    };
    let modes = settings.modes.iter().filter(|m| **m != Mode::Stateless);
    modes
        .map(|&mode| ModeRatios {
            mode,
            transports: (settings.transports.iter())
                .filter_map(|&t| against_stateless(mode, t))
                .collect(),
        })
        .filter(|ratios| !ratios.transports.is_empty())
        .collect()
}

/// The CPU of every (mode, transport) measured with it; `None` without any.
pub fn cpu_table(settings: &Settings, throughputs: &Throughputs, cpus: usize) -> Option<CpuTable> {
    let mut rows = Vec::new();
    for &mode in &settings.modes {
        for &transport in &settings.transports {
            if let Some(cpu) = throughputs.get(mode, transport).and_then(|s| s.cpu.clone()) {
                rows.push(CpuRow {
                    mode,
                    transport,
                    cpu,
                });
            }
        }
    }
    if rows.is_empty() {
        return None;
    }
    let worst_others = rows
        .iter()
        .fold(0.0_f64, |worst, row| worst.max(row.cpu.others_percent));
    Some(CpuTable {
        cpus,
        rows,
        disturbed: (worst_others > DISTURBED_PERCENT).then_some(worst_others),
    })
}
