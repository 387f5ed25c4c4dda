//! Computing the report: every number it shows, reduced from the measurements to plain data
//! (medians over repeats, ratios, verdicts). Nothing here formats text; `render` does.

mod issuance;
mod memory;
mod revocation;
mod targets;
mod throughput;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cli::{Mode, RouteLevel, Settings, Transport};
use crate::machine::Machine;

use super::{Context, Results};

pub use issuance::{GrantSummary, IssuanceSummary};
pub use memory::{MEMORY_TARGET_CONNECTIONS, MemoryTable, SERVICES};
pub use revocation::{
    RevocationOutcome, RevocationSummary, RevocationTable, VerifierSummary, revocation_outcome,
};
pub use targets::{Comparison, Measured, Missing, Reference, Remark, Target, TargetRow, Targets};
pub use throughput::{CpuTable, LookupSource, ModeRatios, TransportRatio, TransportSummary};

/// Everything the report shows, computed; each part `None` (or empty) when the report leaves
/// it out.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub header: Header,
    /// Why a mode or the issuance scenario failed, one per failure.
    pub failures: Vec<String>,
    /// Modes these binaries cannot run, and why.
    pub skipped: Vec<(Mode, String)>,
    /// The main table, with throughput or revocation.
    pub modes: Option<ModeTable>,
    /// Each mode's throughput relative to `stateless`.
    pub ratios: Vec<ModeRatios>,
    /// Where the CPU went, when it was measured.
    pub cpu: Option<CpuTable>,
    /// Revocation delays, with the revocation scenario.
    pub revocation: Option<RevocationTable>,
    /// Resident memory, with the memory scenario and a figure.
    pub memory: Option<MemoryTable>,
    /// Token issuance, with the issuance scenario and a run of it.
    pub issuance: Option<IssuanceSummary>,
    /// Errors, store-load details and notes, in report order.
    pub details: Vec<Detail>,
    /// The verdict on each target measured.
    pub targets: Option<Targets>,
}

/// How the report was made: the command, the machine and the settings it states.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Runs of everything; more than one makes every figure a median.
    pub repeat: usize,
    pub command: String,
    pub machine: Machine,
    pub started: String,
    /// The throughput load, when it ran.
    pub load: Option<LoadSettings>,
    /// The revocation scenario, when it ran.
    pub revocations: Option<RevocationSettings>,
    /// Extra environment of the verifiers.
    pub verifier_env: Vec<(String, String)>,
    /// `--route-level`: the level of the throughput route at both verifiers.
    pub route_level: Option<&'static str>,
    /// `RUST_LOG` of the services.
    pub service_log: String,
    pub bin_dir: String,
}

/// The throughput load as the settings gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadSettings {
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub sessions: usize,
}

/// The revocation scenario as the settings gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevocationSettings {
    /// Revocations attempted per mode, at most.
    pub per_mode: u32,
    pub deadline: Duration,
}

/// The main table: one row per mode and transport.
#[derive(Debug, Clone, PartialEq)]
pub struct ModeTable {
    pub modes: Vec<ModeRows>,
    /// Whether a lookups figure is counted with a stand-in for `CheckSession` (a footnote).
    pub inexact_lookups: bool,
}

/// The rows of one mode in the main table.
#[derive(Debug, Clone, PartialEq)]
pub struct ModeRows {
    pub mode: Mode,
    pub transports: Vec<TransportRow>,
}

/// One row of the main table.
#[derive(Debug, Clone, PartialEq)]
pub struct TransportRow {
    pub transport: Transport,
    /// `None` when this mode has no throughput run on this transport.
    pub throughput: Option<TransportSummary>,
    pub revocation: RevocationOutcome,
}

/// One line of the details: nothing measured is hidden.
#[derive(Debug, Clone, PartialEq)]
pub enum Detail {
    /// A (mode, transport) had errors: their count, of how many requests, and by kind.
    Errors {
        mode: Mode,
        transport: Transport,
        count: u64,
        requests: u64,
        errors: BTreeMap<String, u64>,
    },
    /// Redis commands per request, every client of the server counted (median).
    RedisCommands {
        mode: Mode,
        transport: Transport,
        per_request: f64,
    },
    /// Requests a `hybrid` verifier checked through its fallback (summed over repeats).
    FallbackChecks {
        mode: Mode,
        transport: Transport,
        checks: f64,
    },
    /// A note of a mode's run.
    Note { mode: Mode, text: String },
    /// A note of the issuance scenario.
    IssuanceNote(String),
}

