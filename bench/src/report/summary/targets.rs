//! The targets of issue 7 this run measured, each with its verdict, and the ratios without a
//! target.

use std::collections::BTreeMap;

use crate::cli::{Mode, Settings, Transport};
use crate::issuance::Grant;
use crate::memory::MB;
use crate::report::Results;
use crate::targets::{Goal, Verdict};

use super::issuance::IssuanceSummary;
use super::memory::{MEMORY_TARGET_CONNECTIONS, MemorySummary, SERVICES};
use super::throughput::{ThroughputRatio, Throughputs, ratio};

/// The targets measured, and the ratios reported without a target.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    /// Runs of everything; more than one makes every figure a median.
    pub repeat: usize,
    pub rows: Vec<TargetRow>,
    pub reference: Vec<Reference>,
}

/// One target: what is measured, against which goal, and the verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetRow {
    pub target: Target,
    pub goal: Goal,
    /// The measured value, or why it is missing.
    pub measured: Result<Measured, Missing>,
    /// The goal's verdict on the measured value; `None` when it is missing.
    pub verdict: Option<Verdict>,
    /// Said after the verdict.
    pub remark: Option<Remark>,
}

/// What a target is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `stateless` (with the verified-token cache) / auth off, over HTTP.
    AuthenticatedVsOff,
    /// `hybrid` / `stateless` on a transport.
    HybridVsStateless(Transport),
    /// A service's idle memory, in the mode where it is highest.
    MemoryIdle(&'static str),
    /// A service's peak memory under a load of `connections`, in the mode where it is highest.
    MemoryPeak {
        service: &'static str,
        connections: usize,
    },
    /// A grant's tokens per auth-service CPU-second / `openssl speed` signs per second.
    IssuancePerCore(Grant),
}

/// A measured value of a target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Measured {
    /// The throughput of a mode relative to a base mode's.
    Throughput(ThroughputRatio),
    /// Bytes, and the mode they were measured in.
    Memory { bytes: u64, mode: Mode },
    /// Tokens per CPU-second relative to `openssl speed` signs per second.
    PerCore {
        ratio: f64,
        tokens_per_cpu_second: f64,
        sign_per_sec: f64,
    },
}

/// Why a target was not measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// A mode it needs was skipped (see the top of the report).
    Skipped(Mode),
    /// A mode it needs was selected but has no result.
    NoResult(Mode),
    /// A mode it needs was not selected.
    NotSelected(Mode),
    /// The base mode measured no throughput.
    NoThroughput(Mode),
    /// No memory figure.
    NoMemory,
    /// `openssl speed` was not measured, for this reason.
    Openssl(String),
    /// No tokens, or no CPU figure of auth-service.
    NoCpuFigure,
}

/// Said after a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remark {
    /// Measured at this many connections, not at [`MEMORY_TARGET_CONNECTIONS`].
    OtherConnections(usize),
}

/// A ratio reported without a target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reference {
    pub comparison: Comparison,
    pub transport: Transport,
    pub ratio: ThroughputRatio,
}

/// Which modes a reference ratio compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `stateless` / `stateless` without the cache.
    CacheVsNoCache,
    /// `stateless` without the cache / auth off.
    NoCacheVsOff,
    /// `stateless` / auth off (the target is over HTTP; this is the other transport).
    AuthenticatedVsOff,
}

/// The targets of the scenarios that ran; `None` without any. `memory` is given with the
/// memory scenario, `issuance` with an issuance result.
pub fn summarize(
    settings: &Settings,
    results: &Results,
    throughputs: &Throughputs,
    memory: Option<&[(Mode, MemorySummary)]>,
    issuance: Option<&IssuanceSummary>,
) -> Option<Targets> {
    let mut rows = Vec::new();
    let mut reference = Vec::new();
    if settings.throughput {
        rows.extend(throughput_rows(settings, results, throughputs));
        reference = references(settings, throughputs);
    }
    if let Some(memory) = memory {
        rows.extend(memory_rows(settings, memory));
    }
    if let Some(issuance) = issuance {
        rows.extend(Grant::ALL.map(|grant| issuance_row(issuance, grant)));
    }
    (!rows.is_empty()).then_some(Targets {
        repeat: settings.repeat,
        rows,
        reference,
    })
}

impl Measured {
    /// The value the goal judges.
    #[allow(clippy::cast_precision_loss)]
    fn value(self) -> f64 {
        match self {
            Measured::Throughput(throughput) => throughput.ratio,
            Measured::Memory { bytes, .. } => bytes as f64,
            Measured::PerCore { ratio, .. } => ratio,
        }
    }
}

