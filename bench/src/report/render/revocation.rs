//! Revocation delays: the main table's cell, and the table per verifier.

use std::fmt::Write as _;

use crate::report::summary::{
    RevocationOutcome, RevocationSummary, RevocationTable, VerifierSummary,
};
use crate::revocation::Ending;

use super::{fmt_errors, fmt_opt_duration};

/// The main table's revocation cell of one verifier: `1.00 ms / 2.00 ms (1 missed)`, or why
/// there is no delay.
pub fn revocation_cell(outcome: &RevocationOutcome) -> String {
    match outcome {
        RevocationOutcome::NotInMode => "– (not measured in this mode)".to_owned(),
        RevocationOutcome::NotRun => "not run".to_owned(),
        RevocationOutcome::LogoutFailed(why) => format!("not measured ({why})"),
        RevocationOutcome::NotMeasured => "not measured".to_owned(),
        RevocationOutcome::UntilExpiry => "never (accepted until expiry)".to_owned(),
        RevocationOutcome::NeverWithin(deadline) => {
            format!("never within {}", humantime::format_duration(*deadline))
        }
        RevocationOutcome::Delays { p50, p99, missed } => {
            let mut cell = format!("{} / {}", fmt_opt_duration(*p50), fmt_opt_duration(*p99));
            if *missed > 0 {
                let _ = write!(cell, " ({missed} missed)");
            }
            cell
        }
    }
}

/// Revocation details: the delays at each verifier, then why a mode stopped early.
pub fn table(out: &mut String, table: &RevocationTable) {
    let _ = writeln!(
        out,
        "Revocation delay (logout response → first refusal, including that request's latency):\n"
    );
    let _ = writeln!(
        out,
        "| mode | verifier | refused / attempted | p50 | p99 | max | other answers while polling |"
    );
    let _ = writeln!(out, "| --- | --- | ---: | ---: | ---: | ---: | --- |");
    for (mode, summary) in &table.modes {
        for (name, verifier) in [
            ("gateway", &summary.gateway),
            ("orders-service", &summary.orders),
        ] {
            let row = verifier_row(verifier, summary.attempted);
            let _ = writeln!(out, "| {} | {name} | {row} |", mode.label());
        }
    }
    let _ = writeln!(out);
    for (mode, summary) in &table.modes {
        for ending in &summary.endings {
            if let Some(text) = ending_text(ending, summary) {
                let _ = writeln!(out, "- {}: {text}", mode.label());
            }
        }
    }
    let _ = writeln!(out);
}

/// `refused / attempted | p50 | p99 | max | other answers` of one verifier.
fn verifier_row(v: &VerifierSummary, attempted: u32) -> String {
    let other = fmt_errors(&v.unexpected);
    format!(
        "{} / {attempted} | {} | {} | {} | {}",
        v.refused,
        fmt_opt_duration(v.p50),
        fmt_opt_duration(v.p99),
        fmt_opt_duration(v.max),
        if other.is_empty() { "–" } else { &other },
    )
}

/// Why a mode's scenario stopped before every revocation was attempted; `None` when it did not.
fn ending_text(ending: &Ending, summary: &RevocationSummary) -> Option<String> {
    Some(match ending {
        Ending::Completed => return None,
        Ending::NeverRefused => format!(
            "stopped after the first revocation still accepted at the deadline ({} attempted)",
            summary.attempted
        ),
        Ending::TooManyMisses => "stopped after 3 missed deadlines".to_owned(),
        Ending::LogoutFailed(why) => {
            format!("stopped: {why} after {} revocations", summary.attempted)
        }
    })
}
