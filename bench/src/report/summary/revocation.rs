//! Revocation delays at each verifier, over repeats, and what the main table says of them.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cli::{Mode, Settings, Transport};
use crate::report::ModeRun;
use crate::revocation::{Ending, RevocationResult, VerifierDelays};
use crate::stats::median_duration;

use super::sum_by_kind;

/// Revocations at one verifier, over repeats.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VerifierSummary {
    /// Medians over repeats of the delay percentiles.
    pub p50: Option<Duration>,
    pub p99: Option<Duration>,
    /// The longest delay of any repeat.
    pub max: Option<Duration>,
    /// Revocations refused, and missed (still accepted at the deadline), over all repeats.
    pub refused: u32,
    pub missed: u32,
    /// Answers that were neither success nor refusal, by kind, over all repeats.
    pub unexpected: BTreeMap<String, u64>,
}

/// The revocation scenario of one mode, over repeats.
#[derive(Debug, Clone, PartialEq)]
pub struct RevocationSummary {
    /// Revocations attempted over all repeats.
    pub attempted: u32,
    pub gateway: VerifierSummary,
    pub orders: VerifierSummary,
    /// Why the repeats ended, consecutive duplicates removed.
    pub endings: Vec<Ending>,
}

/// The revocation delays of every mode selected that measured them.
#[derive(Debug, Clone, PartialEq)]
pub struct RevocationTable {
    pub modes: Vec<(Mode, RevocationSummary)>,
}

/// What the main table says about the revocations at one verifier.
#[derive(Debug, Clone, PartialEq)]
pub enum RevocationOutcome {
    /// The mode does not measure revocation (auth off, no cache).
    NotInMode,
    /// The scenario has no result for this mode.
    NotRun,
    /// Nothing refused: the logout failed, for this reason.
    LogoutFailed(String),
    /// Nothing refused, nothing missed.
    NotMeasured,
    /// Nothing refused in `stateless`: revoked tokens are accepted until they expire.
    UntilExpiry,
    /// Nothing refused within the deadline.
    NeverWithin(Duration),
    /// Refused: the delays (medians over repeats), and how many revocations were missed.
    Delays {
        p50: Option<Duration>,
        p99: Option<Duration>,
        missed: u32,
    },
}

/// Summarizes the revocations of each mode, in the order of `runs`.
pub fn by_mode(runs: &[ModeRun]) -> BTreeMap<Mode, RevocationSummary> {
    let mut selected: BTreeMap<Mode, Vec<&RevocationResult>> = BTreeMap::new();
    for run in runs {
        if let Some(revocation) = &run.revocation {
            selected.entry(run.mode).or_default().push(revocation);
        }
    }
    selected
        .into_iter()
        .filter_map(|(mode, runs)| Some((mode, summarize_revocation(&runs)?)))
        .collect()
}

/// The repeats `runs` of one mode's scenario; `None` without any.
pub fn summarize_revocation(runs: &[&RevocationResult]) -> Option<RevocationSummary> {
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

/// One verifier over the repeats: delay percentiles (medians), counts summed.
pub fn summarize_verifier(runs: &[&VerifierDelays]) -> VerifierSummary {
    VerifierSummary {
        p50: median_duration(runs.iter().filter_map(|r| r.delays.quantile(0.5))),
        p99: median_duration(runs.iter().filter_map(|r| r.delays.quantile(0.99))),
        max: runs.iter().filter_map(|r| r.delays.max()).max(),
        refused: runs.iter().map(|r| r.refused).sum(),
        missed: runs.iter().map(|r| r.missed).sum(),
        unexpected: sum_by_kind(runs.iter().map(|r| &r.unexpected)),
    }
}

/// The modes selected with a revocation result, in the order selected.
pub fn table(
    settings: &Settings,
    revocations: &BTreeMap<Mode, RevocationSummary>,
) -> RevocationTable {
    RevocationTable {
        modes: (settings.modes.iter())
            .filter_map(|mode| Some((*mode, revocations.get(mode)?.clone())))
            .collect(),
    }
}

/// What the main table says about revocations in `mode` at the verifier `transport` reaches
/// (the gateway over HTTP, orders-service over gRPC), given the scenario's `summary` and the
/// `deadline` a revocation had.
pub fn revocation_outcome(
    mode: Mode,
    summary: Option<&RevocationSummary>,
    transport: Transport,
    deadline: Duration,
) -> RevocationOutcome {
    if !mode.measures_revocation() {
        return RevocationOutcome::NotInMode;
    }
    let Some(summary) = summary else {
        return RevocationOutcome::NotRun;
    };
    let verifier = match transport {
        Transport::Http => &summary.gateway,
        Transport::Grpc => &summary.orders,
    };
    if verifier.refused > 0 {
        return RevocationOutcome::Delays {
            p50: verifier.p50,
            p99: verifier.p99,
            missed: verifier.missed,
        };
    }
    let logout_failed = summary.endings.iter().find_map(|e| match e {
        Ending::LogoutFailed(why) => Some(why.clone()),
        _ => None,
    });
    if let Some(why) = logout_failed {
        RevocationOutcome::LogoutFailed(why)
    } else if verifier.missed == 0 {
        RevocationOutcome::NotMeasured
    } else if mode == Mode::Stateless {
        RevocationOutcome::UntilExpiry
    } else {
        RevocationOutcome::NeverWithin(deadline)
    }
}