impl TargetRow {
    fn new(target: Target, goal: Goal, measured: Result<Measured, Missing>) -> Self {
        Self {
            target,
            goal,
            verdict: measured.as_ref().ok().map(|m| goal.judge(m.value())),
            measured,
            remark: None,
        }
    }
}

/// The throughput targets: authenticated against auth off (HTTP), hybrid against stateless.
fn throughput_rows(
    settings: &Settings,
    results: &Results,
    throughputs: &Throughputs,
) -> Vec<TargetRow> {
    let why_missing = |mode: Mode| {
        if results.skipped.contains_key(&mode) {
            Missing::Skipped(mode)
        } else if settings.modes.contains(&mode) {
            Missing::NoResult(mode)
        } else {
            Missing::NotSelected(mode)
        }
    };
    let measure = |mode: Mode, base: Mode, transport: Transport| {
        throughputs
            .get(mode, transport)
            .ok_or_else(|| why_missing(mode))?;
        throughputs
            .get(base, transport)
            .ok_or_else(|| why_missing(base))?;
        ratio(throughputs, mode, base, transport)
            .map(Measured::Throughput)
            .ok_or(Missing::NoThroughput(base))
    };
    let mut rows = Vec::new();
    if settings.transports.contains(&Transport::Http) {
        rows.push(TargetRow::new(
            Target::AuthenticatedVsOff,
            Goal::AtLeast(0.80),
            measure(Mode::Stateless, Mode::Off, Transport::Http),
        ));
    }
    for &transport in &settings.transports {
        rows.push(TargetRow::new(
            Target::HybridVsStateless(transport),
            Goal::AtLeast(0.90),
            measure(Mode::Hybrid, Mode::Stateless, transport),
        ));
    }
    rows
}

/// The ratios between the stateless variants and auth off that have no target.
fn references(settings: &Settings, throughputs: &Throughputs) -> Vec<Reference> {
    let mut reference = Vec::new();
    for &transport in &settings.transports {
        let mut comparisons = vec![
            (
                Mode::Stateless,
                Mode::StatelessNocache,
                Comparison::CacheVsNoCache,
            ),
            (Mode::StatelessNocache, Mode::Off, Comparison::NoCacheVsOff),
        ];
        // Over HTTP this one is a target.
        if transport == Transport::Grpc {
            comparisons.push((Mode::Stateless, Mode::Off, Comparison::AuthenticatedVsOff));
        }
        for (mode, base, comparison) in comparisons {
            if let Some(ratio) = ratio(throughputs, mode, base, transport) {
                reference.push(Reference {
                    comparison,
                    transport,
                    ratio,
                });
            }
        }
    }
    reference
}

/// Idle and peak memory of each service, in the mode where it is highest.
fn memory_rows(settings: &Settings, by_mode: &[(Mode, MemorySummary)]) -> Vec<TargetRow> {
    let worst = |name: &str, pick: fn(&MemorySummary) -> &BTreeMap<String, u64>| {
        by_mode
            .iter()
            .filter_map(|(mode, summary)| Some((*mode, *pick(summary).get(name)?)))
            .max_by_key(|(_, bytes)| *bytes)
            .map(|(mode, bytes)| Measured::Memory { bytes, mode })
            .ok_or(Missing::NoMemory)
    };
    let idle = SERVICES.map(|service| {
        TargetRow::new(
            Target::MemoryIdle(service),
            Goal::Below(30.0 * MB),
            worst(service, |s| &s.idle),
        )
    });
    let connections = settings.connections;
    let peak = SERVICES.map(|service| TargetRow {
        remark: (connections != MEMORY_TARGET_CONNECTIONS)
            .then_some(Remark::OtherConnections(connections)),
        ..TargetRow::new(
            Target::MemoryPeak {
                service,
                connections,
            },
            Goal::Below(150.0 * MB),
            worst(service, |s| &s.peak),
        )
    });
    idle.into_iter().chain(peak).collect()
}

/// A grant's tokens per auth-service CPU-second against openssl's signs per second.
fn issuance_row(issuance: &IssuanceSummary, grant: Grant) -> TargetRow {
    let per_core = issuance
        .grants
        .iter()
        .find(|g| g.grant == grant)
        .and_then(|g| Some((g.vs_openssl?, g.per_cpu_second?)));
    let measured = match (per_core, &issuance.openssl) {
        (Some((ratio, tokens_per_cpu_second)), Ok(speed)) => Ok(Measured::PerCore {
            ratio,
            tokens_per_cpu_second,
            sign_per_sec: speed.sign_per_sec,
        }),
        (_, Err(why)) => Err(Missing::Openssl(why.clone())),
        (None, Ok(_)) => Err(Missing::NoCpuFigure),
    };
    TargetRow::new(
        Target::IssuancePerCore(grant),
        Goal::AtLeast(0.80),
        measured,
    )
}
