//! Rendering the report: the computed summary as Markdown. Formatting only; every figure comes
//! computed from `summary`.

mod issuance;
mod memory;
mod revocation;
mod targets;
mod throughput;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::cli::{Mode, Transport};

use super::summary::{Detail, Header, Summary};

pub use revocation::revocation_cell;

/// The whole report.
pub fn report(summary: &Summary) -> String {
    let mut out = String::new();
    header(&mut out, &summary.header);
    failures(&mut out, summary);
    if let Some(table) = &summary.modes {
        throughput::mode_table(&mut out, table);
    }
    throughput::ratios(&mut out, &summary.ratios);
    if let Some(table) = &summary.cpu {
        throughput::cpu_table(&mut out, table);
    }
    if let Some(table) = &summary.revocation {
        revocation::table(&mut out, table);
    }
    if let Some(table) = &summary.memory {
        memory::table(&mut out, table);
    }
    if let Some(issuance) = &summary.issuance {
        issuance::table(&mut out, issuance);
    }
    details(&mut out, &summary.details);
    if let Some(targets) = &summary.targets {
        targets::table(&mut out, targets);
    }
    out
}

fn header(out: &mut String, header: &Header) {
    let repeat_note = if header.repeat > 1 {
        format!(" (medians of {} runs)", header.repeat)
    } else {
        String::new()
    };
    let _ = writeln!(out, "## loadgen results{repeat_note}\n");
    if header.repeat > 1 {
        let _ = writeln!(
            out,
            "Each req/s is the median of the runs (lowest–highest in parentheses); latencies, \
             lookups and CPU figures are medians too; errors are summed.\n"
        );
    }
    let _ = writeln!(out, "- Command: `{}`", header.command);
    let _ = writeln!(out, "- Machine: {}", header.machine.describe());
    let _ = writeln!(out, "- Started: {}", header.started);
    if let Some(load) = &header.load {
        let _ = writeln!(
            out,
            "- Load: {} connections (one request in flight each), {} warm-up + {} measured per \
             transport, spread over {} logged-in sessions",
            load.connections,
            humantime::format_duration(load.warmup),
            humantime::format_duration(load.duration),
            load.sessions,
        );
    }
    if let Some(revocations) = &header.revocations {
        let _ = writeln!(
            out,
            "- Revocations: up to {} per mode, deadline {} each",
            revocations.per_mode,
            humantime::format_duration(revocations.deadline),
        );
    }
    if let Some(level) = header.route_level {
        let _ = writeln!(
            out,
            "- Route policy: the measured route at `{level}` in every mode (`AUTH_ROUTE_POLICY`: \
             `GET /v1/orders/{{id}}={level}` at the gateway, \
             `/orders.v1.OrderService/GetOrder={level}` at orders-service)",
        );
    }
    let extra: String = (header.verifier_env.iter())
        .map(|(k, v)| format!(", verifiers with `{k}={v}`"))
        .collect();
    let _ = writeln!(
        out,
        "- Services: `RUST_LOG={}`{extra}, otherwise their defaults; binaries from `{}`",
        header.service_log, header.bin_dir,
    );
    let _ = writeln!(out);
}

/// The runs that failed, and the modes skipped.
fn failures(out: &mut String, summary: &Summary) {
    if !summary.failures.is_empty() {
        let _ = writeln!(
            out,
            "**{} run(s) failed and are missing from the figures below:**\n",
            summary.failures.len()
        );
        for failure in &summary.failures {
            // The first line says what failed; the services' log lines follow, indented.
            let _ = writeln!(out, "```text\n{failure}\n```");
        }
        let _ = writeln!(out);
    }
    for (mode, why) in &summary.skipped {
        let _ = writeln!(out, "**Mode {} skipped:** {why}\n", mode.label());
    }
}

/// Errors, store-load details and notes: nothing hidden.
fn details(out: &mut String, details: &[Detail]) {
    if details.is_empty() {
        return;
    }
    let _ = writeln!(out, "Details:\n");
    for detail in details {
        let _ = writeln!(out, "{}", detail_line(detail));
    }
    let _ = writeln!(out);
}

fn detail_line(detail: &Detail) -> String {
    let label =
        |mode: &Mode, transport: &Transport| format!("{}, {}", mode.label(), transport.label());
    match detail {
        Detail::Errors {
            mode,
            transport,
            count,
            requests,
            errors,
        } => format!(
            "- {}: {count} errors of {requests} requests: {}",
            label(mode, transport),
            fmt_errors(errors)
        ),
        Detail::RedisCommands {
            mode,
            transport,
            per_request,
        } => format!(
            "- {}: {per_request:.2} Redis commands per request in all (every client of this \
             Redis server counts)",
            label(mode, transport)
        ),
        Detail::FallbackChecks {
            mode,
            transport,
            checks,
        } => format!(
            "- {}: {} requests checked through the stateful fallback (revocation feed stale)",
            label(mode, transport),
            fmt_rate(*checks)
        ),
        Detail::Note { mode, text } => format!("- {}: {text}", mode.label()),
        Detail::IssuanceNote(text) => format!("- issuance: {text}"),
    }
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

/// [`fmt_duration`], `–` without a value.
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

/// `HTTP 503 × 2, timeout × 1`.
fn fmt_errors(errors: &BTreeMap<String, u64>) -> String {
    errors
        .iter()
        .map(|(kind, n)| format!("{kind} × {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A median with the lowest and highest in parentheses when there were several runs:
/// `1,100 (1,000–1,200)`.
fn fmt_rate_range(rate: f64, (low, high): (f64, f64), runs: usize) -> String {
    if runs > 1 {
        format!("{} ({}–{})", fmt_rate(rate), fmt_rate(low), fmt_rate(high))
    } else {
        fmt_rate(rate)
    }
}
