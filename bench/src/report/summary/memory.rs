//! Resident memory of each service, idle and at its peak under load, over repeats.

use std::collections::BTreeMap;

use crate::cli::{Mode, Settings};
use crate::report::ModeRun;
use crate::stats::median;

/// The services whose memory is reported, in report order.
pub const SERVICES: [&str; 3] = ["gateway", "orders-service", "auth-service"];

/// The connection count the memory targets are stated for.
pub const MEMORY_TARGET_CONNECTIONS: usize = 256;

/// Medians over repeats of one mode's memory, in bytes, per service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemorySummary {
    pub idle: BTreeMap<String, u64>,
    /// The highest peak over the transports of a run, median over runs.
    pub peak: BTreeMap<String, u64>,
    /// Whether a peak is one since start (its reset was refused).
    pub since_start: bool,
}

/// The memory of every mode selected with a figure.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryTable {
    /// Connections of the throughput load the peaks were taken under.
    pub connections: usize,
    pub modes: Vec<(Mode, MemorySummary)>,
    /// Whether any peak is one since start.
    pub since_start: bool,
}

/// Medians over the repeats `runs` of one mode.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]
pub fn summarize_memory(runs: &[&ModeRun]) -> MemorySummary {
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

/// The memory of each mode selected that has a figure, in the order selected.
pub fn by_mode(settings: &Settings, runs: &[ModeRun]) -> Vec<(Mode, MemorySummary)> {
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

/// The memory table of `modes` ([`by_mode`]); `None` without any figure.
pub fn table(settings: &Settings, modes: Vec<(Mode, MemorySummary)>) -> Option<MemoryTable> {
    if modes.is_empty() {
        return None;
    }
    Some(MemoryTable {
        connections: settings.connections,
        since_start: modes.iter().any(|(_, summary)| summary.since_start),
        modes,
    })
}