/// Computes everything the report shows.
pub fn summarize(context: &Context, settings: &Settings, results: &Results) -> Summary {
    let cpus = context.machine.cpus;
    let throughputs = throughput::by_mode_and_transport(&results.runs, cpus);
    let revocations = revocation::by_mode(&results.runs);
    let memory = settings
        .memory
        .then(|| memory::by_mode(settings, &results.runs));
    let issuance = (settings.issuance && !results.issuance.is_empty())
        .then(|| issuance::summarize(settings, &results.issuance));
    let targets = targets::summarize(
        settings,
        results,
        &throughputs,
        memory.as_deref(),
        issuance.as_ref(),
    );
    Summary {
        header: header(context, settings),
        failures: results.failures.clone(),
        skipped: results
            .skipped
            .iter()
            .map(|(mode, why)| (*mode, why.clone()))
            .collect(),
        modes: mode_table(settings, &throughputs, &revocations),
        ratios: throughput::ratios(settings, &throughputs),
        cpu: throughput::cpu_table(settings, &throughputs, cpus),
        revocation: settings
            .revocation
            .then(|| revocation::table(settings, &revocations)),
        memory: memory.and_then(|rows| memory::table(settings, rows)),
        issuance,
        details: details(settings, results, &throughputs),
        targets,
    }
}

fn header(context: &Context, settings: &Settings) -> Header {
    Header {
        repeat: settings.repeat,
        command: context.command.clone(),
        machine: context.machine.clone(),
        started: context.started.clone(),
        load: settings.throughput.then_some(LoadSettings {
            connections: settings.connections,
            warmup: settings.warmup,
            duration: settings.duration,
            sessions: settings.sessions,
        }),
        revocations: settings.revocation.then_some(RevocationSettings {
            per_mode: settings.revocations,
            deadline: settings.revocation_deadline,
        }),
        verifier_env: settings.verifier_env.clone(),
        route_level: settings.route_level.map(RouteLevel::as_str),
        service_log: settings.service_log.clone(),
        bin_dir: context.bin_dir.clone(),
    }
}

/// The main table, with throughput or revocation: the transports measured (both when only
/// revocation ran, its columns being per verifier).
fn mode_table(
    settings: &Settings,
    throughputs: &throughput::Throughputs,
    revocations: &BTreeMap<Mode, RevocationSummary>,
) -> Option<ModeTable> {
    if !settings.throughput && !settings.revocation {
        return None;
    }
    let transports = if settings.throughput {
        settings.transports.clone()
    } else {
        vec![Transport::Http, Transport::Grpc]
    };
    let row = |mode: Mode, transport: Transport| TransportRow {
        transport,
        throughput: throughputs.get(mode, transport).cloned(),
        revocation: revocation_outcome(
            mode,
            revocations.get(&mode),
            transport,
            settings.revocation_deadline,
        ),
    };
    let modes: Vec<ModeRows> = settings
        .modes
        .iter()
        .map(|&mode| ModeRows {
            mode,
            transports: transports.iter().map(|&t| row(mode, t)).collect(),
        })
        .collect();
    let inexact_lookups = modes
        .iter()
        .flat_map(|m| &m.transports)
        .filter_map(|row| row.throughput.as_ref()?.lookup_source.as_ref())
        .any(|source| !source.exact());
    Some(ModeTable {
        modes,
        inexact_lookups,
    })
}

/// Errors, store-load details and notes of every mode, then the issuance notes.
fn details(
    settings: &Settings,
    results: &Results,
    throughputs: &throughput::Throughputs,
) -> Vec<Detail> {
    let mut details = Vec::new();
    for &mode in &settings.modes {
        for &transport in &settings.transports {
            if let Some(summary) = throughputs.get(mode, transport) {
                details.extend(transport_details(mode, transport, summary));
            }
        }
        let notes = results.runs.iter().filter(|r| r.mode == mode);
        details.extend(notes.flat_map(|run| {
            run.notes.iter().map(move |note| Detail::Note {
                mode,
                text: note.clone(),
            })
        }));
    }
    let notes = results.issuance.iter().flat_map(|run| &run.notes);
    details.extend(notes.map(|note| Detail::IssuanceNote(note.clone())));
    details
}

/// The details of one (mode, transport): its errors, Redis commands and fallback checks.
fn transport_details(mode: Mode, transport: Transport, s: &TransportSummary) -> Vec<Detail> {
    let mut details = Vec::new();
    if !s.errors.is_empty() {
        details.push(Detail::Errors {
            mode,
            transport,
            count: s.error_count,
            requests: s.requests,
            errors: s.errors.clone(),
        });
    }
    if let Some(per_request) = s.redis_commands {
        details.push(Detail::RedisCommands {
            mode,
            transport,
            per_request,
        });
    }
    if s.fallback_checks > 0.0 {
        details.push(Detail::FallbackChecks {
            mode,
            transport,
            checks: s.fallback_checks,
        });
    }
    details
}

/// Summed counts by kind (errors, unexpected answers) over repeats.
fn sum_by_kind<'a>(
    counts: impl IntoIterator<Item = &'a BTreeMap<String, u64>>,
) -> BTreeMap<String, u64> {
    let mut sum = BTreeMap::new();
    for counts in counts {
        for (kind, n) in counts {
            *sum.entry(kind.clone()).or_default() += n;
        }
    }
    sum
}
