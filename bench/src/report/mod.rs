//! The results of a run, aggregated over repeats (medians), as Markdown.
//!
//! Two parts, computing apart from rendering:
//!
//! - `summary` computes: it reduces what a run measured ([`Results`], with its [`Context`] and
//!   [`Settings`]) to plain data holding every number the report shows: medians over repeats of
//!   throughput and latency, ratios, CPU per request, revocation delays, memory, issuance rates,
//!   and the verdict on each target.
//! - `render` formats that data as the Markdown text, with no arithmetic beyond formatting.
//!
//! [`render()`] does both.

mod render;
mod summary;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use crate::cli::{Mode, Settings, Transport};
use crate::cpu::CpuUsage;
use crate::issuance::IssuanceRun;
use crate::load::LoadResult;
use crate::machine::Machine;
use crate::memory::LoadPeaks;
use crate::revocation::RevocationResult;
use crate::store::StoreLoad;

pub use render::{fmt_duration, fmt_rate, fmt_ratio};

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

/// The whole report.
pub fn render(context: &Context, settings: &Settings, results: &Results) -> String {
    render::report(&summary::summarize(context, settings, results))
}
