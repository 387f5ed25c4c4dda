//! The verdict on every target of issue 7 this run measured, and the ratios without a target.

use std::fmt::Write as _;

use crate::memory::{MB, fmt_mb};
use crate::report::summary::{
    Comparison, MEMORY_TARGET_CONNECTIONS, Measured, Missing, Reference, Remark, Target, TargetRow,
    Targets,
};
use crate::targets::fmt_plain_ratio;

use super::fmt_rate;

pub fn table(out: &mut String, targets: &Targets) {
    let medians = if targets.repeat > 1 {
        format!(", from the medians of {} runs", targets.repeat)
    } else {
        String::new()
    };
    let _ = writeln!(out, "### Targets\n");
    let _ = writeln!(out, "Measured side by side in this run{medians}.\n");
    let _ = writeln!(out, "| target | measured | goal | verdict |");
    let _ = writeln!(out, "| --- | --- | --- | --- |");
    for row in &targets.rows {
        let _ = writeln!(out, "{}", target_row(row));
    }
    let _ = writeln!(out);
    if !targets.reference.is_empty() {
        let _ = writeln!(out, "Without a target, for reference:\n");
        for reference in &targets.reference {
            let _ = writeln!(out, "{}", reference_line(reference));
        }
        let _ = writeln!(out);
    }
}

fn target_row(row: &TargetRow) -> String {
    let measured = match &row.measured {
        Ok(measured) => fmt_measured(measured),
        Err(missing) => fmt_missing(missing),
    };
    let verdict = row.verdict.map_or_else(|| "–".to_owned(), |v| v.describe());
    let remark = row
        .remark
        .map(|r| format!("; {}", fmt_remark(r)))
        .unwrap_or_default();
    format!(
        "| {} | {measured} | {} | {verdict}{remark} |",
        target_text(row.target),
        goal_text(row)
    )
}

fn target_text(target: Target) -> String {
    match target {
        Target::AuthenticatedVsOff => {
            "authenticated (`stateless`, verified-token cache) / auth off, HTTP → gateway"
                .to_owned()
        }
        Target::HybridVsStateless(transport) => {
            format!("hybrid / stateless, {}", transport.label())
        }
        Target::MemoryIdle(service) => format!("memory idle, {service} (highest mode)"),
        Target::MemoryPeak {
            service,
            connections,
        } => {
            format!("memory peak under load at {connections} connections, {service} (highest mode)")
        }
        Target::IssuancePerCore(grant) => format!(
            "issuance `{}` per core / `openssl speed rsa2048` sign per core",
            grant.label()
        ),
    }
}

/// `≥ 0.80`, `≥ 0.90 (within 10%)`, `< 30 MB`, `< 150 MB at 256 connections`.
fn goal_text(row: &TargetRow) -> String {
    let mb = |bytes: f64| format!("{:.0} MB", bytes / MB);
    match row.target {
        Target::AuthenticatedVsOff | Target::IssuancePerCore(_) => {
            row.goal.describe(fmt_plain_ratio)
        }
        Target::HybridVsStateless(_) => {
            format!("{} (within 10%)", row.goal.describe(fmt_plain_ratio))
        }
        Target::MemoryIdle(_) => row.goal.describe(mb),
        Target::MemoryPeak { .. } => format!(
            "{} at {MEMORY_TARGET_CONNECTIONS} connections",
            row.goal.describe(mb)
        ),
    }
}

/// `0.85 (8,500 / 10,000 req/s)`, `31.0 MB (hybrid)`,
/// `0.94 (3,000 tokens per CPU-second / 3,200 signs per second)`.
fn fmt_measured(measured: &Measured) -> String {
    match measured {
        Measured::Throughput(ratio) => format!(
            "{} ({} / {} req/s)",
            fmt_plain_ratio(ratio.ratio),
            fmt_rate(ratio.rps),
            fmt_rate(ratio.base_rps)
        ),
        Measured::Memory { bytes, mode } => format!("{} ({})", fmt_mb(*bytes), mode.label()),
        Measured::PerCore {
            ratio,
            tokens_per_cpu_second,
            sign_per_sec,
        } => format!(
            "{} ({} tokens per CPU-second / {} signs per second)",
            fmt_plain_ratio(*ratio),
            fmt_rate(*tokens_per_cpu_second),
            fmt_rate(*sign_per_sec)
        ),
    }
}

fn fmt_missing(missing: &Missing) -> String {
    match missing {
        Missing::Skipped(mode) => {
            format!("not measured: mode {} skipped (see above)", mode.label())
        }
        Missing::NoResult(mode) => format!("not measured: mode {} has no result", mode.label()),
        Missing::NotSelected(mode) => {
            format!("not measured: add mode {} (`--modes`)", mode.label())
        }
        Missing::NoThroughput(mode) => format!("not measured: no {} throughput", mode.label()),
        Missing::NoMemory => "not measured".to_owned(),
        Missing::Openssl(why) => format!("not measured: openssl: {why}"),
        Missing::NoCpuFigure => "not measured: no tokens or no CPU figure".to_owned(),
    }
}

fn fmt_remark(remark: Remark) -> String {
    match remark {
        Remark::OtherConnections(connections) => format!(
            "measured at {connections} connections, the target is for \
             {MEMORY_TARGET_CONNECTIONS}: rerun with `--connections {MEMORY_TARGET_CONNECTIONS}`"
        ),
    }
}

/// `- with / without the verified-token cache (stateless), HTTP → gateway: 1.70 (…)`.
fn reference_line(reference: &Reference) -> String {
    let what = match reference.comparison {
        Comparison::CacheVsNoCache => "with / without the verified-token cache (stateless)",
        Comparison::NoCacheVsOff => "stateless without the cache / auth off",
        Comparison::AuthenticatedVsOff => "authenticated (`stateless`, cache) / auth off",
    };
    format!(
        "- {what}, {}: {}",
        reference.transport.label(),
        fmt_measured(&Measured::Throughput(reference.ratio))
    )
}
